"""The Ray backend against a real Ray: a local instance and a three-node `ray.cluster_utils` cluster that loses a node, an actor killed or stalled mid-run, resume, the CLI, bad resources."""

import copy
import os
import signal
import subprocess
import threading
import time
import tomllib

import pytest
import ray
from ray.cluster_utils import Cluster

import engram
import engram.ray
from conftest import SMALL, engram_bin, read_tensorboard

RAY_TAGS = {
    "ray/actors",
    "ray/actor_restarts",
    "ray/chunks_discarded",
    "ray/object_store_bytes",
    "ray/weight_broadcast_seconds",
    "ray/actor_sps_0",
    "ray/actor_sps_1",
}


def _config(**run):
    """The small CartPole config with two actors of half a CPU each."""
    config = copy.deepcopy(SMALL)
    config["run"].update({"actor_threads": 2, "checkpoint_every": 2, **run})
    config["ray"] = {"num_cpus_per_actor": 0.5, "actor_timeout_s": 60}
    return config


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _last(tb, tag):
    return tb["scalars"][tag][-1][1]


def test_a_local_ray_run_writes_the_local_runs_tags_and_the_ray_ones(tmp_path, local_ray):
    config = _config()
    local = engram.train(config, run_dir=tmp_path / "local", quiet=True)
    remote = engram.ray.train(config, run_dir=tmp_path / "ray", quiet=True)
    assert remote.global_step == local.global_step == 384 and remote.updates == 3
    assert remote.faults["chunks_used"] == 2 * remote.updates
    local_tb, ray_tb = read_tensorboard(tmp_path / "local"), read_tensorboard(tmp_path / "ray")
    assert set(local_tb["scalars"]) <= set(ray_tb["scalars"])
    assert set(ray_tb["scalars"]) - set(local_tb["scalars"]) == RAY_TAGS
    assert sorted(ray_tb["histograms"]) == sorted(set(local_tb["histograms"]) | {"ray/actor_sps"})
    assert _last(ray_tb, "ray/actors") == 2 and _last(ray_tb, "ray/actor_restarts") == 0
    # Per update: two chunks in (obs alone 2 × 32 × 2 envs × 4 floats) and weights out.
    assert _last(ray_tb, "ray/object_store_bytes") > 2 * 32 * 2 * 4 * 4
    assert _last(ray_tb, "ray/actor_sps_0") > 0
    # The same seeds and envs per actor: the rollouts are the same as the threads'.
    assert ray_tb["scalars"]["charts/episodic_return"] == local_tb["scalars"]["charts/episodic_return"]

    # APPO streams chunks and logs the policy lag as a local APPO run does.
    appo = engram.ray.train(
        config, overrides={"run.algo": "appo", "async.chunk_len": 16}, run_dir=tmp_path / "appo",
        quiet=True,
    )
    assert appo.global_step >= 384
    appo_tb = read_tensorboard(tmp_path / "appo")
    assert "async/policy_lag" in appo_tb["histograms"] and "ray/actor_sps_1" in appo_tb["scalars"]

    # learner_resources: the learner runs in a Ray actor holding them, not in this process
    # (whose managers list stays empty), and writes the same run.
    seen_here = []
    watcher = threading.Thread(
        target=lambda: [seen_here.extend(engram.ray.live_managers()) or time.sleep(0.05)
                        for _ in range(100)]
    )
    watcher.start()
    hosted = engram.ray.train(config, learner_resources={"num_cpus": 0.5},
                              run_dir=tmp_path / "hosted", quiet=True)
    watcher.join()
    assert hosted.global_step == 384 and not seen_here
    saved = tomllib.loads((tmp_path / "hosted/config.toml").read_text())
    assert saved["ray"]["learner_resources"] == {"num_cpus": 0.5}
    hosted_tb = read_tensorboard(tmp_path / "hosted")
    assert hosted_tb["scalars"]["charts/episodic_return"] == ray_tb["scalars"]["charts/episodic_return"]


def test_a_cluster_runs_actors_on_several_nodes_and_survives_losing_one(tmp_path):
    # Three nodes with one `engram_slot` each and two actors needing one: Ray must spread them.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"engram_slot": 1}},
    )
    try:
        workers = [cluster.add_node(num_cpus=1, resources={"engram_slot": 1}) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 3
        seen, removed = set(), []

        def watch():
            # Once chunks flow, take away a worker node that hosts an actor.
            deadline = time.time() + 120
            while time.time() < deadline:
                for manager in engram.ray.live_managers():
                    nodes = [n for n in manager.nodes() if n]
                    seen.update(nodes)
                    if not removed and manager.chunks_received >= 4 and len(nodes) == 2:
                        victim = next((w for w in workers if w.node_id in nodes), None)
                        if victim is not None:
                            cluster.remove_node(victim)
                            removed.append(victim.node_id)
                    if removed and len(seen) == 3:
                        return
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        summary = engram.ray.train(
            _config(total_steps=128 * 30),
            overrides={"ray.num_cpus_per_actor": 0, "ray.resources_per_actor": {"engram_slot": 1}},
            run_dir=tmp_path / "cluster",
            quiet=True,
        )
        watcher.join()
        assert removed, "the run ended before a node could be removed"
        # Both actors ran on different nodes, the lost one was recreated on the third node, and
        # every update trained on two whole chunks.
        assert len(seen) == 3, seen
        assert summary.global_step == 128 * 30 and summary.faults["chunks_used"] == 60
        assert summary.faults["actor_restarts"] == 1
        tb = read_tensorboard(tmp_path / "cluster")
        assert _last(tb, "ray/actors") == 2 and _last(tb, "ray/actor_restarts") == 1
        # The same TensorBoard tags as the same run with actor threads, plus the Ray ones.
        engram.train(_config(total_steps=128 * 3), run_dir=tmp_path / "local", quiet=True)
        local = read_tensorboard(tmp_path / "local")
        assert set(tb["scalars"]) - set(local["scalars"]) == RAY_TAGS
        assert set(local["scalars"]) <= set(tb["scalars"])
    finally:
        ray.shutdown()
        cluster.shutdown()


def _signal_first_actor(sig, after_chunks=4):
    """A thread that sends ``sig`` to the first actor of the run in this process once it has
    delivered ``after_chunks`` chunks; the list it returns gets the pid."""
    hit = []

    def run():
        deadline = time.time() + 120
        while time.time() < deadline and not hit:
            for manager in engram.ray.live_managers():
                if manager.chunks_received >= after_chunks and all(manager.pids()):
                    pid = manager.pids()[0]
                    os.kill(pid, sig)
                    hit.append(pid)
                    break
            time.sleep(0.01)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, hit


def test_a_killed_actor_is_recreated_and_its_chunk_discarded_whole(tmp_path, local_ray):
    killer, killed = _signal_first_actor(signal.SIGKILL)
    summary = engram.ray.train(_config(total_steps=128 * 30), run_dir=tmp_path / "kill", quiet=True)
    killer.join()
    assert killed, "the run ended before an actor could be killed"
    # The run finished all its updates, each on one whole chunk from each of the two actors.
    assert summary.global_step == 128 * 30 and summary.updates == 30
    assert summary.faults["actor_restarts"] == 1
    assert summary.faults["chunks_used"] == 2 * 30
    tb = read_tensorboard(tmp_path / "kill")
    assert _last(tb, "ray/actor_restarts") == 1
    assert _last(tb, "ray/chunks_discarded") == 1
    assert _last(tb, "ray/actors") == 2


def test_a_stalled_actor_is_replaced_after_the_timeout_and_spent_restarts_stop_the_run(
    tmp_path, local_ray
):
    # A stopped process never answers: after ray.actor_timeout_s it is killed and recreated.
    thread, stalled = _signal_first_actor(signal.SIGSTOP)
    start = time.time()
    summary = engram.ray.train(
        _config(total_steps=128 * 12), overrides={"ray.actor_timeout_s": 3},
        run_dir=tmp_path / "stall", quiet=True,
    )
    thread.join()
    assert stalled, "the run ended before an actor could be stopped"
    assert summary.global_step == 128 * 12 and summary.faults["actor_restarts"] == 1
    assert time.time() - start < 60
    tb = read_tensorboard(tmp_path / "stall")
    assert _last(tb, "ray/chunks_discarded") == 1

    # With no restarts left, the next failure stops the run with a checkpoint that resumes.
    thread, killed = _signal_first_actor(signal.SIGKILL)
    with pytest.raises(engram.EngramError) as error:
        engram.ray.train(
            _config(total_steps=128 * 40), overrides={"ray.max_actor_restarts": 0},
            run_dir=tmp_path / "spent", quiet=True,
        )
    thread.join()
    message = str(error.value)
    assert killed and "ray.max_actor_restarts = 0" in message, message
    assert "stopped with a checkpoint" in message and "engram resume" in message, message
    assert list((tmp_path / "spent").glob("checkpoint-*"))


def test_a_ray_run_resumes_from_its_checkpoint_and_runs_from_the_cli(tmp_path):
    config = tmp_path / "ray.toml"
    config.write_text(engram._runs._toml(_config(), document=True))
    run = tmp_path / "cli"
    # The Rust binary hands a Ray run to `python -m engram` (ENGRAM_PYTHON: this interpreter).
    env = dict(os.environ, ENGRAM_PYTHON=os.environ.get("ENGRAM_PYTHON", ""))
    out = subprocess.run(
        [engram_bin(), "train", "--config", str(config), "--set", 'run.backend="ray"',
         "--run-dir", str(run), "--quiet"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "finished: 384 steps" in out.stdout
    text = (run / "config.toml").read_text()
    assert 'backend = "ray"' in text
    (run / "config.toml").write_text(text.replace("total_steps = 384", "total_steps = 640"))
    resumed = subprocess.run(
        [engram_bin(), "resume", str(run), "--quiet"], capture_output=True, text=True, env=env,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    tb = read_tensorboard(run)
    steps = [step for step, _ in tb["scalars"]["ray/actors"]]
    assert steps[-1] == 640 and 384 in steps
    assert [s for s, _ in tb["scalars"]["losses/value"]] == [128, 256, 384, 512, 640]


def test_resources_the_cluster_lacks_and_bad_ray_keys_are_clear_errors(tmp_path, local_ray):
    with pytest.raises(engram.EngramError, match=r"ray\.num_cpus_per_actor"):
        engram.ray.train(_config(), overrides={"ray.num_cpus_per_actor": -1},
                         run_dir=tmp_path / "neg", quiet=True)
    assert not (tmp_path / "neg").exists()
    with pytest.raises(engram.EngramError, match="ray.nodes_per_actor"):
        engram.ray.train(_config(), overrides={"ray.nodes_per_actor": 1},
                         run_dir=tmp_path / "typo", quiet=True)
    with pytest.raises(engram.EngramError, match=r"did not start within .*lower ray\.num_cpus_per_actor.*nothing was trained"):
        engram.ray.train(_config(), overrides={"ray.num_cpus_per_actor": 8, "ray.actor_timeout_s": 3},
                         run_dir=tmp_path / "big", quiet=True)

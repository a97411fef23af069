"""Runs from Python: engram.train/resume/evaluate, `python -m engram`, Ctrl-C, bad input."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import engram
from conftest import ROOT, engram_bin, read_tensorboard


def test_train_evaluate_and_resume_from_python(tmp_path, small_config):
    run = tmp_path / "run"
    summary = engram.train(small_config, run_dir=run, quiet=True)
    assert isinstance(summary, engram.TrainSummary)
    assert summary.run_dir == run
    assert summary.global_step == 384 and summary.updates == 3
    assert not summary.interrupted and summary.sps > 0
    assert (run / "config.toml").is_file()
    assert any(p.name.startswith("checkpoint-") for p in run.iterdir())

    report = engram.evaluate(run, episodes=3)
    assert report.env_id == "CartPole-v1"
    assert len(report.returns) == 3 and report.mean_return >= 8

    again = engram.resume(run, quiet=True)
    assert again.already_finished and again.global_step == 384

    config = (run / "config.toml").read_text().replace("total_steps = 384", "total_steps = 512")
    (run / "config.toml").write_text(config)
    more = engram.resume(run, quiet=True)
    assert more.global_step == 512 and more.updates == 4 and not more.already_finished


def test_evaluate_replaces_env_kwargs_and_names_a_bad_one(tmp_path, small_config):
    config = small_config
    config["env"] = {"id": "TMaze-Passive-v0", "num_envs": 4, "kwargs": {"corridor_length": 3}}
    config["run"]["total_steps"] = 128
    run = tmp_path / "tmaze"
    engram.train(config, run_dir=run, quiet=True)
    assert engram.evaluate(run, episodes=2).lengths == [4, 4]
    longer = engram.evaluate(run, episodes=2, env_kwargs={"corridor_length": 9})
    assert longer.lengths == [10, 10]
    with pytest.raises(engram.EngramError, match="corridor_lenght"):
        engram.evaluate(run, env_kwargs={"corridor_lenght": 9})


def test_python_train_writes_the_same_tensorboard_tags_as_the_cli(tmp_path, small_config):
    cli_run, py_run = tmp_path / "cli", tmp_path / "py"
    config = tmp_path / "small.toml"
    config.write_text(engram._runs._toml(small_config, document=True))
    out = subprocess.run(
        [engram_bin(), "train", "--config", str(config), "--run-dir", str(cli_run), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    engram.train(config, run_dir=py_run, quiet=True)
    cli_tb, py_tb = read_tensorboard(cli_run), read_tensorboard(py_run)
    for kind in ("scalars", "histograms", "images", "plugins"):
        assert sorted(py_tb[kind]) == sorted(cli_tb[kind]), kind
    assert "charts/episodic_return" in py_tb["scalars"]
    # Same seed, same config: the same numbers, not only the same names.
    assert py_tb["scalars"]["losses/value"] == cli_tb["scalars"]["losses/value"]


def test_env_and_overrides_arguments(tmp_path):
    summary = engram.train(
        None,
        env={"id": "TMaze-Passive-v0", "num_envs": 4, "kwargs": {"corridor_length": 4}},
        overrides={"ppo.rollout_len": 16, "ppo.seq_len": 8, "run.total_steps": 64},
        seed=2,
        run_dir=tmp_path / "tmaze",
        quiet=True,
    )
    assert summary.global_step == 64
    text = (tmp_path / "tmaze" / "config.toml").read_text()
    assert 'id = "TMaze-Passive-v0"' in text and "corridor_length = 4" in text
    summary = engram.train(
        None,
        env="MemoryChain-v0",
        overrides=["env.num_envs=2", "ppo.rollout_len=16", "ppo.seq_len=8", "run.total_steps=32"],
        run_dir=tmp_path / "chain",
        quiet=True,
    )
    assert summary.global_step == 32


def test_a_python_gymnasium_env_trains_from_python(tmp_path):
    summary = engram.train(
        None,
        env={"id": "gymnasium:CartPole-v1", "num_envs": 4, "python_workers": 2},
        overrides={"ppo.rollout_len": 32, "ppo.seq_len": 8, "run.total_steps": 128},
        run_dir=tmp_path / "bridge",
        quiet=True,
    )
    assert summary.global_step == 128 and summary.faults["env_panics"] == 0


def test_bad_input_is_an_error_naming_the_problem_and_writes_nothing(tmp_path, small_config):
    run = tmp_path / "bad"
    with pytest.raises(engram.EngramError, match="learning_rat"):
        engram.train(small_config, overrides={"ppo.learning_rat": 1e-3}, run_dir=run)
    with pytest.raises(engram.EngramError, match="TMaze-Passive-v0"):
        engram.train(small_config, env="TMaze-Pasive-v0", run_dir=run)
    with pytest.raises(engram.EngramError, match="is not a file"):
        engram.train(tmp_path / "missing.toml", run_dir=run)
    with pytest.raises(engram.EngramError, match="None"):
        engram.train(small_config, overrides={"ppo.learning_rate": None}, run_dir=run)
    with pytest.raises(ValueError, match="section"):
        engram.train(small_config, overrides={"learning_rate": 1e-3}, run_dir=run)
    assert not run.exists()
    with pytest.raises(engram.EngramError, match="not a run directory"):
        engram.resume(tmp_path / "nowhere")
    with pytest.raises(engram.EngramError):
        engram.evaluate(tmp_path / "nowhere")
    # A run directory that holds a run is never silently replaced.
    engram.train(small_config, run_dir=run, quiet=True)
    with pytest.raises(engram.EngramError, match="resume"):
        engram.train(small_config, run_dir=run, quiet=True)
    assert engram.train(small_config, run_dir=run, quiet=True, overwrite=True).updates == 3


def test_python_dash_m_engram_is_the_cli(tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "engram", *args], capture_output=True, text=True
        )

    listed = cli("envs", "list")
    assert listed.returncode == 0 and "TMaze-Passive-v0" in listed.stdout
    assert "Usage: python -m engram" in cli("--help").stdout
    bad = cli("trian")
    assert bad.returncode == 2 and "trian" in bad.stderr
    unknown = cli("envs", "describe", "Nope-v0")
    assert unknown.returncode == 1 and "error: unknown environment id" in unknown.stderr
    run = tmp_path / "m"
    trained = cli(
        "train",
        "--set", "env.num_envs=2",
        "--set", "ppo.rollout_len=16",
        "--set", "ppo.minibatches=1",
        "--set", "run.total_steps=32",
        "--run-dir", str(run),
        "--quiet",
    )
    assert trained.returncode == 0, trained.stderr
    assert "finished: 32 steps" in trained.stdout


def _wait_for(predicate, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _checkpoints(run):
    return sorted(p for p in Path(run).glob("checkpoint-*") if not p.name.endswith(".partial"))


def test_ctrl_c_checkpoints_and_raises_training_interrupted(tmp_path):
    run = tmp_path / "long"
    script = textwrap.dedent(
        f"""
        import engram
        try:
            engram.train(
                overrides={{"run.total_steps": 10_000_000, "run.checkpoint_every": 1000,
                           "env.num_envs": 4, "ppo.rollout_len": 32}},
                run_dir={str(run)!r}, quiet=True)
        except engram.TrainingInterrupted as e:
            print("INTERRUPTED", e.summary.global_step, e.summary.interrupted, flush=True)
            raise SystemExit(75)
        """
    )
    # A test run started in the background of a non-interactive shell inherits SIGINT ignored,
    # and Python then installs no Ctrl-C handler: give the child the default, as a terminal does.
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert _wait_for(lambda: (run / "metrics.jsonl").exists(), 60), "the run never started"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 75, out + err
    assert "INTERRUPTED" in out and "True" in out
    assert "saving a checkpoint" in err
    assert _checkpoints(run), "no checkpoint after Ctrl-C"
    step = int(out.split()[1])
    assert step > 0
    # The stopped run continues from its checkpoint.
    config = (run / "config.toml").read_text().replace("10000000", str(step + 128))
    (run / "config.toml").write_text(config)
    resumed = engram.resume(run, quiet=True)
    assert resumed.global_step == step + 128

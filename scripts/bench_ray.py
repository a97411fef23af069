#!/usr/bin/env python3
"""Whole-loop steps/s of the Ray backend against the in-process actor threads, same config, one sitting.

Usage (a Python with Engram's package, built --release, and ray):
  python scripts/bench_ray.py [--configs configs/cartpole_lstm.toml ...] [--actors 1 2 4]
                              [--updates 20] [--cpus 2] [--out target/bench-ray]

For every config and actor count N it trains the same run twice — run.backend = "local"
(N actor threads) and "ray" (N actor processes on a local Ray with --cpus CPUs, each reserving
cpus/N) — for --updates updates after one warm-up update, and prints steps/s, their ratio and
the Ray run's per-update costs read back from its TensorBoard scalars: object-store bytes
(chunks in, weights out), weight-broadcast seconds, and the per-chunk overhead
(wall per update, Ray − local, over the N chunks of an update). A JSON of everything goes to
--out. Do not run it beside a build or a training run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import engram
import engram.ray
import ray

ROOT = Path(__file__).resolve().parents[1]


def scalars(run_dir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/read_tensorboard.py"), str(run_dir)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)["scalars"]


def one(config: Path, backend: str, actors: int, updates: int, cpus: int, work: Path) -> dict:
    base = tomllib.loads(config.read_text())
    num_envs = int(base["env"].get("num_envs", 8))
    envs = max(num_envs, actors) // actors * actors
    rollout = int(base.get("ppo", {}).get("rollout_len", 128))
    steps = envs * rollout * (updates + 1)
    overrides = {
        "env.num_envs": envs,
        "run.actor_threads": actors,
        "run.total_steps": steps,
        "run.checkpoint_every": 0,
        "run.backend": backend,
        "ray.num_cpus_per_actor": cpus / actors,
    }
    run = work / f"{config.stem}-{backend}-{actors}"
    start = time.perf_counter()
    summary = engram.train(config, overrides=overrides, run_dir=run, overwrite=True, quiet=True)
    wall = time.perf_counter() - start
    tb = scalars(run)
    # Steady-state steps/s, after the first update (actor start-up excluded): charts/SPS at
    # step s is s / (seconds since the session started), so each point gives its time.
    (s0, v0), (s1, v1) = tb["charts/SPS"][0], tb["charts/SPS"][-1]
    t0, t1 = s0 / v0, s1 / v1
    row = {
        "config": config.name,
        "backend": backend,
        "actors": actors,
        "envs": envs,
        "updates": summary.updates,
        "wall_s": wall,
        "session_sps": summary.sps,
        "sps": (s1 - s0) / (t1 - t0),
        "seconds_per_update": (t1 - t0) / (summary.updates - 1),
    }
    if backend == "ray":
        row["object_store_bytes_per_update"] = statistics.median(
            v for _, v in tb["ray/object_store_bytes"][1:]
        )
        row["broadcast_s"] = statistics.median(v for _, v in tb["ray/weight_broadcast_seconds"])
        row["actor_sps"] = [tb[f"ray/actor_sps_{i}"][-1][1] for i in range(actors)]
        row["steps_per_update"] = envs * rollout
    return row


def transport(config: Path, rounds: int = 30) -> dict:
    """Per-chunk cost of the Ray path alone, one actor: a `collect_all` round trip (weights out,
    chunk through the object store and back) minus the time the actor spent collecting."""
    from engram import _engram
    from engram.ray._actors import RayActors

    toml = _engram.resolved_config(config_path=str(config),
                                   sets=['run.backend="ray"', "run.actor_threads=1"])
    manager = RayActors({"config_toml": toml, "kwargs_json": "{}", "seed": 1, "actors": 1,
                         "synchronous": True})
    weights = _engram.RolloutWorker(toml, "{}", 1, 0, 0).weights()
    overheads, collects = [], []
    try:
        for version in range(rounds):
            manager.publish(weights, version)  # a new version every round: weights are fetched
            start = time.perf_counter()
            chunk = manager.collect_all()[0]
            total = time.perf_counter() - start
            collects.append(manager._slots[0].last_seconds)
            overheads.append(total - collects[-1])
        size = sum(v.nbytes for v in chunk.values() if hasattr(v, "nbytes"))
    finally:
        manager.close()
    return {
        "config": config.name,
        "chunk_bytes": size,
        "weights_bytes": int(weights.nbytes),
        "collect_ms": 1e3 * statistics.median(collects[1:]),
        "overhead_ms": 1e3 * statistics.median(overheads[1:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["configs/cartpole_lstm.toml",
                                                         "configs/tmaze_passive_brims_screened.toml"])
    parser.add_argument("--actors", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--out", default="target/bench-ray")
    args = parser.parse_args()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in map(Path, args.configs):
            for actors in args.actors:
                local = one(config, "local", actors, args.updates, args.cpus, Path(tmp))
                remote = one(config, "ray", actors, args.updates, args.cpus, Path(tmp))
                extra = remote["seconds_per_update"] - local["seconds_per_update"]
                remote["chunk_overhead_ms"] = 1e3 * extra / actors
                remote["ray_over_local"] = remote["sps"] / local["sps"]
                rows += [local, remote]
                print(
                    f"{config.name:40s} N={actors}  local {local['sps']:9.0f} steps/s   ray "
                    f"{remote['sps']:9.0f} steps/s  (ray/local {remote['ray_over_local']:.2f}, "
                    f"+{remote['chunk_overhead_ms']:.1f} ms per chunk, "
                    f"{remote['object_store_bytes_per_update'] / 1e3:.0f} kB/update through the store, "
                    f"broadcast {1e3 * remote['broadcast_s']:.2f} ms)",
                    flush=True,
                )
    for config in map(Path, args.configs):
        t = transport(config)
        rows.append(t)
        print(f"{config.name:40s} transport: chunk {t['chunk_bytes'] / 1e3:.0f} kB, weights "
              f"{t['weights_bytes'] / 1e3:.0f} kB, collect {t['collect_ms']:.1f} ms, Ray path "
              f"{t['overhead_ms']:.2f} ms per chunk", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_ray.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out / 'bench_ray.json'}")


if __name__ == "__main__":
    main()

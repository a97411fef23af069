#!/usr/bin/env python3
"""Random-action steps/s of Stable-Baselines3's SubprocVecEnv: the peer of Engram's Python env bridge.

Usage (from the repository root; scripts/bench_python_bridge.sh runs it beside `engram bench envs`):
    PY -m pip install stable-baselines3 gymnasium minigrid
    PY scripts/bench_subproc_vecenv.py cartpole|minigrid NUM_ENVS SECONDS

One worker process per env (SubprocVecEnv's design), the "forkserver" start method, actions
drawn up front; prints one line of JSON {"env", "num_envs", "steps", "seconds", "sps", "versions"}.
"""
import json
import os
import sys
import time

import gymnasium
import numpy as np
import stable_baselines3
from stable_baselines3.common.vec_env import SubprocVecEnv

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))


def make_cartpole():
    return gymnasium.make("CartPole-v1")


def make_minigrid():
    import minigrid_env

    return minigrid_env.memory(7)


def main():
    which, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    factory = {"cartpole": make_cartpole, "minigrid": make_minigrid}[which]
    envs = SubprocVecEnv([factory] * n, start_method="forkserver")
    envs.seed(0)
    envs.reset()
    rng = np.random.default_rng(0)
    k = envs.action_space.n
    actions = rng.integers(0, k, size=(4096, n))
    for t in range(200):  # warm-up
        envs.step(actions[t % 4096])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < secs:
        for t in range(256):
            envs.step(actions[t])
        steps += 256 * n
    seconds = time.perf_counter() - start
    envs.close()
    print(json.dumps({"env": which, "num_envs": n, "steps": steps, "seconds": round(seconds, 3),
                      "sps": round(steps / seconds), "versions": {
                          "stable_baselines3": stable_baselines3.__version__,
                          "gymnasium": gymnasium.__version__, "python": sys.version.split()[0]}}))


if __name__ == "__main__":
    main()

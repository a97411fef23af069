#!/usr/bin/env python3
"""Steps/s of Engram's native envs from Python (`engram.make`, `engram.make_vec`) against POPGym's own Python envs, same tasks, one run.

Usage: PY scripts/bench_make_vec.py [seconds]   (PY: a Python with the engram package, release
build, and popgym; scripts/bench_make_vec.sh makes one). Random actions drawn before timing;
autoreset included (POPGym: reset when an episode ends; make_vec: NEXT_STEP autoreset).
"""
import os
import sys
import time

import gymnasium
import numpy as np

import engram

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# One env stepped in a Python loop, reset when an episode ends: the same loop for both sides.
from bench_python_envs import SECS, measure as time_single, popgym as popgym_env  # noqa: E402

TASKS = ["RepeatPreviousEasy", "CountRecallEasy", "AutoencodeEasy", "PositionOnlyCartPoleEasy"]


def time_vector(vec):
    vec.reset(seed=0)
    vec.action_space.seed(0)
    actions = [vec.action_space.sample() for _ in range(64)]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECS:
        for a in actions:
            vec.step(a)
        steps += len(actions) * vec.num_envs
    return steps / (time.perf_counter() - start)


def rate(x):
    return f"{x / 1e6:.3f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"


def main():
    print(
        "| task | POPGym env | POPGym, SyncVectorEnv × 64 | engram.make | engram.make_vec × 64 "
        "| × 1024 | make_vec 1024 / POPGym |"
    )
    print("|---|---|---|---|---|---|---|")
    for task in TASKS:
        theirs = time_single(lambda: popgym_env(task))
        theirs_vec = time_vector(
            gymnasium.vector.SyncVectorEnv([lambda t=task: popgym_env(t) for _ in range(64)])
        )
        ours = time_single(lambda: engram.make(f"popgym-{task}-v0"))
        ours64 = time_vector(engram.make_vec(f"popgym-{task}-v0", 64))
        ours1024 = time_vector(engram.make_vec(f"popgym-{task}-v0", 1024))
        print(
            f"| {task} | {rate(theirs)} | {rate(theirs_vec)} | {rate(ours)} | {rate(ours64)} "
            f"| {rate(ours1024)} | {ours1024 / theirs:.0f}× |",
            flush=True,
        )


if __name__ == "__main__":
    np.random.seed(0)
    main()

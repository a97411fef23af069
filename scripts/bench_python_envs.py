#!/usr/bin/env python3
"""Single-thread step rate of the Python reference environments (the peers of `engram bench envs`).

Usage (from the repository root):
    python3 -m venv target/gym-venv && target/gym-venv/bin/pip install gymnasium==1.4.0 popgym==1.0.7
    target/gym-venv/bin/python scripts/bench_python_envs.py [seconds]

Random actions are pre-drawn; the env is reset when an episode ends, as in Engram's benchmark.
"""
import sys
import time

import gymnasium as gym
import numpy as np

SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0


def popgym(name):
    import popgym.envs as envs

    return getattr(envs, name)()


CASES = [
    ("CartPole-v1", lambda: gym.make("CartPole-v1")),
    ("Pendulum-v1", lambda: gym.make("Pendulum-v1")),
    ("popgym-RepeatFirstEasy-v0", lambda: popgym("RepeatFirstEasy")),
    ("popgym-RepeatPreviousEasy-v0", lambda: popgym("RepeatPreviousEasy")),
    ("popgym-RepeatPreviousHard-v0", lambda: popgym("RepeatPreviousHard")),
    ("popgym-CountRecallEasy-v0", lambda: popgym("CountRecallEasy")),
    ("popgym-AutoencodeEasy-v0", lambda: popgym("AutoencodeEasy")),
    ("popgym-PositionOnlyCartPoleEasy-v0", lambda: popgym("PositionOnlyCartPoleEasy")),
    ("popgym-NoisyPositionOnlyCartPoleEasy-v0", lambda: popgym("NoisyPositionOnlyCartPoleEasy")),
]


def measure(make):
    env = make()
    env.reset(seed=0)
    actions = [env.action_space.sample() for _ in range(4096)]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECS:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    return steps / (time.perf_counter() - start)


if __name__ == "__main__":
    np.random.seed(0)
    print(f"{'env (steps/s, Python, 1 thread)':<42} {'rate':>10}")
    for name, make in CASES:
        print(f"{name:<42} {measure(make) / 1e6:>9.3f}M", flush=True)

#!/usr/bin/env python3
"""Generate CartPole-v1 and Pendulum-v1 test vectors from Python Gymnasium itself.

Usage (from the repository root):
    python3 -m venv target/gym-venv && target/gym-venv/bin/pip install gymnasium==1.4.0 numpy
    target/gym-venv/bin/python scripts/gen_gymnasium_vectors.py envs/tests/fixtures

For each seed it records the reset observation and, for a fixed pseudo-random action sequence,
every step's observation (float32, written exactly), reward, terminated and truncated, across
episode ends (after an episode ends the env is reset without a seed, continuing its RNG, as
Engram's VecEnv does).
"""
import json
import sys

import gymnasium as gym
import numpy as np


def record(env_id, seeds, steps, action_fn):
    runs = []
    for seed in seeds:
        env = gym.make(env_id)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(1000 + seed)
        run = {"seed": seed, "reset_obs": [float(x) for x in obs], "steps": []}
        for _ in range(steps):
            action = action_fn(rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            rec = {
                "action": action.tolist() if isinstance(action, np.ndarray) else int(action),
                "obs": [float(x) for x in obs],
                "reward": float(reward),
                "terminated": bool(terminated),
                "truncated": bool(truncated),
            }
            if terminated or truncated:
                obs, _ = env.reset()
                rec["reset_obs"] = [float(x) for x in obs]
            run["steps"].append(rec)
        runs.append(run)
    return {"env_id": env_id, "gymnasium": gym.__version__, "numpy": np.__version__, "runs": runs}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "envs/tests/fixtures"
    seeds = [0, 1, 42, 123, 2**32 + 5, 987654321]
    cartpole = record("CartPole-v1", seeds, 700, lambda rng: int(rng.integers(0, 2)))
    # Always-right episodes reach the time limit rarely; add a balancing policy run so the
    # 500-step truncation is covered too.
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=7)
    steps = []
    for _ in range(520):
        action = int(obs[2] + 0.5 * obs[3] > 0)  # simple balancing controller
        obs, reward, terminated, truncated, _ = env.step(action)
        rec = {"action": action, "obs": [float(x) for x in obs], "reward": float(reward),
               "terminated": bool(terminated), "truncated": bool(truncated)}
        if terminated or truncated:
            obs, _ = env.reset()
            rec["reset_obs"] = [float(x) for x in obs]
        steps.append(rec)
    env.reset(seed=7)
    first, _ = env.reset(seed=7)
    cartpole["runs"].append({"seed": 7, "reset_obs": [float(x) for x in first], "steps": steps})
    pendulum = record(
        "Pendulum-v1",
        seeds,
        450,
        lambda rng: np.clip(rng.uniform(-2.2, 2.2, size=(1,)), -2.0, 2.0).astype(np.float32),
    )
    for name, data in [("cartpole_v1.json", cartpole), ("pendulum_v1.json", pendulum)]:
        with open(f"{out}/{name}", "w") as f:
            json.dump(data, f, separators=(",", ":"))
        print(f"wrote {out}/{name}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write agents/tests/fixtures/vtrace.json: V-trace computed with NumPy, vectorised over envs.

An independent reference for agents/src/vtrace.rs (Espeholt et al. 2018, eq. 1 and the
policy-gradient advantage of §4.2), with terminations and truncations inside the chunk and
behaviour/target log-probabilities that differ (policy lag), so that both clips are active.
Run once: `target/gym-venv/bin/python scripts/gen_vtrace_fixtures.py` (needs numpy).
"""
import json
import pathlib

import numpy as np


def vtrace(rewards, values, bootstrap, final_values, terminated, truncated, log_rhos,
           gamma, lam, rho_bar, c_bar, pg_rho_bar):
    T = rewards.shape[0]
    rhos = np.exp(log_rhos.astype(np.float64))
    done = terminated | truncated
    # Value of the next state: V(x_{t+1}), V(x_T) after the chunk, V(final obs) on truncation.
    values_tp1 = np.concatenate([values[1:], bootstrap[None, :]], axis=0)
    values_tp1 = np.where(truncated, final_values, values_tp1)
    boot_discount = gamma * (~terminated)
    trace_discount = gamma * (~done)
    deltas = np.minimum(rho_bar, rhos) * (rewards + boot_discount * values_tp1 - values)
    cs = lam * np.minimum(c_bar, rhos)
    acc = np.zeros_like(bootstrap, dtype=np.float64)
    corrections = np.zeros_like(values, dtype=np.float64)
    for t in reversed(range(T)):
        acc = deltas[t] + trace_discount[t] * cs[t] * acc
        corrections[t] = acc
    vs = values + corrections
    vs_tp1 = np.concatenate([vs[1:], bootstrap[None, :]], axis=0)
    vs_tp1 = np.where(truncated, final_values, vs_tp1)
    advantages = rewards + boot_discount * vs_tp1 - values
    return vs, advantages, np.minimum(pg_rho_bar, rhos)


def case(rng, T, E, lag_scale, params):
    rewards = rng.normal(size=(T, E))
    values = rng.normal(size=(T, E))
    bootstrap = rng.normal(size=E)
    final_values = rng.normal(size=(T, E))
    u = rng.random(size=(T, E))
    terminated = u < 0.12
    truncated = (u >= 0.12) & (u < 0.24)
    log_rhos = rng.normal(scale=lag_scale, size=(T, E))
    f32 = lambda a: a.astype(np.float32).astype(np.float64)
    rewards, values, bootstrap, final_values, log_rhos = map(
        f32, (rewards, values, bootstrap, final_values, log_rhos))
    final_values = np.where(truncated, final_values, 0.0)
    vs, adv, pg = vtrace(rewards, values, bootstrap, final_values, terminated, truncated,
                         log_rhos, **params)
    flat = lambda a: [float(x) for x in np.asarray(a).reshape(-1)]
    return {
        "num_envs": E,
        "params": params,
        "rewards": flat(rewards), "values": flat(values), "bootstrap": flat(bootstrap),
        "final_values": flat(final_values),
        "terminated": [bool(x) for x in terminated.reshape(-1)],
        "truncated": [bool(x) for x in truncated.reshape(-1)],
        "log_rhos": flat(log_rhos),
        "vs": flat(vs), "advantages": flat(adv), "pg_rhos": flat(pg),
    }


def main():
    rng = np.random.default_rng(20180205)
    paper = dict(gamma=0.99, lam=1.0, rho_bar=1.0, c_bar=1.0, pg_rho_bar=1.0)
    other = dict(gamma=0.9, lam=0.95, rho_bar=2.0, c_bar=0.5, pg_rho_bar=1.5)
    cases = {
        "on_policy": case(rng, 9, 4, 0.0, paper),
        "lagged": case(rng, 16, 5, 1.0, paper),
        "lagged_other_clips": case(rng, 12, 3, 1.5, other),
        "one_step": case(rng, 1, 6, 0.7, other),
    }
    out = pathlib.Path(__file__).resolve().parent.parent / "agents/tests/fixtures/vtrace.json"
    out.write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Plot training curves of `scripts/train_results.sh` runs: mean of the last 100 episodic returns
(or with --success the share of them above 0, MiniGrid's success) against environment steps, one
line per seed, one PNG per preset; prints each seed's final and best value and the first step
at the goal.

Usage: plot_curves.py [--results DIR] [--out DIR] [--success] [--tag TAG] PRESET [PRESET ...]
--tag adds a logged scalar (e.g. modules/memory_first_step_attention) per seed, dashed, on a
right-hand axis.
Reads DIR/<preset>_s<seed>/metrics.jsonl (default DIR target/results), writes
OUT/<preset>.png (default OUT docs/curves). Needs matplotlib (pip install matplotlib).
"""
import argparse
import glob
import json
import os
from collections import deque

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GOALS = {"cartpole": 475, "repeat_previous": 0.9, "tmaze": 0.95, "minigrid": 0.9}


def curve(run_dir, success=False):
    window, xs, ys, full = deque(maxlen=100), [], [], []
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            ret = row.get("charts/episodic_return")
            if ret is None:
                continue
            window.append(float(ret > 0) if success else ret)
            xs.append(row["step"])
            ys.append(sum(window) / len(window))
            full.append(len(window) == window.maxlen)
    return xs, ys, full


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", default="target/results")
    p.add_argument("--out", default="docs/curves")
    p.add_argument("--success", action="store_true", help="share of episodes with a positive return")
    p.add_argument("--tag", help="also plot this scalar of metrics.jsonl on a right-hand axis")
    p.add_argument("presets", nargs="+")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for preset in args.presets:
        runs = sorted(glob.glob(os.path.join(args.results, f"{preset}_s*")))
        if not runs:
            raise SystemExit(f"no runs {args.results}/{preset}_s* (run scripts/train_results.sh {preset})")
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
        goal = next((v for k, v in GOALS.items() if preset.startswith(k)), None)
        for run in runs:
            xs, ys, full = curve(run, args.success)
            ax.plot(xs, ys, linewidth=1.2, label="seed " + run.rsplit("_s", 1)[1])
            hit = next((x for x, y, f in zip(xs, ys, full) if f and goal is not None and y >= goal), None)
            print(f"{run}: {xs[-1] if xs else 0} steps, final {ys[-1] if ys else float('nan'):.3f}, "
                  f"best {max(ys, default=float('nan')):.3f}, first at the goal {hit}")
        if args.tag:
            ax2 = ax.twinx()
            for i, run in enumerate(runs):
                with open(os.path.join(run, "metrics.jsonl")) as f:
                    pts = [(r["step"], r[args.tag]) for r in map(json.loads, f) if args.tag in r]
                ax2.plot([x for x, _ in pts], [y for _, y in pts], linestyle="--", linewidth=1,
                         color=f"C{i}", alpha=0.8)
            ax2.set_ylabel(f"{args.tag} (dashed)", fontsize=8)
            ax2.set_ylim(0, 1)
        if goal is not None:
            ax.axhline(goal, color="grey", linestyle="--", linewidth=0.8, label=f"goal {goal}")
        ax.set_title(preset)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(("success rate" if args.success else "mean return") + ", last 100 episodes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = os.path.join(args.out, f"{preset}.png")
        fig.savefig(path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()

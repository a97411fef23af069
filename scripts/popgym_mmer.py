#!/usr/bin/env python3
"""POPGym's score of Engram runs: MMER, the running maximum over training of the mean return of
the last 100 training episodes (RLlib's `episode_reward_mean`, read at every update), as
`proroklab/ffm`'s plotting code computes it, per run and as mean ± sd over seeds.

Usage: popgym_mmer.py RUN_DIR [RUN_DIR ...] [--group-by-seed-suffix] [--json FILE]
Runs named `<name>_s<seed>` are grouped by `<name>`; each group's row gives its seeds, steps,
MMER mean ± sd (raw scale −1…1) and POPGym's normalised 0.5·MMER + 0.5. Beside it, the paper's
GRU and best-model figures where we have them (a third-party transcription of the paper's
Appendix B Table 3 that we could not check against the PDF: quote as unverified).
"""
import argparse
import json
import os
import re
import statistics
from collections import defaultdict, deque

# (GRU mean, best model and its MMER) per env, from the unverified transcription
# (docs/research/envs.md, ../shared/research/anchors.md).
PAPER = {
    "popgym-RepeatPreviousMedium-v0": ("−0.315", "LMU 0.789"),
    "popgym-RepeatPreviousHard-v0": ("−0.428", "LMU 0.191"),
    "popgym-CountRecallMedium-v0": ("−0.528", "PosMLP −0.519"),
}


def mmer(run_dir):
    """(MMER, steps, env id) of one run; MMER is None before 100 episodes."""
    window = deque(maxlen=100)
    best, step, last_step = None, 0, None
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            step = row.get("step", step)
            if last_step is not None and step != last_step and len(window) == 100:
                # An update ended: RLlib reports episode_reward_mean once per iteration.
                mean = sum(window) / 100
                best = mean if best is None else max(best, mean)
            last_step = step
            if "charts/episodic_return" in row:
                window.append(row["charts/episodic_return"])
    if len(window) == 100:
        mean = sum(window) / 100
        best = mean if best is None else max(best, mean)
    env_id = None
    config = os.path.join(run_dir, "config.toml")
    if os.path.exists(config):
        m = re.search(r'^id = "([^"]+)"', open(config).read(), re.M)
        env_id = m.group(1) if m else None
    return best, step, env_id


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    groups = defaultdict(list)
    for run in args.runs:
        name = re.sub(r"_s\d+$", "", os.path.basename(os.path.normpath(run)))
        groups[name].append(run)
    rows = []
    print("| runs | env | seeds | steps | MMER (mean ± sd) | normalised | paper GRU | paper best |")
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in sorted(groups.items()):
        scores = [mmer(r) for r in runs]
        values = [s for s, _, _ in scores if s is not None]
        env_id = next((e for _, _, e in scores if e), "?")
        steps = min(st for _, st, _ in scores)
        if not values:
            print(f"| {name} | {env_id} | {len(runs)} | {steps} | fewer than 100 episodes | | | |")
            continue
        mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        gru, best = PAPER.get(env_id, ("—", "—"))
        print(f"| {name} | {env_id} | {len(values)} | {steps:,} | {mean:.3f} ± {sd:.3f} | "
              f"{0.5 * mean + 0.5:.3f} | {gru} | {best} |")
        rows.append({"name": name, "env": env_id, "seeds": len(values), "steps": steps,
                     "mmer": values, "mean": mean, "sd": sd})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bsuite's memory_len analysis for Engram's cores: MemoryLen-v0 (one context bit, answered
`memory_length` steps later) at increasing lengths, a fixed step budget per run, and the largest
length each core solves.

Usage: memory_len_sweep.py [--cores gru,lstm,...] [--settings 0,5,...] [--budget STEPS]
                           [--seeds 1,2] [--results DIR] [--out FILE] [--no-train]
Each (core, setting, seed) trains `configs/memory_len.toml` with the core swapped in, in
DIR/memory_len_<core>_set<setting>_s<seed> (default DIR target/results; a finished run is not
retrained). A seed solves a setting when the mean return of its last 100 episodes is at least
0.8 (90 % correct answers; rewards are ±1); training stops for a core after two settings in a
row that some seed did not solve. Writes DIR/memory_len.json and a markdown table on stdout (the
largest length each seed solved, and the worst seed's return by length), and with matplotlib
installed a chart of the worst seed to FILE (default docs/memory_len.png). --no-train only
collects, from the seeds each core has runs for.
"""
import argparse
import json
import os
import subprocess
import sys
from collections import deque

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MemoryLen-v0's lengths by setting (envs/src/builtin/memory_chain.rs, MEMORY_LEN_SWEEP).
LENGTHS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100,
           150, 200, 300, 500, 700, 1000]
DEFAULT_SETTINGS = [2, 9, 13, 17, 22, 23, 24, 25, 26, 27, 28]
# Same width everywhere: 64 hidden units (BRIMs 2 x 32 per layer: 4 modules, top-k 2).
CORES = {
    "gru": '{kind="gru",hidden_size=64}',
    "lstm": '{kind="lstm",hidden_size=64}',
    "rims": '{kind="rims",hidden_size=64,num_modules=4,top_k=2}',
    "brims": '{kind="brims",hidden_sizes=[64,64],num_modules=[4,4],top_k=[2,2]}',
    "screened_gru": '{kind="screened",short_term=8,relevant=8,inner={kind="gru",hidden_size=64}}',
    "screened_lstm": '{kind="screened",short_term=8,relevant=8,inner={kind="lstm",hidden_size=64}}',
    "screened_brims": '{kind="screened",short_term=8,relevant=8,inner={kind="brims",'
                      'hidden_sizes=[64,64],num_modules=[4,4],top_k=[2,2]}}',
    "rel_lstm": '{kind="rel_lstm",hidden_size=64}',
    "ffm": '{kind="ffm",hidden_size=64}',
    # Two blocks with a window of 256 each: answers up to 512 steps back are in reach.
    "gtrxl": '{kind="gtrxl",hidden_size=64,memory_len=256}',
}
SOLVED = 0.8


def final_mean(run_dir, budget):
    """Mean return of the run's last 100 episodes, or None unless it ran its budget."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    window, step = deque(maxlen=100), 0
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            step = row["step"]
            if row.get("charts/episodic_return") is not None:
                window.append(row["charts/episodic_return"])
    return sum(window) / len(window) if window and step >= budget else None


def train(binary, core, setting, seed, budget, run_dir):
    cmd = [binary, "train", "--config", os.path.join(ROOT, "configs/memory_len.toml"),
           "--seed", str(seed), "--set", f"policy.core={CORES[core]}",
           "--set", f"env.kwargs={{setting={setting}}}", "--set", f"run.total_steps={budget}",
           "--run-dir", run_dir, "--overwrite", "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", default=",".join(CORES))
    ap.add_argument("--settings", default=",".join(map(str, DEFAULT_SETTINGS)))
    ap.add_argument("--budget", type=int, default=300_000)
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--results", default=os.path.join(ROOT, "target/results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/memory_len.png"))
    ap.add_argument("--no-train", action="store_true")
    args = ap.parse_args()
    cores = args.cores.split(",")
    unknown = [c for c in cores if c not in CORES]
    if unknown:
        sys.exit(f"unknown core(s) {unknown}; choose from {', '.join(CORES)}")
    settings = sorted(int(s) for s in args.settings.split(","))
    if any(not 0 <= s < len(LENGTHS) for s in settings):
        sys.exit(f"settings are 0..{len(LENGTHS) - 1}")
    seeds = [int(s) for s in args.seeds.split(",")]
    binary = os.path.join(ROOT, "target/release/engram")
    if not args.no_train:
        subprocess.run(["cargo", "build", "--release", "--bin", "engram"], cwd=ROOT, check=True)

    results = {}
    for core in cores:
        rows, misses = [], 0
        for setting in settings:
            means = {}
            for seed in seeds:
                run_dir = os.path.join(args.results, f"memory_len_{core}_set{setting}_s{seed}")
                if final_mean(run_dir, args.budget) is None and not args.no_train:
                    train(binary, core, setting, seed, args.budget, run_dir)
                mean = final_mean(run_dir, args.budget)
                if mean is not None:
                    means[seed] = mean
            # Training: every seed ran. Collecting: the seeds that have a finished run.
            if not means or (not args.no_train and len(means) < len(seeds)):
                break
            solved = all(m >= SOLVED for m in means.values())
            rows.append({"setting": setting, "length": LENGTHS[setting], "final_mean100": means,
                         "solved": solved})
            print(f"{core} L={LENGTHS[setting]}: {means} {'solved' if solved else ''}", file=sys.stderr)
            misses = 0 if solved else misses + 1
            if misses == 2:
                break
        ran = sorted({seed for r in rows for seed in r["final_mean100"]})
        largest = {seed: max((r["length"] for r in rows
                              if r["final_mean100"].get(seed, -1) >= SOLVED), default=0)
                   for seed in ran}
        if rows:
            results[core] = {"largest_solved": largest, "runs": rows}

    with open(os.path.join(args.results, "memory_len.json"), "w") as f:
        json.dump({"budget": args.budget, "seeds": seeds, "solved_at": SOLVED, "cores": results}, f,
                  indent=1)
    print(f"| core | largest length solved, by seed ({args.budget:,} steps) "
          "| worst seed's final mean return by length |")
    print("|---|---|---|")
    for core, r in results.items():
        largest = ", ".join(f"s{seed}: {n}" for seed, n in r["largest_solved"].items())
        by_len = ", ".join(f"{x['length']}: {min(x['final_mean100'].values()):.2f}"
                           for x in r["runs"])
        print(f"| {core} | {largest} | {by_len} |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for core, r in results.items():
        xs = [x["length"] for x in r["runs"]]
        ax.plot(xs, [min(x["final_mean100"].values()) for x in r["runs"]], marker="o",
                label=f"{core} ({len(r['largest_solved'])} seeds)")
    ax.axhline(SOLVED, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("memory length (steps between the context bit and the query)")
    ax.set_ylabel(f"final mean return, worst seed ({args.budget:,} steps)")
    ax.set_title("MemoryLen-v0 (bsuite memory_len, extended to 1000)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

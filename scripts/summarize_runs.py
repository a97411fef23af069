#!/usr/bin/env python3
"""Summarise Engram run directories from their metrics.jsonl: returns over training.

Usage: summarize_runs.py [--threshold X] RUN_DIR [RUN_DIR ...]

For each run prints the final and best rolling mean of the last 100 episodic returns, and the
first environment step at which that rolling mean reached the threshold (if given).
"""
import json
import sys
from collections import deque


def summarize(run_dir, threshold):
    window = deque(maxlen=100)
    best, first_hit, step = float("-inf"), None, 0
    with open(f"{run_dir}/metrics.jsonl") as f:
        for line in f:
            row = json.loads(line)
            step = row["step"]
            ret = row.get("charts/episodic_return")
            if ret is None:
                continue
            window.append(ret)
            if len(window) == window.maxlen or len(window) >= 10:
                mean = sum(window) / len(window)
                best = max(best, mean)
                if threshold is not None and first_hit is None and len(window) == window.maxlen and mean >= threshold:
                    first_hit = step
    final = sum(window) / max(len(window), 1)
    return {"run": run_dir, "steps": step, "final_mean100": round(final, 4), "best_mean100": round(best, 4),
            "first_step_at_threshold": first_hit}


def main():
    args = sys.argv[1:]
    threshold = None
    if args and args[0] == "--threshold":
        threshold = float(args[1])
        args = args[2:]
    for run in args:
        print(json.dumps(summarize(run, threshold)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Plot `engram bench memory --grad-profile` CSVs: ‖∂L/∂x_t‖ against t, log scale, one line per file.

Usage: plot_grad_profile.py --out PNG LABEL=CSV [LABEL=CSV ...]
Each CSV has `t,grad_norm` lines; a gradient of exactly 0 (f32 underflow) leaves a gap. The
copy task's symbols are at t = 0..9 (shaded); a core that carries credit over the delay keeps
their gradient far above an LSTM's, whose gradient decays exponentially with the distance (Kerg et al. 2020, the official `copy_dLdh_t` plots).
Needs matplotlib (pip install matplotlib).
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [int(r["t"]) for r in rows], [float(r["grad_norm"]) for r in rows]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="copy task: gradient of the loss w.r.t. each input")
    p.add_argument("profiles", nargs="+", help="LABEL=CSV")
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for spec in args.profiles:
        label, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"expected LABEL=CSV, got {spec!r}")
        ts, gs = read(path)
        zeros = sum(1 for g in gs if g <= 0.0)
        if zeros:
            label += f" ({zeros} steps exactly 0, not drawn)"
        ax.plot(ts, [g if g > 0.0 else float("nan") for g in gs], label=label, linewidth=1.2)
    ax.axvspan(-0.5, 9.5, color="0.85", label="symbols (t = 0..9)")
    ax.set_yscale("log")
    ax.set_xlabel("input step t")
    ax.set_ylabel("‖∂L/∂x_t‖ (mean over the batch)")
    ax.set_title(args.title)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Probe for issue 14: the BRIMs + screened T-Maze preset's early entropy collapse, with a larger
# entropy bonus. Usage: scripts/tmaze_brims_screened_probe.sh [ENT_COEF] [SEEDS]
# (defaults 0.05, "1 2"); runs go to target/results/probe_ent<ENT_COEF>_s<seed>.
set -euo pipefail
cd "$(dirname "$0")/.."
ent="${1:-0.05}"
cargo build --release --bin engram
for seed in ${2:-1 2}; do
  dir="target/results/probe_ent${ent}_s${seed}"
  rm -rf "$dir"
  target/release/engram train --config configs/tmaze_passive_brims_screened.toml --seed "$seed" \
    --set "ppo.ent_coef=${ent}" --run-dir "$dir" --quiet | tail -n 1
  python3 scripts/summarize_runs.py --threshold 0.95 "$dir"
done

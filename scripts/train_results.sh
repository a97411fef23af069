#!/usr/bin/env bash
# Train the presets over several seeds and summarise their returns (figures for the README).
# Usage: scripts/train_results.sh [preset ...]   (default: cartpole_lstm repeat_previous_gru)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin engram
presets=("${@:-cartpole_lstm repeat_previous_gru}")
for preset in ${presets[@]}; do
  case "$preset" in
    cartpole_lstm*) threshold=475 ;;
    repeat_previous_*) threshold=0.9 ;;
    tmaze_*) threshold=0.95 ;;
    *) threshold=0 ;;
  esac
  for seed in ${SEEDS:-1 2 3 4 5}; do
    dir="target/results/${preset}_s${seed}"
    rm -rf "$dir"
    target/release/engram train --config "configs/${preset}.toml" --seed "$seed" --run-dir "$dir" --quiet | tail -n 1
    python3 scripts/summarize_runs.py --threshold "$threshold" "$dir"
  done
done

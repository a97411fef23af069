#!/usr/bin/env bash
# Probe a preset with overrides over several seeds, one run after the other (the stability work
# of the signature-result issue), and summarise each run's returns.
# Usage: scripts/probe_preset.sh PRESET NAME "SEEDS" [SECTION.KEY=VALUE ...]
#   e.g. scripts/probe_preset.sh tmaze_passive_brims_screened kl02 "1 2 3 4 5" ppo.target_kl=0.02
# Runs go to target/results/probe_<PRESET>_<NAME>_s<seed>; the release binary is built first.
set -euo pipefail
cd "$(dirname "$0")/.."
preset="$1" name="$2" seeds="$3"
shift 3
sets=()
for kv in "$@"; do sets+=(--set "$kv"); done
case "$preset" in
  cartpole_*) threshold=475 ;;
  tmaze_*) threshold=0.95 ;;
  *) threshold=0.9 ;;
esac
cargo build --release --bin engram
for seed in $seeds; do
  dir="target/results/probe_${preset}_${name}_s${seed}"
  start=$(date +%s)
  target/release/engram train --config "configs/${preset}.toml" --seed "$seed" ${sets[@]+"${sets[@]}"} \
    --run-dir "$dir" --overwrite --quiet | tail -n 1
  echo "wall $(( $(date +%s) - start )) s"
  python3 scripts/summarize_runs.py --threshold "$threshold" "$dir"
done

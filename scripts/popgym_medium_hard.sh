#!/usr/bin/env bash
# POPGym where the paper's GRU fails (the signature-result issue, part 4): RepeatPrevious Medium
# and Hard and CountRecall Medium under POPGym's protocol (configs/popgym_protocol_gru.toml:
# 65,536-step updates, BPTT 1024, hidden 256, 15M steps), for a GRU, screened memory around a
# GRU and BRIMs, one run after the other, then the MMER table (scripts/popgym_mmer.py).
# Usage: scripts/popgym_medium_hard.sh [core ...]   (default: gru screened_gru brims)
# SEEDS="1 2 3" (default), BUDGET=15000000 (default; lower it only for smoke tests and say so).
# Runs go to target/results/popgym_<env>_<core>_s<seed>; ~50 min per GRU run on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cores=("${@:-gru screened_gru brims}")
envs="RepeatPreviousMedium RepeatPreviousHard CountRecallMedium"
cargo build --release --bin engram
runs=()
for env in $envs; do
  for core in ${cores[@]}; do
    case "$core" in
      gru) spec='{kind="gru",hidden_size=256}' ;;
      screened_gru) spec='{kind="screened",short_term=16,relevant=16,inner={kind="gru",hidden_size=256}}' ;;
      brims) spec='{kind="brims",hidden_sizes=[256,256],num_modules=[8,8],top_k=[4,4]}' ;;
      ffm) spec='{kind="ffm",hidden_size=256}' ;;
      gtrxl) spec='{kind="gtrxl",hidden_size=256,memory_len=128}' ;;
      *) echo "unknown core $core" >&2; exit 2 ;;
    esac
    for seed in ${SEEDS:-1 2 3}; do
      dir="target/results/popgym_${env}_${core}_s${seed}"
      start=$(date +%s)
      target/release/engram train --config configs/popgym_protocol_gru.toml --seed "$seed" \
        --set "env.id=\"popgym-${env}-v0\"" --set "policy.core=$spec" \
        --set "run.total_steps=${BUDGET:-15000000}" --run-dir "$dir" --overwrite --quiet | tail -n 1
      echo "wall $(( $(date +%s) - start )) s"
      runs+=("$dir")
    done
  done
done
python3 scripts/popgym_mmer.py "${runs[@]}" --json target/results/popgym_mmer.json

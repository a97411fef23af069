#!/usr/bin/env bash
# Reruns every experiment of the signature-result issue, part by part, one run after the other
# (days on 2 CPU cores; each part's script says its cost). Usage:
#   scripts/signature_results.sh [part ...]   parts: stability long500 long1000 memlen popgym (default: all)
# SEEDS overrides the seeds of every part (default: each part's own, 5 or 3).
set -euo pipefail
cd "$(dirname "$0")/.."
parts=("${@:-stability long500 long1000 memlen popgym}")
for part in ${parts[@]}; do
  echo "== $part ($(date -u +%FT%TZ))"
  case "$part" in
    # Part 1: the BRIMs + screened T-Maze L = 100 preset over 5 seeds (≥ 0.95 in every seed).
    stability) scripts/probe_preset.sh tmaze_passive_brims_screened results "${SEEDS:-1 2 3 4 5}" ;;
    # Part 2: passive T-Maze L = 500 (4M steps) and 1000 (8M), screened GRU and every baseline.
    long500) SEEDS="${SEEDS:-1 2 3 4 5}" scripts/tmaze_long_horizon.sh 500 ;;
    long1000) SEEDS="${SEEDS:-1 2 3 4 5}" scripts/tmaze_long_horizon.sh 1000 ;;
    # Part 3: bsuite's memory_len sweep, every core, 3 seeds, 300k steps per setting.
    memlen) python3 scripts/memory_len_sweep.py --seeds "$(echo "${SEEDS:-1 2 3}" | tr ' ' ',')" \
        --budget 300000 --out docs/memory_len.png ;;
    # Part 4: POPGym RepeatPrevious Medium/Hard and CountRecall Medium, POPGym's protocol.
    popgym) SEEDS="${SEEDS:-1 2 3}" scripts/popgym_medium_hard.sh ;;
    *) echo "unknown part $part (stability long500 long1000 memlen popgym)" >&2; exit 2 ;;
  esac
done

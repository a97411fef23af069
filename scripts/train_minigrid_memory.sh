#!/usr/bin/env bash
# MiniGrid-MemoryS7-v0 through the Python env bridge (configs/minigrid_memory_s7.toml), seeds given, into target/results/minigrid_memory_s7_s<N>;
# curve: scripts/plot_curves.py --success minigrid_memory_s7 (docs/curves/minigrid_memory_s7.png).
#
# Usage: scripts/train_minigrid_memory.sh PY [SEEDS...]   (PY: a Python with gymnasium and minigrid)
# Success rate = share of episodes with a positive return (MiniGrid pays 1 - 0.9 t/T only on success).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$1"; shift
export ENGRAM_PYTHON="$PY"
for seed in "${@:-1}"; do
  run="target/results/minigrid_memory_s7_s$seed"
  start=$(date +%s)
  target/release/engram train --config configs/minigrid_memory_s7.toml --seed "$seed" --run-dir "$run" --overwrite --quiet
  echo "seed $seed: $(( $(date +%s) - start )) s"
  target/release/engram eval "$run" --episodes 200
done

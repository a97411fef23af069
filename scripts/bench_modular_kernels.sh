#!/usr/bin/env bash
# The fused RIMs/BRIMs/screened kernels in one sitting: every core against the fused LSTM (1 and 2
# threads, kernels on and off), dido1998's RIMCell in PyTorch, screened memory's per-step cost and
# peak memory, and the BRIMs + screened T-Maze preset's whole training loop before and after.
#
# Usage: scripts/bench_modular_kernels.sh RIM_PY [OUT_DIR]
#   RIM_PY   RIM.py of a clone of https://github.com/dido1998/Recurrent-Independent-Mechanisms
#            (not vendored here)
#   OUT_DIR  where the raw outputs go (default target/bench-modular)
#   TORCH_VENV=DIR  a venv with torch (default target/libtorch-venv, made by scripts/setup-libtorch.sh)
#   LOOP_STEPS=N    env steps of each whole-loop run (default 16160 = 10 updates of the preset)
#   ROUNDS=N        rounds of the cores and PyTorch benchmarks (default 3)
# "Before" is the same binary with ENGRAM_FUSED_MODULAR=0 (the tensor code the kernels replace).
# The cores bench allocates as the `engram` binary and the Python extension do (mimalloc); every
# round also times the LSTM and the modular cores at B = 32 / 64 with the system allocator (glibc,
# as a program linking the libraries without choosing one): `cores-t*-r*-system.txt`.
# Build first, then measure: never time while a build or a training run is going.
set -euo pipefail
cd "$(dirname "$0")/.."

RIM_PY="${1:?usage: scripts/bench_modular_kernels.sh RIM_PY [OUT_DIR] (RIM.py of a dido1998/Recurrent-Independent-Mechanisms clone)}"
OUT="${2:-target/bench-modular}"
VENV="${TORCH_VENV:-target/libtorch-venv}"
LOOP_STEPS="${LOOP_STEPS:-16160}"
ROUNDS="${ROUNDS:-3}"
mkdir -p "$OUT"

# 1. Build (untimed).
cargo bench -p engram-memory --bench cores --no-run
cargo build --release --bin engram
BENCH="$(cargo bench -p engram-memory --bench cores --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cores" and m.get("executable"):
        print(m["executable"])')"

# 2. Cores, forward+backward over [B, T = 64], E = H = 128: ROUNDS rounds alternating one and
#    two threads, ours then PyTorch's (the host drifts: compare within a round, take medians).
for round in $(seq "$ROUNDS"); do
    for threads in 1 2; do
        RAYON_NUM_THREADS=$threads "$BENCH" lstm gru rims rims_gru brims brims_flat screened \
            screened_gru B=32 B=64 B=128 B=256 | tee "$OUT/cores-t$threads-r$round.txt"
        ENGRAM_BENCH_ALLOCATOR=system RAYON_NUM_THREADS=$threads "$BENCH" lstm rims brims \
            screened B=32 B=64 | tee "$OUT/cores-t$threads-r$round-system.txt"
        "$VENV/bin/python" scripts/bench_torch_memory.py --threads $threads --cores lstm gru rims \
            --rim-py "$RIM_PY" --batches 32 64 128 256 | tee "$OUT/torch-t$threads-r$round.txt"
    done
done
for threads in 1 2; do
    RAYON_NUM_THREADS=$threads ENGRAM_FUSED_MODULAR=0 "$BENCH" rims brims screened B=32 B=64 \
        | tee "$OUT/cores-t$threads-before.txt"
done

# 3. Screened memory: µs per step by t (forward), fwd+bwd by T with the peak resident memory.
"$BENCH" per-step | tee "$OUT/screened-per-step.txt"
ENGRAM_FUSED_MODULAR=0 "$BENCH" per-step | tee "$OUT/screened-per-step-before.txt"

# 4. The whole training loop of the BRIMs + screened T-Maze preset.
for mode in 1 0; do
    rm -rf "$OUT/loop-$mode"
    ENGRAM_FUSED_MODULAR=$mode target/release/engram train \
        --config configs/tmaze_passive_brims_screened.toml --set run.total_steps="$LOOP_STEPS" \
        --run-dir "$OUT/loop-$mode" --quiet | tee "$OUT/loop-$mode.txt"
done

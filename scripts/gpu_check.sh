#!/usr/bin/env bash
# Every figure of the CUDA-learner issue in one short run for a session that has a GPU machine
# (under 8 min, the device allows 10 per command: each of its 7 steps stops after STEP_SECONDS):
# the LSTM learner at B = 4096, T = 64, H = 128 against PyTorch's cuDNN nn.LSTM, the BRIMs +
# screened preset's learner, the cores bench per step on CUDA, and the two GPU presets' whole
# loop with the GPU's utilisation sampled by nvidia-smi.
#
# Usage: scripts/gpu_check.sh [DEVICE] [OUT]
#   DEVICE  cuda:0 (default); libtorch or cpu try the script's flow on a CPU machine (SMALL=1
#           shrinks every size so that it takes a minute there).
#   OUT     where the log and the utilisation samples go (default target/gpu-check).
# Environment: ENGRAM (an engram binary built with --features tch against the torch the machine
# has; default target/release/engram), CORES (the cores bench binary built the same way:
# `cargo bench -p engram-memory --bench cores --features tch --no-run`; skipped when unset),
# PYTHON (with torch; default python3). The binaries need libtorch's libraries at run time:
#   export LD_LIBRARY_PATH="$($PYTHON -c 'import os, torch; print(os.path.dirname(torch.__file__))')/lib"
# Building here for a machine with another torch: TORCH_VERSION=<its version>
# LIBTORCH_BYPASS_VERSION_CHECK=1 source scripts/setup-libtorch.sh, then cargo build --release
# --features tch.
# Every step runs even when an earlier one fails; failures are marked FAILED in the log.
set -uo pipefail
cd "$(dirname "$0")/.."
device="${1:-cuda:0}"
out="${2:-target/gpu-check}"
engram="${ENGRAM:-target/release/engram}"
python="${PYTHON:-python3}"
if ! [ -x "$engram" ]; then
  echo "gpu_check: no engram binary at $engram: build one with \`cargo build --release --features tch\` (after sourcing scripts/setup-libtorch.sh) or set ENGRAM=path" >&2
  exit 2
fi
mkdir -p "$out"
log="$out/gpu_check.txt"
: >"$log"

# Every step stops after STEP_SECONDS (default 60; the whole loops are timed runs that stop
# there and print their steps/s), so the run fits the device's time whatever the speed.
step_seconds="${STEP_SECONDS:-60}"
if [ "${SMALL:-0}" = 1 ]; then
  batch=64 cart_steps=20000 tmaze_steps=20000 updates=2 core_batches=(B=32)
else
  batch=4096 cart_steps=100000000 tmaze_steps=100000000 updates=5 core_batches=(B=256 B=4096)
fi
torch_device=cpu
case "$device" in cuda*) torch_device="$device" ;; esac

step() { # step NAME COMMAND...: runs it for at most $STEP_SECONDS, its output into the log
  echo "## $1" | tee -a "$log"
  shift
  # SIGTERM first: `engram train` then finishes its update and prints its steps/s.
  timeout -k 20 -s TERM "$step_seconds" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  case "$rc" in
    0) ;;
    124) echo "(stopped after ${step_seconds} s)" | tee -a "$log" ;;
    *) echo "FAILED (exit $rc)" | tee -a "$log" ;;
  esac
}

sampling=""
sample_gpu() { # sample_gpu FILE: the GPU's utilisation and memory once a second, until stop_sampling
  if command -v nvidia-smi >/dev/null && [ "$torch_device" != cpu ]; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 1 >"$1" &
    sampling=$!
  fi
}
stop_sampling() { # prints the mean and peak utilisation of FILE
  [ -n "$sampling" ] || return 0
  kill "$sampling" 2>/dev/null
  wait "$sampling" 2>/dev/null
  sampling=""
  awk -F', ' '{gsub(/ %/, "", $2); s += $2; if ($2 > m) m = $2; n++}
    END {if (n) printf "GPU utilisation: mean %.0f %%, peak %d %% over %d s\n", s / n, m, n}' "$1" | tee -a "$log"
}

step "machine" sh -c "nvidia-smi -L 2>/dev/null || echo 'no nvidia-smi'; $python -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available())'"

# The LSTM learner alone: one epoch, one minibatch over [B, T = 64] with H = 128.
step "learner: LSTM H=128, B=$batch, T=64 ($device)" "$engram" bench learner \
  --config configs/cartpole_lstm_4096.toml --device "$device" --updates "$updates" \
  --set env.num_envs="$batch" --set ppo.rollout_len=64 --set ppo.seq_len=64 \
  --set ppo.epochs=1 --set ppo.minibatches=1
# The modular preset's learner (BRIMs inside screened memory, whole 101-step episodes).
step "learner: BRIMs + screened T-Maze, $((batch / 4)) envs x 101 steps ($device)" "$engram" bench learner \
  --config configs/tmaze_brims_screened_1024.toml --device "$device" --updates 2 \
  --set env.num_envs="$((batch / 4))" --set ppo.epochs=1 --set ppo.minibatches=4
step "PyTorch nn.LSTM / nn.GRU, B=$batch, T=64, H=128 ($torch_device)" "$python" \
  scripts/bench_torch_memory.py --device "$torch_device" --cores lstm gru --batches "$batch" --threads 2

# Every core's forward+backward per step on the device (the "1.6 ms per step" figure).
if [ -n "${CORES:-}" ]; then
  bench_device=flex
  case "$device" in cuda*) bench_device=cuda ;; libtorch) bench_device=libtorch ;; esac
  step "cores bench ($bench_device)" "$CORES" device="$bench_device" lstm gru rims brims screened "${core_batches[@]}"
fi

# Whole loops, GPU utilisation sampled alongside.
sample_gpu "$out/util_cartpole.csv"
step "whole loop: configs/cartpole_lstm_4096.toml, $batch envs" "$engram" train \
  --config configs/cartpole_lstm_4096.toml --device "$device" --set run.total_steps="$cart_steps" \
  --set env.num_envs="$batch" --run-dir "$out/cartpole_lstm_4096" --overwrite --quiet
stop_sampling "$out/util_cartpole.csv"
sample_gpu "$out/util_tmaze.csv"
step "whole loop: configs/tmaze_brims_screened_1024.toml, $((batch / 4)) envs" "$engram" train \
  --config configs/tmaze_brims_screened_1024.toml --device "$device" \
  --set run.total_steps="$tmaze_steps" --set env.num_envs="$((batch / 4))" \
  --run-dir "$out/tmaze_brims_screened_1024" --overwrite --quiet
stop_sampling "$out/util_tmaze.csv"
echo "log: $log"

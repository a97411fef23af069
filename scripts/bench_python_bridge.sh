#!/usr/bin/env bash
# Python env bridge vs SB3's SubprocVecEnv: random-action steps/s of 8 CartPole-v1 and 8 MiniGrid-MemoryS7 envs, same machine, same run.
#
# Usage: scripts/bench_python_bridge.sh PY [SECONDS]
#   PY: a Python with gymnasium, minigrid and stable-baselines3 (e.g. target/libtorch-venv/bin/python
#   after `pip install stable-baselines3 gymnasium minigrid`). Needs `cargo build --release` first.
# Nothing else may run meanwhile (2 cores: a concurrent build skews timings many times over).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$1"
SECS="${2:-5}"
ENGRAM=target/release/engram
export ENGRAM_PYTHON="$PY"
nproc
"$PY" -c 'import gymnasium, minigrid, stable_baselines3; print("gymnasium", gymnasium.__version__, "minigrid", minigrid.__version__, "sb3", stable_baselines3.__version__)'
for n in 8; do
  echo "== CartPole-v1, $n envs"
  "$ENGRAM" bench envs --id gymnasium:CartPole-v1 --num-envs "$n" --secs "$SECS"
  "$PY" scripts/bench_subproc_vecenv.py cartpole "$n" "$SECS"
  echo "== MiniGrid-MemoryS7-v0 (symbolic view), $n envs"
  "$ENGRAM" bench envs --id python:scripts/python/minigrid_env.py:memory --num-envs "$n" --secs "$SECS"
  "$PY" scripts/bench_subproc_vecenv.py minigrid "$n" "$SECS"
done

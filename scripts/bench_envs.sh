#!/usr/bin/env bash
# Environment step rates: Engram (release) and the Python references, in one run on this machine.
# Build first, then measure: never time while a build runs.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-1}"
cargo build --release --bin engram
if [ ! -x target/gym-venv/bin/python ]; then
  python3 -m venv target/gym-venv
  target/gym-venv/bin/pip install -q gymnasium==1.4.0 popgym==1.0.7
fi
echo "== Engram =="
target/release/engram bench envs --secs "$secs"
echo "== Python (Gymnasium 1.4.0 / POPGym 1.0.7) =="
target/gym-venv/bin/python -W ignore scripts/bench_python_envs.py "$secs"

#!/usr/bin/env bash
# engram.make / engram.make_vec (release build of the Python package) against POPGym's Python envs, one run.
# Builds first, then measures: never time while a build runs. Venv: target/bench-py-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-1}"
VENV=target/bench-py-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q gymnasium==1.4.0 popgym==1.0.7 "maturin>=1.5,<2"
fi
PATH="$PWD/$VENV/bin:$PATH" "$VENV/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps ./python
"$VENV/bin/python" -c 'import engram, popgym, gymnasium, sys; print("engram", engram.__version__, "popgym 1.0.7, gymnasium", gymnasium.__version__, "python", sys.version.split()[0])'
"$VENV/bin/python" -W ignore scripts/bench_make_vec.py "$secs"

#!/usr/bin/env bash
# Creates target/test-venv with TensorBoard's own Python reader (agents/tests/tensorboard_readback.rs),
# Gymnasium + MiniGrid for the Python env bridge (tests/python_envs.rs), Ray for the Ray backend
# (python/tests/test_ray.py), pytest and maturin, then
# builds and installs this checkout's Python package (python/, tests/python_package.rs) into it.
#
# Idempotent: the third-party packages are installed once; the engram package is rebuilt every
# time (cargo's incremental build: seconds when nothing changed), in the `dev` profile that
# `cargo test` builds, so the two share every compiled dependency in target/.
# Needs python3 with the venv module (Debian: python3-venv) and PyPI.
# Override the interpreter with PYTHON=/path/to/python3.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/test-venv
PYTHON="${PYTHON:-python3}"
CHECK='from tensorboard.backend.event_processing import event_accumulator; import numpy, gymnasium, minigrid, pytest, maturin, ray'

install_engram() {
    # `pip install ./python` as a user runs it, with maturin from the venv (no download) and the
    # dev profile, stripped (its debug info is half a gigabyte); --force-reinstall: the version
    # number does not change between builds.
    PATH="$PWD/$VENV/bin:$PATH" MATURIN_PEP517_ARGS="--profile dev --strip" "$VENV/bin/python" -m pip install --quiet \
        --disable-pip-version-check --no-build-isolation --no-deps --force-reinstall ./python
    "$VENV/bin/python" -c 'import engram; print("setup-test-python: engram", engram.__version__, "installed")'
}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
    echo "setup-test-python: $VENV is ready ($("$VENV/bin/python" -c 'import tensorboard; print("tensorboard", tensorboard.__version__)'))"
    install_engram
    exit 0
fi

command -v "$PYTHON" >/dev/null || { echo "setup-test-python: $PYTHON not found; install Python 3 (with venv) or set PYTHON=" >&2; exit 1; }

if ! [ -x "$VENV/bin/python" ]; then
    mkdir -p target
    if ! "$PYTHON" -m venv "$VENV"; then
        # Debian/Ubuntu ship venv separately.
        if command -v apt-get >/dev/null; then
            apt-get update -qq && apt-get install -y -qq python3-venv
            rm -rf "$VENV"
            "$PYTHON" -m venv "$VENV"
        else
            echo "setup-test-python: '$PYTHON -m venv' failed; install the venv module" >&2
            exit 1
        fi
    fi
fi

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# tensorboard without TensorFlow reads event files through its bundled stub; numpy is what it
# decodes tensors with; setuptools supplies pkg_resources, which some tensorboard releases import.
# gymnasium and minigrid: the real packages the Python env bridge is tested against.
# pytest runs the Python package's tests; maturin builds it (PEP 517 backend of python/).
# ray: the cluster engine of `run.backend = "ray"` (its core only; no dashboard).
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check tensorboard numpy setuptools \
    "gymnasium>=1.0" "minigrid>=3.0" pytest "maturin>=1.5,<2" "ray>=2.9"
"$VENV/bin/python" -c "$CHECK"
echo "setup-test-python: $VENV ready ($("$VENV/bin/python" -c 'import tensorboard; print("tensorboard", tensorboard.__version__)'))"
install_engram

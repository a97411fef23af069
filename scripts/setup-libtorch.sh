#!/usr/bin/env bash
# Installs PyTorch from PyPI into target/libtorch-venv and exports what `--features tch` builds and runs need.
#
# Source it, so the exports reach your shell:
#     source scripts/setup-libtorch.sh
#     cargo test -p engram-memory --features tch --test libtorch_parity
# Run as a command it installs and prints the export lines (eval "$(scripts/setup-libtorch.sh)").
#
# burn-tch 0.22's tch (torch-sys 0.22.0) is written against PyTorch 2.9.0, the default here.
# PyPI's Linux wheel is the CUDA 12.8 build (its nvidia-* runtime wheels come with it, ~3 GB);
# the same install serves `--device libtorch` and, with an NVIDIA driver, `--device cuda:N`.
# Idempotent; pip's cache makes a reinstall cheap. Needs python3 (3.10–3.13) with venv, and PyPI.
#
# Overrides: LIBTORCH_VENV (default target/libtorch-venv; an existing venv with torch is reused),
# TORCH_VERSION (default 2.9.0; another version sets LIBTORCH_BYPASS_VERSION_CHECK=1),
# PYTHON (default python3).

# Both helpers run in subshells; every step checks its own status, since `set -e` does not act
# inside a function called as an `if` condition.
_engram_libtorch_setup() (
    cd "$(dirname "${BASH_SOURCE[0]}")/.." || return 1
    venv="${LIBTORCH_VENV:-target/libtorch-venv}"
    want="${TORCH_VERSION:-2.9.0}"
    python="${PYTHON:-python3}"
    if [ -x "$venv/bin/python" ] && compgen -G "$venv/lib/python3*/site-packages/torch/__init__.py" >/dev/null; then
        # Installed: never reinstall 3 GB because an import failed (a full disk, a broken
        # LD_LIBRARY_PATH); show why instead. Delete the venv to start over.
        if ! version="$("$venv/bin/python" -c 'import torch; print(torch.__version__)')"; then
            echo "setup-libtorch: torch is installed in $venv but does not import (above); fix that or delete $venv" >&2
            return 1
        fi
        echo "setup-libtorch: $venv has torch $version" >&2
        return 0
    fi
    command -v "$python" >/dev/null || { echo "setup-libtorch: $python not found; install Python 3 with venv or set PYTHON=" >&2; return 1; }
    if ! [ -x "$venv/bin/python" ]; then
        mkdir -p "$(dirname "$venv")" || return 1
        if ! "$python" -m venv "$venv"; then
            # Debian/Ubuntu ship venv separately.
            command -v apt-get >/dev/null || { echo "setup-libtorch: '$python -m venv' failed; install the venv module" >&2; return 1; }
            { apt-get update -qq && apt-get install -y -qq python3-venv; } || return 1
            rm -rf "$venv"
            "$python" -m venv "$venv" || return 1
        fi
    fi
    echo "setup-libtorch: installing torch==$want from PyPI into $venv (about 3 GB with its CUDA runtime wheels)" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 || return 1
    # numpy only silences torch's warning at import.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==$want" numpy >&2 || return 1
    "$venv/bin/python" -c 'import torch; print("setup-libtorch: torch", torch.__version__, "ready")' >&2
)

_engram_libtorch_env() (
    cd "$(dirname "${BASH_SOURCE[0]}")/.." || return 1
    venv="$(cd "${LIBTORCH_VENV:-target/libtorch-venv}" && pwd -P)" || return 1
    details="$("$venv/bin/python" -c 'import os, torch
print(os.path.join(os.path.dirname(os.path.realpath(torch.__file__)), "lib"))
print(torch.__version__.split("+")[0])' 2>/dev/null)" || return 1
    lib="$(echo "$details" | sed -n 1p)"
    version="$(echo "$details" | sed -n 2p)"
    # torch-sys runs `python` from the active venv (VIRTUAL_ENV) to find headers and libraries.
    echo "export VIRTUAL_ENV='$venv'"
    echo "export PATH='$venv/bin':\"\$PATH\""
    echo "export LIBTORCH_USE_PYTORCH=1"
    # tch 0.22 checks for exactly PyTorch 2.9.0.
    if [ "$version" != "2.9.0" ]; then
        echo "export LIBTORCH_BYPASS_VERSION_CHECK=1"
    fi
    # The binaries link libtorch dynamically; the loader finds it here.
    echo "export LD_LIBRARY_PATH='$lib'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
)

if _engram_libtorch_setup && _engram_libtorch_exports="$(_engram_libtorch_env)"; then
    if [ "${BASH_SOURCE[0]}" != "$0" ]; then
        eval "$_engram_libtorch_exports"
        echo "setup-libtorch: exported VIRTUAL_ENV, PATH, LIBTORCH_USE_PYTORCH${LIBTORCH_BYPASS_VERSION_CHECK:+, LIBTORCH_BYPASS_VERSION_CHECK} and LD_LIBRARY_PATH" >&2
    else
        echo "$_engram_libtorch_exports"
    fi
else
    echo "setup-libtorch: failed" >&2
    # Sourced: do not exit the caller's shell.
    if [ "${BASH_SOURCE[0]}" != "$0" ]; then return 1; else exit 1; fi
fi
unset -f _engram_libtorch_setup _engram_libtorch_env
unset _engram_libtorch_exports

"""Shared fixtures of the Python package's tests (run by `cargo test`, tests/python_package.rs)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A few updates of CartPole with a small LSTM: seconds in a dev build.
SMALL = {
    "env": {"id": "CartPole-v1", "num_envs": 4},
    "policy": {"encoder": [16], "core": {"kind": "lstm", "hidden_size": 16}},
    "ppo": {"rollout_len": 32, "seq_len": 8, "epochs": 1, "minibatches": 2},
    "run": {"total_steps": 384, "seed": 3, "checkpoint_every": 1},
}


@pytest.fixture
def small_config():
    """A copy of the small CartPole config."""
    import copy

    return copy.deepcopy(SMALL)


def engram_bin() -> str:
    """The `engram` binary built by cargo (ENGRAM_BIN, set by tests/python_package.rs)."""
    path = os.environ.get("ENGRAM_BIN")
    if not path:
        pytest.fail("ENGRAM_BIN is not set: run these tests through `cargo test --test python_package`")
    return path


def read_tensorboard(run_dir) -> dict:
    """The run's event files as TensorBoard's own reader sees them (scripts/read_tensorboard.py)."""
    import json

    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/read_tensorboard.py"), str(run_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)

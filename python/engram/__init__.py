"""Engram from Python: train, resume and evaluate runs, the CLI (``python -m engram``), and
Engram's native environments as Gymnasium envs (``engram.make``, ``engram.make_vec``, and
``gymnasium.make("engram/<id>")`` once ``engram`` is imported).

Runs are Rust: ``train`` releases the GIL while it trains, and Ctrl-C stops it after the
current update with a checkpoint (``engram.resume(run_dir)`` continues it).
"""

import os as _os
import sys as _sys

# Python envs (`gymnasium:<id>`, `python:<module>:<factory>`) run in worker processes started
# with this interpreter, so they see the same installed packages, unless ENGRAM_PYTHON says
# otherwise.
_os.environ.setdefault("ENGRAM_PYTHON", _sys.executable)

from engram._engram import EngramError, __version__  # noqa: E402
from engram._runs import (  # noqa: E402
    EvalSummary,
    TrainingInterrupted,
    TrainSummary,
    evaluate,
    resume,
    train,
)
from engram.env import EngramEnv, list_envs, load_plugin, make  # noqa: E402
from engram.vector import EngramVectorEnv, make_vec  # noqa: E402
from engram._registration import register_envs  # noqa: E402

register_envs()

__all__ = [
    "EngramEnv",
    "EngramError",
    "EngramVectorEnv",
    "EvalSummary",
    "TrainSummary",
    "TrainingInterrupted",
    "__version__",
    "evaluate",
    "list_envs",
    "load_plugin",
    "make",
    "make_vec",
    "resume",
    "train",
]

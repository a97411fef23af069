"""``engram.train``, ``engram.resume`` and ``engram.evaluate``: Engram runs from Python, with summaries as Python objects."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from engram import _engram


@dataclass(frozen=True)
class TrainSummary:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    """The run directory (config.toml, TensorBoard files, metrics.jsonl, checkpoints)."""
    global_step: int
    """Environment steps done."""
    updates: int
    """Updates done."""
    recent_return: float
    """Mean return of the last 100 episodes."""
    interrupted: bool
    """Stopped (Ctrl-C) before the end, after a checkpoint: ``engram.resume`` continues it."""
    sps: float
    """Whole-loop environment steps per second of this session."""
    already_finished: bool
    """Resumed a run that had already done all its updates (nothing trained)."""
    faults: dict = field(default_factory=dict)
    """Faults contained: env_panics, actor_restarts, dropped_full, dropped_lag, chunks_used."""
    warnings: list = field(default_factory=list)
    """What the run warned about (a collapsed entropy, an exploding value loss, dropped chunks)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after the current update and its checkpoint was saved.

    ``.summary`` is the run's :class:`TrainSummary`; ``engram.resume(summary.run_dir)``
    continues it."""

    def __init__(self, summary: TrainSummary):
        super().__init__(
            f"training stopped at step {summary.global_step} with a checkpoint in "
            f"{summary.run_dir}; continue it with engram.resume({str(summary.run_dir)!r})"
        )
        self.summary = summary


@dataclass(frozen=True)
class EvalSummary:
    """Returns and lengths of a trained run's evaluation episodes."""

    env_id: str
    returns: list
    lengths: list

    @property
    def mean_return(self) -> float:
        """Mean undiscounted return."""
        return sum(self.returns) / len(self.returns)

    @property
    def std_return(self) -> float:
        """Standard deviation of the returns (population)."""
        m = self.mean_return
        return (sum((r - m) ** 2 for r in self.returns) / len(self.returns)) ** 0.5

    @property
    def mean_length(self) -> float:
        """Mean episode length."""
        return sum(self.lengths) / len(self.lengths)


def _toml(value: Any, *, document: bool = False) -> str:
    return _engram.toml_value(json.dumps(value), document=document)


def _sets(env: str | Mapping[str, Any] | None, overrides) -> list[str]:
    sets: list[str] = []
    if isinstance(env, str):
        sets.append(f"env.id={_toml(env)}")
    elif isinstance(env, Mapping):
        sets += [f"env.{key}={_toml(value)}" for key, value in env.items()]
    elif env is not None:
        raise TypeError(
            "env must be an env id (str, e.g. 'TMaze-Passive-v0' or 'gymnasium:CartPole-v1') "
            f"or a dict of [env] keys, got {type(env).__name__}"
        )
    if overrides is None:
        return sets
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if "." not in key:
                raise ValueError(
                    f"override {key!r} must name its section, like 'ppo.learning_rate'"
                )
            sets.append(f"{key}={_toml(value)}")
    elif isinstance(overrides, str):
        raise TypeError("overrides must be a dict or a list of 'section.key=value' strings")
    else:
        sets += [str(s) for s in overrides]
    return sets


def _summary(raw: dict) -> TrainSummary:
    summary = TrainSummary(
        run_dir=Path(raw["run_dir"]),
        global_step=raw["global_step"],
        updates=raw["updates"],
        recent_return=raw["recent_return"],
        interrupted=raw["interrupted"],
        sps=raw["sps"],
        already_finished=raw["already_finished"],
        faults=raw["faults"],
        warnings=list(raw["warnings"]),
    )
    if raw["stopped_by_signal"]:
        raise TrainingInterrupted(summary)
    return summary


def _config_args(config) -> dict:
    """``train``'s config argument as ``_engram.train`` keyword arguments."""
    if isinstance(config, Mapping):
        return {"config_toml": _toml(dict(config), document=True)}
    if config is None:
        return {}
    path = Path(config)
    if not path.is_file():
        raise _engram.EngramError(
            f"config {str(config)!r} is not a file; pass a TOML file's path, a dict, or None "
            "for the default"
        )
    return {"config_path": str(path)}


def train(
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
    env: str | Mapping[str, Any] | None = None,
    seed: int | None = None,
    run_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | None = None,
    quiet: bool = False,
    plugins: Iterable[str | os.PathLike] = (),
) -> TrainSummary:
    """Train a new run, as ``engram train`` does; its :class:`TrainSummary`.

    ``config``: a TOML file's path, a dict of sections (``{"env": {...}, "ppo": {...}}``), or
    ``None`` for the embedded CartPole-v1 + LSTM default. ``env``: an env id
    (``"TMaze-Passive-v0"``, ``"gymnasium:MiniGrid-MemoryS7-v0"``,
    ``"python:my_pkg.envs:factory"``) or a dict of ``[env]`` keys. ``overrides``:
    ``{"ppo.learning_rate": 1e-3}`` or ``["ppo.learning_rate=1e-3"]``, applied after ``env``.

    The GIL is released while training. Ctrl-C stops the run after the current update with a
    checkpoint and raises :class:`TrainingInterrupted`. Errors (a wrong key, an unknown env, a
    run directory in use) raise :class:`engram.EngramError` before anything is written.
    """
    kwargs = _config_args(config)
    raw = _engram.train(
        **kwargs,
        sets=_sets(env, overrides),
        device=device,
        seed=seed,
        run_dir=None if run_dir is None else str(run_dir),
        overwrite=overwrite,
        quiet=quiet,
        plugins=[str(p) for p in plugins],
    )
    return _summary(raw)


def resume(run_dir: str | os.PathLike, *, quiet: bool = False) -> TrainSummary:
    """Continue a stopped run from its newest checkpoint (``engram resume``); to train a
    finished run further, raise ``run.total_steps`` in its config.toml first."""
    return _summary(_engram.resume(str(run_dir), quiet=quiet))


def evaluate(
    run_dir: str | os.PathLike,
    episodes: int = 10,
    *,
    seed: int = 10_000,
    stochastic: bool = False,
    env_kwargs: dict | None = None,
) -> EvalSummary:
    """Run a trained policy for ``episodes`` episodes (``engram eval``); most likely actions
    unless ``stochastic``. ``env_kwargs`` replace env keyword arguments of the run's
    (``engram eval --env-kwarg``), e.g. ``{"corridor_length": 1000}`` beyond the trained length."""
    raw = _engram.evaluate(
        str(run_dir),
        episodes=episodes,
        seed=seed,
        greedy=not stochastic,
        env_kwargs_json=json.dumps(env_kwargs or {}),
    )
    return EvalSummary(env_id=raw["env_id"], returns=raw["returns"], lengths=raw["lengths"])

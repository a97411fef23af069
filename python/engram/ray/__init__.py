"""Engram on a Ray cluster: ``engram.ray.train`` runs a run's actors as Ray actors.

Each actor is a Python process hosting Engram's Rust actor (VecEnv + CPU policy, no
autodiff); chunks travel as numpy arrays through Ray's object store; the learner publishes
its weights with ``ray.put`` and a version. The learner (training, TensorBoard, checkpoints)
runs in this process, or in a Ray actor holding ``ray.learner_resources`` (e.g. a GPU).

A dead or slow actor loses its chunk whole, is recreated with the current weights (up to
``ray.max_actor_restarts``) and counted in TensorBoard (``ray/actor_restarts``); the learner
is the single point of failure: a killed learner resumes from its checkpoint with
``engram.resume(run_dir)`` (or ``engram.ray.resume``), exactly as a local run.

The same runs from the command line: ``run.backend = "ray"`` in the config (or
``--set run.backend='"ray"'``) and ``engram train`` / ``python -m engram train``; set
``RAY_ADDRESS`` or ``ray.address`` to join a cluster (``ray start --head`` first).
"""

from __future__ import annotations

import os
import threading
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

from engram import _engram
from engram._runs import TrainSummary, _config_args, _sets, _summary, _toml
from engram.ray._actors import actor_pids, live_managers


class _LearnerHost:
    """A Ray actor that runs a whole Engram run (learner, logging, checkpoints) where Ray
    placed it, e.g. on a GPU node; ``stop`` asks it to checkpoint and stop."""

    def __init__(self):
        self._stop = threading.Event()

    def train(self, kwargs: dict) -> dict:
        return _engram.train(**kwargs, stop=self._stop)

    def resume(self, run_dir: str, quiet: bool) -> dict:
        return _engram.resume(run_dir, quiet=quiet, stop=self._stop)

    def stop(self) -> None:
        self._stop.set()


def _run_hosted(resources: dict, method: str, *args) -> dict:
    """Call ``_LearnerHost.method`` in a Ray actor holding ``resources``; Ctrl-C asks it to
    checkpoint and stop."""
    import ray

    from engram.ray._actors import _connect

    _connect({})
    options = dict(resources)
    num_cpus = options.pop("num_cpus", 1)
    num_gpus = options.pop("num_gpus", 0)
    host = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, resources=options or None,
                      max_concurrency=2)(_LearnerHost).remote()
    ref = getattr(host, method).remote(*args)
    try:
        while True:
            try:
                return ray.get(ref)
            except KeyboardInterrupt:
                print("\ninterrupted (Ctrl-C): asking the learner to checkpoint and stop…", flush=True)
                host.stop.remote()
    finally:
        ray.kill(host)


def train(
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
    env: str | Mapping[str, Any] | None = None,
    actors: int | None = None,
    address: str | None = None,
    learner_resources: Mapping[str, float] | None = None,
    seed: int | None = None,
    run_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | None = None,
    quiet: bool = False,
    plugins: Iterable[str | os.PathLike] = (),
) -> TrainSummary:
    """Train with the actors on Ray (``run.backend = "ray"``); as :func:`engram.train`, plus:

    ``actors``: actor processes (``run.actor_threads``; must divide ``env.num_envs``).
    ``address``: the cluster to join (``ray.address``; default ``RAY_ADDRESS``, else a
    local Ray). ``learner_resources``: e.g. ``{"num_gpus": 1}`` runs the learner in a Ray
    actor holding them (``ray.learner_resources``); the run directory is then written on the
    node Ray placed it on. Other ``[ray]`` keys (``num_cpus_per_actor``,
    ``resources_per_actor``, ``max_actor_restarts``, ``actor_timeout_s``) go in the config or
    ``overrides``.
    """
    sets = _sets(env, overrides) + ["run.backend=" + _toml("ray")]
    if actors is not None:
        sets.append(f"run.actor_threads={int(actors)}")
    if address is not None:
        sets.append("ray.address=" + _toml(address))
    if learner_resources is not None:
        sets.append("ray.learner_resources=" + _toml(dict(learner_resources)))
    kwargs: dict[str, Any] = dict(
        _config_args(config),
        sets=sets,
        device=device,
        seed=seed,
        run_dir=None if run_dir is None else str(Path(run_dir).absolute()),
        overwrite=overwrite,
        quiet=quiet,
        plugins=[str(Path(p).absolute()) for p in plugins],
    )
    resolved = tomllib.loads(
        _engram.resolved_config(
            config_path=kwargs.get("config_path"), config_toml=kwargs.get("config_toml"), sets=sets
        )
    )
    ray_section = resolved.get("ray", {})
    if ray_section.get("address"):
        from engram.ray._actors import _connect

        _connect(ray_section)
    resources = ray_section.get("learner_resources") or {}
    if resources:
        return _summary(_run_hosted(resources, "train", kwargs))
    return _summary(_engram.train(**kwargs))


def resume(run_dir: str | os.PathLike, *, quiet: bool = False) -> TrainSummary:
    """Continue a stopped Ray run from its newest checkpoint (as :func:`engram.resume`, which
    also works), honouring its ``ray.learner_resources``."""
    config = Path(run_dir) / "config.toml"
    resources = {}
    if config.is_file():
        ray_section = tomllib.loads(config.read_text()).get("ray", {})
        resources = ray_section.get("learner_resources") or {}
        if ray_section.get("address"):
            from engram.ray._actors import _connect

            _connect(ray_section)
    if resources:
        return _summary(_run_hosted(resources, "resume", str(Path(run_dir).absolute()), quiet))
    return _summary(_engram.resume(str(run_dir), quiet=quiet))


__all__ = ["actor_pids", "live_managers", "resume", "train"]

"""``RayActors``: one stage's Engram actors as Ray actors, driven by the Rust training loop (publish weights, take chunks), with RLlib's fault semantics."""

from __future__ import annotations

import os
import time
import tomllib
import weakref
from dataclasses import dataclass

import numpy as np

try:
    import ray
    from ray.exceptions import RayActorError, RayError
except ImportError as e:  # pragma: no cover — exercised only without ray installed
    raise ImportError(
        f"Engram's Ray backend needs the `ray` package ({e}): pip install ray "
        "(the same version on every node of the cluster)"
    ) from e

from engram._engram import EngramError

# The managers alive in this process (``actor_pids`` reads them).
_LIVE: "weakref.WeakSet[RayActors]" = weakref.WeakSet()


class RolloutActor:
    """A Ray actor hosting one Engram actor (``engram._engram.RolloutWorker``: VecEnv, CPU
    policy copy, core states). Made remote by :class:`RayActors` with the run's resources."""

    def __init__(self, config_toml: str, kwargs_json: str, seed: int, index: int, generation: int):
        from engram import _engram

        self._worker = _engram.RolloutWorker(config_toml, kwargs_json, seed, index, generation)
        self._version = None

    def ready(self) -> tuple:
        """This actor's process id and Ray node id, once its envs and policy are built."""
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def collect(self, weights, version: int) -> dict:
        """Load ``weights`` if newer than the acting ones, then collect one chunk (a dict of
        numpy arrays, read zero-copy by the learner out of the object store)."""
        if version != self._version:
            self._worker.set_weights(weights, version)
            self._version = version
        start = time.perf_counter()
        chunk = self._worker.collect()
        chunk["collect_seconds"] = time.perf_counter() - start
        return chunk


@dataclass
class _Slot:
    """One actor slot: the live actor, its generation and its chunk in flight."""

    index: int
    handle: object = None
    generation: int = 0
    pid: int | None = None
    node: str | None = None
    inflight: object = None
    since: float = 0.0
    sps: float = 0.0
    last_seconds: float = 0.0
    sent_version: int | None = None
    busy: float = 0.0


def _connect(settings: dict) -> None:
    """Join the cluster ``ray.address`` names (or ``RAY_ADDRESS``), or start a local Ray."""
    if ray.is_initialized():
        return
    address = settings.get("address")
    kwargs = {"include_dashboard": False, "log_to_driver": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(**kwargs)


class RayActors:
    """The Ray actors of one curriculum stage (``run.actor_threads`` of them).

    Called by Engram's Rust training loop (``engram._engram``): ``publish`` puts the weights
    into the object store once with their version; ``collect_all`` (``ppo``) gathers one whole
    chunk from every actor; ``next_chunk`` (``appo``/``impala``) returns whichever chunk is
    done first and sends that actor back to work with the newest weights. An actor that dies
    or exceeds ``ray.actor_timeout_s`` loses its chunk whole (never half-used), is recreated
    with the current weights and counted, up to ``ray.max_actor_restarts`` in all.
    """

    def __init__(self, spec: dict):
        self._config_toml = spec["config_toml"]
        config = tomllib.loads(self._config_toml)
        self._settings = dict(config.get("ray", {}))
        self._kwargs_json = spec["kwargs_json"]
        self._seed = int(spec["seed"])
        self._synchronous = bool(spec["synchronous"])
        self._timeout = float(self._settings.get("actor_timeout_s", 120.0))
        self._max_restarts = int(self._settings.get("max_actor_restarts", 10))
        self._num_cpus = float(self._settings.get("num_cpus_per_actor", 1.0))
        self._resources = dict(self._settings.get("resources_per_actor", {}))
        _connect(self._settings)
        self._remote = ray.remote(
            num_cpus=self._num_cpus, resources=self._resources or None, max_restarts=0
        )(RolloutActor)
        self._weights = None
        self._version = None
        self._weights_bytes = 0
        self._broadcast_seconds = 0.0
        self._store_bytes = 0
        self.restarts = 0
        self.chunks_discarded = 0
        self.chunks_received = 0
        self._last_cause = ""
        self._ready: list[dict] = []
        self._stats_time = time.perf_counter()
        self._slots = [_Slot(i) for i in range(int(spec["actors"]))]
        for slot in self._slots:
            self._spawn(slot)
        self._await_ready(self._slots)
        _LIVE.add(self)

    # -- actors ---------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        slot.handle = self._remote.options(name=None).remote(
            self._config_toml, self._kwargs_json, self._seed, slot.index, slot.generation
        )
        slot.pid = None
        slot.inflight = None
        slot.sent_version = None

    def _await_ready(self, slots: list) -> None:
        """Wait until every actor in ``slots`` has built its envs and policy; a failure or a
        timeout is a clear error (a bad env, resources the cluster does not have)."""
        refs = {s.handle.ready.remote(): s for s in slots}
        done, pending = ray.wait(list(refs), num_returns=len(refs), timeout=self._timeout)
        for ref in done:
            try:
                refs[ref].pid, refs[ref].node = ray.get(ref)
            except RayError as e:
                self.close()
                raise EngramError(f"a Ray actor could not start: {_cause(e)}") from None
        if pending:
            self.close()
            raise EngramError(
                f"{len(pending)} of {len(slots)} Ray actors did not start within "
                f"ray.actor_timeout_s = {self._timeout:g} s; each needs "
                f"{self._num_cpus:g} CPUs and {self._resources or 'no other resources'}, and the "
                f"cluster has {ray.cluster_resources()} (lower ray.num_cpus_per_actor or "
                "run.actor_threads, or add nodes)"
            )

    def _fail(self, slot: _Slot, cause: str) -> None:
        """Discard ``slot``'s chunk in flight, recreate its actor with the current weights
        (counted), or stop the run once ``ray.max_actor_restarts`` is spent."""
        if slot.inflight is not None:
            self.chunks_discarded += 1
        try:
            ray.kill(slot.handle, no_restart=True)
        except Exception:  # noqa: BLE001 — the actor may already be gone
            pass
        self._last_cause = cause
        if self.restarts >= self._max_restarts:
            raise EngramError(
                f"Ray actor {slot.index} failed ({cause}) after {self.restarts} restarts, "
                f"ray.max_actor_restarts = {self._max_restarts}"
            )
        self.restarts += 1
        slot.generation += 1
        print(
            f"engram: Ray actor {slot.index} failed ({cause}); its chunk was discarded, "
            f"recreating it (restart {self.restarts} of at most {self._max_restarts})",
            flush=True,
        )
        self._spawn(slot)

    def _send(self, slot: _Slot) -> None:
        """Start ``slot``'s next chunk with the newest weights (which its actor fetches from
        the object store when they are newer than its own)."""
        if slot.sent_version != self._version:
            self._store_bytes += self._weights_bytes
            slot.sent_version = self._version
        slot.inflight = slot.handle.collect.remote(self._weights, self._version)
        slot.since = time.perf_counter()

    def _receive(self, slot: _Slot, ref) -> dict | None:
        """The finished chunk of ``slot`` (``None`` if its actor failed: then recreated)."""
        try:
            chunk = ray.get(ref)
        except (RayActorError, RayError) as e:
            self._fail(slot, _cause(e))
            return None
        slot.inflight = None
        seconds = float(chunk.pop("collect_seconds", 0.0))
        slot.last_seconds = seconds
        steps = int(chunk["len"]) * int(chunk["num_envs"])
        slot.sps = steps / max(seconds, 1e-9)
        slot.busy += seconds
        self.chunks_received += 1
        self._store_bytes += sum(v.nbytes for v in chunk.values() if isinstance(v, np.ndarray))
        return chunk

    # -- what the Rust loop calls ---------------------------------------------------------

    def publish(self, weights: np.ndarray, version: int) -> None:
        """Put the acting policy's weights into the object store once, with ``version``;
        every chunk started from now on acts with them (actors fetch them when they start it)."""
        start = time.perf_counter()
        self._weights = ray.put(weights)
        self._broadcast_seconds = time.perf_counter() - start
        self._version = int(version)
        self._weights_bytes = int(weights.nbytes)

    def collect_all(self) -> list:
        """One whole chunk from every actor, in actor order (``ppo``). A dead or timed-out
        actor's chunk is discarded and its recreated actor collects again."""
        chunks: dict[int, dict] = {}
        for slot in self._slots:
            self._send(slot)
        while len(chunks) < len(self._slots):
            for slot, chunk in self._finished(self._poll()):
                chunks[slot.index] = chunk
        return [chunks[i] for i in range(len(self._slots))]

    def next_chunk(self, wait: float) -> dict | None:
        """The next finished chunk of any actor within ``wait`` seconds, or ``None``
        (``appo``/``impala``); that actor starts its next chunk at once."""
        if not self._ready:
            for slot in self._slots:
                if slot.inflight is None:
                    self._send(slot)
            for slot, chunk in self._finished(wait):
                self._send(slot)
                self._ready.append(chunk)
        return self._ready.pop(0) if self._ready else None

    def stats(self) -> dict:
        """Counters for TensorBoard: since the last call (bytes, busy share) or in all."""
        now = time.perf_counter()
        wall = max(now - self._stats_time, 1e-9)
        busy = sum(s.busy for s in self._slots) / (wall * len(self._slots))
        for s in self._slots:
            s.busy = 0.0
        self._stats_time = now
        store_bytes, self._store_bytes = self._store_bytes, 0
        return {
            "actors": sum(1 for s in self._slots if s.pid is not None),
            "restarts": self.restarts,
            "chunks_discarded": self.chunks_discarded,
            "actor_steps_per_sec": [float(s.sps) for s in self._slots],
            "object_store_bytes": int(store_bytes),
            "broadcast_seconds": float(self._broadcast_seconds),
            "queue_depth": len(self._ready),
            "actor_busy": float(min(busy, 1.0)),
        }

    def pids(self) -> list:
        """Process ids of the live actors, by slot (``None`` while one starts)."""
        return [s.pid for s in self._slots]

    def nodes(self) -> list:
        """Ray node ids of the live actors, by slot."""
        return [s.node for s in self._slots]

    def close(self) -> None:
        """Stop every actor (chunks in flight are dropped)."""
        _LIVE.discard(self)
        for slot in self._slots:
            if slot.handle is not None:
                try:
                    ray.kill(slot.handle, no_restart=True)
                except Exception:  # noqa: BLE001 — already gone
                    pass
                slot.handle = None

    # -- helpers --------------------------------------------------------------------------

    def _finished(self, wait: float) -> list:
        """``(slot, chunk)`` of the chunks in flight that finish within ``wait`` seconds (at
        least one if any does); actors that failed or timed out are recreated and sent back
        to work, their chunks discarded."""
        refs = {s.inflight: s for s in self._slots if s.inflight is not None}
        done, _ = ray.wait(list(refs), num_returns=1, timeout=wait)
        finished = []
        for ref in done:
            slot = refs[ref]
            chunk = self._receive(slot, ref)
            if chunk is None:
                self._restarted(slot)
            else:
                finished.append((slot, chunk))
        self._reap_slow()
        return finished

    def _restarted(self, slot: _Slot) -> None:
        """Wait for ``slot``'s recreated actor, then give it its next chunk."""
        self._await_ready([slot])
        self._send(slot)

    def _reap_slow(self) -> None:
        """Actors whose chunk has taken more than ``ray.actor_timeout_s`` are failed."""
        now = time.perf_counter()
        for slot in self._slots:
            if slot.inflight is not None and now - slot.since > self._timeout:
                self._fail(slot, f"no chunk within ray.actor_timeout_s = {self._timeout:g} s")
                self._restarted(slot)

    def _poll(self) -> float:
        return min(1.0, self._timeout)


def _cause(e: Exception) -> str:
    """The first line of a Ray error: what killed the actor or what it raised."""
    text = str(e).strip()
    if isinstance(e, RayActorError):
        if "SIGKILL" in text or "killed" in text or "exited" in text or "died" in text:
            return "its process died"
        return "its process died: " + text.splitlines()[0]
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "EngramError" in line or "Error" in line:
            return line.strip()
    return lines[-1] if lines else type(e).__name__


def actor_pids() -> list:
    """Process ids of the Ray actors of the runs training in this process (a debugging aid:
    ``os.kill`` one to see a failure handled)."""
    return [pid for manager in list(_LIVE) for pid in manager.pids() if pid is not None]


def live_managers() -> list:
    """The ``RayActors`` of the runs training in this process."""
    return list(_LIVE)


__all__ = ["RayActors", "RolloutActor", "actor_pids", "live_managers"]

"""Engram's spaces as Gymnasium spaces, and Engram's flat f32 observations decoded into them.

Engram passes every observation as a flat float32 vector (one-hot for ``Discrete`` and
``MultiDiscrete``, Gymnasium's ``flatten``); the Gymnasium side gets the space's own form back:
an int for ``Discrete``, an int array for ``MultiDiscrete``, the shaped float32 array for ``Box``.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces


def _bounds(values: list, fill: float, shape: tuple) -> np.ndarray:
    # serde_json writes non-finite floats as null: an unbounded side of a Box.
    array = np.array([fill if v is None else v for v in values], dtype=np.float32)
    return array.reshape(shape)


def to_gym(space: dict) -> spaces.Space:
    """The Gymnasium space for an Engram space (its JSON form)."""
    kind = space["type"]
    if kind == "discrete":
        return spaces.Discrete(space["n"])
    if kind == "multi_discrete":
        return spaces.MultiDiscrete(np.array(space["nvec"], dtype=np.int64))
    if kind == "box":
        shape = tuple(space["shape"])
        return spaces.Box(
            low=_bounds(space["low"], -np.inf, shape),
            high=_bounds(space["high"], np.inf, shape),
            shape=shape,
            dtype=np.float32,
        )
    raise ValueError(f"unknown Engram space type {kind!r}")


class ObsDecoder:
    """Turns a batch of flat observations ``[N, flat_dim]`` into a batch of the space's values."""

    def __init__(self, space: dict):
        self.kind = space["type"]
        if self.kind == "discrete":
            self.flat_dim = space["n"]
        elif self.kind == "multi_discrete":
            nvec = list(space["nvec"])
            self.flat_dim = sum(nvec)
            self.starts = np.cumsum([0, *nvec[:-1]])
            self.nvec = nvec
        else:
            self.shape = tuple(space["shape"])
            self.flat_dim = int(np.prod(self.shape, dtype=np.int64))

    def int_buffer(self, num_envs: int) -> np.ndarray | None:
        """The ``int64 [N, k]`` array Rust writes discrete observations into (``None`` for Box)."""
        if self.kind == "discrete":
            return np.zeros((num_envs, 1), dtype=np.int64)
        if self.kind == "multi_discrete":
            return np.zeros((num_envs, len(self.nvec)), dtype=np.int64)
        return None

    def decode(self, flat: np.ndarray) -> np.ndarray:
        """``[N, flat_dim]`` float32 → ``[N, ...]`` in the space's dtype (a new array)."""
        n = flat.shape[0]
        if self.kind == "discrete":
            return flat.argmax(axis=1).astype(np.int64)
        if self.kind == "multi_discrete":
            out = np.empty((n, len(self.nvec)), dtype=np.int64)
            for j, (start, size) in enumerate(zip(self.starts, self.nvec)):
                out[:, j] = flat[:, start : start + size].argmax(axis=1)
            return out
        return flat.reshape((n, *self.shape)).copy()

    def view(self, flat: np.ndarray) -> np.ndarray:
        """A ``Box`` batch in its shape, as a view of ``flat`` (no copy)."""
        return flat.reshape((flat.shape[0], *self.shape))


class ActionEncoder:
    """Writes a batch of actions into the contiguous buffer the Rust side reads."""

    def __init__(self, space: dict, num_envs: int):
        kind = space["type"]
        if kind == "discrete":
            self.buffer = np.zeros(num_envs, dtype=np.int64)
        elif kind == "multi_discrete":
            self.buffer = np.zeros((num_envs, len(space["nvec"])), dtype=np.int64)
        else:
            self.buffer = np.zeros((num_envs, *space["shape"]), dtype=np.float32)
        self.flat = self.buffer.reshape(-1)

    def encode(self, actions) -> np.ndarray:
        """Copy ``actions`` (the batch's shape, or any shape of as many values) into the buffer."""
        actions = np.asarray(actions)
        if actions.size != self.buffer.size:
            raise ValueError(f"actions must have shape {self.buffer.shape}, got {actions.shape}")
        self.flat[...] = actions.reshape(-1)
        return self.buffer

"""``engram.make``: one Engram native env as a ``gymnasium.Env``."""

from __future__ import annotations

import copy
import json
from typing import Any

import gymnasium
import numpy as np

from engram import _engram
from engram._spaces import ActionEncoder, ObsDecoder, to_gym


_RENDER_MODES: dict = {}


def render_modes(env_id: str, kwargs_json: str) -> list:
    """The render modes env ``env_id`` supports: ``["ansi"]`` if it draws text,
    ``["rgb_array"]`` if it draws images, ``[]`` if neither (found once, on a probe copy)."""
    key = (env_id, kwargs_json)
    if key not in _RENDER_MODES:
        probe = _engram.NativeVecEnv(env_id, kwargs_json, 1, "disabled")
        probe.reset(0, np.zeros((1, _flat_dim(probe)), dtype=np.float32))
        frame = probe.render(0)
        _RENDER_MODES[key] = [] if frame is None else ["ansi"] if isinstance(frame, str) else ["rgb_array"]
    return _RENDER_MODES[key]


def _flat_dim(core) -> int:
    return ObsDecoder(json.loads(core.spec_json())["observation_space"]).flat_dim


def check_render_mode(env_id: str, kwargs_json: str, render_mode: str | None) -> list:
    """The env's render modes; a ``ValueError`` naming them if ``render_mode`` is not one."""
    modes = render_modes(env_id, kwargs_json)
    if render_mode is not None and render_mode not in modes:
        raise ValueError(
            f"{env_id} renders as {modes or 'nothing'}; render_mode={render_mode!r} is not one of them"
        )
    return modes


def render_frame(core: _engram.NativeVecEnv, i: int, render_mode: str | None):
    """Env ``i``'s picture in ``render_mode`` (``"ansi"`` text or an ``"rgb_array"``)."""
    if render_mode is None:
        return None
    frame = core.render(i)
    if frame is None or isinstance(frame, str):
        return frame
    height, width, pixels = frame
    return np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3).copy()


class EngramEnv(gymnasium.Env):
    """An Engram native env (any id of ``engram envs list``) stepped in Rust.

    ``reset(seed=s)`` seeds it as Engram (and Gymnasium, for CartPole-v1 and Pendulum-v1) does;
    ``reset()`` continues its RNG stream. The env applies its own time limit (``truncated``).
    Stepping after the episode ended, or an action outside the action space, is an
    :class:`engram.EngramError`.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 30}

    def __init__(self, env_id: str, render_mode: str | None = None, **kwargs: Any):
        kwargs_json = json.dumps(kwargs)
        self.core = _engram.NativeVecEnv(env_id, kwargs_json, 1, "disabled")
        modes = check_render_mode(env_id, kwargs_json, render_mode)
        self.metadata = {**self.metadata, "render_modes": modes}
        spec = json.loads(self.core.spec_json())
        self.engram_id = spec["id"]
        self.max_episode_steps = spec.get("max_episode_steps")
        self.render_mode = render_mode
        self.observation_space = to_gym(spec["observation_space"])
        self.action_space = to_gym(spec["action_space"])
        self._decoder = ObsDecoder(spec["observation_space"])
        self._actions = ActionEncoder(spec["action_space"], 1)
        self._obs = np.zeros((1, self._decoder.flat_dim), dtype=np.float32)
        self._final = np.zeros_like(self._obs)
        self._rewards = np.zeros(1, dtype=np.float64)
        self._flags = np.zeros((3, 1), dtype=np.bool_)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core.reset(seed, self._obs)
        return self._decoder.decode(self._obs)[0], {}

    def step(self, action):
        terminated, truncated, has_final = self._flags
        self.core.step(
            self._actions.encode(action),
            self._obs,
            self._rewards,
            terminated.view(np.uint8),
            truncated.view(np.uint8),
            self._final,
            has_final.view(np.uint8),
        )
        return (
            self._decoder.decode(self._obs)[0],
            float(self._rewards[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            {},
        )

    def render(self):
        return render_frame(self.core, 0, self.render_mode)


def make(env_id: str, render_mode: str | None = None, **kwargs: Any) -> EngramEnv:
    """Engram env ``env_id`` (e.g. ``"TMaze-Passive-v0"``) with its keyword arguments, as a
    ``gymnasium.Env``. ``gymnasium.make(f"engram/{env_id}", ...)`` gives the same env with
    Gymnasium's usual wrappers."""
    env = EngramEnv(env_id, render_mode=render_mode, **kwargs)
    name = f"engram/{env_id}"
    if name in gymnasium.registry:
        spec = copy.deepcopy(gymnasium.spec(name))
        spec.kwargs = {**spec.kwargs, "render_mode": render_mode, **kwargs}
        env.spec = spec
    return env


def list_envs() -> list[tuple[str, str]]:
    """``(id, summary)`` of every Engram env (built-ins and loaded plugins)."""
    return _engram.list_envs()


def load_plugin(path) -> list[str]:
    """Load an Engram env plugin library (``.so``); the ids it registered, usable with
    :func:`make`, :func:`engram.make_vec` and ``engram.train(env=...)``."""
    from engram._registration import register_envs

    ids = _engram.load_plugin(str(path))
    register_envs()
    return ids

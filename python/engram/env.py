"""``engram.make``: one Engram native env as a ``gymnasium.Env``."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium

from engram import _engram
from engram._native import NativeBatch


class EngramEnv(gymnasium.Env):
    """An Engram native env (any id of ``engram envs list``) stepped in Rust.

    ``reset(seed=s)`` seeds it as Engram (and Gymnasium, for CartPole-v1 and Pendulum-v1) does;
    ``reset()`` continues its RNG stream. The env applies its own time limit (``truncated``).
    Stepping after the episode ended, or an action outside the action space, is an
    :class:`engram.EngramError`.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 30}

    def __init__(self, env_id: str, render_mode: str | None = None, **kwargs: Any):
        self.batch = NativeBatch(env_id, kwargs, 1, "disabled")
        self.metadata = {**self.metadata, "render_modes": self.batch.check_render_mode(render_mode)}
        self.render_mode = render_mode
        self.engram_id = self.batch.spec["id"]
        self.max_episode_steps = self.batch.spec.get("max_episode_steps")
        self.observation_space = self.batch.observation_space
        self.action_space = self.batch.action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.batch.reset(seed)
        return self.batch.observations()[0], {}

    def step(self, action):
        b = self.batch
        b.step(action)
        return b.observations()[0], float(b.rewards[0]), bool(b.terminated[0]), bool(b.truncated[0]), {}

    def render(self):
        return self.batch.render(0, self.render_mode)


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

"""``NativeBatch``: Engram's ``NativeVecEnv`` with the numpy buffers it writes into and the codecs of its spaces (shared by ``engram.make`` and ``engram.make_vec``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from engram import _engram
from engram._spaces import ActionEncoder, ObsDecoder, to_gym

_RENDER_MODES: dict = {}


class NativeBatch:
    """``num_envs`` envs ``env_id`` stepped in Rust; after ``reset``/``step`` the results are in
    ``obs`` (flat float32), ``rewards`` (float64), ``terminated``, ``truncated``, and, for
    same-step autoreset, ``final_obs`` where ``has_final``."""

    def __init__(self, env_id: str, kwargs: dict[str, Any], num_envs: int, autoreset: str):
        self.env_id = env_id
        self.kwargs_json = json.dumps(kwargs)
        self.core = _engram.NativeVecEnv(env_id, self.kwargs_json, num_envs, autoreset)
        self.spec = json.loads(self.core.spec_json())
        self.observation_space = to_gym(self.spec["observation_space"])
        self.action_space = to_gym(self.spec["action_space"])
        self.decoder = ObsDecoder(self.spec["observation_space"])
        self._actions = ActionEncoder(self.spec["action_space"], num_envs)
        self.obs = np.zeros((num_envs, self.decoder.flat_dim), dtype=np.float32)
        # Discrete observations also as Gymnasium's ints, decoded in Rust.
        self.obs_int = self.decoder.int_buffer(num_envs)
        self.final_obs = np.zeros_like(self.obs)
        self.rewards = np.zeros(num_envs, dtype=np.float64)
        self.terminated, self.truncated, self.has_final = np.zeros((3, num_envs), dtype=np.bool_)
        self.core.bind(
            self.obs,
            self.obs_int,
            self.rewards,
            self.terminated.view(np.uint8),
            self.truncated.view(np.uint8),
            self.final_obs,
            self.has_final.view(np.uint8),
        )

    def reset(self, seed: int | None) -> None:
        """Reset every env (env ``i`` seeded with ``seed + i``)."""
        self.core.reset(seed)
        self.terminated[...] = self.truncated[...] = self.has_final[...] = False

    def step(self, actions) -> None:
        """Step every env with ``actions`` (anything numpy reshapes to the batch)."""
        self.core.step(self._actions.encode(actions))

    def observations(self, copy: bool = True) -> np.ndarray:
        """The batch of observations in the space's form: a new array, or with ``copy=False``
        the live buffer (overwritten by the next step)."""
        if self.obs_int is not None:
            ints = self.obs_int[:, 0] if self.decoder.kind == "discrete" else self.obs_int
            return ints.copy() if copy else ints
        return self.decoder.view(self.obs).copy() if copy else self.decoder.view(self.obs)

    def render_modes(self) -> list:
        """``["ansi"]`` if the env draws text, ``["rgb_array"]`` if images, ``[]`` if neither
        (found once per env and kwargs, on a probe copy)."""
        key = (self.env_id, self.kwargs_json)
        if key not in _RENDER_MODES:
            probe = NativeBatch(self.env_id, json.loads(self.kwargs_json), 1, "disabled")
            probe.reset(0)
            frame = probe.core.render(0)
            modes = [] if frame is None else ["ansi"] if isinstance(frame, str) else ["rgb_array"]
            _RENDER_MODES[key] = modes
        return _RENDER_MODES[key]

    def check_render_mode(self, render_mode: str | None) -> list:
        """The env's render modes; a ``ValueError`` naming them if ``render_mode`` is not one."""
        modes = self.render_modes()
        if render_mode is not None and render_mode not in modes:
            raise ValueError(
                f"{self.env_id} renders as {modes or 'nothing'}; "
                f"render_mode={render_mode!r} is not one of them"
            )
        return modes

    def render(self, i: int, render_mode: str | None):
        """Env ``i``'s picture in ``render_mode`` (``"ansi"`` text or an ``"rgb_array"``)."""
        if render_mode is None:
            return None
        frame = self.core.render(i)
        if frame is None or isinstance(frame, str):
            return frame
        height, width, pixels = frame
        return np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3).copy()

"""``engram.make_vec``: E Engram native envs as one ``gymnasium.vector.VectorEnv``, stepped in Rust.

One call into Rust steps every env and writes observations, rewards and flags into numpy
buffers: no Python loop over the envs. Autoreset follows Gymnasium's modes exactly (checked
against ``SyncVectorEnv`` in the tests): ``NEXT_STEP`` (Gymnasium's default) and
``SAME_STEP`` (Engram's; the ended episodes' last observations in ``infos["final_obs"]``).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from engram import _engram
from engram._spaces import ActionEncoder, ObsDecoder, to_gym
from engram.env import check_render_mode, render_frame

_MODES = {AutoresetMode.NEXT_STEP: "next_step", AutoresetMode.SAME_STEP: "same_step"}


class EngramVectorEnv(VectorEnv):
    """``num_envs`` copies of Engram env ``env_id``; env ``i`` is seeded with ``seed + i``.

    ``copy=False`` returns Box observations as a view of the internal buffer, overwritten by
    the next step (no allocation per step).
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int = 1,
        *,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        render_mode: str | None = None,
        **kwargs: Any,
    ):
        mode = AutoresetMode(autoreset_mode)
        if mode not in _MODES:
            raise ValueError(
                f"autoreset_mode {mode} is not supported by engram.make_vec; use "
                "AutoresetMode.NEXT_STEP (the default) or AutoresetMode.SAME_STEP"
            )
        kwargs.pop("max_episode_steps", None)  # Engram applies each env's own time limit
        kwargs_json = json.dumps(kwargs)
        self.core = _engram.NativeVecEnv(env_id, kwargs_json, num_envs, _MODES[mode])
        modes = check_render_mode(env_id, kwargs_json, render_mode)
        spec = json.loads(self.core.spec_json())
        self.num_envs = num_envs
        self.autoreset_mode = mode
        self.copy = copy
        self.render_mode = render_mode
        self.metadata = {"autoreset_mode": mode, "render_modes": modes}
        self.single_observation_space = to_gym(spec["observation_space"])
        self.single_action_space = to_gym(spec["action_space"])
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._decoder = ObsDecoder(spec["observation_space"])
        self._actions = ActionEncoder(spec["action_space"], num_envs)
        d = self._decoder.flat_dim
        self._obs = np.zeros((num_envs, d), dtype=np.float32)
        self._final = np.zeros((num_envs, d), dtype=np.float32)
        self._rewards = np.zeros(num_envs, dtype=np.float64)
        self._flags = np.zeros((3, num_envs), dtype=np.bool_)

    def reset(
        self,
        *,
        seed: int | Sequence[int] | None = None,
        options: dict[str, Any] | None = None,
    ):
        first = seed
        if seed is not None and not isinstance(seed, (int, np.integer)):
            seeds = [int(s) for s in seed]
            if len(seeds) != self.num_envs or any(
                s != seeds[0] + i for i, s in enumerate(seeds)
            ):
                raise ValueError(
                    "engram.make_vec seeds env i with seed + i: pass one int, or a list "
                    f"[s, s+1, …, s+{self.num_envs - 1}] (got {seeds})"
                )
            first = seeds[0]
        super().reset(seed=None if first is None else int(first))
        self.core.reset(None if first is None else int(first), self._obs)
        self._flags[...] = False
        return self._observations(), {}

    def step(self, actions):
        terminated, truncated, has_final = self._flags
        self.core.step(
            self._actions.encode(actions),
            self._obs,
            self._rewards,
            terminated.view(np.uint8),
            truncated.view(np.uint8),
            self._final,
            has_final.view(np.uint8),
        )
        infos: dict[str, Any] = {}
        # Only the envs whose episode ended (SAME_STEP), as SyncVectorEnv lays them out.
        for i in np.flatnonzero(has_final):
            final = self._decoder.decode(self._final[i : i + 1])[0]
            infos = self._add_info(infos, {"final_obs": final, "final_info": {}}, int(i))
        return (
            self._observations(),
            self._rewards.copy(),
            terminated.copy(),
            truncated.copy(),
            infos,
        )

    def _observations(self) -> np.ndarray:
        return self._decoder.decode(self._obs) if self.copy else self._decoder.view(self._obs)

    def render(self):
        return tuple(render_frame(self.core, i, self.render_mode) for i in range(self.num_envs))

    @property
    def faults(self) -> int:
        """Env faults contained so far (panics in an env's step)."""
        return self.core.faults()


def make_vec(
    env_id: str,
    num_envs: int = 1,
    *,
    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
    copy: bool = True,
    render_mode: str | None = None,
    **kwargs: Any,
) -> EngramVectorEnv:
    """``num_envs`` Engram envs ``env_id`` stepped together in Rust, as a Gymnasium
    ``VectorEnv``; ``kwargs`` are the env's own arguments."""
    return EngramVectorEnv(
        env_id,
        num_envs,
        autoreset_mode=autoreset_mode,
        copy=copy,
        render_mode=render_mode,
        **kwargs,
    )

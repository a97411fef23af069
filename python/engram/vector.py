"""``engram.make_vec``: E Engram native envs as one ``gymnasium.vector.VectorEnv``, stepped in Rust.

One call into Rust steps every env and writes observations, rewards and flags into numpy
buffers: no Python loop over the envs. Autoreset follows Gymnasium's modes exactly (checked
against ``SyncVectorEnv`` in the tests): ``NEXT_STEP`` (Gymnasium's default) and
``SAME_STEP`` (Engram's; the ended episodes' last observations in ``infos["final_obs"]``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from engram._native import NativeBatch

_MODES = {AutoresetMode.NEXT_STEP: "next_step", AutoresetMode.SAME_STEP: "same_step"}


class EngramVectorEnv(VectorEnv):
    """``num_envs`` copies of Engram env ``env_id``; env ``i`` is seeded with ``seed + i``.

    ``copy=False`` returns observations as a view of the internal buffer, overwritten by the
    next step (no allocation per step).
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
        self.batch = NativeBatch(env_id, kwargs, num_envs, _MODES[mode])
        self.num_envs = num_envs
        self.autoreset_mode = mode
        self.copy = copy
        self.render_mode = render_mode
        self.metadata = {
            "autoreset_mode": mode,
            "render_modes": self.batch.check_render_mode(render_mode),
        }
        self.single_observation_space = self.batch.observation_space
        self.single_action_space = self.batch.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

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
        self.batch.reset(None if first is None else int(first))
        return self._observations(), {}

    def step(self, actions):
        b = self.batch
        b.step(actions)
        infos: dict[str, Any] = {}
        # Only the envs whose episode ended (SAME_STEP), as SyncVectorEnv lays them out.
        for i in np.flatnonzero(b.has_final):
            final = b.decoder.decode(b.final_obs[i : i + 1])[0]
            infos = self._add_info(infos, {"final_obs": final, "final_info": {}}, int(i))
        return (
            self._observations(),
            b.rewards.copy(),
            b.terminated.copy(),
            b.truncated.copy(),
            infos,
        )

    def _observations(self) -> np.ndarray:
        return self.batch.observations(self.copy)

    def render(self):
        return tuple(self.batch.render(i, self.render_mode) for i in range(self.num_envs))

    @property
    def faults(self) -> int:
        """Env faults contained so far (panics in an env's step)."""
        return self.batch.core.faults()


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

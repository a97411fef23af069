"""MiniGrid memory tasks as Engram trains them: the 7x7x3 symbolic view (ImgObsWrapper) with its true bounds.

Used as `env.id = "python:scripts/python/minigrid_env.py:memory"` (configs/minigrid_memory_s7.toml)
and by scripts/bench_python_bridge.sh, for Engram's bridge and for SB3's SubprocVecEnv alike.
MiniGrid declares the view as Box(0, 255) but its cells hold small codes (object <= 10,
colour <= 5, state <= 2); declaring those bounds lets the CNN see inputs in [0, 1].
"""
import gymnasium
import minigrid  # noqa: F401 - registers the MiniGrid ids
import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.wrappers import ImgObsWrapper


class CodeBounds(gymnasium.ObservationWrapper):
    """The symbolic view with per-channel bounds (object, colour, state codes)."""

    def __init__(self, env):
        super().__init__(env)
        high = np.array([max(OBJECT_TO_IDX.values()), max(COLOR_TO_IDX.values()), max(STATE_TO_IDX.values())],
                        dtype=np.uint8)
        shape = env.observation_space.shape
        self.observation_space = gymnasium.spaces.Box(
            low=0, high=np.broadcast_to(high, shape).copy(), shape=shape, dtype=np.uint8)

    def observation(self, obs):
        return obs


def memory(size=7, **kwargs):
    """MiniGrid-MemoryS{size}-v0 with the symbolic 7x7x3 view."""
    return CodeBounds(ImgObsWrapper(gymnasium.make(f"MiniGrid-MemoryS{size}-v0", **kwargs)))

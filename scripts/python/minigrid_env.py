"""MiniGrid memory tasks as Engram trains them: the 7x7 symbolic view (ImgObsWrapper), as codes with their true bounds or one-hot.

Used as `env.id = "python:scripts/python/minigrid_env.py:memory"` (scripts/bench_python_bridge.sh,
for Engram's bridge and for SB3's SubprocVecEnv alike) and `...:memory_onehot`
(configs/minigrid_memory_s7.toml). MiniGrid declares the view as Box(0, 255) but its cells hold
small codes (object <= 10, colour <= 5, state <= 2); declaring those bounds lets the CNN see
inputs in [0, 1]. One-hot cells (11 + 6 + 3 = 20 channels) make a key and a ball two different
features instead of codes 0.5 and 0.6 of one channel.
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


class OneHotCells(gymnasium.ObservationWrapper):
    """The symbolic view with each cell's object, colour and state one-hot: [7, 7, 20] of 0/1."""

    def __init__(self, env):
        super().__init__(env)
        self.sizes = [len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX)]
        self.offsets = np.cumsum([0] + self.sizes[:-1])
        h, w, _ = env.observation_space.shape
        self.observation_space = gymnasium.spaces.Box(
            low=0, high=1, shape=(h, w, sum(self.sizes)), dtype=np.uint8)

    def observation(self, obs):
        h, w, _ = obs.shape
        out = np.zeros((h, w, sum(self.sizes)), dtype=np.uint8)
        rows, cols = np.indices((h, w))
        for channel, offset in enumerate(self.offsets):
            out[rows, cols, offset + obs[:, :, channel]] = 1
        return out


def memory_onehot(size=7, **kwargs):
    """MiniGrid-MemoryS{size}-v0 with the one-hot 7x7x20 view."""
    return OneHotCells(ImgObsWrapper(gymnasium.make(f"MiniGrid-MemoryS{size}-v0", **kwargs)))

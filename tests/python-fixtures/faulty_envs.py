"""Python env factories for Engram's bridge tests: CartPole that raises, exits or hangs once, and an unsupported space."""
import os
import time

import gymnasium
from gymnasium import spaces


class Faulty(gymnasium.Wrapper):
    """CartPole-v1 that fails (`mode`: raise, exit, hang, raise_always) at step `at` of its life."""

    def __init__(self, env, mode, at, marker):
        super().__init__(env)
        self.mode, self.at, self.marker, self.steps = mode, at, marker, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.at and (self.mode == "raise_always" or self.first()):
            if self.mode in ("raise", "raise_always"):
                raise RuntimeError("boom from the faulty test env")
            if self.mode == "exit":
                os._exit(3)
            if self.mode == "hang":
                time.sleep(3600)
        return self.env.step(action)

    def first(self):
        """Whether this is the first env (of all processes) to get here: creates the marker atomically."""
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False


def faulty(mode="raise", at=5, marker="/nonexistent"):
    return Faulty(gymnasium.make("CartPole-v1"), mode, at, marker)


class TextObs(gymnasium.Env):
    """An env whose observation space Engram cannot encode."""

    observation_space = spaces.Dict({"pos": spaces.Discrete(3), "note": spaces.Text(5)})
    action_space = spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return {"pos": 0, "note": "a"}, {}

    def step(self, action):
        return {"pos": 0, "note": "a"}, 0.0, True, False, {}


def text_obs():
    return TextObs()

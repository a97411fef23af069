"""Registers every built-in Engram env with Gymnasium as ``engram/<id>``."""

import gymnasium

from engram import _engram

NAMESPACE = "engram"


def register_envs() -> None:
    """Register ``engram/<id>`` for each env in Engram's registry (idempotent)."""
    for env_id, _summary in _engram.list_envs():
        name = f"{NAMESPACE}/{env_id}"
        if "/" in env_id or name in gymnasium.registry:
            # A plugin's `plugin/Id-v0` has no Gymnasium form (one namespace per id);
            # `engram.make` takes it directly.
            continue
        gymnasium.register(
            id=name,
            entry_point="engram.env:EngramEnv",
            vector_entry_point="engram.vector:EngramVectorEnv",
            # No max_episode_steps: Engram applies each env's own time limit.
            kwargs={"env_id": env_id},
        )

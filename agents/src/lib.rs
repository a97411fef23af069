//! Engram agents: policies, rollouts and learners built on engram-envs and engram-memory.

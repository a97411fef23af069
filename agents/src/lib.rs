//! Engram agents: policies, rollouts and learners built on engram-envs and engram-memory.
//!
//! Laid out by role (as Sample Factory's `algo/`): [`policy`] (encoder, core, heads, the action
//! distributions), [`rollout`] (chunks, the sequence layout, actors and their threads), [`algo`]
//! (the shared learner, losses, GAE, V-trace, PPO, APPO/IMPALA), [`run`] (the `train` entry,
//! session, loops, run directory, checkpoints, evaluation), [`logging`] and [`supervised`] (the
//! copy/denoise harness of `engram bench memory`). Dependencies point
//! one way: `run` → `algo` → `rollout` → `policy`; `config` and `error` are used by all.

pub mod algo;
pub mod config;
pub mod error;
pub mod logging;
pub mod policy;
pub mod rollout;
pub mod run;
pub mod supervised;

pub use config::TrainConfig;
pub use error::{AgentError, Result};
pub use run::{train, FaultCounts, TrainOptions, TrainSummary};

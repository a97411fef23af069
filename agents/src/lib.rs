//! Engram agents: policies, rollouts and learners built on engram-envs and engram-memory.

pub mod actor;
pub mod actor_pool;
pub mod async_actors;
pub mod async_trainer;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod diagnostics;
pub mod error;
pub mod eval;
pub mod gae;
pub mod logging;
pub mod policy;
pub mod policy_input;
pub mod ppo;
pub mod rollout;
pub mod trainer;
pub mod vtrace;
pub mod vtrace_learner;

pub use config::TrainConfig;
/// Global gradient-norm clipping, shared with the supervised harness in engram-memory.
pub use engram_memory::grad_norm;
pub use error::{AgentError, Result};
pub use trainer::{train, FaultCounts, TrainOptions, TrainSummary};

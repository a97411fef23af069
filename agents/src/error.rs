//! Typed errors of the agents crate.

use thiserror::Error;

/// Everything that can stop training, evaluation or a checkpoint operation.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// The environment layer failed.
    #[error(transparent)]
    Env(#[from] engram_envs::EnvError),
    /// The env failed too often; the run stopped with a checkpoint (the message says where).
    #[error("{0}")]
    EnvGaveUp(String),
    /// The memory core failed.
    #[error(transparent)]
    Memory(#[from] engram_memory::MemoryError),
    /// The policy cannot handle the environment's spaces.
    #[error("environment `{id}`: {message}")]
    Unsupported {
        /// Environment id.
        id: String,
        /// What is not supported and what to do.
        message: String,
    },
    /// A loss became NaN or infinite.
    #[error("{loss} is {value} at update {update}; {saved}. Lower the learning rate or check rewards and observations for NaN/huge values")]
    NonFiniteLoss {
        /// Which loss term (``loss `policy` ``, `the gradient norm`).
        loss: String,
        /// Its value.
        value: f32,
        /// Update index.
        update: u64,
        /// Where the last good checkpoint and the diverged state are.
        saved: String,
    },
    /// The policy weights became NaN or infinite (found before a checkpoint would be saved).
    #[error("the policy weights are not finite (NaN or inf) at update {update}; {saved}. Lower the learning rate or check rewards and observations for NaN/huge values")]
    NonFiniteWeights {
        /// Update index.
        update: u64,
        /// Where the last good checkpoint and the diverged state are.
        saved: String,
    },
    /// Reading or writing run files failed.
    #[error("{what} `{path}`: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The run directory cannot be used: it holds another run, or another process uses it.
    #[error("{0}")]
    RunDir(String),
    /// A checkpoint could not be read or does not match the run.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An actor thread failed.
    #[error("actor: {0}")]
    Actor(String),
    /// Remote (Ray) actors failed beyond what the backend contains.
    #[error("remote actors: {0}")]
    Remote(String),
    /// A supervised-harness run (`engram bench memory`) produced a non-finite loss.
    #[error("non-finite loss {loss} at step {step}: lower the learning rate or enable clipping")]
    SupervisedNonFinite {
        /// The optimisation step at which the loss was found.
        step: usize,
        /// The loss value.
        loss: f32,
    },
    /// TensorBoard event files or `metrics.jsonl` could not be written.
    #[error("logging: {0}")]
    Log(#[from] crate::logging::LogError),
}

/// Result alias of the agents crate.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    /// An I/O error with its context.
    pub fn io(
        what: &'static str,
        path: impl AsRef<std::path::Path>,
        source: std::io::Error,
    ) -> Self {
        AgentError::Io {
            what,
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

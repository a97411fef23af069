//! Actors outside this process (the Ray backend): the interface the training loops drive them through.
//!
//! The loops stay in Rust: a [`RemoteBackend`] (the Python package implements it on Ray)
//! starts a stage's [`RemoteActors`]; the learner publishes serialised weights with a version
//! and takes whole [`Chunk`]s back, one per actor per update (`ppo`) or as they come
//! (`appo`/`impala`). Faults (a dead or slow actor) are the backend's to contain: it discards
//! the unfinished chunk, recreates the actor with the current weights and counts the restart.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use burn::tensor::Device;

use super::actor::Actor;
use super::chunk::Chunk;
use super::layout::SequenceLayout;
use crate::config::TrainConfig;
use crate::error::{AgentError, Result};
use crate::policy::{ActionKind, Policy};

/// What a stage's remote actors are started with.
#[derive(Debug, Clone)]
pub struct RemoteStart {
    /// The run's whole config (TOML): the actors build their envs and policy from it.
    pub config_toml: String,
    /// Env keyword arguments of the current curriculum stage (a JSON object).
    pub kwargs_json: String,
    /// Seed base of this stage's actors (actor `i` seeds its envs from it as a thread would).
    pub seed: u64,
    /// Number of actor processes (`run.actor_threads`).
    pub actors: usize,
    /// `true` for `ppo` (one chunk from every actor per update), `false` for streaming.
    pub synchronous: bool,
}

impl RemoteStart {
    /// The start of a stage of `config` with `kwargs` and actor seed base `seed`.
    pub fn new(
        config: &TrainConfig,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        seed: u64,
    ) -> Result<Self> {
        Ok(RemoteStart {
            config_toml: config.to_toml()?,
            kwargs_json: serde_json::Value::Object(kwargs.clone()).to_string(),
            seed,
            actors: config.run.actor_threads,
            synchronous: config.run.algo == crate::config::Algo::Ppo,
        })
    }
}

/// Counters of the remote actors since the previous [`RemoteActors::stats`] call (rates) or
/// since they started (totals).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteStats {
    /// Actors alive now.
    pub actors: usize,
    /// Actors recreated after dying or timing out (total).
    pub restarts: u64,
    /// Chunks discarded whole because their actor failed before finishing them (total).
    pub chunks_discarded: u64,
    /// Env steps per second of each actor's last chunk (time inside `collect`), by actor slot.
    pub actor_steps_per_sec: Vec<f64>,
    /// Bytes through the object store since the last call: chunks in, weights out.
    pub object_store_bytes: u64,
    /// Seconds the last weight publication took (serialising into the object store).
    pub broadcast_seconds: f64,
    /// Chunks finished and waiting to be taken (streaming).
    pub queue_depth: usize,
    /// Share of wall time the actors spent collecting since the last call.
    pub actor_busy: f64,
}

/// A stage's running remote actors. Dropping them stops them.
pub trait RemoteActors: Send {
    /// Make `weights` (the acting policy's record, [`crate::policy::Policy::to_bytes`]) with
    /// `version` the ones every chunk started from now on acts with.
    fn publish(&mut self, weights: Vec<u8>, version: u64) -> Result<()>;
    /// One whole chunk from every actor, in actor order, collected with the published weights
    /// (synchronous mode); a failed actor is recreated and collects again.
    fn collect_all(&mut self) -> Result<Vec<Chunk>>;
    /// The next finished chunk of any actor, waiting at most `wait` (streaming mode).
    fn next_chunk(&mut self, wait: Duration) -> Result<Option<Chunk>>;
    /// Counters for the logs.
    fn stats(&mut self) -> Result<RemoteStats>;
}

/// Starts remote actors; the Python package provides the Ray one.
pub trait RemoteBackend: Send + Sync {
    /// Start the actors of one curriculum stage.
    fn start(&self, start: &RemoteStart) -> Result<Box<dyn RemoteActors>>;
}

/// A shared [`RemoteBackend`], as [`crate::TrainOptions`] holds it.
#[derive(Clone)]
pub struct RemoteHandle(pub Arc<dyn RemoteBackend>);

impl fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RemoteHandle")
    }
}

/// The Rust side of one remote actor process: its [`Actor`] (VecEnv, policy copy on the CPU,
/// core states) built from a [`RemoteStart`]'s config and stage, as an actor thread would be.
pub struct RemoteWorker {
    actor: Actor,
    /// A freshly built policy of the run's shape: published weights are loaded into a copy.
    template: Policy,
    layout: SequenceLayout,
}

impl RemoteWorker {
    /// Actor `index` (recreated `generation` times) of the stage described by `config_toml`,
    /// `kwargs_json` and `seed` (the fields of [`RemoteStart`]).
    pub fn new(
        config_toml: &str,
        kwargs_json: &str,
        seed: u64,
        index: usize,
        generation: u64,
    ) -> Result<Self> {
        let config = TrainConfig::from_toml(config_toml, &[])?;
        config.env.prepare()?;
        let kwargs = match serde_json::from_str(kwargs_json) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return Err(AgentError::Config(format!(
                    "remote actor: env kwargs must be a JSON object, got {kwargs_json}"
                )))
            }
        };
        let spec = engram_envs::make(&config.env.id, &kwargs)?.spec().clone();
        let action = ActionKind::for_space(&spec.id, &spec.action_space)?;
        // Remote actors act on the CPU whatever device the learner trains on.
        let device = Device::flex();
        let template =
            Policy::for_space(&config.policy, &spec.observation_space, &action, &device)?;
        let actor = Actor::for_run(
            &config,
            &kwargs,
            template.clone(),
            &device,
            seed,
            index,
            generation,
        )?;
        Ok(RemoteWorker {
            actor,
            template,
            layout: config.sequence_layout()?,
        })
    }

    /// Act with the weights of [`Policy::to_bytes`] from now on, as policy `version`.
    pub fn set_weights(&mut self, weights: &[u8], version: u64) -> Result<()> {
        let policy = self.template.clone().with_bytes(weights)?;
        self.actor.set_policy(policy, version);
        Ok(())
    }

    /// The acting weights, as [`Policy::to_bytes`] gives them.
    pub fn weights(&self) -> Result<Vec<u8>> {
        self.actor.policy().to_bytes()
    }

    /// The version of the weights acting now.
    pub fn policy_version(&self) -> u64 {
        self.actor.policy_version()
    }

    /// Collect one chunk (the run's rollout or chunk length).
    pub fn collect(&mut self) -> Result<Chunk> {
        self.actor.collect(self.layout)
    }
}

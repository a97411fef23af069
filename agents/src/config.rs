//! The training configuration: TOML sections `env`, `policy`, `ppo`, `run`, with `--set` overrides.

use engram_memory::CoreConfig;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::rollout::{FullQueue, SequenceLayout};

/// Everything a training run needs. Unknown keys are errors that name the valid keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Which environment and how many copies.
    pub env: EnvSection,
    /// Network shape.
    #[serde(default)]
    pub policy: PolicySection,
    /// Recurrent PPO hyperparameters.
    #[serde(default)]
    pub ppo: PpoSection,
    /// Run length, seed, device, logging and checkpoints.
    #[serde(default)]
    pub run: RunSection,
    /// The asynchronous runtime and V-trace (used when `run.algo` is `appo` or `impala`).
    #[serde(default, rename = "async")]
    pub async_: AsyncSection,
    /// Ray actors (used when `run.backend` is `ray`).
    #[serde(default)]
    pub ray: RaySection,
}

/// Where the actors run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Actor threads in the training process.
    #[default]
    Local,
    /// Ray actors (one Python process each, hosting Engram's Rust actor) on a Ray cluster;
    /// driven by the Python package (`engram.ray`), see `[ray]`.
    Ray,
}

/// `[ray]`: the Ray backend's actors (`run.actor_threads` of them) and their faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaySection {
    /// Cluster to join (`"auto"`, `"ray://host:10001"`, `"host:6379"`); unset: `RAY_ADDRESS`
    /// if set, else a local Ray instance is started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// CPUs Ray reserves for each actor process.
    pub num_cpus_per_actor: f64,
    /// Other Ray resources each actor needs (e.g. `{ "actor_node" = 1 }`).
    pub resources_per_actor: std::collections::BTreeMap<String, f64>,
    /// Resources of the learner: empty runs it in the driver process; e.g. `{ num_gpus = 1 }`
    /// runs the driver (learner, logging, checkpoints) in a Ray actor holding them
    /// (`engram.ray.train`; from the CLI use `ray job submit --entrypoint-num-gpus`).
    pub learner_resources: std::collections::BTreeMap<String, f64>,
    /// Actor processes that die (or time out) are recreated with the current weights up to
    /// this many times in all; one more failure stops the run with a checkpoint.
    pub max_actor_restarts: u64,
    /// Seconds an actor may take for one chunk (or to start) before it is killed and
    /// recreated: a slow actor never stalls the learner longer.
    pub actor_timeout_s: f64,
}

impl Default for RaySection {
    fn default() -> Self {
        RaySection {
            address: None,
            num_cpus_per_actor: 1.0,
            resources_per_actor: Default::default(),
            learner_resources: Default::default(),
            max_actor_restarts: 10,
            actor_timeout_s: 120.0,
        }
    }
}

/// The training algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// Synchronous recurrent PPO with GAE: actors fill one rollout, then the learner updates.
    #[default]
    Ppo,
    /// Asynchronous PPO: the clipped objective on V-trace advantages and targets (Sample Factory).
    Appo,
    /// Asynchronous IMPALA: V-trace policy gradient and value regression (Espeholt et al. 2018).
    Impala,
}

/// What the learner does with a chunk whose policy lag exceeds `async.max_policy_lag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LagMode {
    /// Drop the chunk (counted in `async/dropped_lag`).
    #[default]
    Drop,
    /// Train on it; V-trace's clipped importance weights correct for the lag.
    Correct,
}

/// `[async]`: the actor–learner runtime of `appo`/`impala`.
///
/// Each of the `run.actor_threads` actors steps `env.num_envs / run.actor_threads` envs and
/// sends chunks of `chunk_len` steps; the learner trains on `batch_chunks` chunks per update,
/// each env row of a chunk being one training sequence (from the state stored at its start).
/// The `[ppo]` section supplies the optimiser, epochs, minibatches and loss coefficients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncSection {
    /// Steps per env in one trajectory chunk.
    pub chunk_len: usize,
    /// Capacity of the actor-to-learner chunk queue.
    pub queue_capacity: usize,
    /// When the queue is full: `drop_oldest` (actors never wait), `wait`, or `auto` (the
    /// default: `wait` unless the machine has a core for every actor thread and the learner).
    pub full_queue: FullQueue,
    /// Chunks per learner update (0: one per actor thread).
    pub batch_chunks: usize,
    /// Largest policy lag (learner version − acting version) trained on as is.
    pub max_policy_lag: u64,
    /// `drop` or `correct` chunks beyond `max_policy_lag`.
    pub lag_mode: LagMode,
    /// V-trace ρ̄ (clip of the importance weights in the value targets).
    pub rho_bar: f64,
    /// V-trace c̄ (clip of the trace weights).
    pub c_bar: f64,
    /// V-trace clip of the importance weights in IMPALA's policy gradient.
    pub pg_rho_bar: f64,
    /// V-trace λ multiplying the traces (1 in the paper).
    pub lambda: f64,
    /// Actor threads that panic are restarted with new envs up to this many times in all.
    pub max_actor_restarts: u64,
}

impl Default for AsyncSection {
    fn default() -> Self {
        AsyncSection {
            chunk_len: 32,
            queue_capacity: 4,
            full_queue: FullQueue::Auto,
            batch_chunks: 0,
            max_policy_lag: 8,
            lag_mode: LagMode::Drop,
            rho_bar: 1.0,
            c_bar: 1.0,
            pg_rho_bar: 1.0,
            lambda: 1.0,
            max_actor_restarts: 100,
        }
    }
}

/// `[env]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    /// Registry id, e.g. `CartPole-v1`.
    pub id: String,
    /// Keyword arguments of the environment.
    #[serde(default)]
    pub kwargs: toml::Table,
    /// Environments stepped in parallel (split across actor threads).
    #[serde(default = "default_num_envs")]
    pub num_envs: usize,
    /// Env plugin libraries to load before `id` is looked up (`engram train --plugin PATH`
    /// appends here, so `resume` and `eval` load them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<std::path::PathBuf>,
    /// SHA-256 (hex) of each of `plugins`, in the same order, recorded when the run started;
    /// `resume` and `eval` warn when a library has changed since.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugin_hashes: Vec<String>,
    /// Python envs (`gymnasium:<id>`, `python:<module>:<factory>`): the interpreter their
    /// workers run (default `$ENGRAM_PYTHON`, else `python3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_interpreter: Option<std::path::PathBuf>,
    /// Python modules imported before the env is made (their Gymnasium registrations), e.g.
    /// `["minigrid"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python_imports: Vec<String>,
    /// `module:callable` Gymnasium wrappers applied in order, e.g.
    /// `["minigrid.wrappers:ImgObsWrapper"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python_wrappers: Vec<String>,
    /// Python worker processes (default: one per core, at most one per env).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_workers: Option<usize>,
    /// Seconds a Python worker may take to answer a step before it is killed and restarted.
    #[serde(default = "default_python_timeout_s")]
    pub python_timeout_s: f64,
    /// Contained Python faults (exceptions, dead or hung workers) after which the run stops
    /// with a checkpoint.
    #[serde(default = "default_python_max_failures")]
    pub python_max_failures: u64,
    /// Earlier stages of a curriculum: until `until_step` env steps, train on the env made with
    /// `kwargs` laid over the ones above; after the last stage, on `kwargs` alone (the target
    /// task, which `engram eval` uses). Every stage must have the same spaces.
    #[serde(default)]
    pub curriculum: Vec<CurriculumStage>,
}

/// One stage of `env.curriculum`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurriculumStage {
    /// The stage lasts until this many env steps.
    pub until_step: u64,
    /// Keyword arguments that replace the target ones during the stage.
    pub kwargs: toml::Table,
}

fn default_python_timeout_s() -> f64 {
    60.0
}

fn default_python_max_failures() -> u64 {
    100
}

impl EnvSection {
    /// Everything the env needs before it is made: the plugins of `plugins` (see
    /// [`EnvSection::load_plugins`]) and the Python env settings (`python_*`).
    pub fn prepare(&self) -> Result<()> {
        self.load_plugins()?;
        if !(self.python_timeout_s.is_finite() && self.python_timeout_s > 0.0) {
            return Err(AgentError::Config(format!(
                "env.python_timeout_s = {} must be a positive number of seconds",
                self.python_timeout_s
            )));
        }
        if self.python_workers == Some(0) {
            return Err(AgentError::Config(
                "env.python_workers = 0: use at least 1 (or leave it out for one per core)".into(),
            ));
        }
        engram_envs::python::configure(engram_envs::python::PythonSettings {
            interpreter: self.python_interpreter.clone(),
            imports: self.python_imports.clone(),
            wrappers: self.python_wrappers.clone(),
            sys_path: vec![],
            workers: self.python_workers,
            timeout: std::time::Duration::from_secs_f64(self.python_timeout_s),
            max_failures: self.python_max_failures,
        });
        Ok(())
    }

    /// Record the content hash of every library of `plugins` (a new run does this before its
    /// config is written); a library that cannot be read is an error naming it.
    pub fn record_plugin_hashes(&mut self) -> Result<()> {
        self.plugin_hashes = self
            .plugins
            .iter()
            .map(|p| plugin_hash(p))
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Load the env plugins of `plugins` into the process-wide registry (once per path). A
    /// library that is gone is an error naming it; one whose content differs from its recorded
    /// hash is loaded with a warning on stderr (the run continues with the library as it is).
    pub fn load_plugins(&self) -> Result<()> {
        for (path, then) in self.plugins.iter().zip(
            self.plugin_hashes
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None)),
        ) {
            let now = plugin_hash(path)?;
            if let Some(then) = then.filter(|then| **then != now) {
                eprintln!(
                    "engram: warning: env plugin {} has changed since this run started \
                     (SHA-256 {}…, now {}…); going on with the library as it is now",
                    path.display(),
                    &then[..then.len().min(12)],
                    &now[..12]
                );
            }
        }
        engram_envs::load_plugins(&self.plugins)?;
        Ok(())
    }

    /// The curriculum stage at `step` (`curriculum.len()` for the target task).
    pub fn stage_at(&self, step: u64) -> usize {
        self.curriculum
            .iter()
            .position(|s| step < s.until_step)
            .unwrap_or(self.curriculum.len())
    }

    /// Keyword arguments of stage `stage` (the target ones overlaid with the stage's).
    pub fn kwargs_of_stage(&self, stage: usize) -> serde_json::Map<String, serde_json::Value> {
        let mut table = self.kwargs.clone();
        if let Some(s) = self.curriculum.get(stage) {
            for (k, v) in &s.kwargs {
                table.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_value(&table)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default()
    }

    /// The kwargs of the target task (after the last curriculum stage).
    pub fn target_kwargs(&self) -> serde_json::Map<String, serde_json::Value> {
        self.kwargs_of_stage(self.curriculum.len())
    }
}

/// SHA-256 of a plugin library's content, as lowercase hex.
fn plugin_hash(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| {
        AgentError::Config(format!(
            "env.plugins: cannot read the plugin library `{}` ({e}); build it there again, or \
             fix the path in env.plugins (a run's config.toml records the paths it was started with)",
            path.display()
        ))
    })?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// `[policy]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Hidden sizes of the observation encoder MLP (tanh).
    #[serde(default = "default_encoder")]
    pub encoder: Vec<usize>,
    /// The memory core (`kind = "lstm" | "gru" | "rims" | "brims" | "screened" | "rel_lstm"`);
    /// its `input_size` is filled in from the encoder.
    #[serde(default = "default_core")]
    pub core: CoreConfig,
    /// Feed the previous action and reward to the policy beside the observation.
    #[serde(default)]
    pub prev_action_reward: bool,
    /// The actor and critic heads see the encoder's features of the current input beside the
    /// core's output (as pomdp-baselines and Memory-RL do), so the core only has to carry what
    /// the current observation does not show.
    #[serde(default)]
    pub obs_skip: bool,
    /// The convolutional encoder used for image observations (a `Box` of shape `[H, W, C]`),
    /// before the MLP layers of `encoder`.
    #[serde(default)]
    pub cnn: CnnSection,
}

/// `[policy.cnn]`: conv layers (ReLU, no padding) over `[C, H, W]` images scaled to [0, 1].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CnnSection {
    /// Output channels per layer.
    pub channels: Vec<usize>,
    /// Square kernel size per layer.
    pub kernels: Vec<usize>,
    /// Stride per layer.
    pub strides: Vec<usize>,
}

impl Default for CnnSection {
    /// The Nature-DQN layout's first two layers (16×8×8 stride 4, 32×4×4 stride 2), as in
    /// CleanRL's and Sample Factory's small Atari encoders.
    fn default() -> Self {
        CnnSection {
            channels: vec![16, 32],
            kernels: vec![8, 4],
            strides: vec![4, 2],
        }
    }
}

/// `[ppo]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoSection {
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over the run.
    pub anneal_lr: bool,
    /// Steps per env per rollout.
    pub rollout_len: usize,
    /// Length of the training sequences (truncated BPTT), burn-in included.
    pub seq_len: usize,
    /// Leading steps of each sequence that only warm up the recurrent state (no loss).
    pub burn_in: usize,
    /// Recompute the stored sequence-initial states with the current weights each epoch.
    pub refresh_states: bool,
    /// Passes over the rollout per update.
    pub epochs: usize,
    /// Minibatches per epoch (each made of whole sequences).
    pub minibatches: usize,
    /// Discount.
    pub gamma: f64,
    /// GAE lambda.
    pub gae_lambda: f64,
    /// Policy ratio clip.
    pub clip_coef: f64,
    /// Clip the value loss around the old values.
    pub clip_vloss: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f64,
    /// Value loss coefficient.
    pub vf_coef: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Normalise advantages per minibatch.
    pub norm_adv: bool,
    /// Stop an update's epochs once one ends with a mean approximate KL above this (CleanRL's
    /// and SB3's `target_kl`, e.g. 0.02); unset: always `epochs` epochs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_kl: Option<f64>,
}

/// `[run]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Environment steps to train for.
    pub total_steps: u64,
    /// Seed of weights, environments and sampling.
    pub seed: u64,
    /// `cpu` (burn flex), `libtorch` or `cuda:N`.
    pub device: String,
    /// Parent directory of run directories.
    pub runs_dir: String,
    /// Run name (default: env id, core kind and seed).
    pub name: Option<String>,
    /// Actor threads stepping environments.
    pub actor_threads: usize,
    /// Save a checkpoint every this many updates (0: only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
    /// `ppo` (synchronous), `appo` or `impala` (asynchronous, V-trace; see `[async]`).
    pub algo: Algo,
    /// Start from the policy weights of this run directory's checkpoint (fresh optimiser and
    /// counters), e.g. the previous stage of a curriculum.
    pub init_from: Option<String>,
    /// Where the actors run: `local` (threads in this process) or `ray` (Ray actors, see
    /// `[ray]`; `run.actor_threads` is then the number of actor processes).
    pub backend: Backend,
}

fn default_num_envs() -> usize {
    8
}
fn default_encoder() -> Vec<usize> {
    vec![64]
}
fn default_core() -> CoreConfig {
    CoreConfig::default_for("lstm", 0, 64).expect("lstm is a core kind")
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            encoder: default_encoder(),
            core: default_core(),
            prev_action_reward: false,
            obs_skip: false,
            cnn: CnnSection::default(),
        }
    }
}

impl Default for PpoSection {
    fn default() -> Self {
        PpoSection {
            learning_rate: 2.5e-4,
            anneal_lr: true,
            rollout_len: 128,
            seq_len: 16,
            burn_in: 0,
            refresh_states: false,
            epochs: 4,
            minibatches: 4,
            gamma: 0.99,
            gae_lambda: 0.95,
            clip_coef: 0.2,
            clip_vloss: true,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            norm_adv: true,
            target_kl: None,
        }
    }
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            total_steps: 150_000,
            seed: 1,
            device: "cpu".into(),
            runs_dir: "runs".into(),
            name: None,
            actor_threads: 1,
            checkpoint_every: 25,
            algo: Algo::Ppo,
            init_from: None,
            backend: Backend::Local,
        }
    }
}

impl TrainConfig {
    /// Parse TOML text, apply `section.key=value` overrides, and validate.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| AgentError::Config(e.to_string()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let config: TrainConfig = match table.clone().try_into() {
            Ok(config) => config,
            Err(e) => {
                let e: toml::de::Error = e;
                let message = e.message().to_string();
                return Err(AgentError::Config(match key_of_error(&table) {
                    Some(key) => match overrides
                        .iter()
                        .find(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == key))
                    {
                        Some(o) => format!("--set `{o}`: `{key}`: {message}"),
                        None => format!("`{key}`: {message}"),
                    },
                    None => message,
                }));
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML (what a run directory stores).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| AgentError::Config(e.to_string()))
    }

    /// Check values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        self.validate_numbers()?;
        let p = &self.ppo;
        let bad = |m: String| Err(AgentError::Config(m));
        if self.env.num_envs == 0 {
            return bad("env.num_envs must be at least 1".into());
        }
        if self.run.actor_threads == 0 || self.env.num_envs % self.run.actor_threads != 0 {
            return bad(format!(
                "run.actor_threads = {} must be at least 1 and divide env.num_envs = {}",
                self.run.actor_threads, self.env.num_envs
            ));
        }
        if self
            .env
            .curriculum
            .windows(2)
            .any(|w| w[0].until_step >= w[1].until_step)
        {
            return bad("env.curriculum stages must have increasing until_step".into());
        }
        if self.run.algo != Algo::Ppo {
            return self.validate_async();
        }
        let sequences = self.env.num_envs * self.sequence_layout()?.count();
        if p.minibatches == 0 || p.minibatches > sequences {
            return bad(format!("ppo.minibatches = {} must be in 1..={sequences} (the number of sequences per rollout)", p.minibatches));
        }
        if self.policy.encoder.contains(&0) {
            return bad("policy.encoder sizes must be positive".into());
        }
        Ok(())
    }

    /// Check every numeric hyperparameter of `[ppo]`, `[async]` and `[run]` for its range
    /// (NaN is never in range); the error names the key, its value and the range.
    fn validate_numbers(&self) -> Result<()> {
        let p = &self.ppo;
        let a = &self.async_;
        let positive = |v: f64| v > 0.0;
        let non_negative = |v: f64| v >= 0.0 && v.is_finite();
        let unit = |v: f64| (0.0..=1.0).contains(&v);
        let checks: [(&str, f64, bool, &str); 11] = [
            ("ppo.learning_rate", p.learning_rate, positive(p.learning_rate) && p.learning_rate.is_finite(), "a finite number > 0"),
            ("ppo.gamma", p.gamma, unit(p.gamma), "in [0, 1]"),
            ("ppo.gae_lambda", p.gae_lambda, unit(p.gae_lambda), "in [0, 1]"),
            ("ppo.clip_coef", p.clip_coef, positive(p.clip_coef) && p.clip_coef.is_finite(), "a finite number > 0 (the policy ratio is clipped to [1 - clip_coef, 1 + clip_coef])"),
            ("ppo.ent_coef", p.ent_coef, non_negative(p.ent_coef), "a finite number ≥ 0 (a negative entropy bonus drives the policy to collapse)"),
            ("ppo.vf_coef", p.vf_coef, non_negative(p.vf_coef), "a finite number ≥ 0"),
            ("ppo.max_grad_norm", p.max_grad_norm, positive(p.max_grad_norm), "> 0 (the global gradient-norm clip; inf turns clipping off)"),
            ("async.rho_bar", a.rho_bar, positive(a.rho_bar), "> 0 (inf: no clipping)"),
            ("async.c_bar", a.c_bar, positive(a.c_bar), "> 0 (inf: no clipping)"),
            ("async.pg_rho_bar", a.pg_rho_bar, positive(a.pg_rho_bar), "> 0 (inf: no clipping)"),
            ("async.lambda", a.lambda, unit(a.lambda), "in [0, 1]"),
        ];
        if let Some(kl) = p.target_kl {
            if !(kl > 0.0 && kl.is_finite()) {
                return Err(AgentError::Config(format!(
                    "ppo.target_kl = {kl} must be a finite number > 0 (leave it out for no early stop)"
                )));
            }
        }
        let r = &self.ray;
        let ray_checks = [
            (
                "ray.num_cpus_per_actor",
                r.num_cpus_per_actor,
                non_negative(r.num_cpus_per_actor),
                "a finite number ≥ 0",
            ),
            (
                "ray.actor_timeout_s",
                r.actor_timeout_s,
                positive(r.actor_timeout_s) && r.actor_timeout_s.is_finite(),
                "a finite number of seconds > 0",
            ),
        ];
        for (key, value, ok, range) in checks.into_iter().chain(ray_checks) {
            if !ok {
                return Err(AgentError::Config(format!(
                    "{key} = {value} must be {range}"
                )));
            }
        }
        for (table, resources) in [
            ("ray.resources_per_actor", &r.resources_per_actor),
            ("ray.learner_resources", &r.learner_resources),
        ] {
            if let Some((name, v)) = resources.iter().find(|(_, v)| !non_negative(**v)) {
                return Err(AgentError::Config(format!(
                    "{table}.{name} = {v} must be a finite number ≥ 0"
                )));
            }
        }
        let counts: [(&str, u64); 6] = [
            ("ppo.epochs", p.epochs as u64),
            ("ppo.rollout_len", p.rollout_len as u64),
            ("ppo.seq_len", p.seq_len as u64),
            ("run.total_steps", self.run.total_steps),
            ("async.chunk_len", a.chunk_len as u64),
            ("async.queue_capacity", a.queue_capacity as u64),
        ];
        for (key, value) in counts {
            if value == 0 {
                return Err(AgentError::Config(format!("{key} must be at least 1")));
            }
        }
        Ok(())
    }

    /// Checks of the asynchronous algorithms (sequences are whole chunk rows).
    fn validate_async(&self) -> Result<()> {
        let bad = |m: String| Err(AgentError::Config(m));
        let sequences = self.batch_chunks() * self.envs_per_actor();
        let p = &self.ppo;
        if p.minibatches == 0 || p.minibatches > sequences {
            return bad(format!(
                "ppo.minibatches = {} must be in 1..={sequences} (async.batch_chunks × envs per actor: \
                 each env row of a chunk is one sequence)",
                p.minibatches
            ));
        }
        if self.policy.encoder.contains(&0) {
            return bad("policy.encoder sizes must be positive".into());
        }
        Ok(())
    }

    /// Envs stepped by each actor thread.
    pub fn envs_per_actor(&self) -> usize {
        self.env.num_envs / self.run.actor_threads
    }

    /// Chunks per asynchronous update.
    pub fn batch_chunks(&self) -> usize {
        if self.async_.batch_chunks == 0 {
            self.run.actor_threads
        } else {
            self.async_.batch_chunks
        }
    }

    /// How each env's rollout is cut into training sequences: `ppo.rollout_len`, `ppo.seq_len`
    /// and `ppo.burn_in` for `ppo`; one whole `async.chunk_len` sequence per chunk row for
    /// `appo`/`impala`. The one place a run's layout is made.
    pub fn sequence_layout(&self) -> Result<SequenceLayout> {
        let p = &self.ppo;
        match self.run.algo {
            Algo::Ppo => SequenceLayout::new(p.rollout_len, p.seq_len, p.burn_in),
            Algo::Appo | Algo::Impala => SequenceLayout::whole(self.async_.chunk_len),
        }
    }

    /// Environment steps per update.
    pub fn steps_per_update(&self) -> u64 {
        match self.run.algo {
            Algo::Ppo => (self.env.num_envs * self.ppo.rollout_len) as u64,
            Algo::Appo | Algo::Impala => {
                (self.batch_chunks() * self.envs_per_actor() * self.async_.chunk_len) as u64
            }
        }
    }

    /// Updates in the whole run.
    pub fn total_updates(&self) -> u64 {
        self.run
            .total_steps
            .div_ceil(self.steps_per_update())
            .max(1)
    }
}

/// The dotted key a deserialisation error of `table` is about: `Table::try_into` does not
/// track keys, so the table is written out and parsed again (that parser does), and the key is
/// read off the line the error's span points at and the `[section]` header above it.
fn key_of_error(table: &toml::Table) -> Option<String> {
    let text = toml::to_string(table).ok()?;
    let err = toml::from_str::<TrainConfig>(&text).err()?;
    let at = err.span()?.start;
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let section = text[..line_start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']'))
        .map(|s| s.trim_matches(['[', ']']).to_string());
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key.to_string(),
    })
}

/// A command-line value read as TOML (`500`, `1e-3`, `true`, `[1, 2]`, `"x"`), else as a string.
pub fn read_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Apply one `section.key=value` override; the value is read as TOML, else as a string.
pub fn apply_override(table: &mut toml::Table, text: &str) -> Result<()> {
    let (path, raw) = text.split_once('=').ok_or_else(|| {
        AgentError::Config(format!("--set `{text}` must look like section.key=value"))
    })?;
    let value = read_value(raw);
    let keys: Vec<&str> = path.trim().split('.').collect();
    let (last, parents) = keys
        .split_last()
        .ok_or_else(|| AgentError::Config(format!("--set `{text}` has an empty key")))?;
    let mut node = table;
    for k in parents {
        node = node
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| AgentError::Config(format!("--set `{text}`: `{k}` is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_plugins_round_trip_and_are_omitted_when_empty() {
        let c = TrainConfig::from_toml("[env]\nid = \"CartPole-v1\"\n", &[]).expect("valid");
        assert!(c.env.plugins.is_empty());
        assert!(!c.to_toml().expect("toml").contains("plugins"));
        let c = TrainConfig::from_toml(
            "[env]\nid = \"p/X-v0\"\nplugins = [\"a/libx.so\"]\n",
            &["env.num_envs=2".into()],
        )
        .expect("valid");
        assert_eq!(c.env.plugins, [std::path::PathBuf::from("a/libx.so")]);
        let again = TrainConfig::from_toml(&c.to_toml().expect("toml"), &[]).expect("round trip");
        assert_eq!(again.env.plugins, c.env.plugins);
        let err = TrainConfig::from_toml("[env]\nid = \"X-v0\"\nplugin = \"a\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugins"), "{err}");
    }

    #[test]
    fn defaults_and_overrides() {
        let c = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n",
            &["ppo.learning_rate=1e-3".into(), "run.name=abc".into()],
        )
        .expect("valid");
        assert_eq!(c.ppo.learning_rate, 1e-3);
        assert_eq!(c.run.name.as_deref(), Some("abc"));
        assert_eq!(c.policy.core.kind(), "lstm");
        assert_eq!(c.sequence_layout().expect("valid").count(), 8);
        let again = TrainConfig::from_toml(&c.to_toml().expect("toml"), &[]).expect("round trip");
        assert_eq!(again.ppo.learning_rate, 1e-3);
    }

    #[test]
    fn unknown_keys_name_the_valid_ones() {
        let err = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n[ppo]\nlerning_rate = 0.1\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("lerning_rate") && err.contains("learning_rate"),
            "{err}"
        );
        let err = TrainConfig::from_toml("[env]\nid = \"CartPole-v1\"\n", &["ppo.clip=0.1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`clip`") && err.contains("clip_coef"), "{err}");
        let err = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n[policy.core]\nkind = \"lstn\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lstn") && err.contains("lstm"), "{err}");
    }

    #[test]
    fn curriculum_stages_overlay_the_target_kwargs_in_order() {
        let c = TrainConfig::from_toml(
            "[env]\nid = \"TMaze-Passive-v0\"\nkwargs = { corridor_length = 100, penalty = -0.5 }\n\
             curriculum = [{ until_step = 10, kwargs = { corridor_length = 5 } }, \
             { until_step = 20, kwargs = { corridor_length = 50 } }]\n",
            &[],
        )
        .expect("valid");
        let e = &c.env;
        assert_eq!(
            (e.stage_at(0), e.stage_at(9), e.stage_at(10), e.stage_at(25)),
            (0, 0, 1, 2)
        );
        assert_eq!(e.kwargs_of_stage(0)["corridor_length"], 5);
        assert_eq!(e.kwargs_of_stage(0)["penalty"], -0.5);
        assert_eq!(e.kwargs_of_stage(2)["corridor_length"], 100);
        let err = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\ncurriculum = [{ until_step = 10, kwargs = {} }, \
             { until_step = 5, kwargs = {} }]\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("increasing until_step"), "{err}");
    }

    #[test]
    fn every_numeric_hyperparameter_is_range_checked_naming_the_key() {
        let err = |set: &str| {
            TrainConfig::from_toml("[env]\nid = \"CartPole-v1\"\n", &[set.into()])
                .unwrap_err()
                .to_string()
        };
        for (set, key) in [
            ("ppo.learning_rate=nan", "ppo.learning_rate = NaN"),
            ("ppo.learning_rate=inf", "ppo.learning_rate = inf"),
            ("ppo.learning_rate=0", "ppo.learning_rate = 0"),
            ("ppo.max_grad_norm=-1", "ppo.max_grad_norm = -1"),
            ("ppo.target_kl=0", "ppo.target_kl = 0"),
            ("ppo.target_kl=nan", "ppo.target_kl = NaN"),
            ("ppo.max_grad_norm=nan", "ppo.max_grad_norm = NaN"),
            ("ppo.clip_coef=nan", "ppo.clip_coef = NaN"),
            ("ppo.clip_coef=-0.2", "ppo.clip_coef = -0.2"),
            ("ppo.ent_coef=-100", "ppo.ent_coef = -100"),
            ("ppo.vf_coef=nan", "ppo.vf_coef = NaN"),
            ("ppo.gamma=1.5", "ppo.gamma = 1.5"),
            ("ppo.gae_lambda=nan", "ppo.gae_lambda = NaN"),
            ("async.rho_bar=nan", "async.rho_bar = NaN"),
            ("async.c_bar=0", "async.c_bar = 0"),
            ("async.pg_rho_bar=-1", "async.pg_rho_bar = -1"),
            ("async.lambda=2", "async.lambda = 2"),
            ("ppo.epochs=0", "ppo.epochs must be at least 1"),
            ("run.total_steps=0", "run.total_steps must be at least 1"),
            ("async.chunk_len=0", "async.chunk_len must be at least 1"),
        ] {
            let e = err(set);
            assert!(e.contains(key), "{set}: {e}");
        }
        // `inf` turns a clip off and is allowed.
        let c = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n",
            &["ppo.max_grad_norm=inf".into(), "async.rho_bar=inf".into()],
        )
        .expect("valid");
        assert!(c.ppo.max_grad_norm.is_infinite());
    }

    #[test]
    fn type_errors_name_the_key_and_the_override() {
        let e = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n",
            &["ppo.epochs=\"eight\"".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--set `ppo.epochs=\"eight\"`") && e.contains("`ppo.epochs`: invalid type"),
            "{e}"
        );
        let e = TrainConfig::from_toml("[env]\nid = \"CartPole-v1\"\nnum_envs = -3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`env.num_envs`") && !e.contains("--set"), "{e}");
    }

    #[test]
    fn sequence_geometry_is_checked() {
        let err = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n[ppo]\nrollout_len = 100\nseq_len = 16\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rollout_len = 100"), "{err}");
        let c = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n[ppo]\nrollout_len = 124\nseq_len = 16\nburn_in = 4\n",
            &[],
        )
        .expect("valid");
        assert_eq!(c.sequence_layout().expect("valid").count(), 10);
    }
}

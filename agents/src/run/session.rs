//! A training session: set-up or resume, counters, logging, checkpoints and the curriculum, shared by the synchronous and asynchronous loops.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Device;
use engram_envs::{make, EnvSpec};

use super::checkpoint::{self, Counters};
use super::device::device_for;
use super::module_activity::{log_module_activity, ActivityProbe};
use super::resources::{free_disk, machine_memory, MemoryEstimate};
use super::run_dir::{prepare_run_dir, RunLock};
use super::watch::DivergenceWatch;
use crate::algo::{Learner, UpdateStats};
use crate::config::TrainConfig;
use crate::error::{AgentError, Result};
use crate::logging::{tags, Progress, ProgressMode, RunLogger, SessionStatus, RETURN_WINDOW};
use crate::policy::{ActionKind, Policy, PolicyShape};
use crate::rollout::{Chunk, RemoteActors, RemoteHandle, RemoteStart, RemoteStats};

/// How a run is driven from outside.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Set to stop after the current update with a checkpoint (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
    /// A new run may replace a run already in the run directory (deleting its files).
    pub overwrite: bool,
    /// Starts the actors of a `run.backend = "ray"` run (the Python package supplies it).
    pub remote: Option<RemoteHandle>,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Environment steps done.
    pub global_step: u64,
    /// Updates done.
    pub updates: u64,
    /// Mean return of the last 100 episodes.
    pub recent_return: f64,
    /// Stopped by the stop flag before the end.
    pub interrupted: bool,
    /// Whole-loop environment steps per second of this session.
    pub sps: f64,
    /// Faults contained (for `ppo` only `env_panics`; the rest are the asynchronous runtime's).
    pub faults: FaultCounts,
    /// Resumed a run that had already done all its updates: nothing was trained or saved.
    pub already_finished: bool,
    /// What the run warned about while it trained (each also printed when it happened).
    pub warnings: Vec<String>,
}

impl TrainSummary {
    /// The report of a resumed run that had already done all its steps (nothing is trained,
    /// saved or logged).
    pub(crate) fn already_finished(run_dir: &Path, counters: &Counters) -> Self {
        TrainSummary {
            run_dir: run_dir.to_path_buf(),
            global_step: counters.global_step,
            updates: counters.update,
            recent_return: f64::NAN,
            interrupted: false,
            sps: 0.0,
            faults: FaultCounts::default(),
            already_finished: true,
            warnings: Vec::new(),
        }
    }
}

/// Faults the asynchronous runtime contained, and chunks it did not train on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Env panics contained (env reset, training went on).
    pub env_panics: u64,
    /// Actor threads restarted after a panic.
    pub actor_restarts: u64,
    /// Chunks dropped because the queue was full.
    pub dropped_full: u64,
    /// Chunks dropped for a policy lag above `async.max_policy_lag`.
    pub dropped_lag: u64,
    /// Chunks the learner trained on (asynchronous and remote actors).
    pub chunks_used: u64,
}

/// Everything a run shares between the synchronous and asynchronous loops.
pub(crate) struct Session<'a> {
    pub config: &'a TrainConfig,
    pub options: &'a TrainOptions,
    pub run_dir: PathBuf,
    /// Env arguments of the current curriculum stage.
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    /// The current curriculum stage (`env.curriculum.len()` for the target task).
    pub stage: usize,
    /// The device without autodiff (actors, probes).
    pub device: Device,
    pub learner: Learner,
    pub counters: Counters,
    pub logger: RunLogger,
    pub progress: Progress,
    pub recent: VecDeque<f64>,
    pub session_start: Instant,
    pub elapsed_before: f64,
    pub start_steps: u64,
    pub interrupted: bool,
    /// Env seeds differ per session, so a resumed run does not replay its first episodes.
    pub session_seed: u64,
    pub modular: bool,
    /// Async runtime counters for the summary.
    pub faults: FaultCounts,
    /// The update and directory of the checkpoint this session saved last (a second save at
    /// the same update, e.g. the final one right after a periodic one, is not written again).
    last_saved: Option<(u64, PathBuf)>,
    /// Warnings raised so far (printed when raised, repeated in the summary).
    pub warnings: Vec<String>,
    /// Watches the updates for divergence that stays finite.
    watch: DivergenceWatch,
    /// The largest |episode return| of this session (the scale value losses are judged by).
    largest_return: f64,
    /// The run directory's lock, held while the session lives.
    _lock: RunLock,
}

/// The memory `config` needs with `spec`'s env, refused with the estimate by part when it does
/// not fit the machine; nothing is allocated before this check.
pub(super) fn checked_memory_estimate(
    config: &TrainConfig,
    spec: &EnvSpec,
) -> Result<MemoryEstimate> {
    let action = ActionKind::for_space(&spec.id, &spec.action_space)?;
    let shape = PolicyShape::for_space(&config.policy, &spec.observation_space, &action)?;
    let estimate = MemoryEstimate::new(config, &shape, spec.observation_space.flat_dim());
    if let Some((available, total)) = machine_memory() {
        estimate.check_fits(available, total)?;
    }
    Ok(estimate)
}

/// The error of a `run.backend = "ray"` run started without the Python package's backend.
pub(super) fn no_remote_backend() -> AgentError {
    AgentError::Config(
        "run.backend = \"ray\" runs its actors on Ray through Engram's Python package: start it \
         with `python -m engram train …`, `engram.train(...)` or `engram.ray.train(...)` (pip \
         install the package in python/ and `ray`), or set run.backend = \"local\""
            .into(),
    )
}

/// A fresh learner for `config` with `spec`'s env on `device` (autodiff added), seeded with
/// `run.seed`.
pub(super) fn new_learner(
    config: &TrainConfig,
    spec: &EnvSpec,
    device: &Device,
) -> Result<Learner> {
    let action = ActionKind::for_space(&spec.id, &spec.action_space)?;
    device.seed(config.run.seed);
    let train_device = device.clone().autodiff();
    let policy = Policy::for_space(
        &config.policy,
        &spec.observation_space,
        &action,
        &train_device,
    )?;
    let layout = config.sequence_layout()?;
    Ok(Learner::new(
        policy,
        config.ppo.clone(),
        layout,
        train_device,
    ))
}

impl<'a> Session<'a> {
    /// Check `config`, pick its device, prepare (or, resuming, reload) the run in `run_dir`.
    pub fn open(
        config: &'a TrainConfig,
        run_dir: &Path,
        options: &'a TrainOptions,
    ) -> Result<Self> {
        config.validate()?;
        // An unusable device is refused before anything is written.
        let device = device_for(&config.run.device)?;
        let target_kwargs = config.env.target_kwargs();
        let probe = make(&config.env.id, &target_kwargs)?;
        let spec = probe.spec().clone();
        for stage in 0..config.env.curriculum.len() {
            let other = make(&config.env.id, &config.env.kwargs_of_stage(stage))?;
            let o = other.spec();
            if o.observation_space != spec.observation_space || o.action_space != spec.action_space
            {
                return Err(AgentError::Config(format!(
                    "env.curriculum stage {stage} makes an env with other spaces ({} / {}) than the target \
                     task ({} / {}); every stage must keep the spaces",
                    o.observation_space, o.action_space, spec.observation_space, spec.action_space
                )));
            }
        }
        let estimate = checked_memory_estimate(config, &spec)?;
        let existing = run_dir
            .ancestors()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                }
            })
            .find(|d| d.is_dir())
            .unwrap_or(Path::new("."));
        if let Some(free) = free_disk(existing) {
            estimate.check_disk(run_dir, free)?;
        }
        let mut learner = new_learner(config, &spec, &device)?;
        // Everything above only reads: a config the env or the policy refuses leaves no run
        // directory behind. From here on the directory is locked.
        let lock = prepare_run_dir(config, run_dir, options.resume, options.overwrite)?;
        let mut counters = Counters {
            update: 0,
            global_step: 0,
            episodes: 0,
            elapsed_secs: 0.0,
        };
        if let (Some(from), false) = (&config.run.init_from, options.resume) {
            learner.policy = checkpoint::load_weights(Path::new(from), learner.policy.clone())?;
        }
        if options.resume {
            let (policy, optim, c) = checkpoint::load(
                run_dir,
                learner.policy.clone(),
                std::mem::replace(&mut learner.optim, burn::optim::AdamConfig::new().init()),
            )?;
            learner.policy = policy;
            learner.optim = optim;
            counters = c;
        }
        let mut logger = if options.resume {
            RunLogger::resume(run_dir, counters.global_step)?
        } else {
            RunLogger::create(run_dir)?
        };
        logger.hparams_start(config, counters.global_step);
        let session_seed = config
            .run
            .seed
            .wrapping_add(counters.update.wrapping_mul(1_000_003));
        let stage = config.env.stage_at(counters.global_step);
        Ok(Session {
            config,
            options,
            run_dir: run_dir.to_path_buf(),
            kwargs: config.env.kwargs_of_stage(stage),
            stage,
            device,
            learner,
            progress: if options.progress {
                Progress::new(config.run.total_steps, counters.global_step)
            } else {
                Progress::with_writer(
                    config.run.total_steps,
                    counters.global_step,
                    Box::new(std::io::sink()),
                    ProgressMode::Silent,
                )
            },
            recent: VecDeque::new(),
            session_start: Instant::now(),
            elapsed_before: counters.elapsed_secs,
            start_steps: counters.global_step,
            counters,
            logger,
            interrupted: false,
            session_seed,
            modular: config.policy.core.is_modular(),
            faults: FaultCounts::default(),
            last_saved: None,
            warnings: Vec::new(),
            watch: DivergenceWatch::default(),
            largest_return: 0.0,
            _lock: lock,
        })
    }

    /// Move to the curriculum stage of the current step; `true` if it changed (actors must
    /// then be rebuilt with [`Session::kwargs`]).
    pub fn advance_stage(&mut self) -> bool {
        let stage = self.config.env.stage_at(self.counters.global_step);
        if stage == self.stage {
            return false;
        }
        self.stage = stage;
        self.kwargs = self.config.env.kwargs_of_stage(stage);
        if self.options.progress {
            self.progress.println(&format!(
                "engram: curriculum stage {} of {} from step {}: {}",
                stage + 1,
                self.config.env.curriculum.len() + 1,
                self.counters.global_step,
                serde_json::Value::Object(self.kwargs.clone())
            ));
        }
        true
    }

    /// Start the remote actors of the current stage (`run.backend = "ray"`).
    pub fn start_remote(&self) -> Result<Box<dyn RemoteActors>> {
        let backend = self.options.remote.as_ref().ok_or_else(no_remote_backend)?;
        let start = RemoteStart::new(self.config, &self.kwargs, self.actor_seed())?;
        let mut actors = backend.0.start(&start)?;
        actors.publish(
            self.learner.acting_policy().to_bytes()?,
            self.counters.update,
        )?;
        Ok(actors)
    }

    /// Log the remote actors' counters at `step` (restarts so far include earlier stages').
    pub fn log_remote(&mut self, stats: &RemoteStats, restarts_before: u64, step: u64) {
        let log = &mut self.logger;
        log.scalar(tags::RAY_ACTORS, stats.actors as f64, step);
        log.scalar(
            tags::RAY_ACTOR_RESTARTS,
            (restarts_before + stats.restarts) as f64,
            step,
        );
        log.scalar(
            tags::RAY_CHUNKS_DISCARDED,
            stats.chunks_discarded as f64,
            step,
        );
        log.scalar(
            tags::RAY_OBJECT_STORE_BYTES,
            stats.object_store_bytes as f64,
            step,
        );
        log.scalar(
            tags::RAY_WEIGHT_BROADCAST_SECONDS,
            stats.broadcast_seconds,
            step,
        );
        let sps: Vec<f32> = stats
            .actor_steps_per_sec
            .iter()
            .map(|&v| v as f32)
            .collect();
        log.histogram(tags::RAY_ACTOR_SPS, &sps, step);
        for (i, v) in stats.actor_steps_per_sec.iter().enumerate() {
            log.scalar(&format!("{}{i}", tags::RAY_ACTOR_SPS_PREFIX), *v, step);
        }
    }

    /// Seed base of the actors of the current stage.
    pub fn actor_seed(&self) -> u64 {
        self.session_seed
            .wrapping_add((self.stage as u64).wrapping_mul(0x1000_0000))
    }

    /// The learning rate of the next update: annealed linearly over the env steps (not the
    /// update count, so that a resumed run whose `env.num_envs` changed still ends at 0 at
    /// `run.total_steps`).
    pub fn learning_rate(&self) -> f64 {
        let frac = if self.config.ppo.anneal_lr {
            1.0 - self.counters.global_step as f64 / self.config.run.total_steps as f64
        } else {
            1.0
        };
        self.config.ppo.learning_rate * frac.max(0.0)
    }

    /// Log the episodes finished in `chunks` at `step`.
    pub fn record_episodes(&mut self, chunks: &[Chunk], step: u64) {
        for ch in chunks {
            for ep in &ch.episodes {
                self.counters.episodes += 1;
                self.logger
                    .scalar(tags::EPISODIC_RETURN, ep.episode_return, step);
                self.logger
                    .scalar(tags::EPISODIC_LENGTH, ep.length as f64, step);
                self.progress.record_episode(ep.episode_return);
                self.largest_return = self.largest_return.max(ep.episode_return.abs());
                self.recent.push_back(ep.episode_return);
                if self.recent.len() > RETURN_WINDOW {
                    self.recent.pop_front();
                }
            }
        }
    }

    /// Print `text` as a warning now and keep it for the summary (each text once).
    pub fn warn(&mut self, text: String) {
        if !self.warnings.contains(&text) {
            self.progress.println(&format!("engram: warning: {text}"));
            self.warnings.push(text);
        }
    }

    /// Log an update's losses and rates, the module diagnostics when due, flush, show progress
    /// and checkpoint when due; `counters` must already hold the new update and step.
    pub fn after_update(&mut self, stats: &UpdateStats, lr: f64) -> Result<()> {
        let step = self.counters.global_step;
        let update = self.counters.update;
        let elapsed = self.session_start.elapsed().as_secs_f64();
        let sps = (step - self.start_steps) as f64 / elapsed.max(1e-9);
        let log = &mut self.logger;
        log.scalar(tags::SPS, sps, step);
        log.scalar(tags::LEARNING_RATE, lr, step);
        log.scalar(tags::POLICY_LOSS, stats.policy_loss as f64, step);
        log.scalar(tags::VALUE_LOSS, stats.value_loss as f64, step);
        log.scalar(tags::ENTROPY, stats.entropy as f64, step);
        log.scalar(tags::APPROX_KL, stats.approx_kl as f64, step);
        log.scalar(tags::CLIPFRAC, stats.clipfrac as f64, step);
        log.scalar(
            tags::EXPLAINED_VARIANCE,
            stats.explained_variance as f64,
            step,
        );
        log.scalar(tags::GRAD_NORM, stats.grad_norm as f64, step);
        log.scalar(tags::EPOCHS, stats.epochs as f64, step);
        log.scalar(tags::BEHAVIOUR_KL, stats.behaviour_kl as f64, step);
        let discrete = matches!(
            self.learner.policy.action_kind(),
            ActionKind::Categorical(_)
        );
        for warning in self
            .watch
            .observe(stats, update, discrete, self.largest_return)
        {
            self.warn(warning);
        }
        if let Some(explosion) = self.learner.take_explosion() {
            let max_norm = self.learner.config().max_grad_norm;
            if let Some(warning) = self.watch.observe_explosion(&explosion, update, max_norm) {
                self.warn(warning);
            }
        }
        let last = step >= self.config.run.total_steps;
        if self.modular && (update % 10 == 1 || last) {
            let probe = ActivityProbe {
                env_id: &self.config.env.id,
                kwargs: &self.kwargs,
                seed: self.config.run.seed,
                max_steps: 2_000,
            };
            log_module_activity(
                &mut self.logger,
                &self.learner.acting_policy(),
                &probe,
                step,
                &self.device,
            )?;
        }
        self.logger.flush()?;
        if self.options.progress {
            self.progress.update(step);
        }
        let every = self.config.run.checkpoint_every;
        if every > 0 && update % every == 0 {
            self.save_checkpoint()?;
        }
        Ok(())
    }

    /// Save weights, optimiser state and counters (with the time trained so far) as a new
    /// checkpoint, unless this session already saved one at this update.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        if let Some((update, dir)) = &self.last_saved {
            if *update == self.counters.update {
                return Ok(dir.clone());
            }
        }
        if !checkpoint::weights_are_finite(&self.learner.policy) {
            let saved = self.save_diverged_state()?;
            return Err(AgentError::NonFiniteWeights {
                update: self.counters.update,
                saved,
            });
        }
        self.counters.elapsed_secs =
            self.elapsed_before + self.session_start.elapsed().as_secs_f64();
        let dir = checkpoint::save(
            &self.run_dir,
            &self.learner.policy,
            &self.learner.optim,
            self.counters,
        )?;
        self.last_saved = Some((self.counters.update, dir.clone()));
        Ok(dir)
    }

    /// Save the state of a diverged run beside the checkpoints (`diverged-<update>/`, which
    /// resume never loads); returns where the last good checkpoint and that state are.
    pub fn save_diverged_state(&mut self) -> Result<String> {
        self.logger
            .hparams_end(self.counters.global_step, SessionStatus::Failure);
        self.counters.elapsed_secs =
            self.elapsed_before + self.session_start.elapsed().as_secs_f64();
        let diverged = checkpoint::save_diverged(
            &self.run_dir,
            &self.learner.policy,
            &self.learner.optim,
            self.counters,
        )?;
        let good = match checkpoint::latest(&self.run_dir)? {
            Some(dir) => format!(
                "the last good checkpoint {} is kept (resume continues from it)",
                dir.display()
            ),
            None => "no checkpoint had been saved before".into(),
        };
        Ok(format!(
            "{good}; the diverged state was saved beside it in {} (never resumed from)",
            diverged.display()
        ))
    }

    /// Save the final checkpoint and report.
    pub fn finish(mut self) -> Result<TrainSummary> {
        if self.options.progress {
            self.progress.finish();
        }
        self.save_checkpoint()?;
        let status = if self.interrupted {
            SessionStatus::Running
        } else {
            SessionStatus::Success
        };
        self.logger.hparams_end(self.counters.global_step, status);
        self.logger.flush()?;
        let elapsed = self.session_start.elapsed().as_secs_f64();
        Ok(TrainSummary {
            run_dir: self.run_dir,
            global_step: self.counters.global_step,
            updates: self.counters.update,
            recent_return: if self.recent.is_empty() {
                f64::NAN
            } else {
                self.recent.iter().sum::<f64>() / self.recent.len() as f64
            },
            interrupted: self.interrupted,
            sps: (self.counters.global_step - self.start_steps) as f64 / elapsed.max(1e-9),
            faults: self.faults,
            already_finished: false,
            warnings: self.warnings,
        })
    }
}

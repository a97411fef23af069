//! Training runs: set-up, resume, logging and checkpoints shared by all algorithms; the synchronous PPO loop.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Device;
use engram_envs::make;
use rand::SeedableRng;
use rand_pcg::Pcg64;

use crate::actor::Actor;
use crate::actor_pool::ActorPool;
use crate::checkpoint::{self, Counters};
use crate::config::{Algo, TrainConfig};
pub use crate::device::device_for;
use crate::diagnostics::{log_module_activity, ActivityProbe};
use crate::error::{AgentError, Result};
use crate::logging::{tags, Progress, RunLogger};
use crate::policy::{ActionKind, Policy};
use crate::ppo::{Learner, UpdateStats};
use crate::rollout::{Chunk, SequenceLayout};

/// File name of the resolved configuration inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";

/// How a run is driven from outside.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Set to stop after the current update with a checkpoint (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// Show a progress line on stderr.
    pub progress: bool,
    /// Continue from the run directory's checkpoint.
    pub resume: bool,
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
    /// Faults met by the asynchronous runtime (all zero for `ppo`).
    pub faults: FaultCounts,
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
    /// Chunks the learner trained on.
    pub chunks_used: u64,
}

/// Create (or, when resuming, check) a run directory and store the resolved config in it.
pub fn prepare_run_dir(config: &TrainConfig, run_dir: &Path, resume: bool) -> Result<()> {
    std::fs::create_dir_all(run_dir).map_err(|e| {
        AgentError::io(
            "cannot create the run directory (choose another run.runs_dir or fix its permissions)",
            run_dir,
            e,
        )
    })?;
    let path = run_dir.join(CONFIG_FILE);
    if !resume {
        std::fs::write(&path, config.to_toml()?).map_err(|e| {
            AgentError::io(
                "cannot write into the run directory (check its permissions)",
                &path,
                e,
            )
        })?;
    }
    Ok(())
}

/// Train (or resume) the run in `run_dir` with `config` (synchronous PPO, or APPO/IMPALA).
pub fn train(config: &TrainConfig, run_dir: &Path, options: &TrainOptions) -> Result<TrainSummary> {
    let mut session = Session::open(config, run_dir, options)?;
    let outcome = match config.run.algo {
        Algo::Ppo => run_sync(&mut session),
        Algo::Appo | Algo::Impala => crate::async_trainer::run_async(&mut session),
    };
    match outcome {
        Ok(()) => session.finish(),
        Err(AgentError::NonFiniteLoss {
            loss,
            value,
            update,
            ..
        }) => {
            let dir = session.save_checkpoint()?;
            let _ = session.logger.flush();
            Err(AgentError::NonFiniteLoss {
                loss,
                value,
                update,
                checkpoint: dir.display().to_string(),
            })
        }
        Err(e) => Err(e),
    }
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
}

impl<'a> Session<'a> {
    fn open(config: &'a TrainConfig, run_dir: &Path, options: &'a TrainOptions) -> Result<Self> {
        config.validate()?;
        // An unusable device is refused before anything is written.
        let device = device_for(&config.run.device)?;
        prepare_run_dir(config, run_dir, options.resume)?;
        let target_kwargs = crate::eval::kwargs_of(config);
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
        let action = ActionKind::for_space(&spec.id, &spec.action_space)?;
        device.seed(config.run.seed);
        let train_device = device.clone().autodiff();
        let policy = Policy::for_space(
            &config.policy,
            &spec.observation_space,
            &action,
            &train_device,
        )?;
        let layout = match config.run.algo {
            Algo::Ppo => SequenceLayout {
                seq_len: config.ppo.seq_len,
                burn_in: config.ppo.burn_in,
                count: config.sequences_per_env(),
            },
            Algo::Appo | Algo::Impala => SequenceLayout {
                seq_len: config.async_.chunk_len,
                burn_in: 0,
                count: 1,
            },
        };
        let mut learner = Learner::new(policy, config.ppo.clone(), layout, train_device);
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
        let logger = RunLogger::create(run_dir)
            .map_err(|e| AgentError::Checkpoint(format!("logging: {e}")))?;
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
            progress: Progress::new(config.run.total_steps, counters.global_step),
            recent: VecDeque::new(),
            session_start: Instant::now(),
            elapsed_before: counters.elapsed_secs,
            start_steps: counters.global_step,
            counters,
            logger,
            interrupted: false,
            session_seed,
            modular: !matches!(config.policy.core.kind(), "lstm" | "gru"),
            faults: FaultCounts::default(),
        })
    }

    /// Build actor `index`'s envs and actor (seeded for `generation`, 0 unless restarted).
    pub fn make_actor(
        config: &TrainConfig,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        policy: Policy,
        device: &Device,
        session_seed: u64,
        index: usize,
        generation: u64,
    ) -> Result<Actor> {
        let per_actor = config.envs_per_actor();
        let envs = Actor::make_envs(&config.env.id, kwargs, per_actor)?;
        let seed = session_seed
            .wrapping_add((index * per_actor) as u64)
            .wrapping_add(generation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Actor::new(envs, policy, seed, device.clone())
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
            eprintln!(
                "engram: curriculum stage {} of {} from step {}: {}",
                stage + 1,
                self.config.env.curriculum.len() + 1,
                self.counters.global_step,
                serde_json::Value::Object(self.kwargs.clone())
            );
        }
        true
    }

    /// Seed base of the actors of the current stage.
    pub fn actor_seed(&self) -> u64 {
        self.session_seed
            .wrapping_add((self.stage as u64).wrapping_mul(0x1000_0000))
    }

    /// The learning rate of update number `update` (1-based).
    pub fn learning_rate(&self, update: u64) -> f64 {
        let total = self.config.total_updates();
        let frac = if self.config.ppo.anneal_lr {
            1.0 - (update - 1) as f64 / total as f64
        } else {
            1.0
        };
        self.config.ppo.learning_rate * frac
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
                self.recent.push_back(ep.episode_return);
                if self.recent.len() > 100 {
                    self.recent.pop_front();
                }
            }
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
        log.scalar("losses/grad_norm", stats.grad_norm as f64, step);
        let total_updates = self.config.total_updates();
        if self.modular && (update % 10 == 1 || update == total_updates) {
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
        self.logger
            .flush()
            .map_err(|e| AgentError::Checkpoint(format!("logging: {e}")))?;
        if self.options.progress {
            self.progress.update(step);
        }
        let every = self.config.run.checkpoint_every;
        if every > 0 && update % every == 0 {
            self.save_checkpoint()?;
        }
        Ok(())
    }

    /// Save weights, optimiser state and counters (with the time trained so far).
    fn save_checkpoint(&mut self) -> Result<PathBuf> {
        self.counters.elapsed_secs =
            self.elapsed_before + self.session_start.elapsed().as_secs_f64();
        checkpoint::save(
            &self.run_dir,
            &self.learner.policy,
            &self.learner.optim,
            self.counters,
        )
    }

    /// Save the final checkpoint and report.
    fn finish(mut self) -> Result<TrainSummary> {
        if self.options.progress {
            self.progress.finish();
        }
        self.save_checkpoint()?;
        self.logger
            .flush()
            .map_err(|e| AgentError::Checkpoint(format!("logging: {e}")))?;
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
        })
    }
}

/// The synchronous loop: every actor collects one rollout, then the learner updates.
fn run_sync(s: &mut Session<'_>) -> Result<()> {
    let config = s.config;
    let spawn_pool = |s: &Session<'_>| -> Result<ActorPool> {
        let actors = (0..config.run.actor_threads)
            .map(|i| {
                Session::make_actor(
                    config,
                    &s.kwargs,
                    s.learner.acting_policy(),
                    &s.device,
                    s.actor_seed(),
                    i,
                    0,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ActorPool::spawn(actors))
    };
    let mut pool = spawn_pool(s)?;
    let layout = SequenceLayout {
        seq_len: config.ppo.seq_len,
        burn_in: config.ppo.burn_in,
        count: config.sequences_per_env(),
    };
    let mut rng = Pcg64::seed_from_u64(s.session_seed ^ 0x9e37_79b9);
    let total_updates = config.total_updates();
    while s.counters.update < total_updates {
        if s.options.stop.load(Ordering::SeqCst) {
            s.interrupted = true;
            break;
        }
        if s.advance_stage() {
            pool = spawn_pool(s)?;
        }
        let update = s.counters.update + 1;
        let lr = s.learning_rate(update);
        let mut chunks = pool.collect(
            &s.learner.acting_policy(),
            s.counters.update,
            config.ppo.rollout_len,
            layout,
        )?;
        let step_after = s.counters.global_step + config.steps_per_update();
        s.record_episodes(&chunks, step_after);
        let stats = s.learner.update(&mut chunks, lr, &mut rng, update)?;
        s.counters.update = update;
        s.counters.global_step = step_after;
        s.after_update(&stats, lr)?;
    }
    Ok(())
}

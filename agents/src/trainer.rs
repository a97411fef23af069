//! The synchronous training loop: actors collect, the learner updates, logs and checkpoints follow.

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
use crate::config::TrainConfig;
use crate::diagnostics::{log_module_activity, ActivityProbe};
use crate::error::{AgentError, Result};
use crate::logging::{tags, Progress, RunLogger};
use crate::policy::{ActionKind, Policy};
use crate::ppo::Learner;
use crate::rollout::SequenceLayout;

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
}

/// The compute device named by `run.device`.
pub fn device_for(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        "libtorch" => Err(AgentError::Config(
            "run.device = \"libtorch\" needs the libtorch backend, which this build does not include; \
             use --device cpu (see the README for the libtorch setup)"
                .into(),
        )),
        other if other.starts_with("cuda") => Err(AgentError::Config(format!(
            "run.device = \"{other}\" needs the libtorch CUDA backend, which this build does not include; use --device cpu"
        ))),
        other => Err(AgentError::Config(format!("unknown run.device `{other}`; expected cpu, libtorch or cuda:N"))),
    }
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

/// Train (or resume) the run in `run_dir` with `config`.
pub fn train(config: &TrainConfig, run_dir: &Path, options: &TrainOptions) -> Result<TrainSummary> {
    config.validate()?;
    prepare_run_dir(config, run_dir, options.resume)?;
    let kwargs = crate::eval::kwargs_of(config);
    let probe = make(&config.env.id, &kwargs)?;
    let spec = probe.spec().clone();
    let action = ActionKind::for_space(&spec.id, &spec.action_space)?;
    let device = device_for(&config.run.device)?;
    device.seed(config.run.seed);
    let train_device = device.clone().autodiff();
    let policy = Policy::new(&config.policy, spec.obs_dim(), &action, &train_device)?;
    let layout = SequenceLayout {
        seq_len: config.ppo.seq_len,
        burn_in: config.ppo.burn_in,
        count: config.sequences_per_env(),
    };
    let mut learner = Learner::new(policy, config.ppo.clone(), layout, train_device);
    let mut counters = Counters {
        update: 0,
        global_step: 0,
        episodes: 0,
        elapsed_secs: 0.0,
    };
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
    let mut logger =
        RunLogger::create(run_dir).map_err(|e| AgentError::Checkpoint(format!("logging: {e}")))?;

    let threads = config.run.actor_threads;
    let per_actor = config.env.num_envs / threads;
    // Env seeds differ per actor and per session, so a resumed run does not replay its first episodes.
    let session_seed = config
        .run
        .seed
        .wrapping_add(counters.update.wrapping_mul(1_000_003));
    let actors = (0..threads)
        .map(|i| {
            let envs = Actor::make_envs(&config.env.id, &kwargs, per_actor)?;
            Actor::new(
                envs,
                learner.acting_policy(),
                session_seed + (i * per_actor) as u64,
                device.clone(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let pool = ActorPool::spawn(actors);
    let mut rng = Pcg64::seed_from_u64(session_seed ^ 0x9e37_79b9);
    let total_updates = config.total_updates();
    let mut progress = Progress::new(config.run.total_steps, counters.global_step);
    let mut recent: std::collections::VecDeque<f64> = Default::default();
    let session_start = Instant::now();
    let elapsed_before = counters.elapsed_secs;
    let start_steps = counters.global_step;
    let mut interrupted = false;
    let modular = !matches!(config.policy.core.kind(), "lstm" | "gru");

    while counters.update < total_updates {
        if options.stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let update = counters.update + 1;
        let frac = if config.ppo.anneal_lr {
            1.0 - (update - 1) as f64 / total_updates as f64
        } else {
            1.0
        };
        let lr = config.ppo.learning_rate * frac;
        let mut chunks = pool.collect(
            &learner.acting_policy(),
            counters.update,
            config.ppo.rollout_len,
            layout,
        )?;
        let step_after = counters.global_step + config.steps_per_update();
        for ch in &chunks {
            for ep in &ch.episodes {
                counters.episodes += 1;
                logger.scalar(tags::EPISODIC_RETURN, ep.episode_return, step_after);
                logger.scalar(tags::EPISODIC_LENGTH, ep.length as f64, step_after);
                progress.record_episode(ep.episode_return);
                recent.push_back(ep.episode_return);
                if recent.len() > 100 {
                    recent.pop_front();
                }
            }
        }
        let stats = match learner.update(&mut chunks, lr, &mut rng, update) {
            Ok(s) => s,
            Err(AgentError::NonFiniteLoss {
                loss,
                value,
                update,
                ..
            }) => {
                let dir = checkpoint::save(run_dir, &learner.policy, &learner.optim, counters)?;
                let _ = logger.flush();
                return Err(AgentError::NonFiniteLoss {
                    loss,
                    value,
                    update,
                    checkpoint: dir.display().to_string(),
                });
            }
            Err(e) => return Err(e),
        };
        counters.update = update;
        counters.global_step = step_after;
        let elapsed = session_start.elapsed().as_secs_f64();
        let sps = (counters.global_step - start_steps) as f64 / elapsed.max(1e-9);
        logger.scalar(tags::SPS, sps, step_after);
        logger.scalar(tags::LEARNING_RATE, lr, step_after);
        logger.scalar(tags::POLICY_LOSS, stats.policy_loss as f64, step_after);
        logger.scalar(tags::VALUE_LOSS, stats.value_loss as f64, step_after);
        logger.scalar(tags::ENTROPY, stats.entropy as f64, step_after);
        logger.scalar(tags::APPROX_KL, stats.approx_kl as f64, step_after);
        logger.scalar(tags::CLIPFRAC, stats.clipfrac as f64, step_after);
        logger.scalar(
            tags::EXPLAINED_VARIANCE,
            stats.explained_variance as f64,
            step_after,
        );
        logger.scalar("losses/grad_norm", stats.grad_norm as f64, step_after);
        if modular && (update % 10 == 1 || update == total_updates) {
            let probe = ActivityProbe {
                env_id: &config.env.id,
                kwargs: &kwargs,
                seed: config.run.seed,
                max_steps: 2_000,
            };
            log_module_activity(
                &mut logger,
                &learner.acting_policy(),
                &probe,
                step_after,
                &device,
            )?;
        }
        logger
            .flush()
            .map_err(|e| AgentError::Checkpoint(format!("logging: {e}")))?;
        if options.progress {
            progress.update(counters.global_step);
        }
        if config.run.checkpoint_every > 0 && update % config.run.checkpoint_every == 0 {
            counters.elapsed_secs = elapsed_before + session_start.elapsed().as_secs_f64();
            checkpoint::save(run_dir, &learner.policy, &learner.optim, counters)?;
        }
    }
    if options.progress {
        progress.finish();
    }
    counters.elapsed_secs = elapsed_before + session_start.elapsed().as_secs_f64();
    checkpoint::save(run_dir, &learner.policy, &learner.optim, counters)?;
    logger
        .flush()
        .map_err(|e| AgentError::Checkpoint(format!("logging: {e}")))?;
    let elapsed = session_start.elapsed().as_secs_f64();
    Ok(TrainSummary {
        run_dir: run_dir.to_path_buf(),
        global_step: counters.global_step,
        updates: counters.update,
        recent_return: if recent.is_empty() {
            f64::NAN
        } else {
            recent.iter().sum::<f64>() / recent.len() as f64
        },
        interrupted,
        sps: (counters.global_step - start_steps) as f64 / elapsed.max(1e-9),
    })
}

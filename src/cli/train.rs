//! `engram train`, `engram resume` and `engram eval`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use engram_agents::run::eval::{evaluate, EvalOptions};
use engram_agents::run::run_dir::{create_unique_run_dir, CONFIG_FILE};
use engram_agents::{train, TrainConfig, TrainOptions};

/// The preset `engram train` uses when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/cartpole_lstm.toml");

/// Arguments of `engram train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML config (default: the embedded CartPole-v1 + LSTM preset, configs/cartpole_lstm.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config value: `section.key=value` (repeatable), e.g. `--set ppo.learning_rate=1e-3`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Compute device: cpu (default; burn's flex), libtorch (its CPU) or cuda:N; the last two
    /// need a build with `--features tch` (see scripts/setup-libtorch.sh).
    #[arg(long)]
    device: Option<String>,
    /// Seed (overrides run.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (default: <run.runs_dir>/<run.name or env_core_seed_time>; a generated
    /// name that is taken gets a `-2`, `-3`, … suffix).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Replace a run that is already in the run directory (its checkpoints and logs are
    /// deleted); without it, training into an existing run is refused (continue it with
    /// `engram resume`).
    #[arg(long)]
    overwrite: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Load an env plugin library (repeatable); recorded in the run's config as `env.plugins`.
    #[arg(long = "plugin", value_name = "PATH")]
    plugins: Vec<PathBuf>,
}

/// Arguments of `engram eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory written by `engram train`.
    run_dir: PathBuf,
    /// Episodes to run (at least 1).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    episodes: u64,
    /// Print each step of the first episode as the environment draws it.
    #[arg(long)]
    render: bool,
    /// Sample actions instead of taking the most likely one.
    #[arg(long)]
    stochastic: bool,
    /// Seed of the evaluation episodes.
    #[arg(long, default_value_t = 10_000)]
    seed: u64,
}

fn install_ctrl_c(options: &TrainOptions) {
    let stop = options.stop.clone();
    // Ctrl-C, SIGTERM and SIGHUP (ctrlc's `termination` feature). A second signal while the
    // checkpoint is written is ignored; the run stops after it.
    let _ = ctrlc::set_handler(move || {
        if !stop.swap(true, Ordering::SeqCst) {
            eprintln!(
                "\ninterrupted (Ctrl-C or SIGTERM): finishing this update, saving a checkpoint and stopping…"
            );
        }
    });
}

/// `engram train`; exits with [`super::EXIT_INTERRUPTED`] when stopped by a signal.
pub fn run_train(args: TrainArgs) -> Result<ExitCode> {
    let text = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?,
        None => DEFAULT_CONFIG.to_string(),
    };
    let mut sets = args.sets.clone();
    if let Some(d) = &args.device {
        sets.push(format!("run.device=\"{d}\""));
    }
    if let Some(s) = args.seed {
        sets.push(format!("run.seed={s}"));
    }
    let mut config = match TrainConfig::from_toml(&text, &sets) {
        Ok(config) => config,
        // An error that names its `--set` is not the config file's.
        Err(e) if e.to_string().contains("--set `") => return Err(e.into()),
        Err(e) => {
            return Err(anyhow::Error::from(e).context(match &args.config {
                Some(p) => format!("in {}", p.display()),
                None => "in the embedded default config".into(),
            }))
        }
    };
    for path in &args.plugins {
        // Absolute, so that `resume` and `eval` find it from any directory.
        let path = path.canonicalize().unwrap_or_else(|_| path.clone());
        if !config.env.plugins.contains(&path) {
            config.env.plugins.push(path);
        }
    }
    // A bad plugin is an error before the run directory is announced.
    engram_envs::load_plugins(&config.env.plugins)?;
    config.env.record_plugin_hashes()?;
    let options = TrainOptions {
        progress: !args.quiet,
        overwrite: args.overwrite,
        ..Default::default()
    };
    // An unusable device is an error before the run directory is announced (or written).
    engram_agents::run::device::device_for(&config.run.device)?;
    let (run_dir, generated) = match (&args.run_dir, &config.run.name) {
        (Some(dir), _) => (dir.clone(), false),
        (None, Some(name)) => (PathBuf::from(&config.run.runs_dir).join(name), false),
        (None, None) => (
            create_unique_run_dir(Path::new(&config.run.runs_dir), &default_run_name(&config))?,
            true,
        ),
    };
    install_ctrl_c(&options);
    let per_update = config.steps_per_update();
    if config.run.total_steps < per_update {
        eprintln!(
            "engram: warning: run.total_steps = {} is less than one update ({per_update} env steps: \
             env.num_envs × the rollout length); the run does one whole update",
            config.run.total_steps
        );
    }
    eprintln!(
        "run directory: {}  (tensorboard --logdir {})",
        run_dir.display(),
        run_dir.parent().unwrap_or(Path::new(".")).display()
    );
    let outcome = train(&config, &run_dir, &options);
    if outcome.is_err() && generated {
        // A run refused before it wrote anything leaves no empty directory behind.
        let _ = std::fs::remove_dir(&run_dir);
    }
    report(outcome?)
}

/// `engram resume RUN_DIR`; exits with [`super::EXIT_INTERRUPTED`] when stopped by a signal.
pub fn run_resume(run_dir: &Path, quiet: bool) -> Result<ExitCode> {
    let path = run_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a run directory: cannot read {}",
            run_dir.display(),
            path.display()
        )
    })?;
    let config =
        TrainConfig::from_toml(&text, &[]).with_context(|| format!("in {}", path.display()))?;
    let options = TrainOptions {
        progress: !quiet,
        resume: true,
        ..Default::default()
    };
    install_ctrl_c(&options);
    report(train(&config, run_dir, &options)?)
}

/// `engram eval RUN_DIR`.
pub fn run_eval(args: EvalArgs) -> Result<()> {
    let report = evaluate(
        &args.run_dir,
        &EvalOptions {
            episodes: args.episodes as usize,
            render: args.render,
            greedy: !args.stochastic,
            seed: args.seed,
        },
    )?;
    println!("{report}");
    Ok(())
}

fn report(summary: engram_agents::TrainSummary) -> Result<ExitCode> {
    if summary.already_finished {
        println!(
            "already finished: {} steps, {} updates, nothing to do; to train it further, raise \
             run.total_steps in {} and resume again",
            summary.global_step,
            summary.updates,
            summary.run_dir.join(CONFIG_FILE).display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let what = if summary.interrupted {
        "stopped (resume with `engram resume`)"
    } else {
        "finished"
    };
    println!(
        "{what}: {} steps, {} updates, mean return of the last 100 episodes {:.3}, {:.0} steps/s; run directory {}",
        summary.global_step,
        summary.updates,
        summary.recent_return,
        summary.sps,
        summary.run_dir.display()
    );
    let f = summary.faults;
    if f.chunks_used > 0 {
        println!(
            "async runtime: {} chunks trained on, {} dropped on a full queue, {} dropped for policy lag, \
             {} env panics contained, {} actor restarts",
            f.chunks_used, f.dropped_full, f.dropped_lag, f.env_panics, f.actor_restarts
        );
    } else if f.env_panics > 0 {
        println!(
            "{} env panics contained (each env started a new episode; the step counted as a truncation)",
            f.env_panics
        );
    }
    Ok(if summary.interrupted {
        ExitCode::from(super::EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `env_core_seed_time`, the name of a run without `run.name`.
fn default_run_name(config: &TrainConfig) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{}_{}_s{}_{secs}",
        config.env.id.replace('/', "_"),
        config.policy.core.kind(),
        config.run.seed
    )
}

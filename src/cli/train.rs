//! `engram train`, `engram resume` and `engram eval`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Args;
use engram_agents::config::Backend;
use engram_agents::rollout::RemoteHandle;
use engram_agents::run::eval::{evaluate, EvalOptions};
use engram_agents::run::run_dir::{create_unique_run_dir, CONFIG_FILE};
use engram_agents::{train, TrainConfig, TrainOptions, TrainSummary};

/// The remote-actor backend of this process (see [`set_remote_backend`]).
static REMOTE_BACKEND: OnceLock<RemoteHandle> = OnceLock::new();

/// Give the command line the backend that runs `run.backend = "ray"` actors. The Python
/// package sets it (`python -m engram`); without it, `engram train`/`resume` of a Ray run
/// hands the command to `python -m engram`. Only the first call has an effect.
pub fn set_remote_backend(backend: RemoteHandle) {
    let _ = REMOTE_BACKEND.set(backend);
}

/// The preset `engram train` uses when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/cartpole_lstm.toml");

/// The config, its overrides and the device: what `engram train` and `engram bench learner`
/// both take.
#[derive(Debug, Args)]
pub struct ConfigArgs {
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
}

impl ConfigArgs {
    /// A request for this config, overrides and device (everything else default).
    pub fn request(&self) -> TrainRequest {
        TrainRequest {
            config: self
                .config
                .clone()
                .map_or(ConfigSource::Default, ConfigSource::File),
            sets: self.sets.clone(),
            device: self.device.clone(),
            ..Default::default()
        }
    }
}

/// Arguments of `engram train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    base: ConfigArgs,
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
    /// Replace an env keyword argument of the run's: `key=value` (repeatable), e.g.
    /// `--env-kwarg corridor_length=1000` to test a memory beyond the length it trained on.
    #[arg(long = "env-kwarg", value_name = "KEY=VALUE")]
    env_kwargs: Vec<String>,
}

/// Where a new run's config comes from.
#[derive(Debug, Clone, Default)]
pub enum ConfigSource {
    /// The embedded CartPole-v1 + LSTM preset ([`DEFAULT_CONFIG`]).
    #[default]
    Default,
    /// A TOML file.
    File(PathBuf),
    /// TOML text; `origin` names it in error messages ("the config dict").
    Text {
        /// The TOML.
        toml: String,
        /// What the text came from.
        origin: String,
    },
}

/// Everything a new run is made from: `engram train`'s arguments, and `engram.train` in Python.
#[derive(Debug, Clone, Default)]
pub struct TrainRequest {
    /// The base config.
    pub config: ConfigSource,
    /// `section.key=value` overrides (TOML values), applied in order.
    pub sets: Vec<String>,
    /// Compute device (overrides run.device).
    pub device: Option<String>,
    /// Seed (overrides run.seed).
    pub seed: Option<u64>,
    /// Run directory (default: generated under run.runs_dir).
    pub run_dir: Option<PathBuf>,
    /// Replace a run already in the run directory.
    pub overwrite: bool,
    /// No progress line.
    pub quiet: bool,
    /// Env plugin libraries to load and record in the run's config.
    pub plugins: Vec<PathBuf>,
}

/// A run checked and ready to train: config resolved, plugins loaded, device usable, run
/// directory chosen. [`PreparedRun::run`] trains it; its stop flag stops it with a checkpoint.
pub struct PreparedRun {
    /// The resolved config.
    pub config: TrainConfig,
    /// Where the run is written.
    pub run_dir: PathBuf,
    /// The run directory was made for this run (removed again if the run is refused).
    generated: bool,
    options: TrainOptions,
}

impl TrainRequest {
    /// The config with its overrides, plugins loaded and device checked, without a run
    /// directory (what `prepare` and `engram bench learner` start from).
    pub fn resolve(&self) -> Result<TrainConfig> {
        let (text, origin) = match &self.config {
            ConfigSource::File(path) => (
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config {}", path.display()))?,
                format!("in {}", path.display()),
            ),
            ConfigSource::Text { toml, origin } => (toml.clone(), format!("in {origin}")),
            ConfigSource::Default => (
                DEFAULT_CONFIG.to_string(),
                "in the embedded default config".into(),
            ),
        };
        let mut sets = self.sets.clone();
        if let Some(d) = &self.device {
            sets.push(format!("run.device=\"{d}\""));
        }
        if let Some(s) = self.seed {
            sets.push(format!("run.seed={s}"));
        }
        let mut config = match TrainConfig::from_toml(&text, &sets) {
            Ok(config) => config,
            // An error that names its `--set` is not the config file's.
            Err(e) if e.to_string().contains("--set `") => return Err(e.into()),
            Err(e) => return Err(anyhow::Error::from(e).context(origin)),
        };
        for path in &self.plugins {
            // Absolute, so that `resume` and `eval` find it from any directory.
            let path = path.canonicalize().unwrap_or_else(|_| path.clone());
            if !config.env.plugins.contains(&path) {
                config.env.plugins.push(path);
            }
        }
        // A bad plugin is an error before the run directory is announced.
        engram_envs::load_plugins(&config.env.plugins)?;
        config.env.record_plugin_hashes()?;
        // An unusable device is an error before the run directory is announced (or written).
        engram_agents::run::device::device_for(&config.run.device)?;
        Ok(config)
    }

    /// Resolve the config and overrides, load plugins, check the device and choose the run
    /// directory; errors name the key, file or fix, and nothing is written on an error.
    pub fn prepare(&self) -> Result<PreparedRun> {
        let config = self.resolve()?;
        let (run_dir, generated) = match (&self.run_dir, &config.run.name) {
            (Some(dir), _) => (dir.clone(), false),
            (None, Some(name)) => (PathBuf::from(&config.run.runs_dir).join(name), false),
            (None, None) => (
                create_unique_run_dir(Path::new(&config.run.runs_dir), &default_run_name(&config))?,
                true,
            ),
        };
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
        Ok(PreparedRun {
            config,
            run_dir,
            generated,
            options: TrainOptions {
                progress: !self.quiet,
                overwrite: self.overwrite,
                ..Default::default()
            },
        })
    }
}

impl PreparedRun {
    /// Continue the run in `run_dir` from its checkpoint.
    pub fn resume(run_dir: &Path, quiet: bool) -> Result<Self> {
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
        Ok(PreparedRun {
            config,
            run_dir: run_dir.to_path_buf(),
            generated: false,
            options: TrainOptions {
                progress: !quiet,
                resume: true,
                ..Default::default()
            },
        })
    }

    /// Run `run.backend = "ray"` actors with `backend` (the Python package's).
    pub fn set_remote(&mut self, backend: RemoteHandle) {
        self.options.remote = Some(backend);
    }

    /// Set to stop the run after the current update, with a checkpoint (Ctrl-C).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.options.stop.clone()
    }

    /// Train to the end (or until the stop flag is set).
    pub fn run(mut self) -> Result<TrainSummary> {
        if self.options.remote.is_none() {
            self.options.remote = REMOTE_BACKEND.get().cloned();
        }
        let outcome = train(&self.config, &self.run_dir, &self.options);
        if outcome.is_err() && self.generated {
            // A run refused before it wrote anything leaves no empty directory behind.
            let _ = std::fs::remove_dir(&self.run_dir);
        }
        Ok(outcome?)
    }
}

fn install_ctrl_c(stop: Arc<AtomicBool>) {
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

impl TrainArgs {
    /// The run these arguments ask for.
    pub fn request(&self) -> TrainRequest {
        TrainRequest {
            seed: self.seed,
            run_dir: self.run_dir.clone(),
            overwrite: self.overwrite,
            quiet: self.quiet,
            plugins: self.plugins.clone(),
            ..self.base.request()
        }
    }
}

/// Whether this process must hand a run of `config` to the Python package (a Ray run, and no
/// backend set in this process).
fn needs_python(config: &TrainConfig) -> bool {
    config.run.backend == Backend::Ray && REMOTE_BACKEND.get().is_none()
}

/// Run this command again as `python -m engram …` (`ENGRAM_PYTHON`, else `python3`), where the
/// Ray backend lives; its exit status. Signals reach the child (same process group); this
/// process waits for it.
fn run_in_python() -> Result<u8> {
    let python = std::env::var_os("ENGRAM_PYTHON").unwrap_or_else(|| "python3".into());
    let shown = python.to_string_lossy().into_owned();
    let check = std::process::Command::new(&python)
        .args(["-c", "import engram, ray"])
        .output();
    match check {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            anyhow::bail!(
            "run.backend = \"ray\" runs through Engram's Python package and Ray, which {shown} \
             cannot import ({}): `pip install ./python ray` into it, or set ENGRAM_PYTHON to an \
             interpreter that has both",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no message")
        )
        }
        Err(e) => anyhow::bail!(
            "run.backend = \"ray\" runs through Engram's Python package, but {shown} cannot be \
             started ({e}); set ENGRAM_PYTHON to a Python with `engram` and `ray` installed"
        ),
    }
    // The child handles Ctrl-C (checkpoint, then exit); this process only waits for it.
    let _ = ctrlc::set_handler(|| {});
    let status = std::process::Command::new(&python)
        .args(["-m", "engram"])
        .args(std::env::args_os().skip(1))
        .status()
        .with_context(|| format!("cannot start {shown} -m engram"))?;
    Ok(status.code().map_or(1, |c| c.clamp(0, 255) as u8))
}

/// `engram train`; exits with [`super::EXIT_INTERRUPTED`] when stopped by a signal.
pub fn run_train(args: TrainArgs) -> Result<u8> {
    let request = args.request();
    if needs_python(&request.resolve()?) {
        return run_in_python();
    }
    let prepared = request.prepare()?;
    install_ctrl_c(prepared.stop_flag());
    report(prepared.run()?)
}

/// `engram resume RUN_DIR`; exits with [`super::EXIT_INTERRUPTED`] when stopped by a signal.
pub fn run_resume(run_dir: &Path, quiet: bool) -> Result<u8> {
    let prepared = PreparedRun::resume(run_dir, quiet)?;
    if needs_python(&prepared.config) {
        return run_in_python();
    }
    install_ctrl_c(prepared.stop_flag());
    report(prepared.run()?)
}

/// `engram eval RUN_DIR`.
pub fn run_eval(args: EvalArgs) -> Result<()> {
    let mut options = EvalOptions {
        episodes: args.episodes as usize,
        render: args.render,
        greedy: !args.stochastic,
        seed: args.seed,
        ..Default::default()
    };
    for text in &args.env_kwargs {
        options = options.with_env_kwarg(text)?;
    }
    let report = evaluate(&args.run_dir, &options)?;
    println!("{report}");
    Ok(())
}

fn report(summary: TrainSummary) -> Result<u8> {
    if summary.already_finished {
        println!(
            "already finished: {} steps, {} updates, nothing to do; to train it further, raise \
             run.total_steps in {} and resume again",
            summary.global_step,
            summary.updates,
            summary.run_dir.join(CONFIG_FILE).display()
        );
        return Ok(0);
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
            "actors: {} chunks trained on, {} dropped on a full queue, {} dropped for policy lag, \
             {} env panics contained, {} actor restarts",
            f.chunks_used, f.dropped_full, f.dropped_lag, f.env_panics, f.actor_restarts
        );
    } else if f.env_panics > 0 {
        println!(
            "{} env panics contained (each env started a new episode; the step counted as a truncation)",
            f.env_panics
        );
    }
    if !summary.warnings.is_empty() {
        println!("warnings during the run (each printed when it happened):");
        for w in &summary.warnings {
            println!("  - {w}");
        }
    }
    Ok(if summary.interrupted {
        super::EXIT_INTERRUPTED
    } else {
        0
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

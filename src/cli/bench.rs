//! `engram bench envs` (environment step rates), `engram bench memory` (supervised copy/denoise)
//! and `engram bench learner` (a config's update and acting throughput).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use engram_agents::run::learner_bench::bench_learner;
use engram_agents::supervised::{self, GradClip, OptimizerKind, TrainSpec};
use engram_envs::bench::{default_suite, format_row, header, measure};
use engram_envs::SequenceTask as Task;
use engram_memory::CoreConfig;

use super::parse_kwargs;
use super::train::ConfigArgs;

/// Benchmark subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Steps per second of environments: one env on one thread, and a VecEnv on one and all cores.
    Envs {
        /// Benchmark only this environment (default: the standard suite).
        #[arg(long)]
        id: Option<String>,
        /// Keyword arguments for `--id`, as a JSON object.
        #[arg(long)]
        kwargs: Option<String>,
        /// Environments in the VecEnv.
        #[arg(long, default_value_t = 1024)]
        num_envs: usize,
        /// Seconds measured per figure.
        #[arg(long, default_value_t = 1.0)]
        secs: f64,
        /// Load an env plugin library and benchmark its environments (repeatable); a plugin env
        /// `NS/Name-vN` whose `Name-vN` is built in is measured next to it with the same kwargs
        /// (the cost of the plugin ABI).
        #[arg(long = "plugin", value_name = "PATH")]
        plugins: Vec<PathBuf>,
    },
    /// Train a memory core on the copy or denoise task and print recall accuracy.
    Memory {
        /// `copy` or `denoise`.
        #[arg(long, default_value = "copy")]
        task: String,
        /// Core kind: lstm, gru, rims, brims, screened, ffm, rel_lstm.
        #[arg(long, default_value = "lstm")]
        core: String,
        /// Delay T for training and evaluation.
        #[arg(long, default_value_t = 50)]
        length: usize,
        /// Evaluate at another delay (generalisation, e.g. train 50, evaluate 200).
        #[arg(long)]
        eval_length: Option<usize>,
        /// Hidden size of the core.
        #[arg(long, default_value_t = 128)]
        hidden: usize,
        /// Training steps (batches).
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        /// Sequences per batch.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Optimiser: adam, or rmsprop (PyTorch's defaults, as in Kerg et al.'s official scripts).
        #[arg(long, default_value = "adam")]
        optimizer: String,
        /// Learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Gradient-norm clip; 0 turns clipping off.
        #[arg(long, default_value_t = 1.0)]
        clip: f32,
        /// Clip the global gradient norm over all parameters (PyTorch's `clip_grad_norm_`, as the
        /// official scripts do) instead of each parameter's own norm.
        #[arg(long)]
        clip_global: bool,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Train on the loss of the last 10 outputs only (Kerg et al.).
        #[arg(long)]
        loss_last: bool,
        /// Compute device: cpu (flex), libtorch or cuda:N (the last two need `--features tch`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Stop training after this many seconds, then evaluate.
        #[arg(long)]
        max_seconds: Option<f64>,
        /// Print a progress line every this many steps (default: 20 lines per run).
        #[arg(long)]
        log_every: Option<usize>,
        /// Stop training once the mean training accuracy over 10 steps reaches this, then
        /// evaluate.
        #[arg(long)]
        stop_at_accuracy: Option<f32>,
        /// Also evaluate the trained model at these delays, comma-separated (e.g. 1000,5000).
        #[arg(long, value_delimiter = ',')]
        transfer: Vec<usize>,
        /// After training, write `‖∂L/∂x_t‖` for every step t of one batch at the evaluation
        /// delay to this CSV (`t,grad_norm`): how much credit reaches the symbols.
        #[arg(long)]
        grad_profile: Option<PathBuf>,
    },
    /// Learner throughput of a training config: env steps per second of its algorithm's updates
    /// (forward, backward and Adam over every epoch and minibatch of `[num_envs, rollout_len]`)
    /// and of its actor's batched acting, timed apart. Nothing is written.
    Learner {
        #[command(flatten)]
        base: ConfigArgs,
        /// Timed updates (after one warm-up); the figures are medians.
        #[arg(long, default_value_t = 5)]
        updates: usize,
    },
}

/// Run a `bench` subcommand.
pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Envs {
            id,
            kwargs,
            num_envs,
            secs,
            plugins,
        } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: this is a debug build; run `cargo run --release -- bench envs` for real figures");
            }
            let plugin_ids = engram_envs::load_plugins(&plugins)?;
            let given = serde_json::Value::Object(parse_kwargs(kwargs.as_deref())?);
            let suite: Vec<(String, serde_json::Value)> = match (id, plugin_ids.is_empty()) {
                (Some(id), _) => vec![(id, given)],
                (None, false) => plugin_suite(&plugin_ids),
                (None, true) => default_suite()
                    .into_iter()
                    .map(|(id, kw)| (id.to_string(), kw))
                    .collect(),
            };
            println!("{}", header(num_envs, rayon_threads()));
            for (id, kwargs) in suite {
                let r = measure(&id, &kwargs, num_envs, Duration::from_secs_f64(secs))?;
                println!("{}", format_row(&r));
            }
        }
        BenchCommand::Learner { base, updates } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: this is a debug build; run `cargo run --release -- bench learner` for real figures");
            }
            let config = base.request().resolve()?;
            let r = bench_learner(&config, updates)?;
            println!(
                "# {} {} on {}, {} env steps per update, {} threads; medians of {updates}",
                config.env.id,
                config.policy.core.kind(),
                config.run.device,
                r.steps_per_update,
                rayon_threads()
            );
            println!(
                "learner  {:>10.0} steps/s  ({:.1} ms per update)",
                r.learner_steps_per_sec,
                r.update_secs * 1e3
            );
            println!(
                "actor    {:>10.0} steps/s  ({:.1} ms per rollout)",
                r.actor_steps_per_sec,
                r.rollout_secs * 1e3
            );
        }
        BenchCommand::Memory {
            task,
            core,
            length,
            eval_length,
            hidden,
            steps,
            batch,
            optimizer,
            lr,
            clip,
            clip_global,
            seed,
            loss_last,
            device,
            max_seconds,
            log_every,
            stop_at_accuracy,
            transfer,
            grad_profile,
        } => {
            let task: Task = task
                .parse()
                .map_err(|_| anyhow::anyhow!("unknown --task `{task}`; use copy or denoise"))?;
            let mut spec = TrainSpec::new(task, CoreConfig::default_for(&core, 0, hidden)?);
            spec.train_length = length;
            spec.eval_length = eval_length.unwrap_or(length);
            spec.steps = steps;
            spec.batch = batch;
            spec.optimizer = OptimizerKind::parse(&optimizer)?;
            spec.learning_rate = lr;
            spec.grad_clip = grad_clip(clip, clip_global)?;
            spec.seed = seed;
            spec.loss_last_only = loss_last;
            spec.device = engram_agents::run::device::device_for(&device)?;
            spec.log_every = log_every.unwrap_or((steps / 20).max(1));
            spec.max_seconds = max_seconds;
            spec.stop_at_accuracy = stop_at_accuracy;
            spec.transfer_lengths = transfer;
            spec.gradient_profile = grad_profile.is_some();
            let report = supervised::train(&spec, |p| {
                eprintln!(
                    "step {:>6}  loss {:.4}  accuracy {:.3}  {:.0}s",
                    p.step, p.loss, p.accuracy, p.seconds
                )
            })?;
            println!(
                "{:?} {} T={}→{} seed {}, {} steps: eval accuracy {:.3} (chance {:.3}), eval loss {:.4}, train accuracy {:.3}",
                report.task, report.core, report.train_length, report.eval_length, report.seed, report.steps,
                report.eval_accuracy, report.chance_accuracy, report.eval_loss, report.train_accuracy
            );
            let per_position: Vec<String> = report
                .eval_position_accuracy
                .iter()
                .map(|a| format!("{a:.2}"))
                .collect();
            println!(
                "eval accuracy by recall position: {}",
                per_position.join(" ")
            );
            for t in &report.transfer {
                println!(
                    "transfer T={}: accuracy {:.3}, loss {:.4}",
                    t.length, t.accuracy, t.loss
                );
            }
            if let Some((retained, attended)) = report.symbol_memory {
                println!(
                    "memory at T={}: symbol states retained at the last step {retained:.3}, attention on them during recall {attended:.3}",
                    report.eval_length
                );
            }
            if let (Some(path), Some(profile)) = (grad_profile, &report.gradient_profile) {
                write_gradient_profile(&path, profile)?;
            }
        }
    }
    Ok(())
}

/// Write the gradient profile as `t,grad_norm` lines and print its summary.
fn write_gradient_profile(path: &Path, profile: &[f32]) -> Result<()> {
    let mut csv = String::from("t,grad_norm\n");
    for (t, g) in profile.iter().enumerate() {
        csv.push_str(&format!("{t},{g:e}\n"));
    }
    std::fs::write(path, csv)
        .with_context(|| format!("cannot write the gradient profile to {}", path.display()))?;
    let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len().max(1) as f32;
    let n = profile.len();
    println!(
        "input gradient norm: symbols (t 0..9) {:.3e}, delay {:.3e}, last 10 {:.3e}; written to {}",
        mean(&profile[..10.min(n)]),
        mean(&profile[10.min(n)..n.saturating_sub(10)]),
        mean(&profile[n.saturating_sub(10)..]),
        path.display()
    );
    Ok(())
}

/// `--clip` and `--clip-global` as the harness's clipping; 0 turns it off.
fn grad_clip(clip: f32, global: bool) -> Result<Option<GradClip>> {
    if !(clip.is_finite() && clip >= 0.0) {
        anyhow::bail!("--clip must be a finite norm ≥ 0 (0 turns clipping off), got {clip}");
    }
    Ok(match (clip > 0.0, global) {
        (false, _) => None,
        (true, false) => Some(GradClip::PerParameter(clip)),
        (true, true) => Some(GradClip::Global(clip)),
    })
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The plugin envs `ids`, each after the built-in env of the same name (the id without its
/// namespace) when there is one, both with that built-in's kwargs from the standard suite, so the
/// two rows show the cost of the plugin ABI; other plugin envs run on their defaults.
fn plugin_suite(ids: &[String]) -> Vec<(String, serde_json::Value)> {
    let builtins: Vec<String> = engram_envs::Registry::with_builtins()
        .list()
        .into_iter()
        .map(|e| e.id.clone())
        .collect();
    let standard = default_suite();
    let mut suite = Vec::new();
    for id in ids {
        let local = id.rsplit_once('/').map_or(id.as_str(), |(_, name)| name);
        let kwargs = standard
            .iter()
            .find(|(s, _)| *s == local)
            .map_or_else(|| serde_json::json!({}), |(_, kw)| kw.clone());
        if builtins.iter().any(|b| b == local) {
            suite.push((local.to_string(), kwargs.clone()));
        }
        suite.push((id.clone(), kwargs));
    }
    suite
}

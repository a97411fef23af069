//! Command-line arguments and dispatch.

mod bench;
mod envs;
mod sweep;
pub mod train;

pub use sweep::set_self_command;
pub use train::set_remote_backend;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Engram: reinforcement learning for long-horizon memory tasks.
#[derive(Debug, Parser)]
#[command(name = "engram", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train an agent (default: CartPole-v1 with an LSTM policy, on the CPU).
    Train(train::TrainArgs),
    /// Continue a stopped or finished run from its checkpoint.
    Resume {
        /// The run directory.
        run_dir: std::path::PathBuf,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
    },
    /// Evaluate a trained run.
    Eval(train::EvalArgs),
    /// Train a grid of config values × seeds, one run directory each under a sweep directory;
    /// resumable, summarised in a table.
    Sweep(sweep::SweepArgs),
    /// List, describe and check environments.
    Envs {
        #[command(subcommand)]
        command: envs::EnvsCommand,
        /// Load an env plugin library first (repeatable).
        #[arg(long = "plugin", value_name = "PATH", global = true)]
        plugins: Vec<std::path::PathBuf>,
    },
    /// Benchmarks (release builds: `cargo run --release -- bench ...`).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// Exit status of a run stopped by Ctrl-C, SIGTERM or SIGHUP after saving its checkpoint
/// (EX_TEMPFAIL: `engram resume` continues it); errors exit with 1.
pub const EXIT_INTERRUPTED: u8 = 75;

/// Run a parsed command line; the exit status on success.
pub fn run(cli: Cli) -> Result<u8> {
    let done = |r: Result<()>| r.map(|()| 0);
    match cli.command {
        Command::Train(args) => train::run_train(args),
        Command::Resume { run_dir, quiet } => train::run_resume(&run_dir, quiet),
        Command::Eval(args) => done(train::run_eval(args)),
        Command::Sweep(args) => sweep::run_sweep(args),
        Command::Envs { command, plugins } => done(envs::run(command, &plugins)),
        Command::Bench { command } => done(bench::run(command)),
    }
}

/// Parse `--kwargs` given as a JSON object (`'{"corridor_length": 100}'`).
pub(crate) fn parse_kwargs(
    text: Option<&str>,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let Some(text) = text else {
        return Ok(serde_json::Map::new());
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => anyhow::bail!(
            "--kwargs must be a JSON object like '{{\"corridor_length\": 100}}', got {other}"
        ),
        Err(e) => anyhow::bail!(
            "--kwargs is not valid JSON ({e}); write it like '{{\"corridor_length\": 100}}'"
        ),
    }
}

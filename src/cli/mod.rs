//! Command-line arguments and dispatch.

mod bench;
mod envs;

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
    /// List, describe and check environments.
    Envs {
        #[command(subcommand)]
        command: envs::EnvsCommand,
    },
    /// Benchmarks (release builds: `cargo run --release -- bench ...`).
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Envs { command } => envs::run(command),
        Command::Bench { command } => bench::run(command),
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

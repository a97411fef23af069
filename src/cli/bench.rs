//! `engram bench envs`: environment step rates.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use engram_envs::bench::{default_suite, format_row, header, measure};

use super::parse_kwargs;

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
        } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: this is a debug build; run `cargo run --release -- bench envs` for real figures");
            }
            let suite = match id {
                Some(id) => vec![(
                    id,
                    serde_json::Value::Object(parse_kwargs(kwargs.as_deref())?),
                )],
                None => default_suite()
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
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

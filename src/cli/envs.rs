//! `engram envs list | describe ID | check ID`, each with `--plugin PATH` to include a plugin's environments.

use anyhow::Result;
use clap::Subcommand;
use engram_envs::{catalog, check_env, load_plugins, CheckOptions};

use super::parse_kwargs;

/// Environment subcommands.
#[derive(Debug, Subcommand)]
pub enum EnvsCommand {
    /// List every registered environment id.
    List,
    /// Show an environment's spaces, time limit and arguments.
    Describe {
        /// Environment id, e.g. TMaze-Passive-v0.
        id: String,
        /// Keyword arguments as a JSON object.
        #[arg(long)]
        kwargs: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check determinism, observation bounds, invalid actions, resets and the time limit.
    Check {
        /// Environment id, or `all` for every registered environment.
        id: String,
        /// Keyword arguments as a JSON object.
        #[arg(long)]
        kwargs: Option<String>,
        /// Seed of the first episode.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Random steps to run.
        #[arg(long, default_value_t = 5000)]
        steps: u64,
    },
}

/// Write to stdout; an error (a closed pipe: `engram envs check all | head -1`) is returned,
/// not a panic as with `print!`, and `main` exits quietly on a broken pipe.
fn emit(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.flush()
}

/// Run an `envs` subcommand on the built-in environments and those of `plugins`.
pub fn run(command: EnvsCommand, plugins: &[std::path::PathBuf]) -> Result<()> {
    load_plugins(plugins)?;
    let registry = catalog::snapshot();
    match command {
        EnvsCommand::List => {
            let entries = registry.list();
            let width = entries.iter().map(|e| e.id.len()).max().unwrap_or(0);
            for e in entries {
                emit(format_args!("{:<width$}  {}\n", e.id, e.summary))?;
            }
        }
        EnvsCommand::Describe { id, kwargs, json } => {
            let kwargs = parse_kwargs(kwargs.as_deref())?;
            let mut description = registry.describe(&id)?;
            if !kwargs.is_empty() {
                description.spec = registry.make(&id, &kwargs)?.spec().clone();
            }
            if json {
                emit(format_args!(
                    "{}\n",
                    serde_json::to_string_pretty(&description)?
                ))?;
            } else {
                emit(format_args!("{description}"))?;
            }
        }
        EnvsCommand::Check {
            id,
            kwargs,
            seed,
            steps,
        } => {
            let kwargs = parse_kwargs(kwargs.as_deref())?;
            let ids: Vec<String> = if id == "all" {
                registry.list().into_iter().map(|e| e.id.clone()).collect()
            } else {
                if !engram_envs::python::is_python_id(&id) {
                    registry.entry(&id)?;
                }
                vec![id]
            };
            for id in ids {
                let report = check_env(&registry, &id, &kwargs, CheckOptions { seed, steps })?;
                emit(format_args!("{report}"))?;
            }
        }
    }
    Ok(())
}

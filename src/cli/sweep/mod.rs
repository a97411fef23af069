//! `engram sweep`: a grid of config values × seeds trained as child runs under one sweep directory, resumable, summarised in a table.

mod launch;
mod plan;
mod summary;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::EXIT_INTERRUPTED;
use launch::{install_stop_handler, launch, shell_quote, stop_requested, Action, Status};
use plan::{open_sweep_dir, plan, run_total_steps, runs_of, saved_steps, unused_dir, Run};
use summary::{Summary, SUMMARY_CSV, SUMMARY_JSON};

/// Arguments of `engram sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// TOML config of every run (default: the embedded preset `engram train` uses).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a config value of every run: `section.key=value` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Seeds: a range, a list or both, e.g. `1-5`, `1,3,7`, `1-3,9` (default: run.seed).
    #[arg(long)]
    seeds: Option<String>,
    /// A config key and its values, TOML as `--set` takes them (a string in quotes), e.g.
    /// `ppo.learning_rate=1e-3,3e-4`; repeatable: the sweep trains every combination.
    #[arg(long = "grid", value_name = "SECTION.KEY=V1,V2,...")]
    grids: Vec<String>,
    /// Runs trained at once (each a child process).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: u64,
    /// The sweep directory (default: <run.runs_dir>/sweep_<config name>_<unix time>); give the
    /// directory of an earlier sweep, with the same arguments, to resume it.
    #[arg(long)]
    sweep_dir: Option<PathBuf>,
    /// Load an env plugin library in every run (repeatable).
    #[arg(long = "plugin", value_name = "PATH")]
    plugins: Vec<PathBuf>,
    /// Compute device of every run: cpu, libtorch or cuda:N (see `engram train --help`).
    #[arg(long)]
    device: Option<String>,
}

/// How this process starts another `engram` command (see [`set_self_command`]).
static SELF_COMMAND: OnceLock<Vec<OsString>> = OnceLock::new();

/// Set how a sweep launches its runs: the program and the arguments before the subcommand
/// (default: this executable). The Python package sets `[sys.executable, "-m", "engram"]`,
/// since there this process is Python. Only the first call has an effect.
pub fn set_self_command(command: Vec<OsString>) {
    if !command.is_empty() {
        let _ = SELF_COMMAND.set(command);
    }
}

/// The program and leading arguments that run the `engram` command line.
fn self_command() -> Result<Vec<OsString>> {
    if let Some(command) = SELF_COMMAND.get() {
        return Ok(command.clone());
    }
    let exe = std::env::current_exe()
        .context("cannot find the engram executable to launch the sweep's runs")?;
    Ok(vec![exe.into_os_string()])
}

/// `engram sweep`: exit status 0, 1 when a run failed, [`EXIT_INTERRUPTED`] when stopped.
pub fn run_sweep(args: SweepArgs) -> Result<u8> {
    // Everything is checked before anything is written.
    let plan = plan(&args)?;
    let (sweep_dir, generated) = match &args.sweep_dir {
        Some(dir) => (dir.clone(), false),
        None => {
            let stem = plan
                .config_path
                .as_ref()
                .and_then(|p| p.file_stem())
                .map_or("default".to_string(), |s| s.to_string_lossy().into_owned());
            (unused_dir(&plan.runs_dir, &format!("sweep_{stem}")), true)
        }
    };
    let sweep_dir = std::path::absolute(&sweep_dir).unwrap_or(sweep_dir);
    let (resuming, _lock) = open_sweep_dir(&sweep_dir, &plan.json)?;

    let runs = runs_of(&plan, &sweep_dir);
    eprintln!(
        "sweep {}: {} grid point{} × {} seed{} = {} runs, {} at once{}",
        sweep_dir.display(),
        plan.points.len(),
        plural(plan.points.len()),
        plan.seeds.len(),
        plural(plan.seeds.len()),
        runs.len(),
        args.jobs,
        if resuming { " (resuming)" } else { "" }
    );
    if generated {
        eprintln!(
            "  (resume it with the same arguments and --sweep-dir {})",
            sweep_dir.display()
        );
    }
    // What each run needs.
    let actions: Vec<Action> = runs
        .iter()
        .map(|run| match saved_steps(&run.dir) {
            Some(steps) if steps >= run_total_steps(run) => {
                eprintln!(
                    "sweep: {} already finished ({steps} steps): skipped",
                    run.name
                );
                Action::Skip
            }
            Some(steps) => Action::Resume(steps),
            None => Action::New,
        })
        .collect();

    if !install_stop_handler() {
        eprintln!(
            "engram: warning: this process already has a Ctrl-C handler; Ctrl-C will not stop \
             the sweep cleanly"
        );
    }
    let command = self_command()?;
    let outcomes = launch(&runs, &actions, &plan, &args, &command);
    let interrupted = stop_requested();

    // The summary.
    let this_time: Vec<Option<Action>> = actions
        .iter()
        .zip(&outcomes)
        .map(|(&action, outcome)| (action == Action::Skip || outcome.is_some()).then_some(action))
        .collect();
    let statuses: Vec<Status> = runs
        .iter()
        .zip(&actions)
        .zip(outcomes)
        .map(|((run, action), outcome)| match (action, outcome) {
            (Action::Skip, _) => Status::Finished,
            (_, Some(status)) => status,
            (_, None) => match saved_steps(&run.dir) {
                Some(steps) if steps >= run_total_steps(run) => Status::Finished,
                Some(_) => Status::Stopped,
                None => Status::NotStarted,
            },
        })
        .collect();
    let summary = Summary::collect(&sweep_dir, &runs, &this_time, &statuses, &plan);
    print!("{}", summary.render());
    summary.write(&sweep_dir)?;
    conclude(&args, &sweep_dir, &runs, &statuses, interrupted)
}

/// The closing lines and the exit status: what is left after a signal (75), the failed runs
/// (an error), or where the summary is.
fn conclude(
    args: &SweepArgs,
    sweep_dir: &Path,
    runs: &[Run],
    statuses: &[Status],
    interrupted: bool,
) -> Result<u8> {
    let failed: Vec<String> = runs
        .iter()
        .zip(statuses)
        .filter_map(|(run, status)| match status {
            Status::Failed(why) => Some(format!("{} ({why}; log {})", run.name, run.log.display())),
            _ => None,
        })
        .collect();
    if interrupted {
        let left: Vec<&str> = runs
            .iter()
            .zip(statuses)
            .filter(|(_, s)| **s != Status::Finished)
            .map(|(r, _)| r.name.as_str())
            .collect();
        let count = |want: &Status| statuses.iter().filter(|s| *s == want).count();
        println!(
            "interrupted: {} of {} runs finished; left: {}",
            runs.len() - left.len(),
            runs.len(),
            if left.is_empty() {
                "none".to_string()
            } else {
                format!(
                    "{} ({} stopped, {} failed, {} not started)",
                    left.join(", "),
                    count(&Status::Stopped),
                    failed.len(),
                    count(&Status::NotStarted)
                )
            }
        );
        println!(
            "the same command resumes the sweep: {}",
            resume_command(args, sweep_dir)
        );
        return Ok(EXIT_INTERRUPTED);
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} runs failed: {}",
            failed.len(),
            runs.len(),
            failed.join(", ")
        );
    }
    println!(
        "sweep finished: {} runs; summary in {} and {}",
        runs.len(),
        sweep_dir.join(SUMMARY_JSON).display(),
        sweep_dir.join(SUMMARY_CSV).display()
    );
    Ok(0)
}

/// `"s"`, unless `n` is 1.
fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The way to type this sweep again, with its directory.
fn resume_command(args: &SweepArgs, sweep_dir: &Path) -> String {
    // Under `python -m engram` (see [`set_self_command`]) the command is that.
    let program = SELF_COMMAND.get().map_or("engram", |_| "python -m engram");
    let mut words: Vec<String> = vec![program.into(), "sweep".into()];
    let mut add = |flag: &str, value: String| {
        words.push(flag.to_string());
        words.push(shell_quote(&value));
    };
    if let Some(c) = &args.config {
        add("--config", c.display().to_string());
    }
    for s in &args.sets {
        add("--set", s.clone());
    }
    if let Some(s) = &args.seeds {
        add("--seeds", s.clone());
    }
    for g in &args.grids {
        add("--grid", g.clone());
    }
    add("--jobs", args.jobs.to_string());
    add("--sweep-dir", sweep_dir.display().to_string());
    for p in &args.plugins {
        add("--plugin", p.display().to_string());
    }
    if let Some(d) = &args.device {
        add("--device", d.clone());
    }
    words.join(" ")
}

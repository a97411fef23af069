//! Launching a sweep's runs: the child commands, spawning them `--jobs` at a time, signals, waiting, and the runs' statuses.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::plan::{Plan, Run};
use super::{plural, SweepArgs, EXIT_INTERRUPTED};

/// Set by the first Ctrl-C, SIGTERM or SIGHUP of a sweep.
static STOP: AtomicBool = AtomicBool::new(false);
/// Whether this process's signal handler is the sweep's.
static HANDLER: OnceLock<bool> = OnceLock::new();

/// Install the sweep's signal handler (once per process) and clear an earlier sweep's stop;
/// false when another handler was installed before (a `train` run in the same Python process).
pub(super) fn install_stop_handler() -> bool {
    let installed = *HANDLER.get_or_init(|| {
        ctrlc::set_handler(|| {
            if !STOP.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "\nsweep interrupted (Ctrl-C or SIGTERM): no new runs start; the running ones \
                     save a checkpoint and stop…"
                );
            }
        })
        .is_ok()
    });
    STOP.store(false, Ordering::SeqCst);
    installed
}

/// Whether a signal asked the sweep to stop.
pub(super) fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// What this invocation does with a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// `engram train … --overwrite` (no checkpoint yet).
    New,
    /// `engram resume` from its checkpoint, at this many steps.
    Resume(u64),
    /// Nothing: its checkpoint reached run.total_steps.
    Skip,
}

impl Action {
    /// How the summary's `this time` column names it.
    pub(super) fn label(self) -> &'static str {
        match self {
            Action::New => "new",
            Action::Resume(_) => "resumed",
            Action::Skip => "skipped",
        }
    }
}

/// Where a run stands after this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Status {
    /// Trained to run.total_steps.
    Finished,
    /// Stopped by a signal (with a checkpoint when it got that far).
    Stopped,
    /// The child failed: why.
    Failed(String),
    /// Not started.
    NotStarted,
}

impl Status {
    /// How the summary's `status` column names it.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Status::Finished => "finished",
            Status::Stopped => "stopped",
            Status::Failed(_) => "failed",
            Status::NotStarted => "not started",
        }
    }
}

/// `text` as one shell word.
pub(super) fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The arguments of the child that trains `run` (after the self command).
fn child_args(run: &Run, action: Action, plan: &Plan, args: &SweepArgs) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec![];
    if let Action::Resume(_) = action {
        out.extend(["resume".into(), run.dir.clone().into(), "--quiet".into()]);
        return out;
    }
    out.push("train".into());
    if let Some(path) = &plan.config_path {
        out.extend(["--config".into(), path.into()]);
    }
    for s in args.sets.iter().chain(&plan.points[run.point].sets) {
        out.extend(["--set".into(), s.into()]);
    }
    if let Some(d) = &args.device {
        out.extend(["--device".into(), d.into()]);
    }
    out.extend([
        "--seed".into(),
        run.seed.to_string().into(),
        "--run-dir".into(),
        run.dir.clone().into(),
        "--overwrite".into(),
        "--quiet".into(),
    ]);
    for p in &args.plugins {
        let p = p.canonicalize().unwrap_or_else(|_| p.clone());
        out.extend(["--plugin".into(), p.into()]);
    }
    out
}

/// Start one child with its output appended to (a resume) or replacing (a new run) its log.
fn spawn(command: &[OsString], child_args: &[OsString], run: &Run, append: bool) -> Result<Child> {
    let mut log = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&run.log)
        .with_context(|| format!("cannot open the log {}", run.log.display()))?;
    let words: Vec<String> = command
        .iter()
        .chain(child_args)
        .map(|w| shell_quote(&w.to_string_lossy()))
        .collect();
    writeln!(log, "==== engram sweep: {}", words.join(" "))
        .with_context(|| format!("cannot write the log {}", run.log.display()))?;
    let err = log
        .try_clone()
        .with_context(|| format!("cannot open the log {}", run.log.display()))?;
    let (program, leading) = command.split_first().context("empty self command")?;
    Command::new(program)
        .args(leading)
        .args(child_args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {}", program.to_string_lossy()))
}

/// Ask a running child to checkpoint and stop (as Ctrl-C in a terminal does to the whole
/// process group; this also reaches children when only the sweep was signalled).
fn interrupt(child: &Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with the PID of our own child, which is not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// Run the runs that need it, `--jobs` at a time, until all are done or a signal came; the
/// status of each run that was started.
pub(super) fn launch(
    runs: &[Run],
    actions: &[Action],
    plan: &Plan,
    args: &SweepArgs,
    command: &[OsString],
) -> Vec<Option<Status>> {
    let mut outcomes: Vec<Option<Status>> = vec![None; runs.len()];
    let mut queue: VecDeque<usize> = (0..runs.len())
        .filter(|&i| actions[i] != Action::Skip)
        .collect();
    let total = queue.len();
    let jobs = usize::try_from(args.jobs).unwrap_or(usize::MAX);
    let mut running: Vec<(usize, Child, Instant, usize)> = vec![];
    let mut started = 0;
    let mut stopping = false;
    loop {
        if !stopping && STOP.load(Ordering::SeqCst) {
            stopping = true;
            for (_, child, _, _) in &running {
                interrupt(child);
            }
            if !running.is_empty() {
                eprintln!(
                    "sweep: waiting for {} running run{} to save a checkpoint and stop",
                    running.len(),
                    plural(running.len())
                );
            }
        }
        while !stopping && running.len() < jobs {
            let Some(i) = queue.pop_front() else { break };
            let run = &runs[i];
            started += 1;
            let how = match actions[i] {
                Action::Resume(steps) => format!("resuming at step {steps}"),
                _ => "new".to_string(),
            };
            eprintln!(
                "sweep: [{started}/{total}] start {} ({how}; log {})",
                run.name,
                run.log.display()
            );
            let child_args = child_args(run, actions[i], plan, args);
            let append = matches!(actions[i], Action::Resume(_));
            match spawn(command, &child_args, run, append) {
                Ok(child) => running.push((i, child, Instant::now(), started)),
                Err(e) => {
                    let why = crate::error_message(&e);
                    eprintln!("sweep: [{started}/{total}] {} failed: {why}", run.name);
                    outcomes[i] = Some(Status::Failed(why));
                }
            }
        }
        if running.is_empty() && (stopping || queue.is_empty()) {
            break;
        }
        let mut k = 0;
        while k < running.len() {
            let (i, child, since, n) = &mut running[k];
            let done = match child.try_wait() {
                Ok(Some(status)) => Some(status_of(status, stopping)),
                Ok(None) => None,
                Err(e) => Some(Status::Failed(format!("cannot wait for it: {e}"))),
            };
            let Some(status) = done else {
                k += 1;
                continue;
            };
            let run = &runs[*i];
            let secs = since.elapsed().as_secs_f64();
            match &status {
                Status::Failed(why) => eprintln!(
                    "sweep: [{n}/{total}] {} failed ({why}) after {secs:.1} s; log {}",
                    run.name,
                    run.log.display()
                ),
                other => eprintln!(
                    "sweep: [{n}/{total}] {} {} after {secs:.1} s",
                    run.name,
                    other.label()
                ),
            }
            outcomes[*i] = Some(status);
            running.swap_remove(k);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    outcomes
}

/// A child's exit status as the status of its run.
fn status_of(status: ExitStatus, stopping: bool) -> Status {
    match status.code() {
        Some(0) => Status::Finished,
        Some(c) if c == i32::from(EXIT_INTERRUPTED) => Status::Stopped,
        Some(c) => Status::Failed(format!("exit status {c}")),
        // Killed by a signal: the interrupt reached it before its handler was installed.
        None if stopping => Status::Stopped,
        None => Status::Failed(signal_text(&status)),
    }
}

/// "killed by signal N".
fn signal_text(status: &ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(s) = status.signal() {
            return format!("killed by signal {s}");
        }
    }
    format!("{status}")
}

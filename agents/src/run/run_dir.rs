//! The layout of a run directory: the resolved config, the checkpoints and their files, the lock (`metrics.jsonl` and the event files are the logger's).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::config::TrainConfig;
use crate::error::{AgentError, Result};

/// File name of the resolved configuration inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Directory of the checkpoint of runs written before checkpoints were versioned (still loaded).
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Where runs written before checkpoints were versioned wrote a checkpoint before replacing
/// [`CHECKPOINT_DIR`] (removed by the first versioned save).
pub const CHECKPOINT_TMP_DIR: &str = "checkpoint.tmp";
/// Policy weights inside a checkpoint directory.
pub const POLICY_FILE: &str = "policy.bpk";
/// Optimiser state inside a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.bin";
/// Run counters (JSON) inside a checkpoint directory.
pub const COUNTERS_FILE: &str = "counters.json";
/// The lock file a training or resuming process holds (it contains the holder's PID).
pub const LOCK_FILE: &str = "run.lock";

/// Directory of the legacy (unversioned) checkpoint of a run; see
/// [`crate::run::checkpoint::latest`] for the checkpoint a run loads.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_DIR)
}

/// Whether `run_dir` holds a run (its `config.toml`).
pub fn is_run_dir(run_dir: &Path) -> bool {
    run_dir.join(CONFIG_FILE).is_file()
}

/// An exclusive OS file lock on a file that holds the holder's PID: released when dropped or
/// when the process dies, so a lock file left by a dead process is simply taken over. A run
/// directory's (`run.lock`) and a sweep directory's lock.
#[derive(Debug)]
pub struct PidLock {
    _file: File,
    path: PathBuf,
}

/// The lock of a run directory, held while a process trains or resumes in it.
pub type RunLock = PidLock;

impl PidLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a [`PidLock`] was not taken.
#[derive(Debug)]
pub enum PidLockError {
    /// Another live process holds it (its PID, unless it is still writing it).
    Held(Option<u32>),
    /// The lock file could not be created, locked or written.
    Io(std::io::Error),
}

/// Take the lock of the file at `path` (created if missing) and write this process's PID in it.
pub fn lock_pid_file(path: &Path) -> std::result::Result<PidLock, PidLockError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(PidLockError::Io)?;
    // `File::try_lock` is std's OS file lock (flock on Unix, LockFileEx on Windows), stable
    // since Rust 1.89; the workspace's declared rust-version is older, but burn 0.22 already
    // needs Rust 1.95 to build.
    #[allow(clippy::incompatible_msrv)]
    let locked = file.try_lock();
    match locked {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(PidLockError::Held(text.trim().parse::<u32>().ok()));
        }
        Err(TryLockError::Error(e)) => return Err(PidLockError::Io(e)),
    }
    let write_pid = |file: &mut File| -> std::io::Result<()> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())?;
        file.flush()
    };
    write_pid(&mut file).map_err(PidLockError::Io)?;
    Ok(PidLock {
        _file: file,
        path: path.to_path_buf(),
    })
}

/// Take the lock of `run_dir` (which must exist); if another process holds it, the error names
/// that process's PID.
pub fn lock_run_dir(run_dir: &Path) -> Result<RunLock> {
    let path = run_dir.join(LOCK_FILE);
    lock_pid_file(&path).map_err(|e| match e {
        PidLockError::Held(pid) => {
            let holder = match pid {
                Some(pid) => format!("PID {pid}"),
                None => "a process that is still starting".into(),
            };
            AgentError::RunDir(format!(
                "run directory {} is in use by another engram process ({holder}, which holds {}); \
                 wait for it to finish or stop it (Ctrl-C saves a checkpoint) before training or \
                 resuming here",
                run_dir.display(),
                path.display()
            ))
        }
        PidLockError::Io(e) => AgentError::io(
            "cannot lock the run directory (check its permissions)",
            &path,
            e,
        ),
    })
}

/// Create the directory of a new run named `name` under `parent`, never one that exists:
/// if `parent/name` is taken, `parent/name-2`, `parent/name-3`, … (created atomically, so runs
/// started at the same moment get different directories).
pub fn create_unique_run_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(parent).map_err(|e| {
        AgentError::io(
            "cannot create the runs directory (choose another run.runs_dir or fix its permissions)",
            parent,
            e,
        )
    })?;
    for n in 1u32.. {
        let dir = if n == 1 {
            parent.join(name)
        } else {
            parent.join(format!("{name}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(AgentError::io(
                    "cannot create the run directory (choose another run.runs_dir or fix its permissions)",
                    &dir,
                    e,
                ))
            }
        }
    }
    unreachable!("some name of the form name-N is free")
}

/// Whether `name` is one of the files or directories a run writes (what `--overwrite` removes).
fn is_run_file(name: &str) -> bool {
    name == CONFIG_FILE
        || name == crate::logging::METRICS_FILE
        || name == CHECKPOINT_DIR
        || name == CHECKPOINT_TMP_DIR
        || name.starts_with("checkpoint-")
        || name.starts_with("diverged-")
        || name.starts_with("events.out.tfevents.")
}

/// Create (or, when resuming, check) a run directory, take its lock and store the resolved
/// config in it. A new run refuses a directory that already holds a run unless `overwrite`,
/// which first removes that run's files (config, metrics, event files, checkpoints).
pub fn prepare_run_dir(
    config: &TrainConfig,
    run_dir: &Path,
    resume: bool,
    overwrite: bool,
) -> Result<RunLock> {
    std::fs::create_dir_all(run_dir).map_err(|e| {
        AgentError::io(
            "cannot create the run directory (choose another run.runs_dir or fix its permissions)",
            run_dir,
            e,
        )
    })?;
    let lock = lock_run_dir(run_dir)?;
    let path = run_dir.join(CONFIG_FILE);
    if !resume {
        if is_run_dir(run_dir) {
            if !overwrite {
                return Err(AgentError::RunDir(format!(
                    "{} already holds a run (its config.toml); continue it with `engram resume {}`, \
                     or pass --overwrite to replace it with a new run (its checkpoints and logs are deleted)",
                    run_dir.display(),
                    run_dir.display()
                )));
            }
            remove_run_files(run_dir)?;
        }
        std::fs::write(&path, config.to_toml()?).map_err(|e| {
            AgentError::io(
                "cannot write into the run directory (check its permissions)",
                &path,
                e,
            )
        })?;
    }
    Ok(lock)
}

/// Remove the files of the run in `run_dir` (leaving anything else there).
fn remove_run_files(run_dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(run_dir)
        .map_err(|e| AgentError::io("cannot list the run directory", run_dir, e))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| AgentError::io("cannot list the run directory", run_dir, e))?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_run_file) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| {
            AgentError::io(
                "cannot remove a file of the run being overwritten",
                &path,
                e,
            )
        })?;
    }
    Ok(())
}

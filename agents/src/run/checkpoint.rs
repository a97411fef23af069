//! Checkpoints: policy weights, optimizer state and run counters in versioned directories, replaced crash-safely and verified by checksum on load.
//!
//! A checkpoint is written into `checkpoint-<update>.partial/` (each file, its SHA-256 in
//! `manifest.json` and the directory fsynced), then renamed to `checkpoint-<update>/` (an
//! atomic step; `checkpoint-<update>.<k>/` when one with that name exists) and the run
//! directory is fsynced; only then are checkpoints older than the previous one pruned. So at
//! every instant a complete checkpoint exists, and a directory named `checkpoint-…` without
//! `.partial` is complete. Loading takes the newest one; a run written before checkpoints were
//! versioned has a single `checkpoint/` (no manifest), which still loads.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::run_dir::{
    checkpoint_dir, CHECKPOINT_DIR, CHECKPOINT_TMP_DIR, COUNTERS_FILE, OPTIMIZER_FILE, POLICY_FILE,
};
use crate::error::{AgentError, Result};
use crate::policy::Policy;

/// Name prefix of versioned checkpoint directories (`checkpoint-<update>`).
pub const VERSIONED_PREFIX: &str = "checkpoint-";
/// Name prefix of the directories a diverged run's last (non-finite) state is saved in
/// (`diverged-<update>`); they are never loaded by `resume` or `eval`.
pub const DIVERGED_PREFIX: &str = "diverged-";
/// The SHA-256 of each file of a checkpoint, written last into it.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Suffix of a checkpoint directory being written.
const PARTIAL_SUFFIX: &str = ".partial";
/// Versioned checkpoints kept: the newest and the one before it.
const KEEP: usize = 2;
/// The files of a checkpoint.
const FILES: [&str; 3] = [POLICY_FILE, OPTIMIZER_FILE, COUNTERS_FILE];

/// Counters a resumed run continues from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Updates done.
    pub update: u64,
    /// Environment steps done.
    pub global_step: u64,
    /// Episodes finished.
    pub episodes: u64,
    /// Seconds trained so far (over all sessions of the run).
    pub elapsed_secs: f64,
}

/// `manifest.json`: the SHA-256 (lowercase hex) of each file of the checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    sha256: BTreeMap<String, String>,
}

/// One complete versioned checkpoint of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    update: u64,
    copy: u32,
    dir: PathBuf,
}

/// `checkpoint-<update>` or `checkpoint-<update>.<copy>` (not `.partial`).
fn parse_version(name: &str) -> Option<(u64, u32)> {
    let rest = name.strip_prefix(VERSIONED_PREFIX)?;
    match rest.split_once('.') {
        None => Some((rest.parse().ok()?, 0)),
        Some((update, copy)) => Some((update.parse().ok()?, copy.parse().ok()?)),
    }
}

/// The complete versioned checkpoints of `run_dir`, oldest first.
fn versions(run_dir: &Path) -> Result<Vec<Version>> {
    let mut found = vec![];
    let entries = match fs::read_dir(run_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(AgentError::io("list the run directory", run_dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| AgentError::io("list the run directory", run_dir, e))?;
        if let Some((update, copy)) = entry.file_name().to_str().and_then(parse_version) {
            if entry.path().is_dir() {
                found.push(Version {
                    update,
                    copy,
                    dir: entry.path(),
                });
            }
        }
    }
    found.sort_by_key(|v| (v.update, v.copy));
    Ok(found)
}

/// The checkpoint directory a run loads: the newest complete `checkpoint-<update>/`, else the
/// legacy `checkpoint/` of a run written before checkpoints were versioned; `None` if the run
/// has no checkpoint.
pub fn latest(run_dir: &Path) -> Result<Option<PathBuf>> {
    if let Some(v) = versions(run_dir)?.pop() {
        return Ok(Some(v.dir));
    }
    let legacy = checkpoint_dir(run_dir);
    Ok(legacy.is_dir().then_some(legacy))
}

/// fsync a directory (its entries: new, renamed and removed names); a no-op where directories
/// cannot be opened as files.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AgentError::io("sync directory", dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// SHA-256 of a file's content, as lowercase hex.
fn sha256_of(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| AgentError::io("read", path, e))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// Write the files of a checkpoint and its manifest into the (new) directory `dir`, each
/// fsynced, then the directory itself.
fn write_files(
    dir: &Path,
    policy: &Policy,
    optim: &ModuleOptimizer,
    counters: Counters,
) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| AgentError::io("create checkpoint directory", dir, e))?;
    policy
        .clone()
        .save_file(dir.join(POLICY_FILE))
        .map_err(|e| AgentError::Checkpoint(format!("write policy weights: {e:?}")))?;
    optim
        .save(dir.join(OPTIMIZER_FILE))
        .map_err(|e| AgentError::Checkpoint(format!("write optimizer state: {e:?}")))?;
    let json = serde_json::to_string_pretty(&counters)
        .map_err(|e| AgentError::Checkpoint(e.to_string()))?;
    fs::write(dir.join(COUNTERS_FILE), json)
        .map_err(|e| AgentError::io("write", dir.join(COUNTERS_FILE), e))?;
    let mut manifest = Manifest {
        sha256: BTreeMap::new(),
    };
    for name in FILES {
        let path = dir.join(name);
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| AgentError::io("sync", &path, e))?;
        manifest.sha256.insert(name.to_string(), sha256_of(&path)?);
    }
    let path = dir.join(MANIFEST_FILE);
    let json = serde_json::to_string_pretty(&manifest)
        .map_err(|e| AgentError::Checkpoint(e.to_string()))?;
    fs::write(&path, json).map_err(|e| AgentError::io("write", &path, e))?;
    File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(|e| AgentError::io("sync", &path, e))?;
    sync_dir(dir)
}

/// Remove a directory that is no longer needed, first renaming it to a `.partial` name so that
/// a crash halfway through leaves nothing that reads as a complete checkpoint.
fn discard(dir: &Path) {
    let mut doomed = dir.as_os_str().to_owned();
    doomed.push(PARTIAL_SUFFIX);
    let doomed = PathBuf::from(doomed);
    let _ = fs::remove_dir_all(&doomed);
    if fs::rename(dir, &doomed).is_ok() {
        let _ = fs::remove_dir_all(&doomed);
    }
}

/// Save weights, optimizer and counters as a new checkpoint of `run_dir` (crash-safely; see the
/// module documentation) and prune the ones before the previous; returns its directory.
pub fn save(
    run_dir: &Path,
    policy: &Policy,
    optim: &ModuleOptimizer,
    counters: Counters,
) -> Result<PathBuf> {
    // Leftovers of a save or a prune that was killed.
    if let Ok(entries) = fs::read_dir(run_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(VERSIONED_PREFIX) && name.ends_with(PARTIAL_SUFFIX) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let existing = versions(run_dir)?;
    let name = match existing
        .iter()
        .filter(|v| v.update == counters.update)
        .map(|v| v.copy + 1)
        .max()
    {
        None => format!("{VERSIONED_PREFIX}{}", counters.update),
        Some(copy) => format!("{VERSIONED_PREFIX}{}.{copy}", counters.update),
    };
    let dir = run_dir.join(&name);
    let partial = run_dir.join(format!("{name}{PARTIAL_SUFFIX}"));
    write_files(&partial, policy, optim, counters)?;
    fs::rename(&partial, &dir)
        .map_err(|e| AgentError::io("move checkpoint into place", &dir, e))?;
    sync_dir(run_dir)?;
    // The new checkpoint is complete and durable: prune all but the newest KEEP, and the
    // legacy layout's directories.
    let all = versions(run_dir)?;
    for old in &all[..all.len().saturating_sub(KEEP)] {
        discard(&old.dir);
    }
    for legacy in [checkpoint_dir(run_dir), run_dir.join(CHECKPOINT_TMP_DIR)] {
        if legacy.is_dir() {
            discard(&legacy);
        }
    }
    Ok(dir)
}

/// Whether every parameter of a module is finite (`x * 0` sums to NaN exactly when some `x`
/// is NaN or infinite).
struct Finite {
    finite: bool,
}

impl ModuleVisitor for Finite {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.finite {
            let zeros = (param.val() * 0.0f32).sum().into_scalar::<f32>();
            self.finite = !zeros.is_nan();
        }
    }
}

/// Whether all weights of `policy` are finite (a checkpoint is only saved when they are).
pub fn weights_are_finite(policy: &Policy) -> bool {
    let mut v = Finite { finite: true };
    policy.visit(&mut v);
    v.finite
}

/// Save a state that must never be resumed from (a diverged run's non-finite weights) into
/// `run_dir/diverged-<update>/`, beside the checkpoints; returns that directory.
pub fn save_diverged(
    run_dir: &Path,
    policy: &Policy,
    optim: &ModuleOptimizer,
    counters: Counters,
) -> Result<PathBuf> {
    let dir = run_dir.join(format!("{DIVERGED_PREFIX}{}", counters.update));
    let _ = fs::remove_dir_all(&dir);
    write_files(&dir, policy, optim, counters)?;
    Ok(dir)
}

/// The checkpoint `run_dir` loads, with its files checked: each must exist and (in a versioned
/// checkpoint) match the SHA-256 its manifest recorded; errors name the file.
fn verified_latest(run_dir: &Path) -> Result<PathBuf> {
    let Some(dir) = latest(run_dir)? else {
        return Err(AgentError::Checkpoint(format!(
            "no checkpoint in {} (a run saves one every run.checkpoint_every updates, at the end and on Ctrl-C)",
            run_dir.display()
        )));
    };
    verify(&dir)?;
    Ok(dir)
}

/// Check the files of the checkpoint in `dir` (see [`verified_latest`]).
pub fn verify(dir: &Path) -> Result<()> {
    for name in FILES {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(AgentError::Checkpoint(format!(
                "checkpoint file {} is missing",
                path.display()
            )));
        }
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        if dir.file_name() == Some(std::ffi::OsStr::new(CHECKPOINT_DIR)) {
            // The legacy layout had no checksums.
            return Ok(());
        }
        return Err(AgentError::Checkpoint(format!(
            "checkpoint file {} is missing",
            manifest_path.display()
        )));
    }
    let text = fs::read_to_string(&manifest_path)
        .map_err(|e| AgentError::io("read", &manifest_path, e))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
        AgentError::Checkpoint(format!(
            "checkpoint file {} is corrupt: {e}",
            manifest_path.display()
        ))
    })?;
    for name in FILES {
        let path = dir.join(name);
        let Some(expected) = manifest.sha256.get(name) else {
            return Err(AgentError::Checkpoint(format!(
                "{} records no checksum of {name}",
                manifest_path.display()
            )));
        };
        let actual = sha256_of(&path)?;
        if &actual != expected {
            let older = dir
                .parent()
                .and_then(|run| versions(run).ok())
                .and_then(|v| v.into_iter().rev().find(|v| v.dir != dir))
                .map(|v| {
                    format!(
                        "; the previous checkpoint {} is still there: delete {} to resume from it",
                        v.dir.display(),
                        dir.display()
                    )
                })
                .unwrap_or_default();
            return Err(AgentError::Checkpoint(format!(
                "checkpoint file {} is corrupt: its SHA-256 is {}…, not the {}… recorded when it was saved{older}",
                path.display(),
                &actual[..12],
                &expected[..expected.len().min(12)]
            )));
        }
    }
    Ok(())
}

/// Load only the policy weights of `run_dir`'s checkpoint into a freshly built `policy`
/// (to start a new run from a trained one with `run.init_from`: fine-tuning, curricula).
pub fn load_weights(run_dir: &Path, policy: Policy) -> Result<Policy> {
    load_policy_weights(run_dir, policy).map_err(|e| match e {
        AgentError::Checkpoint(m) => AgentError::Checkpoint(format!("run.init_from: {m}")),
        other => other,
    })
}

/// Load the policy weights of `run_dir`'s checkpoint into a freshly built `policy` (for
/// evaluation and `run.init_from`); the error says when there is no checkpoint, a file is
/// missing or corrupt, or the weights do not fit the policy.
pub fn load_policy_weights(run_dir: &Path, policy: Policy) -> Result<Policy> {
    let dir = verified_latest(run_dir)?;
    policy_from(&dir, policy)
}

/// The weights of the (verified) checkpoint in `dir` loaded into `policy`.
fn policy_from(dir: &Path, policy: Policy) -> Result<Policy> {
    policy.try_load_file(dir.join(POLICY_FILE)).map_err(|e| {
        AgentError::Checkpoint(format!(
            "policy weights in {} do not fit this config (same env spaces, encoder and core needed): {e:?}",
            dir.display()
        ))
    })
}

/// Load the newest checkpoint of `run_dir` into a freshly built `policy` and `optim`.
pub fn load(
    run_dir: &Path,
    policy: Policy,
    optim: ModuleOptimizer,
) -> Result<(Policy, ModuleOptimizer, Counters)> {
    let dir = verified_latest(run_dir)?;
    let policy = policy_from(&dir, policy)?;
    let optim = optim.load(dir.join(OPTIMIZER_FILE)).map_err(|e| {
        AgentError::Checkpoint(format!("optimizer state in {}: {e:?}", dir.display()))
    })?;
    Ok((policy, optim, counters_in(&dir)?))
}

/// The counters of `run_dir`'s newest checkpoint (its files checked as [`load`] does).
pub fn load_counters(run_dir: &Path) -> Result<Counters> {
    counters_in(&verified_latest(run_dir)?)
}

/// The counters stored in the checkpoint directory `dir`.
fn counters_in(dir: &Path) -> Result<Counters> {
    let path = dir.join(COUNTERS_FILE);
    let text = fs::read_to_string(&path).map_err(|e| AgentError::io("read", &path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| AgentError::Checkpoint(format!("{}: {e}", path.display())))
}

//! Checkpoints: policy weights, optimizer state and run counters, written atomically.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::policy::Policy;

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

/// Directory of the latest checkpoint of a run.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoint")
}

/// Save weights, optimizer and counters into `run_dir/checkpoint` (replacing it atomically).
pub fn save(
    run_dir: &Path,
    policy: &Policy,
    optim: &ModuleOptimizer,
    counters: Counters,
) -> Result<PathBuf> {
    let dir = checkpoint_dir(run_dir);
    let tmp = run_dir.join("checkpoint.tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| AgentError::io("create checkpoint directory", &tmp, e))?;
    policy
        .clone()
        .save_file(tmp.join("policy.bpk"))
        .map_err(|e| AgentError::Checkpoint(format!("write policy weights: {e:?}")))?;
    optim
        .save(tmp.join("optimizer.bin"))
        .map_err(|e| AgentError::Checkpoint(format!("write optimizer state: {e:?}")))?;
    let json = serde_json::to_string_pretty(&counters)
        .map_err(|e| AgentError::Checkpoint(e.to_string()))?;
    fs::write(tmp.join("counters.json"), json)
        .map_err(|e| AgentError::io("write", tmp.join("counters.json"), e))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir).map_err(|e| AgentError::io("move checkpoint into place", &dir, e))?;
    Ok(dir)
}

/// Load only the policy weights of `run_dir`'s checkpoint into a freshly built `policy`
/// (to start a new run from a trained one: fine-tuning, curricula).
pub fn load_weights(run_dir: &Path, policy: Policy) -> Result<Policy> {
    let dir = checkpoint_dir(run_dir);
    if !dir.is_dir() {
        return Err(AgentError::Checkpoint(format!(
            "run.init_from: no checkpoint in {} (a run saves one every run.checkpoint_every updates, at the end and on Ctrl-C)",
            dir.display()
        )));
    }
    policy.try_load_file(dir.join("policy.bpk")).map_err(|e| {
        AgentError::Checkpoint(format!(
            "run.init_from: policy weights in {} do not fit this config (same env spaces, encoder and core needed): {e:?}",
            dir.display()
        ))
    })
}

/// Load a checkpoint into a freshly built `policy` and `optim`.
pub fn load(
    run_dir: &Path,
    policy: Policy,
    optim: ModuleOptimizer,
) -> Result<(Policy, ModuleOptimizer, Counters)> {
    let dir = checkpoint_dir(run_dir);
    if !dir.is_dir() {
        return Err(AgentError::Checkpoint(format!(
            "no checkpoint in {} (a run saves one every run.checkpoint_every updates, at the end and on Ctrl-C)",
            dir.display()
        )));
    }
    let policy = policy.try_load_file(dir.join("policy.bpk")).map_err(|e| {
        AgentError::Checkpoint(format!(
            "policy weights in {} do not fit this config: {e:?}",
            dir.display()
        ))
    })?;
    let optim = optim.load(dir.join("optimizer.bin")).map_err(|e| {
        AgentError::Checkpoint(format!("optimizer state in {}: {e:?}", dir.display()))
    })?;
    let path = dir.join("counters.json");
    let text = fs::read_to_string(&path).map_err(|e| AgentError::io("read", &path, e))?;
    let counters = serde_json::from_str(&text)
        .map_err(|e| AgentError::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok((policy, optim, counters))
}

//! Checkpoints: policy weights, optimizer state and run counters, written atomically.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use super::run_dir::{
    checkpoint_dir, CHECKPOINT_TMP_DIR, COUNTERS_FILE, OPTIMIZER_FILE, POLICY_FILE,
};
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

/// Save weights, optimizer and counters into `run_dir/checkpoint` (replacing it atomically).
pub fn save(
    run_dir: &Path,
    policy: &Policy,
    optim: &ModuleOptimizer,
    counters: Counters,
) -> Result<PathBuf> {
    let dir = checkpoint_dir(run_dir);
    let tmp = run_dir.join(CHECKPOINT_TMP_DIR);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| AgentError::io("create checkpoint directory", &tmp, e))?;
    policy
        .clone()
        .save_file(tmp.join(POLICY_FILE))
        .map_err(|e| AgentError::Checkpoint(format!("write policy weights: {e:?}")))?;
    optim
        .save(tmp.join(OPTIMIZER_FILE))
        .map_err(|e| AgentError::Checkpoint(format!("write optimizer state: {e:?}")))?;
    let json = serde_json::to_string_pretty(&counters)
        .map_err(|e| AgentError::Checkpoint(e.to_string()))?;
    fs::write(tmp.join(COUNTERS_FILE), json)
        .map_err(|e| AgentError::io("write", tmp.join(COUNTERS_FILE), e))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir).map_err(|e| AgentError::io("move checkpoint into place", &dir, e))?;
    Ok(dir)
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
/// evaluation and `run.init_from`); the error says when there is no checkpoint or it does not
/// fit the policy.
pub fn load_policy_weights(run_dir: &Path, policy: Policy) -> Result<Policy> {
    let dir = checkpoint_dir(run_dir);
    if !dir.is_dir() {
        return Err(AgentError::Checkpoint(format!(
            "no checkpoint in {} (a run saves one every run.checkpoint_every updates, at the end and on Ctrl-C)",
            dir.display()
        )));
    }
    policy.try_load_file(dir.join(POLICY_FILE)).map_err(|e| {
        AgentError::Checkpoint(format!(
            "policy weights in {} do not fit this config (same env spaces, encoder and core needed): {e:?}",
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
    let policy = load_policy_weights(run_dir, policy)?;
    let dir = checkpoint_dir(run_dir);
    let optim = optim.load(dir.join(OPTIMIZER_FILE)).map_err(|e| {
        AgentError::Checkpoint(format!("optimizer state in {}: {e:?}", dir.display()))
    })?;
    let path = dir.join(COUNTERS_FILE);
    let text = fs::read_to_string(&path).map_err(|e| AgentError::io("read", &path, e))?;
    let counters = serde_json::from_str(&text)
        .map_err(|e| AgentError::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok((policy, optim, counters))
}

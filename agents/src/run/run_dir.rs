//! The layout of a run directory: the resolved config, the checkpoint and its files (`metrics.jsonl` and the event files are the logger's).

use std::path::{Path, PathBuf};

use crate::config::TrainConfig;
use crate::error::{AgentError, Result};

/// File name of the resolved configuration inside a run directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Directory of the latest checkpoint inside a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Where a checkpoint is written before it replaces the last one.
pub const CHECKPOINT_TMP_DIR: &str = "checkpoint.tmp";
/// Policy weights inside the checkpoint directory.
pub const POLICY_FILE: &str = "policy.bpk";
/// Optimiser state inside the checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.bin";
/// Run counters (JSON) inside the checkpoint directory.
pub const COUNTERS_FILE: &str = "counters.json";

/// Directory of the latest checkpoint of a run.
pub fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_DIR)
}

/// Create (or, when resuming, check) a run directory and store the resolved config in it.
pub fn prepare_run_dir(config: &TrainConfig, run_dir: &Path, resume: bool) -> Result<()> {
    std::fs::create_dir_all(run_dir).map_err(|e| {
        AgentError::io(
            "cannot create the run directory (choose another run.runs_dir or fix its permissions)",
            run_dir,
            e,
        )
    })?;
    let path = run_dir.join(CONFIG_FILE);
    if !resume {
        std::fs::write(&path, config.to_toml()?).map_err(|e| {
            AgentError::io(
                "cannot write into the run directory (check its permissions)",
                &path,
                e,
            )
        })?;
    }
    Ok(())
}

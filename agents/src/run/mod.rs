//! Running training: the public `train` entry and its algorithm dispatch, the session, the synchronous and asynchronous loops, the run directory, checkpoints, evaluation.

pub mod checkpoint;
pub mod device;
pub mod eval;
pub mod learner_bench;
pub mod module_activity;
pub mod resources;
pub mod run_dir;

mod async_loop;
mod session;
mod sync_loop;
mod watch;

use std::path::Path;

pub use session::{FaultCounts, TrainOptions, TrainSummary};

use crate::algo::{Appo, Ppo};
use crate::config::{Algo, Backend, TrainConfig};
use crate::error::{AgentError, Result};
use session::Session;
pub use watch::DivergenceWatch;

/// Train (or resume) the run in `run_dir` with `config` (synchronous PPO, or APPO/IMPALA).
///
/// A new algorithm adds its arm here: which loop drives it, and its [`crate::algo::Algorithm`].
pub fn train(config: &TrainConfig, run_dir: &Path, options: &TrainOptions) -> Result<TrainSummary> {
    config.env.prepare()?;
    if config.run.backend == Backend::Ray && options.remote.is_none() {
        return Err(session::no_remote_backend());
    }
    if options.resume {
        // A finished run is reported before anything is opened, locked or logged (a run dir
        // in use, or without a readable checkpoint, gets its error from `Session::open`).
        if let Ok(counters) = checkpoint::load_counters(run_dir) {
            if counters.global_step >= config.run.total_steps {
                return Ok(TrainSummary::already_finished(run_dir, &counters));
            }
        }
    }
    let mut session = Session::open(config, run_dir, options)?;
    let outcome = match config.run.algo {
        Algo::Ppo => sync_loop::run(&mut session, &Ppo),
        Algo::Appo | Algo::Impala => async_loop::run(
            &mut session,
            &Appo::new(config.run.algo, config.ppo.gamma, &config.async_),
        ),
    };
    match outcome {
        Ok(()) => session.finish(),
        Err(AgentError::NonFiniteLoss {
            loss,
            value,
            update,
            ..
        }) => {
            // Never over the last good checkpoint: beside it, under a name resume never loads.
            let saved = session.save_diverged_state()?;
            let _ = session.logger.flush();
            Err(AgentError::NonFiniteLoss {
                loss,
                value,
                update,
                saved,
            })
        }
        Err(AgentError::Env(e @ engram_envs::EnvError::Crashed { .. })) => {
            // Too many env faults (e.g. a Python env that keeps raising): keep what was learned.
            let saved = session.save_checkpoint()?;
            let _ = session.logger.flush();
            Err(AgentError::EnvGaveUp(format!(
                "{e}; the run stopped with a checkpoint at update {} in {} (`engram resume` \
                 continues it once the env is fixed)",
                session.counters.update,
                saved.display()
            )))
        }
        Err(AgentError::Remote(e)) if session.counters.update == 0 => {
            let _ = session.logger.flush();
            Err(AgentError::Remote(format!(
                "{e}; nothing was trained (start again with --overwrite, or \
                 overwrite=True, to reuse {})",
                session.run_dir.display()
            )))
        }
        Err(AgentError::Remote(e)) => {
            // The remote actors failed beyond their restarts: keep what was learned.
            let saved = session.save_checkpoint()?;
            let _ = session.logger.flush();
            Err(AgentError::Remote(format!(
                "{e}; the run stopped with a checkpoint at update {} in {} (`engram resume` \
                 continues it)",
                session.counters.update,
                saved.display()
            )))
        }
        Err(e) => Err(e),
    }
}

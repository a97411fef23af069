//! Python Gymnasium envs in Engram's runtime: `gymnasium:<id>` and `python:<module>:<factory>` ids, stepped in worker processes.
//!
//! Engram's process never embeds Python: each env lives in a worker process (`python -c`, the
//! program in `worker.py`) that Engram talks to over a pipe with flat f32 buffers. Gymnasium's
//! `AsyncVectorEnv` is not used because its parent is a Python process (it would put an
//! interpreter and its lock in the learner) and because it cannot restart one dead or hung
//! worker: a failure there closes the whole vector env.

mod pool;

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

pub use pool::{Command1, Outcome, WorkerPool};

use crate::env::{Env, EnvSpec, Step};
use crate::error::{EnvError, Result};
use crate::space::Action;

/// How Python envs are made and supervised (`env.python_*` in a run's config).
#[derive(Debug, Clone, PartialEq)]
pub struct PythonSettings {
    /// The interpreter (default: `$ENGRAM_PYTHON`, else `python3` on the `PATH`).
    pub interpreter: Option<PathBuf>,
    /// Modules imported first, so that their Gymnasium registrations exist (`minigrid`, ...).
    pub imports: Vec<String>,
    /// `module:callable` wrappers applied in order to every env (`minigrid.wrappers:ImgObsWrapper`).
    pub wrappers: Vec<String>,
    /// Directories put first on the workers' `sys.path`.
    pub sys_path: Vec<String>,
    /// Worker processes (default: one per core, at most one per env).
    pub workers: Option<usize>,
    /// A worker that does not answer a step within this time is killed and started again.
    pub timeout: Duration,
    /// More faults than this (exceptions, dead or hung workers) stop the run.
    pub max_failures: u64,
}

impl Default for PythonSettings {
    fn default() -> Self {
        PythonSettings {
            interpreter: None,
            imports: vec![],
            wrappers: vec![],
            sys_path: vec![],
            workers: None,
            timeout: Duration::from_secs(60),
            max_failures: 100,
        }
    }
}

impl PythonSettings {
    /// The interpreter workers run with.
    pub fn interpreter(&self) -> PathBuf {
        self.interpreter
            .clone()
            .or_else(|| std::env::var_os("ENGRAM_PYTHON").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("python3"))
    }
}

static SETTINGS: RwLock<Option<PythonSettings>> = RwLock::new(None);

/// Set the process-wide settings every Python env made from now on uses.
pub fn configure(settings: PythonSettings) {
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = Some(settings);
}

/// The process-wide settings (defaults until [`configure`]).
pub fn settings() -> PythonSettings {
    SETTINGS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// A Python env id, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `gymnasium:<registered id>`: made with `gymnasium.make(id, **kwargs)`.
    Gymnasium(String),
    /// `python:<module or file.py>:<factory>`: made with `factory(**kwargs)`.
    Factory(String),
}

impl Target {
    /// Parse `id`; `None` when it is not a Python env id.
    pub fn parse(id: &str) -> Option<Result<Target>> {
        let bad = |message: &str| {
            Some(Err(EnvError::Env {
                id: id.into(),
                message: message.into(),
            }))
        };
        if let Some(name) = id.strip_prefix("gymnasium:") {
            if name.is_empty() {
                return bad(
                    "name the Gymnasium env after `gymnasium:`, e.g. `gymnasium:CartPole-v1`",
                );
            }
            return Some(Ok(Target::Gymnasium(name.into())));
        }
        if let Some(path) = id.strip_prefix("python:") {
            match path.rsplit_once(':') {
                Some((module, factory)) if !module.is_empty() && !factory.is_empty() => {}
                _ => {
                    return bad(
                        "write a Python env factory as `python:module.path:function` (or \
                         `python:path/to/file.py:function`)",
                    )
                }
            }
            return Some(Ok(Target::Factory(path.into())));
        }
        None
    }

    /// The Engram id (`gymnasium:...` / `python:...`).
    pub fn id(&self) -> String {
        match self {
            Target::Gymnasium(name) => format!("gymnasium:{name}"),
            Target::Factory(path) => format!("python:{path}"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Target::Gymnasium(_) => "gymnasium",
            Target::Factory(_) => "factory",
        }
    }

    fn name(&self) -> &str {
        match self {
            Target::Gymnasium(name) | Target::Factory(name) => name,
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            Target::Gymnasium(_) => {
                "hint: a third-party env registers itself on import: list its package in \
                 env.python_imports (e.g. [\"minigrid\"]); and gymnasium must be installed in \
                 that interpreter (env.python_interpreter or ENGRAM_PYTHON chooses it)"
            }
            Target::Factory(_) => {
                "hint: the module must be importable by the interpreter (env.python_interpreter or \
                 ENGRAM_PYTHON), e.g. from the directory Engram runs in or PYTHONPATH"
            }
        }
    }
}

/// Whether `id` names a Python env.
pub fn is_python_id(id: &str) -> bool {
    Target::parse(id).is_some()
}

/// One Python env in its own worker process, as an [`Env`] (evaluation, checks, probes).
pub struct PythonEnv {
    pool: WorkerPool,
    outcome: [Outcome; 1],
    actions: Vec<f64>,
    scratch: Vec<f32>,
}

impl PythonEnv {
    /// Make Python env `target` with `kwargs`.
    pub fn new(
        target: Target,
        kwargs: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self> {
        let pool = WorkerPool::spawn(target, kwargs, 1)?;
        let k = pool.spec().action_space.action_len();
        let d = pool.spec().obs_dim();
        Ok(PythonEnv {
            pool,
            outcome: [Outcome::default()],
            actions: vec![0.0; k],
            scratch: vec![0.0; d],
        })
    }

    /// Faults contained so far.
    pub fn failures(&self) -> u64 {
        self.pool.failures()
    }
}

impl Env for PythonEnv {
    fn spec(&self) -> &EnvSpec {
        self.pool.spec()
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        self.pool.reset(&[seed], obs, &mut self.outcome)?;
        if self.outcome[0].fault {
            return Err(self.crashed("its reset raised an exception (see the log)"));
        }
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        match action {
            Action::Discrete(a) => self.actions[0] = a as f64,
            Action::MultiDiscrete(v) => {
                for (o, &a) in self.actions.iter_mut().zip(v) {
                    *o = a as f64;
                }
            }
            Action::Continuous(v) => {
                for (o, &a) in self.actions.iter_mut().zip(v) {
                    *o = a as f64;
                }
            }
        }
        self.pool.step(
            &[Command1::Step],
            &self.actions,
            false,
            obs,
            &mut self.scratch,
            &mut self.outcome,
        )?;
        let o = self.outcome[0];
        if o.fault {
            // A VecEnv contains this like a panic: new episode, the step a truncation.
            return Err(
                self.crashed("its step raised an exception or its worker failed (see the log)")
            );
        }
        Ok(Step {
            reward: o.reward,
            terminated: o.terminated,
            truncated: o.truncated,
        })
    }
}

impl PythonEnv {
    fn crashed(&self, message: &str) -> EnvError {
        EnvError::Crashed {
            id: self.pool.spec().id.clone(),
            message: message.into(),
        }
    }
}

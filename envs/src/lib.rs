//! Engram's environment layer: the [`Env`] trait, spaces, [`VecEnv`], the registry, the env
//! checker and the built-in long-horizon memory tasks.
//!
//! ```
//! use engram_envs::{make, Action};
//!
//! let mut env = make("TMaze-Passive-v0", &serde_json::json!({"corridor_length": 10}).as_object().unwrap()).unwrap();
//! let mut obs = vec![0.0; env.spec().obs_dim()];
//! env.reset(Some(0), &mut obs).unwrap();
//! let goal_up = obs[1] > 0.0;
//! let mut total = 0.0;
//! for _ in 0..10 {
//!     total += env.step(Action::Discrete(0), &mut obs).unwrap().reward; // walk right
//! }
//! let last = env.step(Action::Discrete(if goal_up { 1 } else { 3 }), &mut obs).unwrap();
//! assert!(last.terminated);
//! assert_eq!(total + last.reward, 1.0);
//! ```

pub mod bench;
pub mod builtin;
pub mod catalog;
pub mod checker;
pub mod env;
pub mod error;
pub mod guarded;
#[cfg(feature = "gymnasium")]
pub mod gymnasium_adapter;
pub mod kwargs;
pub mod plugin;
pub mod python;
pub mod registry;
pub mod rng;
pub mod space;
pub mod vec_env;

pub use builtin::sequence_tasks::SequenceTask;
pub use catalog::{describe, list, make, register};
pub use checker::{check_env, CheckFailure, CheckOptions, CheckReport};
pub use env::{Env, EnvSpec, Frame, Step};
pub use error::{EnvError, Result};
pub use guarded::Guarded;
pub use kwargs::{KwargKind, KwargSpec, Kwargs};
pub use plugin::{load_plugin, load_plugins, ENGRAM_ENV_ABI_VERSION};
pub use registry::{EnvDescription, EnvEntry, Registry};
pub use rng::EnvRng;
pub use space::{Action, SampledAction, Space};
pub use vec_env::{ActionBatch, AutoresetMode, EpisodeStats, VecEnv, VecEnvConfig};

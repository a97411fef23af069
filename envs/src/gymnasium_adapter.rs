//! Adapter that turns any `gymnasium_rs::core::Env` with vector observations and discrete
//! actions into an Engram [`Env`].
//!
//! Plugin authors who already wrote a Gymnasium-style environment with the `gymnasium-rs`
//! crate register it like this (enable engram-envs' `gymnasium` feature):
//!
//! ```
//! use engram_envs::gymnasium_adapter::GymnasiumRsEnv;
//! use engram_envs::{Action, Registry};
//! use gymnasium_rs::envs::cartpole::CartPole;
//!
//! let mut registry = Registry::with_builtins();
//! registry
//!     .register("plugins/GymRsCartPole-v0", "gymnasium-rs CartPole", vec![], |id, _kwargs| {
//!         GymnasiumRsEnv::new(id, CartPole::new(), Some(200))
//!     })
//!     .unwrap();
//! let mut env = registry.make("plugins/GymRsCartPole-v0", &Default::default()).unwrap();
//! let mut obs = vec![0.0; env.spec().obs_dim()];
//! env.reset(Some(1), &mut obs).unwrap();
//! let step = env.step(Action::Discrete(1), &mut obs).unwrap();
//! assert!(!step.terminated);
//! // Out-of-range actions are errors, caught before they reach the plugin.
//! assert!(env.step(Action::Discrete(5), &mut obs).is_err());
//! ```

use std::collections::HashMap;

use gymnasium_rs::core::{Env as GymEnv, Space as GymSpace};
use ndarray::Array1;

use crate::env::{Env, EnvSpec, Step};
use crate::error::{EnvError, Result};
use crate::space::{Action, Space};

/// A `gymnasium_rs` environment seen as an Engram environment.
///
/// Seeds are passed on as `i32` (`seed mod 2^31 - 1`), the type gymnasium-rs uses; the
/// optional time limit is applied by the registry's [`crate::Guarded`] wrapper.
pub struct GymnasiumRsEnv<G> {
    env: G,
    spec: EnvSpec,
}

impl<G: GymEnv<Array1<f32>, i32> + Send> GymnasiumRsEnv<G> {
    /// Wrap `env` under `id`; its observation space must be a Box and its action space Discrete.
    pub fn new(id: &str, env: G, max_episode_steps: Option<u64>) -> Result<Self> {
        let unsupported = |what: &str, space: &GymSpace| {
            EnvError::Env {
            id: id.into(),
            message: format!(
                "the gymnasium-rs adapter needs {what}, got {space:?}; wrap the env to flatten its spaces first"
            ),
        }
        };
        let observation_space = match env.observation_space() {
            GymSpace::Box { low, high } if low.len() == high.len() && !low.is_empty() => {
                Space::bounded(low.to_vec(), high.to_vec())
            }
            other => return Err(unsupported("a non-empty Box observation space", &other)),
        };
        let action_space = match env.action_space() {
            GymSpace::Discrete(n) if n > 0 => Space::discrete(n as u64),
            other => return Err(unsupported("a Discrete action space", &other)),
        };
        let mut spec = EnvSpec::new(id, observation_space, action_space);
        spec.max_episode_steps = max_episode_steps;
        Ok(GymnasiumRsEnv { env, spec })
    }

    /// Replace the declared observation space (same length), e.g. to correct wrong bounds.
    pub fn with_observation_space(mut self, space: Space) -> Result<Self> {
        if space.flat_dim() != self.spec.obs_dim() {
            return Err(EnvError::Env {
                id: self.spec.id.clone(),
                message: format!(
                    "replacement observation space {space} has flat dim {}, expected {}",
                    space.flat_dim(),
                    self.spec.obs_dim()
                ),
            });
        }
        self.spec.observation_space = space;
        Ok(self)
    }

    fn copy_obs(&self, from: &Array1<f32>, obs: &mut [f32]) -> Result<()> {
        if from.len() != obs.len() {
            return Err(EnvError::Env {
                id: self.spec.id.clone(),
                message: format!(
                    "returned an observation of length {}, its space says {}",
                    from.len(),
                    obs.len()
                ),
            });
        }
        obs.iter_mut().zip(from.iter()).for_each(|(o, v)| *o = *v);
        Ok(())
    }
}

impl<G: GymEnv<Array1<f32>, i32> + Send> Env for GymnasiumRsEnv<G> {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        let seed = seed.map(|s| (s % i32::MAX as u64) as i32);
        let (first, _info) = self.env.reset(seed, HashMap::new());
        self.copy_obs(&first, obs)
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let Action::Discrete(a) = action else {
            return Err(EnvError::InvalidAction {
                id: self.spec.id.clone(),
                action: action.to_string(),
                space: self.spec.action_space.to_string(),
            });
        };
        let (next, reward, terminated, truncated, _info) = self.env.step(a as i32);
        self.copy_obs(&next, obs)?;
        Ok(Step {
            reward,
            terminated,
            truncated,
        })
    }
}

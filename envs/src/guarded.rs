//! `Guarded`: input validation, reset discipline and the time limit around any environment.

use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::{EnvError, Result};
use crate::space::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    NeverReset,
    Running,
    Ended,
}

/// Wraps an environment so that bad input is an error, never a panic, and applies the spec's
/// time limit exactly like Gymnasium's `TimeLimit` (truncated once `max_episode_steps` steps
/// have elapsed, even on a step that also terminates).
#[derive(Debug)]
pub struct Guarded<E> {
    env: E,
    phase: Phase,
    elapsed: u64,
}

impl<E: Env> Guarded<E> {
    /// Guard `env`.
    pub fn new(env: E) -> Self {
        Guarded {
            env,
            phase: Phase::NeverReset,
            elapsed: 0,
        }
    }

    /// The wrapped environment.
    pub fn inner(&self) -> &E {
        &self.env
    }

    /// Steps taken in the current episode.
    pub fn elapsed_steps(&self) -> u64 {
        self.elapsed
    }

    fn check_obs(&self, obs: &[f32]) -> Result<()> {
        let spec = self.env.spec();
        let expected = spec.obs_dim();
        if obs.len() != expected {
            return Err(EnvError::BufferSize {
                id: spec.id.clone(),
                what: "observation",
                got: obs.len(),
                expected,
            });
        }
        Ok(())
    }
}

impl<E: Env> Env for Guarded<E> {
    fn spec(&self) -> &EnvSpec {
        self.env.spec()
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        self.check_obs(obs)?;
        self.env.reset(seed, obs)?;
        self.phase = Phase::Running;
        self.elapsed = 0;
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        if self.phase != Phase::Running {
            let when = if self.phase == Phase::NeverReset {
                "before the first reset"
            } else {
                "after the episode ended"
            };
            return Err(EnvError::NeedsReset {
                id: self.env.spec().id.clone(),
                when,
            });
        }
        self.check_obs(obs)?;
        let spec = self.env.spec();
        if !spec.action_space.contains(&action) {
            return Err(EnvError::InvalidAction {
                id: spec.id.clone(),
                action: action.to_string(),
                space: spec.action_space.to_string(),
            });
        }
        let limit = spec.max_episode_steps;
        let mut step = self.env.step(action, obs)?;
        self.elapsed += 1;
        if limit.is_some_and(|m| self.elapsed >= m) {
            step.truncated = true;
        }
        if step.done() {
            self.phase = Phase::Ended;
        }
        Ok(step)
    }

    fn render(&self) -> Option<Frame> {
        self.env.render()
    }
}

//! The `Env` trait every environment implements, its spec, step result and rendered frames.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::space::{Action, Space};

/// What an environment is: its id, spaces and time limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvSpec {
    /// Versioned id, e.g. `TMaze-Passive-v0`.
    pub id: String,
    /// Space of observations; they travel flat (see [`Space`]).
    pub observation_space: Space,
    /// Space of actions.
    pub action_space: Space,
    /// Time limit: the episode is truncated after this many steps (Gymnasium's `TimeLimit`).
    /// `None` when the environment ends its episodes itself.
    pub max_episode_steps: Option<u64>,
}

impl EnvSpec {
    /// A spec with the given id and spaces and no time limit.
    pub fn new(id: impl Into<String>, observation_space: Space, action_space: Space) -> Self {
        EnvSpec {
            id: id.into(),
            observation_space,
            action_space,
            max_episode_steps: None,
        }
    }

    /// The same spec with a time limit.
    pub fn with_time_limit(mut self, steps: u64) -> Self {
        self.max_episode_steps = Some(steps);
        self
    }

    /// Length of the flat observation vector.
    pub fn obs_dim(&self) -> usize {
        self.observation_space.flat_dim()
    }
}

/// Outcome of one step.
///
/// `terminated`: the episode reached a terminal state of the task (do not bootstrap).
/// `truncated`: the episode was cut (time limit); bootstrap from the final observation.
/// As in Gymnasium both may be set at once; then the episode terminated.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Step {
    /// Reward for this transition.
    pub reward: f32,
    /// Terminal state reached.
    pub terminated: bool,
    /// Episode cut by a time limit.
    pub truncated: bool,
}

impl Step {
    /// A step that does not end the episode.
    pub fn running(reward: f32) -> Self {
        Step {
            reward,
            terminated: false,
            truncated: false,
        }
    }

    /// A step that ends the episode in a terminal state.
    pub fn terminal(reward: f32) -> Self {
        Step {
            reward,
            terminated: true,
            truncated: false,
        }
    }

    /// Whether the episode is over.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A rendered view of an environment.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// An RGB image, row-major, 3 bytes per pixel.
    Rgb {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// `height * width * 3` bytes.
        pixels: Vec<u8>,
    },
    /// A text picture.
    Text(String),
}

/// A seeded, `Send` environment that writes observations into caller-owned buffers.
///
/// `reset` and `step` write the flat observation into `obs` (length
/// `spec().obs_dim()`) and allocate nothing. `reset(Some(seed))` re-seeds the environment's RNG
/// as Gymnasium's `reset(seed=...)` does; `reset(None)` continues the current RNG stream.
///
/// Environments obtained from the registry are wrapped in [`crate::Guarded`], which rejects
/// actions outside the action space, wrong buffer sizes and steps without a reset with an
/// [`crate::EnvError`], and applies the spec's time limit. Implementors may therefore assume
/// valid input when they are registered.
pub trait Env: Send {
    /// Id, spaces and time limit.
    fn spec(&self) -> &EnvSpec;

    /// Start a new episode, writing its first observation into `obs`.
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()>;

    /// Apply `action`, writing the next observation into `obs`.
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step>;

    /// A picture of the current state, if the environment can draw one.
    fn render(&self) -> Option<Frame> {
        None
    }
}

impl<E: Env + ?Sized> Env for Box<E> {
    fn spec(&self) -> &EnvSpec {
        (**self).spec()
    }
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        (**self).reset(seed, obs)
    }
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        (**self).step(action, obs)
    }
    fn render(&self) -> Option<Frame> {
        (**self).render()
    }
}

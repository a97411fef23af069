//! Rollout chunks: what actors hand the learner.

use engram_envs::EpisodeStats;

/// Actions of a chunk, time-major `[T, E, action_len]`.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionData {
    /// Categorical actions (one integer per group).
    Int(Vec<i64>),
    /// Gaussian actions as sampled (before clipping to the bounds the env received).
    Float(Vec<f32>),
}

/// One actor's rollout of `len` steps over `num_envs` envs, time-major (`t * E + e`).
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Envs.
    pub num_envs: usize,
    /// Steps per env.
    pub len: usize,
    /// Flat observation width.
    pub obs_dim: usize,
    /// Observations `[T, E, obs_dim]` the policy acted on.
    pub obs: Vec<f32>,
    /// Actions taken.
    pub actions: ActionData,
    /// Scalars per action.
    pub action_len: usize,
    /// Log-probabilities of the actions under the acting policy.
    pub log_probs: Vec<f32>,
    /// Values of the observations under the acting policy.
    pub values: Vec<f32>,
    /// Rewards.
    pub rewards: Vec<f32>,
    /// Terminated flags.
    pub terminated: Vec<bool>,
    /// Truncated flags.
    pub truncated: Vec<bool>,
    /// Value of the final observation where truncated (0 elsewhere).
    pub final_values: Vec<f32>,
    /// The observation at `t` is the first of an episode (state reset before it).
    pub episode_starts: Vec<bool>,
    /// Value of the observation after the last step, per env.
    pub last_values: Vec<f32>,
    /// The observation after the last step, `[E, obs_dim]` (V-trace bootstraps from it).
    pub last_obs: Vec<f32>,
    /// Whether that observation starts an episode, per env.
    pub last_starts: Vec<bool>,
    /// Core state (flat, `[E, W]`) before each sequence start `k * stride`.
    pub seq_states: Vec<Vec<f32>>,
    /// Episodes that ended during the chunk.
    pub episodes: Vec<EpisodeStats>,
    /// Policy version that acted.
    pub policy_version: u64,
    /// Env panics (and plugin crashes) the VecEnv contained while collecting this chunk.
    pub env_panics: u64,
}

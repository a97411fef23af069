//! Stable TensorBoard tag names written by `engram train` (CleanRL-style `group/name`).

/// Undiscounted return of each finished episode (scalar).
pub const EPISODIC_RETURN: &str = "charts/episodic_return";
/// Length in steps of each finished episode (scalar).
pub const EPISODIC_LENGTH: &str = "charts/episodic_length";
/// Environment steps per second over the last iteration (scalar).
pub const SPS: &str = "charts/SPS";
/// Current optimiser learning rate (scalar).
pub const LEARNING_RATE: &str = "charts/learning_rate";
/// Env panics (and plugin crashes) contained so far in a synchronous run, logged once there is
/// one; APPO/IMPALA log [`ASYNC_ENV_PANICS`] (scalar).
pub const ENV_PANICS: &str = "charts/env_panics";

/// Policy-gradient (clipped surrogate) loss (scalar).
pub const POLICY_LOSS: &str = "losses/policy";
/// Value-function loss (scalar).
pub const VALUE_LOSS: &str = "losses/value";
/// Mean policy entropy (scalar).
pub const ENTROPY: &str = "losses/entropy";
/// Approximate KL divergence between behaviour and updated policy (scalar).
pub const APPROX_KL: &str = "losses/approx_kl";
/// Fraction of samples whose probability ratio was clipped (scalar).
pub const CLIPFRAC: &str = "losses/clipfrac";
/// Explained variance of the value predictions (scalar).
pub const EXPLAINED_VARIANCE: &str = "losses/explained_variance";
/// Global gradient norm before clipping, averaged over the update's minibatches (scalar).
pub const GRAD_NORM: &str = "losses/grad_norm";
/// Epochs an update ran: `ppo.epochs`, or fewer when `ppo.target_kl` stopped it (scalar).
pub const EPOCHS: &str = "losses/epochs";
/// Approximate KL between the acting policy and the learner's recomputation of it on an update's
/// first minibatch, before any step: ≈ 0 for PPO, the policy lag's cost for APPO (scalar).
pub const BEHAVIOUR_KL: &str = "losses/behaviour_kl";

/// How often each module of a modular core (RIMs/BRIMs) was active (histogram).
pub const MODULE_ACTIVATION_FREQUENCY: &str = "modules/activation_frequency";
/// Input-attention weights of a modular core (histogram).
pub const MODULE_ATTENTION: &str = "modules/attention";
/// Module activations over an episode, modules by time steps (image).
pub const MODULE_ACTIVATIONS: &str = "modules/activations";
/// Screened memory's read attention, at the last step of the recorded greedy episode, on the
/// slot holding the episode's first step (0 when the screening dropped it): where a T-Maze
/// keeps its cue (scalar).
pub const MEMORY_FIRST_STEP_ATTENTION: &str = "modules/memory_first_step_attention";

/// Policy lag in versions between the acting and the learning policy (histogram).
pub const ASYNC_POLICY_LAG: &str = "async/policy_lag";
/// Trajectory chunks waiting in the actor-to-learner queue (scalar).
pub const ASYNC_QUEUE_DEPTH: &str = "async/queue_depth";
/// Fraction of time the actors spent working rather than waiting (scalar).
pub const ASYNC_ACTOR_BUSY: &str = "async/actor_busy";
/// Fraction of time the learner spent working rather than waiting (scalar).
pub const ASYNC_LEARNER_BUSY: &str = "async/learner_busy";
/// Chunks dropped so far because the queue was full (scalar).
pub const ASYNC_DROPPED_FULL: &str = "async/dropped_full_queue";
/// Chunks dropped so far for a policy lag above `async.max_policy_lag` (scalar).
pub const ASYNC_DROPPED_LAG: &str = "async/dropped_lag";
/// Env panics contained so far (scalar).
pub const ASYNC_ENV_PANICS: &str = "async/env_panics";
/// Actor threads restarted so far (scalar).
pub const ASYNC_ACTOR_RESTARTS: &str = "async/actor_restarts";

/// Ray actor processes alive (scalar; `run.backend = "ray"`).
pub const RAY_ACTORS: &str = "ray/actors";
/// Ray actors recreated so far after dying or timing out (scalar).
pub const RAY_ACTOR_RESTARTS: &str = "ray/actor_restarts";
/// Chunks discarded whole so far because their actor failed (scalar).
pub const RAY_CHUNKS_DISCARDED: &str = "ray/chunks_discarded";
/// Env steps per second of each actor's last chunk, by actor slot (`ray/actor_sps_0`, …;
/// scalar).
pub const RAY_ACTOR_SPS_PREFIX: &str = "ray/actor_sps_";
/// Env steps per second of the actors' last chunks, one value per actor (histogram).
pub const RAY_ACTOR_SPS: &str = "ray/actor_sps";
/// Bytes through Ray's object store during the update: chunks in, weights out (scalar).
pub const RAY_OBJECT_STORE_BYTES: &str = "ray/object_store_bytes";
/// Seconds the update's weight publication took (`ray.put` of the record; scalar).
pub const RAY_WEIGHT_BROADCAST_SECONDS: &str = "ray/weight_broadcast_seconds";

/// Mean return of the run's last 100 episodes, logged at the end of a session and shown in
/// TensorBoard's HParams table (scalar).
pub const FINAL_MEAN_RETURN: &str = "hparams/final_mean_return";
/// Highest mean return over 100 consecutive episodes of the run, logged with
/// [`FINAL_MEAN_RETURN`] (scalar).
pub const BEST_MEAN_RETURN: &str = "hparams/best_mean_return";
/// Environment steps done, logged with [`FINAL_MEAN_RETURN`] (scalar).
pub const FINAL_GLOBAL_STEP: &str = "hparams/global_step";

/// Every scalar tag above.
pub const SCALARS: &[&str] = &[
    EPISODIC_RETURN,
    EPISODIC_LENGTH,
    SPS,
    LEARNING_RATE,
    ENV_PANICS,
    POLICY_LOSS,
    VALUE_LOSS,
    ENTROPY,
    APPROX_KL,
    CLIPFRAC,
    EXPLAINED_VARIANCE,
    GRAD_NORM,
    EPOCHS,
    BEHAVIOUR_KL,
    MEMORY_FIRST_STEP_ATTENTION,
    ASYNC_QUEUE_DEPTH,
    ASYNC_ACTOR_BUSY,
    ASYNC_LEARNER_BUSY,
    ASYNC_DROPPED_FULL,
    ASYNC_DROPPED_LAG,
    ASYNC_ENV_PANICS,
    ASYNC_ACTOR_RESTARTS,
    RAY_ACTORS,
    RAY_ACTOR_RESTARTS,
    RAY_CHUNKS_DISCARDED,
    RAY_OBJECT_STORE_BYTES,
    RAY_WEIGHT_BROADCAST_SECONDS,
    FINAL_MEAN_RETURN,
    BEST_MEAN_RETURN,
    FINAL_GLOBAL_STEP,
];
/// The scalar tags that are the metric columns of TensorBoard's HParams table.
pub const HPARAMS_METRICS: &[&str] = &[FINAL_MEAN_RETURN, BEST_MEAN_RETURN, FINAL_GLOBAL_STEP];
/// Every histogram tag above.
pub const HISTOGRAMS: &[&str] = &[
    MODULE_ACTIVATION_FREQUENCY,
    MODULE_ATTENTION,
    ASYNC_POLICY_LAG,
    RAY_ACTOR_SPS,
];
/// Every image tag above.
pub const IMAGES: &[&str] = &[MODULE_ACTIVATIONS];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tags_are_unique_and_grouped() {
        let all: Vec<&str> = SCALARS
            .iter()
            .chain(HISTOGRAMS)
            .chain(IMAGES)
            .copied()
            .collect();
        let unique: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len());
        for tag in all {
            let (group, name) = tag.split_once('/').expect("group/name");
            assert!(
                ["charts", "losses", "modules", "async", "ray", "hparams"].contains(&group),
                "{tag}"
            );
            assert!(!name.is_empty() && !name.contains('/'), "{tag}");
        }
    }
}

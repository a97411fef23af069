//! Learning: the shared learner and losses, the targets (GAE, V-trace) and the algorithms (PPO, APPO/IMPALA).
//!
//! A new algorithm is one file here implementing [`Algorithm`], and one dispatch arm in
//! `run::train`.

use rand_pcg::Pcg64;

use crate::error::Result;
use crate::rollout::Chunk;

pub mod appo;
pub mod gae;
pub mod grad_norm;
pub mod learner;
pub mod losses;
pub mod minibatch;
pub mod ppo;
pub mod vtrace;

pub use appo::Appo;
pub use learner::{GradientExplosion, Learner, UpdateStats, EXPLODING_GRAD_NORM};
pub use ppo::Ppo;

/// One algorithm's update rule.
pub trait Algorithm {
    /// Train `learner` on `chunks` (the update's rollouts) at learning rate `lr`; `update` is
    /// the 1-based update number (for error messages). Algorithms may rewrite the chunks'
    /// stored states (PPO's `refresh_states`).
    fn update(
        &self,
        learner: &mut Learner,
        chunks: &mut [Chunk],
        lr: f64,
        rng: &mut Pcg64,
        update: u64,
    ) -> Result<UpdateStats>;
}

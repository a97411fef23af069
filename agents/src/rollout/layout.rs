//! Where training sequences start inside a rollout: `k · (seq_len − burn_in)`, checked once when built.

use crate::error::{AgentError, Result};

/// How each env's rollout of `rollout_len` steps is cut into `count` training sequences of
/// `seq_len` steps (burn-in included) that start every `seq_len − burn_in` steps.
///
/// Built only by [`SequenceLayout::new`] (or [`SequenceLayout::whole`]), so every layout in a
/// run is consistent: the sequences tile the rollout exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceLayout {
    rollout_len: usize,
    seq_len: usize,
    burn_in: usize,
    count: usize,
}

impl SequenceLayout {
    /// The layout of rollouts of `rollout_len` steps cut into sequences of `seq_len` steps whose
    /// first `burn_in` steps only warm up the state (except in the first sequence). Errors unless
    /// `0 ≤ burn_in < seq_len ≤ rollout_len` and `rollout_len − seq_len` is a multiple of the
    /// stride `seq_len − burn_in`; the message names the `ppo.` keys and a valid `rollout_len`.
    pub fn new(rollout_len: usize, seq_len: usize, burn_in: usize) -> Result<Self> {
        if seq_len == 0 || burn_in >= seq_len {
            return Err(AgentError::Config(format!(
                "ppo.seq_len = {seq_len} must be positive and above ppo.burn_in = {burn_in}"
            )));
        }
        let stride = seq_len - burn_in;
        if rollout_len < seq_len || (rollout_len - seq_len) % stride != 0 {
            return Err(AgentError::Config(format!(
                "ppo.rollout_len = {rollout_len} must be ppo.seq_len + a multiple of (seq_len - burn_in) = {stride} \
                 (e.g. rollout_len = {})",
                seq_len + stride * ((rollout_len.max(seq_len) - seq_len) / stride)
            )));
        }
        Ok(SequenceLayout {
            rollout_len,
            seq_len,
            burn_in,
            count: (rollout_len - seq_len) / stride + 1,
        })
    }

    /// Rollouts of `len` steps trained as one whole sequence each (the asynchronous chunks).
    pub fn whole(len: usize) -> Result<Self> {
        Self::new(len, len, 0)
    }

    /// Steps per env in one rollout.
    pub fn rollout_len(&self) -> usize {
        self.rollout_len
    }

    /// Steps per sequence (burn-in included).
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Leading steps of a sequence that only warm up the state.
    pub fn burn_in(&self) -> usize {
        self.burn_in
    }

    /// Sequences per env.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Distance between sequence starts.
    pub fn stride(&self) -> usize {
        self.seq_len - self.burn_in
    }

    /// Start step of sequence `k`.
    pub fn start(&self, k: usize) -> usize {
        k * self.stride()
    }

    /// Whether step `i` of sequence `k` carries a loss (burn-in steps do not, except in the
    /// first sequence, whose stored state is the acting state itself).
    pub fn trains(&self, k: usize, i: usize) -> bool {
        k == 0 || i >= self.burn_in
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_tile_the_rollout() {
        let l = SequenceLayout::new(124, 16, 4).expect("valid");
        assert_eq!(
            (l.count(), l.stride(), l.start(9) + l.seq_len()),
            (10, 12, 124)
        );
        assert!(l.trains(0, 0) && !l.trains(1, 3) && l.trains(1, 4));
        let err = SequenceLayout::new(100, 16, 0).unwrap_err().to_string();
        assert!(
            err.contains("rollout_len = 100") && err.contains("rollout_len = 96"),
            "{err}"
        );
        assert!(SequenceLayout::new(16, 4, 4).is_err());
        assert_eq!(SequenceLayout::whole(32).expect("valid").count(), 1);
    }
}

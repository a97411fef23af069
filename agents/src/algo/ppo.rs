//! Recurrent PPO: GAE targets, sequences with burn-in and in-sequence resets, the clipped losses.

use burn::tensor::{Tensor, TensorData};
use engram_memory::RecurrentCore;
use rand_pcg::Pcg64;

use super::gae::{gae, GaeInput};
use super::learner::{Learner, UpdateStats};
use super::losses::{
    clipped_policy_loss, explained_variance, normalise_masked, value_loss, Losses, MaskedMean,
};
use super::minibatch::{all_sequences, gather, run_epochs, SeqRef, Sequences};
use super::Algorithm;
use crate::error::Result;
use crate::policy::matrix;
use crate::rollout::Chunk;

/// PPO (Schulman et al. 2017) on recurrent sequences, CleanRL's losses.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ppo;

/// One minibatch, ready for the forward pass.
pub struct Batch {
    /// Observations, episode starts, initial states and actions of the sequences.
    pub seqs: Sequences,
    /// Acting log-probabilities `[L·B]`.
    pub old_log_probs: Tensor<1>,
    /// Acting values `[L·B]`.
    pub old_values: Tensor<1>,
    /// Advantages `[L·B]` (normalised if asked).
    pub advantages: Tensor<1>,
    /// Returns `[L·B]`.
    pub returns: Tensor<1>,
    /// 1 where the step carries a loss `[L·B]`.
    pub mask: Tensor<1>,
    /// Number of steps with a loss.
    pub mask_count: f32,
}

impl Algorithm for Ppo {
    fn update(
        &self,
        learner: &mut Learner,
        chunks: &mut [Chunk],
        lr: f64,
        rng: &mut Pcg64,
        update: u64,
    ) -> Result<UpdateStats> {
        let c = learner.config().clone();
        let targets: Vec<(Vec<f32>, Vec<f32>)> = chunks
            .iter()
            .map(|ch| {
                gae(
                    GaeInput {
                        rewards: &ch.rewards,
                        values: &ch.values,
                        terminated: &ch.terminated,
                        truncated: &ch.truncated,
                        final_values: &ch.final_values,
                        last_values: &ch.last_values,
                        num_envs: ch.num_envs,
                    },
                    c.gamma as f32,
                    c.gae_lambda as f32,
                )
            })
            .collect();
        let explained_variance = explained_variance(
            chunks.iter().flat_map(|ch| ch.values.iter().copied()),
            targets.iter().flat_map(|(_, r)| r.iter().copied()),
        );
        let mut ids = all_sequences(chunks, learner.layout().count());
        let stats = run_epochs(
            &mut ids,
            c.epochs,
            c.minibatches,
            c.target_kl,
            rng,
            |epoch, part, mb| {
                if c.refresh_states && epoch > 0 && part == 0 {
                    refresh_states(learner, chunks)?;
                }
                let batch = batch(learner, chunks, &targets, mb)?;
                let losses = losses(learner, &batch)?;
                learner.optimize(&losses, lr, update)
            },
        )?;
        Ok(UpdateStats {
            explained_variance,
            ..stats
        })
    }
}

/// Gather the sequences `ids` into a minibatch, with their GAE `targets` (advantages, returns).
pub fn batch(
    learner: &Learner,
    chunks: &[Chunk],
    targets: &[(Vec<f32>, Vec<f32>)],
    ids: &[SeqRef],
) -> Result<Batch> {
    let layout = learner.layout();
    let (l, b) = (layout.seq_len(), ids.len());
    let n = l * b;
    let (mut old_lp, mut old_v, mut adv, mut ret, mut mask) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let seqs = gather(learner, chunks, ids, l, false, |ch, i, j, t| {
        let r = ids[j];
        old_lp.push(ch.log_probs[i]);
        old_v.push(ch.values[i]);
        adv.push(targets[r.chunk].0[i]);
        ret.push(targets[r.chunk].1[i]);
        mask.push(if layout.trains(r.seq, t) { 1.0f32 } else { 0.0 });
    })?;
    let mask_count: f32 = mask.iter().sum();
    if learner.config().norm_adv {
        normalise_masked(&mut adv, &mask);
    }
    let device = learner.device();
    let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), device);
    Ok(Batch {
        seqs,
        old_log_probs: vec1(old_lp),
        old_values: vec1(old_v),
        advantages: vec1(adv),
        returns: vec1(ret),
        mask: vec1(mask),
        mask_count,
    })
}

/// PPO losses of a minibatch under the learner's current weights.
pub fn losses(learner: &Learner, batch: &Batch) -> Result<Losses> {
    let c = learner.config();
    let policy = &learner.policy;
    let s = &batch.seqs;
    let (h, _) = policy.unroll(s.obs.clone(), s.state.clone(), &s.episode_starts)?;
    let ev = policy.evaluate(h, s.int_actions.clone(), s.float_actions.clone());
    let masked = MaskedMean::new(batch.mask.clone(), batch.mask_count);
    let terms = clipped_policy_loss(
        &masked,
        ev.log_prob,
        batch.old_log_probs.clone(),
        batch.advantages.clone(),
        c.clip_coef as f32,
    );
    let value = value_loss(
        &masked,
        ev.value,
        batch.returns.clone(),
        c.clip_vloss
            .then(|| (batch.old_values.clone(), c.clip_coef as f32)),
    );
    let entropy = masked.mean(ev.entropy);
    Ok(terms.with_value_and_entropy(value, entropy, c.vf_coef as f32, c.ent_coef as f32))
}

/// Recompute every chunk's sequence-initial states with the current weights, starting from
/// the state the chunk's rollout began with (`ppo.refresh_states`).
pub fn refresh_states(learner: &Learner, chunks: &mut [Chunk]) -> Result<()> {
    let policy = learner.acting_policy();
    let device = learner.device().clone().inner();
    let layout = learner.layout();
    for ch in chunks.iter_mut() {
        let n = ch.num_envs;
        let mut state = policy.core.state_from_flat(&ch.seq_states[0], n, &device)?;
        for k in 1..layout.count() {
            let (from, to) = (layout.start(k - 1), layout.start(k));
            let steps = to - from;
            let mut obs = Vec::with_capacity(steps);
            let mut starts = vec![false; n * steps];
            for t in from..to {
                obs.push(matrix(
                    ch.obs[t * n * ch.obs_dim..(t + 1) * n * ch.obs_dim].to_vec(),
                    n,
                    ch.obs_dim,
                    &device,
                ));
                for e in 0..n {
                    starts[e * steps + (t - from)] = ch.episode_starts[t * n + e];
                }
            }
            let (_, s) = policy.unroll(obs, state, &starts)?;
            ch.seq_states[k] = s.to_flat();
            state = s;
        }
    }
    Ok(())
}

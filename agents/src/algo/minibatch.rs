//! What every algorithm's update shares: gathering training sequences from chunks into tensors, and the shuffled epoch/minibatch loop.

use burn::tensor::{Int, Tensor, TensorData};
use engram_memory::{CoreState, RecurrentCore};
use rand::seq::SliceRandom;
use rand_pcg::Pcg64;

use super::learner::{Learner, UpdateStats};
use crate::error::{AgentError, Result};
use crate::policy::matrix;
use crate::rollout::{ActionData, Chunk};

/// One training sequence: env row `env` of chunk `chunk`, from the start of its sequence `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRef {
    /// Index of the chunk in the update's chunks.
    pub chunk: usize,
    /// Env row of the chunk.
    pub env: usize,
    /// Sequence of that row (its start is `layout.start(seq)`).
    pub seq: usize,
}

/// Every sequence of `chunks`: `count` per env row of each chunk, in chunk, env, sequence order.
pub fn all_sequences(chunks: &[Chunk], count: usize) -> Vec<SeqRef> {
    chunks
        .iter()
        .enumerate()
        .flat_map(|(chunk, ch)| {
            (0..ch.num_envs)
                .flat_map(move |env| (0..count).map(move |seq| SeqRef { chunk, env, seq }))
        })
        .collect()
}

/// The forward-pass inputs of a minibatch of `B` sequences of `L` steps.
pub struct Sequences {
    /// Per-step observations `[B, obs_dim]`, `L` of them.
    pub obs: Vec<Tensor<2>>,
    /// Row-major `[B, L]` episode starts.
    pub episode_starts: Vec<bool>,
    /// Sequence-initial core state of every row.
    pub state: CoreState,
    /// Categorical actions `[L · B, groups]` (time-major rows).
    pub int_actions: Option<Tensor<2, Int>>,
    /// Gaussian actions `[L · B, d]`.
    pub float_actions: Option<Tensor<2>>,
}

/// Gather sequences `ids` of `steps` steps each (time-major), calling `each_step(chunk, i, j, t)`
/// for the flat chunk index `i = (start + t) · E + env` of row `j` at step `t`, so that the
/// algorithm can collect its own per-step data in the same order. With `bootstrap`, one more
/// step follows the last: the observation after the chunk (`last_obs`, `last_starts`), with
/// placeholder actions and no call to `each_step`.
pub fn gather(
    learner: &Learner,
    chunks: &[Chunk],
    ids: &[SeqRef],
    steps: usize,
    bootstrap: bool,
    mut each_step: impl FnMut(&Chunk, usize, usize, usize),
) -> Result<Sequences> {
    let device = learner.device();
    let layout = learner.layout();
    let first = &chunks[ids[0].chunk];
    let (b, d, k) = (ids.len(), first.obs_dim, first.action_len);
    let l = steps + usize::from(bootstrap);
    for r in ids {
        let ch = &chunks[r.chunk];
        if ch.obs_dim != d || ch.action_len != k || layout.start(r.seq) + steps > ch.len {
            return Err(AgentError::Actor(format!(
                "chunks of one update differ in shape: a {}-step chunk with observations of {} and \
                 actions of {} cannot give {steps} steps from step {} (others: {d}, {k}); this is a bug",
                ch.len,
                ch.obs_dim,
                ch.action_len,
                layout.start(r.seq)
            )));
        }
    }
    let mut obs = Vec::with_capacity(l);
    let mut starts = vec![false; b * l];
    let (mut ints, mut floats) = (Vec::new(), Vec::new());
    for t in 0..l {
        let mut rows = Vec::with_capacity(b * d);
        for (j, r) in ids.iter().enumerate() {
            let ch = &chunks[r.chunk];
            if t == steps {
                rows.extend_from_slice(&ch.last_obs[r.env * d..(r.env + 1) * d]);
                starts[j * l + t] = ch.last_starts[r.env];
                match &ch.actions {
                    ActionData::Int(_) => ints.extend(std::iter::repeat_n(0, k)),
                    ActionData::Float(_) => floats.extend(std::iter::repeat_n(0.0, k)),
                }
                continue;
            }
            let i = (layout.start(r.seq) + t) * ch.num_envs + r.env;
            rows.extend_from_slice(&ch.obs[i * d..(i + 1) * d]);
            starts[j * l + t] = ch.episode_starts[i];
            match &ch.actions {
                ActionData::Int(a) => ints.extend_from_slice(&a[i * k..(i + 1) * k]),
                ActionData::Float(a) => floats.extend_from_slice(&a[i * k..(i + 1) * k]),
            }
            each_step(ch, i, j, t);
        }
        obs.push(matrix(rows, b, d, device));
    }
    let mut flat_state = Vec::new();
    for r in ids {
        let st = &chunks[r.chunk].seq_states[r.seq];
        let w = st.len() / chunks[r.chunk].num_envs;
        flat_state.extend_from_slice(&st[r.env * w..(r.env + 1) * w]);
    }
    let state = learner
        .policy
        .core
        .state_from_flat(&flat_state, b, device)?;
    let n = l * b;
    Ok(Sequences {
        obs,
        episode_starts: starts,
        state,
        int_actions: (!ints.is_empty())
            .then(|| Tensor::<2, Int>::from_data(TensorData::new(ints, [n, k]), device)),
        float_actions: (!floats.is_empty()).then(|| matrix(floats, n, k, device)),
    })
}

/// `epochs` passes over `ids`, each shuffled with `rng` and cut into `minibatches` parts;
/// `minibatch(epoch, part, ids)` trains on one part and reports its losses. Returns their mean,
/// with the number of epochs run and the first minibatch's KL as the behaviour KL.
///
/// With `target_kl`, the update stops after an epoch whose mean approximate KL between the
/// acting and the updated policy exceeds it (CleanRL's `target_kl`): the policy has moved as
/// far from the data's as one update should.
pub fn run_epochs<I>(
    ids: &mut [I],
    epochs: usize,
    minibatches: usize,
    target_kl: Option<f64>,
    rng: &mut Pcg64,
    mut minibatch: impl FnMut(usize, usize, &[I]) -> Result<UpdateStats>,
) -> Result<UpdateStats> {
    let per_batch = ids.len().div_ceil(minibatches);
    let mut sums = UpdateStats::default();
    let mut batches = 0.0f32;
    let mut epochs_run = 0;
    let mut behaviour_kl = 0.0;
    for epoch in 0..epochs {
        ids.shuffle(rng);
        let (mut epoch_kl, mut epoch_batches) = (0.0f64, 0.0f64);
        for (part, mb) in ids.chunks(per_batch).enumerate() {
            let stats = minibatch(epoch, part, mb)?;
            if epoch == 0 && part == 0 {
                behaviour_kl = stats.approx_kl;
            }
            epoch_kl += f64::from(stats.approx_kl);
            epoch_batches += 1.0;
            sums.add(&stats);
            batches += 1.0;
        }
        epochs_run += 1;
        if target_kl.is_some_and(|target| epoch_kl / epoch_batches.max(1.0) > target) {
            break;
        }
    }
    Ok(UpdateStats {
        epochs: epochs_run as f32,
        behaviour_kl,
        ..sums.mean(batches)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Epochs run and minibatches trained with every minibatch reporting `kl`.
    fn epochs_with(kl: f32, target_kl: Option<f64>) -> (f32, usize) {
        let mut ids: Vec<usize> = (0..8).collect();
        let mut rng = Pcg64::seed_from_u64(1);
        let mut trained = 0;
        let stats = run_epochs(&mut ids, 4, 2, target_kl, &mut rng, |_, _, _| {
            trained += 1;
            Ok(UpdateStats {
                approx_kl: kl,
                ..Default::default()
            })
        })
        .unwrap();
        (stats.epochs, trained)
    }

    #[test]
    fn target_kl_stops_the_update_after_the_epoch_that_passes_it() {
        assert_eq!(epochs_with(0.05, None), (4.0, 8));
        assert_eq!(epochs_with(0.05, Some(0.1)), (4.0, 8));
        assert_eq!(epochs_with(0.05, Some(0.02)), (1.0, 2));
    }

    #[test]
    fn the_behaviour_kl_is_the_first_minibatchs_before_any_step() {
        let mut ids: Vec<usize> = (0..8).collect();
        let mut rng = Pcg64::seed_from_u64(1);
        let mut calls = 0.0f32;
        let stats = run_epochs(&mut ids, 3, 2, None, &mut rng, |_, _, _| {
            calls += 1.0;
            Ok(UpdateStats {
                approx_kl: calls * 0.01,
                ..Default::default()
            })
        })
        .unwrap();
        assert_eq!(stats.behaviour_kl, 0.01);
        assert!((stats.approx_kl - 0.035).abs() < 1e-6);
    }
}

//! The V-trace learner of `appo` and `impala`: whole-chunk sequences, V-trace from current values.

use burn::tensor::{Int, Tensor, TensorData};
use engram_memory::RecurrentCore;
use rand::seq::SliceRandom;
use rand_pcg::Pcg64;

use crate::config::{Algo, AsyncSection};
use crate::error::{AgentError, Result};
use crate::policy::{matrix, read};
use crate::ppo::{
    clipped_policy_loss, explained_variance, value_loss, Learner, Losses, MaskedMean, UpdateStats,
};
use crate::rollout::{ActionData, Chunk};
use crate::vtrace::{vtrace, VtraceInput, VtraceParams};

/// One minibatch of whole chunk rows: `T` steps plus the bootstrap observation.
pub struct VtraceBatch {
    /// Per-step observations `[B, obs_dim]`, `T + 1` of them (the last is the bootstrap one).
    pub obs: Vec<Tensor<2>>,
    /// Row-major `[B, T + 1]` episode starts.
    pub episode_starts: Vec<bool>,
    /// Chunk-initial core state of every row.
    pub state: engram_memory::CoreState,
    /// Categorical actions `[(T + 1) · B, groups]` (the bootstrap step's are placeholders).
    pub int_actions: Option<Tensor<2, Int>>,
    /// Gaussian actions `[(T + 1) · B, d]`.
    pub float_actions: Option<Tensor<2>>,
    /// Steps per row `T`.
    pub steps: usize,
    /// Rows `B`.
    pub rows: usize,
    /// Time-major `[T, B]` host data for V-trace.
    pub rewards: Vec<f32>,
    /// Terminated flags `[T, B]`.
    pub terminated: Vec<bool>,
    /// Truncated flags `[T, B]`.
    pub truncated: Vec<bool>,
    /// `V(final obs)` under the acting policy where truncated `[T, B]`.
    pub final_values: Vec<f32>,
    /// Behaviour log-probabilities `[T, B]`.
    pub behaviour_log_probs: Vec<f32>,
    /// Acting values `[T, B]` (for the clipped value loss).
    pub acting_values: Vec<f32>,
}

/// Trains a [`Learner`]'s policy with V-trace (APPO's clipped objective or IMPALA's loss).
pub struct VtraceLearner {
    algo: Algo,
    params: VtraceParams,
}

impl VtraceLearner {
    /// A V-trace learner for `algo` (`appo` or `impala`) with the clips of `config`.
    pub fn new(algo: Algo, gamma: f64, config: &AsyncSection) -> Self {
        let params = VtraceParams {
            gamma: gamma as f32,
            lambda: config.lambda as f32,
            rho_bar: config.rho_bar as f32,
            c_bar: config.c_bar as f32,
            pg_rho_bar: config.pg_rho_bar as f32,
        };
        VtraceLearner { algo, params }
    }

    /// One update on complete `chunks` (each env row is one sequence) at learning rate `lr`.
    pub fn update(
        &self,
        learner: &mut Learner,
        chunks: &[Chunk],
        lr: f64,
        rng: &mut Pcg64,
        update: u64,
    ) -> Result<UpdateStats> {
        for ch in chunks {
            check_complete(ch)?;
        }
        let mut ids: Vec<(usize, usize)> = chunks
            .iter()
            .enumerate()
            .flat_map(|(ci, ch)| (0..ch.num_envs).map(move |e| (ci, e)))
            .collect();
        let c = learner.config().clone();
        let per_batch = ids.len().div_ceil(c.minibatches);
        let mut sums = UpdateStats::default();
        let mut batches = 0.0f32;
        let (mut all_values, mut all_targets) = (Vec::new(), Vec::new());
        for epoch in 0..c.epochs {
            ids.shuffle(rng);
            for mb in ids.chunks(per_batch) {
                let batch = self.batch(learner, chunks, mb)?;
                let (losses, values, targets) = self.losses(learner, &batch)?;
                if epoch == 0 {
                    all_values.extend(values);
                    all_targets.extend(targets);
                }
                sums.add(&learner.optimize(&losses, lr, update)?);
                batches += 1.0;
            }
        }
        Ok(UpdateStats {
            explained_variance: explained_variance(all_values.into_iter(), all_targets.into_iter()),
            ..sums.mean(batches)
        })
    }

    /// Gather chunk rows `ids` (chunk, env) into a minibatch.
    pub fn batch(
        &self,
        learner: &Learner,
        chunks: &[Chunk],
        ids: &[(usize, usize)],
    ) -> Result<VtraceBatch> {
        let device = learner.device();
        let first = &chunks[ids[0].0];
        let (t_len, b, d, k) = (first.len, ids.len(), first.obs_dim, first.action_len);
        let l = t_len + 1;
        let mut obs = Vec::with_capacity(l);
        let mut starts = vec![false; b * l];
        let (mut ints, mut floats) = (Vec::new(), Vec::new());
        let n = t_len * b;
        let mut out = VtraceBatch {
            obs: vec![],
            episode_starts: vec![],
            state: engram_memory::CoreState::from_parts(vec![]),
            int_actions: None,
            float_actions: None,
            steps: t_len,
            rows: b,
            rewards: Vec::with_capacity(n),
            terminated: Vec::with_capacity(n),
            truncated: Vec::with_capacity(n),
            final_values: Vec::with_capacity(n),
            behaviour_log_probs: Vec::with_capacity(n),
            acting_values: Vec::with_capacity(n),
        };
        for t in 0..l {
            let mut rows = Vec::with_capacity(b * d);
            for (j, &(ci, e)) in ids.iter().enumerate() {
                let ch = &chunks[ci];
                if ch.len != t_len || ch.obs_dim != d {
                    return Err(AgentError::Actor(format!(
                        "chunks of one update differ in length or observation width ({}x{} vs {t_len}x{d})",
                        ch.len, ch.obs_dim
                    )));
                }
                if t == t_len {
                    rows.extend_from_slice(&ch.last_obs[e * d..(e + 1) * d]);
                    starts[j * l + t] = ch.last_starts[e];
                    match &ch.actions {
                        ActionData::Int(_) => ints.extend(std::iter::repeat_n(0, k)),
                        ActionData::Float(_) => floats.extend(std::iter::repeat_n(0.0, k)),
                    }
                    continue;
                }
                let i = t * ch.num_envs + e;
                rows.extend_from_slice(&ch.obs[i * d..(i + 1) * d]);
                starts[j * l + t] = ch.episode_starts[i];
                match &ch.actions {
                    ActionData::Int(a) => ints.extend_from_slice(&a[i * k..(i + 1) * k]),
                    ActionData::Float(a) => floats.extend_from_slice(&a[i * k..(i + 1) * k]),
                }
                out.rewards.push(ch.rewards[i]);
                out.terminated.push(ch.terminated[i]);
                out.truncated.push(ch.truncated[i]);
                out.final_values.push(ch.final_values[i]);
                out.behaviour_log_probs.push(ch.log_probs[i]);
                out.acting_values.push(ch.values[i]);
            }
            obs.push(matrix(rows, b, d, device));
        }
        let mut flat_state = Vec::new();
        for &(ci, e) in ids {
            let st = &chunks[ci].seq_states[0];
            let w = st.len() / chunks[ci].num_envs;
            flat_state.extend_from_slice(&st[e * w..(e + 1) * w]);
        }
        out.state = learner
            .policy
            .core
            .state_from_flat(&flat_state, b, device)?;
        out.obs = obs;
        out.episode_starts = starts;
        let rows_all = l * b;
        out.int_actions = (!ints.is_empty())
            .then(|| Tensor::<2, Int>::from_data(TensorData::new(ints, [rows_all, k]), device));
        out.float_actions = (!floats.is_empty()).then(|| matrix(floats, rows_all, k, device));
        Ok(out)
    }

    /// Losses of a minibatch, with V-trace computed from the current values; also returns the
    /// values and their V-trace targets (for explained variance).
    pub fn losses(
        &self,
        learner: &Learner,
        batch: &VtraceBatch,
    ) -> Result<(Losses, Vec<f32>, Vec<f32>)> {
        let c = learner.config();
        let device = learner.device();
        let policy = &learner.policy;
        let (h, _) = policy.unroll(
            batch.obs.clone(),
            batch.state.clone(),
            &batch.episode_starts,
        )?;
        let ev = policy.evaluate(h, batch.int_actions.clone(), batch.float_actions.clone());
        let (t, b) = (batch.steps, batch.rows);
        let n = t * b;
        let log_prob = ev.log_prob.narrow(0, 0, n);
        let value_all = ev.value;
        let value = value_all.clone().narrow(0, 0, n);
        let bootstrap = read(value_all.narrow(0, n, b).detach());
        let entropy = ev.entropy.narrow(0, 0, n);
        let values_host = read(value.clone().detach());
        let log_rhos: Vec<f32> = read(log_prob.clone().detach())
            .iter()
            .zip(&batch.behaviour_log_probs)
            .map(|(p, m)| (p - m).clamp(-20.0, 20.0))
            .collect();
        let out = vtrace(
            VtraceInput {
                rewards: &batch.rewards,
                values: &values_host,
                bootstrap: &bootstrap,
                final_values: &batch.final_values,
                terminated: &batch.terminated,
                truncated: &batch.truncated,
                log_rhos: &log_rhos,
                num_envs: b,
            },
            self.params,
        );
        let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), device);
        let masked = MaskedMean::new(vec1(vec![1.0; n]), n as f32);
        let behaviour = vec1(batch.behaviour_log_probs.clone());
        let clip = c.clip_coef as f32;
        let losses = match self.algo {
            Algo::Appo => {
                let mut adv = out.advantages.clone();
                if c.norm_adv {
                    normalise(&mut adv);
                }
                let terms = clipped_policy_loss(&masked, log_prob, behaviour, vec1(adv), clip);
                let old_values = c
                    .clip_vloss
                    .then(|| (vec1(batch.acting_values.clone()), clip));
                let value = value_loss(&masked, value, vec1(out.vs.clone()), old_values);
                terms.with_value_and_entropy(
                    value,
                    masked.mean(entropy),
                    c.vf_coef as f32,
                    c.ent_coef as f32,
                )
            }
            Algo::Impala | Algo::Ppo => {
                // Diagnostics (approx KL, clip fraction) as for APPO; the loss is IMPALA's.
                let mut terms = clipped_policy_loss(
                    &masked,
                    log_prob.clone(),
                    behaviour,
                    vec1(out.advantages.clone()),
                    clip,
                );
                let weighted: Vec<f32> = out
                    .advantages
                    .iter()
                    .zip(&out.pg_rhos)
                    .map(|(a, r)| a * r)
                    .collect();
                terms.policy = masked.mean(log_prob * vec1(weighted)).neg();
                let value = value_loss(&masked, value, vec1(out.vs.clone()), None);
                terms.with_value_and_entropy(
                    value,
                    masked.mean(entropy),
                    c.vf_coef as f32,
                    c.ent_coef as f32,
                )
            }
        };
        Ok((losses, values_host, out.vs))
    }
}

/// A chunk the learner can train on: every per-step array has `len × num_envs` entries and
/// the bootstrap data and the stored state are there.
fn check_complete(ch: &Chunk) -> Result<()> {
    let n = ch.len * ch.num_envs;
    let complete = ch.rewards.len() == n
        && ch.log_probs.len() == n
        && ch.values.len() == n
        && ch.terminated.len() == n
        && ch.truncated.len() == n
        && ch.final_values.len() == n
        && ch.episode_starts.len() == n
        && ch.obs.len() == n * ch.obs_dim
        && ch.last_obs.len() == ch.num_envs * ch.obs_dim
        && ch.last_starts.len() == ch.num_envs
        && !ch.seq_states.is_empty();
    if complete {
        Ok(())
    } else {
        Err(AgentError::Actor(format!(
            "an incomplete chunk reached the learner ({} of {n} steps); this is a bug",
            ch.rewards.len()
        )))
    }
}

/// Normalise to zero mean and unit standard deviation (unbiased), in place.
fn normalise(xs: &mut [f32]) {
    let n = xs.len() as f32;
    if n < 2.0 {
        return;
    }
    let mean = xs.iter().sum::<f32>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / (n - 1.0);
    let std = var.sqrt() + 1e-8;
    xs.iter_mut().for_each(|x| *x = (*x - mean) / std);
}

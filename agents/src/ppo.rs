//! Recurrent PPO: GAE, sequences with in-sequence resets, clipped losses, global grad clipping.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use engram_memory::{CoreState, RecurrentCore};
use rand::seq::SliceRandom;
use rand_pcg::Pcg64;

use crate::config::PpoSection;
use crate::error::{AgentError, Result};
use crate::gae::{gae, GaeInput};
use crate::grad_norm::clip_global_norm;
use crate::policy::{matrix, Policy};
use crate::rollout::{ActionData, Chunk, SequenceLayout};

/// Averages over the minibatches of one update.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpdateStats {
    /// Clipped surrogate policy loss.
    pub policy_loss: f32,
    /// Value loss.
    pub value_loss: f32,
    /// Mean entropy.
    pub entropy: f32,
    /// Approximate KL between acting and new policy.
    pub approx_kl: f32,
    /// Fraction of ratios outside the clip range.
    pub clipfrac: f32,
    /// Explained variance of the values w.r.t. the returns.
    pub explained_variance: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
}

/// One minibatch, ready for the forward pass.
pub struct Batch {
    /// Per-step observations `[B, obs_dim]`.
    pub obs: Vec<Tensor<2>>,
    /// Row-major `[B, L]` episode starts.
    pub episode_starts: Vec<bool>,
    /// Sequence-initial core state.
    pub state: CoreState,
    /// Categorical actions `[L*B, groups]` (time-major rows).
    pub int_actions: Option<Tensor<2, Int>>,
    /// Gaussian actions `[L*B, d]`.
    pub float_actions: Option<Tensor<2>>,
    /// Acting log-probabilities `[L*B]`.
    pub old_log_probs: Tensor<1>,
    /// Acting values `[L*B]`.
    pub old_values: Tensor<1>,
    /// Advantages `[L*B]` (normalised if asked).
    pub advantages: Tensor<1>,
    /// Returns `[L*B]`.
    pub returns: Tensor<1>,
    /// 1 where the step carries a loss `[L*B]`.
    pub mask: Tensor<1>,
    /// Number of steps with a loss.
    pub mask_count: f32,
}

/// One sequence: chunk, env, sequence index.
type SeqId = (usize, usize, usize);

/// The learner: the trainable policy and its optimizer.
pub struct Learner {
    /// The policy (on an autodiff device).
    pub policy: Policy,
    /// Adam.
    pub optim: ModuleOptimizer,
    config: PpoSection,
    layout: SequenceLayout,
    device: Device,
}

/// Loss terms of one minibatch (scalars, with the graph).
pub struct Losses {
    /// Total loss to minimise.
    pub total: Tensor<1>,
    /// Policy loss.
    pub policy: Tensor<1>,
    /// Value loss.
    pub value: Tensor<1>,
    /// Entropy.
    pub entropy: Tensor<1>,
    /// Approx KL (no graph needed).
    pub approx_kl: Tensor<1>,
    /// Clip fraction.
    pub clipfrac: Tensor<1>,
}

impl Learner {
    /// A learner for `policy` (already on `device`, an autodiff device).
    pub fn new(policy: Policy, config: PpoSection, layout: SequenceLayout, device: Device) -> Self {
        let optim = AdamConfig::new().with_epsilon(1e-5).init();
        Learner {
            policy,
            optim,
            config,
            layout,
            device,
        }
    }

    /// A no-autodiff copy of the current weights for actors.
    pub fn acting_policy(&self) -> Policy {
        self.policy.valid()
    }

    /// One PPO update on `chunks` at learning rate `lr`.
    pub fn update(
        &mut self,
        chunks: &mut [Chunk],
        lr: f64,
        rng: &mut Pcg64,
        update: u64,
    ) -> Result<UpdateStats> {
        let c = self.config.clone();
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
        let count = self.layout.count;
        let mut ids: Vec<SeqId> = chunks
            .iter()
            .enumerate()
            .flat_map(|(ci, ch)| {
                (0..ch.num_envs).flat_map(move |e| (0..count).map(move |k| (ci, e, k)))
            })
            .collect();
        let per_batch = ids.len().div_ceil(c.minibatches);
        let mut sums = UpdateStats::default();
        let mut batches = 0.0f32;
        for epoch in 0..c.epochs {
            if c.refresh_states && epoch > 0 {
                self.refresh_states(chunks)?;
            }
            ids.shuffle(rng);
            for mb in ids.chunks(per_batch) {
                let batch = self.batch(chunks, &targets, mb)?;
                let losses = self.losses(&batch)?;
                sums.add(&self.optimize(&losses, lr, update)?);
                batches += 1.0;
            }
        }
        Ok(UpdateStats {
            explained_variance,
            ..sums.mean(batches)
        })
    }

    /// Check the loss terms, back-propagate `losses.total`, clip the global gradient norm and
    /// take one Adam step at `lr`; returns the minibatch's loss values and gradient norm.
    pub fn optimize(&mut self, losses: &Losses, lr: f64, update: u64) -> Result<UpdateStats> {
        let values: Vec<f32> = [
            &losses.total,
            &losses.policy,
            &losses.value,
            &losses.entropy,
            &losses.approx_kl,
            &losses.clipfrac,
        ]
        .iter()
        .map(|t| (*t).clone().into_scalar::<f32>())
        .collect();
        for (name, v) in ["total", "policy", "value", "entropy"].iter().zip(&values) {
            if !v.is_finite() {
                return Err(AgentError::NonFiniteLoss {
                    loss: (*name).into(),
                    value: *v,
                    update,
                    checkpoint: String::new(),
                });
            }
        }
        let mut grads = GradientsParams::from_grads(losses.total.backward(), &self.policy);
        let norm = clip_global_norm(&self.policy, &mut grads, self.config.max_grad_norm);
        if !norm.is_finite() {
            return Err(AgentError::NonFiniteLoss {
                loss: "gradient norm".into(),
                value: norm as f32,
                update,
                checkpoint: String::new(),
            });
        }
        self.policy = self.optim.step(lr, self.policy.clone(), grads);
        Ok(UpdateStats {
            policy_loss: values[1],
            value_loss: values[2],
            entropy: values[3],
            approx_kl: values[4],
            clipfrac: values[5],
            grad_norm: norm as f32,
            explained_variance: 0.0,
        })
    }

    /// The PPO hyperparameters.
    pub fn config(&self) -> &PpoSection {
        &self.config
    }

    /// The (autodiff) training device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Gather the sequences `ids` into a minibatch.
    pub fn batch(
        &self,
        chunks: &[Chunk],
        targets: &[(Vec<f32>, Vec<f32>)],
        ids: &[SeqId],
    ) -> Result<Batch> {
        let (l, b) = (self.layout.seq_len, ids.len());
        let first = &chunks[ids[0].0];
        let (d, k) = (first.obs_dim, first.action_len);
        let mut obs = Vec::with_capacity(l);
        let mut starts = vec![false; b * l];
        let n = l * b;
        let (mut ints, mut floats) = (Vec::new(), Vec::new());
        let (mut old_lp, mut old_v, mut adv, mut ret, mut mask) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for t in 0..l {
            let mut rows = Vec::with_capacity(b * d);
            for (j, &(ci, e, s)) in ids.iter().enumerate() {
                let ch = &chunks[ci];
                let i = (self.layout.start(s) + t) * ch.num_envs + e;
                rows.extend_from_slice(&ch.obs[i * d..(i + 1) * d]);
                starts[j * l + t] = ch.episode_starts[i];
                match &ch.actions {
                    ActionData::Int(a) => ints.extend_from_slice(&a[i * k..(i + 1) * k]),
                    ActionData::Float(a) => floats.extend_from_slice(&a[i * k..(i + 1) * k]),
                }
                old_lp.push(ch.log_probs[i]);
                old_v.push(ch.values[i]);
                adv.push(targets[ci].0[i]);
                ret.push(targets[ci].1[i]);
                mask.push(if self.layout.trains(s, t) {
                    1.0f32
                } else {
                    0.0
                });
            }
            obs.push(matrix(rows, b, d, &self.device));
        }
        let mask_count: f32 = mask.iter().sum();
        if self.config.norm_adv && mask_count > 1.0 {
            let mean = adv.iter().zip(&mask).map(|(a, m)| a * m).sum::<f32>() / mask_count;
            let var = adv
                .iter()
                .zip(&mask)
                .map(|(a, m)| m * (a - mean).powi(2))
                .sum::<f32>()
                / (mask_count - 1.0);
            let std = var.sqrt() + 1e-8;
            adv.iter_mut().for_each(|a| *a = (*a - mean) / std);
        }
        let mut flat_state = Vec::new();
        for &(ci, e, s) in ids {
            let st = &chunks[ci].seq_states[s];
            let w = st.len() / chunks[ci].num_envs;
            flat_state.extend_from_slice(&st[e * w..(e + 1) * w]);
        }
        let state = self
            .policy
            .core
            .state_from_flat(&flat_state, b, &self.device)?;
        let vec1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), &self.device);
        Ok(Batch {
            obs,
            episode_starts: starts,
            state,
            int_actions: (!ints.is_empty())
                .then(|| Tensor::<2, Int>::from_data(TensorData::new(ints, [n, k]), &self.device)),
            float_actions: (!floats.is_empty()).then(|| matrix(floats, n, k, &self.device)),
            old_log_probs: vec1(old_lp),
            old_values: vec1(old_v),
            advantages: vec1(adv),
            returns: vec1(ret),
            mask: vec1(mask),
            mask_count,
        })
    }

    /// PPO losses of a minibatch under the current weights.
    pub fn losses(&self, batch: &Batch) -> Result<Losses> {
        let c = &self.config;
        let (h, _) = self.policy.unroll(
            batch.obs.clone(),
            batch.state.clone(),
            &batch.episode_starts,
        )?;
        let ev = self
            .policy
            .evaluate(h, batch.int_actions.clone(), batch.float_actions.clone());
        let masked = MaskedMean::new(batch.mask.clone(), batch.mask_count);
        let policy = clipped_policy_loss(
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
        Ok(policy.with_value_and_entropy(value, entropy, c.vf_coef as f32, c.ent_coef as f32))
    }

    /// Recompute every chunk's sequence-initial states with the current weights, starting
    /// from the state the chunk's rollout began with.
    pub fn refresh_states(&self, chunks: &mut [Chunk]) -> Result<()> {
        let policy = self.policy.valid();
        let device = self.device.clone().inner();
        for ch in chunks.iter_mut() {
            let n = ch.num_envs;
            let mut state = policy.core.state_from_flat(&ch.seq_states[0], n, &device)?;
            for k in 1..self.layout.count {
                let (from, to) = (self.layout.start(k - 1), self.layout.start(k));
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
}

impl UpdateStats {
    /// Add another minibatch's values.
    pub(crate) fn add(&mut self, o: &UpdateStats) {
        self.policy_loss += o.policy_loss;
        self.value_loss += o.value_loss;
        self.entropy += o.entropy;
        self.approx_kl += o.approx_kl;
        self.clipfrac += o.clipfrac;
        self.grad_norm += o.grad_norm;
        self.explained_variance += o.explained_variance;
    }

    /// Divide every sum by `n` minibatches.
    pub(crate) fn mean(&self, n: f32) -> UpdateStats {
        let n = n.max(1.0);
        UpdateStats {
            policy_loss: self.policy_loss / n,
            value_loss: self.value_loss / n,
            entropy: self.entropy / n,
            approx_kl: self.approx_kl / n,
            clipfrac: self.clipfrac / n,
            grad_norm: self.grad_norm / n,
            explained_variance: self.explained_variance / n,
        }
    }
}

/// Averages over the steps that carry a loss.
pub struct MaskedMean {
    mask: Tensor<1>,
    count: f32,
}

impl MaskedMean {
    /// `mask` holds 1 where a step carries a loss; `count` is its sum.
    pub fn new(mask: Tensor<1>, count: f32) -> Self {
        MaskedMean {
            mask,
            count: count.max(1.0),
        }
    }

    /// The masked mean of `t`.
    pub fn mean(&self, t: Tensor<1>) -> Tensor<1> {
        (t * self.mask.clone()).sum() / self.count
    }
}

/// The policy part of a loss with its diagnostics, before the value and entropy terms join.
pub struct PolicyTerms {
    /// Policy loss (with graph).
    pub policy: Tensor<1>,
    /// Approx KL between acting and current policy (no graph).
    pub approx_kl: Tensor<1>,
    /// Fraction of ratios outside the clip range (no graph).
    pub clipfrac: Tensor<1>,
}

impl PolicyTerms {
    /// `policy − ent_coef · entropy + vf_coef · value`, with every term kept for logging.
    pub fn with_value_and_entropy(
        self,
        value: Tensor<1>,
        entropy: Tensor<1>,
        vf_coef: f32,
        ent_coef: f32,
    ) -> Losses {
        let total = self.policy.clone() - entropy.clone() * ent_coef + value.clone() * vf_coef;
        Losses {
            total,
            policy: self.policy,
            value,
            entropy,
            approx_kl: self.approx_kl,
            clipfrac: self.clipfrac,
        }
    }
}

/// PPO's clipped surrogate `mean(max(−A r, −A clip(r, 1 ± ε)))` with `r = exp(log π − log μ)`.
pub fn clipped_policy_loss(
    masked: &MaskedMean,
    log_prob: Tensor<1>,
    old_log_prob: Tensor<1>,
    advantages: Tensor<1>,
    clip: f32,
) -> PolicyTerms {
    // Clamped so that a far-off ratio cannot overflow exp() (whose backward would then be 0 * inf).
    let log_ratio = (log_prob - old_log_prob).clamp(-20.0, 20.0);
    let ratio = log_ratio.clone().exp();
    let pg1 = advantages.clone().neg() * ratio.clone();
    let pg2 = advantages.neg() * ratio.clone().clamp(1.0 - clip, 1.0 + clip);
    let policy = masked.mean(pg1.max_pair(pg2));
    let ratio_d = ratio.detach();
    PolicyTerms {
        policy,
        approx_kl: masked.mean((ratio_d.clone() - 1.0) - log_ratio.detach()),
        clipfrac: masked.mean((ratio_d - 1.0).abs().greater_elem(clip).float()),
    }
}

/// `0.5 · mean((V − target)²)`, or with `clip = Some((old_values, ε))` the clipped form
/// `0.5 · mean(max((V − target)², (old + clip(V − old, ±ε) − target)²))`.
pub fn value_loss(
    masked: &MaskedMean,
    values: Tensor<1>,
    targets: Tensor<1>,
    clip: Option<(Tensor<1>, f32)>,
) -> Tensor<1> {
    let square = |t: Tensor<1>| t.clone() * t;
    let unclipped = square(values.clone() - targets.clone());
    match clip {
        Some((old, eps)) => {
            let clipped = old.clone() + (values - old).clamp(-eps, eps);
            masked.mean(unclipped.max_pair(square(clipped - targets))) * 0.5
        }
        None => masked.mean(unclipped) * 0.5,
    }
}

/// `1 - Var(returns - values) / Var(returns)`.
pub fn explained_variance(
    values: impl Iterator<Item = f32>,
    returns: impl Iterator<Item = f32>,
) -> f32 {
    let pairs: Vec<(f64, f64)> = values
        .zip(returns)
        .map(|(v, r)| (v as f64, r as f64))
        .collect();
    let n = pairs.len() as f64;
    let var = |xs: &mut dyn Iterator<Item = f64>| {
        let v: Vec<f64> = xs.collect();
        let m = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n
    };
    let var_r = var(&mut pairs.iter().map(|p| p.1));
    if var_r == 0.0 {
        return f32::NAN;
    }
    (1.0 - var(&mut pairs.iter().map(|p| p.1 - p.0)) / var_r) as f32
}

//! APPO and IMPALA: whole-chunk sequences, V-trace targets from the current values, APPO's clipped objective or IMPALA's loss.

use burn::tensor::{Tensor, TensorData};
use rand_pcg::Pcg64;

use super::learner::{Learner, UpdateStats};
use super::losses::{
    clipped_policy_loss, explained_variance, normalise_masked, value_loss, Losses, MaskedMean,
};
use super::minibatch::{all_sequences, gather, run_epochs, SeqRef, Sequences};
use super::vtrace::{vtrace, VtraceInput, VtraceParams};
use super::Algorithm;
use crate::config::{Algo, AsyncSection};
use crate::error::{AgentError, Result};
use crate::policy::read;
use crate::rollout::Chunk;

/// One minibatch of whole chunk rows: `T` steps plus the bootstrap observation.
pub struct VtraceBatch {
    /// Observations (`T + 1` steps, the last the bootstrap one), episode starts, chunk-initial
    /// states and actions (the bootstrap step's are placeholders) of the rows.
    pub seqs: Sequences,
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
pub struct Appo {
    algo: Algo,
    params: VtraceParams,
}

impl Appo {
    /// The learner of `algo` (`appo` or `impala`) with the V-trace clips of `config`.
    pub fn new(algo: Algo, gamma: f64, config: &AsyncSection) -> Self {
        let params = VtraceParams {
            gamma: gamma as f32,
            lambda: config.lambda as f32,
            rho_bar: config.rho_bar as f32,
            c_bar: config.c_bar as f32,
            pg_rho_bar: config.pg_rho_bar as f32,
        };
        Appo { algo, params }
    }

    /// Gather chunk rows `ids` into a minibatch.
    pub fn batch(
        &self,
        learner: &Learner,
        chunks: &[Chunk],
        ids: &[SeqRef],
    ) -> Result<VtraceBatch> {
        let (t_len, b) = (chunks[ids[0].chunk].len, ids.len());
        let n = t_len * b;
        let mut out = VtraceBatch {
            seqs: Sequences {
                obs: vec![],
                episode_starts: vec![],
                state: engram_memory::CoreState::from_parts(vec![]),
                int_actions: None,
                float_actions: None,
            },
            steps: t_len,
            rows: b,
            rewards: Vec::with_capacity(n),
            terminated: Vec::with_capacity(n),
            truncated: Vec::with_capacity(n),
            final_values: Vec::with_capacity(n),
            behaviour_log_probs: Vec::with_capacity(n),
            acting_values: Vec::with_capacity(n),
        };
        out.seqs = gather(learner, chunks, ids, t_len, true, |ch, i, _, _| {
            out.rewards.push(ch.rewards[i]);
            out.terminated.push(ch.terminated[i]);
            out.truncated.push(ch.truncated[i]);
            out.final_values.push(ch.final_values[i]);
            out.behaviour_log_probs.push(ch.log_probs[i]);
            out.acting_values.push(ch.values[i]);
        })?;
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
        let s = &batch.seqs;
        let (h, _) = policy.unroll(s.obs.clone(), s.state.clone(), &s.episode_starts)?;
        let ev = policy.evaluate(h, s.int_actions.clone(), s.float_actions.clone());
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
        let ones = vec![1.0; n];
        let masked = MaskedMean::new(vec1(ones.clone()), n as f32);
        let behaviour = vec1(batch.behaviour_log_probs.clone());
        let clip = c.clip_coef as f32;
        let losses = match self.algo {
            Algo::Appo => {
                let mut adv = out.advantages.clone();
                if c.norm_adv {
                    normalise_masked(&mut adv, &ones);
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

impl Algorithm for Appo {
    /// One update on complete `chunks` (each env row is one sequence) at learning rate `lr`.
    fn update(
        &self,
        learner: &mut Learner,
        chunks: &mut [Chunk],
        lr: f64,
        rng: &mut Pcg64,
        update: u64,
    ) -> Result<UpdateStats> {
        for ch in chunks.iter() {
            check_complete(ch)?;
        }
        let mut ids = all_sequences(chunks, 1);
        let c = learner.config().clone();
        let (mut all_values, mut all_targets) = (Vec::new(), Vec::new());
        let stats = run_epochs(
            &mut ids,
            c.epochs,
            c.minibatches,
            c.target_kl,
            rng,
            |epoch, _, mb| {
                let batch = self.batch(learner, chunks, mb)?;
                let (losses, values, targets) = self.losses(learner, &batch)?;
                if epoch == 0 {
                    all_values.extend(values);
                    all_targets.extend(targets);
                }
                learner.optimize(&losses, lr, update)
            },
        )?;
        Ok(UpdateStats {
            explained_variance: explained_variance(all_values.into_iter(), all_targets.into_iter()),
            ..stats
        })
    }
}

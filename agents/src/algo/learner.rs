//! The learner every algorithm shares: the trainable policy, its Adam optimiser and one checked, clipped gradient step.

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Device;

use super::grad_norm::{clip_to_norm, global_norm, largest_gradient};
use super::losses::Losses;
use crate::config::PpoSection;
use crate::error::{AgentError, Result};
use crate::policy::Policy;
use crate::rollout::SequenceLayout;

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
    /// Epochs the update ran (fewer than `ppo.epochs` when `ppo.target_kl` stopped it).
    pub epochs: f32,
    /// Approximate KL between the acting policy and the learner's recomputation of it on the
    /// update's first minibatch, before any step: 0 up to rounding for PPO (the acting and
    /// learning forward passes agree), the policy lag for APPO/IMPALA.
    pub behaviour_kl: f32,
}

/// A gradient norm this large (before clipping) is an explosion worth a warning: normal
/// updates stay within a few hundred.
pub const EXPLODING_GRAD_NORM: f64 = 1e6;

/// The first exploding gradient since it was last taken: where it was largest.
#[derive(Debug, Clone, PartialEq)]
pub struct GradientExplosion {
    /// The global norm before clipping.
    pub norm: f64,
    /// Module path of the parameter with the largest gradient entry.
    pub parameter: String,
    /// That entry's magnitude (before clipping).
    pub entry: f32,
}

/// The learner: the trainable policy and its optimizer.
pub struct Learner {
    /// The policy (on an autodiff device).
    pub policy: Policy,
    /// Adam.
    pub optim: ModuleOptimizer,
    config: PpoSection,
    layout: SequenceLayout,
    device: Device,
    explosion: Option<GradientExplosion>,
}

impl Learner {
    /// A learner for `policy` (already on `device`, an autodiff device) training sequences of
    /// `layout` with the optimiser settings and loss coefficients of `config`.
    pub fn new(policy: Policy, config: PpoSection, layout: SequenceLayout, device: Device) -> Self {
        let optim = AdamConfig::new().with_epsilon(1e-5).init();
        Learner {
            policy,
            optim,
            config,
            layout,
            device,
            explosion: None,
        }
    }

    /// The first minibatch gradient whose norm exceeded [`EXPLODING_GRAD_NORM`] since the last
    /// call (it was clipped like any other).
    pub fn take_explosion(&mut self) -> Option<GradientExplosion> {
        self.explosion.take()
    }

    /// A no-autodiff copy of the current weights for actors.
    pub fn acting_policy(&self) -> Policy {
        self.policy.valid()
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
        // The terms first, so that the error names the one at fault rather than their sum.
        for (name, i) in [("policy", 1), ("value", 2), ("entropy", 3), ("total", 0)] {
            let v = values[i];
            if !v.is_finite() {
                return Err(AgentError::NonFiniteLoss {
                    loss: format!("loss `{name}`"),
                    value: v,
                    update,
                    saved: String::new(),
                });
            }
        }
        let mut grads = GradientsParams::from_grads(losses.total.backward(), &self.policy);
        let norm = global_norm(&self.policy, &grads);
        if norm > EXPLODING_GRAD_NORM && norm.is_finite() && self.explosion.is_none() {
            if let Some((parameter, entry)) = largest_gradient(&self.policy, &grads) {
                self.explosion = Some(GradientExplosion {
                    norm,
                    parameter,
                    entry,
                });
            }
        }
        clip_to_norm(&self.policy, &mut grads, norm, self.config.max_grad_norm);
        if !norm.is_finite() {
            let at = largest_gradient(&self.policy, &grads).map_or(String::new(), |(path, v)| {
                format!(" (largest entry {v} in `{path}`)")
            });
            return Err(AgentError::NonFiniteLoss {
                loss: format!("the gradient norm{at}"),
                value: norm as f32,
                update,
                saved: String::new(),
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
            epochs: 0.0,
            behaviour_kl: 0.0,
        })
    }

    /// The optimiser settings and loss coefficients.
    pub fn config(&self) -> &PpoSection {
        &self.config
    }

    /// How rollouts are cut into training sequences.
    pub fn layout(&self) -> SequenceLayout {
        self.layout
    }

    /// The (autodiff) training device.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

impl UpdateStats {
    /// Add another minibatch's values.
    pub fn add(&mut self, o: &UpdateStats) {
        self.policy_loss += o.policy_loss;
        self.value_loss += o.value_loss;
        self.entropy += o.entropy;
        self.approx_kl += o.approx_kl;
        self.clipfrac += o.clipfrac;
        self.grad_norm += o.grad_norm;
        self.explained_variance += o.explained_variance;
    }

    /// Divide every sum by `n` minibatches.
    pub fn mean(&self, n: f32) -> UpdateStats {
        let n = n.max(1.0);
        UpdateStats {
            policy_loss: self.policy_loss / n,
            value_loss: self.value_loss / n,
            entropy: self.entropy / n,
            approx_kl: self.approx_kl / n,
            clipfrac: self.clipfrac / n,
            grad_norm: self.grad_norm / n,
            explained_variance: self.explained_variance / n,
            epochs: self.epochs,
            behaviour_kl: self.behaviour_kl,
        }
    }
}

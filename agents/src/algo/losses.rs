//! The loss terms the algorithms share: masked means, PPO's clipped surrogate and value loss, explained variance.

use burn::tensor::Tensor;

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

/// Normalise the entries where `mask` is 1 to zero mean and unit (unbiased) standard deviation,
/// and shift and scale the others alike; nothing changes with fewer than two such entries.
pub fn normalise_masked(xs: &mut [f32], mask: &[f32]) {
    let count: f32 = mask.iter().sum();
    if count <= 1.0 {
        return;
    }
    let mean = xs.iter().zip(mask).map(|(a, m)| a * m).sum::<f32>() / count;
    let var = xs
        .iter()
        .zip(mask)
        .map(|(a, m)| m * (a - mean).powi(2))
        .sum::<f32>()
        / (count - 1.0);
    let std = var.sqrt() + 1e-8;
    xs.iter_mut().for_each(|a| *a = (*a - mean) / std);
}

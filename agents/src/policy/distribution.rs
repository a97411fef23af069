//! The action distributions of the policy head — categorical groups and a diagonal Gaussian: sampling, greedy actions, log-probabilities and entropies, for actors, learner and eval alike.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use engram_envs::Space;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{AgentError, Result};

/// `½ ln 2π`, the per-dimension constant of a Gaussian's log-density.
pub const HALF_LN_2PI: f32 = 0.918_938_5;

/// What the action head produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// One categorical per entry (Discrete: one; MultiDiscrete: one per dimension).
    Categorical(Vec<usize>),
    /// A diagonal Gaussian over this many dimensions (Box actions, clipped to bounds by actors).
    Gaussian(usize),
}

impl ActionKind {
    /// The head for an action space.
    pub fn for_space(env_id: &str, space: &Space) -> Result<Self> {
        match space {
            Space::Discrete { n } => Ok(ActionKind::Categorical(vec![*n as usize])),
            Space::MultiDiscrete { nvec } => Ok(ActionKind::Categorical(nvec.iter().map(|&n| n as usize).collect())),
            Space::Box { low, high, shape } if shape.len() == 1 && low.iter().chain(high).all(|x| x.is_finite()) => {
                Ok(ActionKind::Gaussian(low.len()))
            }
            other => Err(AgentError::Unsupported {
                id: env_id.into(),
                message: format!(
                    "the policy cannot act in {other}: Box actions need a flat shape with finite bounds \
                     (wrap the env to rescale them)"
                ),
            }),
        }
    }

    /// Width of the actor head's output.
    pub fn head_width(&self) -> usize {
        match self {
            ActionKind::Categorical(groups) => groups.iter().sum(),
            ActionKind::Gaussian(d) => *d,
        }
    }

    /// Scalars per action.
    pub fn action_len(&self) -> usize {
        match self {
            ActionKind::Categorical(groups) => groups.len(),
            ActionKind::Gaussian(d) => *d,
        }
    }
}

/// One action per categorical group from one row of logits into `out` (one entry per group):
/// sampled, or with `greedy` the most likely (the last of equal maxima). Returns the summed
/// log-probability of the chosen entries.
pub fn categorical<R: Rng + ?Sized>(
    rng: &mut R,
    logits: &[f32],
    groups: &[usize],
    greedy: bool,
    out: &mut [i64],
) -> f32 {
    let mut offset = 0;
    let mut total = 0.0f32;
    for (g, &size) in groups.iter().enumerate() {
        let l = &logits[offset..offset + size];
        offset += size;
        let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = l.iter().map(|x| (x - max).exp()).sum();
        let log_z = max + sum.ln();
        let choice = if greedy {
            l.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        } else {
            let mut u: f32 = rng.random::<f32>() * sum;
            let mut choice = size - 1;
            for (i, x) in l.iter().enumerate() {
                u -= (x - max).exp();
                if u <= 0.0 {
                    choice = i;
                    break;
                }
            }
            choice
        };
        out[g] = choice as i64;
        total += l[choice] - log_z;
    }
    total
}

/// One Gaussian action from a row of means and standard deviations into `out`: `mean + std · z`
/// with `z ~ N(0, 1)`, or the mean itself with `greedy`. Returns its log-density (before any
/// clipping to the action bounds, which the env alone sees).
pub fn gaussian<R: Rng + ?Sized>(
    rng: &mut R,
    mean: &[f32],
    std: &[f32],
    greedy: bool,
    out: &mut [f32],
) -> f32 {
    let mut lp = 0.0;
    for j in 0..mean.len() {
        let z: f32 = if greedy {
            0.0
        } else {
            StandardNormal.sample(rng)
        };
        out[j] = mean[j] + std[j] * z;
        lp += -0.5 * z * z - std[j].ln() - HALF_LN_2PI;
    }
    lp
}

/// Log-probabilities `[N]` of `actions [N, groups]` and entropies `[N]` under categorical heads
/// with logits `out [N, Σ groups]`, summed over groups.
pub fn categorical_log_prob_entropy(
    out: Tensor<2>,
    groups: &[usize],
    actions: Tensor<2, Int>,
) -> (Tensor<1>, Tensor<1>) {
    let [n, _] = out.dims();
    let mut offset = 0;
    let mut lp_sum: Option<Tensor<1>> = None;
    let mut ent_sum: Option<Tensor<1>> = None;
    for (g, &size) in groups.iter().enumerate() {
        let lp = log_softmax(out.clone().narrow(1, offset, size), 1);
        offset += size;
        let taken = lp
            .clone()
            .gather(1, actions.clone().narrow(1, g, 1))
            .reshape([n]);
        let ent = (lp.clone().exp() * lp).sum_dim(1).reshape([n]).neg();
        lp_sum = Some(lp_sum.map_or(taken.clone(), |s| s + taken));
        ent_sum = Some(ent_sum.map_or(ent.clone(), |s| s + ent));
    }
    (
        lp_sum.expect("at least one group"),
        ent_sum.expect("at least one group"),
    )
}

/// Log-densities `[N]` of `actions [N, d]` and entropies `[N]` under a diagonal Gaussian with
/// means `mean [N, d]` and log standard deviations `log_std [d]`.
pub fn gaussian_log_prob_entropy(
    mean: Tensor<2>,
    log_std: Tensor<1>,
    actions: Tensor<2>,
) -> (Tensor<1>, Tensor<1>) {
    let [n, _] = mean.dims();
    let log_std = log_std.unsqueeze_dim::<2>(0);
    let z = (actions - mean) / log_std.clone().exp();
    let lp = (z.clone() * z * -0.5 - log_std.clone() - HALF_LN_2PI)
        .sum_dim(1)
        .reshape([n]);
    let ent = (log_std + 0.5 + HALF_LN_2PI)
        .sum_dim(1)
        .reshape([1])
        .expand([n]);
    (lp, ent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use rand::SeedableRng;
    use rand_pcg::Pcg64;

    #[test]
    fn host_and_tensor_log_probs_agree() {
        let device = Device::flex();
        let logits = [0.3f32, -1.0, 2.0, 0.5, 0.1];
        let groups = [3usize, 2];
        let mut rng = Pcg64::seed_from_u64(7);
        let mut a = [0i64; 2];
        let lp = categorical(&mut rng, &logits, &groups, false, &mut a);
        let (t_lp, t_ent) = categorical_log_prob_entropy(
            Tensor::from_data(TensorData::new(logits.to_vec(), [1, 5]), &device),
            &groups,
            Tensor::from_data(TensorData::new(a.to_vec(), [1, 2]), &device),
        );
        let t_lp: f32 = t_lp.into_scalar();
        assert!((lp - t_lp).abs() < 1e-5, "{lp} vs {t_lp}");
        assert!(t_ent.into_scalar::<f32>() > 0.0);
        let mut g = [0i64; 2];
        categorical(&mut rng, &logits, &groups, true, &mut g);
        assert_eq!(g, [2, 0]);

        let (mean, log_std) = ([0.5f32, -0.2], [0.1f32, -0.3]);
        let std: Vec<f32> = log_std.iter().map(|s| s.exp()).collect();
        let mut x = [0f32; 2];
        let lp = gaussian(&mut rng, &mean, &std, false, &mut x);
        let (t_lp, _) = gaussian_log_prob_entropy(
            Tensor::from_data(TensorData::new(mean.to_vec(), [1, 2]), &device),
            Tensor::from_data(TensorData::new(log_std.to_vec(), [2]), &device),
            Tensor::from_data(TensorData::new(x.to_vec(), [1, 2]), &device),
        );
        let t_lp: f32 = t_lp.into_scalar();
        assert!((lp - t_lp).abs() < 1e-4, "{lp} vs {t_lp}");
        gaussian(&mut rng, &mean, &std, true, &mut x);
        assert_eq!(x, mean);
    }
}

//! Divergence without NaN: a watch over the update statistics that warns when the value loss explodes, the gradient explodes or a discrete policy's entropy collapses.

use crate::algo::{GradientExplosion, UpdateStats};

/// Updates whose value losses set the baseline an explosion is measured against.
const BASELINE_UPDATES: usize = 5;
/// A value loss this many times the baseline (and above [`VALUE_LOSS_FLOOR`]) has exploded.
const EXPLOSION_FACTOR: f32 = 1e3;
/// Value losses below this never count as exploded (returns of a few hundred square to 1e5).
const VALUE_LOSS_FLOOR: f32 = 1e6;
/// A value loss this many times the squared largest episode return has exploded: values
/// within the range of the returns keep it under 2 · return².
const RETURN_SCALE_FACTOR: f64 = 1e3;
/// A discrete policy's mean entropy (nats) below this acts deterministically.
const ENTROPY_FLOOR: f32 = 1e-3;

/// Watches a run's updates for divergence that stays finite; each kind is reported once.
#[derive(Debug, Clone, Default)]
pub struct DivergenceWatch {
    /// Value losses of the first updates.
    first_value_losses: Vec<f32>,
    value_reported: bool,
    entropy_reported: bool,
    gradient_reported: bool,
}

impl DivergenceWatch {
    /// Look at the statistics of `update`, given the largest |episode return| seen so far (0
    /// before the first episode ends);
    /// the warnings it raises (entropy only for discrete policies: a Gaussian's entropy has no
    /// floor).
    pub fn observe(
        &mut self,
        stats: &UpdateStats,
        update: u64,
        discrete: bool,
        largest_return: f64,
    ) -> Vec<String> {
        let mut warnings = Vec::new();
        let value_loss = stats.value_loss;
        // Judged only once an episode has finished (`largest_return` > 0).
        let against_returns = RETURN_SCALE_FACTOR * largest_return.abs().max(1.0).powi(2);
        if !self.value_reported
            && largest_return > 0.0
            && value_loss.is_finite()
            && value_loss > VALUE_LOSS_FLOOR
            && f64::from(value_loss) > against_returns
        {
            self.value_reported = true;
            warnings.push(format!(
                "the value loss exploded to {value_loss:.3e} at update {update}, far beyond what \
                 returns of at most {:.3} allow: the critic is diverging; lower \
                 ppo.learning_rate or ppo.max_grad_norm",
                largest_return.abs()
            ));
        }
        if self.first_value_losses.len() < BASELINE_UPDATES {
            self.first_value_losses.push(value_loss);
        } else if !self.value_reported {
            let baseline = median(&self.first_value_losses).max(1e-3);
            if value_loss.is_finite()
                && value_loss > VALUE_LOSS_FLOOR
                && value_loss > EXPLOSION_FACTOR * baseline
            {
                self.value_reported = true;
                warnings.push(format!(
                    "the value loss exploded to {value_loss:.3e} at update {update} (it was about \
                     {baseline:.3e} over the first {BASELINE_UPDATES} updates): the critic is \
                     diverging; lower ppo.learning_rate or ppo.max_grad_norm"
                ));
            }
        }
        if discrete && !self.entropy_reported && stats.entropy < ENTROPY_FLOOR {
            self.entropy_reported = true;
            warnings.push(format!(
                "the policy's entropy collapsed to {:.1e} at update {update}: it acts \
                 deterministically and no longer explores; if the return is not at its best, \
                 raise ppo.ent_coef or lower ppo.learning_rate",
                stats.entropy
            ));
        }
        warnings
    }
}

impl DivergenceWatch {
    /// The warning for the run's first exploding gradient (later ones are only logged as
    /// `losses/grad_norm`), given the update it happened in and the clipping norm.
    pub fn observe_explosion(
        &mut self,
        explosion: &GradientExplosion,
        update: u64,
        max_grad_norm: f64,
    ) -> Option<String> {
        if self.gradient_reported {
            return None;
        }
        self.gradient_reported = true;
        Some(format!(
            "the gradient norm exploded to {:.1e} at update {update} (largest entry {:.1e}, in \
             `{}`); it was clipped to ppo.max_grad_norm = {max_grad_norm} and training goes on. \
             If the return drops after it, lower ppo.learning_rate or ppo.max_grad_norm, or \
             shorten ppo.seq_len",
            explosion.norm, explosion.entry, explosion.parameter
        ))
    }
}

/// The median of a non-empty slice (the upper one for an even length).
fn median(values: &[f32]) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    sorted[sorted.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(value_loss: f32, entropy: f32) -> UpdateStats {
        UpdateStats {
            value_loss,
            entropy,
            ..Default::default()
        }
    }

    #[test]
    fn an_exploding_value_loss_is_reported_once() {
        let mut watch = DivergenceWatch::default();
        for u in 1..=5 {
            assert!(watch.observe(&stats(20.0, 0.6), u, true, 1e9).is_empty());
        }
        // Growing but not exploding: a new return scale, not divergence.
        assert!(watch.observe(&stats(5_000.0, 0.6), 6, true, 1e9).is_empty());
        let w = watch.observe(&stats(1e13, 0.6), 7, true, 1e5);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("value loss exploded to 1.000e13 at update 7"),
            "{}",
            w[0]
        );
        assert!(watch.observe(&stats(1e14, 0.6), 8, true, 1e5).is_empty());
    }

    #[test]
    fn a_value_loss_beyond_the_returns_is_reported_from_the_first_update() {
        let mut watch = DivergenceWatch::default();
        let w = watch.observe(&stats(1.1e13, 0.6), 1, true, 9.0);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("returns of at most 9.000"), "{}", w[0]);
        // CartPole's returns (≤ 500) allow value losses far above the floor.
        let mut watch = DivergenceWatch::default();
        assert!(watch.observe(&stats(5e6, 0.6), 1, true, 500.0).is_empty());
    }

    #[test]
    fn an_exploding_gradient_is_reported_once_with_its_parameter() {
        let mut watch = DivergenceWatch::default();
        let e = GradientExplosion {
            norm: 7.2e23,
            parameter: "core.layers.0.w_hh".into(),
            entry: 3.0e22,
        };
        let w = watch.observe_explosion(&e, 1385, 0.5).expect("a warning");
        assert!(
            w.contains("exploded to 7.2e23 at update 1385")
                && w.contains("`core.layers.0.w_hh`")
                && w.contains("max_grad_norm = 0.5"),
            "{w}"
        );
        assert!(watch.observe_explosion(&e, 1386, 0.5).is_none());
    }

    #[test]
    fn large_but_steady_value_losses_are_not_divergence() {
        let mut watch = DivergenceWatch::default();
        for u in 1..=20 {
            assert!(watch.observe(&stats(4e6, 0.6), u, true, 500.0).is_empty());
        }
    }

    #[test]
    fn a_collapsed_discrete_entropy_is_reported_once_and_never_for_gaussians() {
        let mut watch = DivergenceWatch::default();
        assert!(watch.observe(&stats(1.0, -3.0), 1, false, 1.0).is_empty());
        assert!(watch.observe(&stats(1.0, 0.2), 2, true, 1.0).is_empty());
        let w = watch.observe(&stats(1.0, 1e-5), 3, true, 1.0);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("entropy collapsed"), "{}", w[0]);
        assert!(watch.observe(&stats(1.0, 0.0), 4, true, 1.0).is_empty());
    }
}

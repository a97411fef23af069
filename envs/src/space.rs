//! Observation and action spaces: Discrete, MultiDiscrete and Box, with flat f32 encodings.

use std::fmt;

use rand::Rng;
use rand_distr::{Distribution, Exp1, StandardNormal};
use serde::{Deserialize, Serialize};

/// A set of observations or actions, as in Gymnasium.
///
/// Observations always travel as flat `f32` vectors: a `Discrete(n)` observation is a one-hot
/// vector of length `n`, a `MultiDiscrete` one is the concatenation of one-hot vectors (Gymnasium's
/// `flatten`), and a `Box` is its values in row-major order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Space {
    /// Integers `0..n`.
    Discrete {
        /// Number of values.
        n: u64,
    },
    /// A vector of integers, element `i` in `0..nvec[i]`.
    MultiDiscrete {
        /// Number of values of each element.
        nvec: Vec<u64>,
    },
    /// Real vectors with per-element bounds (infinite bounds allowed).
    Box {
        /// Lower bound per element.
        low: Vec<f32>,
        /// Upper bound per element.
        high: Vec<f32>,
        /// Shape; the product equals `low.len()`.
        shape: Vec<usize>,
    },
}

/// One action, borrowed from a caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action<'a> {
    /// An element of a `Discrete` space.
    Discrete(i64),
    /// An element of a `MultiDiscrete` space.
    MultiDiscrete(&'a [i64]),
    /// An element of a `Box` space.
    Continuous(&'a [f32]),
}

/// An action sampled from a space, owning its values.
#[derive(Debug, Clone, PartialEq)]
pub enum SampledAction {
    /// See [`Action::Discrete`].
    Discrete(i64),
    /// See [`Action::MultiDiscrete`].
    MultiDiscrete(Vec<i64>),
    /// See [`Action::Continuous`].
    Continuous(Vec<f32>),
}

impl SampledAction {
    /// Borrow as an [`Action`].
    pub fn as_action(&self) -> Action<'_> {
        match self {
            SampledAction::Discrete(a) => Action::Discrete(*a),
            SampledAction::MultiDiscrete(v) => Action::MultiDiscrete(v),
            SampledAction::Continuous(v) => Action::Continuous(v),
        }
    }
}

impl fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Discrete(a) => write!(f, "{a}"),
            Action::MultiDiscrete(v) => write!(f, "{v:?}"),
            Action::Continuous(v) => write!(f, "{v:?}"),
        }
    }
}

impl Space {
    /// `Discrete(n)`.
    pub fn discrete(n: u64) -> Self {
        Space::Discrete { n }
    }

    /// `MultiDiscrete(nvec)`.
    pub fn multi_discrete(nvec: Vec<u64>) -> Self {
        Space::MultiDiscrete { nvec }
    }

    /// A 1-D `Box` with per-element bounds.
    pub fn bounded(low: Vec<f32>, high: Vec<f32>) -> Self {
        assert_eq!(low.len(), high.len(), "Box bounds must have equal length");
        let shape = vec![low.len()];
        Space::Box { low, high, shape }
    }

    /// A `Box` with the same bounds for every element.
    pub fn uniform_box(low: f32, high: f32, shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Space::Box {
            low: vec![low; len],
            high: vec![high; len],
            shape,
        }
    }

    /// Length of the flat f32 encoding of an element (one-hot for discrete spaces).
    pub fn flat_dim(&self) -> usize {
        match self {
            Space::Discrete { n } => *n as usize,
            Space::MultiDiscrete { nvec } => nvec.iter().map(|&n| n as usize).sum(),
            Space::Box { low, .. } => low.len(),
        }
    }

    /// Number of scalars in one action of this space (1 for Discrete).
    pub fn action_len(&self) -> usize {
        match self {
            Space::Discrete { .. } => 1,
            Space::MultiDiscrete { nvec } => nvec.len(),
            Space::Box { low, .. } => low.len(),
        }
    }

    /// Whether `action` is an element of this space.
    pub fn contains(&self, action: &Action<'_>) -> bool {
        match (self, action) {
            (Space::Discrete { n }, Action::Discrete(a)) => *a >= 0 && (*a as u64) < *n,
            (Space::MultiDiscrete { nvec }, Action::MultiDiscrete(v)) => {
                v.len() == nvec.len() && v.iter().zip(nvec).all(|(&a, &n)| a >= 0 && (a as u64) < n)
            }
            (Space::Box { low, high, .. }, Action::Continuous(v)) => {
                v.len() == low.len()
                    && v.iter()
                        .zip(low.iter().zip(high))
                        .all(|(&x, (&lo, &hi))| x >= lo && x <= hi)
            }
            _ => false,
        }
    }

    /// Whether a flat f32 vector is the encoding of an element of this space.
    pub fn contains_flat(&self, flat: &[f32]) -> bool {
        if flat.len() != self.flat_dim() {
            return false;
        }
        match self {
            Space::Discrete { .. } => is_one_hot(flat),
            Space::MultiDiscrete { nvec } => {
                let mut offset = 0;
                nvec.iter().all(|&n| {
                    let part = &flat[offset..offset + n as usize];
                    offset += n as usize;
                    is_one_hot(part)
                })
            }
            Space::Box { low, high, .. } => flat
                .iter()
                .zip(low.iter().zip(high))
                .all(|(&x, (&lo, &hi))| x >= lo && x <= hi),
        }
    }

    /// Draw a uniformly random element (Box: uniform where bounded, exponential where
    /// half-bounded, normal where unbounded, as Gymnasium does).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> SampledAction {
        match self {
            Space::Discrete { n } => SampledAction::Discrete(rng.random_range(0..*n) as i64),
            Space::MultiDiscrete { nvec } => SampledAction::MultiDiscrete(
                nvec.iter()
                    .map(|&n| rng.random_range(0..n) as i64)
                    .collect(),
            ),
            Space::Box { low, high, .. } => SampledAction::Continuous(
                low.iter()
                    .zip(high)
                    .map(|(&lo, &hi)| sample_interval(rng, lo, hi))
                    .collect(),
            ),
        }
    }

    /// An action just outside this space (for checkers and tests).
    pub fn invalid_action(&self) -> SampledAction {
        match self {
            Space::Discrete { n } => SampledAction::Discrete(*n as i64),
            Space::MultiDiscrete { nvec } => {
                SampledAction::MultiDiscrete(nvec.iter().map(|&n| n as i64).collect())
            }
            Space::Box { low, .. } => SampledAction::Continuous(vec![f32::NAN; low.len()]),
        }
    }
}

fn sample_interval<R: Rng + ?Sized>(rng: &mut R, lo: f32, hi: f32) -> f32 {
    match (lo.is_finite(), hi.is_finite()) {
        (true, true) => lo + (hi - lo) * rng.random::<f32>(),
        (true, false) => lo + <Exp1 as Distribution<f32>>::sample(&Exp1, rng),
        (false, true) => hi - <Exp1 as Distribution<f32>>::sample(&Exp1, rng),
        (false, false) => StandardNormal.sample(rng),
    }
}

fn is_one_hot(v: &[f32]) -> bool {
    v.iter().all(|&x| x == 0.0 || x == 1.0) && v.iter().filter(|&&x| x == 1.0).count() == 1
}

/// Write the one-hot encoding of `value` into `out` (zeroing it first).
#[inline]
pub fn write_one_hot(out: &mut [f32], value: usize) {
    out.fill(0.0);
    out[value] = 1.0;
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Space::Discrete { n } => write!(f, "Discrete({n})"),
            Space::MultiDiscrete { nvec } => write!(f, "MultiDiscrete({nvec:?})"),
            Space::Box { low, high, shape } => {
                let same = |v: &[f32]| v.iter().all(|&x| x == v[0]);
                if !low.is_empty() && same(low) && same(high) {
                    write!(f, "Box({}, {}, {shape:?})", low[0], high[0])
                } else {
                    write!(f, "Box({low:?}, {high:?}, {shape:?})")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn discrete_contains_and_samples_in_range() {
        let s = Space::discrete(3);
        assert!(s.contains(&Action::Discrete(0)));
        assert!(s.contains(&Action::Discrete(2)));
        assert!(!s.contains(&Action::Discrete(3)));
        assert!(!s.contains(&Action::Discrete(-1)));
        assert!(!s.contains(&Action::Continuous(&[0.0])));
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
        let mut seen = [0; 3];
        for _ in 0..300 {
            match s.sample(&mut rng) {
                SampledAction::Discrete(a) => seen[a as usize] += 1,
                other => panic!("wrong kind {other:?}"),
            }
        }
        assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
    }

    #[test]
    fn multi_discrete_flat_encoding_is_concatenated_one_hots() {
        let s = Space::multi_discrete(vec![2, 3]);
        assert_eq!(s.flat_dim(), 5);
        assert_eq!(s.action_len(), 2);
        assert!(s.contains_flat(&[0.0, 1.0, 0.0, 0.0, 1.0]));
        assert!(!s.contains_flat(&[1.0, 1.0, 0.0, 0.0, 1.0]));
        assert!(!s.contains_flat(&[0.0, 1.0, 0.0, 0.0, 0.0]));
        assert!(!s.contains(&Action::MultiDiscrete(&[1])));
        assert!(!s.contains(&Action::MultiDiscrete(&[1, 3])));
        assert!(s.contains(&Action::MultiDiscrete(&[1, 2])));
    }

    #[test]
    fn box_bounds_nan_and_sampling() {
        let s = Space::bounded(vec![-2.0, f32::NEG_INFINITY], vec![2.0, f32::INFINITY]);
        assert!(s.contains(&Action::Continuous(&[2.0, 1e30])));
        assert!(!s.contains(&Action::Continuous(&[2.5, 0.0])));
        assert!(!s.contains(&Action::Continuous(&[f32::NAN, 0.0])));
        assert!(!s.contains(&s.invalid_action().as_action()));
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        for _ in 0..100 {
            assert!(s.contains(&s.sample(&mut rng).as_action()));
        }
        assert_eq!(s.to_string(), "Box([-2.0, -inf], [2.0, inf], [2])");
        assert_eq!(
            Space::uniform_box(-1.0, 1.0, vec![2]).to_string(),
            "Box(-1, 1, [2])"
        );
    }
}

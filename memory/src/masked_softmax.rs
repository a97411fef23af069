//! Softmax over the allowed keys of each attention row, exactly 0 on the others: one host op on
//! the flex backend (a vectorised `exp`, the backward from the output) in place of the five
//! tensor ops and scalar libm `exp` of the generic form, which other devices run.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use crate::host_math::{dot, exp};
use crate::host_op::{self, HostOp};

/// Which keys each query may attend to, shared by all heads: `keep[(b·T + t)·K + j]` for query
/// `t` of row `b` and key `j`.
#[derive(Clone, Debug)]
pub(crate) struct KeyMask {
    /// Row-major `[B, T, K]`.
    pub keep: Arc<Vec<bool>>,
    /// Queries per row `T`.
    pub steps: usize,
    /// Keys `K`.
    pub keys: usize,
}

impl KeyMask {
    /// `[B, 1, T, K]`: 1.0 where a query may attend, 0.0 elsewhere (as many rows `B` as the
    /// mask holds).
    pub fn keep_tensor(&self, device: &Device) -> Tensor<4> {
        self.tensor(1.0, 0.0, device)
    }

    /// `[B, 1, T, K]` holding `yes` where a query may attend and `no` elsewhere.
    fn tensor(&self, yes: f32, no: f32, device: &Device) -> Tensor<4> {
        let (t, k) = (self.steps, self.keys);
        let values = self
            .keep
            .iter()
            .map(|&ok| if ok { yes } else { no })
            .collect();
        let shape = [self.keep.len() / (t * k), 1, t, k];
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// The mask of input row `r` of a `[B·H·T, K]` score matrix with `heads` heads.
    fn row(&self, r: usize, heads: usize) -> &[bool] {
        let (t, k) = (self.steps, self.keys);
        let line = (r / (heads * t)) * t + r % t;
        &self.keep[line * k..(line + 1) * k]
    }
}

/// `softmax` of `scores [B, H, T, K]` over the keys `mask` allows, exactly 0 elsewhere: one
/// host op on flex, the tensor form of [`generic`] on other devices. Exponents are clamped to
/// `[−80, 0]` after subtracting the allowed maximum: no `exp` underflows (libm's underflow path
/// is ~10× a normal `exp`), and an allowed weight below `e^{−80}` of the largest is off by at
/// most `e^{−80}`.
pub(crate) fn masked_softmax(scores: Tensor<4>, mask: &KeyMask) -> Tensor<4> {
    on_host(&scores, mask).unwrap_or_else(|| generic(scores, mask))
}

/// The host op; `None` off flex. A row with no allowed key is all zeros.
fn on_host(scores: &Tensor<4>, mask: &KeyMask) -> Option<Tensor<4>> {
    let [b, h, t, k] = scores.dims();
    let flat = scores.clone().reshape([b * h * t, k]);
    let op = MaskedSoftmax {
        mask: mask.clone(),
        heads: h,
    };
    host_op::run(&op, &[flat], [b * h * t, k]).map(|y| y.reshape([b, h, t, k]))
}

/// The generic form from tensor ops (an additive −1e30 mask for the maximum, then a 0/1 mask).
fn generic(scores: Tensor<4>, mask: &KeyMask) -> Tensor<4> {
    let device = scores.device();
    let max = (scores.clone() + mask.tensor(0.0, -1e30, &device))
        .max_dim(3)
        .detach();
    let e = (scores - max).clamp(-80.0, 0.0).exp() * mask.keep_tensor(&device);
    let sum = e.clone().sum_dim(3);
    e / sum
}

/// The host op over `[B·H·T, K]` rows.
struct MaskedSoftmax {
    mask: KeyMask,
    heads: usize,
}

impl HostOp<1> for MaskedSoftmax {
    /// The output `y` and the row width `K`.
    type Tape = (Vec<f32>, usize);

    fn forward(&self, [mut x]: [Vec<f32>; 1], keep_tape: bool) -> (Vec<f32>, Option<Self::Tape>) {
        let k = self.mask.keys;
        pulp::Arch::new().dispatch(Forward {
            values: &mut x,
            op: self,
        });
        let tape = keep_tape.then(|| (x.clone(), k));
        (x, tape)
    }

    fn backward((y, k): &Self::Tape, grad: &[f32], _: [bool; 1]) -> [Option<Vec<f32>>; 1] {
        let mut g = grad.to_vec();
        pulp::Arch::new().dispatch(Backward {
            grad: &mut g,
            y,
            keys: *k,
        });
        [Some(g)]
    }
}

/// The forward rows, compiled for the CPU's vector width.
struct Forward<'a> {
    values: &'a mut [f32],
    op: &'a MaskedSoftmax,
}

impl pulp::WithSimd for Forward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let k = self.op.mask.keys;
        for (r, row) in self.values.chunks_exact_mut(k).enumerate() {
            let keep = self.op.mask.row(r, self.op.heads);
            let max = row
                .iter()
                .zip(keep)
                .filter(|(_, &ok)| ok)
                .fold(f32::NEG_INFINITY, |m, (&v, _)| m.max(v));
            for (v, &ok) in row.iter_mut().zip(keep) {
                *v = if ok {
                    exp((*v - max).clamp(-80.0, 0.0))
                } else {
                    0.0
                };
            }
            let total = sum(row);
            let scale = if total > 0.0 { 1.0 / total } else { 0.0 };
            row.iter_mut().for_each(|v| *v *= scale);
        }
    }
}

/// The backward rows: `dx = y ⊙ (dy − Σ y·dy)`.
struct Backward<'a> {
    grad: &'a mut [f32],
    y: &'a [f32],
    keys: usize,
}

impl pulp::WithSimd for Backward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let k = self.keys;
        for (g, y) in self.grad.chunks_exact_mut(k).zip(self.y.chunks_exact(k)) {
            let dot = dot(g, y);
            g.iter_mut().zip(y).for_each(|(g, &y)| *g = y * (*g - dot));
        }
    }
}

/// `Σ v_i` in eight partial sums, so the loop vectorises.
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..8 {
            lanes[k] += c[k];
        }
    }
    lanes.iter().sum::<f32>() + rest
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burn::tensor::{Device, Distribution, Tensor};

    use super::{generic, on_host, KeyMask};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.to_data().try_into_vec_as::<f32>().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()))
    }

    #[test]
    fn host_op_matches_the_generic_form_in_values_and_gradients() {
        let (b, h, t, k) = (2, 3, 4, 7);
        let d = Device::flex().autodiff();
        // A pseudo-random mask with at least one allowed key per query (the last one).
        let keep: Vec<bool> = (0..b * t * k)
            .map(|i| i % k == k - 1 || (i * 7919) % 5 < 3)
            .collect();
        let mask = KeyMask {
            keep: Arc::new(keep.clone()),
            steps: t,
            keys: k,
        };
        let x =
            Tensor::<4>::random([b, h, t, k], Distribution::Uniform(-8.0, 8.0), &d).require_grad();
        let w = Tensor::<4>::random([b, h, t, k], Distribution::Uniform(-1.0, 1.0), &d);
        let fast = on_host(&x, &mask).expect("flex autodiff takes the host op");
        let slow = generic(x.clone(), &mask);
        assert!(max_diff(&values(fast.clone()), &values(slow.clone())) < 1e-6);
        // Disallowed keys get exactly 0; every query's weights sum to 1.
        let y = values(fast.clone());
        for (row, weights) in y.chunks_exact(k).enumerate() {
            let line = (row / (h * t)) * t + row % t;
            for (j, &v) in weights.iter().enumerate() {
                if !keep[line * k + j] {
                    assert_eq!(v, 0.0);
                }
            }
            assert!((weights.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let gx_fast = (fast * w.clone()).sum().backward();
        let gx_fast = values(x.grad(&gx_fast).unwrap());
        let gx_slow = (slow * w).sum().backward();
        let gx_slow = values(x.grad(&gx_slow).unwrap());
        assert!(
            max_diff(&gx_fast, &gx_slow) < 1e-6,
            "{}",
            max_diff(&gx_fast, &gx_slow)
        );
    }
}

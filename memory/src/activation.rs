//! Sigmoid and tanh: one host op on the flex backend, built from `exp` elsewhere.
//!
//! On flex (plain or autodiff) each is a single [`HostOp`] with a vectorised `exp` and the
//! derivative taken from the output, instead of the six or seven tensor ops (each an autodiff
//! node, `exp` a scalar libm call per element) of the generic form. On other devices the
//! generic form runs. Its inputs are clamped first so `exp` never overflows: without the clamp
//! the backward of `recip(1 + e^{−x})` at `e^{−x} = ∞` is `0 · ∞ = NaN`. At the clamp bounds
//! the functions are within 1e−17 of their limits, so values change by less than that.

use burn::tensor::Tensor;

use crate::host_math::{PointwiseGrad, PointwiseInPlace};
use crate::host_op::{self, HostOp};

/// `σ(x) = 1 / (1 + e^{−x})`, with `x` clamped to `[−40, 40]` in the generic form.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    on_host(&x, Pointwise { tanh: false }).unwrap_or_else(|| generic_sigmoid(x))
}

/// The generic sigmoid from tensor ops.
fn generic_sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clamp(-40.0, 40.0).neg().exp().add_scalar(1.0).recip()
}

/// `tanh(x) = 2σ(2x) − 1`, with `x` clamped to `[−20, 20]` in the generic form (absolute error
/// ~1e−7).
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    on_host(&x, Pointwise { tanh: true }).unwrap_or_else(|| generic_tanh(x))
}

/// The generic tanh from tensor ops.
fn generic_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clamp(-20.0, 20.0)
        .mul_scalar(-2.0)
        .exp()
        .add_scalar(1.0)
        .recip()
        .mul_scalar(2.0)
        .sub_scalar(1.0)
}

/// Sigmoid (`tanh: false`) or tanh as a host op.
struct Pointwise {
    tanh: bool,
}

/// What [`Pointwise`]'s backward needs: which function, and its output.
struct PointwiseTape {
    tanh: bool,
    y: Vec<f32>,
}

impl HostOp<1> for Pointwise {
    type Tape = PointwiseTape;

    fn forward(
        &self,
        [mut x]: [Vec<f32>; 1],
        keep_tape: bool,
    ) -> (Vec<f32>, Option<PointwiseTape>) {
        let tanh = self.tanh;
        pulp::Arch::new().dispatch(PointwiseInPlace {
            values: &mut x,
            tanh,
        });
        let tape = keep_tape.then(|| PointwiseTape { tanh, y: x.clone() });
        (x, tape)
    }

    fn backward(tape: &PointwiseTape, grad: &[f32], _: [bool; 1]) -> [Option<Vec<f32>>; 1] {
        let mut g = grad.to_vec();
        pulp::Arch::new().dispatch(PointwiseGrad {
            grad: &mut g,
            y: &tape.y,
            tanh: tape.tanh,
        });
        [Some(g)]
    }
}

/// Runs `op` on `x` viewed as `[numel / last, last]`; `None` off flex.
fn on_host<const D: usize>(x: &Tensor<D>, op: Pointwise) -> Option<Tensor<D>> {
    let dims = x.dims();
    let cols = dims[D - 1].max(1);
    let rows = dims.iter().product::<usize>() / cols;
    let flat = x.clone().reshape([rows, cols]);
    host_op::run(&op, &[flat], [rows, cols]).map(|y| y.reshape(dims))
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution, Tensor};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.to_data().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn host_op_matches_the_generic_form_in_values_and_gradients() {
        let d = Device::flex().autodiff();
        let x = Tensor::<3>::random([3, 4, 5], Distribution::Uniform(-6.0, 6.0), &d).require_grad();
        let w = Tensor::<3>::random([3, 4, 5], Distribution::Uniform(-1.0, 1.0), &d);
        let fast = super::sigmoid(x.clone()) * w.clone() + super::tanh(x.clone()) * w.clone().neg();
        let slow = super::generic_sigmoid(x.clone()) * w.clone()
            + super::generic_tanh(x.clone()) * w.neg();
        let diff = |a: Vec<f32>, b: Vec<f32>| {
            a.iter()
                .zip(&b)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()))
        };
        assert!(diff(values(fast.clone()), values(slow.clone())) < 1e-6);
        let (gf, gs) = (fast.sum().backward(), slow.sum().backward());
        let (gf, gs) = (x.grad(&gf).unwrap(), x.grad(&gs).unwrap());
        assert!(diff(values(gf), values(gs)) < 1e-6);
        // Without autodiff the host op runs forward only.
        let plain =
            Tensor::<3>::random([2, 3, 4], Distribution::Uniform(-6.0, 6.0), &Device::flex());
        let (a, b) = (super::tanh(plain.clone()), super::generic_tanh(plain));
        assert!(diff(values(a), values(b)) < 1e-6);
    }

    #[test]
    fn extreme_inputs_give_exact_limits_and_finite_gradients() {
        let d = Device::flex().autodiff();
        let x =
            Tensor::<1>::from_data([-1e4f32, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4], &d).require_grad();
        let s = super::sigmoid(x.clone());
        let t = super::tanh(x.clone());
        let sv = s.to_data().try_into_vec_as::<f32>().unwrap();
        let tv = t.to_data().try_into_vec_as::<f32>().unwrap();
        assert!(sv[0] < 1e-17);
        assert_eq!((sv[6], tv[0], tv[6]), (1.0, -1.0, 1.0));
        assert!((sv[4] - 0.731_058_6).abs() < 1e-6 && (tv[4] - 0.761_594_2).abs() < 1e-6);
        let g = (s + t).sum().backward();
        let gv = x
            .grad(&g)
            .unwrap()
            .to_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert!(gv.iter().all(|v| v.is_finite()), "{gv:?}");
        assert!((gv[3] - 1.25).abs() < 1e-5); // σ'(0) + tanh'(0)
    }
}

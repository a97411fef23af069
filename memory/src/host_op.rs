//! Runs a host-side kernel with its own backward as one burn autodiff op on the flex backend
//! (forward only on plain flex); other devices get `None` and use the generic tensor code.

use std::marker::PhantomData;
use std::sync::Arc;

use burn::tensor::{DType, Tensor, TensorData};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;
use burn_flex::{Flex, FlexTensor};

use crate::host_math;

/// A computation on host f32 buffers with `N` two-dimensional inputs and one output.
pub(crate) trait HostOp<const N: usize>: Sized + 'static {
    /// What the backward pass keeps from the forward pass.
    type Tape: Send + Sync + 'static;

    /// Computes the output (row-major) from the inputs (row-major, shapes known to the op, the
    /// buffers pooled: see `host_math::give`); returns the tape when `keep_tape`.
    fn forward(&self, inputs: [Vec<f32>; N], keep_tape: bool) -> (Vec<f32>, Option<Self::Tape>);

    /// Gradients of the inputs flagged in `wanted`, given the output's gradient.
    fn backward(tape: &Self::Tape, grad: &[f32], wanted: [bool; N]) -> [Option<Vec<f32>>; N];
}

/// Runs `op` on `inputs`, returning an output of `out_shape` that backpropagates through
/// [`HostOp::backward`]. `None` when the tensors do not all live on flex (autodiff with default
/// checkpointing, or plain) as f32; the inputs are untouched then.
pub(crate) fn run<K: HostOp<N>, const N: usize>(
    op: &K,
    inputs: &[Tensor<2>; N],
    out_shape: [usize; 2],
) -> Option<Tensor<2>> {
    if inputs.iter().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    let shapes = inputs.each_ref().map(|t| t.dims());
    let autodiff: Option<Vec<_>> = inputs
        .iter()
        .map(|t| t.clone().try_into_primitive::<Autodiff<Flex>>().ok())
        .collect();
    if let Some(ad) = autodiff {
        let host: [Vec<f32>; N] = std::array::from_fn(|i| host_vec(ad[i].primitive()));
        let nodes: [_; N] = std::array::from_fn(|i| ad[i].node());
        let out = match HostBackward::<K, N>(PhantomData)
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, tape) = op.forward(host, true);
                let tape = tape.expect("HostOp::forward returns a tape when asked");
                prep.finish(Arc::new(Saved { tape, shapes }), flex(out, out_shape))
            }
            OpsKind::UnTracked(prep) => prep.finish(flex(op.forward(host, false).0, out_shape)),
        };
        return Some(Tensor::from_primitive::<Autodiff<Flex>>(out));
    }
    let plain: Option<Vec<FlexTensor>> = inputs
        .iter()
        .map(|t| t.clone().try_into_primitive::<Flex>().ok())
        .collect();
    let plain = plain?;
    let host: [Vec<f32>; N] = std::array::from_fn(|i| host_vec(&plain[i]));
    let out = op.forward(host, false).0;
    Some(Tensor::from_primitive::<Flex>(flex(out, out_shape)))
}

/// Whether `t` lives on flex (plain or autodiff) as f32, so that [`run`] will take it.
pub(crate) fn on_flex(t: &Tensor<2>) -> bool {
    t.dtype() == DType::F32
        && (t.clone().try_into_primitive::<Autodiff<Flex>>().is_ok()
            || t.clone().try_into_primitive::<Flex>().is_ok())
}

/// The tape and the input shapes (for the gradients).
struct Saved<T, const N: usize> {
    tape: T,
    shapes: [[usize; 2]; N],
}

impl<T, const N: usize> std::fmt::Debug for Saved<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("shapes", &self.shapes)
            .finish()
    }
}

/// The autodiff node of a [`HostOp`].
struct HostBackward<K, const N: usize>(PhantomData<fn() -> K>);

impl<K, const N: usize> std::fmt::Debug for HostBackward<K, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::any::type_name::<K>())
    }
}

impl<K: HostOp<N>, const N: usize> Backward<Flex, N> for HostBackward<K, N> {
    type State = Arc<Saved<K::Tape, N>>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = host_vec(&grads.consume::<Flex>(&ops.node));
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let out = K::backward(&ops.state.tape, &grad, wanted);
        host_math::give(grad);
        for ((parent, g), shape) in ops.parents.into_iter().zip(out).zip(ops.state.shapes) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<Flex>(node.id, flex(g, shape));
            }
        }
    }
}

/// A flex tensor's values, row-major, in a pooled buffer.
fn host_vec(t: &FlexTensor) -> Vec<f32> {
    match t.as_slice::<f32>() {
        Some(s) => host_math::take_copy(s),
        None => t
            .clone()
            .into_data()
            .try_into_vec::<f32>()
            .expect("host op inputs are checked to be f32"),
    }
}

/// A row-major buffer as a flex tensor.
fn flex(data: Vec<f32>, shape: [usize; 2]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

//! The LSTM and GRU sequences on libtorch as libtorch's own RNN ops (cuDNN on CUDA, libtorch's
//! CPU kernel otherwise), run as one burn autodiff op whose backward is libtorch's autograd.
//!
//! The op takes the same six inputs and returns the same packed output as the flex kernels
//! (`lstm_kernel::LstmOp`, `gru_kernel::GruOp`), so a core's `fused_sequence` tries one, then the
//! other, and reads the result the same way. Resets inside the sequence stay exact and cost no
//! extra call: every row is cut at its episode starts into segments, and all segments run as
//! one packed batch of variable-length sequences (libtorch's `lstm`/`gru` on packed data, what
//! PyTorch's `PackedSequence` calls), each from its row's state or, after a start, from zero.
//! Without the `tch` feature, [`run`] always answers `None`.

use burn::tensor::Tensor;

use crate::lstm_kernel::Dims;

/// Which of libtorch's RNNs runs the sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TorchRnn {
    /// Inputs `[x [T·B, E], h [B, H], c [B, H], W_ihᵀ [E, 4H], W_hhᵀ [H, 4H], bias [1, 4H]]`
    /// (gates i, f, g, o; one fused bias); output `[(T + 1)·B, H]`: every step's `h`, then the
    /// last `c`.
    Lstm,
    /// Inputs `[x [T·B, E], h [B, H], W_ihᵀ [E, 3H], W_hhᵀ [H, 3H], b_ih [1, 3H], b_hh [1, 3H]]`
    /// (gates r, z, n); output `[T·B, H]`: every step's `h`.
    Gru,
}

/// Runs `kind` over the sequence when every input lives on libtorch (autodiff or plain) as f32;
/// `None` otherwise (or when libtorch refuses the call), and the caller falls back. `resets` are
/// time-major `[T·B]` episode-start flags.
pub(crate) fn run(
    kind: TorchRnn,
    dims: &Dims,
    resets: Option<&[bool]>,
    inputs: &[Tensor<2>; 6],
) -> Option<Tensor<2>> {
    #[cfg(feature = "tch")]
    {
        imp::run(kind, dims, resets, inputs)
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = (kind, dims, resets, inputs);
        None
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn 0.22 marks burn-tch deprecated; it is still the libtorch route
mod imp {
    use std::sync::Arc;

    use burn::tensor::{DType, Tensor};
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind};
    use burn_autodiff::Autodiff;
    use burn_tch::{LibTorch, TchTensor};
    use tch::{Kind, TchError};

    use super::TorchRnn;
    use crate::lstm_kernel::Dims;

    /// One sequence: which RNN, its sizes and the time-major reset flags.
    struct Sequence<'a> {
        kind: TorchRnn,
        dims: &'a Dims,
        resets: Option<&'a [bool]>,
    }

    impl Sequence<'_> {
        /// The packed output (see [`TorchRnn`]) from the six inputs; `train` keeps what
        /// libtorch's backward needs (cuDNN refuses a backward of an inference-mode forward).
        fn forward(&self, inputs: [&tch::Tensor; 6], train: bool) -> Result<tch::Tensor, TchError> {
            let Dims {
                steps,
                batch,
                input,
                hidden,
                layout,
            } = *self.dims;
            debug_assert_eq!(layout, crate::seq_layout::SeqLayout::TimeMajor);
            let (t, b, e, h) = (steps as i64, batch as i64, input as i64, hidden as i64);
            let x = inputs[0].f_view([t, b, e])?;
            let (mut state, weights) = match self.kind {
                TorchRnn::Lstm => {
                    let bias = inputs[5].f_view([-1])?;
                    let zero = bias.f_zeros_like()?;
                    (
                        vec![initial(inputs[1])?, initial(inputs[2])?],
                        [transposed(inputs[3])?, transposed(inputs[4])?, bias, zero],
                    )
                }
                TorchRnn::Gru => (
                    vec![initial(inputs[1])?],
                    [
                        transposed(inputs[2])?,
                        transposed(inputs[3])?,
                        inputs[4].f_view([-1])?,
                        inputs[5].f_view([-1])?,
                    ],
                ),
            };
            let Some(resets) = self.resets.filter(|r| r.contains(&true)) else {
                // No episode starts: one call over the whole sequence.
                let (y, last_c) = self.call(&x, None, &state, &weights, train)?;
                return pack_output(y.f_view([t * b, h])?, last_c.map(|c| c.f_view([b, h])));
            };
            // Every row is cut at its episode starts into segments, all run as one packed batch
            // of variable-length sequences (one cuDNN call), each from its row's state or zero.
            let packing = Packing::new(resets, steps, batch);
            let device = x.device();
            let index = |v: &[i64]| tch::Tensor::from_slice(v).f_to_device(device);
            let data = inputs[0].f_index_select(0, &index(&packing.gather)?)?;
            let batch_sizes = tch::Tensor::from_slice(&packing.batch_sizes);
            let initial = index(&packing.initial)?;
            for part in &mut state {
                // Row `B` of the extended state is the zero state.
                let rows = part.f_select(0, 0)?;
                let zero = rows.f_narrow(0, 0, 1)?.f_zeros_like()?;
                let extended = tch::Tensor::f_cat(&[rows, zero], 0)?;
                *part = extended.f_index_select(0, &initial)?.f_unsqueeze(0)?;
            }
            let (out, last_c) = self.call(&data, Some(&batch_sizes), &state, &weights, train)?;
            let y = out.f_index_select(0, &index(&packing.scatter)?)?;
            let last = index(&packing.last)?;
            pack_output(
                y,
                last_c.map(|c| c.f_select(0, 0)?.f_index_select(0, &last)),
            )
        }

        /// One libtorch RNN call: over `x [T, B, E]`, or over packed `data` when `batch_sizes`
        /// is given; returns the outputs and, for the LSTM, the last cell state.
        fn call(
            &self,
            x: &tch::Tensor,
            batch_sizes: Option<&tch::Tensor>,
            state: &[tch::Tensor],
            weights: &[tch::Tensor; 4],
            train: bool,
        ) -> Result<(tch::Tensor, Option<tch::Tensor>), TchError> {
            use tch::Tensor as T;
            Ok(match (self.kind, batch_sizes) {
                (TorchRnn::Lstm, None) => {
                    let (y, _, c) = x.f_lstm(state, weights, true, 1, 0.0, train, false, false)?;
                    (y, Some(c))
                }
                (TorchRnn::Lstm, Some(sizes)) => {
                    let (y, _, c) =
                        T::f_lstm_data(x, sizes, state, weights, true, 1, 0.0, train, false)?;
                    (y, Some(c))
                }
                (TorchRnn::Gru, None) => (
                    x.f_gru(&state[0], weights, true, 1, 0.0, train, false, false)?
                        .0,
                    None,
                ),
                (TorchRnn::Gru, Some(sizes)) => {
                    let (y, _) =
                        T::f_gru_data(x, sizes, &state[0], weights, true, 1, 0.0, train, false)?;
                    (y, None)
                }
            })
        }
    }

    /// `[every step's h; the last c (LSTM)]`, the layout of [`TorchRnn`].
    fn pack_output(
        y: tch::Tensor,
        last_c: Option<Result<tch::Tensor, TchError>>,
    ) -> Result<tch::Tensor, TchError> {
        match last_c {
            Some(c) => tch::Tensor::f_cat(&[y, c?], 0),
            None => Ok(y),
        }
    }

    /// How a sequence with episode starts becomes one packed batch: each row is cut at its
    /// starts into segments, sorted by length (longest first, as packed sequences are).
    struct Packing {
        /// The time-major positions `t·B + b` of the packed rows, in packed order.
        gather: Vec<i64>,
        /// Per time-major position, its row in the packed data (`gather`'s inverse).
        scatter: Vec<i64>,
        /// How many segments are still running at each packed step.
        batch_sizes: Vec<i64>,
        /// Per segment: the batch row whose state it starts from, or `B` (zero) after a start.
        initial: Vec<i64>,
        /// Per batch row: its last segment (whose final state is the row's).
        last: Vec<i64>,
    }

    impl Packing {
        fn new(resets: &[bool], steps: usize, batch: usize) -> Self {
            // (row, first step, length)
            let mut segments = Vec::new();
            for row in 0..batch {
                let mut start = 0;
                for t in 1..steps {
                    if resets[t * batch + row] {
                        segments.push((row, start, t - start));
                        start = t;
                    }
                }
                segments.push((row, start, steps - start));
            }
            segments.sort_by_key(|s| std::cmp::Reverse(s.2)); // stable: rows keep their order
            let mut gather = Vec::with_capacity(steps * batch);
            let mut scatter = vec![0i64; steps * batch];
            let mut batch_sizes = Vec::new();
            for k in 0..segments[0].2 {
                let running = segments.iter().take_while(|s| s.2 > k).count();
                batch_sizes.push(running as i64);
                for &(row, start, _) in &segments[..running] {
                    let at = (start + k) * batch + row;
                    scatter[at] = gather.len() as i64;
                    gather.push(at as i64);
                }
            }
            let initial = segments
                .iter()
                .map(|&(row, start, _)| {
                    let fresh = start > 0 || resets[row];
                    (if fresh { batch } else { row }) as i64
                })
                .collect();
            let mut last = vec![0i64; batch];
            let mut last_start = vec![0usize; batch];
            for (i, &(row, start, _)) in segments.iter().enumerate() {
                if start >= last_start[row] {
                    last_start[row] = start;
                    last[row] = i as i64;
                }
            }
            Self {
                gather,
                scatter,
                batch_sizes,
                initial,
                last,
            }
        }
    }

    /// A state part `[B, H]` as the RNN's `[1, B, H]`, contiguous (cuDNN refuses a strided
    /// `hx`, and state parts can be column slices of a wider state).
    fn initial(part: &tch::Tensor) -> Result<tch::Tensor, TchError> {
        part.f_contiguous()?.f_unsqueeze(0)
    }

    /// Engram's `Wᵀ [in, G·H]` as libtorch's `W [G·H, in]`: a view (libtorch's CPU kernel
    /// multiplies by it as it is; cuDNN copies the weights into its own layout anyway).
    fn transposed(w: &tch::Tensor) -> Result<tch::Tensor, TchError> {
        w.f_transpose(0, 1)
    }

    pub(super) fn run(
        kind: TorchRnn,
        dims: &Dims,
        resets: Option<&[bool]>,
        inputs: &[Tensor<2>; 6],
    ) -> Option<Tensor<2>> {
        if inputs.iter().any(|t| t.dtype() != DType::F32) {
            return None;
        }
        let seq = Sequence { kind, dims, resets };
        let autodiff: Option<Vec<_>> = inputs
            .iter()
            .map(|t| t.clone().try_into_primitive::<Autodiff<LibTorch>>().ok())
            .collect();
        if let Some(ad) = autodiff {
            let nodes: [_; 6] = std::array::from_fn(|i| ad[i].node());
            return match TorchBackward
                .prepare::<NoCheckpointing>(nodes)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(prep) => {
                    // The leaves alias the inputs' memory, and libtorch's graph keeps some of
                    // them (and the output) for its backward: each kept tensor shares its
                    // burn tensor's storage handle, so burn-tch does not overwrite it in place
                    // (it does that only to tensors whose storage nobody else holds).
                    let leaves: [TchTensor; 6] = std::array::from_fn(|i| {
                        let input = ad[i].primitive();
                        let leaf = input.tensor.detach().set_requires_grad(ad[i].is_tracked());
                        TchTensor::from_existing(leaf, input.storage.clone())
                    });
                    let graph_inputs = leaves.each_ref().map(|l| &l.tensor);
                    let out = refused(tch::with_grad(|| seq.forward(graph_inputs, true)))?;
                    let out = TchTensor::new(out);
                    let value = TchTensor::from_existing(out.tensor.detach(), out.storage.clone());
                    let saved = Saved { out, leaves };
                    let out = prep.finish(Arc::new(saved), value);
                    Some(Tensor::from_primitive::<Autodiff<LibTorch>>(out))
                }
                OpsKind::UnTracked(prep) => {
                    let out = inference(&seq, std::array::from_fn(|i| &ad[i].primitive().tensor))?;
                    let out = prep.finish(TchTensor::new(out));
                    Some(Tensor::from_primitive::<Autodiff<LibTorch>>(out))
                }
            };
        }
        let plain: Option<Vec<TchTensor>> = inputs
            .iter()
            .map(|t| t.clone().try_into_primitive::<LibTorch>().ok())
            .collect();
        let plain = plain?;
        let out = inference(&seq, std::array::from_fn(|i| &plain[i].tensor))?;
        Some(Tensor::from_primitive::<LibTorch>(TchTensor::new(out)))
    }

    /// The forward without autograd (acting, evaluation, untracked inputs).
    fn inference(seq: &Sequence, inputs: [&tch::Tensor; 6]) -> Option<tch::Tensor> {
        refused(tch::no_grad(|| seq.forward(inputs, false)))
    }

    /// The output, or `None` after saying once (on stderr) that libtorch refused the call and
    /// the core falls back to its step loop: correct, but slow enough to want to know.
    fn refused(result: Result<tch::Tensor, TchError>) -> Option<tch::Tensor> {
        static ONCE: std::sync::Once = std::sync::Once::new();
        result
            .map_err(|e| {
                ONCE.call_once(|| {
                    eprintln!(
                        "engram: warning: libtorch's RNN refused a sequence ({e}); the LSTM/GRU \
                         runs its step loop instead (slower)"
                    )
                })
            })
            .ok()
    }

    /// What the backward keeps: the output with libtorch's graph and the graph's leaves.
    struct Saved {
        out: TchTensor,
        leaves: [TchTensor; 6],
    }

    impl std::fmt::Debug for Saved {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Saved")
                .field("out", &self.out.tensor.size())
                .finish()
        }
    }

    /// The autodiff node: its backward runs libtorch's autograd from the saved output.
    #[derive(Debug)]
    struct TorchBackward;

    impl Backward<LibTorch, 6> for TorchBackward {
        type State = Arc<Saved>;

        fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
            let grad = grads.consume::<LibTorch>(&ops.node);
            let wanted: Vec<usize> = (0..6).filter(|&i| ops.parents[i].is_some()).collect();
            if wanted.is_empty() {
                return;
            }
            let saved = &ops.state;
            let leaves: Vec<&tch::Tensor> =
                wanted.iter().map(|&i| &saved.leaves[i].tensor).collect();
            // d⟨out, grad⟩/d leaves = the vector-Jacobian product libtorch's RNN backward computes.
            let input_grads = tch::with_grad(|| {
                let dot = saved.out.tensor.f_mul(&grad.tensor)?.f_sum(Kind::Float)?;
                tch::Tensor::f_run_backward(&[dot], &leaves, false, false)
            })
            .unwrap_or_else(|e| panic!("libtorch's RNN backward failed: {e}"));
            for (i, g) in wanted.into_iter().zip(input_grads) {
                if let Some(node) = &ops.parents[i] {
                    grads.register::<LibTorch>(node.id, TchTensor::new(g));
                }
            }
        }
    }
}

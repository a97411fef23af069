//! Fused LSTM sequence on host f32 buffers: forward with a saved tape, and backpropagation
//! through time with the weight gradients as single large matmuls (cuDNN's scheme).
//!
//! Layout is time-major: row `t·B + b` of a `[T·B, ·]` buffer is batch row `b` at step `t`.
//! Gate order is PyTorch's `i, f, g, o`; weights are `W_ihᵀ [E, 4H]`, `W_hhᵀ [H, 4H]`.

use crate::host_math::{
    for_each_block, give, matmul, matmul_serial, on_pool, sigmoid_slice, step_blocks,
    step_blocks_mut, step_chunk_rows, take_overwritten, take_repeated, take_transposed, tanh,
    tanh_slice, Mat,
};
use crate::host_op::HostOp;
use crate::seq_layout::{SeqLayout, SeqRows};

/// Sizes of one fused run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    /// Steps `T`.
    pub steps: usize,
    /// Batch rows `B`.
    pub batch: usize,
    /// Input width `E`.
    pub input: usize,
    /// Hidden width `H`.
    pub hidden: usize,
    /// The row order of the op's `x`, outputs and their gradients (the kernel steps
    /// time-major: a batch-major run reorders on the way in and out; libtorch's path takes
    /// time-major only).
    pub layout: SeqLayout,
}

impl Dims {
    /// The sizes of a run over `x` in `layout` (`[T, B, E]` or `[B, T, E]`) with `hidden` units.
    pub fn of(x: &burn::tensor::Tensor<3>, layout: SeqLayout, hidden: usize) -> Self {
        let [d0, d1, input] = x.dims();
        let (steps, batch) = layout.steps_batch([d0, d1]);
        Dims {
            steps,
            batch,
            input,
            hidden,
            layout,
        }
    }

    /// The rows of `x` and `y`.
    pub fn seq(&self) -> SeqRows {
        SeqRows {
            layout: self.layout,
            steps: self.steps,
            batch: self.batch,
        }
    }
}

/// Inputs of a run (all row-major host buffers, pooled).
pub(crate) struct Inputs<'a> {
    /// `x [T·B, E]`, time-major.
    pub x: Vec<f32>,
    /// Initial hidden state `h [B, H]`.
    pub h0: Vec<f32>,
    /// Initial cell state `c [B, H]`.
    pub c0: Vec<f32>,
    /// `W_ihᵀ [E, 4H]`.
    pub w_ih: Vec<f32>,
    /// `W_hhᵀ [H, 4H]`.
    pub w_hh: Vec<f32>,
    /// `b_ih + b_hh [4H]`.
    pub bias: Vec<f32>,
    /// `resets[t·B + b]`: zero row `b`'s state before step `t` (time-major), if any.
    pub resets: Option<&'a [bool]>,
}

/// What the backward pass needs, saved by [`forward`].
pub(crate) struct Tape {
    dims: Dims,
    x: Vec<f32>,
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    resets: Option<Vec<bool>>,
    /// Activated gates `[T·B, 4H]` (`σ(i), σ(f), tanh(g), σ(o)`).
    acts: Vec<f32>,
    /// `h_{t−1}` and `c_{t−1}` after resets, `[T·B, H]`.
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    /// `tanh(c_t)` `[T·B, H]`.
    tanh_c: Vec<f32>,
}

impl Drop for Tape {
    fn drop(&mut self) {
        for v in [
            &mut self.x,
            &mut self.w_ih,
            &mut self.w_hh,
            &mut self.acts,
            &mut self.h_prev,
            &mut self.c_prev,
            &mut self.tanh_c,
        ] {
            give(std::mem::take(v));
        }
    }
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape").field("dims", &self.dims).finish()
    }
}

/// Gradients of a run, for the inputs asked for.
#[derive(Default)]
pub(crate) struct Grads {
    pub x: Option<Vec<f32>>,
    pub h0: Option<Vec<f32>>,
    pub c0: Option<Vec<f32>>,
    pub w_ih: Option<Vec<f32>>,
    pub w_hh: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// Which gradients [`backward`] computes, in the order x, h0, c0, w_ih, w_hh, bias.
pub(crate) type Wanted = [bool; 6];

/// Runs the sequence. Returns `z [(T+1)·B, H]`: rows `t·B..(t+1)·B` hold `h_t`, the last block
/// holds the final cell state `c_T`; and the tape when `keep_tape`.
pub(crate) fn forward(d: Dims, inp: Inputs, keep_tape: bool) -> (Vec<f32>, Option<Tape>) {
    let (tn, b, e, h) = (d.steps, d.batch, d.input, d.hidden);
    let (g4, bh) = (4 * h, b * h);
    assert_eq!(inp.x.len(), tn * b * e, "lstm kernel: x");
    assert!(
        inp.h0.len() == bh && inp.c0.len() == bh,
        "lstm kernel: state"
    );
    assert_eq!(inp.w_ih.len(), e * g4, "lstm kernel: w_ih");
    assert_eq!(inp.w_hh.len(), h * g4, "lstm kernel: w_hh");
    assert_eq!(inp.bias.len(), g4, "lstm kernel: bias");
    if let Some(r) = inp.resets {
        assert_eq!(r.len(), tn * b, "lstm kernel: resets");
    }
    // Input projections of all steps at once, plus the bias.
    let mut gates = take_repeated(&inp.bias, tn * b);
    matmul(
        &mut gates,
        true,
        Mat::new(&inp.x, e),
        Mat::new(&inp.w_ih, g4),
    );

    // Not pooled: `z` becomes the output tensor and is never given back.
    let mut z = vec![0.0; (tn + 1) * bh];
    // Without a tape, one step's worth of scratch stands in for it.
    let tape_len = if keep_tape { tn * bh } else { bh };
    // Every step writes its rows of these whole (no pass zeroing them first).
    let (mut h_prev, mut c_prev) = (take_overwritten(tape_len), take_overwritten(tape_len));
    let mut tanh_c = take_overwritten(tape_len);
    let (mut hs, mut cs) = (inp.h0, inp.c0);
    let rows = step_chunk_rows(b, h * g4);
    {
        let mut gates_b = step_blocks_mut(&mut gates, b, rows, g4).into_iter();
        let mut out_b = step_blocks_mut(&mut z[..tn * bh], b, rows, h).into_iter();
        let mut h_prev_b = step_blocks_mut(&mut h_prev, b, rows, h).into_iter();
        let mut c_prev_b = step_blocks_mut(&mut c_prev, b, rows, h).into_iter();
        let mut tanh_c_b = step_blocks_mut(&mut tanh_c, b, rows, h).into_iter();
        let mut resets_b = inp.resets.map(|r| step_blocks(r, b, rows, 1).into_iter());
        let blocks: Vec<ForwardBlock> = hs
            .chunks_mut(rows * h)
            .zip(cs.chunks_mut(rows * h))
            .map(|(h, c)| ForwardBlock {
                h,
                c,
                resets: resets_b.as_mut().and_then(Iterator::next),
                gates: gates_b.next().unwrap_or_default(),
                out: out_b.next().unwrap_or_default(),
                h_prev: h_prev_b.next().unwrap_or_default(),
                c_prev: c_prev_b.next().unwrap_or_default(),
                tanh_c: tanh_c_b.next().unwrap_or_default(),
            })
            .collect();
        for_each_block(blocks, |block| block.forward(h, &inp.w_hh));
    }
    z[tn * bh..].copy_from_slice(&cs);
    give(hs);
    give(cs);
    give(inp.bias);
    let tape = if keep_tape {
        Some(Tape {
            dims: d,
            x: inp.x,
            w_ih: inp.w_ih,
            w_hh: inp.w_hh,
            resets: inp.resets.map(<[bool]>::to_vec),
            acts: gates,
            h_prev,
            c_prev,
            tanh_c,
        })
    } else {
        for v in [inp.x, inp.w_ih, inp.w_hh, gates, h_prev, c_prev, tanh_c] {
            give(v);
        }
        None
    };
    (z, tape)
}

/// One forward step's buffers for a block of batch rows.
struct StepRows<'s> {
    /// Rows whose state is zeroed before the step.
    resets: &'s [bool],
    /// Gate pre-activations holding the input projection; activated in place.
    gates: &'s mut [f32],
    /// `h` and `c`, updated in place.
    h: &'s mut [f32],
    c: &'s mut [f32],
    /// The step's output `h_t`.
    out: &'s mut [f32],
    /// Tape: `h_{t−1}`, `c_{t−1}` after resets, and `tanh(c_t)`.
    h_prev: &'s mut [f32],
    c_prev: &'s mut [f32],
    tanh_c: &'s mut [f32],
}

/// A block of batch rows through every step, on one thread: its running state and its part of
/// every step's buffers (without a tape, `h_prev`, `c_prev` and `tanh_c` hold one step's
/// scratch, reused).
struct ForwardBlock<'s> {
    h: &'s mut [f32],
    c: &'s mut [f32],
    resets: Option<Vec<&'s [bool]>>,
    gates: Vec<&'s mut [f32]>,
    out: Vec<&'s mut [f32]>,
    h_prev: Vec<&'s mut [f32]>,
    c_prev: Vec<&'s mut [f32]>,
    tanh_c: Vec<&'s mut [f32]>,
}

impl ForwardBlock<'_> {
    /// Runs every step on the block's rows.
    fn forward(mut self, h: usize, w_hh: &[f32]) {
        let no_resets = vec![false; self.h.len() / h.max(1)];
        for t in 0..self.gates.len() {
            let k = t.min(self.h_prev.len() - 1);
            StepRows {
                resets: self.resets.as_ref().map_or(&no_resets[..], |r| r[t]),
                gates: &mut *self.gates[t],
                h: &mut *self.h,
                c: &mut *self.c,
                out: &mut *self.out[t],
                h_prev: &mut *self.h_prev[k],
                c_prev: &mut *self.c_prev[k],
                tanh_c: &mut *self.tanh_c[k],
            }
            .forward(h, w_hh);
        }
    }
}

impl StepRows<'_> {
    /// Runs the step on these rows: resets, tape copies, `h W_hh` added to the gates, gate
    /// activations, and the new `c` and `h` (also written to `out`).
    fn forward(self, h: usize, w_hh: &[f32]) {
        let g4 = 4 * h;
        for (row, _) in self.resets.iter().enumerate().filter(|(_, &r)| r) {
            self.h[row * h..(row + 1) * h].fill(0.0);
            self.c[row * h..(row + 1) * h].fill(0.0);
        }
        self.h_prev.copy_from_slice(self.h);
        self.c_prev.copy_from_slice(self.c);
        matmul_serial(self.gates, true, Mat::new(self.h, h), Mat::new(w_hh, g4));
        pulp::Arch::new().dispatch(GateForward {
            h,
            gates: self.gates,
            c: self.c,
            out: &mut *self.out,
            tanh_c: self.tanh_c,
            bias: &[],
        });
        self.h.copy_from_slice(self.out);
    }
}

/// Backpropagation through time: `dz` is the gradient of [`forward`]'s `z`.
pub(crate) fn backward(tape: &Tape, dz: &[f32], wanted: Wanted) -> Grads {
    let d = tape.dims;
    let (tn, b, e, h) = (d.steps, d.batch, d.input, d.hidden);
    let (g4, bh) = (4 * h, b * h);
    assert_eq!(dz.len(), (tn + 1) * bh, "lstm kernel: dz");
    // Every step writes its rows whole.
    let mut dgates = take_overwritten(tn * b * g4);
    let mut dh = vec![0.0; bh];
    let mut dc = dz[tn * bh..].to_vec();
    let rows = step_chunk_rows(b, h * g4);
    // `W_hh` as `[4H, H]`: the per-step product `dgates W_hh` reads it dense (gemm packs a
    // transposed operand from strided reads at every call: it cost twice the forward's product).
    let w_hh_t = take_transposed(&tape.w_hh, h, g4);
    {
        let mut dy_b = step_blocks(&dz[..tn * bh], b, rows, h).into_iter();
        let mut acts_b = step_blocks(&tape.acts, b, rows, g4).into_iter();
        let mut tanh_c_b = step_blocks(&tape.tanh_c, b, rows, h).into_iter();
        let mut c_prev_b = step_blocks(&tape.c_prev, b, rows, h).into_iter();
        let mut dgates_b = step_blocks_mut(&mut dgates, b, rows, g4).into_iter();
        let mut resets_b = tape
            .resets
            .as_deref()
            .map(|r| step_blocks(r, b, rows, 1).into_iter());
        let blocks: Vec<BackBlock> = dh
            .chunks_mut(rows * h)
            .zip(dc.chunks_mut(rows * h))
            .map(|(dh, dc)| BackBlock {
                dh,
                dc,
                resets: resets_b.as_mut().and_then(Iterator::next),
                dy: dy_b.next().unwrap_or_default(),
                acts: acts_b.next().unwrap_or_default(),
                tanh_c: tanh_c_b.next().unwrap_or_default(),
                c_prev: c_prev_b.next().unwrap_or_default(),
                dgates: dgates_b.next().unwrap_or_default(),
            })
            .collect();
        for_each_block(blocks, |block| block.backward(h, &w_hh_t));
    }
    give(w_hh_t);
    let [want_x, want_h0, want_c0, want_ih, want_hh, want_bias] = wanted;
    let all = Mat::new(&dgates, g4);
    let grads = Grads {
        x: want_x.then(|| {
            let mut dx = vec![0.0; tn * b * e];
            matmul(&mut dx, false, all, Mat::new(&tape.w_ih, g4).t());
            dx
        }),
        h0: want_h0.then_some(dh),
        c0: want_c0.then_some(dc),
        w_ih: want_ih.then(|| {
            let mut dw = vec![0.0; e * g4];
            matmul(&mut dw, false, Mat::new(&tape.x, e).t(), all);
            dw
        }),
        w_hh: want_hh.then(|| {
            let mut dw = vec![0.0; h * g4];
            matmul(&mut dw, false, Mat::new(&tape.h_prev, h).t(), all);
            dw
        }),
        bias: want_bias.then(|| {
            let mut db = vec![0.0; g4];
            for row in dgates.chunks_exact(g4) {
                for (acc, v) in db.iter_mut().zip(row) {
                    *acc += v;
                }
            }
            db
        }),
    };
    give(dgates);
    grads
}

/// One backward step's buffers for a block of batch rows.
struct BackRows<'s> {
    /// Rows whose state was zeroed before the step (their `dh`, `dc` stop there).
    resets: &'s [bool],
    /// Gradient of the step's output `h_t`.
    dy: &'s [f32],
    /// Tape: activated gates, `tanh(c_t)` and `c_{t−1}`.
    acts: &'s [f32],
    tanh_c: &'s [f32],
    c_prev: &'s [f32],
    /// Gate gradients, written.
    dgates: &'s mut [f32],
    /// Gradients reaching `h_t` and `c_t` from later steps; left holding those of `h_{t−1}`,
    /// `c_{t−1}`.
    dh: &'s mut [f32],
    dc: &'s mut [f32],
}

/// A block of batch rows through every step backwards, on one thread: the gradients reaching
/// its state and its part of every step's buffers.
struct BackBlock<'s> {
    dh: &'s mut [f32],
    dc: &'s mut [f32],
    resets: Option<Vec<&'s [bool]>>,
    dy: Vec<&'s [f32]>,
    acts: Vec<&'s [f32]>,
    tanh_c: Vec<&'s [f32]>,
    c_prev: Vec<&'s [f32]>,
    dgates: Vec<&'s mut [f32]>,
}

impl BackBlock<'_> {
    /// Runs every step backwards on the block's rows.
    fn backward(mut self, h: usize, w_hh_t: &[f32]) {
        let no_resets = vec![false; self.dh.len() / h.max(1)];
        for t in (0..self.dgates.len()).rev() {
            BackRows {
                resets: self.resets.as_ref().map_or(&no_resets[..], |r| r[t]),
                dy: self.dy[t],
                acts: self.acts[t],
                tanh_c: self.tanh_c[t],
                c_prev: self.c_prev[t],
                dgates: &mut *self.dgates[t],
                dh: &mut *self.dh,
                dc: &mut *self.dc,
            }
            .backward(h, w_hh_t);
        }
    }
}

impl BackRows<'_> {
    /// Runs the step backwards on these rows: gate gradients from `dy + dh` and `dc`, then
    /// `dc ← dc·f` and `dh ← dgates W_hh` (`w_hh_t`: `W_hh` as `[4H, H]`), both zeroed on reset
    /// rows.
    fn backward(self, h: usize, w_hh_t: &[f32]) {
        let g4 = 4 * h;
        pulp::Arch::new().dispatch(GateBackward {
            h,
            dy: self.dy,
            acts: self.acts,
            tanh_c: self.tanh_c,
            c_prev: self.c_prev,
            dgates: &mut *self.dgates,
            dh: self.dh,
            dc: &mut *self.dc,
        });
        let (dh, dc) = (self.dh, self.dc);
        matmul_serial(dh, false, Mat::new(self.dgates, g4), Mat::new(w_hh_t, h));
        for (row, _) in self.resets.iter().enumerate().filter(|(_, &r)| r) {
            dh[row * h..(row + 1) * h].fill(0.0);
            dc[row * h..(row + 1) * h].fill(0.0);
        }
    }
}

/// A forward step's element-wise part on a row block: activates the gates (holding
/// `x W_ih + h W_hh + b`) and updates `c`, `tanh(c)` and `h` (into `out`). A [`pulp::WithSimd`]
/// so that it is compiled for the CPU's vector width. (Also the modular cells' step: their
/// `[Bc·n, 4d]` gates are rows of width `d`.)
pub(crate) struct GateForward<'a> {
    /// Hidden width of a row.
    pub h: usize,
    /// `[rows, 4h]`: pre-activations in, activations out.
    pub gates: &'a mut [f32],
    /// `[rows, h]`: `c_{t−1}` in, `c_t` out.
    pub c: &'a mut [f32],
    /// `[rows, h]`: `h_t`.
    pub out: &'a mut [f32],
    /// `[rows, h]`: `tanh(c_t)`.
    pub tanh_c: &'a mut [f32],
    /// Biases added to the pre-activations first, `4h` per row cycling over the rows (a
    /// modular layer's `[n, 4d]`, row `r` being module `r mod n`), or empty when they already
    /// hold them.
    pub bias: &'a [f32],
}

impl pulp::WithSimd for GateForward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let h = self.h;
        let biases = self.bias.len() / (4 * h).max(1);
        for (row, gr) in self.gates.chunks_exact_mut(4 * h).enumerate() {
            if biases > 0 {
                let b = &self.bias[(row % biases) * 4 * h..][..4 * h];
                gr.iter_mut().zip(b).for_each(|(g, b)| *g += b);
            }
            let (ifg, o) = gr.split_at_mut(3 * h);
            let (if_, gg) = ifg.split_at_mut(2 * h);
            sigmoid_slice(if_);
            tanh_slice(gg);
            sigmoid_slice(o);
            let (i, f) = if_.split_at(h);
            let span = row * h..(row + 1) * h;
            let c = &mut self.c[span.clone()];
            let (hr, tc) = (&mut self.out[span.clone()], &mut self.tanh_c[span]);
            for j in 0..h {
                c[j] = f[j] * c[j] + i[j] * gg[j];
                tc[j] = tanh(c[j]);
                hr[j] = o[j] * tc[j];
            }
        }
    }
}

/// A backward step's element-wise part on a row block: gate gradients from `dy + dh` and `dc`,
/// and `dc ← dc·f`. A [`pulp::WithSimd`] so that it is compiled for the CPU's vector width.
struct GateBackward<'a> {
    h: usize,
    dy: &'a [f32],
    acts: &'a [f32],
    tanh_c: &'a [f32],
    c_prev: &'a [f32],
    dgates: &'a mut [f32],
    dh: &'a [f32],
    dc: &'a mut [f32],
}

impl pulp::WithSimd for GateBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let h = self.h;
        let (dy, tc, cp, dh, dc) = (self.dy, self.tanh_c, self.c_prev, self.dh, self.dc);
        let blocks = self
            .acts
            .chunks_exact(4 * h)
            .zip(self.dgates.chunks_exact_mut(4 * h));
        for (row, (a, gr)) in blocks.enumerate() {
            let (i, rest) = a.split_at(h);
            let (f, rest) = rest.split_at(h);
            let (g, o) = rest.split_at(h);
            let (di, rest) = gr.split_at_mut(h);
            let (df, rest) = rest.split_at_mut(h);
            let (dgg, do_) = rest.split_at_mut(h);
            let k0 = row * h;
            for j in 0..h {
                let k = k0 + j;
                let gates = [i[j], f[j], g[j], o[j]];
                let [gi, gf, gg, go, dcp] =
                    unit_grads([dy[k] + dh[k], dc[k]], gates, [tc[k], cp[k]]);
                (di[j], df[j], dgg[j], do_[j], dc[k]) = (gi, gf, gg, go, dcp);
            }
        }
    }
}

/// One unit's LSTM backward (the fused LSTM's and the modular LSTM cells'): from the gradients
/// `[dh, dc]` reaching `h_t` and `c_t`, the activated gates `i, f, g, o` and `[tanh(c_t),
/// c_{t−1}]`, the gradients of the four gates' pre-activations and of `c_{t−1}`.
#[inline(always)]
pub(crate) fn unit_grads(
    [dh, dc]: [f32; 2],
    [i, f, g, o]: [f32; 4],
    [tc, cp]: [f32; 2],
) -> [f32; 5] {
    let dct = dc + dh * o * (1.0 - tc * tc);
    [
        dct * g * i * (1.0 - i),
        dct * cp * f * (1.0 - f),
        dct * i * (1.0 - g * g),
        dh * tc * o * (1.0 - o),
        dct * f,
    ]
}

/// The fused LSTM as a [`HostOp`] with inputs `x [T·B, E]`, `h0 [B, H]`, `c0 [B, H]`,
/// `W_ihᵀ [E, 4H]`, `W_hhᵀ [H, 4H]`, `bias [1, 4H]`; output `z` of [`forward`] (`x`'s and `z`'s
/// step rows in [`Dims::layout`]'s order).
pub(crate) struct LstmOp {
    /// Sizes.
    pub dims: Dims,
    /// Time-major reset flags, if any row resets inside the sequence.
    pub resets: Option<Vec<bool>>,
}

impl HostOp<6> for LstmOp {
    type Tape = Tape;

    fn forward(&self, inputs: [Vec<f32>; 6], keep_tape: bool) -> (Vec<f32>, Option<Tape>) {
        let [x, h0, c0, w_ih, w_hh, bias] = inputs;
        let (d, seq) = (self.dims, self.dims.seq());
        let inputs = Inputs {
            x: seq.time_major_vec(x, d.input),
            h0,
            c0,
            w_ih,
            w_hh,
            bias,
            resets: self.resets.as_deref(),
        };
        let (mut z, tape) = on_pool(|| forward(d, inputs, keep_tape));
        seq.reorder_from_time_major(&mut z, d.hidden);
        (z, tape)
    }

    fn backward(tape: &Tape, grad: &[f32], wanted: Wanted) -> [Option<Vec<f32>>; 6] {
        let (d, seq) = (tape.dims, tape.dims.seq());
        let g = seq.on_time_major(grad, d.hidden, |grad| {
            on_pool(|| backward(tape, grad, wanted))
        });
        let mut dx = g.x;
        if let Some(dx) = dx.as_mut() {
            seq.reorder_from_time_major(dx, d.input);
        }
        [dx, g.h0, g.c0, g.w_ih, g.w_hh, g.bias]
    }
}

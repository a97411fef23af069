//! Fused GRU sequence on host f32 buffers: forward with a saved tape, and backpropagation
//! through time with the weight gradients as single large matmuls.
//!
//! Layout is time-major (row `t·B + b`), gate order PyTorch's `r, z, n`, weights `W_ihᵀ [E, 3H]`
//! and `W_hhᵀ [H, 3H]` with separate biases: `n = tanh(gi_n + r ⊙ (h W_hn + b_hn))`.

use crate::host_math::{
    for_each_block, give, matmul, matmul_serial, on_pool, sigmoid, step_blocks, step_blocks_mut,
    step_chunk_rows, take_overwritten, take_repeated, take_transposed, tanh, Mat,
};
use crate::host_op::HostOp;
use crate::lstm_kernel::Dims;

/// What the backward pass needs, saved by the forward pass.
pub(crate) struct Tape {
    dims: Dims,
    x: Vec<f32>,
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    resets: Option<Vec<bool>>,
    /// Activated gates `[T·B, 3H]`: `r, z, n`.
    acts: Vec<f32>,
    /// The hidden pre-activation of `n`, `h W_hn + b_hn`, `[T·B, H]`.
    gh_n: Vec<f32>,
    /// `h_{t−1}` after resets, `[T·B, H]`.
    h_prev: Vec<f32>,
}

impl Drop for Tape {
    fn drop(&mut self) {
        for v in [
            &mut self.x,
            &mut self.w_ih,
            &mut self.w_hh,
            &mut self.acts,
            &mut self.gh_n,
            &mut self.h_prev,
        ] {
            give(std::mem::take(v));
        }
    }
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GruTape").field("dims", &self.dims).finish()
    }
}

/// One forward step's buffers for a block of batch rows.
struct StepRows<'s> {
    /// Rows whose state is zeroed before the step.
    resets: &'s [bool],
    /// Input pre-activations `x W_ih + b_ih` `[rows, 3H]`, replaced by the activated `r, z, n`.
    gates: &'s mut [f32],
    /// Scratch for the hidden pre-activations `h W_hh + b_hh` `[rows, 3H]`.
    gh: &'s mut [f32],
    /// `h`, updated in place.
    h: &'s mut [f32],
    /// The step's output `h_t`.
    out: &'s mut [f32],
    /// Tape: `h_{t−1}` after resets, and `h W_hn + b_hn`.
    h_prev: &'s mut [f32],
    gh_n: &'s mut [f32],
}

/// A block of batch rows through every step, on one thread: its running state, its scratch and
/// its part of every step's buffers (without a tape, `h_prev` and `gh_n` hold one step's
/// scratch, reused).
struct ForwardBlock<'s> {
    h: &'s mut [f32],
    gh: &'s mut [f32],
    resets: Option<Vec<&'s [bool]>>,
    gates: Vec<&'s mut [f32]>,
    out: Vec<&'s mut [f32]>,
    h_prev: Vec<&'s mut [f32]>,
    gh_n: Vec<&'s mut [f32]>,
}

impl ForwardBlock<'_> {
    /// Runs every step on the block's rows.
    fn forward(mut self, h: usize, w_hh: &[f32], b_hh: &[f32]) {
        let no_resets = vec![false; self.h.len() / h.max(1)];
        for t in 0..self.gates.len() {
            let k = t.min(self.h_prev.len() - 1);
            StepRows {
                resets: self.resets.as_ref().map_or(&no_resets[..], |r| r[t]),
                gates: &mut *self.gates[t],
                gh: &mut *self.gh,
                h: &mut *self.h,
                out: &mut *self.out[t],
                h_prev: &mut *self.h_prev[k],
                gh_n: &mut *self.gh_n[k],
            }
            .forward(h, w_hh, b_hh);
        }
    }
}

impl StepRows<'_> {
    /// Runs the step on these rows: resets, the tape copy of `h`, `h W_hh + b_hh`, the gates and
    /// the new `h` (also written to `out`).
    fn forward(self, h: usize, w_hh: &[f32], b_hh: &[f32]) {
        let g3 = 3 * h;
        for (row, _) in self.resets.iter().enumerate().filter(|(_, &r)| r) {
            self.h[row * h..(row + 1) * h].fill(0.0);
        }
        self.h_prev.copy_from_slice(self.h);
        for row in self.gh.chunks_exact_mut(g3) {
            row.copy_from_slice(b_hh);
        }
        matmul_serial(self.gh, true, Mat::new(self.h, h), Mat::new(w_hh, g3));
        pulp::Arch::new().dispatch(GateForward {
            h,
            gates: self.gates,
            gh: self.gh,
            h_prev: self.h_prev,
            out: &mut *self.out,
            gh_n: self.gh_n,
        });
        self.h.copy_from_slice(self.out);
    }
}

/// A forward step's element-wise part on a row block (see [`StepRows`]), compiled for the CPU's
/// vector width. (Also the modular GRU cells' step: their `[Bc·n, 3d]` gates are rows of width
/// `d`.)
pub(crate) struct GateForward<'a> {
    /// Hidden width of a row.
    pub h: usize,
    /// `[rows, 3h]`: input pre-activations `x W_ih + b_ih` in, activated `r, z, n` out.
    pub gates: &'a mut [f32],
    /// `[rows, 3h]`: hidden pre-activations `h W_hh + b_hh`.
    pub gh: &'a [f32],
    /// `[rows, h]`: `h_{t−1}`.
    pub h_prev: &'a [f32],
    /// `[rows, h]`: `h_t`.
    pub out: &'a mut [f32],
    /// `[rows, h]`: `h W_hn + b_hn` (tape).
    pub gh_n: &'a mut [f32],
}

impl pulp::WithSimd for GateForward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (h, g3) = (self.h, 3 * self.h);
        let rows = self
            .gates
            .chunks_exact_mut(g3)
            .zip(self.gh.chunks_exact(g3));
        for (row, (gr, hr)) in rows.enumerate() {
            let (rz, n) = gr.split_at_mut(2 * h);
            for (a, &c) in rz.iter_mut().zip(&hr[..2 * h]) {
                *a = sigmoid(*a + c);
            }
            let (r, z) = rz.split_at(h);
            let hn = &hr[2 * h..];
            let span = row * h..(row + 1) * h;
            let (hp, or) = (&self.h_prev[span.clone()], &mut self.out[span.clone()]);
            new_state(n, or, r, z, hn, hp);
            self.gh_n[span].copy_from_slice(hn);
        }
    }
}

/// One row's `n = tanh(n + r ⊙ hn)` (in place) and `h_t = n + z ⊙ (h_{t−1} − n)` into `out`.
/// A function of its own, so that its slices are known not to overlap and the loop vectorises
/// (inline, its six pointers needed more run-time overlap checks than LLVM makes).
#[inline(always)]
fn new_state(n: &mut [f32], out: &mut [f32], r: &[f32], z: &[f32], hn: &[f32], hp: &[f32]) {
    let h = n.len();
    let (out, r, z, hn, hp) = (&mut out[..h], &r[..h], &z[..h], &hn[..h], &hp[..h]);
    for j in 0..h {
        n[j] = tanh(n[j] + r[j] * hn[j]);
        out[j] = n[j] + z[j] * (hp[j] - n[j]);
    }
}

/// One row's pre-activation gradients (`dgi`: `r, z, n` blocks, `dgh`: the same with `r ⊙` on
/// `n`) and `dh_direct = dh ⊙ z`, from the activations `r, z, n`, `h_{t−1}`, `h W_hn + b_hn` and
/// `dy`, `dh`. A function of its own for the reason of [`new_state`].
#[inline(always)]
fn pre_activation_grads(
    [r, z, n]: [&[f32]; 3],
    [hp, hn]: [&[f32]; 2],
    [dy, dh]: [&[f32]; 2],
    [gi_r, gi_z, gi_n, gh_r, gh_z, gh_n]: [&mut [f32]; 6],
    dd: &mut [f32],
) {
    let h = dd.len();
    let (r, z, n, hp, hn, dy, dh) = (
        &r[..h],
        &z[..h],
        &n[..h],
        &hp[..h],
        &hn[..h],
        &dy[..h],
        &dh[..h],
    );
    let (gi_r, gi_z, gi_n) = (&mut gi_r[..h], &mut gi_z[..h], &mut gi_n[..h]);
    let (gh_r, gh_z, gh_n) = (&mut gh_r[..h], &mut gh_z[..h], &mut gh_n[..h]);
    for j in 0..h {
        let dhj = dy[j] + dh[j];
        let [dpre_r, dpre_z, dpre_n, direct] = unit_grads(dhj, [r[j], z[j], n[j]], hp[j], hn[j]);
        gi_r[j] = dpre_r;
        gi_z[j] = dpre_z;
        gi_n[j] = dpre_n;
        gh_r[j] = dpre_r;
        gh_z[j] = dpre_z;
        gh_n[j] = dpre_n * r[j];
        dd[j] = direct;
    }
}

/// One unit's GRU backward (the fused GRU's and the modular GRU cells'): from the gradient `dh`
/// reaching its output, its activations `r, z, n`, `h_{t−1}` and `h W_hn + b_hn`, the gradients
/// of the `r, z, n` pre-activations (the hidden side's `n` part is `dn·r`) and `dh·z`, the
/// direct part of `h_{t−1}`'s gradient.
#[inline(always)]
pub(crate) fn unit_grads(dh: f32, [r, z, n]: [f32; 3], hp: f32, hn: f32) -> [f32; 4] {
    let dpre_n = dh * (1.0 - z) * (1.0 - n * n);
    let dpre_z = dh * (hp - n) * z * (1.0 - z);
    let dpre_r = dpre_n * hn * r * (1.0 - r);
    [dpre_r, dpre_z, dpre_n, dh * z]
}

/// One backward step's buffers for a block of batch rows.
struct BackRows<'s> {
    /// Rows whose state was zeroed before the step (their `dh` stops there).
    resets: &'s [bool],
    /// Tape: activated gates, `h_{t−1}` and `h W_hn + b_hn`.
    acts: &'s [f32],
    h_prev: &'s [f32],
    gh_n: &'s [f32],
    /// Gradient of the step's output.
    dy: &'s [f32],
    /// Gradients of the input and hidden pre-activations, written.
    dgi: &'s mut [f32],
    dgh: &'s mut [f32],
    /// Gradient reaching `h_t` from later steps; left holding that of `h_{t−1}`.
    dh: &'s mut [f32],
    /// Scratch: the part of `dh_{t−1}` through `z ⊙ h_{t−1}`.
    dh_direct: &'s mut [f32],
}

/// A block of batch rows through every step backwards, on one thread: the gradient reaching
/// its state, its scratch and its part of every step's buffers.
struct BackBlock<'s> {
    dh: &'s mut [f32],
    dh_direct: &'s mut [f32],
    resets: Option<Vec<&'s [bool]>>,
    acts: Vec<&'s [f32]>,
    h_prev: Vec<&'s [f32]>,
    gh_n: Vec<&'s [f32]>,
    dy: Vec<&'s [f32]>,
    dgi: Vec<&'s mut [f32]>,
    dgh: Vec<&'s mut [f32]>,
}

impl BackBlock<'_> {
    /// Runs every step backwards on the block's rows.
    fn backward(mut self, h: usize, w_hh_t: &[f32]) {
        let no_resets = vec![false; self.dh.len() / h.max(1)];
        for t in (0..self.dgi.len()).rev() {
            BackRows {
                resets: self.resets.as_ref().map_or(&no_resets[..], |r| r[t]),
                acts: self.acts[t],
                h_prev: self.h_prev[t],
                gh_n: self.gh_n[t],
                dy: self.dy[t],
                dgi: &mut *self.dgi[t],
                dgh: &mut *self.dgh[t],
                dh: &mut *self.dh,
                dh_direct: &mut *self.dh_direct,
            }
            .backward(h, w_hh_t);
        }
    }
}

impl BackRows<'_> {
    /// Runs the step backwards on these rows: pre-activation gradients from `dy + dh`, then
    /// `dh ← dh_direct + dgh W_hh` (`w_hh_t`: `W_hh` as `[3H, H]`), zeroed on reset rows.
    fn backward(self, h: usize, w_hh_t: &[f32]) {
        let g3 = 3 * h;
        pulp::Arch::new().dispatch(GateBackward {
            h,
            acts: self.acts,
            h_prev: self.h_prev,
            gh_n: self.gh_n,
            dy: self.dy,
            dh: self.dh,
            dgi: self.dgi,
            dgh: &mut *self.dgh,
            dh_direct: &mut *self.dh_direct,
        });
        self.dh.copy_from_slice(self.dh_direct);
        matmul_serial(self.dh, true, Mat::new(self.dgh, g3), Mat::new(w_hh_t, h));
        for (row, _) in self.resets.iter().enumerate().filter(|(_, &r)| r) {
            self.dh[row * h..(row + 1) * h].fill(0.0);
        }
    }
}

/// A backward step's element-wise part on a row block (see [`BackRows`]), compiled for the
/// CPU's vector width.
struct GateBackward<'a> {
    h: usize,
    acts: &'a [f32],
    h_prev: &'a [f32],
    gh_n: &'a [f32],
    dy: &'a [f32],
    dh: &'a [f32],
    dgi: &'a mut [f32],
    dgh: &'a mut [f32],
    dh_direct: &'a mut [f32],
}

impl pulp::WithSimd for GateBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (h, g3) = (self.h, 3 * self.h);
        let blocks = self
            .acts
            .chunks_exact(g3)
            .zip(self.dgi.chunks_exact_mut(g3));
        let blocks = blocks.zip(self.dgh.chunks_exact_mut(g3));
        for (row, ((a, gir), ghr)) in blocks.enumerate() {
            let (r, rest) = a.split_at(h);
            let (z, n) = rest.split_at(h);
            let span = row * h..(row + 1) * h;
            let (gi_r, rest) = gir.split_at_mut(h);
            let (gi_z, gi_n) = rest.split_at_mut(h);
            let (gh_r, rest) = ghr.split_at_mut(h);
            let (gh_z, gh_n) = rest.split_at_mut(h);
            pre_activation_grads(
                [r, z, n],
                [&self.h_prev[span.clone()], &self.gh_n[span.clone()]],
                [&self.dy[span.clone()], &self.dh[span.clone()]],
                [gi_r, gi_z, gi_n, gh_r, gh_z, gh_n],
                &mut self.dh_direct[span],
            );
        }
    }
}

/// The fused GRU as a [`HostOp`] with inputs `x [T·B, E]`, `h0 [B, H]`, `W_ihᵀ [E, 3H]`,
/// `W_hhᵀ [H, 3H]`, `b_ih [1, 3H]`, `b_hh [1, 3H]`; output `h_t` of every step, `[T·B, H]`
/// (`x`'s and the output's rows in [`Dims::layout`]'s order).
pub(crate) struct GruOp {
    /// Sizes.
    pub dims: Dims,
    /// Time-major reset flags, if any row resets inside the sequence.
    pub resets: Option<Vec<bool>>,
}

impl GruOp {
    /// [`HostOp::forward`] over time-major rows.
    fn forward_time_major(
        &self,
        inputs: [Vec<f32>; 6],
        keep_tape: bool,
    ) -> (Vec<f32>, Option<Tape>) {
        on_pool(|| {
            let [x, h0, w_ih, w_hh, b_ih, b_hh] = inputs;
            let d = self.dims;
            let (tn, b, e, h) = (d.steps, d.batch, d.input, d.hidden);
            let (g3, bh) = (3 * h, b * h);
            assert_eq!(x.len(), tn * b * e, "gru kernel: x");
            assert_eq!(h0.len(), bh, "gru kernel: h0");
            assert!(
                w_ih.len() == e * g3 && w_hh.len() == h * g3,
                "gru kernel: weights"
            );
            assert!(b_ih.len() == g3 && b_hh.len() == g3, "gru kernel: biases");
            let mut gi = take_repeated(&b_ih, tn * b);
            matmul(&mut gi, true, Mat::new(&x, e), Mat::new(&w_ih, g3));
            // Without a tape, one step's worth of scratch stands in for it.
            let tape_len = if keep_tape { tn * bh } else { bh };
            // Every step writes its rows of these whole (no pass zeroing them first).
            let (mut gh_n, mut h_prev) = (take_overwritten(tape_len), take_overwritten(tape_len));
            let mut out = vec![0.0; tn * bh];
            let mut hs = h0;
            let rows = step_chunk_rows(b, h * g3);
            // One step's `h W_hh + b_hh`, per block.
            let mut gh = take_overwritten(b * g3);
            {
                let mut gates_b = step_blocks_mut(&mut gi, b, rows, g3).into_iter();
                let mut out_b = step_blocks_mut(&mut out, b, rows, h).into_iter();
                let mut h_prev_b = step_blocks_mut(&mut h_prev, b, rows, h).into_iter();
                let mut gh_n_b = step_blocks_mut(&mut gh_n, b, rows, h).into_iter();
                let mut resets_b = self
                    .resets
                    .as_deref()
                    .map(|r| step_blocks(r, b, rows, 1).into_iter());
                let blocks: Vec<ForwardBlock> = hs
                    .chunks_mut(rows * h)
                    .zip(gh.chunks_mut(rows * g3))
                    .map(|(h, gh)| ForwardBlock {
                        h,
                        gh,
                        resets: resets_b.as_mut().and_then(Iterator::next),
                        gates: gates_b.next().unwrap_or_default(),
                        out: out_b.next().unwrap_or_default(),
                        h_prev: h_prev_b.next().unwrap_or_default(),
                        gh_n: gh_n_b.next().unwrap_or_default(),
                    })
                    .collect();
                for_each_block(blocks, |block| block.forward(h, &w_hh, &b_hh));
            }
            for v in [hs, gh, b_ih, b_hh] {
                give(v);
            }
            if !keep_tape {
                for v in [x, w_ih, w_hh, gi, gh_n, h_prev] {
                    give(v);
                }
                return (out, None);
            }
            let tape = Tape {
                dims: d,
                x,
                w_ih,
                w_hh,
                resets: self.resets.clone(),
                acts: gi,
                gh_n,
                h_prev,
            };
            (out, Some(tape))
        })
    }

    /// [`HostOp::backward`] over time-major rows.
    fn backward_time_major(tape: &Tape, dy: &[f32], wanted: [bool; 6]) -> [Option<Vec<f32>>; 6] {
        on_pool(|| {
            let d = tape.dims;
            let (tn, b, e, h) = (d.steps, d.batch, d.input, d.hidden);
            let (g3, bh) = (3 * h, b * h);
            assert_eq!(dy.len(), tn * bh, "gru kernel: dy");
            // Every step writes its rows of these whole.
            let mut dgi = take_overwritten(tn * b * g3);
            let mut dgh = take_overwritten(tn * b * g3);
            let mut dh = vec![0.0; bh];
            let mut dh_direct = take_overwritten(bh);
            let rows = step_chunk_rows(b, h * g3);
            // Dense for the per-step product, as the LSTM kernel's.
            let w_hh_t = take_transposed(&tape.w_hh, h, g3);
            {
                let mut acts_b = step_blocks(&tape.acts, b, rows, g3).into_iter();
                let mut h_prev_b = step_blocks(&tape.h_prev, b, rows, h).into_iter();
                let mut gh_n_b = step_blocks(&tape.gh_n, b, rows, h).into_iter();
                let mut dy_b = step_blocks(dy, b, rows, h).into_iter();
                let mut dgi_b = step_blocks_mut(&mut dgi, b, rows, g3).into_iter();
                let mut dgh_b = step_blocks_mut(&mut dgh, b, rows, g3).into_iter();
                let mut resets_b = tape
                    .resets
                    .as_deref()
                    .map(|r| step_blocks(r, b, rows, 1).into_iter());
                let blocks: Vec<BackBlock> = dh
                    .chunks_mut(rows * h)
                    .zip(dh_direct.chunks_mut(rows * h))
                    .map(|(dh, dh_direct)| BackBlock {
                        dh,
                        dh_direct,
                        resets: resets_b.as_mut().and_then(Iterator::next),
                        acts: acts_b.next().unwrap_or_default(),
                        h_prev: h_prev_b.next().unwrap_or_default(),
                        gh_n: gh_n_b.next().unwrap_or_default(),
                        dy: dy_b.next().unwrap_or_default(),
                        dgi: dgi_b.next().unwrap_or_default(),
                        dgh: dgh_b.next().unwrap_or_default(),
                    })
                    .collect();
                for_each_block(blocks, |block| block.backward(h, &w_hh_t));
            }
            give(dh_direct);
            give(w_hh_t);
            let [want_x, want_h0, want_ih, want_hh, want_bih, want_bhh] = wanted;
            let col_sums = |m: &[f32]| {
                let mut s = vec![0.0; g3];
                for row in m.chunks_exact(g3) {
                    for (acc, v) in s.iter_mut().zip(row) {
                        *acc += v;
                    }
                }
                s
            };
            let grads = [
                want_x.then(|| {
                    let mut dx = vec![0.0; tn * b * e];
                    matmul(
                        &mut dx,
                        false,
                        Mat::new(&dgi, g3),
                        Mat::new(&tape.w_ih, g3).t(),
                    );
                    dx
                }),
                want_h0.then(|| dh.clone()),
                want_ih.then(|| {
                    let mut dw = vec![0.0; e * g3];
                    matmul(&mut dw, false, Mat::new(&tape.x, e).t(), Mat::new(&dgi, g3));
                    dw
                }),
                want_hh.then(|| {
                    let mut dw = vec![0.0; h * g3];
                    matmul(
                        &mut dw,
                        false,
                        Mat::new(&tape.h_prev, h).t(),
                        Mat::new(&dgh, g3),
                    );
                    dw
                }),
                want_bih.then(|| col_sums(&dgi)),
                want_bhh.then(|| col_sums(&dgh)),
            ];
            give(dgi);
            give(dgh);
            grads
        })
    }
}

impl HostOp<6> for GruOp {
    type Tape = Tape;

    fn forward(&self, mut inputs: [Vec<f32>; 6], keep_tape: bool) -> (Vec<f32>, Option<Tape>) {
        let (d, seq) = (self.dims, self.dims.seq());
        inputs[0] = seq.time_major_vec(std::mem::take(&mut inputs[0]), d.input);
        let (mut y, tape) = self.forward_time_major(inputs, keep_tape);
        seq.reorder_from_time_major(&mut y, d.hidden);
        (y, tape)
    }

    fn backward(tape: &Tape, dy: &[f32], wanted: [bool; 6]) -> [Option<Vec<f32>>; 6] {
        let (d, seq) = (tape.dims, tape.dims.seq());
        let mut grads = seq.on_time_major(dy, d.hidden, |dy| {
            Self::backward_time_major(tape, dy, wanted)
        });
        if let Some(dx) = grads[0].as_mut() {
            seq.reorder_from_time_major(dx, d.input);
        }
        grads
    }
}

//! Fused LSTM sequence on host f32 buffers: forward with a saved tape, and backpropagation
//! through time with the weight gradients as single large matmuls (cuDNN's scheme).
//!
//! Layout is time-major: row `t·B + b` of a `[T·B, ·]` buffer is batch row `b` at step `t`.
//! Gate order is PyTorch's `i, f, g, o`; weights are `W_ihᵀ [E, 4H]`, `W_hhᵀ [H, 4H]`.

use crate::host_math::{give, matmul, sigmoid_slice, take_zeroed, tanh, tanh_slice, Mat};
use crate::host_op::HostOp;

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
    let mut gates = take_zeroed(tn * b * g4);
    for row in gates.chunks_exact_mut(g4) {
        row.copy_from_slice(&inp.bias);
    }
    matmul(
        &mut gates,
        true,
        Mat::new(&inp.x, e),
        Mat::new(&inp.w_ih, g4),
    );

    let mut z = vec![0.0; (tn + 1) * bh];
    let tape_len = if keep_tape { tn * bh } else { 0 };
    let (mut h_prev, mut c_prev) = (take_zeroed(tape_len), take_zeroed(tape_len));
    let mut tanh_c = take_zeroed(tape_len);
    let (mut hs, mut cs) = (inp.h0, inp.c0);
    let mut scratch = vec![0.0; h];
    for t in 0..tn {
        if let Some(r) = inp.resets {
            for (row, _) in r[t * b..(t + 1) * b].iter().enumerate().filter(|(_, &v)| v) {
                hs[row * h..(row + 1) * h].fill(0.0);
                cs[row * h..(row + 1) * h].fill(0.0);
            }
        }
        if keep_tape {
            h_prev[t * bh..(t + 1) * bh].copy_from_slice(&hs);
            c_prev[t * bh..(t + 1) * bh].copy_from_slice(&cs);
        }
        let g = &mut gates[t * b * g4..(t + 1) * b * g4];
        matmul(g, true, Mat::new(&hs, h), Mat::new(&inp.w_hh, g4));
        let out = &mut z[t * bh..(t + 1) * bh];
        for row in 0..b {
            let gr = &mut g[row * g4..(row + 1) * g4];
            let (ifg, o) = gr.split_at_mut(3 * h);
            let (if_, gg) = ifg.split_at_mut(2 * h);
            sigmoid_slice(if_);
            tanh_slice(gg);
            sigmoid_slice(o);
            let (i, f) = if_.split_at(h);
            let c = &mut cs[row * h..(row + 1) * h];
            let hr = &mut out[row * h..(row + 1) * h];
            let tc = match keep_tape {
                true => &mut tanh_c[t * bh + row * h..t * bh + (row + 1) * h],
                false => &mut scratch[..],
            };
            for j in 0..h {
                c[j] = f[j] * c[j] + i[j] * gg[j];
                tc[j] = tanh(c[j]);
                hr[j] = o[j] * tc[j];
            }
        }
        hs.copy_from_slice(out);
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

/// Backpropagation through time: `dz` is the gradient of [`forward`]'s `z`.
pub(crate) fn backward(tape: &Tape, dz: &[f32], wanted: Wanted) -> Grads {
    let d = tape.dims;
    let (tn, b, e, h) = (d.steps, d.batch, d.input, d.hidden);
    let (g4, bh) = (4 * h, b * h);
    assert_eq!(dz.len(), (tn + 1) * bh, "lstm kernel: dz");
    let mut dgates = take_zeroed(tn * b * g4);
    let mut dh = vec![0.0; bh];
    let mut dc = dz[tn * bh..].to_vec();
    for t in (0..tn).rev() {
        let dy = &dz[t * bh..(t + 1) * bh];
        let acts = &tape.acts[t * b * g4..(t + 1) * b * g4];
        let dg = &mut dgates[t * b * g4..(t + 1) * b * g4];
        let tc = &tape.tanh_c[t * bh..(t + 1) * bh];
        let cp = &tape.c_prev[t * bh..(t + 1) * bh];
        for row in 0..b {
            let a = &acts[row * g4..(row + 1) * g4];
            let (i, rest) = a.split_at(h);
            let (f, rest) = rest.split_at(h);
            let (g, o) = rest.split_at(h);
            let gr = &mut dg[row * g4..(row + 1) * g4];
            let (di, rest) = gr.split_at_mut(h);
            let (df, rest) = rest.split_at_mut(h);
            let (dgg, do_) = rest.split_at_mut(h);
            let k0 = row * h;
            for j in 0..h {
                let k = k0 + j;
                let dhk = dy[k] + dh[k];
                let tck = tc[k];
                let dck = dc[k] + dhk * o[j] * (1.0 - tck * tck);
                do_[j] = dhk * tck * o[j] * (1.0 - o[j]);
                di[j] = dck * g[j] * i[j] * (1.0 - i[j]);
                dgg[j] = dck * i[j] * (1.0 - g[j] * g[j]);
                df[j] = dck * cp[k] * f[j] * (1.0 - f[j]);
                dc[k] = dck * f[j];
            }
        }
        matmul(
            &mut dh,
            false,
            Mat::new(dg, g4),
            Mat::new(&tape.w_hh, g4).t(),
        );
        if let Some(r) = &tape.resets {
            for (row, _) in r[t * b..(t + 1) * b].iter().enumerate().filter(|(_, &v)| v) {
                dh[row * h..(row + 1) * h].fill(0.0);
                dc[row * h..(row + 1) * h].fill(0.0);
            }
        }
    }
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

/// The fused LSTM as a [`HostOp`] with inputs `x [T·B, E]`, `h0 [B, H]`, `c0 [B, H]`,
/// `W_ihᵀ [E, 4H]`, `W_hhᵀ [H, 4H]`, `bias [1, 4H]`; output `z` of [`forward`].
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
        let inputs = Inputs {
            x,
            h0,
            c0,
            w_ih,
            w_hh,
            bias,
            resets: self.resets.as_deref(),
        };
        forward(self.dims, inputs, keep_tape)
    }

    fn backward(tape: &Tape, grad: &[f32], wanted: Wanted) -> [Option<Vec<f32>>; 6] {
        let g = backward(tape, grad, wanted);
        [g.x, g.h0, g.c0, g.w_ih, g.w_hh, g.bias]
    }
}

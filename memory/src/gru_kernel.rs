//! Fused GRU sequence on host f32 buffers: forward with a saved tape, and backpropagation
//! through time with the weight gradients as single large matmuls.
//!
//! Layout is time-major (row `t·B + b`), gate order PyTorch's `r, z, n`, weights `W_ihᵀ [E, 3H]`
//! and `W_hhᵀ [H, 3H]` with separate biases: `n = tanh(gi_n + r ⊙ (h W_hn + b_hn))`.

use crate::host_math::{give, matmul, sigmoid, take_zeroed, tanh, Mat};
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

/// The fused GRU as a [`HostOp`] with inputs `x [T·B, E]`, `h0 [B, H]`, `W_ihᵀ [E, 3H]`,
/// `W_hhᵀ [H, 3H]`, `b_ih [1, 3H]`, `b_hh [1, 3H]`; output `h_t` of every step, `[T·B, H]`.
pub(crate) struct GruOp {
    /// Sizes.
    pub dims: Dims,
    /// Time-major reset flags, if any row resets inside the sequence.
    pub resets: Option<Vec<bool>>,
}

impl HostOp<6> for GruOp {
    type Tape = Tape;

    fn forward(&self, inputs: [Vec<f32>; 6], keep_tape: bool) -> (Vec<f32>, Option<Tape>) {
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
        let mut gi = take_zeroed(tn * b * g3);
        for row in gi.chunks_exact_mut(g3) {
            row.copy_from_slice(&b_ih);
        }
        matmul(&mut gi, true, Mat::new(&x, e), Mat::new(&w_ih, g3));
        let tape_len = if keep_tape { tn * bh } else { 0 };
        let (mut gh_n, mut h_prev) = (take_zeroed(tape_len), take_zeroed(tape_len));
        let mut out = vec![0.0; tn * bh];
        let mut hs = h0;
        let mut gh = take_zeroed(b * g3);
        for t in 0..tn {
            if let Some(r) = &self.resets {
                for (row, _) in r[t * b..(t + 1) * b].iter().enumerate().filter(|(_, &v)| v) {
                    hs[row * h..(row + 1) * h].fill(0.0);
                }
            }
            if keep_tape {
                h_prev[t * bh..(t + 1) * bh].copy_from_slice(&hs);
            }
            for row in gh.chunks_exact_mut(g3) {
                row.copy_from_slice(&b_hh);
            }
            matmul(&mut gh, true, Mat::new(&hs, h), Mat::new(&w_hh, g3));
            let g = &mut gi[t * b * g3..(t + 1) * b * g3];
            let o = &mut out[t * bh..(t + 1) * bh];
            for row in 0..b {
                let gr = &mut g[row * g3..(row + 1) * g3];
                let hr = &gh[row * g3..(row + 1) * g3];
                let (rz, n) = gr.split_at_mut(2 * h);
                for (a, &c) in rz.iter_mut().zip(&hr[..2 * h]) {
                    *a = sigmoid(*a + c);
                }
                let (r, z) = rz.split_at(h);
                let hn = &hr[2 * h..];
                let (hp, or) = (&hs[row * h..(row + 1) * h], &mut o[row * h..(row + 1) * h]);
                for j in 0..h {
                    n[j] = tanh(n[j] + r[j] * hn[j]);
                    or[j] = n[j] + z[j] * (hp[j] - n[j]);
                }
                if keep_tape {
                    gh_n[t * bh + row * h..t * bh + (row + 1) * h].copy_from_slice(hn);
                }
            }
            hs.copy_from_slice(o);
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
    }

    fn backward(tape: &Tape, dy: &[f32], wanted: [bool; 6]) -> [Option<Vec<f32>>; 6] {
        let d = tape.dims;
        let (tn, b, e, h) = (d.steps, d.batch, d.input, d.hidden);
        let (g3, bh) = (3 * h, b * h);
        assert_eq!(dy.len(), tn * bh, "gru kernel: dy");
        let mut dgi = take_zeroed(tn * b * g3);
        let mut dgh = take_zeroed(tn * b * g3);
        let mut dh = vec![0.0; bh];
        let mut dh_direct = take_zeroed(bh);
        for t in (0..tn).rev() {
            let acts = &tape.acts[t * b * g3..(t + 1) * b * g3];
            let (gi_t, gh_t) = (
                &mut dgi[t * b * g3..(t + 1) * b * g3],
                &mut dgh[t * b * g3..(t + 1) * b * g3],
            );
            for row in 0..b {
                let a = &acts[row * g3..(row + 1) * g3];
                let (r, rest) = a.split_at(h);
                let (z, n) = rest.split_at(h);
                let k0 = t * bh + row * h;
                let hp = &tape.h_prev[k0..k0 + h];
                let hn = &tape.gh_n[k0..k0 + h];
                let dyr = &dy[k0..k0 + h];
                let dhr = &dh[row * h..(row + 1) * h];
                let dd = &mut dh_direct[row * h..(row + 1) * h];
                let (gir, ghr) = (
                    &mut gi_t[row * g3..(row + 1) * g3],
                    &mut gh_t[row * g3..(row + 1) * g3],
                );
                for j in 0..h {
                    let dhj = dyr[j] + dhr[j];
                    let dpre_n = dhj * (1.0 - z[j]) * (1.0 - n[j] * n[j]);
                    let dpre_z = dhj * (hp[j] - n[j]) * z[j] * (1.0 - z[j]);
                    let dpre_r = dpre_n * hn[j] * r[j] * (1.0 - r[j]);
                    gir[j] = dpre_r;
                    gir[h + j] = dpre_z;
                    gir[2 * h + j] = dpre_n;
                    ghr[j] = dpre_r;
                    ghr[h + j] = dpre_z;
                    ghr[2 * h + j] = dpre_n * r[j];
                    dd[j] = dhj * z[j];
                }
            }
            dh.copy_from_slice(&dh_direct);
            matmul(
                &mut dh,
                true,
                Mat::new(gh_t, g3),
                Mat::new(&tape.w_hh, g3).t(),
            );
            if let Some(r) = &tape.resets {
                for (row, _) in r[t * b..(t + 1) * b].iter().enumerate().filter(|(_, &v)| v) {
                    dh[row * h..(row + 1) * h].fill(0.0);
                }
            }
        }
        give(dh_direct);
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
    }
}

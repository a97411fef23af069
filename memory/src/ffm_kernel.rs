//! Fast and Forgetful Memory's aggregator over a whole sequence on host f32 buffers: the complex
//! decaying recurrence `S_t = γ ⊙ S_{t−1} + x̃_t ⊗ 1_c`, with its own backward pass.
//!
//! Layout is time-major (row `t·B + b`). The state of a row is `[Re S | Im S]`, each `[m·c]`
//! trace-major (`j·c + k`). `γ_{jk} = e^{−|a_j|} (cos ω_k + i sin ω_k)`.

use rayon::prelude::*;

use crate::host_math::{give, on_pool, sigmoid, take_zeroed};
use crate::host_op::HostOp;

/// Sizes of one scan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FfaDims {
    /// Steps `T`.
    pub steps: usize,
    /// Batch rows `B`.
    pub batch: usize,
    /// Traces `m`.
    pub memory: usize,
    /// Context (frequencies) `c`.
    pub context: usize,
}

/// The scan as a [`HostOp`] over `[x̃ [T·B, m], Re S₀ [B, m·c], Im S₀ [B, m·c], a [1, m],
/// ω [1, c]]`, giving every step's state `[T·B, 2·m·c]`.
pub(crate) struct FfaScan {
    /// Sizes.
    pub dims: FfaDims,
    /// Time-major `[T·B]` episode starts (the state is zero before such a step), if any.
    pub resets: Option<Vec<bool>>,
}

/// What the backward pass needs.
pub(crate) struct FfaTape {
    dims: FfaDims,
    resets: Option<Vec<bool>>,
    a: Vec<f32>,
    omega: Vec<f32>,
    /// `S₀` rows `[B, 2·m·c]`.
    s0: Vec<f32>,
    /// Every step's state, per batch row `[T, 2·m·c]` (as the scan wrote them).
    rows: Vec<Vec<f32>>,
}

impl Drop for FfaTape {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.s0));
    }
}

/// `(p, q)` with `γ = p + i q`, each `[m·c]` trace-major.
fn gamma(a: &[f32], omega: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut p = Vec::with_capacity(a.len() * omega.len());
    let mut q = Vec::with_capacity(a.len() * omega.len());
    for &aj in a {
        let decay = (-aj.abs()).exp();
        for &w in omega {
            p.push(decay * w.cos());
            q.push(decay * w.sin());
        }
    }
    (p, q)
}

impl FfaTape {
    fn reset(&self, t: usize, b: usize) -> bool {
        self.resets
            .as_ref()
            .is_some_and(|r| r[t * self.dims.batch + b])
    }
}

impl HostOp<5> for FfaScan {
    type Tape = FfaTape;

    fn forward(&self, inputs: [Vec<f32>; 5], keep_tape: bool) -> (Vec<f32>, Option<FfaTape>) {
        let [x, re0, im0, a, omega] = inputs;
        let FfaDims {
            steps,
            batch,
            memory: m,
            context: c,
        } = self.dims;
        let mc = m * c;
        let (p, q) = gamma(&a, &omega);
        let mut s0 = take_zeroed(batch * 2 * mc);
        for b in 0..batch {
            s0[b * 2 * mc..b * 2 * mc + mc].copy_from_slice(&re0[b * mc..(b + 1) * mc]);
            s0[b * 2 * mc + mc..(b + 1) * 2 * mc].copy_from_slice(&im0[b * mc..(b + 1) * mc]);
        }
        let mut out = take_zeroed(steps * batch * 2 * mc);
        let resets = self.resets.as_deref();
        // Rows are independent: each batch row scans its own time steps.
        let mut rows: Vec<Vec<f32>> = (0..batch).map(|_| vec![0.0; steps * 2 * mc]).collect();
        on_pool(|| {
            rows.par_iter_mut().enumerate().for_each(|(b, row)| {
                let mut prev: Vec<f32> = s0[b * 2 * mc..(b + 1) * 2 * mc].to_vec();
                for t in 0..steps {
                    if resets.is_some_and(|r| r[t * batch + b]) {
                        prev.fill(0.0);
                    }
                    let cur = &mut row[t * 2 * mc..(t + 1) * 2 * mc];
                    let (re, im) = cur.split_at_mut(mc);
                    let (pre, pim) = prev.split_at(mc);
                    let xt = &x[(t * batch + b) * m..(t * batch + b + 1) * m];
                    for i in 0..mc {
                        re[i] = p[i] * pre[i] - q[i] * pim[i] + xt[i / c];
                        im[i] = q[i] * pre[i] + p[i] * pim[i];
                    }
                    prev.copy_from_slice(cur);
                }
            })
        });
        for (b, row) in rows.iter().enumerate() {
            for t in 0..steps {
                let dst = (t * batch + b) * 2 * mc;
                out[dst..dst + 2 * mc].copy_from_slice(&row[t * 2 * mc..(t + 1) * 2 * mc]);
            }
        }
        give(x);
        give(re0);
        give(im0);
        let tape = keep_tape.then(|| FfaTape {
            dims: self.dims,
            resets: self.resets.clone(),
            a,
            omega,
            s0,
            rows,
        });
        (out, tape)
    }

    fn backward(tape: &FfaTape, grad: &[f32], wanted: [bool; 5]) -> [Option<Vec<f32>>; 5] {
        let FfaDims {
            steps,
            batch,
            memory: m,
            context: c,
        } = tape.dims;
        let mc = m * c;
        let (p, q) = gamma(&tape.a, &tape.omega);
        // Per batch row: dx̃ rows, dS₀, and its share of dp, dq.
        struct RowGrads {
            dx: Vec<f32>,
            ds0: Vec<f32>,
            dp: Vec<f32>,
            dq: Vec<f32>,
        }
        let per_row: Vec<RowGrads> = on_pool(|| {
            (0..batch)
                .into_par_iter()
                .map(|b| {
                    let mut g = RowGrads {
                        dx: vec![0.0; steps * m],
                        ds0: vec![0.0; 2 * mc],
                        dp: vec![0.0; mc],
                        dq: vec![0.0; mc],
                    };
                    let mut carry = vec![0.0f32; 2 * mc];
                    for t in (0..steps).rev() {
                        let row = (t * batch + b) * 2 * mc;
                        for (cv, gv) in carry.iter_mut().zip(&grad[row..row + 2 * mc]) {
                            *cv += gv;
                        }
                        let reset = tape.reset(t, b);
                        let prev: &[f32] = if reset {
                            &[]
                        } else if t == 0 {
                            &tape.s0[b * 2 * mc..(b + 1) * 2 * mc]
                        } else {
                            &tape.rows[b][(t - 1) * 2 * mc..t * 2 * mc]
                        };
                        let (gu, gv) = carry.split_at(mc);
                        for j in 0..m {
                            g.dx[t * m + j] = gu[j * c..(j + 1) * c].iter().sum();
                        }
                        let mut next = vec![0.0f32; 2 * mc];
                        if !reset {
                            let (u, v) = prev.split_at(mc);
                            let (nu, nv) = next.split_at_mut(mc);
                            for i in 0..mc {
                                g.dp[i] += gu[i] * u[i] + gv[i] * v[i];
                                g.dq[i] += gv[i] * u[i] - gu[i] * v[i];
                                nu[i] = p[i] * gu[i] + q[i] * gv[i];
                                nv[i] = p[i] * gv[i] - q[i] * gu[i];
                            }
                        }
                        carry = next;
                    }
                    g.ds0 = carry;
                    g
                })
                .collect()
        });
        let [want_x, want_re, want_im, want_a, want_w] = wanted;
        let dx = want_x.then(|| {
            let mut dx = take_zeroed(steps * batch * m);
            for (b, g) in per_row.iter().enumerate() {
                for t in 0..steps {
                    dx[(t * batch + b) * m..(t * batch + b + 1) * m]
                        .copy_from_slice(&g.dx[t * m..(t + 1) * m]);
                }
            }
            dx
        });
        let half = |im: bool| {
            let mut d = take_zeroed(batch * mc);
            for (b, g) in per_row.iter().enumerate() {
                let from = if im { mc } else { 0 };
                d[b * mc..(b + 1) * mc].copy_from_slice(&g.ds0[from..from + mc]);
            }
            d
        };
        let d_re = want_re.then(|| half(false));
        let d_im = want_im.then(|| half(true));
        let (mut dp, mut dq) = (vec![0.0f32; mc], vec![0.0f32; mc]);
        for g in &per_row {
            for i in 0..mc {
                dp[i] += g.dp[i];
                dq[i] += g.dq[i];
            }
        }
        // p = e^{−|a|} cos ω, q = e^{−|a|} sin ω.
        let da = want_a.then(|| {
            let mut da = take_zeroed(m);
            for (j, d) in da.iter_mut().enumerate() {
                let sign = if tape.a[j] >= 0.0 { 1.0 } else { -1.0 };
                *d = -sign
                    * (j * c..(j + 1) * c)
                        .map(|i| dp[i] * p[i] + dq[i] * q[i])
                        .sum::<f32>();
            }
            da
        });
        let dw = want_w.then(|| {
            let mut dw = take_zeroed(c);
            for (k, d) in dw.iter_mut().enumerate() {
                *d = (0..m)
                    .map(|j| {
                        let i = j * c + k;
                        dq[i] * p[i] - dp[i] * q[i]
                    })
                    .sum();
            }
            dw
        });
        [dx, d_re, d_im, da, dw]
    }
}

/// Rows per parallel block of the read-out (below it, one block).
const READ_OUT_BLOCK_ROWS: usize = 64;

/// FFM's read-out after the mix as one [`HostOp`] over `[z, skip, g_out]` (each `[N, H]`):
/// `y = LN(z) ⊙ σ(g_out) + skip ⊙ (1 − σ(g_out))`, the layer norm without affine (ε 1e−5).
pub(crate) struct FfmReadOut {
    /// Width `H`.
    pub width: usize,
}

/// What the read-out's backward needs: the normalised `z`, the gate, `skip` and `1/σ_row`.
pub(crate) struct ReadOutTape {
    width: usize,
    normed: Vec<f32>,
    gate: Vec<f32>,
    skip: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Drop for ReadOutTape {
    fn drop(&mut self) {
        for v in [&mut self.normed, &mut self.gate, &mut self.skip] {
            give(std::mem::take(v));
        }
    }
}

impl HostOp<3> for FfmReadOut {
    type Tape = ReadOutTape;

    fn forward(&self, inputs: [Vec<f32>; 3], keep_tape: bool) -> (Vec<f32>, Option<ReadOutTape>) {
        let [mut z, skip, mut gate] = inputs;
        let h = self.width;
        let rows = z.len() / h;
        let mut out = take_zeroed(z.len());
        let mut inv_std = vec![0.0f32; rows];
        let block = READ_OUT_BLOCK_ROWS * h;
        on_pool(|| {
            z.par_chunks_mut(block)
                .zip(gate.par_chunks_mut(block))
                .zip(skip.par_chunks(block).zip(out.par_chunks_mut(block)))
                .zip(inv_std.par_chunks_mut(READ_OUT_BLOCK_ROWS))
                .for_each(|(((z, g), (s, o)), r)| {
                    for (row, inv) in r.iter_mut().enumerate() {
                        let span = row * h..(row + 1) * h;
                        let zr = &mut z[span.clone()];
                        let mean = zr.iter().sum::<f32>() / h as f32;
                        let var =
                            zr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
                        *inv = 1.0 / (var + 1e-5).sqrt();
                        for v in zr.iter_mut() {
                            *v = (*v - mean) * *inv;
                        }
                        for (((gv, &sv), ov), &nv) in g[span.clone()]
                            .iter_mut()
                            .zip(&s[span.clone()])
                            .zip(&mut o[span.clone()])
                            .zip(zr.iter())
                        {
                            *gv = sigmoid(*gv);
                            *ov = nv * *gv + sv * (1.0 - *gv);
                        }
                    }
                })
        });
        let tape = keep_tape.then(|| ReadOutTape {
            width: h,
            normed: z,
            gate,
            skip,
            inv_std,
        });
        (out, tape)
    }

    fn backward(tape: &ReadOutTape, grad: &[f32], wanted: [bool; 3]) -> [Option<Vec<f32>>; 3] {
        let h = tape.width;
        let n = grad.len();
        let (mut dz, mut ds, mut dg) = (take_zeroed(n), take_zeroed(n), take_zeroed(n));
        let block = READ_OUT_BLOCK_ROWS * h;
        on_pool(|| {
            dz.par_chunks_mut(block)
                .zip(ds.par_chunks_mut(block).zip(dg.par_chunks_mut(block)))
                .zip(grad.par_chunks(block))
                .enumerate()
                .for_each(|(bi, ((dz, (ds, dg)), gy))| {
                    let first = bi * block;
                    for (row, gy) in gy.chunks_exact(h).enumerate() {
                        let at = first + row * h;
                        let nrm = &tape.normed[at..at + h];
                        let g = &tape.gate[at..at + h];
                        let s = &tape.skip[at..at + h];
                        let span = row * h..(row + 1) * h;
                        let dzr = &mut dz[span.clone()];
                        // dn = dy ⊙ g, staged in dz.
                        for i in 0..h {
                            dzr[i] = gy[i] * g[i];
                            ds[span.start + i] = gy[i] * (1.0 - g[i]);
                            dg[span.start + i] = gy[i] * (nrm[i] - s[i]) * g[i] * (1.0 - g[i]);
                        }
                        let mean_dn = dzr.iter().sum::<f32>() / h as f32;
                        let mean_dn_n =
                            dzr.iter().zip(nrm).map(|(a, b)| a * b).sum::<f32>() / h as f32;
                        let inv = tape.inv_std[(at) / h];
                        for i in 0..h {
                            dzr[i] = inv * (dzr[i] - mean_dn - nrm[i] * mean_dn_n);
                        }
                    }
                })
        });
        let keep = |want: bool, v: Vec<f32>| {
            if want {
                Some(v)
            } else {
                give(v);
                None
            }
        };
        [
            keep(wanted[0], dz),
            keep(wanted[1], ds),
            keep(wanted[2], dg),
        ]
    }
}

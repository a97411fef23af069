//! Fused relevancy-screened memory on host f32 buffers: the inner core runs through the modular
//! stack kernel step by step, and between its steps the memory read, the relevancy scores and
//! the replacement rule run on the host.
//!
//! A memory slot holds no copy of a state: it names where its content lives (an initial slot of
//! the incoming state, or the inner core's output at step τ of this run), so a step costs
//! O(ν + ρ) whatever `t` is, and the backward pass routes each slot's gradient straight to that
//! output. Keys (`U_a` of the content) are computed once per output, with their `e^{2k}`: the
//! attention's `tanh(q + k)` then takes a multiply-add and a reciprocal per element
//! ([`tanh_sum_simd`]), not an exponential and a division.

use crate::host_math::{
    axpy_simd, dot_simd, exp, give, matmul_view, take_overwritten, take_transposed, take_zeroed,
    tanh_fused, tanh_simd, tanh_sum_fused, tanh_sum_simd, ExpDoubled, View,
};
use crate::host_op::HostOp;
use crate::modular_kernel::{
    assemble_grads, chunk_rows, chunk_starts, finish_inputs, map_chunks, transposed_weights,
    ChunkGrads, ChunkTape, StackBackward, StackDims, StackForward,
};
use crate::screened::{push_row, screen_row};
use crate::seq_layout::SeqLayout;

/// No content (after a reset): reads as zeros.
const EMPTY: usize = usize::MAX;

/// Bytes of slot keys and contents (`M·(A + H)` floats a row) a chunk's step reads at most; the
/// backward adds as many of their gradients. Each step reads every slot of every row of its
/// chunk, so its working set must stay in a core's L2 cache: ν 10, ρ 15, H = A = 128 (25 KiB a
/// row) at B = 64 one thread took 81–83 ms in one chunk of 64 rows, 76–81 in chunks of 32, 69–76
/// in chunks of 16 and 70–73 in chunks of 12 (B = 128: 168, 156–160, 144–151; screened GRU at
/// B = 64: 74, 70–71, 61–64).
const SLOT_BYTES_PER_CHUNK: usize = 512 << 10;

/// Rows per chunk: the stack kernel's split, in chunks small enough (a power of two, at least 8)
/// that their slots stay within [`SLOT_BYTES_PER_CHUNK`].
fn screened_chunk_rows(d: &ScreenedDims) -> usize {
    let per_row = d.slots() * (d.attention + d.hidden()) * std::mem::size_of::<f32>();
    let fit = (SLOT_BYTES_PER_CHUNK / per_row.max(1)).max(8);
    // The largest power of two not above `fit`.
    let fit = 1 << fit.ilog2();
    chunk_rows(&d.inner).min(fit)
}

/// Sizes of a fused screened run.
#[derive(Clone, Debug)]
pub(crate) struct ScreenedDims {
    /// The inner core as a stack.
    pub inner: StackDims,
    /// Short-term buffer ν.
    pub short_term: usize,
    /// Relevant set ρ.
    pub relevant: usize,
    /// Attention width `A`.
    pub attention: usize,
    /// Weight λ of the read.
    pub lambda: f32,
    /// Length of the inner core's flat parameters (the memory's `W_a`, `U_a`, `v` follow).
    pub inner_params: usize,
}

impl ScreenedDims {
    fn slots(&self) -> usize {
        self.short_term + self.relevant
    }
    fn hidden(&self) -> usize {
        self.inner.output()
    }
    /// Width of the flat state: the inner parts, then `s [H]`, `slots [M·H]`, `valid`, `score`,
    /// `time` `[M]` each and `step [1]`.
    pub fn state_width(&self) -> usize {
        let (m, h) = (self.slots(), self.hidden());
        self.inner.state_width() + h + m * h + 3 * m + 1
    }
    /// Length of the flat output: `y [T·B, H]` then the final state.
    pub fn output_len(&self) -> usize {
        let d = &self.inner;
        d.steps * d.batch * self.hidden() + d.batch * self.state_width()
    }
    /// Offsets of `W_a [H, A]`, `U_a [H, A]` and `v [A]` in the flat parameters.
    fn memory_params(&self) -> (usize, usize, usize) {
        let (h, a) = (self.hidden(), self.attention);
        let w_a = self.inner_params;
        (w_a, w_a + h * a, w_a + 2 * h * a)
    }
    /// Length of the flat parameters.
    pub fn params_len(&self) -> usize {
        let (h, a) = (self.hidden(), self.attention);
        self.inner_params + 2 * h * a + a
    }
}

/// The fused screened memory as a [`HostOp`]: inputs `x [T·B, E]` (rows in the inner stack's
/// [`StackDims::layout`] order), the flat state `[B, state_width]` and the flat parameters
/// `[1, P]`; output `[1, output_len]` (its `y` rows in the same order).
pub(crate) struct ScreenedOp {
    /// Sizes.
    pub dims: ScreenedDims,
    /// Time-major `[T·B]` reset flags, if any row resets.
    pub resets: Option<Vec<bool>>,
}

/// One chunk's memory tape.
struct MemoryTape {
    inner: ChunkTape,
    /// The incoming slots' contents `[Bc, M·H]`.
    init_slots: Vec<f32>,
    /// The keys of the incoming slots and of the outputs.
    keys: Keys,
    /// Per step: the query input `s_{t−1}` `[Bc, H]`, the query `[Bc, A]`, the attention
    /// `[Bc, M]`, where each slot's content lived `[Bc, M]` and whether any slot was valid
    /// `[Bc]` (`tanh(q + k_m)` is recomputed by the backward).
    s_prev: Vec<f32>,
    q: Vec<f32>,
    alpha: Vec<f32>,
    src: Vec<usize>,
    any: Vec<bool>,
    /// Where each slot's content lives after the last step `[Bc, M]`.
    last_src: Vec<usize>,
    /// Final state rows `[Bc, state_width]`.
    last: Vec<f32>,
}

impl Drop for MemoryTape {
    fn drop(&mut self) {
        for v in [
            &mut self.init_slots,
            &mut self.s_prev,
            &mut self.q,
            &mut self.alpha,
            &mut self.last,
        ] {
            give(std::mem::take(v));
        }
    }
}

/// What the backward pass keeps.
pub(crate) struct Tape {
    dims: ScreenedDims,
    rows: usize,
    params: Vec<f32>,
    chunks: Vec<MemoryTape>,
}

impl Drop for Tape {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.params));
    }
}

/// The content of slot source `src` `[H]`: an incoming slot (`src < M`), the output of step
/// `src − M`, or nothing.
fn content<'a, T>(
    src: usize,
    m: usize,
    h: usize,
    r: usize,
    bc: usize,
    init: &'a [T],
    ys: &'a [T],
) -> Option<&'a [T]> {
    if src == EMPTY {
        None
    } else if src < m {
        Some(&init[(r * m + src) * h..][..h])
    } else {
        let t = src - m;
        Some(&ys[(t * bc + r) * h..][..h])
    }
}

/// The gradient of slot source `src`'s content (`width` wide, row `r`): an incoming slot's in
/// `dinit [Bc·M, width]`, an output's in `dys [T·Bc, width]`, or none for an empty slot.
fn route_to<'a>(
    src: usize,
    m: usize,
    width: usize,
    r: usize,
    bc: usize,
    dinit: &'a mut [f32],
    dys: &'a mut [f32],
) -> Option<&'a mut [f32]> {
    if src == EMPTY {
        None
    } else if src < m {
        Some(&mut dinit[(r * m + src) * width..][..width])
    } else {
        Some(&mut dys[((src - m) * bc + r) * width..][..width])
    }
}

/// The slots' keys `k = U_a c`: of the incoming slots `[Bc·M, A]` and of the outputs `[T·Bc,
/// A]` (each row written once, when its content is), with their `e^{2k}` and whether those may
/// enter [`tanh_sum_simd`] (`|k| ≤ TANH_SUM_LIMIT` throughout the row).
struct Keys {
    init: Vec<f32>,
    init_exp: Vec<f32>,
    init_ok: Vec<bool>,
    ys: Vec<f32>,
    ys_exp: Vec<f32>,
    ys_ok: Vec<bool>,
}

/// One slot's key and, where it may enter [`tanh_sum_simd`], its `e^{2k}`.
#[derive(Clone, Copy)]
struct SlotKey<'a> {
    key: &'a [f32],
    exp: Option<&'a [f32]>,
}

impl<'a> SlotKey<'a> {
    /// The two operands of this slot's `tanh(q + k)` against a query `q` (with its `e^{2q}`, if
    /// it may enter [`tanh_sum_simd`]): both exponentials when both have them (`true`), else `q`
    /// and `k` themselves. The scores and their backward choose alike, so they agree bit for bit.
    fn operands(self, q: &'a [f32], q_exp: Option<&'a [f32]>) -> (bool, &'a [f32], &'a [f32]) {
        match q_exp.zip(self.exp) {
            Some((eq, ek)) => (true, eq, ek),
            None => (false, q, self.key),
        }
    }
}

/// `tanh(a + b)` of one vector of a slot's operands ([`SlotKey::operands`]): from the
/// exponentials, or directly.
#[inline(always)]
fn tanh_of_sum<S: pulp::Simd>(s: S, from_exps: bool, a: S::f32s, b: S::f32s) -> S::f32s {
    if from_exps {
        tanh_sum_simd(s, a, b)
    } else {
        tanh_simd(s, s.add_f32s(a, b))
    }
}

/// The scalar twin of [`tanh_of_sum`] (the loops' tails).
#[inline(always)]
fn tanh_of_sum_fused(from_exps: bool, a: f32, b: f32) -> f32 {
    if from_exps {
        tanh_sum_fused(a, b)
    } else {
        tanh_fused(a + b)
    }
}

impl Keys {
    /// Room for `bc · m` incoming and `rows` output keys of width `a`.
    fn new(bc: usize, m: usize, rows: usize, a: usize) -> Self {
        Keys {
            init: take_zeroed(bc * m * a),
            init_exp: take_overwritten(bc * m * a),
            init_ok: vec![false; bc * m],
            ys: take_overwritten(rows * a),
            ys_exp: take_overwritten(rows * a),
            ys_ok: vec![false; rows],
        }
    }

    /// The exponentials of the incoming keys (once they are in `init`).
    fn init_exps(&mut self, arch: pulp::Arch, a: usize) {
        let rows = self.init_ok.len();
        exps_of_rows(
            arch,
            &self.init,
            &mut self.init_exp,
            &mut self.init_ok,
            0..rows,
            a,
        );
    }

    /// The exponentials of output rows `rows` (once their keys are in `ys`).
    fn output_exps(&mut self, arch: pulp::Arch, rows: std::ops::Range<usize>, a: usize) {
        exps_of_rows(arch, &self.ys, &mut self.ys_exp, &mut self.ys_ok, rows, a);
    }

    /// The key of slot source `src` (as [`content`]), or `None` for an empty slot.
    fn slot(&self, src: usize, m: usize, a: usize, r: usize, bc: usize) -> Option<SlotKey<'_>> {
        let key = content(src, m, a, r, bc, &self.init, &self.ys)?;
        let ok = content(src, m, 1, r, bc, &self.init_ok, &self.ys_ok)?[0];
        let exp = ok.then(|| content(src, m, a, r, bc, &self.init_exp, &self.ys_exp));
        Some(SlotKey {
            key,
            exp: exp.flatten(),
        })
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        for v in [
            &mut self.init,
            &mut self.init_exp,
            &mut self.ys,
            &mut self.ys_exp,
        ] {
            give(std::mem::take(v));
        }
    }
}

/// `exp[i] = e^{2 keys[i]}` over rows `rows` of width `a`, and each row's [`ExpDoubled`] flag.
fn exps_of_rows(
    arch: pulp::Arch,
    keys: &[f32],
    exp: &mut [f32],
    ok: &mut [bool],
    rows: std::ops::Range<usize>,
    a: usize,
) {
    for i in rows {
        ok[i] = arch.dispatch(ExpDoubled {
            x: &keys[i * a..(i + 1) * a],
            out: &mut exp[i * a..(i + 1) * a],
        });
    }
}

/// One row's attention scores `e_m = v · tanh(q + k_m)` over its valid slots (`key(m)`: `None` for
/// an invalid one, whose score is left as it was), in one pass per slot at the CPU's vector
/// width; returns whether any slot was valid and the largest score. Its `tanh` is
/// [`tanh_sum_simd`] of the query's and the key's exponentials where both have them, else
/// [`tanh_simd`] of the sum; lane for lane their scalar twins (the tails), as [`SlotGrad`]'s
/// recomputation.
struct SlotScores<'a, 'k, F: Fn(usize) -> Option<SlotKey<'k>>> {
    q: &'a [f32],
    /// `e^{2q}`, if it may enter [`tanh_sum_simd`].
    q_exp: Option<&'a [f32]>,
    v: &'a [f32],
    scores: &'a mut [f32],
    key: F,
}

impl<'k, F: Fn(usize) -> Option<SlotKey<'k>>> pulp::WithSimd for SlotScores<'_, 'k, F> {
    type Output = (bool, f32);

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) -> (bool, f32) {
        let (q, v) = (self.q, &self.v[..self.q.len()]);
        let (vv, vt) = S::as_simd_f32s(v);
        let (mut any, mut best) = (false, f32::NEG_INFINITY);
        for (k, e) in self.scores.iter_mut().enumerate() {
            let Some(key) = (self.key)(k) else { continue };
            let (from_exps, a, b) = key.operands(q, self.q_exp);
            let ((av, at), (bv, bt)) = (S::as_simd_f32s(a), S::as_simd_f32s(&b[..q.len()]));
            let mut acc = s.splat_f32s(0.0);
            for ((&x, &y), &vc) in av.iter().zip(bv).zip(vv) {
                acc = s.mul_add_f32s(tanh_of_sum(s, from_exps, x, y), vc, acc);
            }
            let mut total = s.reduce_sum_f32s(acc);
            for ((&x, &y), &vc) in at.iter().zip(bt).zip(vt) {
                total = tanh_of_sum_fused(from_exps, x, y).mul_add(vc, total);
            }
            *e = total;
            any = true;
            best = best.max(total);
        }
        (any, best)
    }
}

/// One row's read `Σ_m α_m c_m` of its valid slots' contents (`content(m)`: `None` for an
/// invalid or empty slot) into `read`, at the CPU's vector width (the same sums, in the same
/// order of slots, as a scalar loop).
struct SlotRead<'a, 'c, F: Fn(usize) -> Option<&'c [f32]>> {
    alpha: &'a [f32],
    read: &'a mut [f32],
    content: F,
}

impl<'c, F: Fn(usize) -> Option<&'c [f32]>> pulp::WithSimd for SlotRead<'_, 'c, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        self.read.fill(0.0);
        for (k, &w) in self.alpha.iter().enumerate() {
            if let Some(c) = (self.content)(k) {
                axpy_simd(s, self.read, w, c);
            }
        }
    }
}

/// One weighted slot's share of the read's backward, at the CPU's vector width: returns
/// `dread · c` (the gradient of its weight; 0 without content) and adds `α·dread` to its content's
/// gradient.
struct ReadGrad<'a> {
    dread: &'a [f32],
    alpha: f32,
    content: Option<&'a [f32]>,
    dcontent: Option<&'a mut [f32]>,
}

impl pulp::WithSimd for ReadGrad<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) -> f32 {
        let n = self.dread.len();
        if let Some(dst) = self.dcontent {
            axpy_simd(s, &mut dst[..n], self.alpha, self.dread);
        }
        self.content.map_or(0.0, |c| dot_simd(s, self.dread, c))
    }
}

/// One weighted slot's share of the attention's backward, in one pass at the CPU's vector width:
/// with `th = tanh(q + k)` recomputed as [`SlotScores`] made it (the tape keeps no `[T·Bc, M·A]`
/// of them), `dv += de·th` and `g = de·v·(1 − th²)` added to the query's and the key's gradients.
struct SlotGrad<'a> {
    q: &'a [f32],
    /// `e^{2q}`, if it may enter [`tanh_sum_simd`].
    q_exp: Option<&'a [f32]>,
    key: SlotKey<'a>,
    v: &'a [f32],
    de: f32,
    dv: &'a mut [f32],
    dq: &'a mut [f32],
    dkey: &'a mut [f32],
}

impl pulp::WithSimd for SlotGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        let n = self.q.len();
        let (dv, dq, dkey) = (&mut self.dv[..n], &mut self.dq[..n], &mut self.dkey[..n]);
        let (one, de) = (s.splat_f32s(1.0), s.splat_f32s(self.de));
        let (dvv, dvt) = S::as_mut_simd_f32s(dv);
        let (dqv, dqt) = S::as_mut_simd_f32s(dq);
        let (dkv, dkt) = S::as_mut_simd_f32s(dkey);
        let (vv, vt) = S::as_simd_f32s(&self.v[..n]);
        // The two operands whose `tanh` of a sum this slot's scores took, as they took it.
        let (from_exps, a, b) = self.key.operands(self.q, self.q_exp);
        let ((av, at), (bv, bt)) = (S::as_simd_f32s(a), S::as_simd_f32s(&b[..n]));
        let ins = av.iter().zip(bv).zip(vv);
        let outs = dvv.iter_mut().zip(dqv.iter_mut()).zip(dkv.iter_mut());
        for (((&x, &y), &vc), ((dvc, dqc), dkc)) in ins.zip(outs) {
            let th = tanh_of_sum(s, from_exps, x, y);
            *dvc = s.mul_add_f32s(de, th, *dvc);
            let g = s.mul_f32s(s.mul_f32s(de, vc), s.negate_mul_add_f32s(th, th, one));
            *dqc = s.add_f32s(*dqc, g);
            *dkc = s.add_f32s(*dkc, g);
        }
        let ins = at.iter().zip(bt).zip(vt);
        let outs = dvt.iter_mut().zip(dqt.iter_mut()).zip(dkt.iter_mut());
        for (((&x, &y), &vc), ((dvc, dqc), dkc)) in ins.zip(outs) {
            let th = tanh_of_sum_fused(from_exps, x, y);
            *dvc += self.de * th;
            let g = self.de * vc * (1.0 - th * th);
            *dqc += g;
            *dkc += g;
        }
    }
}

/// Forward of rows `r0..r0 + bc`.
fn forward_chunk(
    d: &ScreenedDims,
    r0: usize,
    bc: usize,
    x: &[f32],
    state: &[f32],
    params: &[f32],
    resets: Option<&[bool]>,
) -> MemoryTape {
    let inner = &d.inner;
    let tn = inner.steps;
    let (m, h, a, nu, rho) = (d.slots(), d.hidden(), d.attention, d.short_term, d.relevant);
    let (sw, isw) = (d.state_width(), inner.state_width());
    let (o_wa, o_ua, o_v) = d.memory_params();
    let (w_a, u_a) = (&params[o_wa..o_wa + h * a], &params[o_ua..o_ua + h * a]);
    let v = &params[o_v..o_v + a];
    let mut stack = StackForward::new(inner, r0, bc, x, state, &params[..d.inner_params], resets);
    // The incoming memory.
    let row = |r: usize| &state[(r0 + r) * sw..(r0 + r + 1) * sw];
    let mut s_cur = take_zeroed(bc * h);
    let mut init_slots = take_zeroed(bc * m * h);
    let mut valid = vec![false; bc * m];
    let mut score = vec![0.0f32; bc * m];
    let mut time = vec![0.0f32; bc * m];
    let mut step = vec![0.0f32; bc];
    for r in 0..bc {
        let st = row(r);
        s_cur[r * h..(r + 1) * h].copy_from_slice(&st[isw..isw + h]);
        init_slots[r * m * h..(r + 1) * m * h].copy_from_slice(&st[isw + h..isw + h + m * h]);
        let base = isw + h + m * h;
        for k in 0..m {
            valid[r * m + k] = st[base + k] > 0.5;
            score[r * m + k] = st[base + m + k];
            time[r * m + k] = st[base + 2 * m + k];
        }
        step[r] = st[base + 3 * m];
    }
    let rows = tn * bc;
    // The CPU's SIMD level, detected once for the chunk's per-row and per-slot passes.
    let arch = pulp::Arch::new();
    let mut keys = Keys::new(bc, m, rows, a);
    matmul_view(
        &mut keys.init,
        0,
        a,
        false,
        View::dense(&init_slots, h),
        View::dense(u_a, a),
    );
    keys.init_exps(arch, a);
    let mut src: Vec<usize> = (0..bc).flat_map(|_| 0..m).collect();
    // Every step writes these rows whole.
    let mut tape_s = take_overwritten(rows * h);
    let mut tape_q = take_overwritten(rows * a);
    let mut tape_alpha = take_overwritten(rows * m);
    let mut tape_src = vec![EMPTY; rows * m];
    let mut tape_any = vec![false; rows];
    let mut ys = take_overwritten(rows * h);
    let mut s_new = take_zeroed(bc * h);
    let mut e = vec![0.0f32; m];
    let mut read = vec![0.0f32; h];
    // The step's `e^{2q}` `[Bc, A]` and whether each row's may enter `tanh_sum_simd`.
    let mut q_exp = take_overwritten(bc * a);
    let mut q_ok = vec![false; bc];
    for t in 0..tn {
        stack.begin_step(t);
        for r in 0..bc {
            if stack.resets_at(t, r) {
                valid[r * m..(r + 1) * m].fill(false);
                score[r * m..(r + 1) * m].fill(0.0);
                time[r * m..(r + 1) * m].fill(0.0);
                step[r] = 0.0;
                src[r * m..(r + 1) * m].fill(EMPTY);
                s_cur[r * h..(r + 1) * h].fill(0.0);
            }
        }
        at_rows(&mut tape_s, t, bc, h).copy_from_slice(&s_cur);
        let q = at_rows(&mut tape_q, t, bc, a);
        matmul_view(q, 0, a, false, View::dense(&s_cur, h), View::dense(w_a, a));
        exps_of_rows(arch, q, &mut q_exp, &mut q_ok, 0..bc, a);
        let ys_done = &ys[..];
        let h_prev = stack.top_state();
        for r in 0..bc {
            let (srcs, valid_r) = (&src[r * m..(r + 1) * m], &valid[r * m..(r + 1) * m]);
            tape_src[(t * bc + r) * m..][..m].copy_from_slice(srcs);
            // Keys share the contents' addressing (a valid slot always has content).
            let (any, best) = arch.dispatch(SlotScores {
                q: &q[r * a..(r + 1) * a],
                q_exp: q_ok[r].then(|| &q_exp[r * a..(r + 1) * a]),
                v,
                scores: &mut e,
                key: |k: usize| {
                    valid_r[k].then(|| {
                        keys.slot(srcs[k], m, a, r, bc)
                            .expect("a valid slot has content")
                    })
                },
            });
            tape_any[t * bc + r] = any;
            let alpha = &mut tape_alpha[(t * bc + r) * m..][..m];
            let mut total = 0.0;
            for k in 0..m {
                alpha[k] = if valid[r * m + k] {
                    let w = exp(e[k] - best);
                    total += w;
                    w
                } else {
                    0.0
                };
            }
            let hp = &h_prev[r * h..(r + 1) * h];
            let out = &mut s_new[r * h..(r + 1) * h];
            if !any {
                out.copy_from_slice(hp);
                continue;
            }
            alpha.iter_mut().for_each(|w| *w /= total);
            let (srcs, valid_r) = (&src[r * m..(r + 1) * m], &valid[r * m..(r + 1) * m]);
            arch.dispatch(SlotRead {
                alpha,
                read: &mut read,
                content: |k: usize| {
                    if valid_r[k] {
                        content(srcs[k], m, h, r, bc, &init_slots, ys_done)
                    } else {
                        None
                    }
                },
            });
            for c in 0..h {
                out[c] = (hp[c] + read[c] * d.lambda) * 0.5;
            }
        }
        stack.set_top_state(t, &s_new);
        let y = stack.run_step(t);
        at_rows(&mut ys, t, bc, h).copy_from_slice(y);
        matmul_view(
            at_rows(&mut keys.ys, t, bc, a),
            0,
            a,
            false,
            View::dense(at_rows(&mut ys, t, bc, h), h),
            View::dense(u_a, a),
        );
        keys.output_exps(arch, t * bc..(t + 1) * bc, a);
        for r in 0..bc {
            let span = r * m..(r + 1) * m;
            let alpha = &tape_alpha[(t * bc + r) * m..][..m];
            if let Some(w) = screen_row(
                &mut valid[span.clone()],
                &mut score[span.clone()],
                &mut time[span.clone()],
                alpha,
                nu,
                rho,
            ) {
                src[r * m + w] = src[r * m];
            }
            push_row(
                &mut valid[span.clone()],
                &mut score[span.clone()],
                &mut time[span],
                nu,
                step[r],
            );
            src.copy_within(r * m + 1..r * m + nu, r * m);
            src[r * m + nu - 1] = m + t;
            step[r] += 1.0;
        }
        std::mem::swap(&mut s_cur, &mut s_new);
    }
    let inner_tape = stack.finish();
    let mut last = take_zeroed(bc * sw);
    for r in 0..bc {
        let out = &mut last[r * sw..(r + 1) * sw];
        out[..isw].copy_from_slice(&inner_tape.last[r * isw..(r + 1) * isw]);
        out[isw..isw + h].copy_from_slice(&s_cur[r * h..(r + 1) * h]);
        for k in 0..m {
            let dst = &mut out[isw + h + k * h..isw + h + (k + 1) * h];
            match content(src[r * m + k], m, h, r, bc, &init_slots, &ys) {
                Some(c) => dst.copy_from_slice(c),
                None => dst.fill(0.0),
            }
        }
        let base = isw + h + m * h;
        for k in 0..m {
            out[base + k] = if valid[r * m + k] { 1.0 } else { 0.0 };
            out[base + m + k] = score[r * m + k];
            out[base + 2 * m + k] = time[r * m + k];
        }
        out[base + 3 * m] = step[r];
    }
    give(ys);
    give(s_cur);
    give(s_new);
    give(q_exp);
    MemoryTape {
        inner: inner_tape,
        init_slots,
        keys,
        s_prev: tape_s,
        q: tape_q,
        alpha: tape_alpha,
        src: tape_src,
        any: tape_any,
        last_src: src,
        last,
    }
}

/// Step `t`'s rows of a `[T·Bc, w]` buffer, mutably.
fn at_rows(v: &mut [f32], t: usize, bc: usize, w: usize) -> &mut [f32] {
    &mut v[t * bc * w..(t + 1) * bc * w]
}

/// The weights the backward multiplies by their transpose, transposed once for all chunks
/// (dense operands for the per-step products; see [`transposed_weights`]).
struct TransposedWeights {
    /// The inner stack's.
    inner: Vec<f32>,
    /// `W_aᵀ`, `U_aᵀ` `[A, H]`.
    w_a: Vec<f32>,
    u_a: Vec<f32>,
}

impl TransposedWeights {
    fn new(d: &ScreenedDims, params: &[f32]) -> Self {
        let (h, a) = (d.hidden(), d.attention);
        let (o_wa, o_ua, _) = d.memory_params();
        TransposedWeights {
            inner: transposed_weights(&d.inner, &params[..d.inner_params]),
            w_a: take_transposed(&params[o_wa..o_wa + h * a], h, a),
            u_a: take_transposed(&params[o_ua..o_ua + h * a], h, a),
        }
    }
}

impl Drop for TransposedWeights {
    fn drop(&mut self) {
        for v in [&mut self.inner, &mut self.w_a, &mut self.u_a] {
            give(std::mem::take(v));
        }
    }
}

/// Backward of one chunk.
fn backward_chunk(
    d: &ScreenedDims,
    r0: usize,
    mt: &MemoryTape,
    params: &[f32],
    wt: &TransposedWeights,
    dz: &[f32],
    wanted: [bool; 3],
) -> ChunkGrads {
    let want_params = wanted[2];
    let inner = &d.inner;
    let (tn, b, seq) = (inner.steps, inner.batch, inner.seq());
    let bc = mt.inner.rows;
    let (m, h, a) = (d.slots(), d.hidden(), d.attention);
    let (sw, isw) = (d.state_width(), inner.state_width());
    let (o_wa, o_ua, o_v) = d.memory_params();
    let v = &params[o_v..o_v + a];
    let rows = tn * bc;
    let (dy_ext, dlast) = dz.split_at(tn * b * h);
    let ys = &mt.inner.layers[mt.inner.layers.len() - 1].hout;
    // Gradients reaching each output through later reads (content) and keys.
    let mut dys = take_zeroed(rows * h);
    let mut dy_keys = take_zeroed(rows * a);
    let mut dinit = take_zeroed(bc * m * h);
    let mut dinit_keys = take_zeroed(bc * m * a);
    let mut dq_all = take_zeroed(rows * a);
    let mut dv = vec![0.0f32; a];
    let mut ds = take_zeroed(bc * h);
    // The final state: s and the slots' contents (by where they lived at the end).
    for r in 0..bc {
        let row = &dlast[(r0 + r) * sw..(r0 + r + 1) * sw];
        ds[r * h..(r + 1) * h].copy_from_slice(&row[isw..isw + h]);
        for k in 0..m {
            let g = &row[isw + h + k * h..isw + h + (k + 1) * h];
            if let Some(dst) = route_to(mt.last_src[r * m + k], m, h, r, bc, &mut dinit, &mut dys) {
                dst.iter_mut().zip(g).for_each(|(a, v)| *a += v);
            }
        }
    }
    let mut back = StackBackward::new(
        inner,
        r0,
        &mt.inner,
        &params[..d.inner_params],
        &wt.inner,
        dlast,
        wanted,
    );
    let mut dy_t = take_zeroed(bc * h);
    let mut dalpha = vec![0.0f32; m];
    let arch = pulp::Arch::new();
    let mut dread = vec![0.0f32; h];
    let mut q_exp = take_overwritten(a);
    for t in (0..tn).rev() {
        // The output's gradient: from outside, from later reads, and through its key.
        for r in 0..bc {
            let dst = &mut dy_t[r * h..(r + 1) * h];
            let ext = &dy_ext[seq.row(t, r0 + r) * h..][..h];
            let via = &dys[(t * bc + r) * h..][..h];
            dst.iter_mut()
                .zip(ext.iter().zip(via))
                .for_each(|(o, (x, y))| *o = x + y);
        }
        matmul_view(
            &mut dy_t,
            0,
            h,
            true,
            View::dense(&dy_keys[t * bc * a..(t + 1) * bc * a], a),
            View::dense(&wt.u_a, h),
        );
        back.add_output_grad(&dy_t);
        back.run_step(t);
        // ds: the gradient of s_t (the state the inner step started from, and the next
        // step's query input).
        let top = back.top_prev_grad();
        ds.iter_mut().zip(top.iter()).for_each(|(a, v)| *a += v);
        top.fill(0.0);
        let dq = &mut dq_all[t * bc * a..(t + 1) * bc * a];
        for r in 0..bc {
            let at_t = t * bc + r;
            let dsr = &ds[r * h..(r + 1) * h];
            let dtop = &mut top[r * h..(r + 1) * h];
            if !mt.any[at_t] {
                dtop.copy_from_slice(dsr);
                continue;
            }
            for c in 0..h {
                dtop[c] = 0.5 * dsr[c];
            }
            dread
                .iter_mut()
                .zip(dsr)
                .for_each(|(o, v)| *o = 0.5 * d.lambda * v);
            let alpha = &mt.alpha[at_t * m..(at_t + 1) * m];
            let srcs = &mt.src[at_t * m..(at_t + 1) * m];
            for k in 0..m {
                dalpha[k] = 0.0;
                if alpha[k] == 0.0 {
                    // An invalid slot (or one with no weight) adds nothing to the read.
                    continue;
                }
                dalpha[k] = arch.dispatch(ReadGrad {
                    dread: &dread,
                    alpha: alpha[k],
                    content: content(srcs[k], m, h, r, bc, &mt.init_slots, ys),
                    dcontent: route_to(srcs[k], m, h, r, bc, &mut dinit, &mut dys),
                });
            }
            let mean: f32 = alpha.iter().zip(&dalpha).map(|(x, y)| x * y).sum();
            let qr = &mt.q[at_t * a..(at_t + 1) * a];
            let dqr = &mut dq[r * a..(r + 1) * a];
            let q_ok = arch.dispatch(ExpDoubled {
                x: qr,
                out: &mut q_exp,
            });
            for k in 0..m {
                if alpha[k] == 0.0 {
                    continue;
                }
                let de = alpha[k] * (dalpha[k] - mean);
                // `tanh(q + k_m)` again, as the forward made it (not kept: `[T·Bc, M·A]` was
                // the largest buffer of the tape).
                let key = mt
                    .keys
                    .slot(srcs[k], m, a, r, bc)
                    .expect("a weighted slot has content");
                // A valid slot always has content, so its key's gradient has a place.
                let dkey = route_to(srcs[k], m, a, r, bc, &mut dinit_keys, &mut dy_keys)
                    .expect("a weighted slot has content");
                arch.dispatch(SlotGrad {
                    q: qr,
                    q_exp: q_ok.then_some(&q_exp[..]),
                    key,
                    v,
                    de,
                    dv: &mut dv,
                    dq: &mut *dqr,
                    dkey,
                });
            }
        }
        // s_{t−1} fed the query.
        let mut ds_prev = take_zeroed(bc * h);
        matmul_view(
            &mut ds_prev,
            0,
            h,
            false,
            View::dense(&dq_all[t * bc * a..(t + 1) * bc * a], a),
            View::dense(&wt.w_a, h),
        );
        for r in 0..bc {
            if mt.inner.resets.as_ref().is_some_and(|v| v[t * bc + r]) {
                ds_prev[r * h..(r + 1) * h].fill(0.0);
            }
        }
        give(std::mem::replace(&mut ds, ds_prev));
        back.end_step(t);
    }
    give(dy_t);
    give(q_exp);
    let inner_grads = back.finish();
    let mut dstate = take_zeroed(bc * sw);
    // The incoming slots: their content directly and through their keys.
    matmul_view(
        &mut dinit,
        0,
        h,
        true,
        View::dense(&dinit_keys, a),
        View::dense(&wt.u_a, h),
    );
    for r in 0..bc {
        let out = &mut dstate[r * sw..(r + 1) * sw];
        out[..isw].copy_from_slice(&inner_grads.state[r * isw..(r + 1) * isw]);
        out[isw..isw + h].copy_from_slice(&ds[r * h..(r + 1) * h]);
        out[isw + h..isw + h + m * h].copy_from_slice(&dinit[r * m * h..(r + 1) * m * h]);
    }
    let dparams = want_params.then(|| {
        let mut g = take_zeroed(d.params_len());
        if let Some(p) = &inner_grads.params {
            g[..d.inner_params].copy_from_slice(p);
        }
        matmul_view(
            &mut g,
            o_wa,
            a,
            true,
            View::dense(&mt.s_prev, h).t(),
            View::dense(&dq_all, a),
        );
        matmul_view(
            &mut g,
            o_ua,
            a,
            true,
            View::dense(ys, h).t(),
            View::dense(&dy_keys, a),
        );
        matmul_view(
            &mut g,
            o_ua,
            a,
            true,
            View::dense(&mt.init_slots, h).t(),
            View::dense(&dinit_keys, a),
        );
        g[o_v..o_v + a].copy_from_slice(&dv);
        g
    });
    for v in [dys, dy_keys, dinit, dinit_keys, dq_all, ds] {
        give(v);
    }
    give(inner_grads.state);
    give(inner_grads.params.unwrap_or_default());
    ChunkGrads {
        rows: bc,
        x: inner_grads.x,
        state: dstate,
        params: dparams,
    }
}

impl HostOp<3> for ScreenedOp {
    type Tape = Tape;

    fn forward(
        &self,
        [x, state, params]: [Vec<f32>; 3],
        keep_tape: bool,
    ) -> (Vec<f32>, Option<Tape>) {
        let d = &self.dims;
        let (tn, b, e, sw, h) = (
            d.inner.steps,
            d.inner.batch,
            d.inner.input,
            d.state_width(),
            d.hidden(),
        );
        assert_eq!(x.len(), tn * b * e, "screened kernel: x");
        assert_eq!(state.len(), b * sw, "screened kernel: state");
        assert_eq!(params.len(), d.params_len(), "screened kernel: parameters");
        let rows = screened_chunk_rows(d);
        let starts = chunk_starts(b, rows);
        let chunks = map_chunks(&starts, |r0| {
            let bc = rows.min(b - r0);
            forward_chunk(d, r0, bc, &x, &state, &params, self.resets.as_deref())
        });
        // Not pooled: it becomes the output tensor.
        let mut z = vec![0.0; d.output_len()];
        let (y, last) = z.split_at_mut(tn * b * h);
        for (c, &r0) in chunks.iter().zip(&starts) {
            let bc = c.inner.rows;
            let hout = &c.inner.layers[c.inner.layers.len() - 1].hout;
            for t in 0..tn {
                d.inner
                    .seq()
                    .scatter_step(&hout[t * bc * h..(t + 1) * bc * h], h, t, r0, y);
            }
            last[r0 * sw..(r0 + bc) * sw].copy_from_slice(&c.last);
        }
        let tape = finish_inputs(keep_tape, [x, state, params], |params| Tape {
            dims: d.clone(),
            rows,
            params,
            chunks,
        });
        (z, tape)
    }

    fn backward(tape: &Tape, grad: &[f32], wanted: [bool; 3]) -> [Option<Vec<f32>>; 3] {
        let d = &tape.dims;
        let (b, e, sw) = (d.inner.batch, d.inner.input, d.state_width());
        let starts = chunk_starts(b, tape.rows);
        let wt = TransposedWeights::new(d, &tape.params);
        let grads = map_chunks(&starts, |r0| {
            let c = &tape.chunks[r0 / tape.rows];
            backward_chunk(d, r0, c, &tape.params, &wt, grad, wanted)
        });
        assemble_grads(grads, &starts, d.inner.seq(), [e, sw], wanted)
    }
}

/// Runs `core` fused over `x` (`[T, B, E]`, or `[B, T, E]` when `layout` is batch-major) from
/// `state` with resets at `episode_starts` (row-major `[B, T]`); `None` off the flex backend or
/// when its inner core is not one the stack kernel covers. The outputs come in the input's
/// layout.
pub(crate) fn run_screened(
    core: &crate::screened::Screened,
    x: &burn::tensor::Tensor<3>,
    layout: SeqLayout,
    state: &crate::state::CoreState,
    episode_starts: Option<&[bool]>,
) -> Option<(burn::tensor::Tensor<3>, crate::state::CoreState)> {
    use crate::modular_kernel::{
        flat, flat_params, modular_kernels_enabled, param_layout, split_parts, stack_dims,
    };
    use burn::tensor::Tensor;
    if !modular_kernels_enabled() || !crate::host_op::on_flex(&state.parts[0]) {
        return None;
    }
    let inner = stack_dims(&core.inner, x, layout)?;
    let [d0, d1, e] = x.dims();
    let (t, b) = (inner.steps, inner.batch);
    let resets = crate::core::time_major_flags(episode_starts, b, t);
    let [_, attention] = core.query.weight.dims();
    let inner_params = param_layout(&inner).1;
    let dims = ScreenedDims {
        inner,
        short_term: core.short_term,
        relevant: core.relevant,
        attention,
        lambda: core.lambda as f32,
        inner_params,
    };
    let widths: Vec<usize> = state.parts.iter().map(|p| p.dims()[1]).collect();
    let (h, sw, len) = (dims.hidden(), dims.state_width(), dims.output_len());
    let memory = vec![
        flat(core.query.weight.val()),
        flat(core.key.weight.val()),
        flat(core.score.weight.val()),
    ];
    let inputs = [
        x.clone().reshape([t * b, e]),
        Tensor::cat(state.parts.clone(), 1),
        flat_params(&core.inner, memory),
    ];
    let op = ScreenedOp { dims, resets };
    let z = crate::host_op::run(&op, &inputs, [1, len])?;
    let y = z.clone().narrow(1, 0, t * b * h).reshape([d0, d1, h]);
    let last = z.narrow(1, t * b * h, b * sw).reshape([b, sw]);
    Some((y, split_parts(last, &widths)))
}

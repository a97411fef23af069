//! One row's communication-attention head — the forward's scores and read, the backward's
//! gradients — with every module's accumulators in SIMD registers where the module count is
//! known at compile time, else module by module.
//!
//! A head's keys and values are `key`/`value` floats (32 at the defaults: two AVX-512 vectors),
//! so the per-module loops ([`dot_simd`], [`add_term_simd`]) spent more on loading, storing and
//! bounds-checking their operands than on arithmetic. With `N` modules fixed at compile time
//! ([`dispatch`]), each chunk of a head's query (or read gradient) is loaded once and every
//! module's dot-product accumulator and the read stay in registers; the operations and their
//! order per element are those of the loops (`N = 0`), so the results are the same bits.

use pulp::Simd;

use super::CommDims;
use crate::host_math::{add_term_simd, dot_simd, weighted_sum_simd};

/// Lanes of `S`'s `f32` vector.
#[inline(always)]
fn lanes<S: Simd>() -> usize {
    std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>()
}

/// The vector of `v` starting at `at`.
#[inline(always)]
fn load<S: Simd>(v: &[f32], at: usize) -> S::f32s {
    S::as_simd_f32s(&v[at..at + lanes::<S>()]).0[0]
}

/// The vector of `v` starting at `at`, to write.
#[inline(always)]
fn slot<S: Simd>(v: &mut [f32], at: usize) -> &mut S::f32s {
    &mut S::as_mut_simd_f32s(&mut v[at..at + lanes::<S>()]).0[0]
}

/// `w·x` as the first term of a sum, else `w·x + y` (as [`add_term_simd`]).
#[inline(always)]
fn term<S: Simd>(s: S, first: bool, w: S::f32s, x: S::f32s, y: S::f32s) -> S::f32s {
    if first {
        s.mul_f32s(w, x)
    } else {
        s.mul_add_f32s(w, x, y)
    }
}

/// Where one head of one row lives in its buffers (the same offsets index the keys' and values'
/// gradient buffer).
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeadAt {
    /// The query's offset.
    pub query: usize,
    /// Module 0's key and value offsets; module `j`'s are `j·stride` further.
    pub key0: usize,
    pub value0: usize,
    pub stride: usize,
    /// Modules, key size and value size.
    pub modules: usize,
    pub key: usize,
    pub value: usize,
}

impl HeadAt {
    /// Module `j`'s key offset.
    #[inline(always)]
    fn key_of(&self, j: usize) -> usize {
        self.key0 + j * self.stride
    }

    /// Module `j`'s value offset.
    #[inline(always)]
    fn value_of(&self, j: usize) -> usize {
        self.value0 + j * self.stride
    }
}

/// A step's rows of attention heads, run with `N` modules in registers, or module by module
/// when `N = 0` (any module count, key or value size).
pub(crate) trait HeadRows {
    fn rows<S: Simd, const N: usize>(self, s: S);
}

/// Runs `rows` with the module count as a compile-time constant where the fused heads take it
/// (2, 3, 4, 6 or 8 modules, keys and values whole vectors of `S`), else module by module.
#[inline(always)]
pub(crate) fn dispatch<S: Simd, R: HeadRows>(s: S, rows: R, c: CommDims, modules: usize) {
    let l = lanes::<S>();
    match (c.key % l == 0 && c.value % l == 0, modules) {
        (true, 2) => rows.rows::<S, 2>(s),
        (true, 3) => rows.rows::<S, 3>(s),
        (true, 4) => rows.rows::<S, 4>(s),
        (true, 6) => rows.rows::<S, 6>(s),
        (true, 8) => rows.rows::<S, 8>(s),
        _ => rows.rows::<S, 0>(s),
    }
}

/// The forward's scores of one head: `scores[j] = q·k_j · scale` over the modules' keys in
/// `keys` (the query in `qkv`), as `dot_simd(q, k_j) · scale`.
#[inline(always)]
pub(crate) fn head_scores<S: Simd, const N: usize>(
    s: S,
    at: &HeadAt,
    qkv: &[f32],
    keys: &[f32],
    scale: f32,
    scores: &mut [f32],
) {
    if N == 0 {
        let q = &qkv[at.query..][..at.key];
        for (j, score) in scores[..at.modules].iter_mut().enumerate() {
            *score = dot_simd(s, q, &keys[at.key_of(j)..][..at.key]) * scale;
        }
        return;
    }
    debug_assert_eq!(at.modules, N);
    let l = lanes::<S>();
    let mut acc = [s.splat_f32s(0.0); N];
    for c in (0..at.key).step_by(l) {
        let q = load::<S>(qkv, at.query + c);
        for (j, a) in acc.iter_mut().enumerate() {
            *a = s.mul_add_f32s(q, load::<S>(keys, at.key_of(j) + c), *a);
        }
    }
    for (score, &a) in scores.iter_mut().zip(&acc) {
        *score = s.reduce_sum_f32s(a) * scale;
    }
}

/// The read of one head, `out = Σ_j att_j v_j` in `j` order (as [`weighted_sum_simd`]), the
/// values in `values`.
#[inline(always)]
pub(crate) fn head_read<S: Simd, const N: usize>(
    s: S,
    at: &HeadAt,
    att: &[f32],
    values: &[f32],
    out: &mut [f32],
) {
    if N == 0 {
        weighted_sum_simd(s, out, &att[..at.modules], |j| {
            &values[at.value_of(j)..][..at.value]
        });
        return;
    }
    let l = lanes::<S>();
    for c in (0..at.value).step_by(l) {
        let mut r = s.splat_f32s(0.0);
        for (j, &w) in att[..N].iter().enumerate() {
            r = term(
                s,
                j == 0,
                s.splat_f32s(w),
                load::<S>(values, at.value_of(j) + c),
                r,
            );
        }
        *slot::<S>(out, c) = r;
    }
}

/// The gradient buffers of one head's backward.
pub(crate) struct HeadGrads<'a> {
    /// Of the queries (the query's offset of [`HeadAt`]).
    pub dq: &'a mut [f32],
    /// Of the keys and values, when not in `dq`'s buffer.
    pub dk: Option<&'a mut [f32]>,
    /// The keys' and values' gradients start here (`=`, else `+=`).
    pub first: bool,
    /// The query's gradient starts here.
    pub dq_first: bool,
}

/// What one head's backward reads: where it lies, its attention `att` over the modules, the
/// read's gradient `dread`, the queries `qkv` and the keys and values `keys` (the forward's),
/// the scores' scale.
pub(crate) struct HeadInputs<'a> {
    pub at: HeadAt,
    pub att: &'a [f32],
    pub dread: &'a [f32],
    pub qkv: &'a [f32],
    pub keys: &'a [f32],
    pub scale: f32,
}

/// The backward of one head (one row, one active module) of the communication attention:
/// rebuilds the read into `read`, and adds `att_j·dread` to every value's gradient, `ds_j·q` to
/// every key's and `Σ_j ds_j k_j` to the query's, `ds_j = att_j (dread·v_j − Σ_m att_m
/// dread·v_m) · scale`.
#[inline(always)]
pub(crate) fn head_backward<S: Simd, const N: usize>(
    s: S,
    h: &HeadInputs,
    read: &mut [f32],
    g: HeadGrads,
) {
    if N == 0 {
        head_backward_by_module(s, h, read, g);
        return;
    }
    let (at, att, dread, qkv, keys, scale) = (&h.at, h.att, h.dread, h.qkv, h.keys, h.scale);
    let l = lanes::<S>();
    let (dq, mut dk, first, dq_first) = (g.dq, g.dk, g.first, g.dq_first);
    let mut acc = [s.splat_f32s(0.0); N];
    for c in (0..at.value).step_by(l) {
        let d = load::<S>(dread, c);
        let mut r = s.splat_f32s(0.0);
        let dkv: &mut [f32] = match dk.as_deref_mut() {
            Some(b) => b,
            None => &mut *dq,
        };
        for (j, a) in acc.iter_mut().enumerate() {
            let v = load::<S>(keys, at.value_of(j) + c);
            *a = s.mul_add_f32s(d, v, *a);
            let w = s.splat_f32s(att[j]);
            r = term(s, j == 0, w, v, r);
            let dv = slot::<S>(dkv, at.value_of(j) + c);
            *dv = term(s, first, w, d, *dv);
        }
        *slot::<S>(read, c) = r;
    }
    let mut datt = [0.0f32; N];
    for (g, &a) in datt.iter_mut().zip(&acc) {
        *g = s.reduce_sum_f32s(a);
    }
    let mean: f32 = att[..N].iter().zip(&datt).map(|(a, g)| a * g).sum();
    let mut ds = [0.0f32; N];
    for ((d, &a), &g) in ds.iter_mut().zip(&att[..N]).zip(&datt) {
        *d = a * (g - mean) * scale;
    }
    for c in (0..at.key).step_by(l) {
        let q = load::<S>(qkv, at.query + c);
        let mut gq = load::<S>(dq, at.query + c);
        {
            let dkv: &mut [f32] = match dk.as_deref_mut() {
                Some(b) => b,
                None => &mut *dq,
            };
            for (j, &d) in ds.iter().enumerate() {
                let w = s.splat_f32s(d);
                gq = term(
                    s,
                    j == 0 && dq_first,
                    w,
                    load::<S>(keys, at.key_of(j) + c),
                    gq,
                );
                let dk = slot::<S>(dkv, at.key_of(j) + c);
                *dk = term(s, first, w, q, *dk);
            }
        }
        *slot::<S>(dq, at.query + c) = gq;
    }
}

/// [`head_backward`] module by module, for any module count and key and value size.
#[inline(always)]
fn head_backward_by_module<S: Simd>(s: S, h: &HeadInputs, read: &mut [f32], g: HeadGrads) {
    let (at, att, dread, qkv, keys, scale) = (&h.at, h.att, h.dread, h.qkv, h.keys, h.scale);
    let (dq, mut dk, first, dq_first) = (g.dq, g.dk, g.first, g.dq_first);
    let (n, key, value) = (at.modules, at.key, at.value);
    let value_of = |j: usize| &keys[at.value_of(j)..][..value];
    // The dot products `dread·v_j`, on the stack up to 16 modules.
    let (mut small, mut large) = ([0.0f32; 16], Vec::new());
    let datt: &mut [f32] = if n <= small.len() {
        &mut small[..n]
    } else {
        large.resize(n, 0.0);
        &mut large
    };
    for (j, g) in datt.iter_mut().enumerate() {
        *g = dot_simd(s, dread, value_of(j));
    }
    let att = &att[..n];
    weighted_sum_simd(s, read, att, value_of);
    let mean: f32 = att.iter().zip(&*datt).map(|(a, g)| a * g).sum();
    let q = &qkv[at.query..][..key];
    for j in 0..n {
        let ds = att[j] * (datt[j] - mean) * scale;
        let (kb, vb) = (at.key_of(j), at.value_of(j));
        let dkv: &mut [f32] = match dk.as_deref_mut() {
            Some(b) => b,
            None => &mut *dq,
        };
        add_term_simd(s, first, &mut dkv[vb..vb + value], att[j], dread);
        add_term_simd(s, first, &mut dkv[kb..kb + key], ds, q);
        let dq = &mut dq[at.query..at.query + key];
        add_term_simd(s, j == 0 && dq_first, dq, ds, &keys[kb..kb + key]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: usize = 4;
    const KEY: usize = 32;
    const VALUE: usize = 32;
    /// One module's columns: query, key, value.
    const W: usize = 3 * KEY;

    /// Deterministic values in about `[−1, 1]`.
    fn noise(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Module 1's head: its query, every module's key and value.
    const AT: HeadAt = HeadAt {
        query: W,
        key0: KEY,
        value0: 2 * KEY,
        stride: W,
        modules: N,
        key: KEY,
        value: VALUE,
    };

    /// The fused heads (`N` modules in registers) against the module-by-module ones.
    struct Check;

    impl pulp::WithSimd for Check {
        type Output = ();

        fn with_simd<S: Simd>(self, s: S) {
            assert_eq!(KEY % lanes::<S>(), 0);
            let (qkv, keys) = (noise(N * W, 1), noise(N * W, 2));
            let scale = 0.17;
            let (mut fused, mut by_module) = ([0.0; N], [0.0; N]);
            head_scores::<S, N>(s, &AT, &qkv, &keys, scale, &mut fused);
            head_scores::<S, 0>(s, &AT, &qkv, &keys, scale, &mut by_module);
            assert_eq!(bits(&fused), bits(&by_module), "scores");
            let att = [0.1, 0.4, 0.3, 0.2];
            let (mut fused, mut by_module) = (vec![0.0; VALUE], vec![1.0; VALUE]);
            head_read::<S, N>(s, &AT, &att, &keys, &mut fused);
            head_read::<S, 0>(s, &AT, &att, &keys, &mut by_module);
            assert_eq!(bits(&fused), bits(&by_module), "read");
            let dread = noise(VALUE, 3);
            for (first, dq_first, own_dk) in [
                (true, true, false),
                (false, false, false),
                (true, true, true),
                (false, true, true),
            ] {
                // Garbage where a gradient starts (`=`), so that a missing start shows.
                let (mut dq_f, mut dk_f) = (noise(N * W, 4), noise(N * W, 5));
                let (mut dq_m, mut dk_m) = (dq_f.clone(), dk_f.clone());
                let (mut read_f, mut read_m) = (vec![0.0; VALUE], vec![0.0; VALUE]);
                let fused = HeadGrads {
                    dq: &mut dq_f,
                    dk: own_dk.then_some(&mut dk_f[..]),
                    first,
                    dq_first,
                };
                let inputs = HeadInputs {
                    at: AT,
                    att: &att,
                    dread: &dread,
                    qkv: &qkv,
                    keys: &keys,
                    scale,
                };
                head_backward::<S, N>(s, &inputs, &mut read_f, fused);
                let by_module = HeadGrads {
                    dq: &mut dq_m,
                    dk: own_dk.then_some(&mut dk_m[..]),
                    first,
                    dq_first,
                };
                head_backward::<S, 0>(s, &inputs, &mut read_m, by_module);
                let case = format!("first {first}, dq_first {dq_first}, own dk {own_dk}");
                assert_eq!(bits(&read_f), bits(&read_m), "read, {case}");
                assert_eq!(bits(&dq_f), bits(&dq_m), "dq, {case}");
                assert_eq!(bits(&dk_f), bits(&dk_m), "dk, {case}");
            }
        }
    }

    #[test]
    fn fused_heads_equal_the_module_by_module_ones_bit_for_bit() {
        pulp::Arch::new().dispatch(Check);
        pulp::WithSimd::with_simd(Check, pulp::Scalar::new());
    }
}

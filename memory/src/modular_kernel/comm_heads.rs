//! One row's communication-attention head with every module's accumulators in SIMD registers:
//! the forward's scores and read, the backward's gradients, bit for bit the per-module loops.
//!
//! A head's keys and values are `key`/`value` floats (32 at the defaults: two AVX-512 vectors),
//! so the per-module loops ([`dot_simd`](crate::host_math::dot_simd),
//! [`add_term_simd`](crate::host_math::add_term_simd)) spent more on loading, storing and
//! bounds-checking their operands than on arithmetic. Here, with the module count `N` known at
//! compile time, each chunk of a head's query (or read gradient) is loaded once and every
//! module's dot-product accumulator and the read stay in registers; the operations and their
//! order per element are those of the loops, so the results are the same bits.

use pulp::Simd;

/// Lanes of `S`'s `f32` vector.
#[inline(always)]
pub(crate) fn lanes<S: Simd>() -> usize {
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

/// `w·x` as the first term of a sum, else `w·x + y` (as
/// [`add_term_simd`](crate::host_math::add_term_simd)).
#[inline(always)]
fn term<S: Simd>(s: S, first: bool, w: S::f32s, x: S::f32s, y: S::f32s) -> S::f32s {
    if first {
        s.mul_f32s(w, x)
    } else {
        s.mul_add_f32s(w, x, y)
    }
}

/// Where one head of one row lives in its buffers: the query's offset, and every module's key
/// and value offsets (each `key`/`value` long; the same offsets index the keys' and values'
/// gradient buffer).
pub(crate) struct HeadAt<const N: usize> {
    pub query: usize,
    pub keys: [usize; N],
    pub values: [usize; N],
    /// Key and value size.
    pub key: usize,
    pub value: usize,
}

/// Whether the fused heads run for these sizes: keys and values whole vectors of `S`.
#[inline(always)]
pub(crate) fn fits<S: Simd>(key: usize, value: usize) -> bool {
    let l = lanes::<S>();
    key % l == 0 && value % l == 0
}

/// The forward's scores of one head: `scores[j] = q·k_j · scale` over `N` modules' keys in
/// `keys` (the query in `qkv`), as `dot_simd(q, k_j) · scale`.
#[inline(always)]
pub(crate) fn head_scores<S: Simd, const N: usize>(
    s: S,
    at: &HeadAt<N>,
    qkv: &[f32],
    keys: &[f32],
    scale: f32,
    scores: &mut [f32],
) {
    let l = lanes::<S>();
    let mut acc = [s.splat_f32s(0.0); N];
    for c in (0..at.key).step_by(l) {
        let q = load::<S>(qkv, at.query + c);
        for (a, &k) in acc.iter_mut().zip(&at.keys) {
            *a = s.mul_add_f32s(q, load::<S>(keys, k + c), *a);
        }
    }
    for (score, &a) in scores.iter_mut().zip(&acc) {
        *score = s.reduce_sum_f32s(a) * scale;
    }
}

/// The read of one head, `out = Σ_j att_j v_j` in `j` order (as `weighted_sum_simd`), the
/// values in `values`.
#[inline(always)]
pub(crate) fn head_read<S: Simd, const N: usize>(
    s: S,
    at: &HeadAt<N>,
    att: &[f32],
    values: &[f32],
    out: &mut [f32],
) {
    let l = lanes::<S>();
    for c in (0..at.value).step_by(l) {
        let mut r = s.splat_f32s(0.0);
        for (j, (&v, &w)) in at.values.iter().zip(att).enumerate() {
            r = term(s, j == 0, s.splat_f32s(w), load::<S>(values, v + c), r);
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

/// The backward of one head (one row, one active module) of the communication attention, from
/// the read's gradient `dread` and the head's attention `att`: rebuilds the read into `read`,
/// and adds `att_j·dread` to every value's gradient, `ds_j·q` to every key's and `Σ_j ds_j k_j`
/// to the query's, `ds_j = att_j (dread·v_j − Σ_m att_m dread·v_m) · scale` — the per-module
/// loops' arithmetic in their order.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn head_backward<S: Simd, const N: usize>(
    s: S,
    at: &HeadAt<N>,
    att: &[f32],
    dread: &[f32],
    qkv: &[f32],
    keys: &[f32],
    scale: f32,
    read: &mut [f32],
    g: HeadGrads,
) {
    let l = lanes::<S>();
    let HeadGrads {
        dq,
        mut dk,
        first,
        dq_first,
    } = g;
    let mut acc = [s.splat_f32s(0.0); N];
    for c in (0..at.value).step_by(l) {
        let d = load::<S>(dread, c);
        let mut r = s.splat_f32s(0.0);
        let dkv: &mut [f32] = match dk.as_deref_mut() {
            Some(b) => b,
            None => &mut *dq,
        };
        for j in 0..N {
            let v = load::<S>(keys, at.values[j] + c);
            acc[j] = s.mul_add_f32s(d, v, acc[j]);
            let w = s.splat_f32s(att[j]);
            r = term(s, j == 0, w, v, r);
            let dv = slot::<S>(dkv, at.values[j] + c);
            *dv = term(s, first, w, d, *dv);
        }
        *slot::<S>(read, c) = r;
    }
    let mut datt = [0.0f32; N];
    for j in 0..N {
        datt[j] = s.reduce_sum_f32s(acc[j]);
    }
    let mean: f32 = att[..N].iter().zip(&datt).map(|(a, g)| a * g).sum();
    let mut ds = [0.0f32; N];
    for j in 0..N {
        ds[j] = att[j] * (datt[j] - mean) * scale;
    }
    for c in (0..at.key).step_by(l) {
        let q = load::<S>(qkv, at.query + c);
        let mut gq = load::<S>(dq, at.query + c);
        {
            let dkv: &mut [f32] = match dk.as_deref_mut() {
                Some(b) => b,
                None => &mut *dq,
            };
            for (j, (&kb, &d)) in at.keys.iter().zip(&ds).enumerate() {
                let w = s.splat_f32s(d);
                gq = term(s, j == 0 && dq_first, w, load::<S>(keys, kb + c), gq);
                let dk = slot::<S>(dkv, kb + c);
                *dk = term(s, first, w, q, *dk);
            }
        }
        *slot::<S>(dq, at.query + c) = gq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_math::{add_term_simd, dot_simd, weighted_sum_simd};

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

    fn head() -> HeadAt<N> {
        HeadAt {
            query: W,
            keys: std::array::from_fn(|j| j * W + KEY),
            values: std::array::from_fn(|j| j * W + 2 * KEY),
            key: KEY,
            value: VALUE,
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The per-module loops the fused heads replace (the kernels' code before them).
    #[allow(clippy::too_many_arguments)]
    fn loop_backward<S: Simd>(
        s: S,
        at: &HeadAt<N>,
        att: &[f32],
        dread: &[f32],
        qkv: &[f32],
        keys: &[f32],
        scale: f32,
        read: &mut [f32],
        HeadGrads {
            dq,
            mut dk,
            first,
            dq_first,
        }: HeadGrads,
    ) {
        let value = |j: usize| &keys[at.values[j]..][..VALUE];
        let datt: Vec<f32> = (0..N).map(|j| dot_simd(s, dread, value(j))).collect();
        weighted_sum_simd(s, read, att, value);
        let mean: f32 = att.iter().zip(&datt).map(|(a, g)| a * g).sum();
        for j in 0..N {
            let ds = att[j] * (datt[j] - mean) * scale;
            let (kb, vb, qb) = (at.keys[j], at.values[j], at.query);
            let dkv: &mut [f32] = match dk.as_deref_mut() {
                Some(b) => b,
                None => &mut *dq,
            };
            add_term_simd(s, first, &mut dkv[vb..vb + VALUE], att[j], dread);
            add_term_simd(s, first, &mut dkv[kb..kb + KEY], ds, &qkv[qb..qb + KEY]);
            add_term_simd(
                s,
                j == 0 && dq_first,
                &mut dq[qb..qb + KEY],
                ds,
                &keys[kb..kb + KEY],
            );
        }
    }

    struct Check;

    impl pulp::WithSimd for Check {
        type Output = ();

        fn with_simd<S: Simd>(self, s: S) {
            assert!(fits::<S>(KEY, VALUE));
            let at = head();
            let (qkv, keys) = (noise(N * W, 1), noise(N * W, 2));
            let scale = 0.17;
            let mut scores = [0.0; N];
            head_scores(s, &at, &qkv, &keys, scale, &mut scores);
            for j in 0..N {
                let k = &keys[at.keys[j]..][..KEY];
                let want = dot_simd(s, &qkv[at.query..][..KEY], k) * scale;
                assert_eq!(scores[j].to_bits(), want.to_bits(), "score {j}");
            }
            let att = [0.1, 0.4, 0.3, 0.2];
            let (mut read, mut want) = (vec![0.0; VALUE], vec![1.0; VALUE]);
            head_read(s, &at, &att, &keys, &mut read);
            weighted_sum_simd(s, &mut want, &att, |j| &keys[at.values[j]..][..VALUE]);
            assert_eq!(bits(&read), bits(&want), "read");
            let dread = noise(VALUE, 3);
            for (first, dq_first, own_dk) in [
                (true, true, false),
                (false, false, false),
                (true, true, true),
                (false, true, true),
            ] {
                let grads = |seed| (noise(N * W, seed), noise(N * W, seed + 1));
                let ((mut dq_f, mut dk_f), (mut dq_l, mut dk_l)) = (grads(4), grads(4));
                let (mut read_f, mut read_l) = (vec![0.0; VALUE], vec![0.0; VALUE]);
                let fused = HeadGrads {
                    dq: &mut dq_f,
                    dk: own_dk.then_some(&mut dk_f[..]),
                    first,
                    dq_first,
                };
                head_backward(s, &at, &att, &dread, &qkv, &keys, scale, &mut read_f, fused);
                let looped = HeadGrads {
                    dq: &mut dq_l,
                    dk: own_dk.then_some(&mut dk_l[..]),
                    first,
                    dq_first,
                };
                loop_backward(
                    s,
                    &at,
                    &att,
                    &dread,
                    &qkv,
                    &keys,
                    scale,
                    &mut read_l,
                    looped,
                );
                let case = format!("first {first}, dq_first {dq_first}, own dk {own_dk}");
                assert_eq!(bits(&read_f), bits(&read_l), "read, {case}");
                assert_eq!(bits(&dq_f), bits(&dq_l), "dq, {case}");
                assert_eq!(bits(&dk_f), bits(&dk_l), "dk, {case}");
            }
        }
    }

    #[test]
    fn fused_heads_equal_the_per_module_loops_bit_for_bit() {
        pulp::Arch::new().dispatch(Check);
        pulp::WithSimd::with_simd(Check, pulp::Scalar::new());
    }
}

//! Matrix products of a few rows (`m ≤ SMALL_ROWS`) by a row-major right operand, without gemm's
//! per-call work: at a training loop's sizes (2–4 rows per chunk and step) gemm spent more on
//! choosing its blocking, allocating its packing buffers and its edge microkernels than on the
//! arithmetic.

use std::mem::size_of;

/// Most rows [`small_rows_product`] takes; above it gemm's packing pays for itself.
pub(crate) const SMALL_ROWS: usize = 4;

/// A strided block read as a matrix: element `(i, j)` at `offset + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a> {
    /// The whole buffer.
    pub data: &'a [f32],
    /// Index of element `(0, 0)`.
    pub offset: usize,
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a> Strided<'a> {
    /// The block at `offset` with gemm-style strides (non-negative here: row-major storage).
    pub fn new(data: &'a [f32], offset: usize, rs: isize, cs: isize) -> Self {
        let stride = |v: isize| usize::try_from(v).expect("non-negative strides");
        Strided {
            data,
            offset,
            rs: stride(rs),
            cs: stride(cs),
        }
    }
}

/// `dst (+)= lhs · rhs` for `m ≤ SMALL_ROWS` rows of `lhs [m, k]` and `rhs [k, n]` with unit column
/// stride; row `i` of `dst` starts at `dst_offset + i·dst_stride`. Each output row is one
/// sum over `k` in order, the same whichever rows share the call (a forward and a backward
/// recomputing it with the same rows get the same bits).
#[allow(clippy::too_many_arguments)]
pub(crate) fn small_rows_product(
    dst: &mut [f32],
    dst_offset: usize,
    dst_stride: usize,
    accumulate: bool,
    lhs: Strided,
    rhs: Strided,
    [m, k, n]: [usize; 3],
) {
    assert!(m <= SMALL_ROWS && rhs.cs == 1, "small_rows_product: shape");
    let rows = Rows {
        dst,
        dst_offset,
        dst_stride,
        accumulate,
        lhs,
        rhs,
        k,
        n,
    };
    let arch = pulp::Arch::new();
    match m {
        0 => {}
        1 => arch.dispatch(Fixed::<1>(rows)),
        2 => arch.dispatch(Fixed::<2>(rows)),
        3 => arch.dispatch(Fixed::<3>(rows)),
        _ => arch.dispatch(Fixed::<4>(rows)),
    }
}

/// The operands of [`small_rows_product`].
struct Rows<'a> {
    dst: &'a mut [f32],
    dst_offset: usize,
    dst_stride: usize,
    accumulate: bool,
    lhs: Strided<'a>,
    rhs: Strided<'a>,
    k: usize,
    n: usize,
}

/// The product for a row count `M` known when compiling, so that the accumulators stay in
/// registers.
struct Fixed<'a, const M: usize>(Rows<'a>);

/// Vectors per block of columns (with `M ≤ 4` rows: 16 accumulators).
const BLOCK_VECTORS: usize = 4;

impl<const M: usize> pulp::WithSimd for Fixed<'_, M> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        let Fixed(mut op) = self;
        let n = op.n;
        let lanes = size_of::<S::f32s>() / size_of::<f32>();
        let mut c0 = 0;
        while c0 + BLOCK_VECTORS * lanes <= n {
            block::<S, M, BLOCK_VECTORS>(s, &mut op, c0);
            c0 += BLOCK_VECTORS * lanes;
        }
        while c0 + lanes <= n {
            block::<S, M, 1>(s, &mut op, c0);
            c0 += lanes;
        }
        // The last columns, one at a time (the same fused sums, in the same order).
        let (a, w) = (op.lhs, op.rhs);
        for c in c0..n {
            for r in 0..M {
                let mut total = 0.0f32;
                for kk in 0..op.k {
                    let x = a.data[a.offset + r * a.rs + kk * a.cs];
                    total = x.mul_add(w.data[w.offset + kk * w.rs + c], total);
                }
                let o = &mut op.dst[op.dst_offset + r * op.dst_stride + c];
                *o = if op.accumulate { *o + total } else { total };
            }
        }
    }
}

/// Columns `c0..c0 + V·lanes` of the product for `M` rows: `M·V` accumulators held in
/// registers over the whole sum (both counts known when compiling).
#[inline(always)]
fn block<S: pulp::Simd, const M: usize, const V: usize>(s: S, op: &mut Rows, c0: usize) {
    let lanes = size_of::<S::f32s>() / size_of::<f32>();
    let cols = V * lanes;
    let (a, w) = (op.lhs, op.rhs);
    let mut acc = [[s.splat_f32s(0.0); V]; M];
    for kk in 0..op.k {
        let (wv, _) = S::as_simd_f32s(&w.data[w.offset + kk * w.rs + c0..][..cols]);
        let wv: &[S::f32s; V] = wv.try_into().expect("V vectors");
        let xs: [f32; M] = std::array::from_fn(|r| a.data[a.offset + r * a.rs + kk * a.cs]);
        for (acc_r, &x) in acc.iter_mut().zip(&xs) {
            let x = s.splat_f32s(x);
            for (acc_v, &wv) in acc_r.iter_mut().zip(wv) {
                *acc_v = s.mul_add_f32s(x, wv, *acc_v);
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        let at = op.dst_offset + r * op.dst_stride + c0;
        let (out, _) = S::as_mut_simd_f32s(&mut op.dst[at..at + cols]);
        for (o, &v) in out.iter_mut().zip(acc_r) {
            *o = if op.accumulate { s.add_f32s(*o, v) } else { v };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row count, strided and transposed left operands, column counts around the vector
    /// widths, accumulation: against a plain f64 product.
    #[test]
    fn small_rows_product_matches_a_plain_product() {
        for m in 0..=SMALL_ROWS {
            for (k, n) in [(1, 1), (3, 7), (32, 128), (17, 33), (64, 80), (5, 200)] {
                for transposed in [false, true] {
                    for accumulate in [false, true] {
                        let a: Vec<f32> = (0..m * k + 3)
                            .map(|i| (i % 13) as f32 * 0.37 - 2.0)
                            .collect();
                        let w_stride = n + 5;
                        let w: Vec<f32> = (0..k * w_stride + 2)
                            .map(|i| (i % 11) as f32 * 0.21 - 1.0)
                            .collect();
                        // lhs at offset 3, rows `k` apart when transposed (stored [k, m]).
                        let lhs = if transposed {
                            Strided {
                                data: &a,
                                offset: 3,
                                rs: 1,
                                cs: m.max(1),
                            }
                        } else {
                            Strided {
                                data: &a,
                                offset: 3,
                                rs: k,
                                cs: 1,
                            }
                        };
                        let rhs = Strided {
                            data: &w,
                            offset: 2,
                            rs: w_stride,
                            cs: 1,
                        };
                        let dst_stride = n + 2;
                        let mut dst = vec![0.5f32; m * dst_stride + 1];
                        let before = dst.clone();
                        small_rows_product(
                            &mut dst,
                            1,
                            dst_stride,
                            accumulate,
                            lhs,
                            rhs,
                            [m, k, n],
                        );
                        for r in 0..m {
                            for c in 0..n {
                                let mut want = 0.0f64;
                                for kk in 0..k {
                                    let x = a[lhs.offset + r * lhs.rs + kk * lhs.cs] as f64;
                                    want += x * w[2 + kk * w_stride + c] as f64;
                                }
                                let at = 1 + r * dst_stride + c;
                                if accumulate {
                                    want += before[at] as f64;
                                }
                                let got = dst[at] as f64;
                                assert!(
                                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                                    "{m} {k} {n} {r} {c}: {got} {want}"
                                );
                            }
                            // Nothing outside the block is written.
                            let end = 1 + r * dst_stride + n;
                            assert_eq!(
                                dst[end..(end + 2).min(dst.len())],
                                before[end..(end + 2).min(dst.len())]
                            );
                        }
                        assert_eq!(dst[0], 0.5);
                    }
                }
            }
        }
    }
}

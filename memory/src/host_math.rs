//! Host-side f32 building blocks for the fused recurrent kernels: strided gemm, vectorisable
//! `exp`, sigmoid and tanh, and a pool of reusable buffers.

use std::cell::RefCell;
use std::sync::Mutex;

use crate::small_matmul::{small_rows_product, Strided, SMALL_ROWS};

/// Work (`m·n·k`) from which a matmul is split over threads; below it threads cost more than
/// they save. At 2^21 the per-step recurrent matmul at B = 32 (H = 128) went parallel, and the
/// LSTM's forward+backward took 32.5 ms on two threads against 25.1 ms on one; at 2^23, 22–25 ms.
const PARALLEL_WORK: usize = 1 << 23;

/// Work (`rows·n·k` of the recurrent matmul) from which one time step of a fused kernel is split
/// by batch rows over threads, each thread running its rows' matmul and gate math.
const PARALLEL_STEP_WORK: usize = 1 << 20;

/// Fewest values of a buffer the pool keeps or hands out.
const POOLED_MIN: usize = 1 << 14;

/// Most bytes the buffer pool keeps.
const POOL_BYTES: usize = 1 << 29;

/// Fewest values of a buffer the per-thread cache of small buffers keeps.
const SMALL_MIN: usize = 256;

/// Most buffers the per-thread cache of small buffers holds (each under [`POOLED_MIN`] values:
/// at most 2 MiB a thread).
const SMALL_HELD: usize = 32;

thread_local! {
    /// Buffers below [`POOLED_MIN`] given back on this thread: a step's scratch (a block of
    /// rows' gradients, gathered active rows, products) comes back every step, and allocating
    /// and freeing it each time cost 2 % of BRIMs' forward+backward in mimalloc.
    static SMALL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers given back by finished kernels. Fresh multi-megabyte allocations are `mmap`ed and
/// page-faulted on first touch, which costs as much as the kernels' matmuls at large batches.
static POOL: Mutex<Pool> = Mutex::new(Pool {
    buffers: Vec::new(),
    clock: 0,
});

/// The pooled buffers, each with when it was given back (a count of [`give`] calls).
struct Pool {
    buffers: Vec<(u64, Vec<f32>)>,
    clock: u64,
}

/// An empty buffer with room for `len` values, reusing the smallest pooled allocation that is
/// large enough.
fn take_empty(len: usize) -> Vec<f32> {
    let mut v = take_pooled(len);
    v.clear();
    v
}

/// A buffer of `len` values (pooled) holding whatever its last user left in it (zeros where it
/// is longer than before): for buffers of which every element is written before it is read,
/// which then skip `take_zeroed`'s pass over memory.
pub(crate) fn take_overwritten(len: usize) -> Vec<f32> {
    let mut v = take_pooled(len);
    if v.len() >= len {
        v.truncate(len);
    } else {
        v.resize(len, 0.0);
    }
    // Debug builds (the tests) poison it: an element read before it is written shows as NaN.
    if cfg!(debug_assertions) {
        v.fill(f32::NAN);
    }
    v
}

/// The smallest pooled buffer with room for `len` values, as its last user left it, or a new
/// empty one.
fn take_pooled(len: usize) -> Vec<f32> {
    // Below what the shared pool keeps: not worth the lock, and a short (or empty) request
    // must not take a large pooled buffer and shorten it — the next large request would then
    // zero it again (a whole `[T·Bc, ·]` tape buffer per call). This thread's small buffers.
    if len < POOLED_MIN {
        if len == 0 {
            return Vec::new();
        }
        let reused = SMALL.with_borrow_mut(|cache| {
            let best = (0..cache.len())
                .filter(|&i| cache[i].capacity() >= len)
                .min_by_key(|&i| cache[i].capacity());
            best.map(|i| cache.swap_remove(i))
        });
        return reused.unwrap_or_else(|| Vec::with_capacity(len));
    }
    let reused = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let best = pool
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| v.capacity() >= len)
            .min_by_key(|(_, (_, v))| v.capacity())
            .map(|(i, _)| i);
        best.map(|i| pool.buffers.swap_remove(i).1)
    };
    reused.unwrap_or_else(|| Vec::with_capacity(len))
}

/// A buffer of `len` zeros (pooled).
pub(crate) fn take_zeroed(len: usize) -> Vec<f32> {
    let mut v = take_empty(len);
    v.resize(len, 0.0);
    v
}

/// Rows `rows` of columns `col..col + cols` of a row-major `[·, width]` buffer, gathered into a
/// dense `[rows.len(), cols]` buffer (pooled), written once.
pub(crate) fn take_gathered(
    src: &[f32],
    width: usize,
    col: usize,
    cols: usize,
    rows: &[usize],
) -> Vec<f32> {
    let mut v = take_empty(rows.len() * cols);
    for &r in rows {
        v.extend_from_slice(&src[r * width + col..r * width + col + cols]);
    }
    v
}

/// A buffer of `rows` copies of `row` (pooled), written once.
pub(crate) fn take_repeated(row: &[f32], rows: usize) -> Vec<f32> {
    let mut v = take_empty(rows * row.len());
    for _ in 0..rows {
        v.extend_from_slice(row);
    }
    v
}

/// A copy of `src` (pooled).
pub(crate) fn take_copy(src: &[f32]) -> Vec<f32> {
    let mut v = take_empty(src.len());
    v.extend_from_slice(src);
    v
}

/// Returns a buffer to the pool (below [`POOLED_MIN`] values, to this thread's cache of small
/// buffers while it has room). When the pool is full, the buffers given back longest ago are
/// dropped to make room: those of a finished workload (a larger batch, another core) would
/// otherwise keep the current one's buffers out, and each of its calls would allocate and
/// page-fault its tape afresh (screened LSTM at B = 64 after BRIMs at B = 256: 25 % slower).
pub(crate) fn give(v: Vec<f32>) {
    let bytes = v.capacity() * 4;
    if v.capacity() < POOLED_MIN {
        if v.capacity() >= SMALL_MIN {
            SMALL.with_borrow_mut(|cache| {
                if cache.len() < SMALL_HELD {
                    cache.push(v);
                }
            });
        }
        return;
    }
    if bytes > POOL_BYTES {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    let mut held: usize = pool.buffers.iter().map(|(_, b)| b.capacity() * 4).sum();
    while held + bytes > POOL_BYTES {
        let oldest = (0..pool.buffers.len())
            .min_by_key(|&i| pool.buffers[i].0)
            .expect("a pool over its limit holds a buffer");
        held -= pool.buffers.swap_remove(oldest).1.capacity() * 4;
    }
    pool.clock += 1;
    let now = pool.clock;
    pool.buffers.push((now, v));
}

/// `dst.copy_from_slice(src)` with stores that bypass the cache where the CPU has them (x86-64's
/// streaming stores, on 16-byte aligned whole vectors): for rows written to a tape that is read
/// back only much later, so that writing them neither first reads their cache lines from memory
/// nor evicts what the step works on. Call [`stream_fence`] before the rows are read by
/// another thread.
#[inline]
pub(crate) fn stream_copy(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "stream_copy: lengths");
    #[cfg(target_arch = "x86_64")]
    if dst.as_ptr() as usize % 16 == 0 && dst.len() % 4 == 0 {
        use std::arch::x86_64::{_mm_loadu_ps, _mm_stream_ps};
        for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
            // SAFETY: SSE is part of x86-64; `s` holds 4 values to read, `d` 4 to write, 16-byte
            // aligned (its start is, and every chunk is 16 bytes on from it).
            unsafe { _mm_stream_ps(d.as_mut_ptr(), _mm_loadu_ps(s.as_ptr())) };
        }
        return;
    }
    dst.copy_from_slice(src);
}

/// Orders the streaming stores of [`stream_copy`] before later stores (a no-op elsewhere).
#[inline]
pub(crate) fn stream_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// Writes the row-major `[rows, cols]` matrix `src` into `dst` as `[cols, rows]`, a square tile
/// at a time (an element-by-element pass wrote every element to another cache line: 1 ns an
/// element, a tenth of a BRIMs backward at B = 1).
pub(crate) fn transpose_into(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    const TILE: usize = 16;
    let (src, dst) = (&src[..rows * cols], &mut dst[..rows * cols]);
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            for c in c0..c1 {
                let out = &mut dst[c * rows + r0..c * rows + r1];
                for (o, r) in out.iter_mut().zip(r0..r1) {
                    *o = src[r * cols + c];
                }
            }
        }
    }
}

/// A pooled copy of the row-major `[rows, cols]` matrix `src` as `[cols, rows]`: a per-step
/// product by `srcᵀ` then reads a dense operand (gemm packs a transposed one from strided reads
/// at every call).
pub(crate) fn take_transposed(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = take_overwritten(rows * cols);
    transpose_into(&mut t, src, rows, cols);
    t
}

/// A row-major matrix operand, optionally read transposed.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    /// Row-major storage of the matrix as stored (before any transpose).
    pub data: &'a [f32],
    /// Columns of the stored matrix.
    pub cols: usize,
    /// Use the transpose of the stored matrix.
    pub transposed: bool,
}

impl<'a> Mat<'a> {
    /// The stored row-major matrix with `cols` columns.
    pub fn new(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            cols,
            transposed: false,
        }
    }

    /// Its transpose (no copy).
    pub fn t(self) -> Self {
        Self {
            transposed: !self.transposed,
            ..self
        }
    }

    /// `(rows, cols)` as used, and `(row stride, column stride)`.
    fn view(&self) -> ((usize, usize), (isize, isize)) {
        let rows = self.data.len() / self.cols.max(1);
        if self.transposed {
            ((self.cols, rows), (1, self.cols as isize))
        } else {
            ((rows, self.cols), (self.cols as isize, 1))
        }
    }
}

/// `dst [m, n] (+)= lhs [m, k] · rhs [k, n]` (row-major `dst`); adds to `dst` when
/// `accumulate`, overwrites it otherwise.
pub(crate) fn matmul(dst: &mut [f32], accumulate: bool, lhs: Mat, rhs: Mat) {
    let work = lhs.data.len() / lhs.cols.max(1) * lhs.cols * rhs.cols;
    matmul_with(dst, accumulate, lhs, rhs, work >= PARALLEL_WORK)
}

/// [`matmul`] on the calling thread only (for work already split over threads).
pub(crate) fn matmul_serial(dst: &mut [f32], accumulate: bool, lhs: Mat, rhs: Mat) {
    matmul_with(dst, accumulate, lhs, rhs, false)
}

/// Batch rows per block of a fused kernel whose recurrent matmul costs `work_per_row`
/// multiply-adds per row and step: the whole batch in one block on one thread for small steps,
/// otherwise an even split over the rayon pool. Each block runs every step on its own thread
/// ([`step_blocks_mut`], [`for_each_block`]).
pub(crate) fn step_chunk_rows(batch: usize, work_per_row: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads < 2 || batch * work_per_row < PARALLEL_STEP_WORK {
        batch.max(1)
    } else {
        batch.div_ceil(threads).max(1)
    }
}

/// Every step's rows of each block of `rows` batch rows in a time-major `[steps·batch, width]`
/// buffer: `blocks[j][t]` is block `j`'s part of step `t`.
pub(crate) fn step_blocks_mut<T>(
    buf: &mut [T],
    batch: usize,
    rows: usize,
    width: usize,
) -> Vec<Vec<&mut [T]>> {
    let mut blocks: Vec<Vec<&mut [T]>> = (0..batch.div_ceil(rows.max(1)))
        .map(|_| Vec::new())
        .collect();
    for step in buf.chunks_mut((batch * width).max(1)) {
        for (block, part) in blocks
            .iter_mut()
            .zip(step.chunks_mut((rows * width).max(1)))
        {
            block.push(part);
        }
    }
    blocks
}

/// [`step_blocks_mut`] for reading.
pub(crate) fn step_blocks<T>(buf: &[T], batch: usize, rows: usize, width: usize) -> Vec<Vec<&[T]>> {
    let mut blocks: Vec<Vec<&[T]>> = (0..batch.div_ceil(rows.max(1)))
        .map(|_| Vec::new())
        .collect();
    for step in buf.chunks((batch * width).max(1)) {
        for (block, part) in blocks.iter_mut().zip(step.chunks((rows * width).max(1))) {
            block.push(part);
        }
    }
    blocks
}

/// Runs `f` on every block of batch rows, each on one thread of the rayon pool for the whole
/// sequence (a fork and join per sequence, not per step: at two threads and B = 64 the
/// per-step ones cost the fused LSTM ~15 % of its run in the scheduler).
pub(crate) fn for_each_block<B: Send>(blocks: Vec<B>, f: impl Fn(B) + Sync + Send) {
    if blocks.len() > 1 {
        use rayon::prelude::*;
        blocks.into_par_iter().for_each(f);
    } else {
        blocks.into_iter().for_each(f);
    }
}

/// Runs `f` on a rayon worker thread while the caller waits (directly on one thread). Kernels
/// that split every time step over the pool run this way, so that each split forks from a
/// worker instead of waking the pool from outside twice per step.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_num_threads() < 2 || rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// [`matmul`] with the choice of splitting over threads made by the caller.
fn matmul_with(dst: &mut [f32], accumulate: bool, lhs: Mat, rhs: Mat, parallel: bool) {
    let ((m, k), (lrs, lcs)) = lhs.view();
    let ((k2, n), (rrs, rcs)) = rhs.view();
    assert_eq!(k, k2, "matmul: inner dimensions");
    assert_eq!(dst.len(), m * n, "matmul: destination size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    if m <= SMALL_ROWS && rcs == 1 && !parallel {
        let (lhs, rhs) = (
            Strided::new(lhs.data, 0, lrs, lcs),
            Strided::new(rhs.data, 0, rrs, rcs),
        );
        small_rows_product(dst, 0, n, accumulate, lhs, rhs, [m, k, n]);
        return;
    }
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three views lie inside their slices (shapes checked above: `lhs` has m·k
    // elements, `rhs` k·n, `dst` m·n, and the strides describe row-major storage), `dst` is
    // borrowed mutably so it aliases neither operand, and `T = f32` is supported by gemm.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lcs,
            lrs,
            rhs.data.as_ptr(),
            rcs,
            rrs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A strided block of a row-major buffer: `rows × cols` starting at `offset`, rows `stride`
/// apart (a column block of a wider matrix), optionally read transposed.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    /// The whole buffer.
    pub data: &'a [f32],
    /// Index of the block's first element.
    pub offset: usize,
    /// Rows of the stored block.
    pub rows: usize,
    /// Columns of the stored block.
    pub cols: usize,
    /// Distance between the starts of consecutive rows.
    pub stride: usize,
    /// Use the transpose of the stored block.
    pub transposed: bool,
}

impl<'a> View<'a> {
    /// Columns `col..col + cols` of the row-major matrix `data` with `width` columns.
    pub fn cols(data: &'a [f32], width: usize, col: usize, cols: usize) -> Self {
        View {
            data,
            offset: col,
            rows: data.len() / width.max(1),
            cols,
            stride: width,
            transposed: false,
        }
    }

    /// The whole of `data` as a contiguous row-major matrix with `cols` columns.
    pub fn dense(data: &'a [f32], cols: usize) -> Self {
        Self::cols(data, cols, 0, cols)
    }

    /// Its transpose (no copy).
    pub fn t(self) -> Self {
        View {
            transposed: !self.transposed,
            ..self
        }
    }

    /// `(rows, cols)` as used and `(row stride, column stride)`; panics when the block does
    /// not lie inside the buffer.
    fn shape(&self) -> ((usize, usize), (isize, isize)) {
        if self.rows > 0 && self.cols > 0 {
            let last = self.offset + (self.rows - 1) * self.stride + self.cols - 1;
            assert!(last < self.data.len(), "matmul view outside its buffer");
            assert!(self.cols <= self.stride, "matmul view rows overlap");
        }
        if self.transposed {
            ((self.cols, self.rows), (1, self.stride as isize))
        } else {
            ((self.rows, self.cols), (self.stride as isize, 1))
        }
    }
}

/// `dst (+)= lhs · rhs` on strided blocks, on the calling thread: `dst` is the block of
/// `dst_data` given by `dst` (`offset`, `stride`; its shape follows from the operands).
pub(crate) fn matmul_view(
    dst_data: &mut [f32],
    dst_offset: usize,
    dst_stride: usize,
    accumulate: bool,
    lhs: View,
    rhs: View,
) {
    let ((m, k), (lrs, lcs)) = lhs.shape();
    let ((k2, n), (rrs, rcs)) = rhs.shape();
    assert_eq!(k, k2, "matmul: inner dimensions");
    if m == 0 || n == 0 {
        return;
    }
    let last = dst_offset + (m - 1) * dst_stride + n - 1;
    assert!(
        last < dst_data.len() && n <= dst_stride,
        "matmul destination outside its buffer"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                let at = dst_offset + r * dst_stride;
                dst_data[at..at + n].fill(0.0);
            }
        }
        return;
    }
    if m <= SMALL_ROWS && rcs == 1 {
        let (lhs, rhs) = (
            Strided::new(lhs.data, lhs.offset, lrs, lcs),
            Strided::new(rhs.data, rhs.offset, rrs, rcs),
        );
        small_rows_product(
            dst_data,
            dst_offset,
            dst_stride,
            accumulate,
            lhs,
            rhs,
            [m, k, n],
        );
        return;
    }
    // SAFETY: every view was checked to lie inside its slice (first and last element, rows of
    // `cols ≤ stride` not overlapping), `dst_data` is borrowed mutably so it aliases neither
    // operand, and `T = f32` is supported by gemm.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst_data.as_mut_ptr().add(dst_offset),
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            lcs,
            lrs,
            rhs.data.as_ptr().add(rhs.offset),
            rcs,
            rrs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `e^x` for `x` clamped to `[−87, 88]`, relative error below 2e−7; branch-free so loops over
/// slices vectorise (libm's `expf` does not).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let k = (n + SHIFT).to_bits().wrapping_sub(SHIFT.to_bits());
    p * f32::from_bits(k.wrapping_add(127) << 23)
}

/// `σ(x) = 1 / (1 + e^{−x})`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x) = 1 − 2 / (1 + e^{2x})` (absolute error below 3e−7).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

/// [`exp`]'s polynomial with fused multiply-adds (a rounding fewer per step): the scalar twin of
/// [`exp_simd`], for the tails of the loops that use it (`f32::mul_add` is one instruction where
/// the CPU has FMA, which [`pulp`]'s dispatch enables inside those loops).
#[inline(always)]
pub(crate) fn exp_fused(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = x.mul_add(std::f32::consts::LOG2_E, SHIFT) - SHIFT;
    let r = n.mul_add(-1.428_606_8e-6, n.mul_add(-0.693_145_75, x));
    let mut p = 1.0 / 720.0;
    for c in EXP_TAYLOR {
        p = r.mul_add(p, c);
    }
    let k = (n + SHIFT).to_bits().wrapping_sub(SHIFT.to_bits());
    p * f32::from_bits(k.wrapping_add(127) << 23)
}

/// The coefficients of `e^r`'s Taylor polynomial below `r^6 / 720`, highest first.
const EXP_TAYLOR: [f32; 6] = [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];

/// `tanh(x) = 1 − 2 / (1 + e^{2x})` through [`exp_fused`]: the scalar twin of [`tanh_simd`].
#[inline(always)]
pub(crate) fn tanh_fused(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp_fused(2.0 * x))
}

/// [`exp_fused`] on a SIMD vector: the same fused operations in the same order, so every lane
/// equals the scalar function's result bit for bit (a forward pass and the backward's
/// recomputation agree wherever each runs).
#[inline(always)]
pub(crate) fn exp_simd<S: pulp::Simd>(s: S, x: S::f32s) -> S::f32s {
    const SHIFT: f32 = 12_582_912.0;
    let x = s.min_f32s(s.max_f32s(x, s.splat_f32s(-87.0)), s.splat_f32s(88.0));
    let shift = s.splat_f32s(SHIFT);
    let n = s.sub_f32s(
        s.mul_add_f32s(x, s.splat_f32s(std::f32::consts::LOG2_E), shift),
        shift,
    );
    let r = s.mul_add_f32s(
        n,
        s.splat_f32s(-1.428_606_8e-6),
        s.mul_add_f32s(n, s.splat_f32s(-0.693_145_75), x),
    );
    let mut p = s.splat_f32s(1.0 / 720.0);
    for c in EXP_TAYLOR {
        p = s.mul_add_f32s(r, p, s.splat_f32s(c));
    }
    let k: S::u32s = pulp::cast(s.add_f32s(n, shift));
    let k = s.sub_u32s(k, s.splat_u32s(SHIFT.to_bits()));
    // `(k + 127) << 23` as a multiplication (the trait has no shifts).
    let scale: S::f32s =
        pulp::cast(s.mul_u32s(s.add_u32s(k, s.splat_u32s(127)), s.splat_u32s(1 << 23)));
    s.mul_f32s(p, scale)
}

/// [`tanh_fused`] on a SIMD vector, lane for lane equal to it (see [`exp_simd`]).
#[inline(always)]
pub(crate) fn tanh_simd<S: pulp::Simd>(s: S, x: S::f32s) -> S::f32s {
    let one = s.splat_f32s(1.0);
    let e = exp_simd(s, s.mul_f32s(s.splat_f32s(2.0), x));
    s.sub_f32s(one, s.div_f32s(s.splat_f32s(2.0), s.add_f32s(one, e)))
}

/// Largest `|a|` whose `e^{2a}` [`tanh_sum_simd`] takes: `e^{±80}` are normal floats, so the
/// product of two such factors is `e^{2(a + b)}` to a rounding (or past `f32::MAX`, which the
/// function caps). Beyond it the caller computes `tanh(a + b)` directly.
pub(crate) const TANH_SUM_LIMIT: f32 = 40.0;

/// `2^60`: [`tanh_sum_simd`]'s cap on `1 + e^{2(a + b)}`, where `tanh` is 1 in `f32` and the
/// reciprocal's first guess is still a normal float.
const TANH_SUM_CAP: f32 = 1_152_921_504_606_846_976.0;

/// The bit pattern whose difference with `d`'s approximates `1/d` within 5.1 % for any normal
/// `d > 0` (the exponent negated, the mantissa's reciprocal linearised).
const RECIP_MAGIC: u32 = 0x7EF3_11C7;

/// `1/d` for `d` in `[1, 2^60]` without a division: [`RECIP_MAGIC`]'s first guess (relative
/// error `ε ≤ 0.051`), one cubic step (`ε³`) and one Newton step (`ε⁶ < 2e−8`), all fused
/// multiply-adds.
#[inline(always)]
pub(crate) fn recip_simd<S: pulp::Simd>(s: S, d: S::f32s) -> S::f32s {
    let one = s.splat_f32s(1.0);
    let r: S::f32s = pulp::cast(s.sub_u32s(s.splat_u32s(RECIP_MAGIC), pulp::cast(d)));
    let e = s.negate_mul_add_f32s(d, r, one);
    let r = s.mul_add_f32s(r, s.mul_add_f32s(e, e, e), r);
    let e = s.negate_mul_add_f32s(d, r, one);
    s.mul_add_f32s(r, e, r)
}

/// The scalar twin of [`recip_simd`] (the same fused operations: equal bit for bit).
#[inline(always)]
pub(crate) fn recip_fused(d: f32) -> f32 {
    let r = f32::from_bits(RECIP_MAGIC.wrapping_sub(d.to_bits()));
    let e = (-d).mul_add(r, 1.0);
    let r = r.mul_add(e.mul_add(e, e), r);
    let e = (-d).mul_add(r, 1.0);
    r.mul_add(e, r)
}

/// `tanh(a + b) = 1 − 2 / (1 + e^{2a}·e^{2b})` from `ea = e^{2a}` and `eb = e^{2b}` (each from
/// [`exp_simd`], `|a|, |b| ≤` [`TANH_SUM_LIMIT`]): where one of the two is shared by many sums
/// (a query against every slot's key, each key against every later query), the sum's `tanh`
/// costs a multiply-add and a reciprocal instead of an exponential and a division. Its absolute
/// error is that of [`tanh_simd`]'s (below 5e−7).
#[inline(always)]
pub(crate) fn tanh_sum_simd<S: pulp::Simd>(s: S, ea: S::f32s, eb: S::f32s) -> S::f32s {
    let one = s.splat_f32s(1.0);
    let d = s.min_f32s(s.mul_add_f32s(ea, eb, one), s.splat_f32s(TANH_SUM_CAP));
    s.negate_mul_add_f32s(s.splat_f32s(2.0), recip_simd(s, d), one)
}

/// The scalar twin of [`tanh_sum_simd`] (equal bit for bit).
#[inline(always)]
pub(crate) fn tanh_sum_fused(ea: f32, eb: f32) -> f32 {
    let d = ea.mul_add(eb, 1.0).min(TANH_SUM_CAP);
    (-2.0f32).mul_add(recip_fused(d), 1.0)
}

/// `out = e^{2x}` (through [`exp_simd`] and its tail twin [`exp_fused`]), and whether every
/// `|x| ≤` [`TANH_SUM_LIMIT`] (so that `out` may enter [`tanh_sum_simd`]).
pub(crate) struct ExpDoubled<'a> {
    /// The exponents' halves `x`.
    pub x: &'a [f32],
    /// `e^{2x}`, as long as `x`.
    pub out: &'a mut [f32],
}

impl pulp::WithSimd for ExpDoubled<'_> {
    type Output = bool;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) -> bool {
        let (xv, xt) = S::as_simd_f32s(self.x);
        let (ov, ot) = S::as_mut_simd_f32s(&mut self.out[..self.x.len()]);
        let two = s.splat_f32s(2.0);
        let mut largest = s.splat_f32s(0.0);
        for (o, &x) in ov.iter_mut().zip(xv) {
            *o = exp_simd(s, s.mul_f32s(two, x));
            largest = s.max_f32s(largest, s.abs_f32s(x));
        }
        let mut largest = s.reduce_max_f32s(largest);
        for (o, &x) in ot.iter_mut().zip(xt) {
            *o = exp_fused(2.0 * x);
            largest = largest.max(x.abs());
        }
        // (A NaN may pass: both ways clamp it alike, see `exp_simd`.)
        largest <= TANH_SUM_LIMIT
    }
}

/// `Σ a_i b_i` in scalar code that vectorises at the caller's target (eight partial sums).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, so the loop vectorises (a single running sum cannot be reordered).
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for k in 0..8 {
            lanes[k] += ca[k] * cb[k];
        }
    }
    let tail = n - n % 8;
    let rest: f32 = a[tail..].iter().zip(&b[tail..]).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + rest
}

/// `Σ a_i b_i` of two equally long slices at the width of `s` (a SIMD sum, then the tail).
#[inline(always)]
pub(crate) fn dot_simd<S: pulp::Simd>(s: S, a: &[f32], b: &[f32]) -> f32 {
    let ((av, at), (bv, bt)) = (S::as_simd_f32s(a), S::as_simd_f32s(&b[..a.len()]));
    let mut acc = s.splat_f32s(0.0);
    for (&x, &y) in av.iter().zip(bv) {
        acc = s.mul_add_f32s(x, y, acc);
    }
    s.reduce_sum_f32s(acc) + at.iter().zip(bt).map(|(x, y)| x * y).sum::<f32>()
}

/// `y += w·x` at the width of `s` (`x` at least as long as `y`).
#[inline(always)]
pub(crate) fn axpy_simd<S: pulp::Simd>(s: S, y: &mut [f32], w: f32, x: &[f32]) {
    add_term_simd(s, false, y, w, x);
}

/// `y = b + w·x` at the width of `s` (`b`, `x` at least as long as `y`): [`axpy_simd`] onto a
/// copy of `b`, bit for bit, in one pass.
#[inline(always)]
pub(crate) fn offset_scale_simd<S: pulp::Simd>(s: S, y: &mut [f32], b: &[f32], w: f32, x: &[f32]) {
    let n = y.len();
    let (yv, yt) = S::as_mut_simd_f32s(y);
    let (bv, bt) = S::as_simd_f32s(&b[..n]);
    let (xv, xt) = S::as_simd_f32s(&x[..n]);
    let wv = s.splat_f32s(w);
    for ((o, &c), &v) in yv.iter_mut().zip(bv).zip(xv) {
        *o = s.mul_add_f32s(wv, v, c);
    }
    for ((o, &c), &v) in yt.iter_mut().zip(bt).zip(xt) {
        *o = w.mul_add(v, c);
    }
}

/// A term `w·x` of a sum that starts in `y`, at the width of `s` (`x` at least as long as
/// `y`): `y = w·x` when `first` (no zeroing of `y` first: `0 + w·x` is `w·x`), else `y += w·x`
/// ([`axpy_simd`]).
#[inline(always)]
pub(crate) fn add_term_simd<S: pulp::Simd>(s: S, first: bool, y: &mut [f32], w: f32, x: &[f32]) {
    let n = y.len();
    let (yv, yt) = S::as_mut_simd_f32s(y);
    let (xv, xt) = S::as_simd_f32s(&x[..n]);
    let wv = s.splat_f32s(w);
    if first {
        for (o, &v) in yv.iter_mut().zip(xv) {
            *o = s.mul_f32s(wv, v);
        }
        for (o, &v) in yt.iter_mut().zip(xt) {
            *o = w * v;
        }
    } else {
        for (o, &v) in yv.iter_mut().zip(xv) {
            *o = s.mul_add_f32s(wv, v, *o);
        }
        for (o, &v) in yt.iter_mut().zip(xt) {
            *o = w.mul_add(v, *o);
        }
    }
}

/// `out = Σ_j w_j v_j` at the width of `s`, in `j` order (`v(j)` at least as long as `out`):
/// an attention's read, made the same way, bit for bit, by
/// a forward and by the backward that rebuilds it.
#[inline(always)]
pub(crate) fn weighted_sum_simd<'a, S: pulp::Simd>(
    s: S,
    out: &mut [f32],
    weights: &[f32],
    v: impl Fn(usize) -> &'a [f32],
) {
    if weights.is_empty() {
        out.fill(0.0);
    }
    for (j, &w) in weights.iter().enumerate() {
        add_term_simd(s, j == 0, out, w, v(j));
    }
}

/// Applies [`sigmoid`] in place.
#[inline(always)]
pub(crate) fn sigmoid_slice(v: &mut [f32]) {
    for x in v {
        *x = sigmoid(*x);
    }
}

/// Applies [`tanh`] in place.
#[inline(always)]
pub(crate) fn tanh_slice(v: &mut [f32]) {
    for x in v {
        *x = tanh(*x);
    }
}

/// Element-wise sigmoid or tanh over a slice, compiled for the CPU's vector width at run time.
pub(crate) struct PointwiseInPlace<'a> {
    /// Values, replaced by their images.
    pub values: &'a mut [f32],
    /// `true` for tanh, `false` for sigmoid.
    pub tanh: bool,
}

impl pulp::WithSimd for PointwiseInPlace<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        if self.tanh {
            tanh_slice(self.values);
        } else {
            sigmoid_slice(self.values);
        }
    }
}

/// The backward of [`PointwiseInPlace`] from its output `y`: `grad ← grad·y(1 − y)` for sigmoid,
/// `grad·(1 − y²)` for tanh.
pub(crate) struct PointwiseGrad<'a> {
    /// The output's gradient, replaced by the input's.
    pub grad: &'a mut [f32],
    /// The forward output.
    pub y: &'a [f32],
    /// `true` for tanh, `false` for sigmoid.
    pub tanh: bool,
}

impl pulp::WithSimd for PointwiseGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let pairs = self.grad.iter_mut().zip(self.y);
        if self.tanh {
            pairs.for_each(|(g, &y)| *g *= 1.0 - y * y);
        } else {
            pairs.for_each(|(g, &y)| *g *= y * (1.0 - y));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Streamed copies equal plain ones: aligned whole vectors (streamed), a start off the
    /// 16-byte grid and lengths not a multiple of 4 (copied plainly).
    #[test]
    fn stream_copy_copies() {
        #[repr(align(16))]
        struct Aligned([f32; 40]);
        let src: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        let Aligned(dst) = &mut Aligned([0.0; 40]);
        for (from, len) in [(0, 32), (1, 32), (0, 30), (3, 7), (0, 0)] {
            dst.fill(f32::NAN);
            stream_copy(&mut dst[from..from + len], &src[..len]);
            stream_fence();
            assert_eq!(
                &dst[from..from + len],
                &src[..len],
                "from {from}, {len} values"
            );
        }
    }

    /// Small buffers come back to this thread's cache and out of it: the smallest that fits,
    /// never one below the request; the cache holds at most `SMALL_HELD`.
    #[test]
    fn small_buffers_are_reused_from_the_thread_cache() {
        SMALL.with_borrow_mut(Vec::clear);
        let (a, b) = (
            Vec::<f32>::with_capacity(300),
            Vec::<f32>::with_capacity(5000),
        );
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        give(a);
        give(b);
        let first = take_overwritten(200);
        assert_eq!((first.as_ptr(), first.len()), (pa, 200));
        let second = take_zeroed(4000);
        assert_eq!(second.as_ptr(), pb);
        assert!(second.iter().all(|&v| v == 0.0));
        // Nothing cached fits: a new buffer.
        assert!(take_overwritten(6000).capacity() >= 6000);
        // Too small to keep, and a full cache keeps no more.
        give(Vec::with_capacity(SMALL_MIN - 1));
        assert_eq!(SMALL.with_borrow(Vec::len), 0);
        for _ in 0..SMALL_HELD + 8 {
            give(Vec::with_capacity(SMALL_MIN));
        }
        assert_eq!(SMALL.with_borrow(Vec::len), SMALL_HELD);
        SMALL.with_borrow_mut(Vec::clear);
    }

    #[test]
    fn simd_exp_and_tanh_equal_their_scalar_twins_bit_for_bit() {
        struct Check;
        impl pulp::WithSimd for Check {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, s: S) {
                let xs: Vec<f32> = (-50_000..=50_000).map(|i| i as f32 * 0.0021).collect();
                let (head, _) = S::as_simd_f32s(&xs);
                for (i, &v) in head.iter().enumerate() {
                    let (e, t): ([f32; 64], [f32; 64]) = {
                        let (mut e, mut t) = ([0.0; 64], [0.0; 64]);
                        let (ev, _) = S::as_mut_simd_f32s(&mut e);
                        let (tv, _) = S::as_mut_simd_f32s(&mut t);
                        ev[0] = exp_simd(s, v);
                        tv[0] = tanh_simd(s, v);
                        (e, t)
                    };
                    let lanes = std::mem::size_of::<S::f32s>() / 4;
                    for l in 0..lanes {
                        let x = xs[i * lanes + l];
                        assert_eq!(e[l].to_bits(), exp_fused(x).to_bits(), "exp({x})");
                        assert_eq!(t[l].to_bits(), tanh_fused(x).to_bits(), "tanh({x})");
                    }
                }
            }
        }
        pulp::Arch::new().dispatch(Check);
        pulp::WithSimd::with_simd(Check, pulp::Scalar::new());
    }

    #[test]
    fn tanh_of_a_sum_from_exponentials_matches_libm_and_its_twin() {
        struct Check;
        impl pulp::WithSimd for Check {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, s: S) {
                let lanes = std::mem::size_of::<S::f32s>() / 4;
                let (mut worst, mut worst_recip) = (0.0f64, 0.0f64);
                let limit = TANH_SUM_LIMIT;
                let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * limit / 4000.0).collect();
                let mut ea = vec![0.0f32; xs.len()];
                assert!(pulp::WithSimd::with_simd(
                    ExpDoubled {
                        x: &xs,
                        out: &mut ea
                    },
                    s
                ));
                for (i, &b) in xs.iter().enumerate().step_by(7) {
                    let eb = exp_fused(2.0 * b);
                    let (head, _) = S::as_simd_f32s(&ea);
                    for (c, &v) in head.iter().enumerate() {
                        let mut got = [0.0f32; 64];
                        S::as_mut_simd_f32s(&mut got).0[0] = tanh_sum_simd(s, v, s.splat_f32s(eb));
                        for (l, g) in got[..lanes].iter().enumerate() {
                            let j = c * lanes + l;
                            let twin = tanh_sum_fused(ea[j], eb);
                            assert_eq!(g.to_bits(), twin.to_bits(), "tanh({} + {b})", xs[j]);
                            let exact = (xs[j] as f64 + b as f64).tanh();
                            worst = worst.max((twin as f64 - exact).abs());
                        }
                    }
                    let d = 1.0 + i as f32 * 1.37e3;
                    let r = recip_fused(d);
                    worst_recip = worst_recip.max((r as f64 * d as f64 - 1.0).abs());
                }
                for d in [1.0f32, 1.5, 2.0, 3.0, 1e6, TANH_SUM_CAP] {
                    let r = recip_fused(d);
                    worst_recip = worst_recip.max((r as f64 * d as f64 - 1.0).abs());
                }
                assert!(worst < 5e-7 && worst_recip < 2e-7, "{worst} {worst_recip}");
                // Past the limit the sums saturate as `tanh` does.
                assert_eq!(tanh_sum_fused(exp_fused(80.0), exp_fused(80.0)), 1.0);
                assert!((tanh_sum_fused(exp_fused(-80.0), exp_fused(-80.0)) + 1.0).abs() < 2e-7);
                // The range flag sees an element past the limit in the vector body and in the
                // tail alike (37 values: two or four vectors and a tail).
                let mut x = vec![0.5f32; 37];
                let mut out = vec![0.0; 37];
                for at in [0, 20, 36] {
                    for (value, ok) in [(-41.0, false), (40.0, true)] {
                        x[at] = value;
                        let got = ExpDoubled {
                            x: &x,
                            out: &mut out,
                        };
                        assert_eq!(pulp::WithSimd::with_simd(got, s), ok, "{value} at {at}");
                    }
                }
            }
        }
        pulp::Arch::new().dispatch(Check);
        pulp::WithSimd::with_simd(Check, pulp::Scalar::new());
    }

    #[test]
    fn exp_sigmoid_tanh_match_libm() {
        let mut worst = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.004; // [−80, 80]
            let e = (x as f64).exp();
            worst.0 = worst.0.max(((exp(x) as f64 - e) / e).abs());
            worst.1 = worst
                .1
                .max((sigmoid(x) as f64 - 1.0 / (1.0 + (-x as f64).exp())).abs());
            worst.2 = worst.2.max((tanh(x) as f64 - (x as f64).tanh()).abs());
            worst.3 = worst.3.max(((exp_fused(x) as f64 - e) / e).abs());
            worst.4 = worst
                .4
                .max((tanh_fused(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(
            worst.0 < 3e-7 && worst.1 < 2e-7 && worst.2 < 5e-7,
            "{worst:?}"
        );
        assert!(worst.3 < 3e-7 && worst.4 < 5e-7, "{worst:?}");
        assert!(sigmoid(-1e4) < 1e-37 && sigmoid(1e4) == 1.0);
        assert_eq!((tanh(-1e4), tanh(1e4)), (-1.0, 1.0));
        assert!(exp(f32::NEG_INFINITY) >= 0.0 && exp(1e9).is_finite());
        assert_eq!((tanh_fused(-1e4), tanh_fused(1e4)), (-1.0, 1.0));
        assert!(exp_fused(f32::NEG_INFINITY) >= 0.0 && exp_fused(1e9).is_finite());
    }

    /// Sizes below, at and across the tile edges, leaving the rest of `dst` alone.
    #[test]
    fn transpose_into_moves_every_element_once() {
        for (rows, cols) in [
            (1, 1),
            (1, 40),
            (40, 1),
            (15, 16),
            (16, 16),
            (17, 33),
            (48, 5),
        ] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut dst = vec![-1.0f32; rows * cols + 3];
            transpose_into(&mut dst, &src, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows}×{cols} ({r}, {c})"
                    );
                }
            }
            assert_eq!(dst[rows * cols..], [-1.0; 3]);
        }
    }

    #[test]
    fn matmul_handles_transposes_and_accumulation() {
        // a [2,3], b [3,2]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut d = vec![0.0; 4];
        matmul(&mut d, false, Mat::new(&a, 3), Mat::new(&b, 2));
        assert_eq!(d, [4.0, 5.0, 10.0, 11.0]);
        // aᵀ [3,2] · a [2,3] -> [3,3], accumulated twice.
        let mut d = vec![0.0; 9];
        matmul(&mut d, false, Mat::new(&a, 3).t(), Mat::new(&a, 3));
        matmul(&mut d, true, Mat::new(&a, 3).t(), Mat::new(&a, 3));
        assert_eq!(d, [34.0, 44.0, 54.0, 44.0, 58.0, 72.0, 54.0, 72.0, 90.0]);
        // a [2,3] · aᵀ [3,2]
        let mut d = vec![0.0; 4];
        matmul(&mut d, false, Mat::new(&a, 3), Mat::new(&a, 3).t());
        assert_eq!(d, [14.0, 32.0, 32.0, 77.0]);
    }
}

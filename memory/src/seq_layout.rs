//! Where a flat sequence buffer keeps batch row `r` at step `t`: time-major or batch-major.

use burn::tensor::Tensor;

use crate::host_math::{give, take_copy, take_overwritten};

/// The order of a sequence's rows in a flat `[T·B, w]` buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeqLayout {
    /// Row `t·B + r` (`[T, B, ·]`): the order the kernels step in, and the training loop's.
    #[default]
    TimeMajor,
    /// Row `r·T + t` (`[B, T, ·]`): the order of `RecurrentCore::forward_sequence`'s input and
    /// output. A kernel that copies its rows into its own buffers anyway reads and writes it in
    /// place of a transposing copy on each side.
    BatchMajor,
}

/// A flat sequence buffer's shape: `steps · batch` rows in `layout` order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeqRows {
    /// Row order.
    pub layout: SeqLayout,
    /// Steps `T`.
    pub steps: usize,
    /// Batch rows `B`.
    pub batch: usize,
}

impl SeqRows {
    /// The buffer row of batch row `r` at step `t`.
    pub fn row(&self, t: usize, r: usize) -> usize {
        match self.layout {
            SeqLayout::TimeMajor => t * self.batch + r,
            SeqLayout::BatchMajor => r * self.steps + t,
        }
    }

    /// Copies step `t`'s batch rows `r0..r0 + n` of `full` (rows `w` wide) into `dst [n, w]`.
    pub fn gather_step(&self, full: &[f32], w: usize, t: usize, r0: usize, dst: &mut [f32]) {
        let n = dst.len() / w.max(1);
        if self.layout == SeqLayout::TimeMajor {
            let at = self.row(t, r0) * w;
            dst.copy_from_slice(&full[at..at + n * w]);
            return;
        }
        for (r, out) in dst.chunks_exact_mut(w).enumerate() {
            let at = self.row(t, r0 + r) * w;
            out.copy_from_slice(&full[at..at + w]);
        }
    }

    /// Step `t`'s batch rows `r0..r0 + n` of `full` as one `[n, w]` block: in place when they
    /// are contiguous (time-major), else gathered into `scratch` (at least `n·w` long).
    pub fn step_block<'a>(
        &self,
        full: &'a [f32],
        w: usize,
        t: usize,
        r0: usize,
        n: usize,
        scratch: &'a mut [f32],
    ) -> &'a [f32] {
        if self.layout == SeqLayout::TimeMajor {
            let at = self.row(t, r0) * w;
            return &full[at..at + n * w];
        }
        self.gather_step(full, w, t, r0, &mut scratch[..n * w]);
        &scratch[..n * w]
    }

    /// Copies `src [n, w]` into step `t`'s batch rows `r0..r0 + n` of `full`.
    pub fn scatter_step(&self, src: &[f32], w: usize, t: usize, r0: usize, full: &mut [f32]) {
        let n = src.len() / w.max(1);
        if self.layout == SeqLayout::TimeMajor {
            let at = self.row(t, r0) * w;
            full[at..at + n * w].copy_from_slice(src);
            return;
        }
        for (r, row) in src.chunks_exact(w).enumerate() {
            let at = self.row(t, r0 + r) * w;
            full[at..at + w].copy_from_slice(row);
        }
    }

    /// Reorders the first `steps·batch` rows of `v` (`w` wide) from time-major into this
    /// order, in place (through a pooled copy when batch-major).
    pub fn reorder_from_time_major(&self, v: &mut [f32], w: usize) {
        if self.layout == SeqLayout::TimeMajor {
            return;
        }
        let n = self.steps * self.batch * w;
        let tm = take_copy(&v[..n]);
        for t in 0..self.steps {
            let at = t * self.batch * w;
            self.scatter_step(&tm[at..at + self.batch * w], w, t, 0, v);
        }
        give(tm);
    }

    /// A pooled copy of `v` (rows `w` wide, in this order) with its first `steps·batch` rows
    /// time-major and the rows past them as they are.
    pub fn time_major_copy(&self, v: &[f32], w: usize) -> Vec<f32> {
        let mut tm = take_overwritten(v.len());
        let (n, bw) = (self.steps * self.batch * w, self.batch * w);
        for (t, dst) in tm[..n].chunks_exact_mut(bw.max(1)).enumerate() {
            self.gather_step(v, w, t, 0, dst);
        }
        tm[n..].copy_from_slice(&v[n..]);
        tm
    }

    /// `f` of `v` with its first `steps·batch` rows time-major: of `v` itself when they are,
    /// else of a pooled reordered copy (the LSTM/GRU backwards' output gradients).
    pub fn on_time_major<R>(&self, v: &[f32], w: usize, f: impl FnOnce(&[f32]) -> R) -> R {
        if self.layout == SeqLayout::TimeMajor {
            return f(v);
        }
        let tm = self.time_major_copy(v, w);
        let out = f(&tm);
        give(tm);
        out
    }

    /// `v` with its first `steps·batch` rows time-major: `v` itself when it is, else
    /// [`SeqRows::time_major_copy`] (`v` given back to the pool).
    pub fn time_major_vec(&self, v: Vec<f32>, w: usize) -> Vec<f32> {
        if self.layout == SeqLayout::TimeMajor {
            return v;
        }
        let tm = self.time_major_copy(&v, w);
        give(v);
        tm
    }
}

impl SeqLayout {
    /// The last step's rows `[B, H]` of a sequence output in this layout (`[T, B, H]` or
    /// `[B, T, H]`).
    pub fn last_step(self, y: &Tensor<3>) -> Tensor<2> {
        let [d0, d1, h] = y.dims();
        match self {
            SeqLayout::TimeMajor => y.clone().narrow(0, d0 - 1, 1).reshape([d1, h]),
            SeqLayout::BatchMajor => y.clone().narrow(1, d1 - 1, 1).reshape([d0, h]),
        }
    }

    /// `(T, B)` of a sequence tensor's first two dimensions `dims` in this layout.
    pub fn steps_batch(self, [d0, d1]: [usize; 2]) -> (usize, usize) {
        match self {
            SeqLayout::TimeMajor => (d0, d1),
            SeqLayout::BatchMajor => (d1, d0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_and_scatter_follow_the_layout() {
        let (steps, batch, w) = (3, 4, 2);
        // Element (row, c) of a buffer holds `10·(t·B + r) + c` in either layout.
        for layout in [SeqLayout::TimeMajor, SeqLayout::BatchMajor] {
            let rows = SeqRows {
                layout,
                steps,
                batch,
            };
            let mut full = vec![0.0f32; steps * batch * w];
            for t in 0..steps {
                for r in 0..batch {
                    for c in 0..w {
                        full[rows.row(t, r) * w + c] = (10 * (t * batch + r) + c) as f32;
                    }
                }
            }
            let mut dst = vec![0.0f32; 2 * w];
            rows.gather_step(&full, w, 2, 1, &mut dst);
            assert_eq!(dst, [90.0, 91.0, 100.0, 101.0], "{layout:?}");
            let mut back = vec![0.0f32; full.len()];
            for t in 0..steps {
                for r0 in [0, 2] {
                    rows.gather_step(&full, w, t, r0, &mut dst);
                    rows.scatter_step(&dst, w, t, r0, &mut back);
                }
            }
            assert_eq!(back, full, "{layout:?}");
            let mut scratch = vec![0.0f32; 2 * w];
            assert_eq!(
                rows.step_block(&full, w, 2, 1, 2, &mut scratch),
                [90.0, 91.0, 100.0, 101.0],
                "{layout:?}"
            );
        }
        let bm = SeqRows {
            layout: SeqLayout::BatchMajor,
            steps,
            batch,
        };
        assert_eq!(bm.row(1, 2), 7);
        // [B, T] → [T, B] → [B, T], an extra row after the sequence's kept in place.
        let src: Vec<f32> = (0..steps * batch + 1).map(|v| v as f32).collect();
        let mut tm = bm.time_major_vec(src.clone(), 1);
        assert_eq!(tm[..4], [0.0, 3.0, 6.0, 9.0]);
        assert_eq!(tm[steps * batch], (steps * batch) as f32);
        bm.reorder_from_time_major(&mut tm, 1);
        assert_eq!(tm, src);
    }
}

//! Self-contained generators for the copy and denoise sequence tasks (envs.md §7).

use std::fmt;
use std::str::FromStr;

use crate::error::MemoryError;

/// A supervised memory task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Copy: 10 symbols from 1..=8, `T−1` blanks, marker 9, 10 blanks; recall the symbols.
    Copy,
    /// Denoise: 10 symbols at random sorted positions in `T+9` blanks, marker 10, 10 blanks.
    Denoise,
}

impl Task {
    /// Width of the one-hot input (copy: 10 symbols 0..=9; denoise: 11, index 9 unused).
    pub fn input_size(self) -> usize {
        match self {
            Task::Copy => 10,
            Task::Denoise => 11,
        }
    }

    /// Number of output classes (0 = blank, 1..=8 symbols).
    pub fn classes(self) -> usize {
        9
    }

    /// Sequence length for delay `t`: `t + 20`.
    pub fn sequence_length(self, t: usize) -> usize {
        t + 20
    }

    /// Name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Task::Copy => "copy",
            Task::Denoise => "denoise",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = MemoryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "copy" => Ok(Task::Copy),
            "denoise" => Ok(Task::Denoise),
            other => Err(MemoryError::Serde(format!(
                "unknown task `{other}`; expected `copy` or `denoise`"
            ))),
        }
    }
}

/// A small deterministic generator (SplitMix64) so data depend only on the seed.
#[derive(Debug, Clone)]
pub struct SeqRng(u64);

impl SeqRng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize % n.max(1)
    }
}

/// A batch of sequences: one-hot inputs and class targets, batch-major.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// One-hot inputs, `[batch, len, input_size]` row-major.
    pub inputs: Vec<f32>,
    /// Target classes, `[batch, len]` row-major.
    pub targets: Vec<usize>,
    /// Input symbols, `[batch, len]` row-major.
    pub symbols: Vec<usize>,
    /// Number of sequences.
    pub batch: usize,
    /// Sequence length (`T + 20`).
    pub len: usize,
    /// One-hot width.
    pub input_size: usize,
}

/// Generates `batch` sequences of `task` with delay `t` (≥ 1).
pub fn generate(task: Task, rng: &mut SeqRng, batch: usize, t: usize) -> SeqBatch {
    let t = t.max(1);
    let len = task.sequence_length(t);
    let v = task.input_size();
    let mut symbols = vec![0usize; batch * len];
    let mut targets = vec![0usize; batch * len];
    for b in 0..batch {
        let row = &mut symbols[b * len..(b + 1) * len];
        let data: Vec<usize> = (0..10).map(|_| 1 + rng.below(8)).collect();
        match task {
            Task::Copy => {
                row[..10].copy_from_slice(&data);
                row[10 + t - 1] = 9;
            }
            Task::Denoise => {
                // 10 distinct positions in 0..t+9, sorted (partial Fisher–Yates).
                let mut pos: Vec<usize> = (0..t + 9).collect();
                for i in 0..10 {
                    let j = i + rng.below(pos.len() - i);
                    pos.swap(i, j);
                }
                let mut chosen = pos[..10].to_vec();
                chosen.sort_unstable();
                for (p, &s) in chosen.iter().zip(&data) {
                    row[*p] = s;
                }
                row[t + 9] = 10;
            }
        }
        targets[b * len + len - 10..(b + 1) * len].copy_from_slice(&data);
    }
    let mut inputs = vec![0f32; batch * len * v];
    for (i, &s) in symbols.iter().enumerate() {
        inputs[i * v + s] = 1.0;
    }
    SeqBatch {
        inputs,
        targets,
        symbols,
        batch,
        len,
        input_size: v,
    }
}

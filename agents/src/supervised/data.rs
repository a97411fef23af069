//! Batches of copy/denoise sequences for the harness, from the one generator in engram-envs.

use engram_envs::{EnvRng, SequenceTask};

/// A batch of sequences: one-hot inputs and class targets, batch-major.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    /// One-hot inputs, `[batch, len, input_size]` row-major.
    pub inputs: Vec<f32>,
    /// Target classes, `[batch, len]` row-major.
    pub targets: Vec<usize>,
    /// Number of sequences.
    pub batch: usize,
    /// Sequence length (`T + 20`).
    pub len: usize,
    /// One-hot width ([`SequenceTask::num_inputs`]).
    pub input_size: usize,
}

/// `batch` sequences of `task` with delay `t` (at least 1), drawn from `rng` with
/// [`SequenceTask::generate`].
pub fn generate(task: SequenceTask, rng: &mut EnvRng, batch: usize, t: usize) -> SeqBatch {
    let t = t.max(1);
    let len = task.sequence_len(t);
    let v = task.num_inputs();
    let (mut symbols, mut classes) = (vec![0u8; len], vec![0u8; len]);
    let mut inputs = vec![0f32; batch * len * v];
    let mut targets = Vec::with_capacity(batch * len);
    for b in 0..batch {
        task.generate(t, rng, &mut symbols, &mut classes);
        for (i, &s) in symbols.iter().enumerate() {
            inputs[(b * len + i) * v + s as usize] = 1.0;
        }
        targets.extend(classes.iter().map(|&c| c as usize));
    }
    SeqBatch {
        inputs,
        targets,
        batch,
        len,
        input_size: v,
    }
}

//! The copy and denoise tasks (RIMs; Kerg et al. 2020) as sequence generators and as RL envs.

use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::{EnvError, Result};
use crate::rng::EnvRng;
use crate::space::{write_one_hot, Action, Space};

/// Number of data symbols to remember.
pub const NUM_SYMBOLS: usize = 10;

/// Which sequence task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceTask {
    /// Copy: 10 symbols, T-1 blanks, marker 9, 10 blanks; output the symbols after the marker.
    Copy,
    /// Denoise: 10 symbols scattered (in order) over T+9 blanks, marker 10, 10 blanks.
    Denoise,
}

impl SequenceTask {
    /// The task's name: `copy` or `denoise` (what [`str::parse`] accepts).
    pub fn name(self) -> &'static str {
        match self {
            SequenceTask::Copy => "copy",
            SequenceTask::Denoise => "denoise",
        }
    }

    /// Size of the one-hot input alphabet (10 for copy, 11 for denoise).
    pub fn num_inputs(self) -> usize {
        match self {
            SequenceTask::Copy => 10,
            SequenceTask::Denoise => 11,
        }
    }

    /// Number of output classes (9 for copy, 10 for denoise, as in the reference code).
    pub fn num_classes(self) -> usize {
        match self {
            SequenceTask::Copy => 9,
            SequenceTask::Denoise => 10,
        }
    }

    /// Sequence length for delay `t`: `t + 20`.
    pub fn sequence_len(self, t: usize) -> usize {
        t + 2 * NUM_SYMBOLS
    }

    /// Fill `inputs` and `targets` (both of length `t + 20`) with one sequence.
    ///
    /// Data symbols are uniform in 1..=8; targets are 0 except the last 10 positions, which
    /// hold the data symbols in their original order.
    pub fn generate(self, t: usize, rng: &mut EnvRng, inputs: &mut [u8], targets: &mut [u8]) {
        let len = self.sequence_len(t);
        assert!(
            t >= 1 && inputs.len() == len && targets.len() == len,
            "sequence buffers must have length t + 20"
        );
        inputs.fill(0);
        targets.fill(0);
        let mut symbols = [0u8; NUM_SYMBOLS];
        for s in &mut symbols {
            *s = 1 + rng.below(8) as u8;
        }
        match self {
            SequenceTask::Copy => {
                inputs[..NUM_SYMBOLS].copy_from_slice(&symbols);
                inputs[t + NUM_SYMBOLS - 1] = 9;
            }
            SequenceTask::Denoise => {
                // 10 distinct positions in 0..t+9, sorted so the order of symbols is kept.
                let region = t + NUM_SYMBOLS - 1;
                let mut positions = [0usize; NUM_SYMBOLS];
                // Floyd's sampling of distinct positions.
                for (chosen, j) in (region - NUM_SYMBOLS..region).enumerate() {
                    let p = rng.below(j as u64 + 1) as usize;
                    positions[chosen] = if positions[..chosen].contains(&p) {
                        j
                    } else {
                        p
                    };
                }
                positions.sort_unstable();
                for (&p, &s) in positions.iter().zip(&symbols) {
                    inputs[p] = s;
                }
                inputs[region] = 10;
            }
        }
        targets[len - NUM_SYMBOLS..].copy_from_slice(&symbols);
    }
}

impl std::fmt::Display for SequenceTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SequenceTask {
    type Err = EnvError;

    /// `copy` or `denoise`; anything else is an error naming both.
    fn from_str(s: &str) -> Result<Self> {
        [SequenceTask::Copy, SequenceTask::Denoise]
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| EnvError::Env {
                id: "sequence task".into(),
                message: format!("unknown task `{s}`; expected `copy` or `denoise`"),
            })
    }
}

/// The task as an RL environment: observe one-hot input symbols, act the output class each
/// step; +0.1 for each correct output over the last 10 steps, so the return lies in [0, 1].
pub(crate) struct SequenceEnv {
    spec: EnvSpec,
    task: SequenceTask,
    delay: usize,
    inputs: Vec<u8>,
    targets: Vec<u8>,
    pos: usize,
    rng: EnvRng,
}

impl SequenceEnv {
    pub fn new(id: &str, task: SequenceTask, delay: usize) -> Self {
        let len = task.sequence_len(delay);
        let spec = EnvSpec::new(
            id,
            Space::discrete(task.num_inputs() as u64),
            Space::discrete(task.num_classes() as u64),
        );
        SequenceEnv {
            spec,
            task,
            delay,
            inputs: vec![0; len],
            targets: vec![0; len],
            pos: 0,
            rng: EnvRng::from_entropy(),
        }
    }
}

impl Env for SequenceEnv {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        if let Some(s) = seed {
            self.rng = EnvRng::from_seed(s);
        }
        self.task.generate(
            self.delay,
            &mut self.rng,
            &mut self.inputs,
            &mut self.targets,
        );
        self.pos = 0;
        write_one_hot(obs, self.inputs[0] as usize);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let len = self.inputs.len();
        let scored = self.pos >= len - NUM_SYMBOLS;
        let correct = matches!(action, Action::Discrete(a) if a == self.targets[self.pos] as i64);
        let reward = if scored && correct {
            1.0 / NUM_SYMBOLS as f32
        } else {
            0.0
        };
        self.pos += 1;
        let done = self.pos == len;
        write_one_hot(
            obs,
            if done {
                0
            } else {
                self.inputs[self.pos] as usize
            },
        );
        Ok(Step {
            reward,
            terminated: done,
            truncated: false,
        })
    }

    fn render(&self) -> Option<Frame> {
        let show = |v: &[u8]| {
            v.iter()
                .map(|s| char::from_digit(*s as u32, 11).unwrap_or('?'))
                .collect::<String>()
        };
        Some(Frame::Text(format!(
            "position {}/{}\ninput : {}\ntarget: {}",
            self.pos,
            self.inputs.len(),
            show(&self.inputs),
            show(&self.targets)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_layout_follows_the_reference() {
        let mut rng = EnvRng::from_seed(0);
        let t = 5;
        let (mut x, mut y) = (vec![0; 25], vec![0; 25]);
        SequenceTask::Copy.generate(t, &mut rng, &mut x, &mut y);
        assert!(x[..10].iter().all(|&s| (1..=8).contains(&s)));
        assert!(x[10..14].iter().all(|&s| s == 0));
        assert_eq!(x[14], 9);
        assert!(x[15..].iter().all(|&s| s == 0));
        assert!(y[..15].iter().all(|&s| s == 0));
        assert_eq!(&y[15..], &x[..10]);
    }

    #[test]
    fn denoise_keeps_symbol_order_and_places_marker() {
        let mut rng = EnvRng::from_seed(1);
        for _ in 0..200 {
            let t = 12;
            let len = t + 20;
            let (mut x, mut y) = (vec![0; len], vec![0; len]);
            SequenceTask::Denoise.generate(t, &mut rng, &mut x, &mut y);
            let data: Vec<u8> = x[..t + 9].iter().copied().filter(|&s| s != 0).collect();
            assert_eq!(data.len(), 10);
            assert_eq!(x[t + 9], 10);
            assert!(x[t + 10..].iter().all(|&s| s == 0));
            assert_eq!(&y[len - 10..], &data[..]);
            assert!(y[..len - 10].iter().all(|&s| s == 0));
        }
    }
}

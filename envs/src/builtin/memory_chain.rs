//! bsuite's MemoryChain (memory_len and memory_size experiments), with bsuite's timing quirk.

use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{Action, Space};

/// memory_len sweep: `num_bits = 1`, these memory lengths: bsuite's settings 0..=22 (up to
/// 100), then Engram's 23..=28 (150 to 1000) for the long-horizon memory cores.
pub const MEMORY_LEN_SWEEP: [u64; 29] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100, 150, 200,
    300, 500, 700, 1000,
];
/// memory_size sweep: `memory_length = 2`, these bit counts (bsuite settings 0..=16).
pub const MEMORY_SIZE_SWEEP: [u64; 17] =
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 20, 25, 30, 40];

/// Remember the context bit named by a query shown `memory_length` steps later.
///
/// Observation `[1 - t/L, query (raw, only at t = L-1), context as ±1 (only at t = 0)...]`.
/// As in bsuite, `step` builds its observation from the counter *before* incrementing it, so
/// the first step shows the context again and the action of step `L + 1` is the answer
/// (+1 if it equals the queried bit, else -1; the episode then terminates).
pub(crate) struct MemoryChain {
    spec: EnvSpec,
    memory_length: u64,
    context: Vec<u8>,
    query: usize,
    t: u64,
    rng: EnvRng,
}

impl MemoryChain {
    pub fn new(id: &str, memory_length: u64, num_bits: usize) -> Self {
        let mut low = vec![-1.0f32; num_bits + 2];
        let mut high = vec![1.0f32; num_bits + 2];
        low[0] = 0.0;
        low[1] = 0.0;
        high[1] = (num_bits - 1) as f32;
        let spec = EnvSpec::new(id, Space::bounded(low, high), Space::discrete(2));
        MemoryChain {
            spec,
            memory_length,
            context: vec![0; num_bits],
            query: 0,
            t: 0,
            rng: EnvRng::from_entropy(),
        }
    }

    #[inline]
    fn write_obs(&self, obs: &mut [f32]) {
        obs.fill(0.0);
        obs[0] = (1.0 - self.t as f64 / self.memory_length as f64) as f32;
        if self.t + 1 == self.memory_length {
            obs[1] = self.query as f32;
        }
        if self.t == 0 {
            for (o, &c) in obs[2..].iter_mut().zip(&self.context) {
                *o = 2.0 * c as f32 - 1.0;
            }
        }
    }
}

impl Env for MemoryChain {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        if let Some(s) = seed {
            self.rng = EnvRng::from_seed(s);
        }
        self.t = 0;
        for c in &mut self.context {
            *c = self.rng.below(2) as u8;
        }
        self.query = self.rng.below(self.context.len() as u64) as usize;
        self.write_obs(obs);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        self.write_obs(obs);
        self.t += 1;
        if self.t <= self.memory_length {
            return Ok(Step::running(0.0));
        }
        let correct = matches!(action, Action::Discrete(a) if a == self.context[self.query] as i64);
        Ok(Step::terminal(if correct { 1.0 } else { -1.0 }))
    }

    fn render(&self) -> Option<Frame> {
        Some(Frame::Text(format!(
            "t={}/{} context={:?} query={}",
            self.t,
            self.memory_length + 1,
            self.context,
            self.query
        )))
    }
}

//! POPGym CountRecall: how many times has the queried category been dealt so far?

use super::{reseed, CardAttr, Deck, Level};
use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{write_one_hot, Action, Space};

/// Two shuffled decks deal a value card and a query card each step; the observation is
/// (value category, query category), one-hot each. The action answers how many value cards of
/// the category named by the *previous* query have been dealt, including the previous value
/// card: ±1/(N-1). Action space `Discrete(N / C + 1)`; N - 1 steps, then terminated.
pub(crate) struct CountRecall {
    spec: EnvSpec,
    values: Deck,
    queries: Deck,
    counts: Vec<u32>,
    query: u8,
    rng: EnvRng,
}

impl CountRecall {
    pub fn new(id: &str, num_decks: usize, attr: CardAttr) -> Self {
        let c = attr.values();
        let max_count = 52 * num_decks / c;
        let spec = EnvSpec::new(
            id,
            Space::multi_discrete(vec![c as u64; 2]),
            Space::discrete(max_count as u64 + 1),
        );
        CountRecall {
            spec,
            values: Deck::new(num_decks, attr),
            queries: Deck::new(num_decks, attr),
            counts: vec![0; c],
            query: 0,
            rng: EnvRng::from_entropy(),
        }
    }

    pub fn params(level: Level) -> (usize, CardAttr) {
        level.pick(
            (1, CardAttr::Colour),
            (2, CardAttr::Suit),
            (4, CardAttr::Rank),
        )
    }

    #[inline]
    fn deal(&mut self, obs: &mut [f32]) {
        let value = self.values.deal();
        self.query = self.queries.deal();
        self.counts[value as usize] += 1;
        let c = self.counts.len();
        write_one_hot(&mut obs[..c], value as usize);
        write_one_hot(&mut obs[c..], self.query as usize);
    }
}

impl Env for CountRecall {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        reseed(&mut self.rng, seed);
        self.values.shuffle(&mut self.rng);
        self.queries.shuffle(&mut self.rng);
        self.counts.fill(0);
        self.deal(obs);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let answer = self.counts[self.query as usize] as i64;
        let scale = 1.0 / (self.values.len() - 1) as f32;
        let reward = if matches!(action, Action::Discrete(a) if a == answer) {
            scale
        } else {
            -scale
        };
        self.deal(obs);
        Ok(Step {
            reward,
            terminated: self.values.remaining() == 0,
            truncated: false,
        })
    }

    fn render(&self) -> Option<Frame> {
        Some(Frame::Text(format!(
            "dealt {}/{} counts {:?} query {}, answer {}",
            self.values.dealt,
            self.values.len(),
            self.counts,
            self.query,
            self.counts[self.query as usize]
        )))
    }
}

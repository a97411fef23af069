//! POPGym RepeatFirst: output the suit of the first card, every step.

use super::{reseed, CardAttr, Deck, Level};
use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{write_one_hot, Action, Space};

/// Observe the suit of each dealt card; be rewarded ±1/(N-1) for naming the first card's suit.
/// N - 1 steps (51 / 415 / 831), then terminated.
pub(crate) struct RepeatFirst {
    spec: EnvSpec,
    deck: Deck,
    first: u8,
    rng: EnvRng,
}

impl RepeatFirst {
    pub fn new(id: &str, num_decks: usize) -> Self {
        let spec = EnvSpec::new(id, Space::discrete(4), Space::discrete(4));
        RepeatFirst {
            spec,
            deck: Deck::new(num_decks, CardAttr::Suit),
            first: 0,
            rng: EnvRng::from_entropy(),
        }
    }

    pub fn decks(level: Level) -> usize {
        level.pick(1, 8, 16)
    }
}

impl Env for RepeatFirst {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        reseed(&mut self.rng, seed);
        self.deck.shuffle(&mut self.rng);
        self.first = self.deck.deal();
        write_one_hot(obs, self.first as usize);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let scale = 1.0 / (self.deck.len() - 1) as f32;
        let reward = if matches!(action, Action::Discrete(a) if a == self.first as i64) {
            scale
        } else {
            -scale
        };
        let terminated = self.deck.remaining() == 1;
        let card = self.deck.deal();
        write_one_hot(obs, card as usize);
        Ok(Step {
            reward,
            terminated,
            truncated: false,
        })
    }

    fn render(&self) -> Option<Frame> {
        Some(Frame::Text(format!(
            "dealt {}/{} first suit {}, answer {}",
            self.deck.dealt,
            self.deck.len(),
            self.first,
            self.first
        )))
    }
}

//! POPGym Autoencode: watch a sequence of suits, then output it in reverse.

use super::{reseed, CardAttr, Deck, Level};
use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{write_one_hot, Action, Space};

/// Watch phase: each step deals a card and shows (mode = 1, suit); the last card arrives with
/// mode 0 ("play starts next step"); actions are ignored, reward 0. Play phase: each step pops
/// the most recently dealt card and pays ±1/N for naming its suit; the observation is (0, 0).
/// 2N - 1 steps (103 / 207 / 311), then terminated.
pub(crate) struct Autoencode {
    spec: EnvSpec,
    deck: Deck,
    /// Cards still to recall (a stack over `deck.cards[..recall]`).
    recall: usize,
    playing: bool,
    rng: EnvRng,
}

impl Autoencode {
    pub fn new(id: &str, num_decks: usize) -> Self {
        let spec = EnvSpec::new(id, Space::multi_discrete(vec![2, 4]), Space::discrete(4));
        Autoencode {
            spec,
            deck: Deck::new(num_decks, CardAttr::Suit),
            recall: 0,
            playing: false,
            rng: EnvRng::from_entropy(),
        }
    }

    pub fn decks(level: Level) -> usize {
        level.pick(1, 2, 3)
    }

    #[inline]
    fn write_obs(obs: &mut [f32], watch: bool, suit: u8) {
        write_one_hot(&mut obs[..2], watch as usize);
        write_one_hot(&mut obs[2..], suit as usize);
    }
}

impl Env for Autoencode {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        reseed(&mut self.rng, seed);
        self.deck.shuffle(&mut self.rng);
        self.playing = false;
        let card = self.deck.deal();
        self.recall = 1;
        Self::write_obs(obs, true, card);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        if !self.playing {
            let card = self.deck.deal();
            self.recall += 1;
            self.playing = self.deck.remaining() == 0;
            Self::write_obs(obs, !self.playing, card);
            return Ok(Step::running(0.0));
        }
        let terminated = self.recall == 1;
        self.recall -= 1;
        let target = self.deck.cards[self.recall] as i64;
        let scale = 1.0 / self.deck.len() as f32;
        let reward = if matches!(action, Action::Discrete(a) if a == target) {
            scale
        } else {
            -scale
        };
        Self::write_obs(obs, false, 0);
        Ok(Step {
            reward,
            terminated,
            truncated: false,
        })
    }

    fn render(&self) -> Option<Frame> {
        if !self.playing {
            return Some(Frame::Text(format!(
                "watch: {} cards shown of {}, answer: none yet (any action, unscored)",
                self.recall,
                self.deck.len()
            )));
        }
        // The next action is scored against the card shown `recall` steps before the end.
        Some(Frame::Text(format!(
            "play: {} cards to recall of {}, answer {}",
            self.recall,
            self.deck.len(),
            self.deck.cards[self.recall - 1]
        )))
    }
}

//! POPGym RepeatPrevious: output the suit of the card seen k cards ago.

use super::{reseed, CardAttr, Deck, Level};
use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{write_one_hot, Action, Space};

/// At step t (after seeing cards c_0..c_{t-1}) the action is scored when t >= k: ±1/(N-k)
/// for naming suit(c_{t-k}) (k counts the current card as position 1). N - 1 steps
/// (51 / 103 / 155), then terminated.
pub(crate) struct RepeatPrevious {
    spec: EnvSpec,
    deck: Deck,
    k: usize,
    rng: EnvRng,
}

impl RepeatPrevious {
    pub fn new(id: &str, num_decks: usize, k: usize) -> Self {
        let spec = EnvSpec::new(id, Space::discrete(4), Space::discrete(4));
        RepeatPrevious {
            spec,
            deck: Deck::new(num_decks, CardAttr::Suit),
            k,
            rng: EnvRng::from_entropy(),
        }
    }

    /// (num_decks, k) of a level.
    pub fn params(level: Level) -> (usize, usize) {
        level.pick((1, 4), (2, 32), (3, 64))
    }
}

impl Env for RepeatPrevious {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        reseed(&mut self.rng, seed);
        self.deck.shuffle(&mut self.rng);
        let card = self.deck.deal();
        write_one_hot(obs, card as usize);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let t = self.deck.dealt;
        let reward = if t >= self.k {
            let scale = 1.0 / (self.deck.len() - self.k) as f32;
            let target = self.deck.cards[t - self.k] as i64;
            if matches!(action, Action::Discrete(a) if a == target) {
                scale
            } else {
                -scale
            }
        } else {
            0.0
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
        let t = self.deck.dealt;
        let recent = &self.deck.cards[t.saturating_sub(self.k)..t];
        let answer = if t >= self.k {
            format!("answer {}", self.deck.cards[t - self.k])
        } else {
            "answer: none yet (unscored before k cards)".into()
        };
        Some(Frame::Text(format!(
            "dealt {}/{} k={} last k suits {:?}, {answer}",
            t,
            self.deck.len(),
            self.k,
            recent
        )))
    }
}

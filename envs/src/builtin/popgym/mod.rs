//! POPGym (Morad et al., ICLR 2023) memory tasks with their Easy/Medium/Hard levels.
//!
//! Card games use POPGym's deck: `52 * num_decks` cards, card `i` has suit `i % 4`, colour
//! `i % 2` and rank `(i / 4) % 13`, shuffled at every reset. Every episode return lies in
//! [-1, 1] (stateless CartPole: [0, 1]). Shuffles use the environment RNG, not NumPy's
//! shuffle, so episodes match POPGym in distribution, not card for card.

pub(crate) mod autoencode;
pub(crate) mod count_recall;
pub(crate) mod repeat_first;
pub(crate) mod repeat_previous;
pub(crate) mod stateless_cartpole;

use crate::rng::EnvRng;

/// Difficulty level of a POPGym task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Easy.
    Easy,
    /// Medium.
    Medium,
    /// Hard.
    Hard,
}

impl Level {
    /// All levels, easiest first.
    pub const ALL: [Level; 3] = [Level::Easy, Level::Medium, Level::Hard];

    /// "Easy", "Medium" or "Hard".
    pub fn name(self) -> &'static str {
        match self {
            Level::Easy => "Easy",
            Level::Medium => "Medium",
            Level::Hard => "Hard",
        }
    }

    /// Pick the value for this level.
    pub fn pick<T>(self, easy: T, medium: T, hard: T) -> T {
        match self {
            Level::Easy => easy,
            Level::Medium => medium,
            Level::Hard => hard,
        }
    }
}

/// Which attribute of a card a task looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CardAttr {
    Colour,
    Suit,
    Rank,
}

impl CardAttr {
    pub fn values(self) -> usize {
        match self {
            CardAttr::Colour => 2,
            CardAttr::Suit => 4,
            CardAttr::Rank => 13,
        }
    }

    #[inline]
    fn of(self, card: usize) -> u8 {
        (match self {
            CardAttr::Colour => card % 2,
            CardAttr::Suit => card % 4,
            CardAttr::Rank => (card / 4) % 13,
        }) as u8
    }
}

/// A shuffled deck seen through one attribute; cards are dealt in order.
#[derive(Debug, Clone)]
pub(crate) struct Deck {
    attr: CardAttr,
    order: Vec<u16>,
    /// Attribute of each card in dealing order.
    pub cards: Vec<u8>,
    /// Cards dealt so far.
    pub dealt: usize,
}

impl Deck {
    pub fn new(num_decks: usize, attr: CardAttr) -> Self {
        let n = 52 * num_decks;
        Deck {
            attr,
            order: (0..n as u16).collect(),
            cards: vec![0; n],
            dealt: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    /// Cards still in the deck.
    pub fn remaining(&self) -> usize {
        self.cards.len() - self.dealt
    }

    pub fn shuffle(&mut self, rng: &mut EnvRng) {
        // From the sorted deck: the order depends on the RNG alone, so a seeded reset replays
        // the same episode whatever was dealt before.
        for (i, o) in self.order.iter_mut().enumerate() {
            *o = i as _;
        }
        rng.shuffle(&mut self.order);
        for (c, &o) in self.cards.iter_mut().zip(&self.order) {
            *c = self.attr.of(o as usize);
        }
        self.dealt = 0;
    }

    /// Deal the next card, returning its attribute.
    #[inline]
    pub fn deal(&mut self) -> u8 {
        let c = self.cards[self.dealt];
        self.dealt += 1;
        c
    }
}

/// Re-seed `rng` if a seed is given (Gymnasium's `reset(seed=...)`).
pub(crate) fn reseed(rng: &mut EnvRng, seed: Option<u64>) {
    if let Some(s) = seed {
        *rng = EnvRng::from_seed(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deck_has_each_card_once_per_deck() {
        let mut rng = EnvRng::from_seed(5);
        let mut d = Deck::new(2, CardAttr::Suit);
        d.shuffle(&mut rng);
        let mut counts = [0; 4];
        while d.remaining() > 0 {
            counts[d.deal() as usize] += 1;
        }
        assert_eq!(counts, [26; 4]);
        let mut r = Deck::new(1, CardAttr::Rank);
        r.shuffle(&mut rng);
        let mut ranks = [0; 13];
        r.cards.iter().for_each(|&c| ranks[c as usize] += 1);
        assert_eq!(ranks, [4; 13]);
    }
}

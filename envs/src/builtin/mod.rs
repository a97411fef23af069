//! The built-in environments and their registration.

pub(crate) mod cartpole;
pub(crate) mod memory_chain;
pub(crate) mod pendulum;
pub mod popgym;
pub mod sequence_tasks;
pub(crate) mod tmaze;

use crate::kwargs::KwargSpec;
use crate::registry::Registry;
use memory_chain::{MemoryChain, MEMORY_LEN_SWEEP, MEMORY_SIZE_SWEEP};
use popgym::autoencode::Autoencode;
use popgym::count_recall::CountRecall;
use popgym::repeat_first::RepeatFirst;
use popgym::repeat_previous::RepeatPrevious;
use popgym::stateless_cartpole::StatelessCartPole;
use popgym::{CardAttr, Level};
use sequence_tasks::{SequenceEnv, SequenceTask};

/// Longest T-Maze corridor accepted.
pub const MAX_CORRIDOR: i64 = 1_000_000;

impl Registry {
    /// A registry holding every built-in environment.
    pub fn with_builtins() -> Self {
        let mut r = Registry::empty();
        register_all(&mut r);
        r
    }
}

/// Register every built-in environment into `r`.
fn register_all(r: &mut Registry) {
    let add = |res: crate::Result<()>| res.expect("built-in ids are valid and unique");

    add(r.register(
        "CartPole-v1",
        "Gymnasium CartPole-v1: balance a pole on a cart (500-step limit, threshold 475)",
        vec![],
        |id, _| Ok(cartpole::CartPole::new(id)),
    ));
    add(r.register(
        "Pendulum-v1",
        "Gymnasium Pendulum-v1: swing up a pendulum with torque in [-2, 2] (200-step limit)",
        vec![KwargSpec::float("g", 0.0, 100.0, Some(10.0), "gravity")],
        |id, kw| Ok(pendulum::Pendulum::new(id, kw.float("g").unwrap_or(10.0))),
    ));

    let chain = |id: &str, len: u64, bits: u64| MemoryChain::new(id, len, bits as usize);
    add(r.register(
        "MemoryChain-v0",
        "bsuite MemoryChain: recall the queried context bit after memory_length steps (+1/-1 at the end)",
        vec![
            KwargSpec::int("memory_length", 1, 100_000, 5, "steps between context and query"),
            KwargSpec::int("num_bits", 1, 1_000, 1, "context bits; one of them is queried"),
        ],
        move |id, kw| Ok(chain(id, kw.int("memory_length") as u64, kw.int("num_bits") as u64)),
    ));
    add(r.register(
        "MemoryLen-v0",
        "bsuite memory_len sweep: MemoryChain with 1 bit and memory_length from setting 0..28 (bsuite's 0..22: 1..100; then 150, 200, 300, 500, 700, 1000)",
        vec![KwargSpec::int("setting", 0, (MEMORY_LEN_SWEEP.len() - 1) as i64, 0, "bsuite setting index (memory_len/N; 23..28 extend it to 1000)")],
        move |id, kw| Ok(chain(id, MEMORY_LEN_SWEEP[kw.int("setting") as usize], 1)),
    ));
    add(r.register(
        "MemorySize-v0",
        "bsuite memory_size sweep: MemoryChain with memory_length 2 and num_bits from setting 0..16 (1..40)",
        vec![KwargSpec::int("setting", 0, 16, 0, "bsuite setting index (memory_size/N)")],
        move |id, kw| Ok(chain(id, 2, MEMORY_SIZE_SWEEP[kw.int("setting") as usize])),
    ));

    for (id, active, summary) in [
        ("TMaze-Passive-v0", false, "Passive T-Maze (Ni et al. 2023): the goal side is shown at the start; walk the corridor and turn"),
        ("TMaze-Active-v0", true, "Active T-Maze (Ni et al. 2023): step left to see the goal side, then walk the corridor and turn"),
    ] {
        add(r.register(
            id,
            summary,
            vec![
                KwargSpec::int("corridor_length", 1, MAX_CORRIDOR, 100, "corridor length L (episode L+1 passive, L+3 active)"),
                KwargSpec::int("min_corridor_length", 0, MAX_CORRIDOR, 0, "if set, each episode draws L uniformly from [this, corridor_length]"),
                KwargSpec::float("penalty", -1.0, 0.0, None, "reward for falling behind the schedule (default -1/L)"),
            ],
            move |id, kw| {
                let l = kw.int("corridor_length") as u64;
                let shortest = match kw.int("min_corridor_length") as u64 {
                    0 => l,
                    m if m > l => {
                        return Err(crate::EnvError::BadKwarg {
                            id: id.into(),
                            key: "min_corridor_length".into(),
                            value: m.to_string(),
                            expected: format!("at most corridor_length = {l} (or 0 for a fixed length)"),
                        })
                    }
                    m => m,
                };
                let penalty = kw.float("penalty").map(|p| p as f32);
                Ok(tmaze::TMaze::new(id, (shortest, l), active, penalty))
            },
        ));
    }

    for (task, name) in [
        (SequenceTask::Copy, "Copy"),
        (SequenceTask::Denoise, "Denoise"),
    ] {
        add(r.register(
            &format!("{name}-v0"),
            &format!("{name} task (RIMs; Kerg et al. 2020): output the 10 symbols after the marker; +0.1 per correct one"),
            vec![KwargSpec::int("delay", 1, 1_000_000, 50, "delay T; the sequence has T + 20 steps")],
            move |id, kw| Ok(SequenceEnv::new(id, task, kw.int("delay") as usize)),
        ));
    }

    register_popgym(r);
}

fn register_popgym(r: &mut Registry) {
    let add = |res: crate::Result<()>| res.expect("built-in ids are valid and unique");
    let decks = |max| KwargSpec::int("num_decks", 1, max, 1, "decks of 52 cards");
    add(r.register(
        "popgym-RepeatFirst-v0",
        "POPGym RepeatFirst with chosen deck count",
        vec![decks(64)],
        |id, kw| Ok(RepeatFirst::new(id, kw.int("num_decks") as usize)),
    ));
    add(r.register(
        "popgym-RepeatPrevious-v0",
        "POPGym RepeatPrevious with chosen deck count and lag k (k < 52 * num_decks)",
        vec![
            decks(64),
            KwargSpec::int("k", 1, 1_000, 4, "repeat the suit seen k cards ago"),
        ],
        |id, kw| {
            let (n, k) = (kw.int("num_decks") as usize, kw.int("k") as usize);
            if k >= 52 * n {
                return Err(crate::EnvError::BadKwarg {
                    id: id.into(),
                    key: "k".into(),
                    value: k.to_string(),
                    expected: format!("an integer below 52 * num_decks = {}", 52 * n),
                });
            }
            Ok(RepeatPrevious::new(id, n, k))
        },
    ));
    add(r.register(
        "popgym-Autoencode-v0",
        "POPGym Autoencode with chosen deck count",
        vec![decks(64)],
        |id, kw| Ok(Autoencode::new(id, kw.int("num_decks") as usize)),
    ));
    add(r.register(
        "popgym-PositionOnlyCartPole-v0",
        "POPGym PositionOnlyCartPole with chosen episode length",
        vec![KwargSpec::int(
            "max_episode_length",
            1,
            1_000_000,
            200,
            "truncation length",
        )],
        |id, kw| {
            Ok(StatelessCartPole::new(
                id,
                kw.int("max_episode_length") as u64,
                0.0,
            ))
        },
    ));
    add(r.register(
        "popgym-NoisyPositionOnlyCartPole-v0",
        "POPGym NoisyPositionOnlyCartPole with chosen noise",
        vec![
            KwargSpec::int("max_episode_length", 1, 1_000_000, 200, "truncation length"),
            KwargSpec::float(
                "noise_sigma",
                0.0,
                10.0,
                Some(0.1),
                "std of the observation noise",
            ),
        ],
        |id, kw| {
            Ok(StatelessCartPole::new(
                id,
                kw.int("max_episode_length") as u64,
                kw.float("noise_sigma").unwrap_or(0.1),
            ))
        },
    ));

    for level in Level::ALL {
        let l = level.name();
        add(r.register(
            &format!("popgym-RepeatFirst{l}-v0"),
            &format!("POPGym RepeatFirst {l}: repeat the first card's suit every step"),
            vec![],
            move |id, _| Ok(RepeatFirst::new(id, RepeatFirst::decks(level))),
        ));
        add(r.register(
            &format!("popgym-RepeatPrevious{l}-v0"),
            &format!("POPGym RepeatPrevious {l}: repeat the suit seen k cards ago"),
            vec![],
            move |id, _| {
                let (n, k) = RepeatPrevious::params(level);
                Ok(RepeatPrevious::new(id, n, k))
            },
        ));
        add(r.register(
            &format!("popgym-CountRecall{l}-v0"),
            &format!("POPGym CountRecall {l}: count how often the queried card category was dealt"),
            vec![],
            move |id, _| {
                let (n, attr): (usize, CardAttr) = CountRecall::params(level);
                Ok(CountRecall::new(id, n, attr))
            },
        ));
        add(r.register(
            &format!("popgym-Autoencode{l}-v0"),
            &format!("POPGym Autoencode {l}: watch a run of suits, then play it back reversed"),
            vec![],
            move |id, _| Ok(Autoencode::new(id, Autoencode::decks(level))),
        ));
        add(r.register(
            &format!("popgym-PositionOnlyCartPole{l}-v0"),
            &format!("POPGym PositionOnlyCartPole {l}: CartPole observing only (x, theta)"),
            vec![],
            move |id, _| {
                Ok(StatelessCartPole::new(
                    id,
                    StatelessCartPole::max_len(level),
                    0.0,
                ))
            },
        ));
        add(r.register(
            &format!("popgym-NoisyPositionOnlyCartPole{l}-v0"),
            &format!("POPGym NoisyPositionOnlyCartPole {l}: (x, theta) plus Gaussian noise, 200-step episodes"),
            vec![],
            move |id, _| Ok(StatelessCartPole::new(id, 200, StatelessCartPole::sigma(level))),
        ));
    }
}

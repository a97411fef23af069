//! An Engram environment plugin: `RememberFirstBit-v0`, exported with `engram_envs::export_plugin!`.
//!
//! Load it with `engram envs describe --plugin PATH env-plugin-example/RememberFirstBit-v0`; it also
//! re-exports the built-in passive T-Maze, so `engram bench envs --plugin PATH` can measure the ABI's cost.

use engram_envs::{Action, Env, EnvRng, EnvSpec, Frame, KwargSpec, Kwargs, Result, Space, Step};

/// Remember the bit shown on the first observation and answer it after `delay` blank steps.
///
/// Observation (2 floats in [-1, 1]): `[cue, query]`; `cue` is ±1 on the first observation
/// and 0 after, `query` is 1 on the step where the answer is due. Actions: 0 or 1, the bit.
/// Reward: +1 for the right answer on the query step, -1 for a wrong one, 0 before; the episode
/// then terminates (`delay + 1` steps).
pub struct RememberFirstBit {
    spec: EnvSpec,
    delay: u64,
    panic_in_step: bool,
    nan_obs: bool,
    t: u64,
    bit: u64,
    rng: EnvRng,
}

impl RememberFirstBit {
    /// The task named `id` from checked keyword arguments.
    pub fn new(id: &str, kwargs: &Kwargs) -> Self {
        RememberFirstBit {
            spec: EnvSpec::new(
                id,
                Space::uniform_box(-1.0, 1.0, vec![2]),
                Space::discrete(2),
            ),
            delay: kwargs.int("delay") as u64,
            panic_in_step: kwargs.bool("panic_in_step"),
            nan_obs: kwargs.bool("nan_obs"),
            t: 0,
            bit: 0,
            rng: EnvRng::from_entropy(),
        }
    }

    fn write_obs(&self, obs: &mut [f32]) {
        let cue = if self.t == 0 {
            if self.bit == 1 {
                1.0
            } else {
                -1.0
            }
        } else {
            0.0
        };
        obs[0] = cue;
        obs[1] = if self.t == self.delay { 1.0 } else { 0.0 };
        if self.nan_obs && self.t > 0 {
            obs[1] = f32::NAN; // lets the host's tests see the checker flag it
        }
    }
}

impl Env for RememberFirstBit {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        if let Some(seed) = seed {
            self.rng = EnvRng::from_seed(seed);
        }
        self.t = 0;
        self.bit = self.rng.below(2);
        self.write_obs(obs);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        // Lets the host's tests see that a panic becomes an error, not an abort.
        assert!(!self.panic_in_step, "panic_in_step is set");
        let answered = self.t == self.delay;
        self.t += 1;
        self.write_obs(obs);
        if !answered {
            return Ok(Step::running(0.0));
        }
        let right = action == Action::Discrete(self.bit as i64);
        Ok(Step::terminal(if right { 1.0 } else { -1.0 }))
    }

    fn render(&self) -> Option<Frame> {
        Some(Frame::Text(format!(
            "t={} of {} (answer due at t={})",
            self.t,
            self.delay + 1,
            self.delay
        )))
    }
}

engram_envs::export_plugin![(
    "RememberFirstBit-v0",
    "remember the first observation's bit and answer it after `delay` blank steps (+1/-1)",
    vec![
        KwargSpec::int(
            "delay",
            0,
            100_000,
            5,
            "blank steps between the cue and the answer"
        ),
        KwargSpec::bool(
            "panic_in_step",
            false,
            "panic in step (tests the host's containment)"
        ),
        KwargSpec::bool(
            "nan_obs",
            false,
            "write NaN into observations after the first (tests the checker)"
        ),
    ],
    |id, kw| Ok(RememberFirstBit::new(id, kw)),
), (
    // A built-in env re-exported through the ABI: `engram bench envs --plugin PATH` measures
    // it next to the built-in, which shows what the plugin boundary costs per step.
    "TMaze-Passive-v0",
    "the built-in passive T-Maze, served through the plugin ABI (for `engram bench envs --plugin`)",
    engram_envs::describe("TMaze-Passive-v0")
        .map(|d| d.kwargs)
        .unwrap_or_default(),
    |_, kw| {
        let kwargs = kw.values().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        engram_envs::make("TMaze-Passive-v0", &kwargs)
    },
)];

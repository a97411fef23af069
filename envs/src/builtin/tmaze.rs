//! Passive and Active T-Maze of Ni et al. (2023), with ambiguous positions.

use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{Action, Space};

/// A corridor of `corridor_length` cells ending in a T-junction; the goal side (up or down) is
/// shown only on the first visit to the oracle cell x = 0.
///
/// With a range of lengths (`min_corridor_length` below `corridor_length`), every episode draws
/// its L uniformly from the range after the goal side, and the default penalty is −1/L of that
/// episode; the junction is marked in the observation, so the agent still sees where to turn.
///
/// Passive (`oracle_length` 0): the agent starts on the oracle; episode length L + 1.
/// Active (`oracle_length` 1): it starts one cell right of the oracle and must step left to see
/// the cue; episode length L + 3. Actions: 0 right, 1 up, 2 left, 3 down; moving into a wall
/// stays. Observation (2 floats): oracle (0, goal_y) on first visit, corridor (0, 0),
/// junction or goal cells (1, y). Reward: `penalty` on each non-final step where
/// x < t - oracle_length; on the final step 1 if y == goal_y else 0. The episode terminates at
/// its fixed length.
pub(crate) struct TMaze {
    spec: EnvSpec,
    /// The range episodes draw L from (equal bounds: a fixed length).
    lengths: (i64, i64),
    /// The penalty when given; `None`: −1/L of each episode.
    fixed_penalty: Option<f32>,
    corridor_length: i64,
    oracle_length: i64,
    episode_length: u64,
    penalty: f32,
    x: i64,
    y: i64,
    goal_y: i64,
    oracle_visited: bool,
    t: u64,
    rng: EnvRng,
}

impl TMaze {
    /// A T-Maze with corridors of `lengths.0..=lengths.1` cells (one length when equal) and
    /// the late-step `penalty` (`None`: −1/L).
    pub fn new(id: &str, lengths: (u64, u64), active: bool, penalty: Option<f32>) -> Self {
        let corridor_length = lengths.1;
        let oracle_length = if active { 1 } else { 0 };
        let spec = EnvSpec::new(
            id,
            Space::uniform_box(-1.0, 1.0, vec![2]),
            Space::discrete(4),
        );
        TMaze {
            spec,
            lengths: (lengths.0 as i64, lengths.1 as i64),
            fixed_penalty: penalty,
            corridor_length: corridor_length as i64,
            oracle_length,
            episode_length: corridor_length + 2 * oracle_length as u64 + 1,
            penalty: penalty.unwrap_or(-1.0 / corridor_length as f32),
            x: 0,
            y: 0,
            goal_y: 1,
            oracle_visited: false,
            t: 0,
            rng: EnvRng::from_entropy(),
        }
    }

    #[inline]
    fn write_obs(&mut self, obs: &mut [f32]) {
        let junction = self.oracle_length + self.corridor_length;
        let (a, b) = if self.x == 0 {
            let exposure = if self.oracle_visited { 0 } else { self.goal_y };
            self.oracle_visited = true;
            (0, exposure)
        } else if self.x < junction {
            (0, 0)
        } else {
            (1, self.y)
        };
        obs[0] = a as f32;
        obs[1] = b as f32;
    }

    #[inline]
    fn is_cell(&self, x: i64, y: i64) -> bool {
        let junction = self.oracle_length + self.corridor_length;
        (y == 0 && (0..=junction).contains(&x)) || (x == junction && y.abs() == 1)
    }
}

impl Env for TMaze {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        if let Some(s) = seed {
            self.rng = EnvRng::from_seed(s);
        }
        self.x = self.oracle_length;
        self.y = 0;
        self.goal_y = if self.rng.below(2) == 0 { -1 } else { 1 };
        let (shortest, longest) = self.lengths;
        if shortest < longest {
            let l = shortest + self.rng.below((longest - shortest + 1) as u64) as i64;
            self.corridor_length = l;
            self.episode_length = (l + 2 * self.oracle_length + 1) as u64;
            self.penalty = self.fixed_penalty.unwrap_or(-1.0 / l as f32);
        }
        self.oracle_visited = false;
        self.t = 0;
        self.write_obs(obs);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        self.t += 1;
        let (dx, dy) = match action {
            Action::Discrete(0) => (1, 0),
            Action::Discrete(1) => (0, 1),
            Action::Discrete(2) => (-1, 0),
            _ => (0, -1),
        };
        if self.is_cell(self.x + dx, self.y + dy) {
            self.x += dx;
            self.y += dy;
        }
        let done = self.t >= self.episode_length;
        let step = if done {
            Step::terminal(if self.y == self.goal_y { 1.0 } else { 0.0 })
        } else if self.x < self.t as i64 - self.oracle_length {
            Step::running(self.penalty)
        } else {
            Step::running(0.0)
        };
        self.write_obs(obs);
        Ok(step)
    }

    fn render(&self) -> Option<Frame> {
        let junction = self.oracle_length + self.corridor_length;
        let goal = if self.goal_y > 0 { "up" } else { "down" };
        let mut text = format!(
            "t={}/{} x={}/{} y={} goal={goal}",
            self.t, self.episode_length, self.x, junction, self.y
        );
        if junction <= 80 {
            let row = |y: i64| -> String {
                (0..=junction)
                    .map(|x| match (x == self.x && y == self.y, self.is_cell(x, y)) {
                        (true, _) => 'A',
                        (false, true) if y == 0 && x == 0 => 'O',
                        (false, true) => {
                            if y == 0 {
                                '.'
                            } else {
                                'G'
                            }
                        }
                        _ => ' ',
                    })
                    .collect()
            };
            text = format!("{}\n{}\n{}\n{text}", row(1), row(0), row(-1));
        }
        Some(Frame::Text(text))
    }
}

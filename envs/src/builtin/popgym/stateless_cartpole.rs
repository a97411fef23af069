//! POPGym PositionOnlyCartPole and NoisyPositionOnlyCartPole: CartPole without velocities.

use rand_distr::{Distribution, Normal};

use super::Level;
use crate::builtin::cartpole::{theta_threshold, CartPolePhysics};
use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::space::{Action, Space};

/// Gymnasium's CartPole dynamics observed as (x, theta) only, optionally with Gaussian noise
/// (clipped to the observation bounds) on every observation. Reward 1/max_len per step
/// (including the terminating one); truncated at max_len (POPGym's own limit, not 500).
pub(crate) struct StatelessCartPole {
    spec: EnvSpec,
    physics: CartPolePhysics,
    reward: f32,
    noise: Option<Normal<f64>>,
    high: [f32; 2],
}

impl StatelessCartPole {
    pub fn new(id: &str, max_len: u64, noise_sigma: f64) -> Self {
        let high = [4.8f32, (theta_threshold() * 2.0) as f32];
        let spec = EnvSpec::new(
            id,
            Space::bounded(high.map(|h| -h).to_vec(), high.to_vec()),
            Space::discrete(2),
        )
        .with_time_limit(max_len);
        let noise =
            (noise_sigma > 0.0).then(|| Normal::new(0.0, noise_sigma).expect("sigma is positive"));
        StatelessCartPole {
            spec,
            physics: CartPolePhysics::new(),
            reward: 1.0 / max_len as f32,
            noise,
            high,
        }
    }

    /// Episode length of PositionOnlyCartPole at a level.
    pub fn max_len(level: Level) -> u64 {
        level.pick(200, 400, 600)
    }

    /// Noise scale of NoisyPositionOnlyCartPole at a level (all levels keep max_len 200).
    pub fn sigma(level: Level) -> f64 {
        level.pick(0.1, 0.2, 0.3)
    }

    #[inline]
    fn write_obs(&mut self, obs: &mut [f32]) {
        let [x, _, theta, _] = self.physics.state;
        let mut v = [x as f32, theta as f32];
        if let Some(noise) = &self.noise {
            for (o, h) in v.iter_mut().zip(self.high) {
                *o = ((*o as f64 + noise.sample(&mut self.physics.rng)) as f32).clamp(-h, h);
            }
        }
        obs.copy_from_slice(&v);
    }
}

impl Env for StatelessCartPole {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        self.physics.reset(seed);
        self.write_obs(obs);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let terminated = self.physics.step(matches!(action, Action::Discrete(1)));
        self.write_obs(obs);
        Ok(Step {
            reward: self.reward,
            terminated,
            truncated: false,
        })
    }

    fn render(&self) -> Option<Frame> {
        Some(Frame::Text(self.physics.text()))
    }
}

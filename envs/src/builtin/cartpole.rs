//! CartPole-v1, step for step and seed for seed identical to Gymnasium 1.x (state in f64).

use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{Action, Space};

const GRAVITY: f64 = 9.8;
const MASS_CART: f64 = 1.0;
const MASS_POLE: f64 = 0.1;
const HALF_LENGTH: f64 = 0.5;
const FORCE_MAG: f64 = 10.0;
const TAU: f64 = 0.02;
const X_THRESHOLD: f64 = 2.4;

/// Pole angle at which the episode terminates: `12 * 2 * pi / 360` as Gymnasium computes it.
pub(crate) fn theta_threshold() -> f64 {
    12.0 * 2.0 * std::f64::consts::PI / 360.0
}

/// The cart-pole dynamics shared by CartPole-v1 and POPGym's stateless variants.
#[derive(Debug, Clone)]
pub(crate) struct CartPolePhysics {
    /// (x, x_dot, theta, theta_dot).
    pub state: [f64; 4],
    pub rng: EnvRng,
}

impl CartPolePhysics {
    pub fn new() -> Self {
        CartPolePhysics {
            state: [0.0; 4],
            rng: EnvRng::from_entropy(),
        }
    }

    /// Re-seed if asked, then draw the state from U(-0.05, 0.05)^4.
    pub fn reset(&mut self, seed: Option<u64>) {
        if let Some(s) = seed {
            self.rng = EnvRng::from_seed(s);
        }
        for v in &mut self.state {
            *v = self.rng.uniform(-0.05, 0.05);
        }
    }

    /// One explicit-Euler step (force +10 N for action 1, else -10 N); returns `terminated`.
    #[inline]
    pub fn step(&mut self, push_right: bool) -> bool {
        let total_mass = MASS_POLE + MASS_CART;
        let polemass_length = MASS_POLE * HALF_LENGTH;
        let [x, x_dot, theta, theta_dot] = self.state;
        let force = if push_right { FORCE_MAG } else { -FORCE_MAG };
        let costheta = theta.cos();
        let sintheta = theta.sin();
        let temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
        let thetaacc = (GRAVITY * sintheta - costheta * temp)
            / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * (costheta * costheta) / total_mass));
        let xacc = temp - polemass_length * thetaacc * costheta / total_mass;
        self.state = [
            x + TAU * x_dot,
            x_dot + TAU * xacc,
            theta + TAU * theta_dot,
            theta_dot + TAU * thetaacc,
        ];
        let [x, _, theta, _] = self.state;
        let limit = theta_threshold();
        !(-X_THRESHOLD..=X_THRESHOLD).contains(&x) || !(-limit..=limit).contains(&theta)
    }

    pub fn text(&self) -> String {
        let [x, x_dot, theta, theta_dot] = self.state;
        let col = (((x + X_THRESHOLD) / (2.0 * X_THRESHOLD)) * 40.0).clamp(0.0, 40.0) as usize;
        let mut track = vec![b'-'; 41];
        track[col] = b'#';
        format!(
            "{}\nx={x:+.4} x_dot={x_dot:+.4} theta={theta:+.4} theta_dot={theta_dot:+.4}",
            String::from_utf8_lossy(&track)
        )
    }
}

/// Gymnasium's CartPole-v1: push the cart left (0) or right (1) to keep the pole up.
pub(crate) struct CartPole {
    spec: EnvSpec,
    physics: CartPolePhysics,
}

impl CartPole {
    pub fn new(id: &str) -> Self {
        let high = [
            X_THRESHOLD * 2.0,
            f64::INFINITY,
            theta_threshold() * 2.0,
            f64::INFINITY,
        ]
        .map(|h| h as f32);
        let spec = EnvSpec::new(
            id,
            Space::bounded(high.map(|h| -h).to_vec(), high.to_vec()),
            Space::discrete(2),
        )
        .with_time_limit(500);
        CartPole {
            spec,
            physics: CartPolePhysics::new(),
        }
    }
}

impl Env for CartPole {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        self.physics.reset(seed);
        write_state(&self.physics.state, obs);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let terminated = self.physics.step(matches!(action, Action::Discrete(1)));
        write_state(&self.physics.state, obs);
        Ok(Step {
            reward: 1.0,
            terminated,
            truncated: false,
        })
    }

    fn render(&self) -> Option<Frame> {
        Some(Frame::Text(self.physics.text()))
    }
}

#[inline]
fn write_state(state: &[f64; 4], obs: &mut [f32]) {
    for (o, s) in obs.iter_mut().zip(state) {
        *o = *s as f32;
    }
}

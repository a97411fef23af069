//! Pendulum-v1, step for step and seed for seed identical to Gymnasium 1.x with NumPy 2.

use std::f64::consts::PI;

use crate::env::{Env, EnvSpec, Frame, Step};
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{Action, Space};

const MAX_SPEED: f64 = 8.0;
const MAX_TORQUE: f32 = 2.0;
const DT: f64 = 0.05;
const MASS: f64 = 1.0;
const LENGTH: f64 = 1.0;

/// Gymnasium's Pendulum-v1: swing a pendulum up with a torque in [-2, 2].
pub(crate) struct Pendulum {
    spec: EnvSpec,
    gravity: f64,
    /// (theta, theta_dot); theta is never wrapped.
    state: [f64; 2],
    rng: EnvRng,
}

impl Pendulum {
    pub fn new(id: &str, gravity: f64) -> Self {
        let obs = Space::bounded(vec![-1.0, -1.0, -8.0], vec![1.0, 1.0, 8.0]);
        let act = Space::uniform_box(-MAX_TORQUE, MAX_TORQUE, vec![1]);
        let spec = EnvSpec::new(id, obs, act).with_time_limit(200);
        Pendulum {
            spec,
            gravity,
            state: [0.0; 2],
            rng: EnvRng::from_entropy(),
        }
    }

    fn write_obs(&self, obs: &mut [f32]) {
        let [th, thdot] = self.state;
        obs[0] = th.cos() as f32;
        obs[1] = th.sin() as f32;
        obs[2] = thdot as f32;
    }
}

/// `((x + pi) mod 2pi) - pi` with floor modulo, as NumPy computes it.
fn angle_normalize(x: f64) -> f64 {
    (x + PI).rem_euclid(2.0 * PI) - PI
}

impl Env for Pendulum {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> Result<()> {
        if let Some(s) = seed {
            self.rng = EnvRng::from_seed(s);
        }
        self.state = [self.rng.uniform(-PI, PI), self.rng.uniform(-1.0, 1.0)];
        self.write_obs(obs);
        Ok(())
    }

    #[inline]
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> Result<Step> {
        let u = match action {
            Action::Continuous(v) => v[0].clamp(-MAX_TORQUE, MAX_TORQUE),
            _ => 0.0,
        };
        let [th, thdot] = self.state;
        // Under NumPy 2 (NEP 50) the torque terms are computed in float32, the rest in float64;
        // `3 / (m l^2)` is 3.0 since m = l = 1.
        let torque_cost = (0.001f32 * (u * u)) as f64;
        let torque_acc = ((3.0 / (MASS * LENGTH * LENGTH)) as f32 * u) as f64;
        let cost = angle_normalize(th).powi(2) + 0.1 * (thdot * thdot) + torque_cost;
        let g = self.gravity;
        let newthdot = (thdot + (3.0 * g / (2.0 * LENGTH) * th.sin() + torque_acc) * DT)
            .clamp(-MAX_SPEED, MAX_SPEED);
        self.state = [th + newthdot * DT, newthdot];
        self.write_obs(obs);
        Ok(Step::running(-cost as f32))
    }

    fn render(&self) -> Option<Frame> {
        let [th, thdot] = self.state;
        Some(Frame::Text(format!(
            "theta={:+.4} (normalised {:+.4}) theta_dot={thdot:+.4}",
            th,
            angle_normalize(th)
        )))
    }
}

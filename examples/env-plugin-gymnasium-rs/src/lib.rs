//! An Engram environment plugin whose env is written with the `gymnasium-rs` crate: its CartPole,
//! adapted by `engram_envs::gymnasium_adapter::GymnasiumRsEnv` and exported with `export_plugin!`.
//!
//! Any `gymnasium_rs::core::Env<Array1<f32>, i32>` (vector observations, discrete actions) ships
//! the same way: replace `CartPole::new()` with your env.

use engram_envs::gymnasium_adapter::GymnasiumRsEnv;
use engram_envs::Space;
use gymnasium_rs::envs::cartpole::CartPole;

/// Gymnasium's CartPole-v1 observation bounds. gymnasium-rs declares θ within ±0.2094 (the
/// termination threshold), which the falling pole's last observation exceeds, so
/// `engram envs check` rejects the space as declared upstream; these are Gymnasium's own.
const OBS_HIGH: [f32; 4] = [4.8, f32::INFINITY, 0.418_879_03, f32::INFINITY];

engram_envs::export_plugin![(
    "CartPole-v1",
    "gymnasium-rs's CartPole through the gymnasium-rs adapter (500-step limit, Gymnasium's bounds)",
    vec![],
    |id, _kw| {
        GymnasiumRsEnv::new(id, CartPole::new(), Some(500))?.with_observation_space(Space::bounded(
            OBS_HIGH.map(|h| -h).to_vec(),
            OBS_HIGH.to_vec(),
        ))
    },
)];

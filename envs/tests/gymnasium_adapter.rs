//! gymnasium-rs environments through the adapter: gymnasium-rs's own CartPole as an Engram env.
#![cfg(feature = "gymnasium")]

use engram_envs::gymnasium_adapter::GymnasiumRsEnv;
use engram_envs::{
    check_env, Action, ActionBatch, CheckOptions, Registry, Space, VecEnv, VecEnvConfig,
};
use gymnasium_rs::envs::cartpole::CartPole;
use serde_json::Map;

fn registry() -> Registry {
    let mut r = Registry::empty();
    r.register(
        "gymnasium-rs/CartPole-v0",
        "as declared upstream",
        vec![],
        |id, _| GymnasiumRsEnv::new(id, CartPole::new(), Some(500)),
    )
    .expect("register");
    r.register(
        "gymnasium-rs/CartPoleFixed-v0",
        "with Gymnasium's observation bounds",
        vec![],
        |id, _| {
            let high = [4.8f32, f32::INFINITY, 0.41887903, f32::INFINITY];
            GymnasiumRsEnv::new(id, CartPole::new(), Some(500))?
                .with_observation_space(Space::bounded(high.map(|h| -h).to_vec(), high.to_vec()))
        },
    )
    .expect("register");
    r
}

#[test]
fn gymnasium_rs_cartpole_runs_as_an_engram_env() {
    let r = registry();
    let mut env = r
        .make("gymnasium-rs/CartPoleFixed-v0", &Map::new())
        .expect("make");
    assert_eq!(env.spec().action_space, Space::discrete(2));
    assert_eq!(env.spec().obs_dim(), 4);
    let mut obs = [0.0f32; 4];
    env.reset(Some(3), &mut obs).expect("reset");
    let first = obs;
    env.reset(Some(3), &mut obs).expect("reset");
    assert_eq!(obs, first, "seeded resets repeat");
    let mut steps = 0;
    loop {
        let s = env.step(Action::Discrete(1), &mut obs).expect("step");
        steps += 1;
        if s.done() {
            assert!(s.terminated, "always pushing right topples the pole");
            break;
        }
    }
    assert!((5..60).contains(&steps), "{steps}");
    assert!(env.step(Action::Discrete(2), &mut obs).is_err());

    // It also steps inside a VecEnv like any built-in.
    let envs = (0..4)
        .map(|_| r.make("gymnasium-rs/CartPoleFixed-v0", &Map::new()))
        .collect::<Result<Vec<_>, _>>()
        .expect("make");
    let mut v = VecEnv::new(envs, VecEnvConfig::default()).expect("vec");
    v.reset(Some(0)).expect("reset");
    let mut done = 0;
    for _ in 0..200 {
        v.step(ActionBatch::Discrete(&[0, 1, 0, 1])).expect("step");
        done += v.finished_episodes().count();
    }
    assert!(done > 4);
}

#[test]
fn the_checker_catches_gymnasium_rs_cartpole_declaring_too_tight_bounds() {
    // gymnasium-rs declares theta in ±0.2094 (the termination threshold) while the falling
    // step goes past it; Gymnasium declares twice the threshold. The checker reports it, and
    // the corrected declaration passes.
    let r = registry();
    let err = check_env(
        &r,
        "gymnasium-rs/CartPole-v0",
        &Map::new(),
        CheckOptions::default(),
    )
    .unwrap_err();
    assert!(err.message.contains("is outside Box"), "{err}");
    let report = check_env(
        &r,
        "gymnasium-rs/CartPoleFixed-v0",
        &Map::new(),
        CheckOptions::default(),
    )
    .expect("passes");
    assert!(report.episodes > 50, "{report}");
}

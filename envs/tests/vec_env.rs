//! VecEnv semantics: seeding, the three autoreset modes, final observations, parallel stepping.

use engram_envs::{
    make, Action, ActionBatch, AutoresetMode, Env, EnvError, EnvRng, VecEnv, VecEnvConfig,
};
use serde_json::{json, Map};

fn config(autoreset: AutoresetMode) -> VecEnvConfig {
    VecEnvConfig {
        autoreset,
        parallel_threshold: usize::MAX,
    }
}

fn single(id: &str) -> Box<dyn Env> {
    make(id, &Map::new()).expect("make")
}

#[test]
fn env_i_is_seeded_with_seed_plus_i() {
    let mut v = VecEnv::make(
        "CartPole-v1",
        &Map::new(),
        4,
        config(AutoresetMode::SameStep),
    )
    .expect("vec");
    v.reset(Some(10)).expect("reset");
    for i in 0..4 {
        let mut e = single("CartPole-v1");
        let mut obs = [0.0; 4];
        e.reset(Some(10 + i as u64), &mut obs).expect("reset");
        assert_eq!(&v.obs()[i * 4..(i + 1) * 4], &obs);
    }
}

#[test]
fn same_step_resets_at_once_and_keeps_the_final_observation() {
    // CartPole seed 0 with action 1 terminates on step 8.
    let mut v = VecEnv::make(
        "CartPole-v1",
        &Map::new(),
        1,
        config(AutoresetMode::SameStep),
    )
    .expect("vec");
    let mut e = single("CartPole-v1");
    let mut obs = [0.0; 4];
    v.reset(Some(0)).expect("reset");
    e.reset(Some(0), &mut obs).expect("reset");
    for t in 1..=8 {
        v.step(ActionBatch::Discrete(&[1])).expect("step");
        let s = e.step(Action::Discrete(1), &mut obs).expect("step");
        assert_eq!(v.terminated()[0], s.terminated);
        if t < 8 {
            assert_eq!(v.obs(), &obs);
            assert!(v.final_obs(0).is_none());
            assert_eq!(v.finished_episodes().count(), 0);
        }
    }
    assert!(v.terminated()[0]);
    assert_eq!(v.final_obs(0), Some(&obs[..]));
    let stats: Vec<_> = v.finished_episodes().collect();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].1.episode_return, stats[0].1.length), (8.0, 8));
    e.reset(None, &mut obs).expect("reset");
    assert_eq!(
        v.obs(),
        &obs,
        "obs holds the next episode's first observation"
    );
    v.step(ActionBatch::Discrete(&[0])).expect("step");
    assert!(v.final_obs(0).is_none());
    assert!(!v.terminated()[0]);
}

#[test]
fn truncated_episodes_hand_over_the_final_observation_for_bootstrapping() {
    let mut v = VecEnv::make(
        "Pendulum-v1",
        &Map::new(),
        2,
        config(AutoresetMode::SameStep),
    )
    .expect("vec");
    let mut e = single("Pendulum-v1");
    let mut obs = [0.0; 3];
    v.reset(Some(3)).expect("reset");
    e.reset(Some(4), &mut obs).expect("reset");
    for t in 1..=200 {
        v.step(ActionBatch::Continuous(&[0.5, -0.5])).expect("step");
        e.step(Action::Continuous(&[-0.5]), &mut obs).expect("step");
        assert_eq!(v.truncated()[1], t == 200);
        assert!(!v.terminated()[1]);
    }
    assert_eq!(v.final_obs(1), Some(&obs[..]));
    assert_ne!(&v.obs()[3..], &obs[..]);
}

#[test]
fn next_step_mode_returns_final_obs_then_resets_on_the_following_step() {
    let mut v = VecEnv::make(
        "CartPole-v1",
        &Map::new(),
        1,
        config(AutoresetMode::NextStep),
    )
    .expect("vec");
    let mut e = single("CartPole-v1");
    let mut obs = [0.0; 4];
    v.reset(Some(0)).expect("reset");
    e.reset(Some(0), &mut obs).expect("reset");
    for _ in 0..8 {
        v.step(ActionBatch::Discrete(&[1])).expect("step");
        e.step(Action::Discrete(1), &mut obs).expect("step");
    }
    assert!(v.terminated()[0]);
    assert_eq!(v.obs(), &obs, "the ending step shows the final observation");
    assert!(v.final_obs(0).is_none());
    v.step(ActionBatch::Discrete(&[1])).expect("step");
    e.reset(None, &mut obs).expect("reset");
    assert_eq!(v.obs(), &obs);
    assert_eq!(
        (v.rewards()[0], v.terminated()[0], v.truncated()[0]),
        (0.0, false, false)
    );
}

#[test]
fn disabled_mode_requires_an_explicit_reset() {
    let mut v = VecEnv::make(
        "CartPole-v1",
        &Map::new(),
        1,
        config(AutoresetMode::Disabled),
    )
    .expect("vec");
    v.reset(Some(0)).expect("reset");
    for _ in 0..8 {
        v.step(ActionBatch::Discrete(&[1])).expect("step");
    }
    assert!(matches!(
        v.step(ActionBatch::Discrete(&[1])),
        Err(EnvError::NeedsReset { .. })
    ));
    v.reset_done().expect("reset");
    v.step(ActionBatch::Discrete(&[1]))
        .expect("step after reset_done");
}

#[test]
fn bad_actions_and_mismatched_envs_are_errors() {
    let mut v = VecEnv::make("CartPole-v1", &Map::new(), 2, VecEnvConfig::default()).expect("vec");
    v.reset(Some(0)).expect("reset");
    let err = v.step(ActionBatch::Discrete(&[0, 2])).unwrap_err();
    assert!(matches!(err, EnvError::InvalidAction { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("action 2 is outside the action space Discrete(2)"),
        "{err}"
    );
    assert!(matches!(
        v.step(ActionBatch::Discrete(&[0])),
        Err(EnvError::BufferSize { .. })
    ));
    assert!(matches!(
        v.step(ActionBatch::Continuous(&[0.0, 0.0])),
        Err(EnvError::InvalidAction { .. })
    ));
    let mixed = vec![single("CartPole-v1"), single("Pendulum-v1")];
    let msg = VecEnv::new(mixed, VecEnvConfig::default())
        .err()
        .expect("mismatch")
        .to_string();
    assert!(msg.contains("identical spaces"), "{msg}");
}

#[test]
fn parallel_stepping_equals_sequential_stepping() {
    let kwargs = json!({"corridor_length": 7});
    let kwargs = kwargs.as_object().expect("object");
    let n = 300;
    let mut seq = VecEnv::make(
        "TMaze-Active-v0",
        kwargs,
        n,
        config(AutoresetMode::SameStep),
    )
    .expect("vec");
    let mut par = VecEnv::make(
        "TMaze-Active-v0",
        kwargs,
        n,
        VecEnvConfig {
            parallel_threshold: 1,
            ..VecEnvConfig::default()
        },
    )
    .expect("vec");
    seq.reset(Some(1)).expect("reset");
    par.reset(Some(1)).expect("reset");
    let mut rng = EnvRng::from_seed(2);
    let mut actions = vec![0i64; n];
    let mut episodes = 0;
    for _ in 0..200 {
        actions.iter_mut().for_each(|a| *a = rng.below(4) as i64);
        seq.step(ActionBatch::Discrete(&actions)).expect("step");
        par.step(ActionBatch::Discrete(&actions)).expect("step");
        assert_eq!(seq.obs(), par.obs());
        assert_eq!(seq.rewards(), par.rewards());
        assert_eq!(seq.terminated(), par.terminated());
        let a: Vec<_> = seq.finished_episodes().collect();
        let b: Vec<_> = par.finished_episodes().collect();
        assert_eq!(a, b);
        episodes += a.len();
    }
    assert!(episodes > 1000);
}

/// Counts steps and panics on every third one.
struct Flaky {
    spec: engram_envs::EnvSpec,
    steps: u64,
}

impl Env for Flaky {
    fn spec(&self) -> &engram_envs::EnvSpec {
        &self.spec
    }
    fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> engram_envs::Result<()> {
        obs[0] = 0.0;
        Ok(())
    }
    fn step(
        &mut self,
        _action: Action<'_>,
        obs: &mut [f32],
    ) -> engram_envs::Result<engram_envs::Step> {
        self.steps += 1;
        if self.steps % 3 == 0 {
            obs[0] = f32::NAN; // a half-written observation must not leak out
            panic!("flaky env: deliberate panic at step {}", self.steps);
        }
        obs[0] += 1.0;
        Ok(engram_envs::Step {
            reward: 1.0,
            terminated: false,
            truncated: false,
        })
    }
}

fn flaky_vec(n: usize, parallel_threshold: usize) -> VecEnv {
    let spec = engram_envs::EnvSpec::new(
        "Flaky-v0",
        engram_envs::Space::Box {
            low: vec![f32::NEG_INFINITY],
            high: vec![f32::INFINITY],
            shape: vec![1],
        },
        engram_envs::Space::discrete(2),
    );
    let envs = (0..n)
        .map(|_| {
            Box::new(Flaky {
                spec: spec.clone(),
                steps: 0,
            }) as Box<dyn Env>
        })
        .collect();
    VecEnv::new(
        envs,
        VecEnvConfig {
            autoreset: AutoresetMode::SameStep,
            parallel_threshold,
        },
    )
    .expect("vec")
}

#[test]
fn a_panicking_env_is_contained_reset_and_counted() {
    for threshold in [usize::MAX, 1] {
        let mut v = flaky_vec(4, threshold);
        v.reset(Some(0)).expect("reset");
        for t in 1..=9u64 {
            v.step(ActionBatch::Discrete(&[0; 4])).expect("step");
            let crashed = t % 3 == 0;
            for i in 0..4 {
                assert_eq!(v.truncated()[i], crashed, "step {t}");
                assert!(!v.terminated()[i]);
                assert_eq!(v.rewards()[i], if crashed { 0.0 } else { 1.0 });
                assert!(
                    v.final_obs(i).is_none(),
                    "no final observation after a panic"
                );
                let expected = if crashed { 0.0 } else { (t % 3) as f32 };
                assert_eq!(
                    v.obs()[i],
                    expected,
                    "a reset observation follows the panic"
                );
            }
            assert_eq!(v.finished_episodes().count(), 0);
        }
        assert_eq!(v.panics(), 12);
    }
}

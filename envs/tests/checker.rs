//! The env checker passes every built-in environment and catches broken plugins.

use engram_envs::{check_env, Action, CheckOptions, Env, EnvSpec, Registry, Space, Step};
use serde_json::Map;

#[test]
fn every_builtin_env_passes_the_checker() {
    let registry = Registry::with_builtins();
    let ids: Vec<String> = registry.list().iter().map(|e| e.id.clone()).collect();
    assert!(ids.len() >= 30, "{ids:?}");
    for id in ids {
        let report = check_env(
            &registry,
            &id,
            &Map::new(),
            CheckOptions {
                seed: 3,
                steps: 3_000,
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.episodes > 0 || id.starts_with("MemoryChain") && report.warnings.len() == 1,
            "{report}"
        );
        assert!(report.warnings.is_empty(), "{report}");
    }
}

/// A plugin whose observations leave its declared space.
struct Escaping {
    spec: EnvSpec,
    t: u32,
}

impl Env for Escaping {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }
    fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> engram_envs::Result<()> {
        self.t = 0;
        obs[0] = 0.0;
        Ok(())
    }
    fn step(&mut self, _action: Action<'_>, obs: &mut [f32]) -> engram_envs::Result<Step> {
        self.t += 1;
        obs[0] = self.t as f32 / 10.0;
        Ok(Step {
            reward: 0.0,
            terminated: self.t == 20,
            truncated: false,
        })
    }
}

/// A plugin that ignores its seed.
struct Unseeded {
    spec: EnvSpec,
}

impl Env for Unseeded {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }
    fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> engram_envs::Result<()> {
        obs[0] = rand::random::<f32>();
        Ok(())
    }
    fn step(&mut self, _action: Action<'_>, obs: &mut [f32]) -> engram_envs::Result<Step> {
        obs[0] = rand::random::<f32>();
        Ok(Step::running(0.0))
    }
}

#[test]
fn the_checker_names_what_a_broken_plugin_does_wrong() {
    let mut registry = Registry::empty();
    let spec = |id: &str| {
        EnvSpec::new(
            id,
            Space::uniform_box(0.0, 1.0, vec![1]),
            Space::discrete(2),
        )
    };
    registry
        .register(
            "plugins/Escaping-v0",
            "leaves its box",
            vec![],
            move |id, _| {
                Ok(Escaping {
                    spec: spec(id),
                    t: 0,
                })
            },
        )
        .expect("register");
    registry
        .register(
            "plugins/Unseeded-v0",
            "ignores seeds",
            vec![],
            move |id, _| Ok(Unseeded { spec: spec(id) }),
        )
        .expect("register");
    let err = check_env(
        &registry,
        "plugins/Escaping-v0",
        &Map::new(),
        CheckOptions::default(),
    )
    .unwrap_err();
    assert!(err.message.contains("outside Box(0, 1, [1])"), "{err}");
    let err = check_env(
        &registry,
        "plugins/Unseeded-v0",
        &Map::new(),
        CheckOptions::default(),
    )
    .unwrap_err();
    assert!(err.message.contains("diverged"), "{err}");
}

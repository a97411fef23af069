//! Env plugins end to end: the template crate built as a real shared library, loaded, checked and stepped; broken libraries refused.

#[path = "support/build_plugin.rs"]
mod build_plugin;

use build_plugin::{
    broken_plugins, c_plugin, template_plugin, C_ENV, TEMPLATE_ENV, TEMPLATE_TMAZE,
};
use engram_envs::{
    catalog, check_env, load_plugin, make, Action, ActionBatch, CheckOptions, EnvError, Frame,
    VecEnv, VecEnvConfig,
};
use serde_json::{json, Map, Value};

/// Runs the checker on `id` (default kwargs, 2000 random steps) and asserts a clean pass.
fn passes_the_checker(id: &str) {
    let report = check_env(
        &catalog::snapshot(),
        id,
        &Map::new(),
        CheckOptions {
            seed: 2,
            steps: 2_000,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.episodes > 100 && report.warnings.is_empty(),
        "{report}"
    );
}

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn the_template_plugin_loads_steps_and_passes_the_checker() {
    let path = template_plugin();
    let ids = load_plugin(path).expect("loads");
    assert_eq!(ids, [TEMPLATE_ENV, TEMPLATE_TMAZE]);
    assert_eq!(
        load_plugin(path).expect("loads again"),
        ids,
        "loading is idempotent"
    );
    assert!(engram_envs::list().iter().any(|(id, _)| id == TEMPLATE_ENV));

    let description = engram_envs::describe(TEMPLATE_ENV).expect("describe");
    assert_eq!(description.spec.id, TEMPLATE_ENV);
    assert_eq!(description.spec.obs_dim(), 2);
    assert_eq!(description.kwargs.len(), 3);

    // Play one episode right: answer the cue after `delay` steps.
    let mut env = make(TEMPLATE_ENV, &kwargs(json!({"delay": 3}))).expect("make");
    let mut obs = [0.0f32; 2];
    env.reset(Some(11), &mut obs).expect("reset");
    let bit = i64::from(obs[0] > 0.0);
    for _ in 0..3 {
        let step = env.step(Action::Discrete(0), &mut obs).expect("step");
        assert!(!step.done() && step.reward == 0.0);
    }
    assert_eq!(obs[1], 1.0, "query flag on the answer step");
    let last = env.step(Action::Discrete(bit), &mut obs).expect("answer");
    assert!(last.terminated && last.reward == 1.0, "{last:?}");
    assert!(matches!(env.render(), Some(Frame::Text(t)) if t.contains("t=4")));

    // The host's guard and kwargs checks apply as for built-ins.
    assert!(matches!(
        env.step(Action::Discrete(0), &mut obs),
        Err(EnvError::NeedsReset { .. })
    ));
    env.reset(None, &mut obs).expect("reset");
    assert!(matches!(
        env.step(Action::Discrete(2), &mut obs),
        Err(EnvError::InvalidAction { .. })
    ));
    assert!(matches!(
        env.step(Action::Discrete(0), &mut [0.0; 3]),
        Err(EnvError::BufferSize { .. })
    ));
    assert!(matches!(
        make(TEMPLATE_ENV, &kwargs(json!({"delay": -1}))),
        Err(EnvError::BadKwarg { .. })
    ));
    assert!(matches!(
        make(TEMPLATE_ENV, &kwargs(json!({"dealy": 1}))),
        Err(EnvError::UnknownKwarg { .. })
    ));

    passes_the_checker(TEMPLATE_ENV);

    // Many copies across VecEnv's threads.
    let mut envs =
        VecEnv::make(TEMPLATE_ENV, &Map::new(), 8, VecEnvConfig::default()).expect("vec");
    envs.reset(Some(0)).expect("reset");
    let actions = vec![0i64; 8];
    let mut finished = 0;
    for _ in 0..50 {
        envs.step(ActionBatch::Discrete(&actions)).expect("step");
        finished += envs.finished_episodes().count();
    }
    assert_eq!(finished, 8 * (50 / 6), "episodes of delay 5 last 6 steps");
}

#[test]
fn a_panic_in_a_plugin_step_is_an_env_error_not_an_abort() {
    load_plugin(template_plugin()).expect("loads");
    let mut env = make(TEMPLATE_ENV, &kwargs(json!({"panic_in_step": true}))).expect("make");
    let mut obs = [0.0f32; 2];
    env.reset(Some(0), &mut obs).expect("reset does not panic");
    match env.step(Action::Discrete(0), &mut obs) {
        Err(EnvError::Crashed { id, message }) => {
            assert_eq!(id, TEMPLATE_ENV);
            assert!(
                message.contains("panicked") && message.contains("panic_in_step is set"),
                "{message}"
            );
        }
        other => panic!("expected a Crashed error, got {other:?}"),
    }

    // In a VecEnv the crash is contained like a built-in env's panic: the env starts a new
    // episode, the step is a truncation without a final observation, and it is counted.
    let mut envs = VecEnv::make(
        TEMPLATE_ENV,
        &kwargs(json!({"panic_in_step": true})),
        2,
        VecEnvConfig::default(),
    )
    .expect("vec");
    envs.reset(Some(0)).expect("reset");
    for _ in 0..3 {
        envs.step(ActionBatch::Discrete(&[0, 1]))
            .expect("contained");
        assert_eq!(envs.truncated(), [true, true]);
        assert!(envs.final_obs(0).is_none());
    }
    assert_eq!(envs.panics(), 6);
}

#[test]
fn broken_libraries_are_refused_naming_the_path_and_the_fix() {
    let (no_entry, wrong_abi) = broken_plugins();
    let err = load_plugin(no_entry).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, EnvError::Plugin { .. }), "{err:?}");
    assert!(
        msg.contains("no_entry")
            && msg.contains("exports no `engram_env_plugin`")
            && msg.contains("export_plugin!"),
        "{msg}"
    );

    let msg = load_plugin(wrong_abi).unwrap_err().to_string();
    assert!(
        msg.contains("wrong_abi")
            && msg.contains("ABI version 999")
            && msg.contains(&format!("version {}", engram_envs::ENGRAM_ENV_ABI_VERSION))
            && msg.contains("rebuild the plugin"),
        "{msg}"
    );

    let not_a_library = build_plugin::workspace_root().join("Cargo.toml");
    let msg = load_plugin(&not_a_library).unwrap_err().to_string();
    assert!(
        msg.contains("Cargo.toml") && msg.contains("not a loadable shared library"),
        "{msg}"
    );
}

#[test]
fn a_built_in_served_through_the_abi_steps_exactly_like_the_built_in() {
    load_plugin(template_plugin()).expect("loads");
    let kw = kwargs(json!({"corridor_length": 7}));
    let mut native = make("TMaze-Passive-v0", &kw).expect("built-in");
    let mut plugin = make(TEMPLATE_TMAZE, &kw).expect("plugin");
    let (mut a, mut b) = ([0.0f32; 2], [0.0f32; 2]);
    assert_eq!(
        native.spec().observation_space,
        plugin.spec().observation_space
    );
    for episode in 0..20u64 {
        native.reset(Some(episode), &mut a).expect("reset");
        plugin.reset(Some(episode), &mut b).expect("reset");
        assert_eq!(a, b);
        for t in 0..100i64 {
            let action = Action::Discrete((t * 7 + episode as i64) % 4);
            let (x, y) = (
                native.step(action, &mut a).expect("step"),
                plugin.step(action, &mut b).expect("step"),
            );
            assert_eq!((x, a), (y, b), "episode {episode}, step {t}");
            if x.done() {
                break;
            }
        }
    }
}

#[test]
fn the_checker_flags_a_plugin_env_that_writes_nan() {
    load_plugin(template_plugin()).expect("loads");
    let err = check_env(
        &catalog::snapshot(),
        TEMPLATE_ENV,
        &kwargs(json!({"nan_obs": true})),
        CheckOptions {
            seed: 2,
            steps: 200,
        },
    )
    .expect_err("NaN observations fail the check")
    .to_string();
    assert!(err.contains("contains NaN"), "{err}");
}

#[test]
fn the_c_example_loads_steps_and_passes_the_checker() {
    let ids = load_plugin(c_plugin()).expect("the C plugin loads");
    assert_eq!(ids, [C_ENV]);
    let mut env = make(C_ENV, &kwargs(json!({"delay": 2}))).expect("make");
    let mut obs = [0.0f32; 2];
    env.reset(Some(3), &mut obs).expect("reset");
    let bit = i64::from(obs[0] > 0.0);
    for _ in 0..2 {
        let step = env.step(Action::Discrete(0), &mut obs).expect("step");
        assert!(!step.done() && step.reward == 0.0);
    }
    assert_eq!(obs[1], 1.0, "the query flag is up on the answer step");
    let step = env.step(Action::Discrete(bit), &mut obs).expect("answer");
    assert!(step.terminated && step.reward == 1.0);
    // Guarded like a built-in: a step after the end is an error, not a call into C.
    assert!(env.step(Action::Discrete(0), &mut obs).is_err());
    assert!(matches!(env.render(), Some(Frame::Text(t)) if t.contains("answer due")));
    passes_the_checker(C_ENV);
}

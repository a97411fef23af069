//! Python Gymnasium envs in Engram's runtime: `gymnasium:CartPole-v1` equals the native CartPole step for step, faults are contained, MiniGrid trains through the CLI.
//!
//! Needs `target/test-venv` from `scripts/setup-test-python.sh` (gymnasium, minigrid), or
//! `ENGRAM_TEST_PYTHON`.

#[path = "support/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cli::{engram_command, text};
use engram_envs::python::{configure, PythonSettings};
use engram_envs::{ActionBatch, VecEnv, VecEnvConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with gymnasium and minigrid; fails the test with the fix if there is none.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ENGRAM_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = root().join("target/test-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with gymnasium for the bridge tests: {} is missing. Run \
         `scripts/setup-test-python.sh` from the workspace root (or set ENGRAM_TEST_PYTHON).",
        venv.display()
    );
    venv
}

/// Every test configures the process-wide settings the same way (tests share the process).
fn setup() {
    configure(PythonSettings {
        interpreter: Some(python()),
        workers: Some(2),
        timeout: Duration::from_secs(8),
        max_failures: 100,
        ..PythonSettings::default()
    });
}

fn fixture(factory: &str) -> String {
    format!(
        "python:{}:{factory}",
        root()
            .join("tests/python-fixtures/faulty_envs.py")
            .display()
    )
}

fn kwargs(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn temp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("python_envs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn gymnasium_cartpole_through_the_bridge_equals_native_cartpole() {
    setup();
    let n = 5;
    let empty = serde_json::Map::new();
    let mut bridge = VecEnv::make("gymnasium:CartPole-v1", &empty, n, VecEnvConfig::default())
        .expect("bridge CartPole");
    let mut native =
        VecEnv::make("CartPole-v1", &empty, n, VecEnvConfig::default()).expect("native");
    assert_eq!(
        bridge.spec().observation_space,
        native.spec().observation_space
    );
    assert_eq!(bridge.spec().action_space, native.spec().action_space);
    assert_eq!(bridge.spec().max_episode_steps, Some(500));
    let close = |a: &[f32], b: &[f32], what: &str| {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-6, "{what}: {a:?} != {b:?}");
        }
    };
    close(
        bridge.reset(Some(42)).unwrap().to_vec().as_slice(),
        native.reset(Some(42)).unwrap(),
        "reset",
    );
    let mut episodes = 0;
    for t in 0..1500usize {
        // Mostly "push toward the pole" with some noise: long and short episodes, both ends.
        let actions: Vec<i64> = (0..n)
            .map(|i| {
                let angle = native.obs()[i * 4 + 2];
                if (t * 7 + i * 3) % 5 == 0 {
                    ((t + i) % 2) as i64
                } else {
                    (angle > 0.0) as i64
                }
            })
            .collect();
        bridge.step(ActionBatch::Discrete(&actions)).unwrap();
        native.step(ActionBatch::Discrete(&actions)).unwrap();
        close(bridge.obs(), native.obs(), &format!("obs at step {t}"));
        assert_eq!(bridge.rewards(), native.rewards(), "rewards at step {t}");
        assert_eq!(
            bridge.terminated(),
            native.terminated(),
            "terminated at {t}"
        );
        assert_eq!(bridge.truncated(), native.truncated(), "truncated at {t}");
        for i in 0..n {
            match (bridge.final_obs(i), native.final_obs(i)) {
                (Some(a), Some(b)) => close(a, b, &format!("final obs of env {i} at {t}")),
                (None, None) => {}
                other => panic!("final obs presence differs at step {t}: {other:?}"),
            }
        }
        let a: Vec<_> = bridge.finished_episodes().collect();
        let b: Vec<_> = native.finished_episodes().collect();
        assert_eq!(a, b, "episode stats at step {t}");
        episodes += a.len();
    }
    assert!(episodes > 20, "only {episodes} episodes ended");
    assert!(native.truncated().len() == n, "sanity: one flag per env");
    assert_eq!(bridge.panics(), 0);
}

/// Step `n` envs of `id` for `steps` steps; (faults, steps whose env faulted as a truncation
/// without final observation).
fn run_faulty(id: &str, kw: serde_json::Value, steps: usize) -> (u64, usize) {
    setup();
    let n = 4;
    let mut envs = VecEnv::make(id, &kwargs(kw), n, VecEnvConfig::default()).expect("make");
    envs.reset(Some(1)).unwrap();
    let mut faulted_steps = 0;
    for t in 0..steps {
        let before = envs.panics();
        let actions: Vec<i64> = (0..n).map(|i| ((t + i) % 2) as i64).collect();
        envs.step(ActionBatch::Discrete(&actions)).unwrap();
        if envs.panics() > before {
            // The envs hit are reported as truncated, without a final observation.
            let hit = (0..n)
                .filter(|&i| envs.truncated()[i] && envs.final_obs(i).is_none())
                .count();
            assert!(
                hit >= 1,
                "a fault at step {t} was not reported as a truncation"
            );
            faulted_steps += 1;
        }
        assert!(
            engram_envs::Space::Box {
                low: vec![f32::NEG_INFINITY; 4],
                high: vec![f32::INFINITY; 4],
                shape: vec![4]
            }
            .contains_flat(&envs.obs()[..4]),
            "observations keep coming after the fault"
        );
    }
    (envs.panics(), faulted_steps)
}

#[test]
fn a_python_exception_in_step_is_contained_and_the_env_restarted() {
    let dir = temp("raise");
    let marker = dir.join("raised");
    let (faults, steps) = run_faulty(
        &fixture("faulty"),
        serde_json::json!({"mode": "raise", "at": 4, "marker": marker}),
        40,
    );
    assert_eq!((faults, steps), (1, 1));
    assert!(marker.exists());
}

#[test]
fn a_worker_that_exits_is_restarted() {
    let dir = temp("exit");
    let marker = dir.join("exited");
    let (faults, steps) = run_faulty(
        &fixture("faulty"),
        serde_json::json!({"mode": "exit", "at": 4, "marker": marker}),
        40,
    );
    assert_eq!((faults, steps), (1, 1));
}

#[test]
fn a_hung_worker_is_killed_and_restarted_after_the_timeout() {
    let dir = temp("hang");
    let marker = dir.join("hung");
    let started = std::time::Instant::now();
    let (faults, steps) = run_faulty(
        &fixture("faulty"),
        serde_json::json!({"mode": "hang", "at": 4, "marker": marker}),
        40,
    );
    assert_eq!((faults, steps), (1, 1));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the hung worker was not given up on after the timeout"
    );
}

#[test]
fn unsupported_spaces_and_unknown_ids_are_clear_errors() {
    setup();
    let empty = serde_json::Map::new();
    let e = VecEnv::make(&fixture("text_obs"), &empty, 1, VecEnvConfig::default())
        .err()
        .expect("a Text space is refused")
        .to_string();
    assert!(e.contains("Text") && e.contains("'note'"), "{e}");
    let e = engram_envs::make("gymnasium:NoSuchEnv-v0", &empty)
        .err()
        .expect("unknown id")
        .to_string();
    assert!(
        e.contains("NoSuchEnv") && e.contains("python_imports"),
        "{e}"
    );
    let e = engram_envs::make("python:no_colon", &empty)
        .err()
        .expect("bad factory id")
        .to_string();
    assert!(e.contains("python:module.path:function"), "{e}");
}

/// `engram ARGS` with the test Python as its Python env interpreter.
fn engram(args: &[&str]) -> Output {
    engram_command(args)
        .env("ENGRAM_PYTHON", python())
        .output()
        .expect("run engram")
}

#[test]
fn a_minigrid_memory_env_trains_through_the_cli_and_evaluates() {
    let run = temp("minigrid").join("run");
    let run_s = run.to_str().unwrap();
    let out = engram(&[
        "train",
        "--quiet",
        "--run-dir",
        run_s,
        "--set",
        "env.id=gymnasium:MiniGrid-MemoryS7-v0",
        "--set",
        "env.python_imports=[\"minigrid\"]",
        "--set",
        "env.python_wrappers=[\"minigrid.wrappers:ImgObsWrapper\"]",
        "--set",
        "env.num_envs=4",
        "--set",
        "policy.cnn.kernels=[3, 2]",
        "--set",
        "policy.cnn.strides=[1, 1]",
        "--set",
        "ppo.rollout_len=64",
        "--set",
        "run.total_steps=768",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("768 steps, 3 updates"), "{t}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        config.contains("python_imports = [\"minigrid\"]"),
        "{config}"
    );
    let out = engram(&["eval", run_s, "--episodes", "2"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn too_many_python_faults_stop_the_run_with_a_checkpoint() {
    let dir = temp("give-up");
    let run = dir.join("run");
    let id = format!("env.id={}", fixture("faulty"));
    let out = engram(&[
        "train",
        "--quiet",
        "--run-dir",
        run.to_str().unwrap(),
        "--set",
        &id,
        "--set",
        "env.kwargs.mode=\"raise_always\"",
        "--set",
        "env.kwargs.at=3",
        "--set",
        &format!("env.kwargs.marker=\"{}\"", dir.join("m").display()),
        "--set",
        "env.python_max_failures=5",
        "--set",
        "run.total_steps=100000",
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("boom from the faulty test env"),
        "tracebacks are logged: {t}"
    );
    assert!(t.contains("env.python_max_failures = 5"), "{t}");
    assert!(t.contains("stopped with a checkpoint"), "{t}");
    assert!(
        std::fs::read_dir(&run)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("checkpoint-")),
        "no checkpoint in {}",
        run.display()
    );
}

//! The asynchronous runtime under faults: panicking envs, a killed actor, stalled actors.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use engram_agents::{train, TrainConfig, TrainOptions};
use engram_envs::{register, Action, Env, EnvSpec, KwargSpec, Space, Step};

/// Steps taken by every `faults/Flaky-v0` instance together.
static TOTAL_STEPS: AtomicU64 = AtomicU64::new(0);
/// Set once the deliberate actor-killing panic has fired.
static KILLED: AtomicBool = AtomicBool::new(false);

/// A 20-step episode where action 1 earns 1; panics in `step` every `panic_every` of its own
/// steps, panics in `reset` once (process-wide) after `kill_after` steps in all — a reset
/// panic escapes the VecEnv's containment and kills the actor thread — and sleeps
/// `stall_ms` per step.
struct Flaky {
    spec: EnvSpec,
    t: u32,
    steps: u64,
    panic_every: u64,
    kill_after: u64,
    stall_ms: u64,
}

impl Env for Flaky {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    fn reset(&mut self, _seed: Option<u64>, obs: &mut [f32]) -> engram_envs::Result<()> {
        if self.kill_after > 0
            && TOTAL_STEPS.load(Ordering::SeqCst) > self.kill_after
            && !KILLED.swap(true, Ordering::SeqCst)
        {
            panic!("faults/Flaky-v0: deliberate panic in reset (kills the actor)");
        }
        self.t = 0;
        obs.copy_from_slice(&[0.0, 1.0]);
        Ok(())
    }

    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> engram_envs::Result<Step> {
        if self.stall_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.stall_ms));
        }
        self.steps += 1;
        TOTAL_STEPS.fetch_add(1, Ordering::SeqCst);
        if self.panic_every > 0 && self.steps % self.panic_every == 0 {
            panic!("faults/Flaky-v0: deliberate panic in step {}", self.steps);
        }
        self.t += 1;
        obs.copy_from_slice(&[self.t as f32 / 20.0, 1.0]);
        let reward = if matches!(action, Action::Discrete(1)) {
            1.0
        } else {
            0.0
        };
        Ok(Step {
            reward,
            terminated: self.t >= 20,
            truncated: false,
        })
    }
}

fn register_flaky() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        register(
            "faults/Flaky-v0",
            "test env that panics and stalls on request",
            vec![
                KwargSpec::int("panic_every", 0, 1_000_000, 0, "panic in every n-th step"),
                KwargSpec::int(
                    "kill_after",
                    0,
                    1_000_000_000,
                    0,
                    "panic once in reset after n steps",
                ),
                KwargSpec::int("stall_ms", 0, 10_000, 0, "sleep per step"),
            ],
            |id, kw| {
                Ok(Flaky {
                    spec: EnvSpec::new(
                        id,
                        Space::bounded(vec![0.0, 0.0], vec![1.0, 1.0]),
                        Space::discrete(2),
                    ),
                    t: 0,
                    steps: 0,
                    panic_every: kw.int("panic_every") as u64,
                    kill_after: kw.int("kill_after") as u64,
                    stall_ms: kw.int("stall_ms") as u64,
                })
            },
        )
        .expect("register the test env");
    });
}

fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "async_faults-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(kwargs: &str, total_steps: u64, algo: &str) -> TrainConfig {
    TrainConfig::from_toml(
        &format!(
            r#"
[env]
id = "faults/Flaky-v0"
num_envs = 4
kwargs = {{ {kwargs} }}
[policy]
encoder = [16]
[policy.core]
kind = "lstm"
hidden_size = 16
[ppo]
learning_rate = 3e-3
epochs = 1
minibatches = 2
[run]
algo = "{algo}"
actor_threads = 2
total_steps = {total_steps}
checkpoint_every = 0
[async]
chunk_len = 16
queue_capacity = 2
"#
        ),
        &[],
    )
    .expect("valid config")
}

#[test]
fn panicking_envs_and_a_killed_actor_do_not_stop_training() {
    register_flaky();
    // 2 chunks × 2 envs × 16 steps = 64 steps per update, 60 updates.
    let cfg = config("panic_every = 37, kill_after = 800", 3_840, "appo");
    let dir = fresh_dir("faults");
    let summary = train(&cfg, &dir, &TrainOptions::default()).expect("training goes on");
    assert!(!summary.interrupted);
    assert_eq!(summary.updates, 60);
    assert_eq!(summary.global_step, 3_840);
    let f = summary.faults;
    assert_eq!(f.chunks_used, 120, "every update used whole chunks: {f:?}");
    assert!(
        f.env_panics >= 10,
        "env panics were contained and counted: {f:?}"
    );
    assert_eq!(
        f.actor_restarts, 1,
        "the killed actor was restarted once: {f:?}"
    );
    assert!(KILLED.load(Ordering::SeqCst));
    // The counts are in the TensorBoard-side metrics file too.
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl");
    for tag in [
        "async/env_panics",
        "async/actor_restarts",
        "async/queue_depth",
        "async/actor_busy",
    ] {
        assert!(metrics.contains(tag), "{tag} missing from metrics.jsonl");
    }
    // The agent still learned something: action 1 pays.
    assert!(
        summary.recent_return > 10.0,
        "return {}",
        summary.recent_return
    );
}

#[test]
fn the_learner_stops_promptly_when_actors_stall() {
    register_flaky();
    let cfg = config("stall_ms = 50", 1_000_000, "impala");
    let dir = fresh_dir("stall");
    let stop = Arc::new(AtomicBool::new(false));
    let options = TrainOptions {
        stop: stop.clone(),
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(train(&cfg, &dir, &options).map(|s| (s.interrupted, s.updates)));
    });
    std::thread::sleep(Duration::from_millis(1_500));
    stop.store(true, Ordering::SeqCst);
    let (interrupted, _updates) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the learner must not hang on stalled actors")
        .expect("a stopped run is not an error");
    assert!(interrupted);
}

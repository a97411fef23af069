//! Step-rate benchmark of environments (behind `cargo bench -p engram-envs` and `engram bench envs`).

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::make;
use crate::error::Result;
use crate::rng::EnvRng;
use crate::space::{SampledAction, Space};
use crate::vec_env::{ActionBatch, VecEnv, VecEnvConfig};

/// Environments the benchmark covers by default, with their keyword arguments.
pub fn default_suite() -> Vec<(&'static str, Value)> {
    vec![
        ("CartPole-v1", Value::Object(Map::new())),
        ("Pendulum-v1", Value::Object(Map::new())),
        ("MemoryChain-v0", serde_json::json!({"memory_length": 50})),
        (
            "TMaze-Passive-v0",
            serde_json::json!({"corridor_length": 100}),
        ),
        (
            "TMaze-Active-v0",
            serde_json::json!({"corridor_length": 100}),
        ),
        ("popgym-RepeatFirstEasy-v0", Value::Object(Map::new())),
        ("popgym-RepeatPreviousEasy-v0", Value::Object(Map::new())),
        ("popgym-RepeatPreviousHard-v0", Value::Object(Map::new())),
        ("popgym-CountRecallEasy-v0", Value::Object(Map::new())),
        ("popgym-AutoencodeEasy-v0", Value::Object(Map::new())),
        (
            "popgym-PositionOnlyCartPoleEasy-v0",
            Value::Object(Map::new()),
        ),
        (
            "popgym-NoisyPositionOnlyCartPoleEasy-v0",
            Value::Object(Map::new()),
        ),
        ("Copy-v0", serde_json::json!({"delay": 200})),
    ]
}

/// Measured step rates of one environment.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// Environment id.
    pub id: String,
    /// Steps per second of one env stepped in a loop on one thread (autoreset included).
    pub single_thread_sps: f64,
    /// Steps per second of a VecEnv of `vec_envs` envs on one thread.
    pub vec_one_thread_sps: f64,
    /// Steps per second of the same VecEnv stepped in parallel on all `threads` cores.
    pub vec_all_cores_sps: f64,
    /// Envs in the VecEnv.
    pub vec_envs: usize,
    /// Rayon threads used for the parallel figure.
    pub threads: usize,
}

/// A table of pre-drawn random actions, cycled through so drawing costs nothing in the loop.
struct ActionTable {
    ints: Vec<i64>,
    floats: Vec<f32>,
    width: usize,
    discrete: bool,
}

impl ActionTable {
    fn new(space: &Space, count: usize) -> Self {
        let mut rng = EnvRng::from_seed(0);
        let (mut ints, mut floats) = (Vec::new(), Vec::new());
        for _ in 0..count {
            match space.sample(&mut rng) {
                SampledAction::Discrete(a) => ints.push(a),
                SampledAction::MultiDiscrete(v) => ints.extend(v),
                SampledAction::Continuous(v) => floats.extend(v),
            }
        }
        ActionTable {
            discrete: floats.is_empty(),
            ints,
            floats,
            width: space.action_len(),
        }
    }

    fn batch(&self, start: usize, n: usize) -> ActionBatch<'_> {
        let (a, b) = (start * self.width, (start + n) * self.width);
        match (self.discrete, self.width) {
            (true, 1) => ActionBatch::Discrete(&self.ints[a..b]),
            (true, _) => ActionBatch::MultiDiscrete(&self.ints[a..b]),
            (false, _) => ActionBatch::Continuous(&self.floats[a..b]),
        }
    }
}

fn single_thread(id: &str, kwargs: &Map<String, Value>, budget: Duration) -> Result<f64> {
    let mut env = make(id, kwargs)?;
    let spec = env.spec().clone();
    let table = ActionTable::new(&spec.action_space, 4096);
    let mut obs = vec![0.0f32; spec.obs_dim()];
    env.reset(Some(0), &mut obs)?;
    let (mut steps, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        for i in 0..4096 {
            let action = match table.batch(i, 1) {
                ActionBatch::Discrete(v) => crate::Action::Discrete(v[0]),
                ActionBatch::MultiDiscrete(v) => crate::Action::MultiDiscrete(v),
                ActionBatch::Continuous(v) => crate::Action::Continuous(v),
            };
            if env.step(action, &mut obs)?.done() {
                env.reset(None, &mut obs)?;
            }
        }
        steps += 4096;
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

fn vectorised(
    id: &str,
    kwargs: &Map<String, Value>,
    n: usize,
    parallel: bool,
    budget: Duration,
) -> Result<f64> {
    let config = VecEnvConfig {
        parallel_threshold: if parallel { 1 } else { usize::MAX },
        ..VecEnvConfig::default()
    };
    let mut v = VecEnv::make(id, kwargs, n, config)?;
    let rounds = 16;
    let table = ActionTable::new(&v.spec().action_space.clone(), n * rounds);
    v.reset(Some(0))?;
    let (mut steps, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        for r in 0..rounds {
            v.step(table.batch(r * n, n))?;
        }
        steps += (rounds * n) as u64;
    }
    Ok(steps as f64 / start.elapsed().as_secs_f64())
}

/// Measure one environment for about `budget` per figure.
pub fn measure(id: &str, kwargs: &Value, vec_envs: usize, budget: Duration) -> Result<BenchResult> {
    let empty = Map::new();
    let kwargs = kwargs.as_object().unwrap_or(&empty);
    Ok(BenchResult {
        id: id.into(),
        single_thread_sps: single_thread(id, kwargs, budget)?,
        vec_one_thread_sps: vectorised(id, kwargs, vec_envs, false, budget)?,
        vec_all_cores_sps: vectorised(id, kwargs, vec_envs, true, budget)?,
        vec_envs,
        threads: rayon::current_num_threads(),
    })
}

/// Print a result table row.
pub fn format_row(r: &BenchResult) -> String {
    // Python envs run at thousands, built-in ones at millions of steps per second.
    let m = |x: f64| {
        if x < 1e6 {
            format!("{:>8.1}k", x / 1e3)
        } else {
            format!("{:>8.2}M", x / 1e6)
        }
    };
    format!(
        "{:<42} {} {} {}",
        r.id,
        m(r.single_thread_sps),
        m(r.vec_one_thread_sps),
        m(r.vec_all_cores_sps)
    )
}

/// Header matching [`format_row`].
pub fn header(vec_envs: usize, threads: usize) -> String {
    format!(
        "{:<42} {:>9} {:>9} {:>9}\n{:<42} {:>9} {:>9} {:>9}",
        "env (steps/s)",
        "1 env",
        "VecEnv",
        "VecEnv",
        "",
        "1 thread",
        format!("{vec_envs}x1thr"),
        format!("{vec_envs}x{threads}thr")
    )
}

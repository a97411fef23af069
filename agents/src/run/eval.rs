//! `engram eval`: run a trained policy for some episodes and report returns.

use std::path::Path;

use burn::tensor::Device;
use engram_envs::{make, Action, Frame, Space};
use engram_memory::RecurrentCore;
use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::checkpoint;
use super::run_dir::CONFIG_FILE;
use crate::config::TrainConfig;
use crate::error::{AgentError, Result};
use crate::policy::distribution::{self, ActionKind};
use crate::policy::{matrix, read, Policy};

/// How to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Episodes to run.
    pub episodes: usize,
    /// Print the first episode's frames.
    pub render: bool,
    /// Most likely action (categorical) or the mean (Gaussian) instead of sampling.
    pub greedy: bool,
    /// Seed of the first episode.
    pub seed: u64,
    /// Env keyword arguments that replace the run's (after its last curriculum stage), e.g. a
    /// longer corridor than it trained on.
    pub env_kwargs: serde_json::Map<String, serde_json::Value>,
}

impl EvalOptions {
    /// Adds `KEY=VALUE` (the value read as TOML) to [`EvalOptions::env_kwargs`].
    pub fn with_env_kwarg(mut self, text: &str) -> Result<Self> {
        let (key, raw) = text
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| {
                AgentError::Config(format!(
                    "--env-kwarg `{text}` must look like key=value, e.g. corridor_length=1000"
                ))
            })?;
        let value = serde_json::to_value(crate::config::read_value(raw))
            .map_err(|e| AgentError::Config(format!("--env-kwarg `{text}`: {e}")))?;
        self.env_kwargs.insert(key.trim().to_string(), value);
        Ok(self)
    }
}

/// Returns of the evaluation episodes.
#[derive(Debug, Clone)]
pub struct EvalReport {
    /// Environment id.
    pub env_id: String,
    /// Undiscounted return of each episode.
    pub returns: Vec<f64>,
    /// Length of each episode.
    pub lengths: Vec<u64>,
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.returns.len().max(1) as f64;
        let mean = self.returns.iter().sum::<f64>() / n;
        let std = (self.returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n).sqrt();
        let len = self.lengths.iter().sum::<u64>() as f64 / n;
        write!(
            f,
            "{}: {} episodes, mean return {mean:.4} ± {std:.4}, mean length {len:.1}",
            self.env_id,
            self.returns.len()
        )
    }
}

/// Load the policy of a run directory onto `device` (no autodiff).
pub fn load_policy(run_dir: &Path, device: &Device) -> Result<(TrainConfig, Policy)> {
    let path = run_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        AgentError::io("read the run's config (is this a run directory?)", &path, e)
    })?;
    let config = TrainConfig::from_toml(&text, &[])?;
    config.env.prepare()?;
    let spec = make(&config.env.id, &config.env.target_kwargs())?
        .spec()
        .clone();
    let action = ActionKind::for_space(&spec.id, &spec.action_space)?;
    let policy = Policy::for_space(&config.policy, &spec.observation_space, &action, device)?;
    let policy = checkpoint::load_policy_weights(run_dir, policy)?;
    Ok((config, policy))
}

/// Run the trained policy of `run_dir`.
pub fn evaluate(run_dir: &Path, options: &EvalOptions) -> Result<EvalReport> {
    let device = Device::flex();
    let (config, policy) = load_policy(run_dir, &device)?;
    let mut kwargs = config.env.target_kwargs();
    kwargs.extend(options.env_kwargs.clone());
    let mut env = make(&config.env.id, &kwargs)?;
    let spec = env.spec().clone();
    let d = spec.obs_dim();
    let mut rng = Pcg64::seed_from_u64(options.seed);
    let mut report = EvalReport {
        env_id: spec.id.clone(),
        returns: vec![],
        lengths: vec![],
    };
    let action = policy.action_kind();
    let std = policy.action_std();
    let mut obs = vec![0.0f32; d];
    for ep in 0..options.episodes {
        env.reset(Some(options.seed + ep as u64), &mut obs)?;
        let mut state = policy.core.init_state(1, &device);
        let mut input = policy.input(d, 1);
        let (mut ret, mut len) = (0.0f64, 0u64);
        loop {
            // What the env shows before the action (a text frame; others are not printed).
            let shown = match (options.render && ep == 0).then(|| env.render()).flatten() {
                Some(Frame::Text(t)) => Some(t),
                Some(_) => Some(String::new()),
                None => None,
            };
            let rows = input.rows(&obs);
            let (out, _, next) = policy.step(matrix(rows, 1, input.width(), &device), state)?;
            state = next;
            let out = read(out);
            let (step, taken) = match &spec.action_space {
                Space::Discrete { .. } | Space::MultiDiscrete { .. } => {
                    let ActionKind::Categorical(groups) = &action else {
                        unreachable!("discrete spaces have categorical heads")
                    };
                    let mut a = vec![0i64; groups.len()];
                    distribution::categorical(&mut rng, &out, groups, options.greedy, &mut a);
                    let step = match &spec.action_space {
                        Space::Discrete { .. } => env.step(Action::Discrete(a[0]), &mut obs)?,
                        _ => env.step(Action::MultiDiscrete(&a), &mut obs)?,
                    };
                    input.record_int(&a, &[step.reward]);
                    let taken = match a.as_slice() {
                        [one] => one.to_string(),
                        many => format!("{many:?}"),
                    };
                    (step, taken)
                }
                Space::Box { low, high, .. } => {
                    let mut a = vec![0f32; low.len()];
                    distribution::gaussian(&mut rng, &out, &std, options.greedy, &mut a);
                    for ((x, l), h) in a.iter_mut().zip(low).zip(high) {
                        *x = x.clamp(*l, *h);
                    }
                    let step = env.step(Action::Continuous(&a), &mut obs)?;
                    input.record_float(&a, &[step.reward]);
                    (step, format!("{a:.3?}"))
                }
            };
            ret += step.reward as f64;
            if let Some(text) = shown {
                println!("step {len}: {text}");
                let end = match (step.terminated, step.truncated) {
                    (true, _) => ", terminated",
                    (_, true) => ", truncated",
                    _ => "",
                };
                println!(
                    "  action {taken} → reward {:+.4}, return {ret:+.4}{end}\n",
                    step.reward
                );
            }
            len += 1;
            if step.done() {
                break;
            }
        }
        report.returns.push(ret);
        report.lengths.push(len);
    }
    Ok(report)
}

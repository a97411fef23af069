//! The environment checker behind `engram envs check ID`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rand::SeedableRng;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::env::{Env, Step};
use crate::error::EnvError;
use crate::registry::Registry;
use crate::space::SampledAction;

/// How much the checker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Seed of the first episode.
    pub seed: u64,
    /// Steps run for the determinism and bounds checks.
    pub steps: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            seed: 0,
            steps: 5_000,
        }
    }
}

/// What a passing check saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// Environment id.
    pub id: String,
    /// Steps taken per copy.
    pub steps: u64,
    /// Episodes finished.
    pub episodes: u64,
    /// Of those, truncated (time limit) ones.
    pub truncated_episodes: u64,
    /// Mean undiscounted return of a uniformly random policy.
    pub mean_return: f64,
    /// Mean episode length of a uniformly random policy.
    pub mean_length: f64,
    /// Things that are allowed but worth knowing.
    pub warnings: Vec<String>,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: ok", self.id)?;
        writeln!(
            f,
            "  same seed, same trajectory over {} steps (two copies, and one env re-seeded)",
            self.steps
        )?;
        writeln!(
            f,
            "  observations inside the observation space; invalid actions rejected with an error"
        )?;
        writeln!(
            f,
            "  step before reset and after the end rejected with an error"
        )?;
        writeln!(
            f,
            "  {} episodes ({} truncated), random policy: mean return {:.4}, mean length {:.1}",
            self.episodes, self.truncated_episodes, self.mean_return, self.mean_length
        )?;
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

/// A check that failed, with what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{id}: check failed: {message}")]
pub struct CheckFailure {
    /// Environment id.
    pub id: String,
    /// What went wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Transition {
    obs: Vec<f32>,
    /// `None` for the observation of a reset.
    step: Option<Step>,
}

/// Check environment `id` of `registry` made with `kwargs`: determinism, observation bounds,
/// invalid actions, reset discipline and the time limit.
pub fn check_env(
    registry: &Registry,
    id: &str,
    kwargs: &Map<String, Value>,
    options: CheckOptions,
) -> Result<CheckReport, CheckFailure> {
    let fail = |message: String| CheckFailure {
        id: id.into(),
        message,
    };
    let make = || registry.make(id, kwargs).map_err(|e| fail(e.to_string()));
    let guarded = |what: &str, f: &mut dyn FnMut() -> Result<(), CheckFailure>| {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
            Err(fail(format!(
                "panicked during {what}; it must return an error instead"
            )))
        })
    };

    let mut warnings = Vec::new();
    let mut env_a = make()?;
    let mut env_b = make()?;
    let spec = env_a.spec().clone();
    let dim = spec.obs_dim();

    // Reset discipline: stepping before reset is an error.
    let mut obs = vec![0.0f32; dim];
    guarded("step before reset", &mut || {
        let action = spec
            .action_space
            .sample(&mut rand_pcg::Pcg64::seed_from_u64(0));
        match env_a.step(action.as_action(), &mut obs) {
            Err(EnvError::NeedsReset { .. }) => Ok(()),
            other => Err(fail(format!(
                "step before reset returned {other:?}, expected a NeedsReset error"
            ))),
        }
    })?;

    // Run two copies with the same seed and the same actions; compare everything.
    let run = |env: &mut Box<dyn Env>| -> Result<Vec<Transition>, CheckFailure> {
        let mut out = Vec::new();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(options.seed ^ 0x5eed);
        let mut obs = vec![0.0f32; dim];
        guarded("reset/step", &mut || {
            env.reset(Some(options.seed), &mut obs)
                .map_err(|e| fail(e.to_string()))?;
            out.push(Transition {
                obs: obs.clone(),
                step: None,
            });
            for _ in 0..options.steps {
                let action = spec.action_space.sample(&mut rng);
                let step = env
                    .step(action.as_action(), &mut obs)
                    .map_err(|e| fail(format!("valid action {:?} failed: {e}", action)))?;
                out.push(Transition {
                    obs: obs.clone(),
                    step: Some(step),
                });
                if step.done() {
                    env.reset(None, &mut obs).map_err(|e| fail(e.to_string()))?;
                    out.push(Transition {
                        obs: obs.clone(),
                        step: None,
                    });
                }
            }
            Ok(())
        })?;
        Ok(out)
    };
    let traj_a = run(&mut env_a)?;
    if let Some((i, t)) = traj_a
        .iter()
        .enumerate()
        .find(|(_, t)| t.obs.iter().any(|x| x.is_nan()))
    {
        return Err(fail(format!(
            "observation {i} contains NaN: {:?} (a policy cannot learn from it; check the env's arithmetic)",
            t.obs
        )));
    }
    let traj_b = run(&mut env_b)?;
    if let Some(i) = traj_a.iter().zip(&traj_b).position(|(a, b)| a != b) {
        return Err(fail(format!(
            "two copies reset with seed {} diverged at record {i}: {:?} vs {:?}",
            options.seed, traj_a[i], traj_b[i]
        )));
    }

    // Re-seeding an env that has already run replays the same trajectory (Gymnasium's
    // `reset(seed=s)`): no state of earlier episodes may leak into a seeded reset.
    let traj_again = run(&mut env_a)?;
    if let Some(i) = traj_a.iter().zip(&traj_again).position(|(a, b)| a != b) {
        return Err(fail(format!(
            "reset with seed {} again, after {} steps, diverged at record {i}: {:?} vs {:?}; \
             a seeded reset must not depend on earlier episodes",
            options.seed, options.steps, traj_a[i], traj_again[i]
        )));
    }

    // Bounds, episode statistics and the time limit.
    let (mut episodes, mut truncated_episodes, mut length, mut ret) = (0u64, 0u64, 0u64, 0.0f64);
    let (mut total_len, mut total_ret) = (0u64, 0.0f64);
    for t in &traj_a {
        if !spec.observation_space.contains_flat(&t.obs) {
            return Err(fail(format!(
                "observation {:?} is outside {}",
                t.obs, spec.observation_space
            )));
        }
        let Some(step) = t.step else { continue };
        length += 1;
        ret += step.reward as f64;
        if !step.reward.is_finite() {
            return Err(fail(format!("reward {} is not finite", step.reward)));
        }
        if let Some(max) = spec.max_episode_steps {
            if length > max {
                return Err(fail(format!(
                    "episode ran {length} steps past the time limit of {max}"
                )));
            }
            if length == max && !step.done() {
                return Err(fail(format!(
                    "episode reached the time limit of {max} steps without being truncated"
                )));
            }
        }
        if step.done() {
            episodes += 1;
            truncated_episodes += (step.truncated && !step.terminated) as u64;
            total_len += length;
            total_ret += ret;
            length = 0;
            ret = 0.0;
        }
    }
    if episodes == 0 {
        warnings.push(format!(
            "no episode ended within {} random steps",
            options.steps
        ));
    }

    // A different seed should change the episode.
    let first_obs = |env: &mut Box<dyn Env>, seed: u64| -> Result<Vec<f32>, CheckFailure> {
        let mut obs = vec![0.0f32; dim];
        let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
        env.reset(Some(seed), &mut obs)
            .map_err(|e| fail(e.to_string()))?;
        let mut seen = obs.clone();
        for _ in 0..50 {
            let a = spec.action_space.sample(&mut rng);
            let s = env
                .step(a.as_action(), &mut obs)
                .map_err(|e| fail(e.to_string()))?;
            seen.extend_from_slice(&obs);
            seen.push(s.reward);
            if s.done() {
                break;
            }
        }
        Ok(seen)
    };
    let base = first_obs(&mut env_a, options.seed)?;
    let mut differs = false;
    for k in 1..=10 {
        if first_obs(&mut env_a, options.seed + k)? != base {
            differs = true;
            break;
        }
    }
    if !differs {
        warnings.push("seeds 1..10 above the base seed all gave the same opening; the env may ignore its seed".into());
    }

    // Invalid actions are errors, never panics; stepping after the end is an error.
    guarded("invalid action", &mut || {
        let mut obs = vec![0.0f32; dim];
        env_b
            .reset(Some(options.seed), &mut obs)
            .map_err(|e| fail(e.to_string()))?;
        let bad = spec.action_space.invalid_action();
        let wrong_kind = match &bad {
            SampledAction::Continuous(_) => SampledAction::Discrete(0),
            _ => SampledAction::Continuous(vec![0.0; spec.action_space.action_len()]),
        };
        for action in [bad, wrong_kind] {
            match env_b.step(action.as_action(), &mut obs) {
                Err(EnvError::InvalidAction { .. }) => {}
                other => {
                    return Err(fail(format!(
                    "invalid action {action:?} returned {other:?}, expected an InvalidAction error"
                )))
                }
            }
        }
        let mut short = vec![0.0f32; dim + 1];
        let action = spec
            .action_space
            .sample(&mut rand_pcg::Pcg64::seed_from_u64(2));
        if !matches!(
            env_b.step(action.as_action(), &mut short),
            Err(EnvError::BufferSize { .. })
        ) {
            return Err(fail(
                "an observation buffer of the wrong length was accepted".into(),
            ));
        }
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        for _ in 0..1_000_000 {
            let a = spec.action_space.sample(&mut rng);
            if env_b
                .step(a.as_action(), &mut obs)
                .map_err(|e| fail(e.to_string()))?
                .done()
            {
                return match env_b.step(a.as_action(), &mut obs) {
                    Err(EnvError::NeedsReset { .. }) => Ok(()),
                    other => Err(fail(format!("step after the episode ended returned {other:?}, expected a NeedsReset error"))),
                };
            }
        }
        Ok(())
    })?;

    let mean = |total: f64| {
        if episodes == 0 {
            f64::NAN
        } else {
            total / episodes as f64
        }
    };
    Ok(CheckReport {
        id: id.into(),
        steps: options.steps,
        episodes,
        truncated_episodes,
        mean_return: mean(total_ret),
        mean_length: mean(total_len as f64),
        warnings,
    })
}

//! Learner and actor throughput of a config without a run: the algorithm's updates on rollouts
//! the actor collected, and the actor's batched acting, each timed on its own.

use std::time::Instant;

use engram_envs::make;
use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::device::device_for;
use super::session::{checked_memory_estimate, new_learner};
use crate::algo::{Algorithm, Appo, Ppo};
use crate::config::{Algo, TrainConfig};
use crate::error::{AgentError, Result};
use crate::rollout::{Actor, Chunk};

/// What [`bench_learner`] measured (medians over the timed repetitions).
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerRates {
    /// Env steps in one update (`[B, T]` summed over its chunks).
    pub steps_per_update: u64,
    /// Seconds per update: forward, backward and Adam over every epoch and minibatch.
    pub update_secs: f64,
    /// Env steps trained per second.
    pub learner_steps_per_sec: f64,
    /// Seconds per rollout of one chunk (acting without autodiff, env steps included).
    pub rollout_secs: f64,
    /// Env steps acted per second by one actor with the chunk's envs.
    pub actor_steps_per_sec: f64,
}

/// Times `updates` updates of `config`'s algorithm (after one untimed warm-up) on rollouts its
/// actor collects, and the actor's rollouts themselves. Nothing is written.
pub fn bench_learner(config: &TrainConfig, updates: usize) -> Result<LearnerRates> {
    if updates == 0 {
        return Err(AgentError::Config(
            "--updates 0: the learner bench needs at least 1 timed update".into(),
        ));
    }
    config.validate()?;
    config.env.prepare()?;
    let device = device_for(&config.run.device)?;
    let kwargs = config.env.target_kwargs();
    let spec = make(&config.env.id, &kwargs)?.spec().clone();
    // A config too big for the machine is refused with the estimate, as `train` does.
    checked_memory_estimate(config, &spec)?;
    let mut learner = new_learner(config, &spec, &device)?;
    let layout = learner.layout();
    let (envs_per_chunk, chunks_per_update) = match config.run.algo {
        Algo::Ppo => (config.env.num_envs, 1),
        Algo::Appo | Algo::Impala => (config.envs_per_actor(), config.batch_chunks()),
    };
    let envs = Actor::make_envs(&config.env.id, &kwargs, envs_per_chunk)?;
    let mut actor = Actor::new(envs, learner.acting_policy(), config.run.seed, device)?;
    let mut rollout_secs = Vec::new();
    let mut collect = |timed: bool| -> Result<Vec<Chunk>> {
        (0..chunks_per_update)
            .map(|_| {
                let start = Instant::now();
                let chunk = actor.collect(layout)?;
                if timed {
                    rollout_secs.push(start.elapsed().as_secs_f64());
                }
                Ok(chunk)
            })
            .collect()
    };
    let batches: Vec<Vec<Chunk>> = (0..=updates)
        .map(|i| collect(i > 0))
        .collect::<Result<_>>()?;
    let algorithm: Box<dyn Algorithm> = match config.run.algo {
        Algo::Ppo => Box::new(Ppo),
        Algo::Appo | Algo::Impala => {
            Box::new(Appo::new(config.run.algo, config.ppo.gamma, &config.async_))
        }
    };
    let mut rng = Pcg64::seed_from_u64(config.run.seed);
    let mut update_secs = Vec::new();
    for (i, mut chunks) in batches.into_iter().enumerate() {
        let start = Instant::now();
        algorithm.update(
            &mut learner,
            &mut chunks,
            config.ppo.learning_rate,
            &mut rng,
            i as u64 + 1,
        )?;
        if i > 0 {
            update_secs.push(start.elapsed().as_secs_f64());
        }
    }
    let steps_per_update = config.steps_per_update();
    let chunk_steps = (envs_per_chunk * layout.rollout_len()) as f64;
    let update = median(&mut update_secs);
    let rollout = median(&mut rollout_secs);
    Ok(LearnerRates {
        steps_per_update,
        update_secs: update,
        learner_steps_per_sec: steps_per_update as f64 / update,
        rollout_secs: rollout,
        actor_steps_per_sec: chunk_steps / rollout,
    })
}

/// The median of `xs` (at least one value).
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

//! The synchronous loop: every actor collects one rollout, then the learner updates (PPO).

use std::sync::atomic::Ordering;

use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::session::Session;
use crate::algo::Algorithm;
use crate::config::Backend;
use crate::error::Result;
use crate::logging::tags;
use crate::rollout::{Actor, ActorPool, RemoteActors};

/// Run `algo` synchronously until the step budget is used or the stop flag is set.
pub(crate) fn run(s: &mut Session<'_>, algo: &dyn Algorithm) -> Result<()> {
    let mut rollouts = Rollouts::start(s)?;
    let layout = s.learner.layout();
    let mut rng = Pcg64::seed_from_u64(s.session_seed ^ 0x9e37_79b9);
    // Remote actors' restarts of earlier stages (each stage's actors count afresh).
    let mut restarts_before = 0;
    // Until run.total_steps, counted in steps: a resumed run whose env.num_envs changed
    // does as many updates as the remaining steps need.
    while s.counters.global_step < s.config.run.total_steps {
        if s.options.stop.load(Ordering::SeqCst) {
            s.interrupted = true;
            break;
        }
        if s.advance_stage() {
            if let Rollouts::Remote(remote) = &mut rollouts {
                restarts_before += remote.stats()?.restarts;
            }
            rollouts = Rollouts::start(s)?;
        }
        let update = s.counters.update + 1;
        let lr = s.learning_rate();
        let policy = s.learner.acting_policy();
        let mut chunks = match &mut rollouts {
            Rollouts::Threads(pool) => pool.collect(&policy, s.counters.update, layout)?,
            Rollouts::Remote(remote) => remote.collect_all()?,
        };
        let step_after = s.counters.global_step + s.config.steps_per_update();
        s.record_episodes(&chunks, step_after);
        s.faults.env_panics += chunks.iter().map(|c| c.env_panics).sum::<u64>();
        if s.faults.env_panics > 0 {
            let panics = s.faults.env_panics as f64;
            s.logger.scalar(tags::ENV_PANICS, panics, step_after);
        }
        let stats = algo.update(&mut s.learner, &mut chunks, lr, &mut rng, update)?;
        s.counters.update = update;
        s.counters.global_step = step_after;
        if let Rollouts::Remote(remote) = &mut rollouts {
            s.faults.chunks_used += chunks.len() as u64;
            remote.publish(s.learner.acting_policy().to_bytes()?, update)?;
            let remote_stats = remote.stats()?;
            s.faults.actor_restarts = restarts_before + remote_stats.restarts;
            s.log_remote(&remote_stats, restarts_before, step_after);
        }
        s.after_update(&stats, lr)?;
    }
    Ok(())
}

/// Where the rollouts come from: actor threads, or remote actors (`run.backend = "ray"`).
enum Rollouts {
    Threads(ActorPool),
    Remote(Box<dyn RemoteActors>),
}

impl Rollouts {
    /// The actors of the current curriculum stage, acting with the current policy.
    fn start(s: &Session<'_>) -> Result<Self> {
        let config = s.config;
        if config.run.backend == Backend::Ray {
            return Ok(Rollouts::Remote(s.start_remote()?));
        }
        let actors = (0..config.run.actor_threads)
            .map(|i| {
                Actor::for_run(
                    config,
                    &s.kwargs,
                    s.learner.acting_policy(),
                    &s.device,
                    s.actor_seed(),
                    i,
                    0,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Rollouts::Threads(ActorPool::spawn(actors)))
    }
}

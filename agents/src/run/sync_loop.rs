//! The synchronous loop: every actor collects one rollout, then the learner updates (PPO).

use std::sync::atomic::Ordering;

use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::session::Session;
use crate::algo::Algorithm;
use crate::error::Result;
use crate::logging::tags;
use crate::rollout::ActorPool;

/// Run `algo` synchronously until the step budget is used or the stop flag is set.
pub(crate) fn run(s: &mut Session<'_>, algo: &dyn Algorithm) -> Result<()> {
    let config = s.config;
    let spawn_pool = |s: &Session<'_>| -> Result<ActorPool> {
        let actors = (0..config.run.actor_threads)
            .map(|i| {
                Session::make_actor(
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
        Ok(ActorPool::spawn(actors))
    };
    let mut pool = spawn_pool(s)?;
    let layout = s.learner.layout();
    let mut rng = Pcg64::seed_from_u64(s.session_seed ^ 0x9e37_79b9);
    // Until run.total_steps, counted in steps: a resumed run whose env.num_envs changed
    // does as many updates as the remaining steps need.
    while s.counters.global_step < config.run.total_steps {
        if s.options.stop.load(Ordering::SeqCst) {
            s.interrupted = true;
            break;
        }
        if s.advance_stage() {
            pool = spawn_pool(s)?;
        }
        let update = s.counters.update + 1;
        let lr = s.learning_rate();
        let mut chunks = pool.collect(&s.learner.acting_policy(), s.counters.update, layout)?;
        let step_after = s.counters.global_step + config.steps_per_update();
        s.record_episodes(&chunks, step_after);
        s.faults.env_panics += chunks.iter().map(|c| c.env_panics).sum::<u64>();
        if s.faults.env_panics > 0 {
            let panics = s.faults.env_panics as f64;
            s.logger.scalar(tags::ENV_PANICS, panics, step_after);
        }
        let stats = algo.update(&mut s.learner, &mut chunks, lr, &mut rng, update)?;
        s.counters.update = update;
        s.counters.global_step = step_after;
        s.after_update(&stats, lr)?;
    }
    Ok(())
}

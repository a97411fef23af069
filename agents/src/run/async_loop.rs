//! The asynchronous loop (APPO/IMPALA): actors stream chunks, the learner trains on them as they come.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::session::{FaultCounts, Session};
use crate::algo::Algorithm;
use crate::config::{Backend, LagMode};
use crate::error::Result;
use crate::logging::tags;
use crate::policy::Policy;
use crate::rollout::async_actors::{
    ActorFactory, ActorSettings, AsyncActors, FullQueue, PolicyBoard, RuntimeStats,
};
use crate::rollout::{Actor, Chunk, RemoteActors, RemoteStats};

/// Run `algo` on streamed chunks until the step budget is used or the stop flag is set.
pub(crate) fn run(s: &mut Session<'_>, algo: &dyn Algorithm) -> Result<()> {
    let board = Arc::new(PolicyBoard::new(
        s.learner.acting_policy(),
        s.counters.update,
    ));
    let mut actors = spawn_actors(s, &board)?;
    let result = learn(s, &board, &mut actors, algo);
    s.faults = with_runtime(s.faults, &actors.last_stats());
    result
}

/// `faults` plus the counters of the running actors.
fn with_runtime(faults: FaultCounts, rt: &RuntimeStats) -> FaultCounts {
    FaultCounts {
        env_panics: faults.env_panics + rt.env_panics,
        actor_restarts: faults.actor_restarts + rt.actor_restarts,
        dropped_full: faults.dropped_full + rt.dropped_full,
        ..faults
    }
}

/// Where chunks stream from: actor threads, or remote actors (`run.backend = "ray"`).
enum Stream {
    Threads(AsyncActors),
    Remote {
        actors: Box<dyn RemoteActors>,
        /// Env panics reported by the chunks taken so far.
        env_panics: u64,
        /// The last counters the actors reported.
        last: RemoteStats,
    },
}

/// How long a wait for a remote chunk lasts before the stop flag is checked again.
const REMOTE_POLL: Duration = Duration::from_millis(100);

impl Stream {
    /// The next chunk, or `None` once `stop` is set.
    fn next_chunk(&mut self, stop: &AtomicBool) -> Result<Option<Chunk>> {
        match self {
            Stream::Threads(actors) => actors.next_chunk(stop),
            Stream::Remote {
                actors, env_panics, ..
            } => loop {
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                if let Some(chunk) = actors.next_chunk(REMOTE_POLL)? {
                    *env_panics += chunk.env_panics;
                    return Ok(Some(chunk));
                }
            },
        }
    }

    /// Make `policy` the one chunks started from now on act with.
    fn publish(&mut self, policy: Policy, version: u64) -> Result<()> {
        match self {
            Stream::Threads(actors) => {
                actors.publish(policy, version);
                Ok(())
            }
            Stream::Remote { actors, .. } => actors.publish(policy.to_bytes()?, version),
        }
    }

    /// The runtime counters (remote actors: refreshed from the backend).
    fn stats(&mut self) -> Result<RuntimeStats> {
        match self {
            Stream::Threads(actors) => Ok(actors.stats()),
            Stream::Remote {
                actors,
                env_panics,
                last,
            } => {
                *last = actors.stats()?;
                Ok(RuntimeStats {
                    queue_depth: last.queue_depth,
                    actor_busy: last.actor_busy,
                    dropped_full: 0,
                    env_panics: *env_panics,
                    actor_restarts: last.restarts,
                })
            }
        }
    }

    /// The counters last read, without asking the actors again.
    fn last_stats(&mut self) -> RuntimeStats {
        match self {
            Stream::Threads(actors) => actors.stats(),
            Stream::Remote {
                env_panics, last, ..
            } => RuntimeStats {
                queue_depth: last.queue_depth,
                actor_busy: last.actor_busy,
                dropped_full: 0,
                env_panics: *env_panics,
                actor_restarts: last.restarts,
            },
        }
    }
}

/// The actors of the current curriculum stage.
fn spawn_actors(s: &Session<'_>, board: &Arc<PolicyBoard>) -> Result<Stream> {
    let config = s.config;
    if config.run.backend == Backend::Ray {
        return Ok(Stream::Remote {
            actors: s.start_remote()?,
            env_panics: 0,
            last: RemoteStats::default(),
        });
    }
    let a = &config.async_;
    let factory: ActorFactory = {
        let (config, kwargs, device, seed) = (
            config.clone(),
            s.kwargs.clone(),
            s.device.clone(),
            s.actor_seed(),
        );
        let board = board.clone();
        Arc::new(move |index, generation| {
            let (_, policy) = board.latest();
            Actor::for_run(&config, &kwargs, policy, &device, seed, index, generation)
        })
    };
    AsyncActors::spawn(
        config.run.actor_threads,
        factory,
        board.clone(),
        ActorSettings {
            layout: s.learner.layout(),
            queue_capacity: a.queue_capacity,
            max_restarts: a.max_actor_restarts,
            full_queue: full_queue(s),
        },
    )
    .map(Stream::Threads)
}

/// `async.full_queue` with `auto` resolved for this machine.
fn full_queue(s: &Session<'_>) -> FullQueue {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    s.config
        .async_
        .full_queue
        .resolve(s.config.run.actor_threads, cores)
}

/// Chunks made before the share dropped on a full queue is judged.
const DROP_WARNING_AFTER: u64 = 40;
/// The share of dropped chunks above which a run is warned.
const DROP_WARNING_SHARE: f64 = 0.05;

/// The warning for a run that dropped more than a few percent of its chunks on a full queue.
fn drop_warning(so_far: &FaultCounts, policy: FullQueue) -> Option<String> {
    let made = so_far.chunks_used + so_far.dropped_full + so_far.dropped_lag;
    let share = so_far.dropped_full as f64 / made.max(1) as f64;
    (made >= DROP_WARNING_AFTER && share > DROP_WARNING_SHARE).then(|| {
        let policy = match policy {
            FullQueue::DropOldest => "drop_oldest",
            FullQueue::Wait => "wait",
            FullQueue::Auto => "auto",
        };
        format!(
            "{:.0} % of the chunks so far ({} of {made}) were dropped on a full queue              (async.full_queue = {policy}): the learner is the bottleneck and the actors spend              the CPU on data nobody trains on; set async.full_queue = \"wait\" or use fewer              run.actor_threads",
            share * 100.0,
            so_far.dropped_full
        )
    })
}

fn learn(
    s: &mut Session<'_>,
    board: &Arc<PolicyBoard>,
    actors: &mut Stream,
    algo: &dyn Algorithm,
) -> Result<()> {
    let config = s.config;
    let a = &config.async_;
    let batch_chunks = config.batch_chunks();
    let mut rng = Pcg64::seed_from_u64(s.session_seed ^ 0x9e37_79b9);
    let mut batch = Vec::with_capacity(batch_chunks);
    let mut lags: Vec<f32> = Vec::new();
    // Until run.total_steps, counted in steps: a resumed run whose env.num_envs changed
    // does as many updates as the remaining steps need.
    while s.counters.global_step < config.run.total_steps {
        if s.advance_stage() {
            // A stage's actors start their counters afresh: bank the old ones.
            s.faults = with_runtime(s.faults, &actors.stats()?);
            *actors = spawn_actors(s, board)?;
        }
        let version = s.counters.update;
        batch.clear();
        lags.clear();
        let wait_start = Instant::now();
        while batch.len() < batch_chunks {
            let Some(chunk) = actors.next_chunk(&s.options.stop)? else {
                s.interrupted = true;
                return Ok(());
            };
            let lag = version.saturating_sub(chunk.policy_version);
            lags.push(lag as f32);
            if lag > a.max_policy_lag && a.lag_mode == LagMode::Drop {
                s.faults.dropped_lag += 1;
                continue;
            }
            batch.push(chunk);
        }
        let waited = wait_start.elapsed().as_secs_f64();
        let busy_start = Instant::now();
        let update = version + 1;
        let lr = s.learning_rate();
        let step_after = s.counters.global_step + config.steps_per_update();
        s.record_episodes(&batch, step_after);
        let stats = algo.update(&mut s.learner, &mut batch, lr, &mut rng, update)?;
        s.faults.chunks_used += batch.len() as u64;
        actors.publish(s.learner.acting_policy(), update)?;
        s.counters.update = update;
        s.counters.global_step = step_after;
        let busy = busy_start.elapsed().as_secs_f64();
        let rt = actors.stats()?;
        if let Stream::Remote { last, .. } = actors {
            let restarts_before = s.faults.actor_restarts;
            s.log_remote(last, restarts_before, step_after);
        }
        let log = &mut s.logger;
        log.histogram(tags::ASYNC_POLICY_LAG, &lags, step_after);
        log.scalar(tags::ASYNC_QUEUE_DEPTH, rt.queue_depth as f64, step_after);
        log.scalar(tags::ASYNC_ACTOR_BUSY, rt.actor_busy, step_after);
        log.scalar(
            tags::ASYNC_LEARNER_BUSY,
            busy / (busy + waited).max(1e-9),
            step_after,
        );
        let so_far = with_runtime(s.faults, &rt);
        log.scalar(
            tags::ASYNC_DROPPED_FULL,
            so_far.dropped_full as f64,
            step_after,
        );
        log.scalar(
            tags::ASYNC_DROPPED_LAG,
            so_far.dropped_lag as f64,
            step_after,
        );
        log.scalar(tags::ASYNC_ENV_PANICS, so_far.env_panics as f64, step_after);
        log.scalar(
            tags::ASYNC_ACTOR_RESTARTS,
            so_far.actor_restarts as f64,
            step_after,
        );
        if let Some(warning) = drop_warning(&so_far, full_queue(s)) {
            if !s
                .warnings
                .iter()
                .any(|w| w.contains("dropped on a full queue"))
            {
                s.warn(warning);
            }
        }
        s.after_update(&stats, lr)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(used: u64, dropped_full: u64) -> FaultCounts {
        FaultCounts {
            chunks_used: used,
            dropped_full,
            ..Default::default()
        }
    }

    #[test]
    fn more_than_five_percent_of_chunks_dropped_on_a_full_queue_is_warned() {
        // Too few chunks yet to judge, then under and over the share.
        assert_eq!(drop_warning(&counts(10, 9), FullQueue::DropOldest), None);
        assert_eq!(drop_warning(&counts(96, 4), FullQueue::DropOldest), None);
        let w = drop_warning(&counts(90, 10), FullQueue::DropOldest).expect("a warning");
        assert!(
            w.starts_with("10 % of the chunks so far (10 of 100)")
                && w.contains("async.full_queue = drop_oldest"),
            "{w}"
        );
    }

    #[test]
    fn auto_waits_unless_every_actor_and_the_learner_have_a_core() {
        assert_eq!(FullQueue::Auto.resolve(2, 2), FullQueue::Wait);
        assert_eq!(FullQueue::Auto.resolve(1, 2), FullQueue::DropOldest);
        assert_eq!(FullQueue::Wait.resolve(1, 64), FullQueue::Wait);
        assert_eq!(FullQueue::DropOldest.resolve(8, 2), FullQueue::DropOldest);
    }
}

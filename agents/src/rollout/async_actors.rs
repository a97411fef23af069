//! Asynchronous actor threads: they never wait for the learner, and are restarted after a panic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError,
};

use serde::{Deserialize, Serialize};

use super::actor::Actor;
use super::chunk::Chunk;
use super::layout::SequenceLayout;
use crate::error::{AgentError, Result};
use crate::policy::Policy;

/// What an actor does when the chunk queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullQueue {
    /// `wait` when the machine has no core to spare beside the actor threads and the learner
    /// (there the learner needs the CPU more than the actors: dropping chunks would only waste
    /// it), `drop_oldest` otherwise. Resolved when the actors start ([`FullQueue::resolve`]).
    #[default]
    Auto,
    /// Never wait: discard the oldest queued chunk (counted) and enqueue the new one, so the
    /// learner always gets the freshest data. Spends CPU on chunks nobody trains on when the
    /// learner is the bottleneck.
    DropOldest,
    /// Back-pressure: wait until the learner takes a chunk (frees the CPU for the learner on
    /// small machines).
    Wait,
}

impl FullQueue {
    /// The policy `auto` stands for with `actor_threads` actors on a machine of `cores`
    /// (`wait` unless every actor and the learner get a core of their own); others as they are.
    pub fn resolve(self, actor_threads: usize, cores: usize) -> FullQueue {
        match self {
            FullQueue::Auto if cores > actor_threads => FullQueue::DropOldest,
            FullQueue::Auto => FullQueue::Wait,
            other => other,
        }
    }
}

/// Where the learner publishes weights; actors pick them up without blocking.
pub struct PolicyBoard {
    version: AtomicU64,
    latest: Mutex<(u64, Policy)>,
}

impl PolicyBoard {
    /// A board holding `policy` (no autodiff) as `version`.
    pub fn new(policy: Policy, version: u64) -> Self {
        PolicyBoard {
            version: AtomicU64::new(version),
            latest: Mutex::new((version, policy)),
        }
    }

    /// Publish newer weights.
    pub fn publish(&self, policy: Policy, version: u64) {
        let mut slot = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        *slot = (version, policy);
        self.version.store(version, Ordering::Release);
    }

    /// The newest version number.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The latest weights if newer than `have`, without blocking: `None` when there is nothing
    /// newer or the learner is publishing at this very moment (the actor tries again later).
    pub fn newer_than(&self, have: u64) -> Option<(u64, Policy)> {
        if self.version() <= have {
            return None;
        }
        let slot = self.latest.try_lock().ok()?;
        Some((slot.0, slot.1.clone()))
    }

    /// The latest weights, waiting for the lock if needed (for starting actors).
    pub fn latest(&self) -> (u64, Policy) {
        let slot = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        (slot.0, slot.1.clone())
    }
}

/// Builds actor `index` (its envs seeded for `generation`, 0 at the start, +1 per restart).
pub type ActorFactory = Arc<dyn Fn(usize, u64) -> Result<Actor> + Send + Sync>;

/// Counters the actor threads update.
#[derive(Debug, Default)]
pub struct ActorCounters {
    /// Nanoseconds spent collecting, summed over actors.
    pub busy_nanos: AtomicU64,
    /// Chunks dropped because the queue was full (the oldest ones).
    pub dropped_full: AtomicU64,
    /// Contained env panics.
    pub env_panics: AtomicU64,
}

/// What the runtime reports to the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RuntimeStats {
    /// Chunks waiting in the queue.
    pub queue_depth: usize,
    /// Collecting time over wall time, averaged over actors, since the last call.
    pub actor_busy: f64,
    /// Chunks dropped on a full queue so far.
    pub dropped_full: u64,
    /// Contained env panics so far.
    pub env_panics: u64,
    /// Actor threads restarted so far.
    pub actor_restarts: u64,
}

struct Slot {
    handle: Option<JoinHandle<Result<()>>>,
    generation: u64,
}

/// Start-up settings of the actors.
#[derive(Clone, Copy, Debug)]
pub struct ActorSettings {
    /// Steps per chunk and how they are trained (one whole sequence per env row).
    pub layout: SequenceLayout,
    /// Queue capacity in chunks.
    pub queue_capacity: usize,
    /// Restarts allowed in all.
    pub max_restarts: u64,
    /// What to do when the queue is full.
    pub full_queue: FullQueue,
}

/// The actor threads of an asynchronous run and the queue they fill.
pub struct AsyncActors {
    slots: Vec<Slot>,
    chunks: Receiver<Chunk>,
    sender: Sender<Chunk>,
    board: Arc<PolicyBoard>,
    shutdown: Arc<AtomicBool>,
    counters: Arc<ActorCounters>,
    factory: ActorFactory,
    settings: ActorSettings,
    restarts: u64,
    last_busy: (Instant, u64),
}

impl AsyncActors {
    /// Start `threads` actors built by `factory`, acting with the board's weights.
    pub fn spawn(
        threads: usize,
        factory: ActorFactory,
        board: Arc<PolicyBoard>,
        settings: ActorSettings,
    ) -> Result<Self> {
        let (sender, chunks) = bounded(settings.queue_capacity);
        let mut actors = AsyncActors {
            slots: Vec::with_capacity(threads),
            chunks,
            sender,
            board,
            shutdown: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(ActorCounters::default()),
            factory,
            settings,
            restarts: 0,
            last_busy: (Instant::now(), 0),
        };
        for i in 0..threads {
            let handle = actors.start(i, 0)?;
            actors.slots.push(Slot {
                handle: Some(handle),
                generation: 0,
            });
        }
        Ok(actors)
    }

    fn start(&self, index: usize, generation: u64) -> Result<JoinHandle<Result<()>>> {
        let mut actor = (self.factory)(index, generation)?;
        let (version, policy) = self.board.latest();
        actor.set_policy(policy, version);
        let ctx = ActorLoop {
            board: self.board.clone(),
            sender: self.sender.clone(),
            oldest: self.chunks.clone(),
            shutdown: self.shutdown.clone(),
            counters: self.counters.clone(),
            full_queue: self.settings.full_queue,
            layout: self.settings.layout,
        };
        std::thread::Builder::new()
            .name(format!("engram-actor-{index}"))
            .spawn(move || ctx.run(actor))
            .map_err(|e| AgentError::Actor(format!("cannot start an actor thread: {e}")))
    }

    /// Publish the learner's new weights.
    pub fn publish(&self, policy: Policy, version: u64) {
        self.board.publish(policy, version);
    }

    /// The next chunk, restarting dead actors while waiting; `None` once `stop` is set.
    /// Never blocks for longer than 50 ms without checking `stop` and the actors.
    pub fn next_chunk(&mut self, stop: &AtomicBool) -> Result<Option<Chunk>> {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            self.supervise()?;
            match self.chunks.recv_timeout(Duration::from_millis(50)) {
                Ok(chunk) => return Ok(Some(chunk)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("the runtime holds a sender")
                }
            }
        }
    }

    /// Restart actor threads that died of a panic; an actor that returned an error (a bad
    /// action, an env error) stops the run with that error.
    pub fn supervise(&mut self) -> Result<()> {
        for i in 0..self.slots.len() {
            let finished = self.slots[i]
                .handle
                .as_ref()
                .is_some_and(|h| h.is_finished());
            if !finished {
                continue;
            }
            let handle = self.slots[i].handle.take().expect("checked above");
            match handle.join() {
                Ok(Ok(())) => {
                    return Err(AgentError::Actor(format!("actor {i} stopped unexpectedly")))
                }
                Ok(Err(e)) => return Err(e),
                Err(payload) => {
                    self.restarts += 1;
                    let why = panic_message(&payload);
                    if self.restarts > self.settings.max_restarts {
                        return Err(AgentError::Actor(format!(
                            "actor {i} panicked ({why}) after {} restarts in all, more than \
                             async.max_actor_restarts = {}; fix the environment or raise the limit",
                            self.restarts - 1,
                            self.settings.max_restarts
                        )));
                    }
                    eprintln!(
                        "engram: actor {i} panicked ({why}); restarting it with new environments \
                         (restart {} of at most {})",
                        self.restarts, self.settings.max_restarts
                    );
                    let generation = self.slots[i].generation + 1;
                    self.slots[i] = Slot {
                        handle: Some(self.start(i, generation)?),
                        generation,
                    };
                }
            }
        }
        Ok(())
    }

    /// Queue depth, actor busy fraction since the last call, and the fault counters.
    pub fn stats(&mut self) -> RuntimeStats {
        let now = Instant::now();
        let busy = self.counters.busy_nanos.load(Ordering::Relaxed);
        let (then, busy_then) = self.last_busy;
        let wall = now.duration_since(then).as_nanos() as f64 * self.slots.len().max(1) as f64;
        self.last_busy = (now, busy);
        RuntimeStats {
            queue_depth: self.chunks.len(),
            actor_busy: if wall > 0.0 {
                ((busy - busy_then) as f64 / wall).min(1.0)
            } else {
                0.0
            },
            dropped_full: self.counters.dropped_full.load(Ordering::Relaxed),
            env_panics: self.counters.env_panics.load(Ordering::Relaxed),
            actor_restarts: self.restarts,
        }
    }
}

impl Drop for AsyncActors {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        // Empty the queue so that no actor is left holding a chunk it cannot hand over.
        while self.chunks.try_recv().is_ok() {}
        // Actors stop at their next chunk boundary; one stuck in an env that never returns is
        // left behind (detached) rather than hanging the run's end.
        let deadline = Instant::now() + Duration::from_secs(10);
        for slot in &mut self.slots {
            if let Some(h) = slot.handle.take() {
                while !h.is_finished() && Instant::now() < deadline {
                    while self.chunks.try_recv().is_ok() {}
                    std::thread::sleep(Duration::from_millis(5));
                }
                if h.is_finished() {
                    let _ = h.join();
                } else {
                    eprintln!(
                        "engram: an actor thread is stuck in its environment; leaving it behind"
                    );
                }
            }
        }
    }
}

/// What one actor thread needs.
struct ActorLoop {
    board: Arc<PolicyBoard>,
    sender: Sender<Chunk>,
    oldest: Receiver<Chunk>,
    shutdown: Arc<AtomicBool>,
    counters: Arc<ActorCounters>,
    full_queue: FullQueue,
    layout: SequenceLayout,
}

impl ActorLoop {
    /// Collect chunks until shutdown: pick up new weights without blocking, and on a full queue
    /// drop its oldest chunk rather than wait.
    fn run(self, mut actor: Actor) -> Result<()> {
        let mut panics_seen = actor.env_panics();
        while !self.shutdown.load(Ordering::SeqCst) {
            if let Some((version, policy)) = self.board.newer_than(actor.policy_version()) {
                actor.set_policy(policy, version);
            }
            let start = Instant::now();
            // A panic escaping the envs' own containment unwinds this thread; the learner
            // restarts it. The chunk being collected is lost whole, never half-sent.
            let chunk = actor.collect(self.layout)?;
            self.counters
                .busy_nanos
                .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            let panics = actor.env_panics();
            self.counters
                .env_panics
                .fetch_add(panics - panics_seen, Ordering::Relaxed);
            panics_seen = panics;
            match self.sender.try_send(chunk) {
                Ok(()) => {}
                Err(TrySendError::Full(chunk)) if self.full_queue == FullQueue::Wait => {
                    if !self.wait_to_send(chunk) {
                        break;
                    }
                }
                Err(TrySendError::Full(chunk)) => {
                    if self.oldest.try_recv().is_ok() {
                        self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                    }
                    if self.sender.try_send(chunk).is_err() {
                        self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        Ok(())
    }
}

impl ActorLoop {
    /// Wait for room in the queue (checking for shutdown); `false` if the run is over.
    fn wait_to_send(&self, mut chunk: Chunk) -> bool {
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                return false;
            }
            match self.sender.send_timeout(chunk, Duration::from_millis(50)) {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(c)) => chunk = c,
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }
}

/// The message of a panic payload.
fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

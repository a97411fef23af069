//! Actor threads: each owns an [`Actor`]; the learner asks for rollouts and gets chunks back.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::actor::Actor;
use super::chunk::Chunk;
use super::layout::SequenceLayout;
use crate::error::{AgentError, Result};
use crate::policy::Policy;

enum Command {
    Collect {
        policy: Box<Policy>,
        version: u64,
        layout: SequenceLayout,
    },
}

struct Worker {
    commands: Sender<Command>,
    chunks: Receiver<Result<Chunk>>,
    handle: Option<JoinHandle<()>>,
}

/// A fixed set of actor threads for synchronous rollouts.
pub struct ActorPool {
    workers: Vec<Worker>,
}

impl ActorPool {
    /// Start one thread per actor.
    pub fn spawn(actors: Vec<Actor>) -> Self {
        let workers = actors
            .into_iter()
            .enumerate()
            .map(|(i, mut actor)| {
                let (cmd_tx, cmd_rx) = bounded::<Command>(1);
                let (chunk_tx, chunk_rx) = bounded::<Result<Chunk>>(1);
                let handle = std::thread::Builder::new()
                    .name(format!("engram-actor-{i}"))
                    .spawn(move || {
                        while let Ok(Command::Collect {
                            policy,
                            version,
                            layout,
                        }) = cmd_rx.recv()
                        {
                            actor.set_policy(*policy, version);
                            if chunk_tx.send(actor.collect(layout)).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("spawn actor thread");
                Worker {
                    commands: cmd_tx,
                    chunks: chunk_rx,
                    handle: Some(handle),
                }
            })
            .collect();
        ActorPool { workers }
    }

    /// Every actor collects one rollout of `layout` with `policy`; chunks come back in actor order.
    pub fn collect(
        &self,
        policy: &Policy,
        version: u64,
        layout: SequenceLayout,
    ) -> Result<Vec<Chunk>> {
        for w in &self.workers {
            w.commands
                .send(Command::Collect {
                    policy: Box::new(policy.clone()),
                    version,
                    layout,
                })
                .map_err(|_| AgentError::Actor("an actor thread stopped".into()))?;
        }
        self.workers
            .iter()
            .map(|w| {
                w.chunks
                    .recv()
                    .map_err(|_| AgentError::Actor("an actor thread panicked".into()))?
            })
            .collect()
    }
}

impl Drop for ActorPool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let (tx, _) = bounded(0);
            w.commands = tx; // dropping the old sender ends the thread's loop
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}

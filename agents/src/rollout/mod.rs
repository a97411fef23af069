//! Rollouts: the chunks actors hand the learner, their sequence layout, the actors and the threads that run them.

pub mod actor;
pub mod actor_pool;
pub mod async_actors;
pub mod chunk;
pub mod layout;
pub mod remote;

pub use actor::Actor;
pub use actor_pool::ActorPool;
pub use async_actors::{ActorSettings, AsyncActors, FullQueue, PolicyBoard};
pub use chunk::{ActionData, Chunk};
pub use layout::SequenceLayout;
pub use remote::{
    RemoteActors, RemoteBackend, RemoteHandle, RemoteStart, RemoteStats, RemoteWorker,
};

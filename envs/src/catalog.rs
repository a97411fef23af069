//! The process-wide registry: every built-in environment plus whatever plugins [`register`]; `make(id, kwargs)`, `list()`, `describe(id)`.

use std::sync::{OnceLock, RwLock};

use serde_json::Value;

use crate::env::Env;
use crate::error::Result;
use crate::kwargs::{KwargSpec, Kwargs};
use crate::registry::{EnvDescription, Registry};

fn global() -> &'static RwLock<Registry> {
    static REGISTRY: OnceLock<RwLock<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(Registry::with_builtins()))
}

fn read<T>(f: impl FnOnce(&Registry) -> T) -> T {
    let guard = global()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&guard)
}

/// Run `f` on the global registry with write access (plugin loading uses it).
pub(crate) fn with_registry_mut<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut guard = global()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(&mut guard)
}

/// A copy of the global registry as it is now (built-ins, registered envs, loaded plugins),
/// for APIs that take a [`Registry`] such as [`crate::check_env`].
pub fn snapshot() -> Registry {
    read(Registry::clone)
}

/// Build environment `id` from the global registry (built-ins plus anything [`register`]ed).
pub fn make(id: &str, kwargs: &serde_json::Map<String, Value>) -> Result<Box<dyn Env>> {
    read(|r| r.make(id, kwargs))
}

/// Ids and summaries of every environment in the global registry.
pub fn list() -> Vec<(String, String)> {
    read(|r| {
        r.list()
            .into_iter()
            .map(|e| (e.id.clone(), e.summary.clone()))
            .collect()
    })
}

/// Describe environment `id` of the global registry.
pub fn describe(id: &str) -> Result<EnvDescription> {
    read(|r| r.describe(id))
}

/// Add an environment to the global registry (see [`Registry::register`]).
///
/// A plugin implements [`Env`] and registers a factory; `make`, `VecEnv::make`, the checker
/// and the CLI then treat it like a built-in:
///
/// ```
/// use engram_envs::{register, make, Action, Env, EnvRng, EnvSpec, KwargSpec, Space, Step};
///
/// /// Guess a hidden coin flip after `delay` blank steps.
/// struct CoinMemory { spec: EnvSpec, delay: u64, t: u64, coin: u64, rng: EnvRng }
///
/// impl Env for CoinMemory {
///     fn spec(&self) -> &EnvSpec { &self.spec }
///     fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> engram_envs::Result<()> {
///         if let Some(s) = seed { self.rng = EnvRng::from_seed(s); }
///         self.t = 0;
///         self.coin = self.rng.below(2);
///         obs.fill(0.0);
///         obs[self.coin as usize] = 1.0; // shown once, at the start
///         Ok(())
///     }
///     fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> engram_envs::Result<Step> {
///         self.t += 1;
///         obs.fill(0.0);
///         if self.t <= self.delay { return Ok(Step::running(0.0)); }
///         let right = action == Action::Discrete(self.coin as i64);
///         Ok(Step::terminal(if right { 1.0 } else { -1.0 }))
///     }
/// }
///
/// register(
///     "plugins/CoinMemory-v0",
///     "remember a coin flip",
///     vec![KwargSpec::int("delay", 0, 1_000_000, 10, "blank steps before the guess")],
///     |id, kw| Ok(CoinMemory {
///         spec: EnvSpec::new(id, Space::uniform_box(0.0, 1.0, vec![2]), Space::discrete(2)),
///         delay: kw.int("delay") as u64, t: 0, coin: 0, rng: EnvRng::from_seed(0),
///     }),
/// ).unwrap();
///
/// let mut env = make("plugins/CoinMemory-v0", serde_json::json!({"delay": 3}).as_object().unwrap()).unwrap();
/// let mut obs = [0.0; 2];
/// env.reset(Some(7), &mut obs).unwrap();
/// let coin = if obs[1] == 1.0 { 1 } else { 0 };
/// for _ in 0..3 { env.step(Action::Discrete(0), &mut obs).unwrap(); }
/// assert_eq!(env.step(Action::Discrete(coin), &mut obs).unwrap().reward, 1.0);
/// // The registry's guard turns bad input into errors:
/// assert!(env.step(Action::Discrete(0), &mut obs).is_err()); // episode over
/// ```
pub fn register<E, F>(id: &str, summary: &str, kwargs: Vec<KwargSpec>, factory: F) -> Result<()>
where
    E: Env + 'static,
    F: Fn(&str, &Kwargs) -> Result<E> + Send + Sync + 'static,
{
    with_registry_mut(|r| r.register(id, summary, kwargs, factory))
}

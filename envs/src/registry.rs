//! The environment registry type: ids, kwargs specs and factories; `make`, `list`, `describe` and registration on one registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::env::{Env, EnvSpec};
use crate::error::{EnvError, Result};
use crate::guarded::Guarded;
use crate::kwargs::{KwargSpec, Kwargs};

type Factory = Arc<dyn Fn(&str, &Kwargs) -> Result<Box<dyn Env>> + Send + Sync>;

/// One registered environment.
#[derive(Clone)]
pub struct EnvEntry {
    /// Versioned id.
    pub id: String,
    /// One line saying what the task is.
    pub summary: String,
    /// Accepted keyword arguments.
    pub kwargs: Vec<KwargSpec>,
    factory: Factory,
}

impl std::fmt::Debug for EnvEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvEntry")
            .field("id", &self.id)
            .field("summary", &self.summary)
            .finish()
    }
}

/// Everything `describe` reports about an environment: its entry and the spec of a default instance.
#[derive(Debug, Clone, Serialize)]
pub struct EnvDescription {
    /// One line saying what the task is.
    pub summary: String,
    /// Spec with default arguments.
    pub spec: EnvSpec,
    /// Accepted keyword arguments.
    pub kwargs: Vec<KwargSpec>,
}

impl std::fmt::Display for EnvDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.spec;
        writeln!(f, "{}\n  {}", s.id, self.summary)?;
        writeln!(
            f,
            "  observation space: {} (flat dim {})",
            s.observation_space,
            s.obs_dim()
        )?;
        writeln!(f, "  action space:      {}", s.action_space)?;
        match s.max_episode_steps {
            Some(m) => writeln!(f, "  time limit:        {m} steps (truncated)")?,
            None => writeln!(
                f,
                "  time limit:        none (episodes end by the task's rules)"
            )?,
        }
        if self.kwargs.is_empty() {
            writeln!(f, "  arguments:         none")?;
        } else {
            writeln!(f, "  arguments:")?;
            for k in &self.kwargs {
                let default = if k.default.is_null() {
                    "computed".to_string()
                } else {
                    k.default.to_string()
                };
                writeln!(
                    f,
                    "    {:<18} {} (default {default}): {}",
                    k.name, k.kind, k.doc
                )?;
            }
        }
        Ok(())
    }
}

/// A set of environment factories keyed by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    entries: BTreeMap<String, EnvEntry>,
}

impl Registry {
    /// A registry with no environments.
    pub fn empty() -> Self {
        Registry::default()
    }

    /// Register an environment under `id` (`[namespace/]Name-vN`). The factory gets checked
    /// keyword arguments; what it builds is wrapped in [`Guarded`], so it may assume valid input.
    pub fn register<E, F>(
        &mut self,
        id: &str,
        summary: &str,
        kwargs: Vec<KwargSpec>,
        factory: F,
    ) -> Result<()>
    where
        E: Env + 'static,
        F: Fn(&str, &Kwargs) -> Result<E> + Send + Sync + 'static,
    {
        validate_id(id)?;
        if self.entries.contains_key(id) {
            return Err(EnvError::DuplicateId(id.into()));
        }
        let factory: Factory =
            Arc::new(move |id, kw| Ok(Box::new(Guarded::new(factory(id, kw)?)) as Box<dyn Env>));
        self.entries.insert(
            id.into(),
            EnvEntry {
                id: id.into(),
                summary: summary.into(),
                kwargs,
                factory,
            },
        );
        Ok(())
    }

    /// Build the environment `id` with keyword arguments (JSON object; TOML tables convert).
    /// `gymnasium:<id>` and `python:<module>:<factory>` ids make a Python env in a worker
    /// process (see [`crate::python`]); their kwargs go to Python unchecked.
    pub fn make(&self, id: &str, kwargs: &serde_json::Map<String, Value>) -> Result<Box<dyn Env>> {
        if let Some(target) = crate::python::Target::parse(id) {
            let env = crate::python::PythonEnv::new(target?, kwargs)?;
            return Ok(Box::new(Guarded::new(env)));
        }
        let entry = self.entry(id)?;
        let kw = Kwargs::resolve(id, &entry.kwargs, kwargs)?;
        (entry.factory)(id, &kw)
    }

    /// All entries, sorted by id.
    pub fn list(&self) -> Vec<&EnvEntry> {
        self.entries.values().collect()
    }

    /// The entry of `id` and the spec of an instance with default arguments.
    pub fn describe(&self, id: &str) -> Result<EnvDescription> {
        if crate::python::is_python_id(id) {
            let env = self.make(id, &serde_json::Map::new())?;
            return Ok(EnvDescription {
                summary: "a Python env, stepped in a worker process".into(),
                spec: env.spec().clone(),
                kwargs: vec![],
            });
        }
        let entry = self.entry(id)?;
        let env = self.make(id, &serde_json::Map::new())?;
        Ok(EnvDescription {
            summary: entry.summary.clone(),
            spec: env.spec().clone(),
            kwargs: entry.kwargs.clone(),
        })
    }

    /// The entry of `id`, or an error naming the closest ids.
    pub fn entry(&self, id: &str) -> Result<&EnvEntry> {
        self.entries.get(id).ok_or_else(|| EnvError::UnknownId {
            id: id.into(),
            closest: self.closest(id, 3),
        })
    }

    /// Up to `n` registered ids closest to `id`, best first.
    pub fn closest(&self, id: &str, n: usize) -> Vec<String> {
        let needle = id.to_lowercase();
        let mut scored: Vec<(f64, &String)> = self
            .entries
            .keys()
            .map(|k| {
                let hay = k.to_lowercase();
                let mut score = strsim::jaro_winkler(&needle, &hay);
                if hay.contains(&needle) || needle.contains(&hay) {
                    score += 0.2;
                }
                (score, k)
            })
            .filter(|(s, _)| *s > 0.7)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.into_iter().take(n).map(|(_, k)| k.clone()).collect()
    }
}

fn validate_id(id: &str) -> Result<()> {
    let name = id
        .rsplit_once('/')
        .map_or(id, |(ns, name)| if ns.is_empty() { "" } else { name });
    let ok = name.rsplit_once("-v").is_some_and(|(base, v)| {
        !base.is_empty() && !v.is_empty() && v.chars().all(|c| c.is_ascii_digit())
    }) && !id.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(EnvError::MalformedId(id.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_versioned() {
        assert!(validate_id("CartPole-v1").is_ok());
        assert!(validate_id("popgym-RepeatFirstEasy-v0").is_ok());
        assert!(validate_id("plugins/MyEnv-v12").is_ok());
        assert!(validate_id("CartPole").is_err());
        assert!(validate_id("CartPole-vx").is_err());
        assert!(validate_id("/Name-v0").is_err());
        assert!(validate_id("Cart Pole-v0").is_err());
    }

    #[test]
    fn unknown_id_suggests_close_ids() {
        let r = Registry::with_builtins();
        let err = r
            .make("Cartpole-v1", &serde_json::Map::new())
            .err()
            .expect("unknown id");
        match &err {
            EnvError::UnknownId { closest, .. } => {
                assert_eq!(closest.first().map(String::as_str), Some("CartPole-v1"))
            }
            other => panic!("wrong error {other:?}"),
        }
        assert!(
            err.to_string().contains("did you mean `CartPole-v1`"),
            "{err}"
        );
        let err = r
            .make("TMaze-v0", &serde_json::Map::new())
            .err()
            .expect("unknown id")
            .to_string();
        assert!(
            err.contains("TMaze-Passive-v0") && err.contains("TMaze-Active-v0"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut r = Registry::with_builtins();
        let err = r
            .register("CartPole-v1", "dup", vec![], |id, _| {
                Ok(crate::builtin::cartpole::CartPole::new(id))
            })
            .unwrap_err();
        assert_eq!(err, EnvError::DuplicateId("CartPole-v1".into()));
    }
}

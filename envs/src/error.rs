//! Typed errors of the environment layer.

use thiserror::Error;

/// Everything that can go wrong when making, resetting or stepping an environment.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EnvError {
    /// No environment is registered under this id.
    #[error("unknown environment id `{id}`{}; run `engram envs list` to see every id", suggest(.closest))]
    UnknownId {
        /// The id that was asked for.
        id: String,
        /// Registered ids closest to it, best first.
        closest: Vec<String>,
    },
    /// A keyword argument is not accepted by this environment.
    #[error("environment `{id}` has no argument `{key}`; valid arguments: {valid}")]
    UnknownKwarg {
        /// Environment id.
        id: String,
        /// The offending key.
        key: String,
        /// The keys it accepts, comma separated (or "none").
        valid: String,
    },
    /// A keyword argument has a value outside its valid range or of the wrong type.
    #[error("environment `{id}`: argument `{key}` = {value} is invalid; expected {expected}")]
    BadKwarg {
        /// Environment id.
        id: String,
        /// The offending key.
        key: String,
        /// The value given, as text.
        value: String,
        /// What would have been valid.
        expected: String,
    },
    /// An id is already taken in the registry.
    #[error("environment id `{0}` is already registered; pick another id or version (e.g. `-v1`)")]
    DuplicateId(String),
    /// An id does not follow the `[namespace/]Name-vN` format.
    #[error("environment id `{0}` is malformed; ids look like `Name-v0` or `namespace/Name-v0`")]
    MalformedId(String),
    /// The action is not an element of the action space.
    #[error("action {action} is outside the action space {space} of `{id}`")]
    InvalidAction {
        /// Environment id.
        id: String,
        /// The action, as text.
        action: String,
        /// The action space, as text.
        space: String,
    },
    /// A buffer passed to reset or step has the wrong length.
    #[error("`{id}`: {what} buffer has length {got}, expected {expected}")]
    BufferSize {
        /// Environment id.
        id: String,
        /// Which buffer (observation, actions, ...).
        what: &'static str,
        /// Length given.
        got: usize,
        /// Length expected.
        expected: usize,
    },
    /// `step` was called before `reset` or after the episode ended.
    #[error("`{id}`: step called {when}; call reset first (VecEnv does this for you)")]
    NeedsReset {
        /// Environment id.
        id: String,
        /// "before the first reset" or "after the episode ended".
        when: &'static str,
    },
    /// A plugin library could not be loaded or registered.
    #[error("plugin `{path}` {message}")]
    Plugin {
        /// The library's path.
        path: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The environment crashed inside a step (a plugin env's panic or internal failure): its
    /// state is unknown. [`crate::VecEnv`] contains it like a panic of a built-in env (the env
    /// starts a new episode, the step counts as a truncation and as a contained panic).
    #[error("`{id}` crashed: {message}")]
    Crashed {
        /// Environment id.
        id: String,
        /// What the environment said.
        message: String,
    },
    /// The environment itself reported a failure.
    #[error("`{id}`: {message}")]
    Env {
        /// Environment id.
        id: String,
        /// What went wrong.
        message: String,
    },
}

fn suggest(closest: &[String]) -> String {
    if closest.is_empty() {
        String::new()
    } else {
        format!(
            " (did you mean {}?)",
            closest
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Result alias for the environment layer.
pub type Result<T, E = EnvError> = std::result::Result<T, E>;

//! The versioned C ABI between Engram and an environment plugin: the entry symbol, the vtable, status codes and the JSON documents that cross it.
//!
//! A plugin is a shared library exporting one function, [`ENTRY_SYMBOL`]
//! (`engram_env_plugin`), of type [`EntryFn`]. It returns a pointer to a static
//! [`PluginVtable`] whose first field is [`PluginVtable::abi_version`]; the host reads that
//! field alone first and refuses the library unless it equals [`ENGRAM_ENV_ABI_VERSION`].
//!
//! # Ownership of strings
//!
//! Every string crossing the boundary is NUL-terminated UTF-8. Strings the host passes in
//! (ids, kwargs JSON) are borrowed for the duration of the call. Strings the plugin returns
//! are owned by the plugin and must not be freed by the host:
//!
//! - [`PluginVtable::metadata`]: valid for the lifetime of the library;
//! - [`PluginVtable::create_error`]: valid until the next `create` on the same thread;
//! - [`PluginVtable::spec`]: valid until the handle is destroyed;
//! - [`PluginVtable::error`] and [`PluginVtable::render_text`]: valid until the next call
//!   on the same handle.
//!
//! # JSON documents
//!
//! [`PluginMetadata`] and [`crate::EnvSpec`] are serialised with serde_json, which writes
//! non-finite floats as `null`: a `null` in a `Box` space's `low` means -∞, in `high` +∞.
//!
//! # Threads
//!
//! A handle may move between threads but is used by one thread at a time; different handles
//! may be used concurrently. `create` may be called from several threads at once.
//!
//! # Panics
//!
//! No call may unwind into the host: [`crate::export_plugin!`] catches every panic and turns
//! it into [`STATUS_PANIC`] (or a null handle) with the panic message as the error string.
//! Plugins must therefore be built with `panic = "unwind"` (the default).

use std::ffi::{c_char, c_void};

use serde::{Deserialize, Serialize};

use crate::kwargs::KwargSpec;

/// Version of the ABI described here. Bumped on any change to [`PluginVtable`], the status
/// codes or the JSON documents.
pub const ENGRAM_ENV_ABI_VERSION: u32 = 1;

/// Name of the exported entry function (without the trailing NUL: `engram_env_plugin`).
pub const ENTRY_SYMBOL: &str = "engram_env_plugin";

/// The entry function a plugin exports under [`ENTRY_SYMBOL`]: returns its static vtable.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginVtable;

/// The call succeeded.
pub const STATUS_OK: i32 = 0;
/// The environment reported an error; [`PluginVtable::error`] says which.
pub const STATUS_ERROR: i32 = 1;
/// The environment panicked; [`PluginVtable::error`] holds the panic message.
pub const STATUS_PANIC: i32 = 2;

/// How an action is passed to [`PluginVtable::step`].
pub const ACTION_DISCRETE: u32 = 0;
/// A `MultiDiscrete` action: `ints` holds one value per element.
pub const ACTION_MULTI_DISCRETE: u32 = 1;
/// A `Box` action: `floats` holds its values.
pub const ACTION_CONTINUOUS: u32 = 2;

/// Opaque environment instance owned by the plugin.
pub type EnvHandle = *mut c_void;

/// What one step produced, written by [`PluginVtable::step`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepOut {
    /// Reward of the transition.
    pub reward: f32,
    /// 1 when a terminal state was reached, else 0.
    pub terminated: u8,
    /// 1 when the episode was cut (time limit), else 0.
    pub truncated: u8,
}

/// The functions of a plugin, reached through [`EntryFn`].
///
/// All function pointers are non-null. `handle` arguments are values returned by `create`
/// and not yet passed to `destroy`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginVtable {
    /// [`ENGRAM_ENV_ABI_VERSION`] of the engram-envs the plugin was built with. Always first.
    pub abi_version: u32,
    /// The [`PluginMetadata`] as JSON, or null when the plugin failed to initialise (then
    /// `create_error` says why).
    pub metadata: unsafe extern "C" fn() -> *const c_char,
    /// Build environment `id` (one of the metadata's ids) with checked keyword arguments
    /// given as a JSON object. Null on failure; then `create_error` says why.
    pub create: unsafe extern "C" fn(id: *const c_char, kwargs_json: *const c_char) -> EnvHandle,
    /// Why the last `create` (or `metadata`) on this thread failed; null if it did not.
    pub create_error: unsafe extern "C" fn() -> *const c_char,
    /// The instance's [`crate::EnvSpec`] as JSON.
    pub spec: unsafe extern "C" fn(handle: EnvHandle) -> *const c_char,
    /// Start an episode (re-seeding when `has_seed` is 1) and write the first observation
    /// into `obs[..obs_len]`. Returns a status code.
    pub reset: unsafe extern "C" fn(
        handle: EnvHandle,
        has_seed: u8,
        seed: u64,
        obs: *mut f32,
        obs_len: usize,
    ) -> i32,
    /// Apply an action of kind `action_kind` (`ACTION_*`; discrete kinds read `ints`,
    /// continuous reads `floats`; the unused pointer may be null with length 0), write the
    /// next observation into `obs[..obs_len]` and the outcome into `out`. Returns a status code.
    pub step: unsafe extern "C" fn(
        handle: EnvHandle,
        action_kind: u32,
        ints: *const i64,
        ints_len: usize,
        floats: *const f32,
        floats_len: usize,
        obs: *mut f32,
        obs_len: usize,
        out: *mut StepOut,
    ) -> i32,
    /// A text picture of the current state, or null when the environment draws none.
    pub render_text: unsafe extern "C" fn(handle: EnvHandle) -> *const c_char,
    /// The message of the last failed call on `handle`.
    pub error: unsafe extern "C" fn(handle: EnvHandle) -> *const c_char,
    /// Free the instance.
    pub destroy: unsafe extern "C" fn(handle: EnvHandle),
}

/// What [`PluginVtable::metadata`] describes: the plugin and its environments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginMetadata {
    /// The plugin's name (its crate name); the namespace of ids that have none.
    pub name: String,
    /// The environments it provides.
    pub envs: Vec<PluginEnvInfo>,
}

/// One environment of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginEnvInfo {
    /// Versioned id, with or without a namespace.
    pub id: String,
    /// One line saying what the task is.
    pub summary: String,
    /// Accepted keyword arguments.
    pub kwargs: Vec<KwargSpec>,
}

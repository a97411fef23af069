//! Environment plugins: environments written in Rust, built as a shared library and loaded by `engram --plugin PATH` without rebuilding Engram.
//!
//! - [`abi`]: the versioned C ABI (entry symbol, vtable, status codes, JSON documents);
//! - [`export`]: the plugin side, emitted by [`crate::export_plugin!`];
//! - [`host`]: the loader, [`load_plugin`], which registers a plugin's environments into the
//!   process-wide registry, guarded like built-ins.

pub mod abi;
pub mod export;
pub mod host;

pub use abi::ENGRAM_ENV_ABI_VERSION;
pub use host::{load_plugin, load_plugins, Plugin};

//! `engram._engram`, the extension module under the `engram` Python package: runs, the CLI and native envs.

// PyO3 0.19's macros expand to cfgs (`addr_of`) and impl blocks that today's rustc lints in the
// calling crate; 0.19 is the version gymnasium-rs pins (see Cargo.toml).
#![allow(unexpected_cfgs, non_local_definitions)]

mod errors;
mod native_env;
mod ray_bridge;
mod runs;

use pyo3::prelude::*;

/// The extension module; the Python package `engram` wraps it.
#[pymodule]
fn _engram(py: Python<'_>, m: &PyModule) -> PyResult<()> {
    m.add("EngramError", py.get_type::<errors::EngramError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    runs::register(m)?;
    native_env::register(m)?;
    ray_bridge::register(m)?;
    Ok(())
}

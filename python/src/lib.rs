//! `engram._engram`, the extension module under the `engram` Python package: runs, the CLI and native envs.

// PyO3 0.19's macros expand to cfgs (`addr_of`) and impl blocks that today's rustc lints in the
// calling crate; 0.19 is the version gymnasium-rs pins (see Cargo.toml).
#![allow(unexpected_cfgs, non_local_definitions)]

mod errors;
mod native_env;
mod ray_bridge;
mod runs;

use pyo3::prelude::*;

/// The extension's own allocations (not Python's, not numpy's) go through mimalloc, as the
/// `engram` binary's: the kernels' per-step scratch and gemm's packing buffers, which glibc's
/// `malloc` served slower (on glibc the modular cores take 9–14 % longer, the fused LSTM 8–10 %,
/// at B = 32 / 64 on one thread). Arrays handed to numpy without a copy (`PyArray1::from_vec`)
/// keep their vector, which is freed on this side, through it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The extension module; the Python package `engram` wraps it.
#[pymodule]
fn _engram(py: Python<'_>, m: &PyModule) -> PyResult<()> {
    // Freed memory stays mapped for reuse, as in the `engram` binary: each update frees and
    // allocates the same multi-megabyte tapes (the process keeps the extension's peak).
    // SAFETY: sets one of mimalloc's runtime options to a valid value.
    unsafe { libmimalloc_sys::mi_option_set(engram_memory::allocator::MIMALLOC_PURGE_DELAY, -1) };
    m.add("EngramError", py.get_type::<errors::EngramError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    runs::register(m)?;
    native_env::register(m)?;
    ray_bridge::register(m)?;
    Ok(())
}

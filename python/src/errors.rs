//! `engram.EngramError`, raised for every error Engram reports (the message names the problem and the fix).

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::PyErr;

create_exception!(
    engram,
    EngramError,
    PyException,
    "An error Engram reports: a bad config key or value, an unknown env, a bad run directory or plugin, an env that failed."
);

/// An Engram error (with its causes, as the CLI prints them) as a Python exception.
pub fn engram_error(e: anyhow::Error) -> PyErr {
    EngramError::new_err(engram::error_message(&e))
}

/// An env error as a Python exception.
pub fn env_error(e: engram_envs::EnvError) -> PyErr {
    engram_error(e.into())
}

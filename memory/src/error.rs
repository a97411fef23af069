//! Typed errors of the memory crate: bad configurations, shape mismatches, bad state buffers.

use thiserror::Error;

/// Everything that can go wrong when building or running a recurrent core.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MemoryError {
    /// A configuration value is out of range; the message names the field and the fix.
    #[error("invalid {core} config: {message}")]
    InvalidConfig {
        /// The core kind whose configuration is wrong (e.g. `"rims"`).
        core: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A tensor handed to a core has the wrong shape.
    #[error("shape mismatch in {what}: expected {expected}, got {got:?}")]
    Shape {
        /// Which argument has the wrong shape.
        what: &'static str,
        /// A description of the expected shape.
        expected: String,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// A core state does not match the core it is used with.
    #[error("state mismatch: {0}")]
    State(String),
    /// A flat state buffer has the wrong length.
    #[error(
        "flat state buffer has {got} values, expected {expected} ({batch} rows of {row_width})"
    )]
    FlatLength {
        /// Number of values given.
        got: usize,
        /// Number of values expected.
        expected: usize,
        /// Number of rows requested.
        batch: usize,
        /// Values per row for this core.
        row_width: usize,
    },
    /// A core configuration could not be parsed or serialised.
    #[error("core config: {0}")]
    Serde(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, MemoryError>;

/// Builds an [`MemoryError::InvalidConfig`].
pub(crate) fn invalid(core: &'static str, message: impl Into<String>) -> MemoryError {
    MemoryError::InvalidConfig {
        core,
        message: message.into(),
    }
}

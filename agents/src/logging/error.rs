//! The error type of the logging layer.

use std::path::PathBuf;

/// Why logging a run failed; each message names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The run directory could not be created or is not writable.
    #[error(
        "cannot write the run directory `{path}`: {source} \
         (check that it and its parents are writable directories, or choose another --run-dir)"
    )]
    RunDir {
        /// The run directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `metrics.jsonl` could not be opened or written.
    #[error(
        "cannot write the metrics file `{path}`: {source} \
         (check disk space and the file's permissions, or choose another --run-dir)"
    )]
    Metrics {
        /// The metrics file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `metrics.jsonl` could not be read back.
    #[error("cannot read the metrics file `{path}`: {source}")]
    MetricsRead {
        /// The metrics file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TensorBoard event writer could not start or stopped working.
    #[error(
        "the TensorBoard event writer for `{path}` failed: {reason} \
         (check disk space and the run directory's permissions, or choose another --run-dir)"
    )]
    EventWriter {
        /// The run directory, or the event file once it exists.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The hyperparameters or the TensorBoard HParams summaries could not be built.
    #[error("cannot write the TensorBoard HParams summaries: {reason}")]
    HParams {
        /// What went wrong.
        reason: String,
    },
    /// An image's pixel buffer does not match its dimensions, or it could not be PNG-encoded.
    #[error("cannot log image `{tag}`: {reason}")]
    Image {
        /// The image's tag.
        tag: String,
        /// What is wrong with it.
        reason: String,
    },
}

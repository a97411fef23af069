//! Run monitoring for `engram train`: TensorBoard event files, `metrics.jsonl` and a progress line.
//!
//! [`RunLogger`] writes scalars, histograms and images to TensorBoard event files through the
//! `tensorboard-rs` crate (summaries it lacks are built on its protobuf types) and mirrors every
//! scalar into `run_dir/metrics.jsonl`, and the run's hyperparameters and final metrics for
//! TensorBoard's HParams tab ([`hparams`]). [`tags`] holds the stable tag names. [`Progress`]
//! draws the single updating status line on stderr.
//!
//! # Panics from tensorboard-rs
//!
//! `tensorboard-rs` panics (`expect`) on I/O errors, both in the caller's thread and in the
//! background thread that writes the event file. This module never lets such a panic escape:
//! it checks the run directory is creatable and writable before constructing the writer, calls
//! every `tensorboard-rs` method inside `std::panic::catch_unwind`, confirms the event file
//! really appeared, and turns a dead writer into a [`LogError`]. Rust's default panic hook may
//! still print the caught panic's message on stderr; the `LogError` that follows explains it.
//! (A binary built with `panic = "abort"` cannot catch panics; Engram's profiles unwind.)

mod error;
mod event_writer;
mod histogram;
pub mod hparams;
mod image;
mod metrics_file;
mod progress;
mod returns;
mod run_logger;
mod summaries;
pub mod tags;

pub use error::LogError;
pub use hparams::{HParamValue, SessionStatus};
pub use image::{activation_image, RgbImage};
pub use progress::{Progress, ProgressMode};
pub use returns::{ReturnStats, RETURN_WINDOW};
pub use run_logger::{RunLogger, METRICS_FILE};

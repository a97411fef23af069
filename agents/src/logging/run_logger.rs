//! `RunLogger`: one training run's TensorBoard event file plus its `metrics.jsonl`.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::event_writer::{unix_time_f64, EventWriter};
use super::histogram::{HistogramStats, BUCKETS};
use super::hparams::{self, SessionStatus};
use super::metrics_file::MetricsFile;
use super::returns::ReturnStats;
use super::{summaries, tags, LogError, RgbImage};

/// Name of the per-step scalar log inside a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Writes a run's scalars, histograms and images to TensorBoard and its scalars to `metrics.jsonl`.
///
/// The logging calls never fail: an error (an invalid image, a dead event writer) is kept and
/// returned by the next [`flush`](Self::flush), which the training loop calls once per iteration.
/// Dropping the logger writes pending `metrics.jsonl` lines and waits for the event file to be
/// complete, but can report no error; call `flush` first.
pub struct RunLogger {
    /// The run directory.
    run_dir: PathBuf,
    /// The TensorBoard event file.
    events: EventWriter,
    /// The `metrics.jsonl` file.
    metrics: MetricsFile,
    /// Scalars logged since the last flush, by step; a tag logged again at the same step
    /// (e.g. two episodes ending together) starts another line, so no value is lost.
    pending: BTreeMap<u64, Vec<BTreeMap<String, f64>>>,
    /// The first error met since the last flush.
    deferred: Option<LogError>,
}

impl RunLogger {
    /// Create (or, when resuming, append to) the TensorBoard run in `run_dir` (event files go in
    /// run_dir itself so `tensorboard --logdir runs/` shows every run) and `run_dir/metrics.jsonl`.
    ///
    /// Each logger starts a new event file; TensorBoard merges all files of a directory, so a
    /// resumed run that logs later steps continues the same curves. (If it logs a step at or below
    /// one already written, TensorBoard treats that as a restart and hides the older, later points.)
    /// `metrics.jsonl` is appended to ([`resume`](Self::resume) first cuts it back to the
    /// checkpoint).
    ///
    /// # Errors
    /// [`LogError::RunDir`] if `run_dir` cannot be created or written, [`LogError::Metrics`] if
    /// `metrics.jsonl` cannot be opened, [`LogError::EventWriter`] if tensorboard-rs fails.
    pub fn create(run_dir: &Path) -> Result<Self, LogError> {
        let dir_error = |source| LogError::RunDir {
            path: run_dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(run_dir).map_err(dir_error)?;
        // tensorboard-rs panics if it cannot create its file: check a new file can be made first.
        let probe = run_dir.join(format!(".engram-write-check-{}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&probe)
            .map_err(dir_error)?;
        fs::remove_file(&probe).map_err(dir_error)?;
        let metrics = MetricsFile::open(run_dir.join(METRICS_FILE))?;
        let events = EventWriter::create(run_dir)?;
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            events,
            metrics,
            pending: BTreeMap::new(),
            deferred: None,
        })
    }

    /// [`create`](Self::create) for a run resumed from the checkpoint at `step`: first cut
    /// `metrics.jsonl` back to `step`, then mark the new event file with a `SessionLog.START`
    /// at `step + 1`, so that neither keeps what a killed session logged past its checkpoint
    /// (the resumed run logs those steps again).
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn resume(run_dir: &Path, step: u64) -> Result<Self, LogError> {
        MetricsFile::truncate_after(&run_dir.join(METRICS_FILE), step)?;
        let mut logger = Self::create(run_dir)?;
        logger.events.add_session_start(step + 1);
        Ok(logger)
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The event file this logger writes (`run_dir/events.out.tfevents.<time>.<host>.<pid>.0`).
    pub fn event_file(&self) -> &Path {
        self.events.path()
    }

    /// The `metrics.jsonl` file.
    pub fn metrics_file(&self) -> &Path {
        self.metrics.path()
    }

    /// Log a scalar at `step` (TensorBoard stores it as `f32`; `metrics.jsonl` keeps the `f64`).
    /// Logging a tag twice at one step keeps both points in TensorBoard and the last in `metrics.jsonl`.
    pub fn scalar(&mut self, tag: &str, value: f64, step: u64) {
        self.events.add(summaries::scalar(tag, value), step);
        let lines = self.pending.entry(step).or_default();
        match lines.iter_mut().find(|line| !line.contains_key(tag)) {
            Some(line) => {
                line.insert(tag.to_string(), value);
            }
            None => lines.push(BTreeMap::from([(tag.to_string(), value)])),
        }
    }

    /// Log a histogram of `values` at `step`: min, max, count, sum, sum of squares and 30
    /// equal-width buckets. NaN and infinite values are left out; with no finite value nothing is logged.
    pub fn histogram(&mut self, tag: &str, values: &[f32], step: u64) {
        if let Some(stats) = HistogramStats::from_values(values, BUCKETS) {
            self.events.add(summaries::histogram(tag, stats), step);
        }
    }

    /// Log a PNG-encoded image at `step`. A 0x0 image (e.g. [`activation_image`](super::activation_image)
    /// of an empty episode) is skipped; a buffer that does not match its dimensions is an error
    /// returned by the next [`flush`](Self::flush).
    pub fn image(&mut self, tag: &str, image: &RgbImage, step: u64) {
        if image.pixels.is_empty() && (image.width == 0 || image.height == 0) {
            return;
        }
        match summaries::image(tag, image) {
            Ok(summary) => self.events.add(summary, step),
            Err(e) => {
                self.deferred.get_or_insert(e);
            }
        }
    }

    /// Describe this session to TensorBoard's HParams tab at `step`: its hyperparameters (`config`
    /// flattened by [`hparams::flatten_hparams`]) as the session start, and an experiment whose
    /// columns are those hyperparameters and the metrics [`hparams_end`](Self::hparams_end) logs
    /// ([`tags::HPARAMS_METRICS`]). A resumed run calls it again for its new event file. An error
    /// is returned by the next [`flush`](Self::flush).
    pub fn hparams_start(&mut self, config: &impl Serialize, step: u64) {
        if let Err(e) = self.try_hparams_start(config, step) {
            self.deferred.get_or_insert(e);
        }
    }

    /// [`hparams_start`](Self::hparams_start), failing on the first error.
    fn try_hparams_start(&mut self, config: &impl Serialize, step: u64) -> Result<(), LogError> {
        let value = serde_json::to_value(config).map_err(|e| LogError::HParams {
            reason: format!("cannot serialize the config: {e}"),
        })?;
        let values = hparams::flatten_hparams(&value);
        let now = unix_time_f64();
        let model_uri = self.run_dir.display().to_string();
        let experiment = hparams::experiment(&values, tags::HPARAMS_METRICS, now)?;
        let start = hparams::session_start(&values, &model_uri, now)?;
        self.events.add(experiment, step);
        self.events.add(start, step);
        Ok(())
    }

    /// Log the run's final metrics at `step` for TensorBoard's HParams tab: the mean return of the
    /// last 100 episodes and the best mean over 100 consecutive episodes (both read from
    /// `metrics.jsonl`, so they span every session of a resumed run; not logged before any
    /// episode) and `step` itself; then end the session with `status` ([`SessionStatus::Running`] ends
    /// nothing). Pending scalars are written to `metrics.jsonl` first. An error is returned by the
    /// next [`flush`](Self::flush).
    pub fn hparams_end(&mut self, step: u64, status: SessionStatus) {
        if let Err(e) = self.try_hparams_end(step, status) {
            self.deferred.get_or_insert(e);
        }
    }

    /// [`hparams_end`](Self::hparams_end), failing on the first error.
    fn try_hparams_end(&mut self, step: u64, status: SessionStatus) -> Result<(), LogError> {
        self.write_metrics()?;
        if let Some(stats) = ReturnStats::of_run(&self.run_dir)? {
            self.scalar(tags::FINAL_MEAN_RETURN, stats.final_mean, step);
            self.scalar(tags::BEST_MEAN_RETURN, stats.best_mean, step);
        }
        self.scalar(tags::FINAL_GLOBAL_STEP, step as f64, step);
        if let Some(end) = hparams::session_end(status, unix_time_f64())? {
            self.events.add(end, step);
        }
        Ok(())
    }

    /// Write one `metrics.jsonl` line per step with every scalar logged at that step since the
    /// last flush (`{"step": N, "charts/SPS": ..., ...}`, steps ascending), then wait until the
    /// event file holds every event logged so far.
    ///
    /// # Errors
    /// The first error since the last flush: [`LogError::Image`], [`LogError::Metrics`] or
    /// [`LogError::EventWriter`] (the latter again on every flush once the event writer is dead).
    pub fn flush(&mut self) -> Result<(), LogError> {
        let metrics = self.write_metrics();
        let events = self.events.flush();
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        metrics.and(events)
    }

    /// Write and flush the pending `metrics.jsonl` lines.
    fn write_metrics(&mut self) -> Result<(), LogError> {
        for (step, lines) in std::mem::take(&mut self.pending) {
            for scalars in lines {
                self.metrics.write_step(step, &scalars)?;
            }
        }
        self.metrics.flush()
    }
}

impl Drop for RunLogger {
    /// Writes pending `metrics.jsonl` lines; the event writer's own drop completes the event file.
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `flush` reports them.
        let _ = self.write_metrics();
    }
}

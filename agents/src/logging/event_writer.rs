//! Panic-safe wrapper around tensorboard-rs's `FileWriter`: one fresh event file per writer, and a flush that waits until the file holds every event.

use std::any::Any;
use std::collections::HashSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protobuf::Message;
use tensorboard_proto::event::{Event, SessionLog, SessionLog_SessionStatus};
use tensorboard_proto::summary::Summary;
use tensorboard_rs::summary_writer::FileWriter;

use super::LogError;

/// How every TensorBoard event file name starts.
const PREFIX: &str = "events.out.tfevents.";
/// The version record tensorboard-rs writes first in every file.
const FILE_VERSION: &str = "brain.Event:2";
/// Bytes a TFRecord adds around each payload: length, length CRC, payload CRC.
const RECORD_OVERHEAD: u64 = 8 + 4 + 4;
/// How long to wait for tensorboard-rs's thread to create the file.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `flush` waits for tensorboard-rs's thread to write what was sent.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between checks of the file.
const POLL: Duration = Duration::from_millis(1);
/// How often a waiting `flush` checks that the writer thread is still alive.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Serialises writer creation within the process, so each one can tell which file is its own.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// An event file in a run directory, written through tensorboard-rs.
///
/// tensorboard-rs's `FileWriter` panics on I/O errors in the caller's thread (sending to its
/// writer thread after that thread died) and in its writer thread (create/write failures). Every
/// call into it here runs under `catch_unwind`; after a panic the writer is dropped (also under
/// `catch_unwind`), later events are discarded and `flush` reports the failure.
pub(crate) struct EventWriter {
    /// The tensorboard-rs writer; `None` once it has failed.
    writer: Option<FileWriter>,
    /// The event file.
    path: PathBuf,
    /// Length the event file has once the writer thread has written everything sent so far.
    expected_len: u64,
    /// Why the writer stopped, if it did.
    failure: Option<String>,
}

impl EventWriter {
    /// Start a new event file in `dir`, which must exist and be writable.
    ///
    /// tensorboard-rs names the file `events.out.tfevents.<unix seconds>.<host>.<pid>.0` and
    /// truncates a file of that name, so a second writer for the same directory in the same
    /// process and second first waits (up to a second) for the clock to move on. That also
    /// orders a resumed run's files after the earlier ones, as TensorBoard reads them by name.
    pub(crate) fn create(dir: &Path) -> Result<Self, LogError> {
        let _guard = CREATE_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        let fail = |reason: String| LogError::EventWriter {
            path: dir.to_path_buf(),
            reason,
        };
        let list = || {
            event_file_names(dir).map_err(|source| LogError::RunDir {
                path: dir.to_path_buf(),
                source,
            })
        };
        let pid = std::process::id();
        let started = Instant::now();
        let before = loop {
            let names = list()?;
            let now = unix_seconds();
            if !names
                .iter()
                .any(|n| is_ours(n, pid, now) || is_ours(n, pid, now + 1))
            {
                break names;
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                return Err(fail(
                    "the system clock does not advance, so no fresh event file name can be chosen"
                        .into(),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        };

        let writer = panic::catch_unwind(|| FileWriter::new(dir)).map_err(|payload| {
            fail(format!(
                "tensorboard-rs could not open an event file ({})",
                panic_message(payload.as_ref())
            ))
        })?;
        let mut this = Self {
            writer: Some(writer),
            path: dir.to_path_buf(),
            expected_len: record_len(&version_event()),
            failure: None,
        };

        // tensorboard-rs's own thread creates the file; find it, or learn that the thread died.
        let suffix = format!(".{pid}.0");
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let names = list()?;
            let mine = names
                .into_iter()
                .find(|n| !before.contains(n) && n.starts_with(PREFIX) && n.ends_with(&suffix));
            if let Some(name) = mine {
                this.path = dir.join(name);
                return Ok(this);
            }
            this.call(FileWriter::flush);
            if let Some(reason) = this.failure.take() {
                return Err(fail(reason));
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "tensorboard-rs did not create its event file within {} s",
                    STARTUP_TIMEOUT.as_secs()
                )));
            }
            thread::sleep(POLL);
        }
    }

    /// The event file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Queue `summary` at `step`; discarded if the writer has failed.
    pub(crate) fn add(&mut self, summary: Summary, step: u64) {
        let mut event = Event::new();
        event.set_wall_time(unix_time_f64());
        event.set_step(i64::try_from(step).unwrap_or(i64::MAX));
        event.set_summary(summary);
        // FileWriter::add_event restamps wall time (same encoded size) and step (same value).
        let len = record_len(&event);
        let step = usize::try_from(step).unwrap_or(usize::MAX);
        if self.call(|w| w.add_event(&event, step)) {
            self.expected_len += len;
        }
    }

    /// Queue a `SessionLog.START` event at `step`: TensorBoard then discards the events of
    /// earlier files at `step` and later (what a killed run logged past its checkpoint).
    pub(crate) fn add_session_start(&mut self, step: u64) {
        let mut log = SessionLog::new();
        log.set_status(SessionLog_SessionStatus::START);
        let mut event = Event::new();
        event.set_wall_time(unix_time_f64());
        event.set_step(i64::try_from(step).unwrap_or(i64::MAX));
        event.set_session_log(log);
        let len = record_len(&event);
        let step = usize::try_from(step).unwrap_or(usize::MAX);
        if self.call(|w| w.add_event(&event, step)) {
            self.expected_len += len;
        }
    }

    /// Ask the writer thread to flush and wait until the file holds every event queued so far.
    pub(crate) fn flush(&mut self) -> Result<(), LogError> {
        self.call(FileWriter::flush);
        let started = Instant::now();
        let mut last_probe = started;
        while self.failure.is_none() {
            match fs::metadata(&self.path) {
                Ok(meta) if meta.len() >= self.expected_len => return Ok(()),
                Ok(_) if started.elapsed() > FLUSH_TIMEOUT => self.stop(format!(
                    "its writer thread did not write the queued events within {} s",
                    FLUSH_TIMEOUT.as_secs()
                )),
                Ok(_) if last_probe.elapsed() >= PROBE_INTERVAL => {
                    // Sending fails once the writer thread has died (e.g. on a full disk).
                    self.call(FileWriter::flush);
                    last_probe = Instant::now();
                }
                Ok(_) => thread::sleep(POLL),
                Err(e) => self.stop(format!("cannot read the event file's size: {e}")),
            }
        }
        Err(LogError::EventWriter {
            path: self.path.clone(),
            reason: self.failure.clone().unwrap_or_default(),
        })
    }

    /// Run `f` on the writer, catching a panic; `true` if it ran and returned.
    fn call(&mut self, f: impl FnOnce(&mut FileWriter)) -> bool {
        let Some(writer) = self.writer.as_mut() else {
            return false;
        };
        match panic::catch_unwind(AssertUnwindSafe(|| f(writer))) {
            Ok(()) => true,
            Err(_) => {
                // The caught panic is only the failed send; the writer thread's own panic
                // message, already printed by the panic hook, names the real cause.
                self.stop(
                    "its writer thread has stopped, most likely on a write error such as a full \
                     disk (the panic message tensorboard-rs printed above names the cause)"
                        .to_string(),
                );
                false
            }
        }
    }

    /// Record why the writer stopped and drop it without letting a panic escape.
    fn stop(&mut self, reason: String) {
        self.failure.get_or_insert(reason);
        drop_quietly(self.writer.take());
    }
}

impl Drop for EventWriter {
    /// Drops tensorboard-rs's writer, which joins its thread after it has written everything.
    fn drop(&mut self) {
        drop_quietly(self.writer.take());
    }
}

/// Drop a `FileWriter`, whose `Drop` panics if its thread has died, catching that panic.
fn drop_quietly(writer: Option<FileWriter>) {
    // Nothing can be reported from here; the failure is already recorded or unobservable.
    let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(writer)));
}

/// The first event of every file, as tensorboard-rs writes it.
fn version_event() -> Event {
    let mut event = Event::new();
    event.set_wall_time(unix_time_f64());
    event.set_file_version(FILE_VERSION.to_string());
    event
}

/// Bytes `event` takes in the file as one TFRecord.
fn record_len(event: &Event) -> u64 {
    u64::from(event.compute_size()) + RECORD_OVERHEAD
}

/// Names of the TensorBoard event files in `dir`.
fn event_file_names(dir: &Path) -> std::io::Result<HashSet<String>> {
    let mut names = HashSet::new();
    for entry in fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            if name.starts_with(PREFIX) {
                names.insert(name);
            }
        }
    }
    Ok(names)
}

/// Whether `name` is the file tensorboard-rs would create for process `pid` at second `secs`.
fn is_ours(name: &str, pid: u32, secs: u64) -> bool {
    name.starts_with(&format!("{PREFIX}{secs:010}.")) && name.ends_with(&format!(".{pid}.0"))
}

/// Whole seconds since the Unix epoch (0 if the clock is before it).
fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the Unix epoch as tensorboard-rs stamps events (1.0 if the clock is before it,
/// so the encoded size matches tensorboard-rs's, which omits a zero time).
pub(super) fn unix_time_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1.0, |d| d.as_secs_f64())
}

/// The text of a caught panic (tensorboard-rs's `expect("")` gives ": <error>").
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    text.trim_start_matches(": ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_waits_for_exactly_the_bytes_sent() {
        let dir = std::env::temp_dir().join(format!("engram-event-writer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut writer = EventWriter::create(&dir).unwrap();
        assert!(writer.path().starts_with(&dir));
        for step in [0, 1, 300, 1 << 40] {
            writer.add(tensorboard_rs::summary::scalar("a/b", 0.5), step);
        }
        writer.flush().unwrap();
        let expected = writer.expected_len;
        let path = writer.path().to_path_buf();
        drop(writer);
        // After the writer thread has finished, the file is exactly what was accounted for.
        assert_eq!(fs::metadata(&path).unwrap().len(), expected);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_name_matching() {
        let name = "events.out.tfevents.1700000000.my.host.name.4242.0";
        assert!(is_ours(name, 4242, 1_700_000_000));
        assert!(!is_ours(name, 4242, 1_700_000_001));
        assert!(!is_ours(name, 424, 1_700_000_000));
    }

    #[test]
    fn panic_messages_are_extracted() {
        let owned: Box<dyn Any + Send> = Box::new(String::from(": Os { code: 13 }"));
        assert_eq!(panic_message(owned.as_ref()), "Os { code: 13 }");
        let borrowed: Box<dyn Any + Send> = Box::new("disk full");
        assert_eq!(panic_message(borrowed.as_ref()), "disk full");
    }
}

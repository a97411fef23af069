//! `metrics.jsonl`: JSON objects of the scalars logged at a step (more than one line when a tag repeats).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::LogError;

/// An append-only `metrics.jsonl` file.
pub(crate) struct MetricsFile {
    /// Where it is.
    path: PathBuf,
    /// Buffered appender.
    out: BufWriter<File>,
}

impl MetricsFile {
    /// Open `path` for appending, creating it if missing (a resumed run keeps its earlier lines).
    pub(crate) fn open(path: PathBuf) -> Result<Self, LogError> {
        match OpenOptions::new().append(true).create(true).open(&path) {
            Ok(file) => Ok(Self {
                path,
                out: BufWriter::new(file),
            }),
            Err(source) => Err(LogError::Metrics { path, source }),
        }
    }

    /// Drop the lines of `path` for steps after `step` (what a killed run logged past its
    /// checkpoint, which the resumed run logs again) and any line cut short; replaced
    /// atomically. A missing file is left missing.
    pub(crate) fn truncate_after(path: &Path, step: u64) -> Result<(), LogError> {
        let error = |source| LogError::Metrics {
            path: path.to_path_buf(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(error(e)),
        };
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v.get("step")?.as_u64())
                    .is_some_and(|s| s <= step)
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        if kept.len() == text.len() {
            return Ok(());
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, kept).map_err(error)?;
        std::fs::rename(&tmp, path).map_err(error)
    }

    /// Every value of `tag` in `path`, in file order (`null`, i.e. non-finite, values and lines
    /// that are not JSON are left out). A missing file has none.
    pub(crate) fn read_tag(path: &Path, tag: &str) -> Result<Vec<f64>, LogError> {
        let error = |source| LogError::MetricsRead {
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(error(e)),
        };
        let mut values = Vec::new();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(error)?;
            // A cheap pre-check, exact for tags that JSON writes unescaped (all of Engram's).
            let escaped = tag.chars().any(|c| c == '"' || c == '\\' || c.is_control());
            if !escaped && !line.contains(tag) {
                continue;
            }
            if let Some(v) = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|v| v.get(tag)?.as_f64())
            {
                values.push(v);
            }
        }
        Ok(values)
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Append the line for `step`.
    pub(crate) fn write_step(
        &mut self,
        step: u64,
        scalars: &BTreeMap<String, f64>,
    ) -> Result<(), LogError> {
        let line = format_line(step, scalars);
        writeln!(self.out, "{line}").map_err(|source| self.error(source))
    }

    /// Push buffered lines to the file.
    pub(crate) fn flush(&mut self) -> Result<(), LogError> {
        self.out.flush().map_err(|source| self.error(source))
    }

    /// An I/O error on this file.
    fn error(&self, source: std::io::Error) -> LogError {
        LogError::Metrics {
            path: self.path.clone(),
            source,
        }
    }
}

/// `{"step":N,"tag":value,...}` with tags in sorted order; non-finite values become `null`.
pub(crate) fn format_line(step: u64, scalars: &BTreeMap<String, f64>) -> String {
    let mut line = format!("{{\"step\":{step}");
    for (tag, &value) in scalars {
        line.push(',');
        line.push_str(&Value::String(tag.clone()).to_string());
        line.push(':');
        line.push_str(&Value::from(value).to_string());
    }
    line.push('}');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_is_json_with_step_first() {
        let scalars = BTreeMap::from([
            ("losses/value".to_string(), 0.25),
            ("charts/SPS".to_string(), 1234.5),
            ("weird \"tag\"".to_string(), f64::NAN),
        ]);
        let line = format_line(7, &scalars);
        assert!(line.starts_with("{\"step\":7,"), "{line}");
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["step"], 7);
        assert_eq!(parsed["charts/SPS"], 1234.5);
        assert_eq!(parsed["losses/value"], 0.25);
        assert!(parsed["weird \"tag\""].is_null());
        assert_eq!(format_line(0, &BTreeMap::new()), "{\"step\":0}");
    }
}

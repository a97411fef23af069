//! The training progress line on stderr: steps, percentage, SPS, recent return, elapsed and ETA.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Episodes averaged for the "recent return" shown.
const RETURN_WINDOW: usize = 100;
/// Shortest time between two redraws of the live line (4 per second at most).
const REDRAW_INTERVAL: Duration = Duration::from_millis(250);
/// Default time between two plain lines when stderr is not a terminal.
const DEFAULT_PLAIN_INTERVAL: Duration = Duration::from_secs(30);

/// How [`Progress`] shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// One line redrawn in place with a carriage return (stderr is a terminal).
    Live,
    /// A plain line every so often (stderr is a file or pipe, e.g. a CI log).
    Plain,
    /// Nothing at all.
    Silent,
}

/// A single updating status line for a training run.
///
/// On a terminal it redraws at most 4 times per second; otherwise it prints a plain line every
/// 30 s (see [`with_plain_interval`](Self::with_plain_interval)). Write errors are ignored: the
/// line is cosmetic and must never stop training.
pub struct Progress {
    /// Steps of the whole run.
    total: u64,
    /// Steps already done when this session started (non-zero on resume).
    start_step: u64,
    /// Steps done now.
    done: u64,
    /// When this session started.
    started: Instant,
    /// When the line was last shown.
    last_shown: Option<Instant>,
    /// Live, plain or silent.
    mode: ProgressMode,
    /// Time between plain lines.
    plain_interval: Duration,
    /// Returns of the most recent episodes.
    returns: VecDeque<f64>,
    /// Where the line goes.
    out: Box<dyn Write + Send>,
    /// Whether a live line is on screen without its newline.
    line_open: bool,
}

impl Progress {
    /// Progress of a run of `total_steps` that starts at `start_step`, drawn on stderr: live if it
    /// is a terminal, plain otherwise.
    pub fn new(total_steps: u64, start_step: u64) -> Self {
        let mode = if std::io::stderr().is_terminal() {
            ProgressMode::Live
        } else {
            ProgressMode::Plain
        };
        Self::with_writer(total_steps, start_step, Box::new(std::io::stderr()), mode)
    }

    /// Progress drawn on `out` in `mode` (for tests, or to silence it).
    pub fn with_writer(
        total_steps: u64,
        start_step: u64,
        out: Box<dyn Write + Send>,
        mode: ProgressMode,
    ) -> Self {
        Self {
            total: total_steps,
            start_step,
            done: start_step,
            started: Instant::now(),
            last_shown: None,
            mode,
            plain_interval: DEFAULT_PLAIN_INTERVAL,
            returns: VecDeque::with_capacity(RETURN_WINDOW),
            out,
            line_open: false,
        }
    }

    /// Set the time between plain lines (when stderr is not a terminal).
    pub fn with_plain_interval(mut self, interval: Duration) -> Self {
        self.plain_interval = interval;
        self
    }

    /// How the line is shown.
    pub fn mode(&self) -> ProgressMode {
        self.mode
    }

    /// Record a finished episode's return for the recent mean.
    pub fn record_episode(&mut self, episodic_return: f64) {
        if self.returns.len() == RETURN_WINDOW {
            self.returns.pop_front();
        }
        self.returns.push_back(episodic_return);
    }

    /// Report `steps_done` (of the whole run) and redraw if it is time to.
    pub fn update(&mut self, steps_done: u64) {
        self.update_at(steps_done, Instant::now());
    }

    /// Draw the final state and end the line.
    pub fn finish(&mut self) {
        let now = Instant::now();
        if self.mode != ProgressMode::Silent {
            let line = self.line_at(now);
            let _ = match self.mode {
                ProgressMode::Live => write!(self.out, "\r{line}\x1b[K\n"),
                _ => writeln!(self.out, "{line}"),
            };
            let _ = self.out.flush();
        }
        self.line_open = false;
        self.last_shown = Some(now);
    }

    /// The status line as of now, e.g.
    /// `[ 42.0%] 4.20M/10.00M steps | 12345 SPS | return 0.87 | elapsed 0:05:40 | ETA 0:07:50`.
    pub fn line(&self) -> String {
        self.line_at(Instant::now())
    }

    /// `update` at a given time.
    fn update_at(&mut self, steps_done: u64, now: Instant) {
        self.done = steps_done;
        let due = match (self.mode, self.last_shown) {
            (ProgressMode::Silent, _) => false,
            (ProgressMode::Live, None) => true,
            (ProgressMode::Live, Some(last)) => now.duration_since(last) >= REDRAW_INTERVAL,
            (ProgressMode::Plain, last) => {
                now.duration_since(last.unwrap_or(self.started)) >= self.plain_interval
            }
        };
        if !due {
            return;
        }
        let line = self.line_at(now);
        let _ = if self.mode == ProgressMode::Live {
            self.line_open = true;
            // Carriage return, the line, then erase whatever a longer previous line left.
            write!(self.out, "\r{line}\x1b[K")
        } else {
            writeln!(self.out, "{line}")
        };
        let _ = self.out.flush();
        self.last_shown = Some(now);
    }

    /// The status line at time `now`.
    fn line_at(&self, now: Instant) -> String {
        let elapsed = now.duration_since(self.started);
        let session_steps = self.done.saturating_sub(self.start_step);
        let secs = elapsed.as_secs_f64();
        let sps = if secs > 0.0 {
            session_steps as f64 / secs
        } else {
            0.0
        };
        let percent = if self.total == 0 {
            100.0
        } else {
            (self.done as f64 / self.total as f64 * 100.0).min(100.0)
        };
        let eta = if self.done >= self.total {
            "0:00:00".to_string()
        } else if sps > 0.0 {
            clock((self.total - self.done) as f64 / sps)
        } else {
            "--:--:--".to_string()
        };
        let recent = if self.returns.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{:.2}",
                self.returns.iter().sum::<f64>() / self.returns.len() as f64
            )
        };
        format!(
            "[{percent:5.1}%] {}/{} steps | {sps:.0} SPS | return {recent} | elapsed {} | ETA {eta}",
            count(self.done),
            count(self.total),
            clock(secs),
        )
    }
}

impl Drop for Progress {
    /// Ends a live line left open, so later output starts on a fresh line.
    fn drop(&mut self) {
        if self.line_open {
            let _ = writeln!(self.out);
            let _ = self.out.flush();
        }
    }
}

/// A step count, shortened with k/M/G past 10 000.
fn count(n: u64) -> String {
    let x = n as f64;
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", x / 1e3),
        1_000_000..=999_999_999 => format!("{:.2}M", x / 1e6),
        _ => format!("{:.2}G", x / 1e9),
    }
}

/// Seconds as `H:MM:SS`.
fn clock(seconds: f64) -> String {
    let s = if seconds.is_finite() {
        seconds.max(0.0).round() as u64
    } else {
        0
    };
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn line_shows_progress_rate_return_and_eta() {
        let mut p = Progress::with_writer(1000, 0, Box::new(std::io::sink()), ProgressMode::Silent);
        p.record_episode(1.0);
        p.record_episode(2.0);
        p.done = 250;
        let line = p.line_at(p.started + Duration::from_secs(10));
        assert_eq!(
            line,
            "[ 25.0%] 250/1000 steps | 25 SPS | return 1.50 | elapsed 0:00:10 | ETA 0:00:30"
        );
    }

    #[test]
    fn resumed_runs_measure_speed_from_the_resume_point() {
        let mut p = Progress::with_writer(
            2_000_000,
            1_000_000,
            Box::new(std::io::sink()),
            ProgressMode::Silent,
        );
        p.done = 1_500_000;
        let line = p.line_at(p.started + Duration::from_secs(100));
        assert!(
            line.starts_with("[ 75.0%] 1.50M/2.00M steps | 5000 SPS | return - |"),
            "{line}"
        );
        assert!(line.ends_with("ETA 0:01:40"), "{line}");
    }

    #[test]
    fn recent_return_is_a_window_of_the_last_episodes() {
        let mut p = Progress::with_writer(10, 0, Box::new(std::io::sink()), ProgressMode::Silent);
        for _ in 0..RETURN_WINDOW {
            p.record_episode(0.0);
        }
        for _ in 0..RETURN_WINDOW {
            p.record_episode(3.0);
        }
        assert!(p.line().contains("return 3.00"), "{}", p.line());
    }

    #[test]
    fn live_mode_redraws_in_place_at_most_four_times_a_second() {
        let out = Captured::default();
        let mut p = Progress::with_writer(100, 0, Box::new(out.clone()), ProgressMode::Live);
        let t0 = p.started;
        for ms in 0..1000 {
            p.update_at(ms / 10, t0 + Duration::from_millis(ms));
        }
        let text = out.text();
        assert_eq!(text.matches('\r').count(), 4, "{text:?}");
        assert!(!text.contains('\n'));
        drop(p);
        assert!(out.text().ends_with('\n'));
    }

    #[test]
    fn plain_mode_prints_whole_lines_at_the_interval() {
        let out = Captured::default();
        let mut p = Progress::with_writer(100, 0, Box::new(out.clone()), ProgressMode::Plain)
            .with_plain_interval(Duration::from_secs(5));
        let t0 = p.started;
        for s in 0..=12 {
            p.update_at(s, t0 + Duration::from_secs(s));
        }
        let text = out.text();
        assert_eq!(text.lines().count(), 2, "{text:?}");
        assert!(!text.contains('\r') && !text.contains('\x1b'));
        p.finish();
        assert_eq!(out.text().lines().count(), 3);
        assert!(out
            .text()
            .lines()
            .last()
            .unwrap()
            .starts_with("[ 12.0%] 12/100 steps"));
    }

    #[test]
    fn silent_mode_writes_nothing() {
        let out = Captured::default();
        let mut p = Progress::with_writer(100, 0, Box::new(out.clone()), ProgressMode::Silent);
        p.update(50);
        p.finish();
        assert!(out.text().is_empty());
    }

    #[test]
    fn counts_and_clocks() {
        assert_eq!(count(9_999), "9999");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(10_000_000), "10.00M");
        assert_eq!(clock(3725.4), "1:02:05");
        assert_eq!(clock(f64::INFINITY), "0:00:00");
    }
}

//! The training progress line on stderr: an indicatif bar on a terminal, plain lines in logs; steps, percentage, SPS, recent return, elapsed and ETA.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::RETURN_WINDOW;

/// Redraws of the live bar per second at most.
const REDRAW_HZ: u8 = 4;
/// Default time between two plain lines when stderr is not a terminal.
const DEFAULT_PLAIN_INTERVAL: Duration = Duration::from_secs(30);

/// How [`Progress`] shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar and status redrawn in place (stderr is a terminal).
    Live,
    /// A plain line every so often (stderr is a file or pipe, e.g. a CI log).
    Plain,
    /// Nothing at all.
    Silent,
}

/// A single updating status line for a training run.
///
/// On a terminal it is an indicatif bar redrawn at most 4 times per second, with messages
/// ([`println`](Self::println)) printed above it; otherwise it prints a plain line every 30 s
/// (see [`with_plain_interval`](Self::with_plain_interval)). Write errors are ignored: the line
/// is cosmetic and must never stop training.
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
    /// Where plain lines go.
    out: Box<dyn Write + Send>,
    /// The live bar (in [`ProgressMode::Live`]).
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress of a run of `total_steps` that starts at `start_step`, drawn on stderr: live if it
    /// is a terminal, plain otherwise.
    pub fn new(total_steps: u64, start_step: u64) -> Self {
        if std::io::stderr().is_terminal() {
            Self::live(
                total_steps,
                start_step,
                ProgressDrawTarget::stderr_with_hz(REDRAW_HZ),
            )
        } else {
            Self::with_writer(
                total_steps,
                start_step,
                Box::new(std::io::stderr()),
                ProgressMode::Plain,
            )
        }
    }

    /// A live bar drawn on `target` (stderr, or a test's terminal).
    pub fn live(total_steps: u64, start_step: u64, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total_steps), target);
        if let Ok(style) = ProgressStyle::with_template("{bar:24} {msg}") {
            bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
        }
        bar.set_position(start_step);
        let mut this = Self::with_writer(
            total_steps,
            start_step,
            Box::new(std::io::sink()),
            ProgressMode::Live,
        );
        bar.set_message(this.line());
        this.bar = Some(bar);
        this
    }

    /// Progress drawn on `out` as plain lines, or silent (for tests, or to silence it); a
    /// live bar is made by [`live`](Self::live).
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
            bar: None,
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

    /// Draw the final state and leave it on screen.
    pub fn finish(&mut self) {
        let now = Instant::now();
        let line = self.line_at(now);
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.set_position(self.done.min(self.total));
                bar.finish_with_message(line);
            }
            (None, ProgressMode::Silent) => {}
            (None, _) => {
                let _ = writeln!(self.out, "{line}");
                let _ = self.out.flush();
            }
        }
        self.last_shown = Some(now);
    }

    /// Print a message (a warning, a curriculum stage) on its own line: above the live bar,
    /// or on stderr.
    pub fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    /// The status line as of now, e.g.
    /// `[ 42.0%] 4.20M/10.00M steps | 12345 SPS | return 0.87 | elapsed 0:05:40 | ETA 0:07:50`.
    pub fn line(&self) -> String {
        self.line_at(Instant::now())
    }

    /// `update` at a given time.
    fn update_at(&mut self, steps_done: u64, now: Instant) {
        self.done = steps_done;
        if let Some(bar) = &self.bar {
            // indicatif redraws at most REDRAW_HZ times a second.
            bar.set_position(steps_done.min(self.total));
            bar.set_message(self.line_at(now));
            return;
        }
        let due = match self.mode {
            ProgressMode::Plain => {
                now.duration_since(self.last_shown.unwrap_or(self.started)) >= self.plain_interval
            }
            _ => false,
        };
        if !due {
            return;
        }
        let _ = writeln!(self.out, "{}", self.line_at(now));
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
    /// Leaves an unfinished live bar on screen where it stopped (an error, Ctrl-C), so later
    /// output starts on a fresh line.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.abandon();
            }
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

    /// A terminal that records what indicatif draws on it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<Vec<String>>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            160
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_string());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_string());
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn live_mode_is_a_bar_with_the_status_and_messages_above_it() {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like_with_hz(Box::new(screen.clone()), REDRAW_HZ);
        let mut p = Progress::live(100, 0, target);
        assert_eq!(p.mode(), ProgressMode::Live);
        p.record_episode(2.0);
        p.update(40);
        p.println("engram: curriculum stage 2 of 3");
        p.update(100);
        p.finish();
        let drawn = screen.0.lock().unwrap().join("\n");
        assert!(drawn.contains("engram: curriculum stage 2 of 3"), "{drawn}");
        let last = drawn
            .lines()
            .rfind(|l| l.contains("steps |"))
            .unwrap_or_default();
        assert!(
            last.contains("[100.0%] 100/100 steps") && last.contains("return 2.00"),
            "{drawn}"
        );
        assert!(last.contains("████"), "a full bar: {last}");
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

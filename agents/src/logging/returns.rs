//! Episode-return statistics of a run: the final and the best mean over windows of 100 episodes, as the summary, the HParams table and `engram sweep` report them.

use std::path::Path;

use super::metrics_file::MetricsFile;
use super::{tags, LogError, METRICS_FILE};

/// Episodes a "recent", "final" or "best" mean return averages over.
pub const RETURN_WINDOW: usize = 100;

/// The final and best mean episode return of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReturnStats {
    /// Episodes the statistics are made from.
    pub episodes: usize,
    /// Mean return of the last `window` episodes (of all, if fewer).
    pub final_mean: f64,
    /// Highest mean return over `window` consecutive episodes (the mean of all, if fewer).
    pub best_mean: f64,
}

impl ReturnStats {
    /// The statistics of `returns`, in the order the episodes ended, over `window` episodes;
    /// `None` without an episode.
    pub fn of(returns: &[f64], window: usize) -> Option<Self> {
        if returns.is_empty() {
            return None;
        }
        let window = window.max(1);
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let final_mean = mean(&returns[returns.len().saturating_sub(window)..]);
        let best_mean = if returns.len() <= window {
            final_mean
        } else {
            returns
                .windows(window)
                .map(mean)
                .fold(f64::NEG_INFINITY, f64::max)
        };
        Some(Self {
            episodes: returns.len(),
            final_mean,
            best_mean,
        })
    }

    /// The statistics over [`RETURN_WINDOW`] episodes of the run in `run_dir`, from its
    /// `metrics.jsonl` (every session of a resumed run); `None` before its first episode.
    pub fn of_run(run_dir: &Path) -> Result<Option<Self>, LogError> {
        let returns = MetricsFile::read_tag(&run_dir.join(METRICS_FILE), tags::EPISODIC_RETURN)?;
        Ok(Self::of(&returns, RETURN_WINDOW))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_stats_over_a_window() {
        assert_eq!(ReturnStats::of(&[], 3), None);
        let few = ReturnStats::of(&[1.0, 2.0], 3).unwrap();
        assert_eq!((few.episodes, few.final_mean, few.best_mean), (2, 1.5, 1.5));
        // Windows of 3: means 2, 5, 6, 5; the last is 5.
        let stats = ReturnStats::of(&[0.0, 3.0, 3.0, 9.0, 6.0, 0.0], 3).unwrap();
        assert_eq!((stats.final_mean, stats.best_mean), (5.0, 6.0));
    }
}

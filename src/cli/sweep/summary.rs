//! A sweep's results: per-run and per-grid-point rows, their tables, and `summary.json` and `summary.csv`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use engram_agents::logging::{ReturnStats, RETURN_WINDOW};
use serde_json::{json, Value};

use super::launch::{Action, Status};
use super::plan::{saved_steps, Plan, Run};

/// The per-run summary table as JSON (also the grid points).
pub(super) const SUMMARY_JSON: &str = "summary.json";
/// The per-run summary table as CSV.
pub(super) const SUMMARY_CSV: &str = "summary.csv";

/// Mean and sample standard deviation (n − 1; `None` for fewer than two values).
fn mean_sd(xs: &[f64]) -> (Option<f64>, Option<f64>) {
    if xs.is_empty() {
        return (None, None);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (Some(mean), None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (Some(mean), Some(var.sqrt()))
}

/// A run's return statistics (`None` before its first episode), or why its `metrics.jsonl`
/// could not be read.
fn run_stats(run_dir: &Path) -> (Option<ReturnStats>, Option<String>) {
    match ReturnStats::of_run(run_dir) {
        Ok(stats) => (stats, None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// One row of the per-run table.
struct RunRow {
    run: Run,
    point: String,
    action: Option<Action>,
    status: Status,
    steps: Option<u64>,
    stats: Option<ReturnStats>,
    /// Why its return statistics are missing: `metrics.jsonl` could not be read.
    note: Option<String>,
}

/// One row of the per-point table.
struct PointRow {
    name: String,
    values: Vec<(String, String)>,
    n: usize,
    final_mean: Option<f64>,
    final_sd: Option<f64>,
    best_mean: Option<f64>,
    best_sd: Option<f64>,
}

/// The sweep's results: per run and per grid point.
pub(super) struct Summary {
    sweep_dir: PathBuf,
    keys: Vec<String>,
    runs: Vec<RunRow>,
    points: Vec<PointRow>,
}

impl Summary {
    /// Read every run's counters and metrics.
    pub(super) fn collect(
        sweep_dir: &Path,
        runs: &[Run],
        this_time: &[Option<Action>],
        statuses: &[Status],
        plan: &Plan,
    ) -> Summary {
        let rows: Vec<RunRow> = runs
            .iter()
            .zip(this_time)
            .zip(statuses)
            .map(|((run, action), status)| {
                let (stats, note) = run_stats(&run.dir);
                RunRow {
                    run: run.clone(),
                    point: plan.points[run.point].name.clone(),
                    action: *action,
                    status: status.clone(),
                    steps: saved_steps(&run.dir),
                    stats,
                    note,
                }
            })
            .collect();
        let point_rows = plan
            .points
            .iter()
            .enumerate()
            .map(|(p, point)| {
                let finished: Vec<ReturnStats> = rows
                    .iter()
                    .filter(|r| r.run.point == p && r.status == Status::Finished)
                    .filter_map(|r| r.stats)
                    .collect();
                let finals: Vec<f64> = finished.iter().map(|s| s.final_mean).collect();
                let bests: Vec<f64> = finished.iter().map(|s| s.best_mean).collect();
                let (final_mean, final_sd) = mean_sd(&finals);
                let (best_mean, best_sd) = mean_sd(&bests);
                PointRow {
                    name: point.name.clone(),
                    values: point.values.clone(),
                    n: finished.len(),
                    final_mean,
                    final_sd,
                    best_mean,
                    best_sd,
                }
            })
            .collect();
        Summary {
            sweep_dir: sweep_dir.to_path_buf(),
            keys: plan.axes.iter().map(|a| a.key.clone()).collect(),
            runs: rows,
            points: point_rows,
        }
    }

    /// The two tables as text.
    pub(super) fn render(&self) -> String {
        let num = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.2}"));
        let mut few = false;
        let run_rows: Vec<Vec<String>> = self
            .runs
            .iter()
            .map(|r| {
                let mark = match r.stats {
                    Some(s) if s.episodes < RETURN_WINDOW => {
                        few = true;
                        "*"
                    }
                    _ => "",
                };
                let mut status = match &r.status {
                    Status::Failed(_) => {
                        let log = r
                            .run
                            .log
                            .strip_prefix(&self.sweep_dir)
                            .unwrap_or(&r.run.log);
                        format!("failed: see {}", log.display())
                    }
                    other => other.label().to_string(),
                };
                if r.note.is_some() {
                    status.push_str("; metrics unreadable");
                }
                vec![
                    r.run.name.clone(),
                    r.run.seed.to_string(),
                    r.steps.map_or("—".to_string(), |s| s.to_string()),
                    r.stats.map_or("0".to_string(), |s| s.episodes.to_string()),
                    format!("{}{mark}", num(r.stats.map(|s| s.final_mean))),
                    format!("{}{mark}", num(r.stats.map(|s| s.best_mean))),
                    status,
                    r.action.map_or("—", Action::label).to_string(),
                ]
            })
            .collect();
        let mut out = String::new();
        out.push_str(&table(
            &[
                "run",
                "seed",
                "steps",
                "episodes",
                "final",
                "best",
                "status",
                "this time",
            ],
            &[false, true, true, true, true, true, false, false],
            &run_rows,
        ));
        let w = RETURN_WINDOW;
        let _ = writeln!(
            out,
            "final: mean return of the last {w} episodes; best: the best mean over {w} \
             consecutive episodes"
        );
        if few {
            let _ = writeln!(
                out,
                "* fewer than {w} episodes: final and best are the mean over all of them"
            );
        }
        for r in &self.runs {
            if let Some(note) = &r.note {
                let _ = writeln!(out, "metrics unreadable: {}: {note}", r.run.name);
            }
        }
        out.push('\n');
        let pm = |mean: Option<f64>, sd: Option<f64>| match (mean, sd) {
            (None, _) => "—".to_string(),
            (Some(m), None) => format!("{m:.2} ± —"),
            (Some(m), Some(s)) => format!("{m:.2} ± {s:.2}"),
        };
        let point_rows: Vec<Vec<String>> = self
            .points
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.n.to_string(),
                    pm(p.final_mean, p.final_sd),
                    pm(p.best_mean, p.best_sd),
                ]
            })
            .collect();
        out.push_str(&table(
            &["grid point", "n", "final (mean ± sd)", "best (mean ± sd)"],
            &[false, true, true, true],
            &point_rows,
        ));
        let _ = writeln!(
            out,
            "n: finished runs of the point; sd: sample standard deviation (n − 1), — when n = 1"
        );
        out
    }

    /// Write `summary.json` and `summary.csv` into the sweep directory.
    pub(super) fn write(&self, dir: &Path) -> Result<()> {
        let opt = |x: Option<f64>| x.map_or(Value::Null, Value::from);
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "name": r.run.name,
                    "point": r.point,
                    "seed": r.run.seed,
                    "run_dir": r.run.dir.display().to_string(),
                    "log": r.run.log.display().to_string(),
                    "status": r.status.label(),
                    "error": match &r.status { Status::Failed(why) => Value::from(why.clone()), _ => Value::Null },
                    "note": r.note,
                    "this_time": r.action.map(Action::label),
                    "steps": r.steps,
                    "episodes": r.stats.map_or(0, |s| s.episodes),
                    "window": r.stats.map_or(0, |s| s.episodes.min(RETURN_WINDOW)),
                    "final": opt(r.stats.map(|s| s.final_mean)),
                    "best": opt(r.stats.map(|s| s.best_mean)),
                })
            })
            .collect();
        let points: Vec<Value> = self
            .points
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "values": p.values.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
                    "n": p.n,
                    "final_mean": opt(p.final_mean),
                    "final_sd": opt(p.final_sd),
                    "best_mean": opt(p.best_mean),
                    "best_sd": opt(p.best_sd),
                })
            })
            .collect();
        let summary = json!({
            "sweep_dir": self.sweep_dir.display().to_string(),
            "window": RETURN_WINDOW,
            "runs": runs,
            "points": points,
        });
        let path = dir.join(SUMMARY_JSON);
        fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;

        let mut csv = String::from("run,point,seed,status,steps,episodes,final,best,log");
        for k in &self.keys {
            csv.push(',');
            csv.push_str(&csv_field(k));
        }
        csv.push('\n');
        let point_values: Vec<&Vec<(String, String)>> =
            self.points.iter().map(|p| &p.values).collect();
        for r in &self.runs {
            let num = |x: Option<f64>| x.map_or(String::new(), |x| x.to_string());
            let mut fields = vec![
                csv_field(&r.run.name),
                csv_field(&r.point),
                r.run.seed.to_string(),
                r.status.label().to_string(),
                r.steps.map_or(String::new(), |s| s.to_string()),
                r.stats.map_or(0, |s| s.episodes).to_string(),
                num(r.stats.map(|s| s.final_mean)),
                num(r.stats.map(|s| s.best_mean)),
                csv_field(&r.run.log.display().to_string()),
            ];
            fields.extend(point_values[r.run.point].iter().map(|(_, v)| csv_field(v)));
            csv.push_str(&fields.join(","));
            csv.push('\n');
        }
        let path = dir.join(SUMMARY_CSV);
        fs::write(&path, csv).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Columns padded to their widest cell (`right`: aligned right), a rule under the header.
fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = " ".repeat(widths[i] - width(cell));
            if right[i] {
                s.push_str(&pad);
                s.push_str(cell);
            } else {
                s.push_str(cell);
                if i + 1 < cells.len() {
                    s.push_str(&pad);
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_agents::logging::{tags, METRICS_FILE};

    #[test]
    fn final_and_best_use_windows_of_100_episodes() {
        let returns: Vec<f64> = (0..250).map(|i| if i < 150 { 1.0 } else { 0.0 }).collect();
        let s = ReturnStats::of(&returns, RETURN_WINDOW).unwrap();
        assert_eq!(s.episodes, 250);
        assert!((s.final_mean - 0.0).abs() < 1e-12);
        assert!((s.best_mean - 1.0).abs() < 1e-12);
        let s = ReturnStats::of(&[1.0, 2.0, 6.0], RETURN_WINDOW).unwrap();
        assert!((s.final_mean - 3.0).abs() < 1e-12 && (s.best_mean - 3.0).abs() < 1e-12);
        assert!(ReturnStats::of(&[], RETURN_WINDOW).is_none());
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        assert!((m.unwrap() - 2.5).abs() < 1e-12);
        assert!((sd.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[7.0]), (Some(7.0), None));
    }

    #[test]
    fn unreadable_metrics_are_a_note() {
        let dir = std::env::temp_dir().join(format!("engram-sweep-stats-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(run_stats(&dir), (None, None));
        let metrics = dir.join(METRICS_FILE);
        let line = format!("{{\"step\":1,\"{}\":2.5}}\n", tags::EPISODIC_RETURN);
        fs::write(&metrics, line).unwrap();
        let (stats, note) = run_stats(&dir);
        assert_eq!((stats.map(|s| s.final_mean), note), (Some(2.5), None));
        // A directory where the file should be: reading it fails.
        fs::remove_file(&metrics).unwrap();
        fs::create_dir(&metrics).unwrap();
        let (stats, note) = run_stats(&dir);
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(stats, None);
        let note = note.expect("a note");
        assert!(
            note.starts_with("cannot read ") && note.contains("metrics.jsonl"),
            "{note}"
        );
    }
}

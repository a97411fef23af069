//! End-to-end: `engram sweep` — the grid × seeds runs and their summary, resuming an interrupted sweep, failed runs, and bad input refused up front.
#![cfg(unix)]

#[path = "support/cli.rs"]
mod cli;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use cli::{engram, engram_command};
use serde_json::Value;

/// Environment steps of one update of [`tiny_config`] (4 envs × 32 steps).
const STEPS_PER_UPDATE: u64 = 128;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A CartPole config that trains in a moment: 4 envs, a GRU of 16, one epoch per update.
fn tiny_config(dir: &Path, total_steps: u64) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        format!(
            r#"[env]
id = "CartPole-v1"
num_envs = 4

[policy]
encoder = [16]
core = {{ kind = "gru", hidden_size = 16 }}

[ppo]
learning_rate = 1e-3
rollout_len = 32
seq_len = 8
epochs = 1
minibatches = 2

[run]
total_steps = {total_steps}
checkpoint_every = 0
runs_dir = "{}"
"#,
            dir.join("runs").display()
        ),
    )
    .expect("write config");
    path
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The steps of the run's PPO updates, in the order logged.
fn update_steps(run: &Path) -> Vec<u64> {
    metrics(run)
        .iter()
        .filter(|r| r.get("losses/policy").is_some())
        .map(|r| r["step"].as_u64().expect("step"))
        .collect()
}

/// Final (mean of the last 100) and best (best mean of 100 consecutive) episode return,
/// over all episodes when there are fewer than 100: computed here straight from the file.
fn final_and_best(run: &Path) -> (f64, f64) {
    let returns: Vec<f64> = metrics(run)
        .iter()
        .filter_map(|r| r.get("charts/episodic_return").and_then(Value::as_f64))
        .collect();
    assert!(!returns.is_empty(), "{} logged no episodes", run.display());
    let w = returns.len().min(100);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let last = mean(&returns[returns.len() - w..]);
    let best = returns
        .windows(w)
        .map(mean)
        .fold(f64::NEG_INFINITY, f64::max);
    (last, best)
}

/// The global step in the newest checkpoint of a run.
fn checkpoint_steps(run: &Path) -> Option<u64> {
    let newest = std::fs::read_dir(run)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let rest = name.strip_prefix("checkpoint-")?;
            let key: (u64, u32) = match rest.split_once('.') {
                None => (rest.parse().ok()?, 0),
                Some((u, c)) => (u.parse().ok()?, c.parse().ok()?),
            };
            Some((key, run.join(name)))
        })
        .max()?
        .1;
    let counters: Value = serde_json::from_str(
        &std::fs::read_to_string(newest.join("counters.json")).expect("counters"),
    )
    .expect("json");
    counters["global_step"].as_u64()
}

/// The names of a run's TensorBoard event files.
fn event_files(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run)
        .expect("run dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("events.out.tfevents"))
        .collect();
    names.sort();
    names
}

fn summary(sweep: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(sweep.join("summary.json")).expect("summary"))
        .expect("summary.json is JSON")
}

/// The line of the printed table that starts with `name` (and a space).
fn table_line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no table line for {name} in:\n{text}"))
}

#[test]
fn grid_times_seeds_makes_one_run_each_and_a_summary_that_matches_their_metrics() {
    let dir = scratch("sweep_grid");
    let total = 24 * STEPS_PER_UPDATE;
    let config = tiny_config(&dir, total);
    let sweep = dir.join("sweep");
    let out = engram(&[
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--seeds",
        "1-2",
        "--grid",
        "ppo.learning_rate=1e-3,3e-4",
        "--jobs",
        "2",
        "--sweep-dir",
        sweep.to_str().unwrap(),
    ]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}{err}");

    let points = [
        ("learning_rate=0.001", 1e-3, "1e-3"),
        ("learning_rate=0.0003", 3e-4, "3e-4"),
    ];
    let summary = summary(&sweep);
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4, "{summary}");
    for (point, lr, written) in points {
        let mut finals = vec![];
        let mut bests = vec![];
        for seed in [1u64, 2] {
            let name = format!("{point}_s{seed}");
            let run = sweep.join(&name);
            // The run trained the grid value and the seed it is named after.
            let resolved = std::fs::read_to_string(run.join("config.toml")).expect("config");
            let resolved: toml::Table = toml::from_str(&resolved).expect("toml");
            assert_eq!(resolved["ppo"]["learning_rate"].as_float(), Some(lr));
            assert_eq!(
                resolved["run"]["seed"].as_integer(),
                Some(seed as i64),
                "{name}"
            );
            assert_eq!(checkpoint_steps(&run), Some(total), "{name}");
            assert!(sweep.join("logs").join(format!("{name}.log")).is_file());
            assert!(err.contains(&format!("start {name} (new")), "{err}");

            let (last, best) = final_and_best(&run);
            let row = runs
                .iter()
                .find(|r| r["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{name} missing from {summary}"));
            assert_eq!(row["point"], point);
            assert_eq!(row["seed"], seed);
            assert_eq!(row["steps"], total);
            assert_eq!(row["status"], "finished");
            assert!(
                (row["final"].as_f64().unwrap() - last).abs() < 1e-9,
                "{row}"
            );
            assert!((row["best"].as_f64().unwrap() - best).abs() < 1e-9, "{row}");
            let line = table_line(&text, &name);
            assert!(
                line.contains(&format!("{last:.2}"))
                    && line.contains(&format!("{best:.2}"))
                    && line.contains("finished"),
                "{line} (final {last}, best {best})"
            );
            finals.push(last);
            bests.push(best);
        }
        // Mean ± sample sd (n − 1) over the two seeds.
        let mean_sd = |xs: &[f64]| {
            let m = (xs[0] + xs[1]) / 2.0;
            let sd = ((xs[0] - m).powi(2) + (xs[1] - m).powi(2)).sqrt(); // ÷ (2 − 1)
            (m, sd)
        };
        let (fm, fsd) = mean_sd(&finals);
        let (bm, bsd) = mean_sd(&bests);
        let p = summary["points"]
            .as_array()
            .expect("points")
            .iter()
            .find(|p| p["name"] == point)
            .unwrap_or_else(|| panic!("{point} missing from {summary}"));
        assert_eq!(p["n"], 2);
        assert_eq!(p["values"]["ppo.learning_rate"], written);
        for (key, want) in [
            ("final_mean", fm),
            ("final_sd", fsd),
            ("best_mean", bm),
            ("best_sd", bsd),
        ] {
            assert!((p[key].as_f64().unwrap() - want).abs() < 1e-9, "{key}: {p}");
        }
        let line = table_line(&text, point);
        assert!(
            line.contains(&format!("{fm:.2} ± {fsd:.2}"))
                && line.contains(&format!("{bm:.2} ± {bsd:.2}")),
            "{line}"
        );
    }
    let csv = std::fs::read_to_string(sweep.join("summary.csv")).expect("summary.csv");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.starts_with("run,point,seed,status,steps,episodes,final,best,log,ppo.learning_rate\n"),
        "{csv}"
    );
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("sweep.json")).expect("plan"))
            .expect("plan is JSON");
    assert_eq!(plan["seeds"], serde_json::json!([1, 2]));
}

#[test]
fn an_interrupted_sweep_stops_with_75_and_the_same_command_resumes_it() {
    let dir = scratch("sweep_resume");
    // Long enough that the second run is still training when the signal reaches it.
    let total = 100 * STEPS_PER_UPDATE;
    let config = tiny_config(&dir, total);
    let sweep = dir.join("sweep");
    let args = [
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--seeds",
        "1-3",
        "--sweep-dir",
        sweep.to_str().unwrap(),
    ];
    let (s1, s2, s3) = (
        sweep.join("default_s1"),
        sweep.join("default_s2"),
        sweep.join("default_s3"),
    );

    // One run at a time: interrupt the second once it has trained an update.
    let child = engram_command(&args)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while update_steps(&s2).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pgid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill(2) on the process group the test just made.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("wait");
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(75), "{text}{err}");
    assert!(
        text.contains(
            "interrupted: 1 of 3 runs finished; left: default_s2, default_s3 \
             (1 stopped, 0 failed, 1 not started)"
        ),
        "{text}"
    );
    assert!(
        text.contains("the same command resumes the sweep")
            && text.contains(&format!("--sweep-dir {}", sweep.display())),
        "{text}"
    );
    assert!(
        table_line(&text, "default_s2").contains("stopped"),
        "{text}"
    );
    assert!(
        table_line(&text, "default_s3").contains("not started"),
        "{text}"
    );
    assert_eq!(checkpoint_steps(&s1), Some(total));
    let stopped_at = checkpoint_steps(&s2).expect("the stopped run saved a checkpoint");
    assert!(stopped_at < total, "{stopped_at}");
    assert!(!s3.exists(), "no run starts after the signal");
    let s1_metrics = std::fs::read(s1.join("metrics.jsonl")).expect("metrics");
    let s2_events = event_files(&s2);
    assert!(!s2_events.is_empty());

    // A different plan in the same directory is refused, naming what differs.
    let mut other = args.to_vec();
    other[4] = "1-4";
    let out = engram(&other);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--seeds was [1,2,3], now [1,2,3,4]")
            && stderr(&out).contains("another --sweep-dir"),
        "{}",
        stderr(&out)
    );
    assert!(!sweep.join("default_s4").exists());

    // The same command: s1 skipped, s2 resumed from its checkpoint, s3 started.
    let out = engram(&args);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{text}{err}");
    assert!(
        err.contains("default_s1 already finished") && err.contains("skipped"),
        "{err}"
    );
    assert!(
        err.contains(&format!("start default_s2 (resuming at step {stopped_at}")),
        "{err}"
    );
    assert!(err.contains("start default_s3 (new"), "{err}");
    for (name, action) in [
        ("default_s1", "skipped"),
        ("default_s2", "resumed"),
        ("default_s3", "new"),
    ] {
        let line = table_line(&text, name);
        assert!(
            line.contains("finished") && line.ends_with(action),
            "{line}"
        );
    }
    for run in [&s1, &s2, &s3] {
        assert_eq!(checkpoint_steps(run), Some(total), "{}", run.display());
    }
    // The finished run was left alone.
    assert_eq!(std::fs::read(s1.join("metrics.jsonl")).unwrap(), s1_metrics);
    // The stopped run went on from its checkpoint (a run started anew with --overwrite
    // would have lost its first session's event file) and logged each update once.
    let events = event_files(&s2);
    assert!(
        s2_events.iter().all(|e| events.contains(e)) && events.len() > s2_events.len(),
        "{s2_events:?} → {events:?}"
    );
    let expected: Vec<u64> = (1..=total / STEPS_PER_UPDATE)
        .map(|u| u * STEPS_PER_UPDATE)
        .collect();
    assert_eq!(update_steps(&s2), expected);
    let log = std::fs::read_to_string(sweep.join("logs/default_s2.log")).expect("log");
    assert_eq!(log.matches("==== engram sweep:").count(), 2, "{log}");
    assert!(
        log.contains(&format!("resume {} --quiet", s2.display())),
        "{log}"
    );
    let summary = summary(&sweep);
    assert!(
        summary["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "finished"),
        "{summary}"
    );
}

#[test]
fn a_failed_run_is_reported_with_its_log_and_the_others_go_on() {
    let dir = scratch("sweep_failed");
    let config = tiny_config(&dir, 2 * STEPS_PER_UPDATE);
    let sweep = dir.join("sweep");
    let out = engram(&[
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--seeds",
        "1",
        "--grid",
        r#"env.id="NoSuchEnv-v0","CartPole-v1""#,
        "--sweep-dir",
        sweep.to_str().unwrap(),
    ]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(
        table_line(&text, "id=NoSuchEnv-v0_s1").contains("failed: see logs/id=NoSuchEnv-v0_s1.log"),
        "{text}"
    );
    assert!(
        table_line(&text, "id=CartPole-v1_s1").contains("finished"),
        "{text}"
    );
    assert!(
        err.contains("1 of 2 runs failed: id=NoSuchEnv-v0_s1 (exit status 1; log "),
        "{err}"
    );
    let log = std::fs::read_to_string(sweep.join("logs/id=NoSuchEnv-v0_s1.log")).expect("the log");
    assert!(log.contains("NoSuchEnv-v0"), "{log}");
    assert_eq!(
        checkpoint_steps(&sweep.join("id=CartPole-v1_s1")),
        Some(2 * STEPS_PER_UPDATE)
    );
}

#[test]
fn bad_grids_and_seeds_are_refused_before_anything_is_written() {
    let dir = scratch("sweep_bad");
    let config = tiny_config(&dir, 256);
    let sweep = dir.join("sweep");
    let config = config.to_str().unwrap();
    let sweep_arg = sweep.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--grid", "ppo.lerning_rate=1e-3,3e-4"],
            vec![
                "--grid `ppo.lerning_rate=1e-3`",
                "lerning_rate",
                "learning_rate",
            ],
        ),
        (
            vec!["--grid", "ppo.learning_rate=fast"],
            vec![
                "--grid `ppo.learning_rate=fast`",
                "grid point learning_rate=fast",
            ],
        ),
        (
            vec!["--grid", "learning_rate=1e-3"],
            vec!["`learning_rate` is not a SECTION.KEY config key"],
        ),
        (
            vec!["--seeds", "1-x"],
            vec![
                "--seeds `1-x`: `x` is not a seed",
                "`1-5`, `1,3,7` or `1-3,9`",
            ],
        ),
        (vec!["--seeds", "3-1"], vec!["--seeds `3-1`", "backwards"]),
    ] {
        let mut all = vec!["sweep", "--config", config, "--sweep-dir", sweep_arg];
        all.extend(&args);
        let out = engram(&all);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for s in says {
            assert!(err.contains(s), "{args:?}: `{s}` not in {err}");
        }
        assert!(!sweep.exists(), "{args:?} wrote {}", sweep.display());
        assert!(!dir.join("runs").exists(), "{args:?}");
    }
}

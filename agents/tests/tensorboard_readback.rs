//! RunLogger's files read back by TensorBoard's own Python reader, plus resume, metrics.jsonl, HParams, errors and activation images.
//!
//! Needs `target/test-venv` from `scripts/setup-test-python.sh` (or `ENGRAM_TEST_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use engram_agents::logging::{
    activation_image, tags, LogError, RgbImage, RunLogger, SessionStatus, METRICS_FILE,
};
use serde_json::Value;

/// The workspace root.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh, empty directory for one test.
fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "tensorboard_readback-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The Python with `tensorboard` installed; fails the test with the fix if there is none.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ENGRAM_TEST_PYTHON").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "ENGRAM_TEST_PYTHON={} does not exist; unset it to use target/test-venv from \
             scripts/setup-test-python.sh",
            p.display()
        );
        return p;
    }
    let venv = workspace_root().join("target/test-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with TensorBoard for the readback tests: {} is missing. \
         Run `scripts/setup-test-python.sh` from the workspace root (or set ENGRAM_TEST_PYTHON \
         to a python that has the `tensorboard` package).",
        venv.display()
    );
    venv
}

/// The run directory as TensorBoard's EventAccumulator sees it (see scripts/read_tensorboard.py).
fn read_back(run_dir: &Path) -> Value {
    let script = workspace_root().join("scripts/read_tensorboard.py");
    let output = Command::new(python())
        .arg(&script)
        .arg(run_dir)
        .output()
        .expect("run scripts/read_tensorboard.py");
    assert!(
        output.status.success(),
        "read_tensorboard.py failed: {}\n(run scripts/setup-test-python.sh if tensorboard is missing)",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("read_tensorboard.py prints JSON")
}

/// `[(step, value), ...]` of a scalar tag, values as the f32 TensorBoard stores.
fn scalar_points(read: &Value, tag: &str) -> Vec<(u64, f32)> {
    read["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalar tag {tag} in {}", read["scalars"]))
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32))
        .collect()
}

/// Every line of `dir/metrics.jsonl`, parsed.
fn metrics_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join(METRICS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

#[test]
fn tensorboard_reads_back_scalars_histograms_and_images() {
    let dir = fresh_dir("readback");
    let steps = [0u64, 128, 256, 384, 512];
    let sps = |step: u64| 1000.0 + step as f64 / 3.0;
    let ret = |step: u64| -0.1 * step as f64;
    let loss = |step: u64| (step as f64).sqrt() * 1e-3;
    let values: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
    // 3 wide, 2 tall, every byte distinct, so a transposed or scrambled PNG is caught.
    let image = RgbImage {
        width: 3,
        height: 2,
        pixels: (0..18).map(|i| (i * 13) as u8).collect(),
    };
    let mut logger = RunLogger::create(&dir).unwrap();
    for step in steps {
        logger.scalar(tags::SPS, sps(step), step);
        logger.scalar(tags::EPISODIC_RETURN, ret(step), step);
        logger.scalar(tags::POLICY_LOSS, loss(step), step);
    }
    logger.histogram(tags::ASYNC_POLICY_LAG, &values, 256);
    logger.image(tags::MODULE_ACTIVATIONS, &image, 512);
    logger.flush().unwrap();

    // Read while the logger is still open: flush has put everything in the file.
    let read = read_back(&dir);
    let files = read["event_files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].as_str().unwrap();
    assert!(name.starts_with("events.out.tfevents."), "{name}");
    assert_eq!(logger.event_file(), dir.join(name));

    for (tag, f) in [
        (tags::SPS, &sps as &dyn Fn(u64) -> f64),
        (tags::EPISODIC_RETURN, &ret),
        (tags::POLICY_LOSS, &loss),
    ] {
        let expected: Vec<(u64, f32)> = steps.iter().map(|&s| (s, f(s) as f32)).collect();
        assert_eq!(scalar_points(&read, tag), expected, "{tag}");
    }
    assert_eq!(read["scalars"].as_object().unwrap().len(), 3);
    // The TensorBoard server's own view: each tag reaches the plugin that draws it.
    assert_eq!(
        read["plugins"],
        serde_json::json!({
            "scalars": [tags::SPS, tags::EPISODIC_RETURN, tags::POLICY_LOSS],
            "histograms": [tags::ASYNC_POLICY_LAG],
            "images": [tags::MODULE_ACTIVATIONS],
        })
    );

    let hist = &read["histograms"][tags::ASYNC_POLICY_LAG];
    assert_eq!(hist.as_array().unwrap().len(), 1, "{hist}");
    let hist = &hist[0];
    let (min, max) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!(hist["step"], 256);
    assert_eq!(hist["num"], 1000.0);
    assert_eq!(hist["min"].as_f64().unwrap(), f64::from(min));
    assert_eq!(hist["max"].as_f64().unwrap(), f64::from(max));
    let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
    assert!((hist["sum"].as_f64().unwrap() - sum).abs() < 1e-9);
    let buckets: Vec<f64> = hist["bucket"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .collect();
    let limits = hist["bucket_limit"].as_array().unwrap();
    assert_eq!(buckets.len(), 30);
    assert_eq!(limits.len(), 30);
    assert_eq!(buckets.iter().sum::<f64>(), 1000.0);
    assert_eq!(limits[29].as_f64().unwrap(), f64::from(max));
    // A sine sampled evenly piles up near its extremes.
    assert!(
        buckets[0] > buckets[15] && buckets[29] > buckets[15],
        "{buckets:?}"
    );

    let images = read["images"][tags::MODULE_ACTIVATIONS].as_array().unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img["step"], 512);
    assert_eq!(
        (img["width"].as_u64(), img["height"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(
        (img["png_width"].as_u64(), img["png_height"].as_u64()),
        (Some(3), Some(2))
    );
    let pixels: Vec<u8> = img["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u8)
        .collect();
    assert_eq!(pixels, image.pixels);
}

#[test]
fn a_resumed_run_continues_the_same_curves() {
    let dir = fresh_dir("resume");
    {
        let mut first = RunLogger::create(&dir).unwrap();
        for step in 1..=3 {
            first.scalar(tags::EPISODIC_RETURN, step as f64, step);
        }
        first.histogram(tags::MODULE_ACTIVATION_FREQUENCY, &[0.5, 0.25], 3);
        first.flush().unwrap();
    }
    let mut second = RunLogger::create(&dir).unwrap();
    for step in 4..=6 {
        second.scalar(tags::EPISODIC_RETURN, step as f64, step);
    }
    second.histogram(tags::MODULE_ACTIVATION_FREQUENCY, &[0.75], 6);
    second.flush().unwrap();

    let read = read_back(&dir);
    assert_eq!(
        read["event_files"].as_array().unwrap().len(),
        2,
        "{}",
        read["event_files"]
    );
    let expected: Vec<(u64, f32)> = (1..=6).map(|s| (s, s as f32)).collect();
    assert_eq!(scalar_points(&read, tags::EPISODIC_RETURN), expected);
    let hist_steps: Vec<u64> = read["histograms"][tags::MODULE_ACTIVATION_FREQUENCY]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["step"].as_u64().unwrap())
        .collect();
    assert_eq!(hist_steps, vec![3, 6]);

    // metrics.jsonl was appended to, not truncated.
    drop(second);
    let steps: Vec<u64> = metrics_lines(&dir)
        .iter()
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
}

#[test]
fn metrics_jsonl_has_one_line_per_step_with_every_scalar() {
    let dir = fresh_dir("metrics");
    let mut logger = RunLogger::create(&dir).unwrap();
    // Logged out of step order and across two flushes.
    logger.scalar(tags::SPS, 2500.5, 20);
    logger.scalar(tags::SPS, 2400.25, 10);
    logger.scalar(tags::VALUE_LOSS, 0.125, 10);
    logger.scalar(tags::LEARNING_RATE, 3e-4, 10);
    logger.flush().unwrap();
    logger.scalar(tags::ENTROPY, 1.0 / 3.0, 30);
    // Not a scalar: not in metrics.jsonl.
    logger.histogram(tags::MODULE_ATTENTION, &[0.1, 0.9], 30);
    logger.flush().unwrap();

    let lines = metrics_lines(&dir);
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        serde_json::json!({"step": 10, "charts/SPS": 2400.25, "losses/value": 0.125, "charts/learning_rate": 3e-4})
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"step": 20, "charts/SPS": 2500.5})
    );
    // metrics.jsonl keeps full f64 precision.
    assert_eq!(
        lines[2],
        serde_json::json!({"step": 30, "losses/entropy": 1.0 / 3.0})
    );
    let raw = std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap();
    assert!(raw.lines().all(|l| l.starts_with("{\"step\":")), "{raw}");
}

#[test]
fn an_unwritable_run_dir_is_a_clear_error() {
    let dir = fresh_dir("unwritable");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let run_dir = file.join("run");
    let err = match RunLogger::create(&run_dir) {
        Ok(_) => panic!("a run dir under a regular file must not be usable"),
        Err(e) => e,
    };
    assert!(
        matches!(err, LogError::RunDir { ref path, .. } if *path == run_dir),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&run_dir.display().to_string()),
        "{message}"
    );
    assert!(message.contains("--run-dir"), "{message}");
    // The cause from the OS ("Not a directory") is part of it.
    assert!(
        message.to_lowercase().contains("not a directory"),
        "{message}"
    );
    // The same for a run dir that is itself a regular file.
    assert!(matches!(
        RunLogger::create(&file),
        Err(LogError::RunDir { .. })
    ));
}

#[test]
fn a_bad_image_is_reported_by_flush_and_logging_goes_on() {
    let dir = fresh_dir("bad-image");
    let mut logger = RunLogger::create(&dir).unwrap();
    let bad = RgbImage {
        width: 4,
        height: 4,
        pixels: vec![0; 5],
    };
    logger.image(tags::MODULE_ACTIVATIONS, &bad, 1);
    logger.scalar(tags::SPS, 1.0, 1);
    let err = logger.flush().unwrap_err();
    assert!(matches!(err, LogError::Image { .. }), "{err:?}");
    assert!(err.to_string().contains(tags::MODULE_ACTIVATIONS), "{err}");
    // The error is reported once; the scalars are still written.
    logger.scalar(tags::SPS, 2.0, 2);
    logger.flush().unwrap();
    assert_eq!(metrics_lines(&dir).len(), 2);
}

#[test]
fn activation_image_draws_modules_by_time() {
    // 3 modules over 5 steps; module m is active at step t when t + m is even.
    let masks: Vec<Vec<bool>> = (0..5)
        .map(|t| (0..3).map(|m| (t + m) % 2 == 0).collect())
        .collect();
    let image = activation_image(&masks);
    assert_eq!(image.pixels.len(), image.width * image.height * 3);
    assert_eq!(image.width % 5, 0);
    assert_eq!(image.height % 3, 0);
    let (cell_w, cell_h) = (image.width / 5, image.height / 3);
    assert!(cell_w >= 4 && cell_h >= 4, "{cell_w}x{cell_h}");
    let brightness = |x: usize, y: usize| -> u32 {
        image
            .pixel(x, y)
            .unwrap()
            .iter()
            .map(|&c| u32::from(c))
            .sum()
    };
    for t in 0..5 {
        for m in 0..3 {
            let b = brightness(t * cell_w + cell_w / 2, m * cell_h + cell_h / 2);
            if (t + m) % 2 == 0 {
                assert!(b > 400, "step {t} module {m} should be bright, is {b}");
            } else {
                assert!(b < 120, "step {t} module {m} should be dark, is {b}");
            }
        }
    }
    // Long episodes are capped in width; empty ones give an empty image.
    let long = activation_image(&vec![vec![true; 4]; 100_000]);
    assert!(long.width > 1000 && long.width <= 2000, "{}", long.width);
    assert_eq!(long.height, 4 * cell_h);
    let empty = activation_image(&[]);
    assert_eq!((empty.width, empty.height, empty.pixels.len()), (0, 0, 0));
}

#[test]
fn loggers_can_move_to_a_logging_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<RunLogger>();
    assert_send::<engram_agents::logging::Progress>();
}

#[test]
fn hparams_reach_the_hparams_dashboard_and_span_a_resumed_run() {
    let dir = fresh_dir("hparams");
    let config = serde_json::json!({
        "env": {"id": "T-v0", "num_envs": 4, "kwargs": {"length": 7}, "python": null},
        "ppo": {"learning_rate": 0.25, "anneal_lr": false},
        "policy": {"encoder": [16, 16]},
    });
    let returns: Vec<f64> = (0..250).map(|i| ((i * 37) % 101) as f64).collect();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    {
        // A first session: 150 episodes, one per step, then interrupted (no session end).
        let mut first = RunLogger::create(&dir).unwrap();
        first.hparams_start(&config, 0);
        for (i, r) in returns[..150].iter().enumerate() {
            first.scalar(tags::EPISODIC_RETURN, *r, i as u64 + 1);
        }
        first.hparams_end(150, SessionStatus::Running);
        first.flush().unwrap();
    }
    // Resumed from its checkpoint at step 150, trained to the end.
    let mut second = RunLogger::resume(&dir, 150).unwrap();
    second.hparams_start(&config, 150);
    for (i, r) in returns[150..].iter().enumerate() {
        second.scalar(tags::EPISODIC_RETURN, *r, i as u64 + 151);
    }
    second.hparams_end(250, SessionStatus::Success);
    second.flush().unwrap();

    let read = read_back(&dir);
    let hp = &read["hparams"];
    let expected = serde_json::json!({
        "env.id": "T-v0", "env.num_envs": 4.0, "env.kwargs.length": 7.0,
        "ppo.learning_rate": 0.25, "ppo.anneal_lr": false, "policy.encoder": "[16, 16]",
    });
    assert_eq!(hp["session_start_info"]["hparams"], expected, "{hp}");
    assert_eq!(
        hp["session_start_info"]["model_uri"],
        dir.display().to_string()
    );
    let columns: Vec<(String, String)> = hp["experiment"]["hparams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().into(),
                h["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    let column = |name: &str, ty: &str| (name.to_string(), ty.to_string());
    assert_eq!(
        columns,
        vec![
            column("env.id", "DATA_TYPE_STRING"),
            column("env.kwargs.length", "DATA_TYPE_FLOAT64"),
            column("env.num_envs", "DATA_TYPE_FLOAT64"),
            column("policy.encoder", "DATA_TYPE_STRING"),
            column("ppo.anneal_lr", "DATA_TYPE_BOOL"),
            column("ppo.learning_rate", "DATA_TYPE_FLOAT64"),
        ]
    );
    assert_eq!(
        hp["experiment"]["metric_tags"],
        serde_json::json!(tags::HPARAMS_METRICS)
    );
    assert_eq!(hp["session_end_info"]["status"], "STATUS_SUCCESS", "{hp}");

    // Both sessions log the final metrics; the resumed one's span the whole run.
    let final_mean = mean(&returns[150..]);
    let best_mean = returns.windows(100).map(mean).fold(f64::MIN, f64::max);
    assert!(
        best_mean > final_mean,
        "the test's returns should tell them apart"
    );
    assert_eq!(
        scalar_points(&read, tags::FINAL_MEAN_RETURN),
        vec![
            (150, mean(&returns[50..150]) as f32),
            (250, final_mean as f32)
        ]
    );
    assert_eq!(
        scalar_points(&read, tags::BEST_MEAN_RETURN),
        vec![
            (
                150,
                returns[..150]
                    .windows(100)
                    .map(mean)
                    .fold(f64::MIN, f64::max) as f32
            ),
            (250, best_mean as f32)
        ]
    );
    assert_eq!(
        scalar_points(&read, tags::FINAL_GLOBAL_STEP),
        vec![(150, 150.0), (250, 250.0)]
    );
    let last_line = metrics_lines(&dir).pop().unwrap();
    assert_eq!(last_line["step"], 250);
    assert_eq!(last_line[tags::FINAL_MEAN_RETURN], final_mean);
    assert_eq!(last_line[tags::BEST_MEAN_RETURN], best_mean);

    // The dashboard's one row: the run, its status and the last value of each metric.
    let groups = hp["session_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{hp}");
    assert_eq!(groups[0]["hparams"], expected);
    let session = &groups[0]["sessions"][0];
    assert_eq!(session["status"], "STATUS_SUCCESS");
    let metrics = &session["metrics"];
    assert_eq!(
        metrics[tags::FINAL_MEAN_RETURN],
        final_mean as f32 as f64,
        "{hp}"
    );
    assert_eq!(
        metrics[tags::BEST_MEAN_RETURN],
        best_mean as f32 as f64,
        "{hp}"
    );
    assert_eq!(metrics[tags::FINAL_GLOBAL_STEP], 250.0, "{hp}");
}

#[test]
fn a_diverged_run_without_episodes_ends_as_a_failure_without_return_metrics() {
    let dir = fresh_dir("hparams-failure");
    let mut logger = RunLogger::create(&dir).unwrap();
    logger.hparams_start(&serde_json::json!({"ppo": {"learning_rate": 1e30}}), 0);
    logger.scalar(tags::SPS, 10.0, 64);
    logger.hparams_end(64, SessionStatus::Failure);
    logger.flush().unwrap();
    let read = read_back(&dir);
    let hp = &read["hparams"];
    assert_eq!(hp["session_end_info"]["status"], "STATUS_FAILURE");
    assert!(
        read["scalars"].get(tags::FINAL_MEAN_RETURN).is_none(),
        "{read}"
    );
    assert_eq!(
        scalar_points(&read, tags::FINAL_GLOBAL_STEP),
        vec![(64, 64.0)]
    );
    let session = &hp["session_groups"][0]["sessions"][0];
    assert_eq!(session["status"], "STATUS_FAILURE", "{hp}");
    assert_eq!(session["metrics"][tags::FINAL_GLOBAL_STEP], 64.0, "{hp}");
}

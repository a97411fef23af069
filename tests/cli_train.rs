//! End-to-end: `engram train`, `resume`, `eval` and their handling of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn engram(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(args)
        .output()
        .expect("run engram")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("ENGRAM_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-test-python.sh",
        p.display()
    );
    p
}

/// Tags and values TensorBoard's own reader finds in a run directory.
fn tensorboard(run: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/read_tensorboard.py");
    let out = Command::new(python())
        .arg(script)
        .arg(run)
        .output()
        .expect("run reader");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("reader prints JSON")
}

#[test]
fn train_writes_a_complete_run_that_tensorboard_reads() {
    let run = scratch("train_lstm");
    let out = engram(&[
        "train",
        "--set",
        "run.total_steps=2048",
        "--set",
        "run.checkpoint_every=1",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("finished: 2048 steps, 2 updates"),
        "{}",
        stdout(&out)
    );
    assert!(
        run.join("config.toml").exists() && latest_checkpoint(&run).join("policy.bpk").exists()
    );
    let rows = metrics(&run);
    assert_eq!(
        rows.iter()
            .filter(|r| r.get("losses/policy").is_some())
            .count(),
        2
    );
    let tb = tensorboard(&run);
    let scalars = &tb["scalars"];
    for tag in [
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/SPS",
        "charts/learning_rate",
        "losses/policy",
        "losses/value",
        "losses/entropy",
        "losses/approx_kl",
        "losses/clipfrac",
        "losses/explained_variance",
    ] {
        assert!(scalars.get(tag).is_some(), "tag {tag} missing: {tb}");
    }
    // The learning rate is annealed linearly from the configured value.
    let lr = scalars["charts/learning_rate"].as_array().expect("points");
    assert_eq!(lr[0][0], 1024);
    assert!((lr[0][1].as_f64().unwrap() - 4e-3).abs() < 1e-9, "{lr:?}");
    assert!((lr[1][1].as_f64().unwrap() - 2e-3).abs() < 1e-9, "{lr:?}");
    // TensorBoard's HParams tab: the resolved config's hyperparameters, the final metrics as
    // scalars, and the row the dashboard shows, read by TensorBoard's own hparams backend.
    let hp = &tb["hparams"];
    let start = &hp["session_start_info"]["hparams"];
    assert_eq!(start["ppo.learning_rate"], 4e-3, "{hp}");
    assert_eq!(start["env.id"], "CartPole-v1", "{hp}");
    assert_eq!(start["run.total_steps"], 2048.0, "{hp}");
    assert_eq!(start["ppo.anneal_lr"], true, "{hp}");
    let experiment = &hp["experiment"];
    let names: Vec<&str> = experiment["hparams"]
        .as_array()
        .expect("hparam infos")
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.len(),
        start.as_object().unwrap().len(),
        "{names:?} {start}"
    );
    assert!(names.contains(&"ppo.learning_rate"), "{names:?}");
    let metric_tags = experiment["metric_tags"].as_array().expect("metric infos");
    assert_eq!(metric_tags.len(), 3, "{experiment}");
    for tag in metric_tags {
        let tag = tag.as_str().unwrap();
        assert!(
            scalars.get(tag).is_some(),
            "metric {tag} is no scalar: {tb}"
        );
    }
    assert_eq!(hp["session_end_info"]["status"], "STATUS_SUCCESS", "{hp}");
    let returns: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.get("charts/episodic_return")?.as_f64())
        .collect();
    let last = &returns[returns.len().saturating_sub(100)..];
    let final_mean = last.iter().sum::<f64>() / last.len() as f64;
    let logged = rows
        .iter()
        .find_map(|r| r.get("hparams/final_mean_return")?.as_f64())
        .expect("final mean return in metrics.jsonl");
    assert!(
        (logged - final_mean).abs() < 1e-9,
        "{logged} vs {final_mean}"
    );
    assert!(
        stdout(&out).contains(&format!("last 100 episodes {final_mean:.3}")),
        "{}",
        stdout(&out)
    );
    let groups = hp["session_groups"].as_array().expect("session groups");
    assert_eq!(groups.len(), 1, "{hp}");
    let session = &groups[0]["sessions"][0];
    assert_eq!(session["status"], "STATUS_SUCCESS", "{hp}");
    let shown = session["metrics"]["hparams/final_mean_return"]
        .as_f64()
        .unwrap();
    assert_eq!(shown, final_mean as f32 as f64, "{hp}");
    assert_eq!(session["metrics"]["hparams/global_step"], 2048.0, "{hp}");
    assert_eq!(groups[0]["hparams"]["ppo.learning_rate"], 4e-3, "{hp}");
    // Evaluation loads the checkpoint.
    let out = engram(&["eval", run.to_str().unwrap(), "--episodes", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("CartPole-v1: 2 episodes, mean return"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn modular_cores_log_module_histograms_and_an_activation_image() {
    // The preset's RIMs inside screened memory: module and memory diagnostics together.
    let run = scratch("train_rims");
    let out = engram(&[
        "train",
        "--config",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/repeat_previous_rims.toml"
        ),
        "--set",
        r#"policy.core={kind="screened",short_term=4,relevant=4,inner={kind="rims",hidden_size=72,num_modules=6,top_k=4}}"#,
        "--set",
        "run.total_steps=1024",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let tb = tensorboard(&run);
    assert!(
        tb["histograms"]
            .get("modules/activation_frequency/layer0")
            .is_some(),
        "{tb}"
    );
    assert!(tb["histograms"].get("modules/attention").is_some(), "{tb}");
    assert!(
        tb["histograms"].get("modules/attention/memory").is_some(),
        "{tb}"
    );
    // The greedy episode is longer than the memory: the first step's weight is in [0, 1].
    let first = tb["scalars"]["modules/memory_first_step_attention"][0][1]
        .as_f64()
        .expect("the memory's first-step attention is logged");
    assert!((0.0..=1.0).contains(&first), "{first}");
    let image = &tb["images"]["modules/activations"][0];
    assert!(image["height"].as_u64().unwrap() >= 6 * 4, "{tb}");
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_resume_continues_the_counters() {
    let run = scratch("interrupted");
    interrupt_training(&run, "200000", 2, "-INT");
    let counters: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(latest_checkpoint(&run).join("counters.json")).expect("counters"),
    )
    .expect("json");
    let updates = counters["update"].as_u64().expect("update");
    assert!((2..196).contains(&updates), "{counters}");
    assert_eq!(counters["global_step"].as_u64(), Some(updates * 1024));

    // Resume with a shorter run so the test ends: the config in the run dir is the one used.
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config");
    let total = (updates + 2) * 1024;
    std::fs::write(
        run.join("config.toml"),
        config.replace("total_steps = 200000", &format!("total_steps = {total}")),
    )
    .expect("write");
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("finished: {total} steps, {} updates", updates + 2)),
        "{}",
        stdout(&out)
    );
    let steps: Vec<u64> = metrics(&run)
        .iter()
        .filter(|r| r.get("losses/policy").is_some())
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=updates + 2).map(|u| u * 1024).collect();
    assert_eq!(
        steps, expected,
        "update steps continue without gaps or repeats"
    );
}

#[test]
fn bad_config_keys_name_the_key_and_the_valid_ones() {
    let out = engram(&[
        "train",
        "--set",
        "ppo.lerning_rate=0.1",
        "--run-dir",
        scratch("badkey").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unknown field `lerning_rate`") && err.contains("learning_rate"),
        "{err}"
    );

    let out = engram(&[
        "train",
        "--set",
        "env.id=\"CartPol-v1\"",
        "--run-dir",
        scratch("badenv").to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("did you mean `CartPole-v1`"),
        "{err}"
    );

    let out = engram(&[
        "train",
        "--set",
        "policy.core.kind=\"lstn\"",
        "--run-dir",
        scratch("badcore").to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("lstn") && err.contains("\"lstm\""),
        "{err}"
    );

    let out = engram(&[
        "train",
        "--device",
        "cuda:0",
        "--run-dir",
        scratch("badcuda").to_str().unwrap(),
    ]);
    let err = stderr(&out);
    if cfg!(feature = "tch") {
        // With libtorch built in, a machine without CUDA says so (one with it would train).
        assert!(out.status.success() || err.contains("CUDA device"), "{err}");
    } else {
        assert!(
            !out.status.success()
                && err.contains("libtorch CUDA backend")
                && err.contains("--features tch")
                && err.contains("setup-libtorch.sh"),
            "{err}"
        );
        let out = engram(&[
            "train",
            "--device",
            "libtorch",
            "--run-dir",
            scratch("badlibtorch").to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains("--features tch"),
            "{err}"
        );
    }
}

#[test]
fn a_nan_loss_stops_the_run_names_the_loss_and_saves_the_diverged_state_beside() {
    let run = scratch("nan");
    let out = engram(&[
        "train",
        "--set",
        "ppo.learning_rate=1e30",
        "--set",
        "run.total_steps=20480",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("loss `") && (err.contains("is NaN") || err.contains("is inf")),
        "{err}"
    );
    // Nothing good was saved before the divergence: no checkpoint, only the diverged state.
    assert!(
        err.contains("no checkpoint had been saved before")
            && err.contains("the diverged state was saved beside it in"),
        "{err}"
    );
    assert!(checkpoints(&run).is_empty(), "{:?}", checkpoints(&run));
    assert!(diverged(&run).iter().any(|d| d.join("policy.bpk").exists()));
}

/// The `diverged-<update>` directories of `run`.
fn diverged(run: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(run)
        .expect("run dir")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("diverged-")
        })
        .collect()
}

#[test]
fn a_diverging_resume_keeps_the_last_good_checkpoint() {
    let run = scratch("diverge_after_good");
    train_tiny(&run, &[]);
    let good = latest_checkpoint(&run);
    let good_weights = std::fs::read(good.join("policy.bpk")).unwrap();
    // Resume with a learning rate that makes the weights infinite in the first Adam step (f32
    // overflows), before the checkpoint of that update would be saved.
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config");
    let diverging = config
        .replace("total_steps = 64", "total_steps = 3200")
        .replace("learning_rate = 0.004", "learning_rate = 1e39");
    assert_ne!(diverging, config);
    std::fs::write(run.join("config.toml"), &diverging).unwrap();
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "the last good checkpoint {} is kept",
            good.display()
        )) && err.contains("the diverged state was saved beside it in"),
        "{err}"
    );
    assert_eq!(latest_checkpoint(&run), good);
    assert_eq!(
        std::fs::read(good.join("policy.bpk")).unwrap(),
        good_weights
    );
    assert_eq!(diverged(&run).len(), 1);
    // With the learning rate back, the run resumes from the good checkpoint.
    std::fs::write(
        run.join("config.toml"),
        config.replace("total_steps = 64", "total_steps = 128"),
    )
    .unwrap();
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("finished: 128 steps, 4 updates"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_unwritable_run_directory_is_a_clear_error() {
    let file = scratch("plain_file");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, "not a directory").unwrap();
    let out = engram(&["train", "--run-dir", file.join("run").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot create the run directory") && err.contains("plain_file/run"),
        "{err}"
    );
}

#[test]
fn an_env_the_policy_cannot_act_in_is_refused() {
    use engram_agents::policy::ActionKind;
    use engram_envs::Space;
    let err = ActionKind::for_space(
        "plugins/Unbounded-v0",
        &Space::bounded(vec![f32::NEG_INFINITY], vec![f32::INFINITY]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("plugins/Unbounded-v0") && err.contains("finite bounds"),
        "{err}"
    );
}

#[test]
fn appo_logs_policy_lag_queue_and_busy_time_and_resumes() {
    let run = scratch("train_appo");
    let common = [
        "--set",
        "run.algo=\"appo\"",
        "--set",
        "run.actor_threads=2",
        "--set",
        "env.num_envs=4",
        "--set",
        "async.chunk_len=16",
        "--set",
        "ppo.minibatches=2",
        "--set",
        "run.checkpoint_every=1",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ];
    let mut args = vec!["train", "--set", "run.total_steps=640"];
    args.extend(common);
    let out = engram(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    // 2 chunks × 2 envs × 16 steps = 64 steps per update.
    assert!(
        stdout(&out).contains("finished: 640 steps, 10 updates")
            && stdout(&out).contains("20 chunks trained on"),
        "{}",
        stdout(&out)
    );
    let tb = tensorboard(&run);
    for tag in [
        "async/queue_depth",
        "async/actor_busy",
        "async/learner_busy",
        "losses/policy",
        "charts/SPS",
    ] {
        assert!(tb["scalars"].get(tag).is_some(), "tag {tag} missing: {tb}");
    }
    let lag = tb["histograms"]["async/policy_lag"]
        .as_array()
        .expect("policy lag histograms");
    assert_eq!(lag.len(), 10, "one lag histogram per update");
    assert!(lag.iter().all(|h| h["num"].as_f64() >= Some(2.0)));
    // Resume continues the counters: 10 more updates.
    let mut config = std::fs::read_to_string(run.join("config.toml")).expect("config");
    config = config.replace("total_steps = 640", "total_steps = 1280");
    std::fs::write(run.join("config.toml"), config).expect("write config");
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("finished: 1280 steps, 20 updates"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_curriculum_trains_on_the_easier_stage_first_then_on_the_target() {
    let run = scratch("curriculum");
    let out = engram(&[
        "train",
        "--config",
        "configs/tmaze_passive_gru.toml",
        "--set",
        "env.num_envs=2",
        "--set",
        "ppo.minibatches=2",
        "--set",
        "env.curriculum=[{until_step=202, kwargs={corridor_length=10}}]",
        "--set",
        "run.total_steps=808",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 2 envs x 101 steps per update: update 1 runs L = 10 (11-step episodes), updates 2-4 L = 100.
    let lengths: Vec<(u64, f64)> = metrics(&run)
        .iter()
        .filter_map(|r| {
            Some((
                r["step"].as_u64()?,
                r.get("charts/episodic_length")?.as_f64()?,
            ))
        })
        .collect();
    assert!(
        lengths.iter().any(|&(s, l)| s == 202 && l == 11.0),
        "{lengths:?}"
    );
    assert!(
        lengths
            .iter()
            .filter(|&&(s, _)| s > 202)
            .all(|&(_, l)| l == 101.0),
        "{lengths:?}"
    );
    assert!(lengths.iter().any(|&(s, _)| s > 202));
    // Stages must keep the spaces.
    let out = engram(&[
        "train",
        "--set",
        "env.curriculum=[{until_step=100, kwargs={corridor_length=10}}]",
        "--run-dir",
        scratch("curriculum_bad").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("corridor_length"), "{}", stderr(&out));
}

/// A short run (one update of 1024 steps) into `run` with extra `args`.
fn train_short(run: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "train",
        "--set",
        "run.total_steps=1024",
        "--set",
        "run.checkpoint_every=0",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ];
    all.extend(args);
    engram(&all)
}

/// Starts `engram train` into `run` for `total_steps` (no periodic checkpoints), waits until
/// `updates` updates are logged, sends `signal` (`-INT`, `-TERM`) and checks the run stopped as
/// interrupted: exit code 75 and the resume hint.
fn interrupt_training(run: &Path, total_steps: &str, updates: usize, signal: &str) {
    let steps = format!("run.total_steps={total_steps}");
    let child = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(["train", "--set", &steps, "--set", "run.checkpoint_every=0"])
        .args(["--run-dir", run.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while !run.join("metrics.jsonl").exists()
        || metrics(run)
            .iter()
            .filter(|r| r.get("losses/policy").is_some())
            .count()
            < updates
    {
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("stopped (resume with `engram resume`)"),
        "{}",
        stdout(&out)
    );
}

/// Wait until `path` holds `text` (trimmed), failing after two minutes.
fn wait_for_text(path: &Path, text: &str) {
    let start = Instant::now();
    while std::fs::read_to_string(path).ok().as_deref().map(str::trim) != Some(text) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} never held {text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn training_into_an_existing_run_is_refused_unless_overwrite() {
    let run = scratch("existing_run");
    let out = train_short(&run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = train_short(&run, &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("already holds a run")
            && err.contains(&format!("engram resume {}", run.display()))
            && err.contains("--overwrite"),
        "{err}"
    );
    let rows_before = metrics(&run).len();
    let out = train_short(&run, &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The old run's files were removed, not appended to.
    assert_eq!(metrics(&run).len(), rows_before);
    let events = std::fs::read_dir(&run)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        })
        .count();
    assert_eq!(events, 1);
}

#[test]
fn generated_run_names_are_unique_even_within_one_second() {
    use engram_agents::run::run_dir::create_unique_run_dir;
    let parent = scratch("unique_names");
    let dirs: Vec<PathBuf> = (0..3)
        .map(|_| create_unique_run_dir(&parent, "CartPole-v1_lstm_s1_1700000000").unwrap())
        .collect();
    assert_eq!(dirs[0], parent.join("CartPole-v1_lstm_s1_1700000000"));
    assert_eq!(dirs[1], parent.join("CartPole-v1_lstm_s1_1700000000-2"));
    assert_eq!(dirs[2], parent.join("CartPole-v1_lstm_s1_1700000000-3"));

    // Three trainings started together each get their own run.
    let runs = scratch("unique_runs");
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_engram"))
                .args([
                    "train",
                    "--set",
                    "run.total_steps=1024",
                    "--set",
                    "run.checkpoint_every=0",
                    "--set",
                    &format!("run.runs_dir=\"{}\"", runs.display()),
                    "--quiet",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let made: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(made.len(), 3, "{made:?}");
    for dir in &made {
        assert_eq!(
            metrics(dir)
                .iter()
                .filter(|r| r.get("losses/policy").is_some())
                .count(),
            1
        );
    }
}

#[test]
fn a_run_dir_in_use_is_locked_and_a_dead_holders_lock_is_taken_over() {
    let run = scratch("locked");
    let mut child = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args([
            "train",
            "--set",
            "run.total_steps=2000000",
            "--run-dir",
            run.to_str().unwrap(),
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    wait_for_text(&run.join("run.lock"), &pid);
    for args in [
        vec!["resume", run.to_str().unwrap(), "--quiet"],
        vec![
            "train",
            "--run-dir",
            run.to_str().unwrap(),
            "--overwrite",
            "--quiet",
        ],
    ] {
        let out = engram(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("in use by another engram process") && err.contains(&format!("PID {pid}")),
            "{err}"
        );
    }
    // The refused `--overwrite` deleted nothing of the running run.
    assert!(run.join("config.toml").exists());
    child.kill().expect("kill");
    child.wait().expect("wait");
    // The dead process's PID is still in the lock file; the next run takes the lock over.
    assert_eq!(
        std::fs::read_to_string(run.join("run.lock"))
            .unwrap()
            .trim(),
        pid
    );
    let out = train_short(&run, &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The newest complete checkpoint directory of `run` (`checkpoint-<update>[.<copy>]`).
fn latest_checkpoint(run: &Path) -> PathBuf {
    checkpoints(run).pop().expect("a checkpoint")
}

/// The complete checkpoint directories of `run`, oldest first.
fn checkpoints(run: &Path) -> Vec<PathBuf> {
    let mut found: Vec<((u64, u32), PathBuf)> = std::fs::read_dir(run)
        .expect("run dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix("checkpoint-")?;
            let key = match rest.split_once('.') {
                None => (rest.parse().ok()?, 0),
                Some((u, c)) => (u.parse().ok()?, c.parse().ok()?),
            };
            Some((key, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// The update of `run`'s newest checkpoint while a process may be writing and pruning them
/// (`None` when there is none yet or it just went away).
fn newest_update_while_running(run: &Path) -> Option<u64> {
    let newest = std::fs::read_dir(run)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let rest = name.strip_prefix("checkpoint-")?;
            let update: u64 = rest.split('.').next()?.parse().ok()?;
            (!name.ends_with(".partial")).then_some((update, name))
        })
        .max()?;
    let text = std::fs::read_to_string(run.join(newest.1).join("counters.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["update"].as_u64()
}

fn counters_of(checkpoint: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(checkpoint.join("counters.json")).expect("counters"),
    )
    .expect("json")
}

/// Tiny updates (2 envs × 16 steps), so that a good share of the time goes to checkpointing.
/// Trains 64 steps of the tiny config (plus `sets`, as `--set` values) into `run`; panics with
/// the run's stderr when it fails.
fn train_tiny(run: &std::path::Path, sets: &[&str]) {
    let mut args = vec![
        "train",
        "--run-dir",
        run.to_str().expect("UTF-8 path"),
        "--quiet",
    ];
    for set in sets.iter().chain(&["run.total_steps=64"]) {
        args.extend(["--set", set]);
    }
    args.extend(TINY);
    let out = engram(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

const TINY: [&str; 10] = [
    "--set",
    "env.num_envs=2",
    "--set",
    "ppo.rollout_len=16",
    "--set",
    "ppo.minibatches=1",
    "--set",
    "ppo.epochs=1",
    "--set",
    "run.checkpoint_every=1",
];

#[test]
fn sigkill_while_checkpointing_every_update_never_loses_the_checkpoint() {
    let run = scratch("sigkill");
    let mut last_update = 0;
    for kill in 0..10u64 {
        let mut args: Vec<&str> = if kill == 0 {
            vec!["train", "--set", "run.total_steps=100000000", "--run-dir"]
        } else {
            vec!["resume"]
        };
        args.push(run.to_str().unwrap());
        args.push("--quiet");
        if kill == 0 {
            args.extend(TINY);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_engram"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Resuming worked once the process has saved a checkpoint beyond the last one.
        let start = Instant::now();
        loop {
            if newest_update_while_running(&run).is_some_and(|u| u > last_update) {
                break;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("kill {kill}: engram exited ({status}) instead of resuming: {err}");
            }
            assert!(start.elapsed() < Duration::from_secs(120), "no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Kill at varying points of the update and checkpoint cycle.
        std::thread::sleep(Duration::from_millis(kill * 13 % 70));
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        let newest = latest_checkpoint(&run);
        last_update = counters_of(&newest)["update"].as_u64().unwrap();
        assert!(checkpoints(&run).len() <= 3, "{:?}", checkpoints(&run));
    }
    // Finish the run two updates later: resume continues from the newest checkpoint.
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config");
    let total = (last_update + 2) * 32;
    std::fs::write(
        run.join("config.toml"),
        config.replace("total_steps = 100000000", &format!("total_steps = {total}")),
    )
    .expect("write");
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "finished: {total} steps, {} updates",
            last_update + 2
        )),
        "{}",
        stdout(&out)
    );
    // metrics.jsonl and TensorBoard hold each update once: what a killed session logged past
    // its checkpoint was cut back on resume.
    let expected: Vec<u64> = (1..=last_update + 2).map(|u| u * 32).collect();
    let logged: Vec<u64> = metrics(&run)
        .iter()
        .filter(|r| r.get("losses/policy").is_some())
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(logged, expected);
    let tb = tensorboard(&run);
    let tb_steps: Vec<u64> = tb["scalars"]["losses/policy"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p[0].as_u64().unwrap())
        .collect();
    assert_eq!(tb_steps, expected);
    // The newest and the previous checkpoint are kept, nothing half-written is left.
    assert_eq!(checkpoints(&run).len(), 2, "{:?}", checkpoints(&run));
    assert!(!std::fs::read_dir(&run).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".partial")));
    let out = engram(&["eval", run.to_str().unwrap(), "--episodes", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn eval_can_replace_env_kwargs_and_names_a_bad_one() {
    let run = scratch("eval_env_kwargs");
    train_tiny(
        &run,
        &[
            "env.id=\"TMaze-Passive-v0\"",
            "env.kwargs={corridor_length=3}",
        ],
    );
    let dir = run.to_str().unwrap();
    let eval = |extra: &[&str]| {
        let mut a = vec!["eval", dir, "--episodes", "3"];
        a.extend(extra);
        engram(&a)
    };
    let out = eval(&[]);
    assert!(stdout(&out).contains("mean length 4.0"), "{}", stdout(&out));
    // A longer corridor than trained on: every episode is L + 1 = 8 steps.
    let out = eval(&["--env-kwarg", "corridor_length=7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("mean length 8.0"), "{}", stdout(&out));
    for (bad, says) in [
        ("corridor_length", "must look like key=value"),
        ("corridor_lenght=7", "corridor_lenght"),
        ("corridor_length=0", "`corridor_length` = 0"),
    ] {
        let out = eval(&["--env-kwarg", bad]);
        assert!(!out.status.success(), "{bad}: {}", stdout(&out));
        assert!(stderr(&out).contains(says), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn a_run_with_the_old_single_checkpoint_directory_still_loads_and_resumes() {
    let run = scratch("legacy_layout");
    train_tiny(&run, &[]);
    // Make it the layout of older versions: one `checkpoint/` without a manifest.
    let newest = latest_checkpoint(&run);
    for old in checkpoints(&run) {
        if old != newest {
            std::fs::remove_dir_all(old).unwrap();
        }
    }
    std::fs::remove_file(newest.join("manifest.json")).unwrap();
    std::fs::rename(&newest, run.join("checkpoint")).unwrap();
    let out = engram(&["eval", run.to_str().unwrap(), "--episodes", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config");
    std::fs::write(
        run.join("config.toml"),
        config.replace("total_steps = 64", "total_steps = 128"),
    )
    .unwrap();
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("finished: 128 steps, 4 updates"),
        "{}",
        stdout(&out)
    );
    // The first versioned save replaced the old directory.
    assert!(!run.join("checkpoint").exists());
    assert_eq!(counters_of(&latest_checkpoint(&run))["update"], 4);
}

#[test]
fn a_garbled_checkpoint_file_is_refused_naming_it() {
    let run = scratch("garbled");
    train_tiny(&run, &[]);
    let policy = latest_checkpoint(&run).join("policy.bpk");
    let mut bytes = std::fs::read(&policy).unwrap();
    assert!(bytes.len() > 3000, "{}", bytes.len());
    let start = bytes.len() - 2500;
    for b in &mut bytes[start..start + 2000] {
        *b ^= 0x5a;
    }
    std::fs::write(&policy, bytes).unwrap();
    for args in [
        vec!["eval", run.to_str().unwrap(), "--episodes", "1"],
        vec!["resume", run.to_str().unwrap(), "--quiet"],
    ] {
        let out = engram(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains(&format!("checkpoint file {} is corrupt", policy.display()))
                && err.contains("SHA-256"),
            "{err}"
        );
    }
    // A missing file is named too.
    std::fs::remove_file(latest_checkpoint(&run).join("optimizer.bin")).unwrap();
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(
        stderr(&out).contains("optimizer.bin is missing"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_hyperparameters_are_refused_naming_the_key_before_a_run_dir_is_made() {
    for (set, expected) in [
        ("ppo.learning_rate=nan", "ppo.learning_rate = NaN must be"),
        ("ppo.max_grad_norm=-1", "ppo.max_grad_norm = -1 must be > 0"),
        ("ppo.clip_coef=nan", "ppo.clip_coef = NaN must be"),
        ("ppo.ent_coef=-100", "ppo.ent_coef = -100 must be"),
        ("async.rho_bar=nan", "async.rho_bar = NaN must be"),
    ] {
        let run = scratch("bad_hparam");
        let out = engram(&["train", "--set", set, "--run-dir", run.to_str().unwrap()]);
        let err = stderr(&out);
        assert!(
            !out.status.success() && err.contains(expected),
            "{set}: {err}"
        );
        assert!(!run.exists(), "{set}: {} was made", run.display());
    }
    // A type error names the key and the --set, not the embedded config.
    let out = engram(&["train", "--set", "ppo.epochs=\"eight\""]);
    let err = stderr(&out);
    assert!(
        !out.status.success()
            && err.contains("`ppo.epochs`: invalid type")
            && err.contains("--set `ppo.epochs=\"eight\"`")
            && !err.contains("embedded default config"),
        "{err}"
    );
}

#[test]
fn sigterm_checkpoints_like_ctrl_c_and_exits_with_the_interrupted_code() {
    let run = scratch("sigterm");
    interrupt_training(&run, "100000000", 1, "-TERM");
    // With checkpoint_every = 0, only the stop saved one.
    assert!(counters_of(&latest_checkpoint(&run))["update"].as_u64() >= Some(1));
}

#[test]
fn resuming_a_finished_run_says_so_and_eval_needs_an_episode() {
    let run = scratch("finished");
    let out = train_short(&run, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("less than one update"),
        "{}",
        stderr(&out)
    );
    let before = checkpoints(&run);
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("already finished: 1024 steps, 1 updates")
            && stdout(&out).contains("raise run.total_steps")
            && !stdout(&out).contains("NaN"),
        "{}",
        stdout(&out)
    );
    assert_eq!(checkpoints(&run), before, "nothing was saved");
    assert_eq!(event_files(&run).len(), 1, "nothing was logged either");
    let out = engram(&["eval", run.to_str().unwrap(), "--episodes", "0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--episodes"), "{}", stderr(&out));
}

#[test]
fn total_steps_below_one_update_is_a_warning_up_front() {
    let run = scratch("below_one_update");
    let out = engram(&[
        "train",
        "--set",
        "run.total_steps=100",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run.total_steps = 100 is less than one update (1024 env steps"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("finished: 1024 steps, 1 updates"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn resuming_with_more_envs_trains_until_total_steps() {
    let run = scratch("more_envs");
    let out = engram(&[
        "train",
        "--set",
        "run.total_steps=2048",
        "--set",
        "run.checkpoint_every=0",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 8 → 16 envs: 2048 steps per update, so the remaining 2048 steps are one more update
    // (counting updates, 4096 / 2048 = 2 were already done and the run stopped at once).
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config");
    let more = config
        .replace("num_envs = 8", "num_envs = 16")
        .replace("total_steps = 2048", "total_steps = 4096");
    assert_ne!(more, config);
    std::fs::write(run.join("config.toml"), more).unwrap();
    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("finished: 4096 steps, 3 updates"),
        "{}",
        stdout(&out)
    );
}

/// The TensorBoard event files of a run directory.
fn event_files(run: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(run)
        .expect("run dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains("events.out.tfevents"))
        .collect()
}

#[test]
fn configs_too_big_for_the_machine_are_refused_with_the_estimate_before_allocating() {
    for (sets, expected) in [
        // 4·10⁶·(10⁶ + 64) LSTM weights: once an abort allocating 16 TB.
        (vec!["policy.core.hidden_size=1000000"], "parameters"),
        (
            vec!["env.num_envs=10000000"],
            "for the rollout and env buffers",
        ),
        (
            vec!["policy.core={kind=\"rims\", hidden_size=600000, num_modules=6, top_k=4}"],
            "parameters",
        ),
    ] {
        let run = scratch("too_big");
        let mut args = vec!["train", "--run-dir", run.to_str().unwrap(), "--quiet"];
        for set in &sets {
            args.extend(["--set", set]);
        }
        let out = engram(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{sets:?}: {err}");
        assert!(
            err.contains("of memory (")
                && err.contains(expected)
                && err.contains("available (of")
                && err.contains("lower env.num_envs"),
            "{sets:?}: {err}"
        );
        assert!(!run.exists(), "{sets:?}: {} was made", run.display());
    }
}

#[test]
fn a_disk_too_small_for_two_checkpoints_is_refused_before_training() {
    // A 1 MiB tmpfs in a private mount namespace: a real full disk, no root needed.
    let mount = scratch("small_disk");
    std::fs::create_dir_all(&mount).unwrap();
    let probe = Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !probe {
        eprintln!("SKIPPED: `unshare -rm` (user and mount namespaces) is not allowed here");
        return;
    }
    let script = format!(
        "mount -t tmpfs -o size=1m tmpfs {m} && exec {bin} train --run-dir {m}/run --quiet \
         --set run.total_steps=1024",
        m = mount.display(),
        bin = env!("CARGO_BIN_EXE_engram"),
    );
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/run has") && err.contains("free, but this run needs at least"),
        "{err}"
    );
}

#[test]
fn divergence_without_nan_is_warned_during_the_run_and_in_the_summary() {
    let run = scratch("diverge_finite");
    let out = engram(&[
        "train",
        "--set",
        "ppo.learning_rate=1e6",
        "--set",
        "ppo.anneal_lr=false",
        "--set",
        "run.total_steps=12288",
        "--set",
        "run.checkpoint_every=0",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    let (err, outp) = (stderr(&out), stdout(&out));
    if out.status.success() {
        assert!(
            err.contains("engram: warning: the policy's entropy collapsed")
                && err.contains("engram: warning: the value loss exploded")
                && outp.contains("warnings during the run")
                && outp.contains("entropy collapsed")
                && outp.contains("value loss exploded"),
            "{outp}{err}"
        );
    } else {
        // Or it went on to NaN, which stops the run naming the loss.
        assert!(err.contains("is not finite"), "{err}");
    }
}

#[test]
fn appo_waits_on_a_full_queue_when_the_machine_has_no_core_to_spare() {
    // `auto` (the default) with more actor threads than cores: back-pressure, nothing dropped.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores + 1).to_string();
    let run = scratch("appo_auto");
    let out = engram(&[
        "train",
        "--set",
        "run.algo=\"appo\"",
        "--set",
        &format!("run.actor_threads={threads}"),
        "--set",
        &format!("env.num_envs={threads}"),
        "--set",
        "async.chunk_len=16",
        "--set",
        "async.queue_capacity=1",
        "--set",
        "ppo.minibatches=1",
        "--set",
        "run.total_steps=2000",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(" 0 dropped on a full queue"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn eval_render_shows_each_step_with_action_reward_return_and_the_answer() {
    let run = scratch("eval_render");
    let out = train_short(&run, &["--set", "env.id=\"popgym-RepeatPreviousEasy-v0\""]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = engram(&["eval", run.to_str().unwrap(), "--episodes", "1", "--render"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        text.contains("step 0: dealt 1/52 k=4")
            && text.contains("answer: none yet")
            && text.contains("step 4: ")
            && text.contains(", answer ")
            && text.contains("  action ")
            && text.contains("→ reward ")
            && text.contains(", return ")
            && text.contains(", terminated"),
        "{text}"
    );
}

#[test]
fn a_ray_run_without_pythons_engram_and_ray_names_the_fix_and_writes_nothing() {
    let run = scratch("ray-no-python");
    let out = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(["train", "--set", "run.backend=\"ray\"", "--run-dir"])
        .arg(&run)
        .arg("--quiet")
        .env("ENGRAM_PYTHON", "/nonexistent/python3")
        .output()
        .expect("run engram");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("run.backend = \"ray\"")
            && err.contains("/nonexistent/python3")
            && err.contains("ENGRAM_PYTHON"),
        "{err}"
    );
    assert!(!run.exists(), "a refused Ray run wrote its run directory");
    let typo = engram(&["train", "--set", "ray.max_restarts=3", "--quiet"]);
    assert!(
        stderr(&typo).contains("max_actor_restarts"),
        "{}",
        stderr(&typo)
    );
}

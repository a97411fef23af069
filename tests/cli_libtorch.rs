//! End-to-end on libtorch: `engram train --device libtorch` trains, resumes, and its checkpoint evaluates on flex.
//!
//! Built only with `--features tch` (see scripts/setup-libtorch.sh).

#![cfg(feature = "tch")]

use std::path::PathBuf;
use std::process::{Command, Output};

fn engram(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(args)
        .output()
        .expect("run engram")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn train_and_resume_on_libtorch_then_eval_on_flex() {
    let run = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libtorch_lstm");
    let _ = std::fs::remove_dir_all(&run);
    let dir = run.to_str().unwrap();
    let out = engram(&[
        "train",
        "--device",
        "libtorch",
        "--set",
        "run.total_steps=2048",
        "--run-dir",
        dir,
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("finished: 2048 steps, 2 updates"),
        "{}",
        text(&out.stdout)
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("device = \"libtorch\""), "{config}");

    // Resume (the run directory's config, on libtorch again) for one more update.
    std::fs::write(
        run.join("config.toml"),
        config.replace("total_steps = 2048", "total_steps = 3072"),
    )
    .unwrap();
    let out = engram(&["resume", dir, "--quiet"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("finished: 3072 steps, 3 updates"),
        "{}",
        text(&out.stdout)
    );

    // Checkpoints do not depend on the backend: eval (flex) loads the libtorch-trained weights.
    let out = engram(&["eval", dir, "--episodes", "2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("CartPole-v1: 2 episodes, mean return"),
        "{}",
        text(&out.stdout)
    );
}

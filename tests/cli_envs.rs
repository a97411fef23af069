//! End-to-end: the `engram envs` and `engram bench` (envs, memory, learner) commands.

use std::process::{Command, Output};

fn engram(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(args)
        .output()
        .expect("run engram")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn envs_list_shows_every_family() {
    let out = engram(&["envs", "list"]);
    assert!(out.status.success());
    let (stdout, _) = text(&out);
    for id in [
        "CartPole-v1",
        "Pendulum-v1",
        "MemoryChain-v0",
        "TMaze-Passive-v0",
        "TMaze-Active-v0",
        "popgym-RepeatPreviousHard-v0",
        "Copy-v0",
        "Denoise-v0",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(id)),
            "{id} missing from:\n{stdout}"
        );
    }
}

#[test]
fn envs_check_all_passes_every_builtin() {
    let out = engram(&["envs", "check", "all", "--steps", "2000"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let list = text(&engram(&["envs", "list"])).0;
    assert_eq!(
        stdout.matches(": ok").count(),
        list.lines().count(),
        "{stdout}"
    );
}

#[test]
fn describe_reports_spaces_and_kwargs() {
    let (stdout, _) = text(&engram(&[
        "envs",
        "describe",
        "TMaze-Passive-v0",
        "--kwargs",
        "{\"corridor_length\": 10000}",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["spec"]["id"], "TMaze-Passive-v0");
    assert_eq!(v["spec"]["action_space"]["n"], 4);
    assert_eq!(v["kwargs"][0]["name"], "corridor_length");
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = engram(&["envs", "check", "CartPol-v1"]);
    assert!(!out.status.success());
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("unknown environment id `CartPol-v1`")
            && stderr.contains("did you mean `CartPole-v1`"),
        "{stderr}"
    );

    let out = engram(&[
        "envs",
        "describe",
        "MemoryChain-v0",
        "--kwargs",
        "{\"memory_len\": 3}",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no argument `memory_len`") && stderr.contains("memory_length, num_bits"),
        "{stderr}"
    );

    let out = engram(&[
        "envs",
        "describe",
        "MemoryChain-v0",
        "--kwargs",
        "memory_length=3",
    ]);
    assert!(text(&out).1.contains("not valid JSON"));
}

#[test]
fn bench_envs_prints_step_rates() {
    let out = engram(&[
        "bench",
        "envs",
        "--id",
        "TMaze-Passive-v0",
        "--secs",
        "0.05",
        "--num-envs",
        "64",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("TMaze-Passive-v0"))
        .expect("row");
    let rates: Vec<f64> = row
        .split_whitespace()
        .skip(1)
        .map(|x| {
            // Millions with an `M`, thousands with a `k` (a slow or busy machine).
            let (num, scale) = match x.chars().last() {
                Some('M') => (&x[..x.len() - 1], 1e6),
                Some('k') => (&x[..x.len() - 1], 1e3),
                _ => (x, 1.0),
            };
            num.parse::<f64>().expect("rate") * scale
        })
        .collect();
    assert_eq!(rates.len(), 3);
    assert!(rates.iter().all(|&r| r > 0.0), "{row}");
}

#[test]
fn bench_memory_trains_with_rmsprop_and_a_global_clip_and_writes_a_gradient_profile() {
    let csv = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("grad_profile.csv");
    let _ = std::fs::remove_file(&csv);
    let out = engram(&[
        "bench",
        "memory",
        "--task",
        "copy",
        "--core",
        "lstm",
        "--length",
        "2",
        "--hidden",
        "16",
        "--steps",
        "20",
        "--batch",
        "8",
        "--optimizer",
        "rmsprop",
        "--clip-global",
        "--transfer",
        "3",
        "--grad-profile",
        csv.to_str().expect("utf-8 path"),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("20 steps: eval accuracy"), "{stdout}");
    assert!(stdout.contains("transfer T=3: accuracy"), "{stdout}");
    assert!(stdout.contains("input gradient norm: symbols"), "{stdout}");
    let rows: Vec<String> = std::fs::read_to_string(&csv)
        .expect("profile written")
        .lines()
        .map(String::from)
        .collect();
    // Header, then one row per step of the T = 2 sequence (2 + 20 steps).
    assert_eq!(rows[0], "t,grad_norm");
    assert_eq!(rows.len(), 1 + 22);
    assert!(rows[1..].iter().enumerate().all(|(t, r)| {
        let (step, g) = r.split_once(',').expect("two columns");
        step == t.to_string() && g.parse::<f32>().is_ok_and(|g| g.is_finite() && g > 0.0)
    }));
}

#[test]
fn bench_memory_names_a_bad_optimizer_or_clip() {
    let out = engram(&["bench", "memory", "--optimizer", "sgd", "--steps", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out)
            .1
            .contains("unknown optimizer `sgd`; use adam or rmsprop"),
        "{}",
        text(&out).1
    );
    let out = engram(&["bench", "memory", "--clip", "nan", "--steps", "1"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--clip must be"), "{}", text(&out).1);
}

#[test]
fn kwargs_written_in_toml_make_an_env() {
    let table: toml::Table =
        toml::from_str("corridor_length = 250\npenalty = -0.01").expect("toml");
    let kwargs = serde_json::to_value(table).expect("convert");
    let env =
        engram_envs::make("TMaze-Active-v0", kwargs.as_object().expect("object")).expect("make");
    assert_eq!(env.spec().id, "TMaze-Active-v0");
    let bad: toml::Table = toml::from_str("corridor_length = 2_000_000").expect("toml");
    let err = engram_envs::make(
        "TMaze-Active-v0",
        serde_json::to_value(bad)
            .expect("convert")
            .as_object()
            .expect("object"),
    )
    .err()
    .expect("out of range");
    assert!(err.to_string().contains("[1, 1000000]"), "{err}");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    // `engram envs check all | head -1`: read one line, then close the pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(["envs", "check", "all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .expect("a first line");
    assert!(!first.is_empty());
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
}

/// The `learner` and `actor` rates of `engram bench learner` output.
fn learner_rates(stdout: &str) -> Vec<f64> {
    ["learner", "actor"]
        .iter()
        .map(|name| {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} line in {stdout}"));
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn bench_learner_times_updates_and_acting_for_ppo_and_appo_and_writes_nothing() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench_learner");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_engram"))
            .current_dir(&dir)
            .args(args)
            .output()
            .expect("run engram")
    };
    let small = [
        "--set",
        "env.num_envs=4",
        "--set",
        "ppo.rollout_len=16",
        "--set",
        "ppo.seq_len=8",
        "--updates",
        "2",
    ];
    for extra in [
        &[][..],
        &["--set", "run.algo=\"appo\"", "--set", "async.chunk_len=16"][..],
        &["--set", r#"policy.core={kind="ffm",hidden_size=16}"#][..],
    ] {
        let mut args = vec!["bench", "learner"];
        args.extend(small);
        args.extend(extra);
        let out = run(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains("CartPole-v1"), "{stdout}");
        let rates = learner_rates(&stdout);
        assert!(rates.iter().all(|&r| r > 0.0 && r.is_finite()), "{stdout}");
    }
    // Too big for the machine: refused with the estimate before anything is allocated.
    let out = run(&[
        "bench",
        "learner",
        "--set",
        "policy.core.hidden_size=1000000",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("of memory"), "{stderr}");
    let out = run(&["bench", "learner", "--updates", "0"]);
    assert!(text(&out).1.contains("--updates 0"));
    let out = run(&["bench", "learner", "--set", "ppo.learning_rat=1"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("learning_rat"), "{stderr}");
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "bench learner wrote into its directory"
    );
}

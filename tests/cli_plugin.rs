//! End-to-end: `engram envs ... --plugin PATH` and `engram train --plugin PATH` on the template plugin built as a real shared library; `eval` and `resume` reload it from the run's config.

#[path = "../envs/tests/support/build_plugin.rs"]
mod build_plugin;
#[path = "support/cli.rs"]
mod cli;

use std::path::PathBuf;
use std::process::Output;

use build_plugin::{
    c_plugin, gymnasium_rs_plugin, template_plugin, C_ENV, GYMNASIUM_RS_ENV, TEMPLATE_ENV,
};
use cli::{engram, text};

/// `engram train --plugin LIB` on `env_id` for 1024 steps into `run`, with extra `--set`s.
fn train_on(lib: &str, env_id: &str, sets: &[&str], run: &std::path::Path) -> Output {
    let _ = std::fs::remove_dir_all(run);
    let id = format!("env.id=\"{env_id}\"");
    let mut args = vec!["train", "--plugin", lib, "--set", &id];
    for set in sets {
        args.extend(["--set", set]);
    }
    let run = run.to_str().expect("UTF-8 path");
    args.extend(["--set", "run.total_steps=1024", "--run-dir", run, "--quiet"]);
    engram(&args)
}

fn plugin() -> &'static str {
    template_plugin().to_str().expect("UTF-8 path")
}

#[test]
fn envs_list_describe_and_check_include_a_plugin() {
    let out = engram(&["envs", "list", "--plugin", plugin()]);
    assert!(
        out.status.success() && text(&out).contains(TEMPLATE_ENV),
        "{}",
        text(&out)
    );

    let out = engram(&["envs", "describe", "--plugin", plugin(), TEMPLATE_ENV]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("panic_in_step") && text(&out).contains("Discrete(2)"),
        "{}",
        text(&out)
    );

    let out = engram(&[
        "envs",
        "check",
        "--plugin",
        plugin(),
        TEMPLATE_ENV,
        "--steps",
        "500",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{TEMPLATE_ENV}: ok")),
        "{}",
        text(&out)
    );

    let out = engram(&["envs", "check", TEMPLATE_ENV]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown environment id"),
        "{}",
        text(&out)
    );
}

#[test]
fn train_records_the_plugin_so_eval_and_resume_load_it_again() {
    let run = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("train_plugin");
    let out = train_on(plugin(), TEMPLATE_ENV, &[], &run);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("finished: 1024 steps"),
        "{}",
        text(&out)
    );
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    let recorded = template_plugin().canonicalize().expect("canonical");
    assert!(
        config.contains("plugins = [") && config.contains(recorded.to_str().unwrap()),
        "{config}"
    );

    let out = engram(&["eval", run.to_str().unwrap(), "--episodes", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(TEMPLATE_ENV), "{}", text(&out));

    let out = engram(&["resume", run.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_plugin_env_that_panics_in_every_step_is_contained_in_a_ppo_run() {
    let run = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("train_panicking_plugin");
    let out = train_on(
        plugin(),
        TEMPLATE_ENV,
        &["env.kwargs={panic_in_step=true}"],
        &run,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("1024 env panics contained"),
        "{}",
        text(&out)
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics");
    assert!(metrics.contains("\"charts/env_panics\":1024"), "{metrics}");
}

#[test]
fn bench_envs_measures_a_plugin_env_next_to_its_built_in() {
    let out = engram(&[
        "bench",
        "envs",
        "--plugin",
        plugin(),
        "--secs",
        "0.05",
        "--num-envs",
        "8",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let output = text(&out);
    let rows: Vec<&str> = output.lines().collect();
    let at = |id: &str| {
        rows.iter()
            .position(|r| r.split_whitespace().next() == Some(id))
    };
    let (native, served) = (
        at("TMaze-Passive-v0"),
        at("env-plugin-example/TMaze-Passive-v0"),
    );
    assert!(
        matches!((native, served), (Some(a), Some(b)) if b == a + 1),
        "{output}"
    );
}

#[test]
fn the_c_example_trains_and_a_changed_or_missing_library_is_reported() {
    let c = c_plugin().to_str().expect("UTF-8 path");
    let out = engram(&["envs", "check", "--plugin", c, C_ENV, "--steps", "500"]);
    assert!(
        out.status.success() && text(&out).contains(&format!("{C_ENV}: ok")),
        "{}",
        text(&out)
    );
    // A copy of the library, so that changing and removing it leaves the other tests alone.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let lib = tmp.join("c_plugin_copy.so");
    std::fs::copy(c_plugin(), &lib).expect("copy the C plugin");
    let run = tmp.join("train_c_plugin");
    let out = train_on(lib.to_str().expect("UTF-8 path"), C_ENV, &[], &run);
    assert!(out.status.success(), "{}", text(&out));
    let config = std::fs::read_to_string(run.join("config.toml")).expect("config.toml");
    assert!(config.contains("plugin_hashes = ["), "{config}");

    let eval = || engram(&["eval", run.to_str().expect("UTF-8 path"), "--episodes", "2"]);
    let out = eval();
    assert!(
        out.status.success() && text(&out).contains(C_ENV) && !text(&out).contains("warning"),
        "{}",
        text(&out)
    );

    // Trailing bytes change the content but not what the loader maps.
    let mut bytes = std::fs::read(&lib).expect("read");
    bytes.extend_from_slice(b"rebuilt");
    std::fs::write(&lib, bytes).expect("write");
    let out = eval();
    assert!(
        out.status.success() && text(&out).contains("has changed since this run started"),
        "{}",
        text(&out)
    );

    std::fs::remove_file(&lib).expect("remove");
    let out = eval();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot read the plugin library")
            && text(&out).contains("c_plugin_copy.so"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_gymnasium_rs_example_passes_the_checker_and_trains() {
    let lib = gymnasium_rs_plugin().to_str().expect("UTF-8 path");
    let out = engram(&[
        "envs",
        "check",
        "--plugin",
        lib,
        GYMNASIUM_RS_ENV,
        "--steps",
        "500",
    ]);
    assert!(
        out.status.success() && text(&out).contains(&format!("{GYMNASIUM_RS_ENV}: ok")),
        "{}",
        text(&out)
    );
    let run = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("train_gymnasium_rs_plugin");
    let out = train_on(lib, GYMNASIUM_RS_ENV, &[], &run);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("finished: 1024 steps"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bad_plugin_path_is_a_clear_error() {
    let out = engram(&["train", "--plugin", "no/such/libplugin.so", "--quiet"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("plugin `no/such/libplugin.so`") && text(&out).contains("target/debug"),
        "{}",
        text(&out)
    );
    let manifest = build_plugin::workspace_root().join("Cargo.toml");
    let out = engram(&["envs", "list", "--plugin", manifest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not a loadable shared library"),
        "{}",
        text(&out)
    );
}

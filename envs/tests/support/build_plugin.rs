//! Builds the plugin crates the plugin tests load: the template (examples/env-plugin), the
//! gymnasium-rs example, the C example and the broken fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// The workspace root (this file is shared by `envs/tests` and the root crate's `tests`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    if here.join("envs").is_dir() {
        here.to_path_buf()
    } else {
        here.parent().expect("envs has a parent").to_path_buf()
    }
}

/// Where plugin builds go: `plugin-build` under the workspace's target directory, so that CI's
/// cache of `target/` keeps them.
fn target_dir() -> PathBuf {
    let root = workspace_root();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    root.join(target).join("plugin-build")
}

/// `cargo build` the manifest at `manifest` (relative to the workspace root) and return the
/// path of library `lib_name` it produced.
fn build(manifest: &str, lib_name: &str) -> PathBuf {
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        lib_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    cargo_build(manifest, &file)
}

/// `cargo build` the manifest at `manifest` (relative to the workspace root) and return the
/// path of `file` in its output directory.
fn cargo_build(manifest: &str, file: &str) -> PathBuf {
    let target = target_dir();
    let started = Instant::now();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--workspace", "--manifest-path"])
        .arg(workspace_root().join(manifest))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building {manifest} failed");
    eprintln!(
        "built {manifest} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let path = target.join("debug").join(file);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The C-header generator (envs/tests/header-gen, cbindgen as a program), built once per test
/// process.
pub fn header_generator() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let name = format!("engram-header-gen{}", std::env::consts::EXE_SUFFIX);
        cargo_build("envs/tests/header-gen/Cargo.toml", &name)
    })
}

/// The template plugin, built once per test process.
pub fn template_plugin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build("examples/env-plugin/Cargo.toml", "env-plugin-example"))
}

/// The gymnasium-rs example (examples/env-plugin-gymnasium-rs), built once per test process.
pub fn gymnasium_rs_plugin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        build(
            "examples/env-plugin-gymnasium-rs/Cargo.toml",
            "env-plugin-gymnasium-rs",
        )
    })
}

/// The id the gymnasium-rs example's CartPole gets in Engram.
pub const GYMNASIUM_RS_ENV: &str = "env-plugin-gymnasium-rs/CartPole-v1";

/// The broken fixtures: (a library without the entry symbol, one with ABI version 999).
pub fn broken_plugins() -> &'static (PathBuf, PathBuf) {
    static PATHS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PATHS.get_or_init(|| {
        let manifest = "envs/tests/plugin-fixtures/Cargo.toml";
        let no_entry = build(manifest, "no-entry");
        (no_entry, build(manifest, "wrong-abi"))
    })
}

/// The id the template's environment gets in Engram.
pub const TEMPLATE_ENV: &str = "env-plugin-example/RememberFirstBit-v0";

/// The C example (examples/env-plugin-c), compiled once per test process with the system C
/// compiler (`$CC`, else `cc`) against the committed header.
pub fn c_plugin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let root = workspace_root();
        let out = target_dir().join("c");
        std::fs::create_dir_all(&out).expect("create the C plugin's output directory");
        let lib = out.join(format!(
            "{}remember_bit{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        ));
        let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
        let status = Command::new(&cc)
            .args([
                "-shared", "-fPIC", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I",
            ])
            .arg(root.join("envs/include"))
            .arg(root.join("examples/env-plugin-c/remember_bit.c"))
            .arg("-o")
            .arg(&lib)
            .status()
            .unwrap_or_else(|e| panic!("run the C compiler {cc:?} (install one or set CC): {e}"));
        assert!(status.success(), "compiling examples/env-plugin-c failed");
        lib
    })
}

/// The id the C example's environment gets in Engram.
pub const C_ENV: &str = "remember-bit-c/RememberBitC-v0";

/// The id the template's re-export of the built-in passive T-Maze gets in Engram.
pub const TEMPLATE_TMAZE: &str = "env-plugin-example/TMaze-Passive-v0";

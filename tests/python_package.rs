//! The Python package (`python/`, installed into target/test-venv by scripts/setup-test-python.sh): its pytest suites, run against the real Gymnasium, TensorBoard and this build's `engram` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test venv's Python, with the `engram` package importable; fails with the fix otherwise.
fn python() -> PathBuf {
    let python = std::env::var_os("ENGRAM_TEST_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/test-venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import engram, pytest"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import the engram package and pytest: run `scripts/setup-test-python.sh` \
         from the workspace root (it builds and installs python/), or set ENGRAM_TEST_PYTHON",
        python.display()
    );
    python
}

/// Run one pytest file of python/tests; the test fails with pytest's report.
fn pytest(file: &str) {
    let path: &Path = &root().join("python/tests").join(file);
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=short"])
        .arg(path)
        .env("ENGRAM_BIN", env!("CARGO_BIN_EXE_engram"))
        .current_dir(root())
        .output()
        .expect("run pytest");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pytest {file} failed:\n{report}");
    println!("{report}");
}

#[test]
fn native_envs_are_gymnasium_envs_and_vector_envs() {
    pytest("test_gym_envs.py");
}

#[test]
fn runs_from_python_and_python_dash_m_engram() {
    pytest("test_runs.py");
}

#[test]
fn ray_backend_on_a_local_instance_and_a_cluster_that_loses_a_node() {
    pytest("test_ray.py");
}

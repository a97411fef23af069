//! Runs from Python: `train`, `resume`, `evaluate` (the GIL released, Ctrl-C checkpoints) and the CLI itself.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engram::cli::train::{ConfigSource, PreparedRun, TrainRequest};
use engram_agents::run::eval::{evaluate as evaluate_run, EvalOptions};
use engram_agents::TrainSummary;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{engram_error, EngramError};

/// Add this file's functions to the module.
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(resume, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(toml_value, m)?)?;
    m.add_function(wrap_pyfunction!(resolved_config, m)?)?;
    Ok(())
}

/// Run the `engram` command line with `argv` (program name first); its exit status.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    // This process is Python: `engram sweep` starts its runs as `python -m engram …`.
    let exe = py
        .import("sys")
        .and_then(|sys| sys.getattr("executable")?.extract::<String>());
    if let Some(exe) = exe.ok().filter(|exe| !exe.is_empty()) {
        engram::cli::set_self_command(vec![exe.into(), "-m".into(), "engram".into()]);
    }
    engram::cli::set_remote_backend(crate::ray_bridge::ray_backend());
    py.allow_threads(|| engram::main_with_args(argv))
}

/// Start a new run (see `engram.train` for the arguments); the summary as a dict, with
/// `stopped_by_signal` set when Ctrl-C stopped it (after its checkpoint).
#[pyfunction]
#[pyo3(signature = (*, config_path=None, config_toml=None, sets=Vec::new(), device=None, seed=None,
                    run_dir=None, overwrite=false, quiet=false, plugins=Vec::new(), stop=None))]
#[allow(clippy::too_many_arguments)]
fn train(
    py: Python<'_>,
    config_path: Option<PathBuf>,
    config_toml: Option<String>,
    sets: Vec<String>,
    device: Option<String>,
    seed: Option<u64>,
    run_dir: Option<PathBuf>,
    overwrite: bool,
    quiet: bool,
    plugins: Vec<PathBuf>,
    stop: Option<PyObject>,
) -> PyResult<PyObject> {
    let request = TrainRequest {
        device,
        seed,
        run_dir,
        overwrite,
        quiet,
        plugins,
        ..config_request(config_path, config_toml, sets)
    };
    let prepared = py
        .allow_threads(|| request.prepare())
        .map_err(engram_error)?;
    drive(py, prepared, stop)
}

/// The request of a config file, TOML text or the default, with `sets`.
fn config_request(
    config_path: Option<PathBuf>,
    config_toml: Option<String>,
    sets: Vec<String>,
) -> TrainRequest {
    let config = match (config_path, config_toml) {
        (Some(path), _) => ConfigSource::File(path),
        (None, Some(toml)) => ConfigSource::Text {
            toml,
            origin: "the config given to engram.train".into(),
        },
        (None, None) => ConfigSource::Default,
    };
    TrainRequest {
        config,
        sets,
        ..Default::default()
    }
}

/// The config `engram.train` would run (file or text or default, with `sets`), checked, as
/// TOML; nothing is written.
#[pyfunction]
#[pyo3(signature = (*, config_path=None, config_toml=None, sets=Vec::new()))]
fn resolved_config(
    py: Python<'_>,
    config_path: Option<PathBuf>,
    config_toml: Option<String>,
    sets: Vec<String>,
) -> PyResult<String> {
    let request = config_request(config_path, config_toml, sets);
    let config = py
        .allow_threads(|| request.resolve())
        .map_err(engram_error)?;
    config.to_toml().map_err(|e| engram_error(e.into()))
}

/// Continue the run in `run_dir` from its checkpoint; the summary as a dict.
#[pyfunction]
#[pyo3(signature = (run_dir, *, quiet=false, stop=None))]
fn resume(
    py: Python<'_>,
    run_dir: PathBuf,
    quiet: bool,
    stop: Option<PyObject>,
) -> PyResult<PyObject> {
    let prepared = PreparedRun::resume(&run_dir, quiet).map_err(engram_error)?;
    drive(py, prepared, stop)
}

/// Evaluate a trained run: `{"env_id", "returns", "lengths"}`.
#[pyfunction]
#[pyo3(signature = (run_dir, *, episodes=10, seed=10_000, greedy=true, env_kwargs_json="{}"))]
fn evaluate(
    py: Python<'_>,
    run_dir: PathBuf,
    episodes: usize,
    seed: u64,
    greedy: bool,
    env_kwargs_json: &str,
) -> PyResult<PyObject> {
    if episodes == 0 {
        return Err(EngramError::new_err("episodes must be at least 1"));
    }
    let env_kwargs = serde_json::from_str(env_kwargs_json).map_err(|e| {
        EngramError::new_err(format!("env_kwargs must be a dict of JSON values: {e}"))
    })?;
    let options = EvalOptions {
        episodes,
        render: false,
        greedy,
        seed,
        env_kwargs,
    };
    let report = py
        .allow_threads(|| evaluate_run(&run_dir, &options))
        .map_err(|e| engram_error(e.into()))?;
    let d = PyDict::new(py);
    d.set_item("env_id", report.env_id)?;
    d.set_item("returns", report.returns)?;
    d.set_item("lengths", report.lengths)?;
    Ok(d.into())
}

/// A JSON value (text) as a TOML value (text): an inline value for `section.key=value`
/// overrides, or a whole document for a table.
#[pyfunction]
#[pyo3(signature = (json, *, document=false))]
fn toml_value(json: &str, document: bool) -> PyResult<String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| EngramError::new_err(format!("not JSON: {e}")))?;
    let toml_value = toml::Value::try_from(&value).map_err(|e| {
        EngramError::new_err(format!(
            "{value} has no TOML form ({e}); configs hold numbers, strings, booleans, lists and \
             tables, never None"
        ))
    })?;
    if document {
        toml::to_string(&toml_value)
            .map_err(|e| EngramError::new_err(format!("a config must be a dict of sections: {e}")))
    } else {
        // `Display` writes the inline form (`{ corridor_length = 4 }`, `"text"`, `[1, 2]`).
        Ok(toml_value.to_string())
    }
}

/// Train `prepared` on its own thread while this one waits with the GIL released, checking for
/// Ctrl-C (and `stop.is_set()`, e.g. a `threading.Event`) every 100 ms: either sets the run's
/// stop flag, as the CLI's handler does.
fn drive(
    py: Python<'_>,
    mut prepared: PreparedRun,
    stop_event: Option<PyObject>,
) -> PyResult<PyObject> {
    prepared.set_remote(crate::ray_bridge::ray_backend());
    let stop = prepared.stop_flag();
    let handle: JoinHandle<anyhow::Result<TrainSummary>> = std::thread::Builder::new()
        .name("engram-train".into())
        .spawn(move || prepared.run())
        .map_err(|e| EngramError::new_err(format!("cannot start the training thread: {e}")))?;
    let mut by_signal = false;
    while !handle.is_finished() {
        py.allow_threads(|| {
            let start = Instant::now();
            while !handle.is_finished() && start.elapsed() < Duration::from_millis(100) {
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let asked = match &stop_event {
            Some(event) => event.call_method0(py, "is_set")?.is_true(py)?,
            None => false,
        };
        if py.check_signals().is_err() || asked {
            by_signal = true;
            if !stop.swap(true, Ordering::SeqCst) {
                eprintln!(
                    "\ninterrupted (Ctrl-C): finishing this update, saving a checkpoint and stopping…"
                );
            }
        }
    }
    let summary = handle
        .join()
        .map_err(|_| {
            EngramError::new_err("the training thread panicked (a bug: please report it)")
        })?
        .map_err(engram_error)?;
    summary_dict(py, &summary, by_signal)
}

fn summary_dict(py: Python<'_>, s: &TrainSummary, by_signal: bool) -> PyResult<PyObject> {
    let d = PyDict::new(py);
    d.set_item("run_dir", s.run_dir.clone())?;
    d.set_item("global_step", s.global_step)?;
    d.set_item("updates", s.updates)?;
    d.set_item("recent_return", s.recent_return)?;
    d.set_item("interrupted", s.interrupted)?;
    d.set_item("stopped_by_signal", by_signal && s.interrupted)?;
    d.set_item("sps", s.sps)?;
    d.set_item("already_finished", s.already_finished)?;
    let f = PyDict::new(py);
    f.set_item("env_panics", s.faults.env_panics)?;
    f.set_item("actor_restarts", s.faults.actor_restarts)?;
    f.set_item("dropped_full", s.faults.dropped_full)?;
    f.set_item("dropped_lag", s.faults.dropped_lag)?;
    f.set_item("chunks_used", s.faults.chunks_used)?;
    d.set_item("faults", f)?;
    d.set_item("warnings", s.warnings.clone())?;
    Ok(d.into())
}

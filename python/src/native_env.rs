//! Engram's native envs for Python: `NativeVecEnv` steps E envs in Rust into caller-owned numpy buffers (the Gymnasium wrappers in `engram/` sit on it).

use std::path::PathBuf;

use engram_envs::{ActionBatch, AutoresetMode, Frame, Space, VecEnv, VecEnvConfig};
use pyo3::buffer::{Element, PyBuffer};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{env_error, EngramError};

/// Add this file's class and functions to the module.
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_class::<NativeVecEnv>()?;
    m.add_function(wrap_pyfunction!(list_envs, m)?)?;
    m.add_function(wrap_pyfunction!(describe_env, m)?)?;
    m.add_function(wrap_pyfunction!(load_plugin, m)?)?;
    Ok(())
}

/// `(id, summary)` of every registered env (built-ins and loaded plugins).
#[pyfunction]
fn list_envs() -> Vec<(String, String)> {
    engram_envs::list()
}

/// An env's description (spaces, time limit, arguments) as JSON.
#[pyfunction]
fn describe_env(id: &str) -> PyResult<String> {
    let description = engram_envs::describe(id).map_err(env_error)?;
    serde_json::to_string(&description).map_err(|e| EngramError::new_err(e.to_string()))
}

/// Load an env plugin library; the ids it registered.
#[pyfunction]
fn load_plugin(path: PathBuf) -> PyResult<Vec<String>> {
    engram_envs::load_plugin(&path).map_err(env_error)
}

/// The element type of a space's actions.
#[derive(Debug, Clone, Copy)]
enum ActionKind {
    Discrete,
    MultiDiscrete,
    Continuous,
}

/// `num_envs` copies of a registry env, stepped together in Rust.
///
/// Buffers are numpy arrays the caller owns and passes in: observations `f32 [E, obs_dim]`
/// (Engram's flat encoding: one-hot for discrete spaces), rewards `f64 [E]`, flags `u8 [E]`
/// (a `bool` array viewed as `uint8`), actions `i64 [E·k]` or `f32 [E·k]`.
#[pyclass(module = "engram._engram")]
pub struct NativeVecEnv {
    vec: VecEnv,
    kind: ActionKind,
    actions_i64: Vec<i64>,
    actions_f32: Vec<f32>,
    rewards: Vec<f64>,
    flags: Vec<u8>,
}

#[pymethods]
impl NativeVecEnv {
    /// `num_envs` envs `id` made with `kwargs_json`; `autoreset` is `same_step`, `next_step`
    /// or `disabled`.
    #[new]
    fn new(id: &str, kwargs_json: &str, num_envs: usize, autoreset: &str) -> PyResult<Self> {
        let kwargs = match serde_json::from_str(kwargs_json) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(EngramError::new_err("env kwargs must be a JSON object")),
        };
        let autoreset = match autoreset {
            "same_step" => AutoresetMode::SameStep,
            "next_step" => AutoresetMode::NextStep,
            "disabled" => AutoresetMode::Disabled,
            other => {
                return Err(EngramError::new_err(format!(
                    "autoreset mode `{other}` is not one of same_step, next_step, disabled"
                )))
            }
        };
        if num_envs == 0 {
            return Err(EngramError::new_err("num_envs must be at least 1"));
        }
        let config = VecEnvConfig {
            autoreset,
            ..VecEnvConfig::default()
        };
        let vec = VecEnv::make(id, &kwargs, num_envs, config).map_err(env_error)?;
        let kind = match vec.spec().action_space {
            Space::Discrete { .. } => ActionKind::Discrete,
            Space::MultiDiscrete { .. } => ActionKind::MultiDiscrete,
            Space::Box { .. } => ActionKind::Continuous,
        };
        let width = num_envs * vec.spec().action_space.action_len();
        Ok(NativeVecEnv {
            vec,
            kind,
            actions_i64: vec![0; width],
            actions_f32: vec![0.0; width],
            rewards: vec![0.0; num_envs],
            flags: vec![0; num_envs],
        })
    }

    /// The spec (id, spaces, time limit) as JSON.
    fn spec_json(&self) -> PyResult<String> {
        serde_json::to_string(self.vec.spec()).map_err(|e| EngramError::new_err(e.to_string()))
    }

    /// Number of envs.
    #[getter]
    fn num_envs(&self) -> usize {
        self.vec.num_envs()
    }

    /// Reset every env (env `i` seeded with `seed + i`) and write the observations into `obs`.
    #[pyo3(signature = (seed, obs))]
    fn reset(&mut self, py: Python<'_>, seed: Option<u64>, obs: &PyAny) -> PyResult<()> {
        let vec = &mut self.vec;
        py.allow_threads(|| vec.reset(seed).map(|_| ()))
            .map_err(env_error)?;
        write(py, obs, self.vec.obs(), "obs")
    }

    /// Disabled autoreset: reset the envs whose episode ended (continuing their RNG streams).
    fn reset_done(&mut self, py: Python<'_>, obs: &PyAny) -> PyResult<()> {
        let vec = &mut self.vec;
        py.allow_threads(|| vec.reset_done()).map_err(env_error)?;
        write(py, obs, self.vec.obs(), "obs")
    }

    /// Step every env with `actions`; write observations, rewards, terminated and truncated
    /// flags, and (same-step autoreset) the final observations of the episodes that ended with
    /// their mask.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        py: Python<'_>,
        actions: &PyAny,
        obs: &PyAny,
        rewards: &PyAny,
        terminated: &PyAny,
        truncated: &PyAny,
        final_obs: &PyAny,
        has_final: &PyAny,
    ) -> PyResult<()> {
        let batch = match self.kind {
            ActionKind::Discrete | ActionKind::MultiDiscrete => {
                read(py, actions, &mut self.actions_i64, "actions (int64)")?;
                if matches!(self.kind, ActionKind::Discrete) {
                    ActionBatch::Discrete(&self.actions_i64)
                } else {
                    ActionBatch::MultiDiscrete(&self.actions_i64)
                }
            }
            ActionKind::Continuous => {
                read(py, actions, &mut self.actions_f32, "actions (float32)")?;
                ActionBatch::Continuous(&self.actions_f32)
            }
        };
        let vec = &mut self.vec;
        py.allow_threads(|| vec.step(batch)).map_err(env_error)?;
        let vec = &self.vec;
        write(py, obs, vec.obs(), "obs")?;
        for (r, &x) in self.rewards.iter_mut().zip(vec.rewards()) {
            *r = f64::from(x);
        }
        write(py, rewards, &self.rewards, "rewards")?;
        for (f, &x) in self.flags.iter_mut().zip(vec.terminated()) {
            *f = u8::from(x);
        }
        write(py, terminated, &self.flags, "terminated")?;
        for (f, &x) in self.flags.iter_mut().zip(vec.truncated()) {
            *f = u8::from(x);
        }
        write(py, truncated, &self.flags, "truncated")?;
        let finals = PyBuffer::<f32>::get(final_obs)?;
        let cells = finals
            .as_mut_slice(py)
            .filter(|c| c.len() == vec.obs().len())
            .ok_or_else(|| buffer_error("final_obs", vec.obs().len()))?;
        let d = vec.obs_dim();
        for (i, f) in self.flags.iter_mut().enumerate() {
            *f = 0;
            if let Some(last) = vec.final_obs(i) {
                *f = 1;
                for (cell, &x) in cells[i * d..(i + 1) * d].iter().zip(last) {
                    cell.set(x);
                }
            }
        }
        write(py, has_final, &self.flags, "has_final")
    }

    /// Env `i`'s picture: text (`str`), or `(height, width, rgb bytes)`; `None` if it draws none.
    fn render(&self, py: Python<'_>, i: usize) -> PyResult<Option<PyObject>> {
        let env = self
            .vec
            .env(i)
            .ok_or_else(|| EngramError::new_err(format!("no env {i} to render")))?;
        Ok(match env.render() {
            None => None,
            Some(Frame::Text(text)) => Some(text.into_py(py)),
            Some(Frame::Rgb {
                width,
                height,
                pixels,
            }) => Some((height, width, PyBytes::new(py, &pixels)).into_py(py)),
        })
    }

    /// Faults contained so far (env panics; for Python envs, exceptions and dead workers).
    fn faults(&self) -> u64 {
        self.vec.panics()
    }
}

fn buffer_error(what: &str, expected: usize) -> PyErr {
    EngramError::new_err(format!(
        "{what}: expected a writable C-contiguous buffer of {expected} elements"
    ))
}

/// Copy `source` into the numpy array `target` (same element type and count).
fn write<T: Element + Copy>(
    py: Python<'_>,
    target: &PyAny,
    source: &[T],
    what: &str,
) -> PyResult<()> {
    let buffer = PyBuffer::<T>::get(target)?;
    if buffer.readonly() || buffer.item_count() != source.len() {
        return Err(buffer_error(what, source.len()));
    }
    buffer.copy_from_slice(py, source)
}

/// Copy the numpy array `source` into `target` (same element type and count).
fn read<T: Element + Copy>(
    py: Python<'_>,
    source: &PyAny,
    target: &mut [T],
    what: &str,
) -> PyResult<()> {
    let buffer = PyBuffer::<T>::get(source)?;
    if buffer.item_count() != target.len() {
        return Err(EngramError::new_err(format!(
            "{what}: expected {} values, got {}",
            target.len(),
            buffer.item_count()
        )));
    }
    buffer.copy_to_slice(py, target)
}

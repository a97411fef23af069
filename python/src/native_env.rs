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

/// The numpy arrays a [`NativeVecEnv`] writes its results into, bound once (`bind`).
struct Outputs {
    /// `f32 [E, obs_dim]`: Engram's flat observations (one-hot for discrete spaces).
    obs: PyBuffer<f32>,
    /// `i64 [E, k]`: discrete observations as Gymnasium's ints (`Discrete`: k = 1,
    /// `MultiDiscrete`: k = its length); `None` for `Box` observations.
    obs_int: Option<PyBuffer<i64>>,
    /// `f64 [E]`.
    rewards: PyBuffer<f64>,
    /// `u8 [E]` each (`bool` arrays viewed as `uint8`).
    terminated: PyBuffer<u8>,
    truncated: PyBuffer<u8>,
    /// `f32 [E, obs_dim]` and its `u8 [E]` mask: same-step autoreset's final observations.
    final_obs: PyBuffer<f32>,
    has_final: PyBuffer<u8>,
}

/// `num_envs` copies of a registry env, stepped together in Rust.
///
/// The caller binds numpy arrays once (`bind`); every `reset`/`step` then writes into them
/// with one copy each. Actions are `i64 [E·k]` or `f32 [E·k]` arrays.
#[pyclass(module = "engram._engram")]
pub struct NativeVecEnv {
    vec: VecEnv,
    kind: ActionKind,
    /// Segment sizes of a discrete observation space (`[n]` or `nvec`); empty for `Box`.
    obs_segments: Vec<usize>,
    outputs: Option<Outputs>,
    actions_i64: Vec<i64>,
    actions_f32: Vec<f32>,
    rewards: Vec<f64>,
    flags: Vec<u8>,
    obs_int: Vec<i64>,
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
        let obs_segments: Vec<usize> = match &vec.spec().observation_space {
            Space::Discrete { n } => vec![*n as usize],
            Space::MultiDiscrete { nvec } => nvec.iter().map(|&n| n as usize).collect(),
            Space::Box { .. } => vec![],
        };
        Ok(NativeVecEnv {
            kind,
            outputs: None,
            actions_i64: vec![0; width],
            actions_f32: vec![0.0; width],
            rewards: vec![0.0; num_envs],
            flags: vec![0; num_envs],
            obs_int: vec![0; num_envs * obs_segments.len()],
            obs_segments,
            vec,
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

    /// Bind the arrays results are written into (see [`Outputs`]); checked once here.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (obs, obs_int, rewards, terminated, truncated, final_obs, has_final))]
    fn bind(
        &mut self,
        obs: &PyAny,
        obs_int: Option<&PyAny>,
        rewards: &PyAny,
        terminated: &PyAny,
        truncated: &PyAny,
        final_obs: &PyAny,
        has_final: &PyAny,
    ) -> PyResult<()> {
        let n = self.vec.num_envs();
        let flat = n * self.vec.obs_dim();
        let obs_int = match (obs_int, self.obs_int.len()) {
            (None, 0) => None,
            (Some(array), len) if len > 0 => Some(output(array, len, "obs_int")?),
            _ => {
                return Err(EngramError::new_err(
                    "obs_int: give an int64 array for discrete observations, None for Box ones",
                ))
            }
        };
        self.outputs = Some(Outputs {
            obs: output(obs, flat, "obs")?,
            obs_int,
            rewards: output(rewards, n, "rewards")?,
            terminated: output(terminated, n, "terminated")?,
            truncated: output(truncated, n, "truncated")?,
            final_obs: output(final_obs, flat, "final_obs")?,
            has_final: output(has_final, n, "has_final")?,
        });
        Ok(())
    }

    /// Reset every env (env `i` seeded with `seed + i`); observations into the bound arrays.
    #[pyo3(signature = (seed))]
    fn reset(&mut self, py: Python<'_>, seed: Option<u64>) -> PyResult<()> {
        let vec = &mut self.vec;
        py.allow_threads(|| vec.reset(seed).map(|_| ()))
            .map_err(env_error)?;
        self.write_obs(py)
    }

    /// Step every env with `actions`; observations, rewards, flags and (same-step autoreset)
    /// the ended episodes' final observations into the bound arrays.
    fn step(&mut self, py: Python<'_>, actions: &PyAny) -> PyResult<()> {
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
        self.write_obs(py)?;
        let (vec, out) = (&self.vec, bound(&self.outputs)?);
        for (r, &x) in self.rewards.iter_mut().zip(vec.rewards()) {
            *r = f64::from(x);
        }
        out.rewards.copy_from_slice(py, &self.rewards)?;
        for (f, &x) in self.flags.iter_mut().zip(vec.terminated()) {
            *f = u8::from(x);
        }
        out.terminated.copy_from_slice(py, &self.flags)?;
        for (f, &x) in self.flags.iter_mut().zip(vec.truncated()) {
            *f = u8::from(x);
        }
        out.truncated.copy_from_slice(py, &self.flags)?;
        let cells = out
            .final_obs
            .as_mut_slice(py)
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
        out.has_final.copy_from_slice(py, &self.flags)
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

/// The bound arrays, or the error saying to bind them first.
fn bound(outputs: &Option<Outputs>) -> PyResult<&Outputs> {
    outputs
        .as_ref()
        .ok_or_else(|| EngramError::new_err("bind the output arrays before reset/step"))
}

impl NativeVecEnv {
    /// The observations into the bound arrays: flat, and as ints for discrete spaces (the
    /// index of each one-hot segment's 1).
    fn write_obs(&mut self, py: Python<'_>) -> PyResult<()> {
        let out = bound(&self.outputs)?;
        let flat = self.vec.obs();
        out.obs.copy_from_slice(py, flat)?;
        if let Some(ints) = &out.obs_int {
            let k = self.obs_segments.len();
            let d = self.vec.obs_dim();
            for (row, out_row) in flat.chunks(d).zip(self.obs_int.chunks_mut(k)) {
                let mut start = 0;
                for (o, &size) in out_row.iter_mut().zip(&self.obs_segments) {
                    let segment = &row[start..start + size];
                    *o = segment.iter().position(|&x| x == 1.0).unwrap_or(0) as i64;
                    start += size;
                }
            }
            ints.copy_from_slice(py, &self.obs_int)?;
        }
        Ok(())
    }
}

fn buffer_error(what: &str, expected: usize) -> PyErr {
    EngramError::new_err(format!(
        "{what}: expected a writable C-contiguous buffer of {expected} elements"
    ))
}

/// A writable C-contiguous numpy array of `len` elements of `T`, to write results into.
fn output<T: Element>(array: &PyAny, len: usize, what: &str) -> PyResult<PyBuffer<T>> {
    let buffer =
        PyBuffer::<T>::get(array).map_err(|e| EngramError::new_err(format!("{what}: {e}")))?;
    if buffer.readonly() || !buffer.is_c_contiguous() || buffer.item_count() != len {
        return Err(buffer_error(what, len));
    }
    Ok(buffer)
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

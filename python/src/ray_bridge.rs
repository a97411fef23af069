//! The Ray backend's Rust half: `RolloutWorker` (an actor process's Rust actor), chunks as dicts of numpy arrays, and the backend the training loops drive (`engram.ray._actors.RayActors`).

use std::sync::Arc;
use std::time::Duration;

use engram_agents::rollout::{
    ActionData, Chunk, RemoteActors, RemoteBackend, RemoteHandle, RemoteStart, RemoteStats,
    RemoteWorker,
};
use engram_agents::AgentError;
use engram_envs::EpisodeStats;
use numpy::{Element as NumpyElement, PyArray1};
use pyo3::buffer::{Element, PyBuffer};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{engram_error, EngramError};

/// Add this file's class to the module.
pub fn register(m: &PyModule) -> PyResult<()> {
    m.add_class::<RolloutWorker>()?;
    Ok(())
}

/// The Ray backend, for [`engram_agents::TrainOptions::remote`].
pub fn ray_backend() -> RemoteHandle {
    RemoteHandle(Arc::new(RayBackend))
}

/// One Ray actor's Rust side: envs, a CPU policy copy and core states (no autodiff).
#[pyclass(module = "engram._engram")]
struct RolloutWorker {
    /// Boxed: it holds over-aligned (cache-padded) parts, and pyo3 places a class's fields in
    /// Python's 16-byte-aligned object memory.
    worker: Box<RemoteWorker>,
}

#[pymethods]
impl RolloutWorker {
    /// Actor `index` (recreated `generation` times) of the stage given by the run's config
    /// (TOML), the stage's env kwargs (JSON) and its seed base.
    #[new]
    fn new(
        py: Python<'_>,
        config_toml: &str,
        kwargs_json: &str,
        seed: u64,
        index: usize,
        generation: u64,
    ) -> PyResult<Self> {
        let worker = py
            .allow_threads(|| RemoteWorker::new(config_toml, kwargs_json, seed, index, generation))
            .map_err(|e| engram_error(e.into()))?;
        Ok(RolloutWorker {
            worker: Box::new(worker),
        })
    }

    /// Act with `weights` (a `uint8` array or bytes: the policy record the learner
    /// published) from now on, as policy `version`.
    fn set_weights(&mut self, py: Python<'_>, weights: &PyAny, version: u64) -> PyResult<()> {
        let bytes = PyBuffer::<u8>::get(weights)?.to_vec(py)?;
        py.allow_threads(|| self.worker.set_weights(&bytes, version))
            .map_err(|e| engram_error(e.into()))
    }

    /// The acting weights (the policy record, as the learner publishes them) as a `uint8` array.
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<&'py PyArray1<u8>> {
        let bytes = self.worker.weights().map_err(|e| engram_error(e.into()))?;
        Ok(PyArray1::from_vec(py, bytes))
    }

    /// The version of the weights acting now.
    #[getter]
    fn policy_version(&self) -> u64 {
        self.worker.policy_version()
    }

    /// Collect one chunk; a dict of numpy arrays (see `chunk_to_dict`).
    fn collect(&mut self, py: Python<'_>) -> PyResult<PyObject> {
        let chunk = py
            .allow_threads(|| self.worker.collect())
            .map_err(|e| engram_error(e.into()))?;
        chunk_to_dict(py, chunk)
    }
}

/// A `Vec` as a numpy array of `shape` (moved, not copied).
fn array<'py, T: NumpyElement + 'py>(
    py: Python<'py>,
    data: Vec<T>,
    shape: &[usize],
) -> PyResult<&'py PyAny> {
    let flat = PyArray1::from_vec(py, data);
    Ok(flat.reshape(shape.to_vec())?.as_ref())
}

/// A chunk as a dict of numpy arrays (time-major `[T, E, …]`) and ints, the form it travels
/// through Ray's object store in.
fn chunk_to_dict(py: Python<'_>, c: Chunk) -> PyResult<PyObject> {
    let (t, e, d, k) = (c.len, c.num_envs, c.obs_dim, c.action_len);
    let d_out = PyDict::new(py);
    d_out.set_item("num_envs", e)?;
    d_out.set_item("len", t)?;
    d_out.set_item("obs_dim", d)?;
    d_out.set_item("action_len", k)?;
    d_out.set_item("policy_version", c.policy_version)?;
    d_out.set_item("env_panics", c.env_panics)?;
    d_out.set_item("obs", array(py, c.obs, &[t, e, d])?)?;
    match c.actions {
        ActionData::Int(a) => d_out.set_item("actions", array(py, a, &[t, e, k])?)?,
        ActionData::Float(a) => d_out.set_item("actions", array(py, a, &[t, e, k])?)?,
    }
    for (name, v) in [
        ("log_probs", c.log_probs),
        ("values", c.values),
        ("rewards", c.rewards),
        ("final_values", c.final_values),
    ] {
        d_out.set_item(name, array(py, v, &[t, e])?)?;
    }
    for (name, v) in [
        ("terminated", c.terminated),
        ("truncated", c.truncated),
        ("episode_starts", c.episode_starts),
    ] {
        d_out.set_item(name, array(py, flags(v), &[t, e])?)?;
    }
    d_out.set_item("last_values", array(py, c.last_values, &[e])?)?;
    d_out.set_item("last_obs", array(py, c.last_obs, &[e, d])?)?;
    d_out.set_item("last_starts", array(py, flags(c.last_starts), &[e])?)?;
    let count = c.seq_states.len();
    let width = c.seq_states.first().map_or(0, Vec::len);
    let states: Vec<f32> = c.seq_states.into_iter().flatten().collect();
    d_out.set_item("seq_states", array(py, states, &[count, width])?)?;
    let (returns, lengths): (Vec<f64>, Vec<u64>) = c
        .episodes
        .iter()
        .map(|ep| (ep.episode_return, ep.length))
        .unzip();
    let n = returns.len();
    d_out.set_item("episode_returns", array(py, returns, &[n])?)?;
    d_out.set_item("episode_lengths", array(py, lengths, &[n])?)?;
    Ok(d_out.into())
}

/// Flags as `uint8` (0/1): what travels, and what the buffer protocol reads back.
fn flags(v: Vec<bool>) -> Vec<u8> {
    v.into_iter().map(u8::from).collect()
}

/// Field `name` (a `uint8` array of `len` flags) of a chunk dict.
fn flag_values(py: Python<'_>, dict: &PyDict, name: &str, len: usize) -> PyResult<Vec<bool>> {
    Ok(values::<u8>(py, dict, name, len)?
        .into_iter()
        .map(|b| b != 0)
        .collect())
}

/// Field `name` of a chunk dict.
fn field<'py>(dict: &'py PyDict, name: &str) -> PyResult<&'py PyAny> {
    dict.get_item(name)
        .ok_or_else(|| EngramError::new_err(format!("chunk: no `{name}` field")))
}

/// Field `name` (a numpy array of `len` elements of `T`) of a chunk dict, copied out.
fn values<T: Element + Copy>(
    py: Python<'_>,
    dict: &PyDict,
    name: &str,
    len: usize,
) -> PyResult<Vec<T>> {
    let buffer = PyBuffer::<T>::get(field(dict, name)?)
        .map_err(|e| EngramError::new_err(format!("chunk field `{name}`: {e}")))?;
    if buffer.item_count() != len {
        return Err(EngramError::new_err(format!(
            "chunk field `{name}`: expected {len} values, got {}",
            buffer.item_count()
        )));
    }
    buffer.to_vec(py)
}

/// A chunk dict of [`chunk_to_dict`] as a chunk (each array checked for its length).
fn chunk_from_dict(py: Python<'_>, obj: &PyAny) -> PyResult<Chunk> {
    let dict: &PyDict = obj.downcast()?;
    let int = |name: &str| -> PyResult<usize> { field(dict, name)?.extract() };
    let (t, e, d, k) = (
        int("len")?,
        int("num_envs")?,
        int("obs_dim")?,
        int("action_len")?,
    );
    let n = t * e;
    let actions = field(dict, "actions")?;
    let actions = if PyBuffer::<i64>::get(actions).is_ok() {
        ActionData::Int(values(py, dict, "actions", n * k)?)
    } else {
        ActionData::Float(values(py, dict, "actions", n * k)?)
    };
    let states = field(dict, "seq_states")?;
    let shape: (usize, usize) = states.getattr("shape")?.extract()?;
    let flat: Vec<f32> = values(py, dict, "seq_states", shape.0 * shape.1)?;
    let seq_states = if shape.1 == 0 {
        vec![Vec::new(); shape.0]
    } else {
        flat.chunks(shape.1).map(<[f32]>::to_vec).collect()
    };
    let episodes_n = field(dict, "episode_returns")?.len()?;
    let returns: Vec<f64> = values(py, dict, "episode_returns", episodes_n)?;
    let lengths: Vec<u64> = values(py, dict, "episode_lengths", episodes_n)?;
    Ok(Chunk {
        num_envs: e,
        len: t,
        obs_dim: d,
        obs: values(py, dict, "obs", n * d)?,
        actions,
        action_len: k,
        log_probs: values(py, dict, "log_probs", n)?,
        values: values(py, dict, "values", n)?,
        rewards: values(py, dict, "rewards", n)?,
        terminated: flag_values(py, dict, "terminated", n)?,
        truncated: flag_values(py, dict, "truncated", n)?,
        final_values: values(py, dict, "final_values", n)?,
        episode_starts: flag_values(py, dict, "episode_starts", n)?,
        last_values: values(py, dict, "last_values", e)?,
        last_obs: values(py, dict, "last_obs", e * d)?,
        last_starts: flag_values(py, dict, "last_starts", e)?,
        seq_states,
        episodes: returns
            .into_iter()
            .zip(lengths)
            .map(|(episode_return, length)| EpisodeStats {
                episode_return,
                length,
            })
            .collect(),
        policy_version: int("policy_version")? as u64,
        env_panics: int("env_panics")? as u64,
    })
}

/// A Python exception raised by the Ray backend as the run's error.
fn remote_error(py: Python<'_>, e: PyErr) -> AgentError {
    let text = e.value(py).to_string();
    let kind = e.get_type(py).name().unwrap_or("Exception").to_string();
    AgentError::Remote(if kind == "EngramError" {
        text
    } else {
        format!("{kind}: {text}")
    })
}

/// Starts `engram.ray._actors.RayActors` for a stage.
struct RayBackend;

impl RemoteBackend for RayBackend {
    fn start(&self, start: &RemoteStart) -> engram_agents::Result<Box<dyn RemoteActors>> {
        Python::with_gil(|py| {
            let spec = PyDict::new(py);
            spec.set_item("config_toml", &start.config_toml)?;
            spec.set_item("kwargs_json", &start.kwargs_json)?;
            spec.set_item("seed", start.seed)?;
            spec.set_item("actors", start.actors)?;
            spec.set_item("synchronous", start.synchronous)?;
            let manager = py
                .import("engram.ray._actors")?
                .getattr("RayActors")?
                .call1((spec,))?;
            Ok(Box::new(RayActors {
                manager: manager.into(),
            }) as Box<dyn RemoteActors>)
        })
        .map_err(|e: PyErr| Python::with_gil(|py| remote_error(py, e)))
    }
}

/// A stage's Ray actors, through their Python manager.
struct RayActors {
    manager: PyObject,
}

impl RayActors {
    /// Call the manager's `method` with `args`.
    fn call<R>(
        &self,
        method: &str,
        args: impl IntoPy<Py<pyo3::types::PyTuple>>,
        read: impl FnOnce(Python<'_>, &PyAny) -> PyResult<R>,
    ) -> engram_agents::Result<R> {
        Python::with_gil(|py| {
            self.manager
                .as_ref(py)
                .call_method1(method, args)
                .and_then(|out| read(py, out))
                .map_err(|e| remote_error(py, e))
        })
    }
}

impl RemoteActors for RayActors {
    fn publish(&mut self, weights: Vec<u8>, version: u64) -> engram_agents::Result<()> {
        Python::with_gil(|py| {
            let weights = PyArray1::from_vec(py, weights);
            self.manager
                .as_ref(py)
                .call_method1("publish", (weights, version))
                .map(|_| ())
                .map_err(|e| remote_error(py, e))
        })
    }

    fn collect_all(&mut self) -> engram_agents::Result<Vec<Chunk>> {
        self.call("collect_all", (), |py, out| {
            out.iter()?
                .map(|chunk| chunk_from_dict(py, chunk?))
                .collect()
        })
    }

    fn next_chunk(&mut self, wait: Duration) -> engram_agents::Result<Option<Chunk>> {
        self.call("next_chunk", (wait.as_secs_f64(),), |py, out| {
            if out.is_none() {
                Ok(None)
            } else {
                chunk_from_dict(py, out).map(Some)
            }
        })
    }

    fn stats(&mut self) -> engram_agents::Result<RemoteStats> {
        self.call("stats", (), |_, out| {
            let d: &PyDict = out.downcast()?;
            let get = |name: &str| {
                d.get_item(name)
                    .ok_or_else(|| EngramError::new_err(format!("RayActors.stats: no `{name}`")))
            };
            Ok(RemoteStats {
                actors: get("actors")?.extract()?,
                restarts: get("restarts")?.extract()?,
                chunks_discarded: get("chunks_discarded")?.extract()?,
                actor_steps_per_sec: get("actor_steps_per_sec")?.extract()?,
                object_store_bytes: get("object_store_bytes")?.extract()?,
                broadcast_seconds: get("broadcast_seconds")?.extract()?,
                queue_depth: get("queue_depth")?.extract()?,
                actor_busy: get("actor_busy")?.extract()?,
            })
        })
    }
}

impl Drop for RayActors {
    fn drop(&mut self) {
        Python::with_gil(|py| {
            if let Err(e) = self.manager.as_ref(py).call_method0("close") {
                eprintln!("engram: stopping the Ray actors failed: {}", e.value(py));
            }
        });
    }
}

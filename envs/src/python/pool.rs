//! Python worker processes hosting Gymnasium envs: spawning, the pipe protocol, timeouts and restarts.

use std::io::{Read, Write};
use std::ops::Range;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use serde::Deserialize;

use super::{settings, PythonSettings, Target};
use crate::env::EnvSpec;
use crate::error::{EnvError, Result};
use crate::space::Space;

/// The worker program (run with `python -c`).
const WORKER_PY: &str = include_str!("worker.py");

/// Bytes of one env's result header in a reply (`<BfBBB`).
const HEAD: usize = 8;

/// Seeds of restarted envs step by this much per restart (as the worker does for its own).
const SEED_STRIDE: u64 = 1_000_003;

/// What one env's step or reset came to.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    /// The env raised (or its worker died or hung): it was restarted; the step is a truncation.
    pub fault: bool,
    /// Reward of the transition.
    pub reward: f32,
    /// Terminal state reached.
    pub terminated: bool,
    /// Episode cut.
    pub truncated: bool,
    /// The worker reset the env after the episode ended; its last observation is in the final
    /// observation buffer.
    pub has_final: bool,
}

/// A command for one env in [`WorkerPool::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Command1 {
    /// Step with the env's action.
    Step = 0,
    /// Reset (continuing the env's RNG stream); its action is ignored.
    Reset = 1,
    /// Leave the env as it is (its observation is sent again).
    Keep = 2,
}

/// One worker process and the envs it hosts.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<Option<Vec<u8>>>,
    envs: Range<usize>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spec a worker sends first (bounds `null` = infinite).
#[derive(Deserialize)]
struct WireSpec {
    observation_space: WireSpace,
    action_space: WireSpace,
    max_episode_steps: Option<u64>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireSpace {
    Discrete {
        n: u64,
    },
    MultiDiscrete {
        nvec: Vec<u64>,
    },
    Box {
        low: Vec<Option<f32>>,
        high: Vec<Option<f32>>,
        shape: Vec<usize>,
    },
}

impl From<WireSpace> for Space {
    fn from(s: WireSpace) -> Space {
        match s {
            WireSpace::Discrete { n } => Space::discrete(n),
            WireSpace::MultiDiscrete { nvec } => Space::multi_discrete(nvec),
            WireSpace::Box { low, high, shape } => Space::Box {
                low: low.iter().map(|v| v.unwrap_or(f32::NEG_INFINITY)).collect(),
                high: high.iter().map(|v| v.unwrap_or(f32::INFINITY)).collect(),
                shape,
            },
        }
    }
}

/// `n` Python envs spread over worker processes, stepped together.
///
/// Every env runs in a worker process (one per core by default, `env.python_workers`), so Python
/// envs use all cores and never hold a lock in Engram's process. A Python exception in `reset`
/// or `step` is contained in the worker: the env is made again and reset, and the step reported
/// as a fault. A worker that dies or does not answer within the timeout is killed and started
/// again, all its envs faulting. Each fault is logged with its traceback; more than
/// `env.python_max_failures` of them is an error.
pub struct WorkerPool {
    target: Target,
    kwargs: serde_json::Map<String, serde_json::Value>,
    settings: PythonSettings,
    spec: EnvSpec,
    workers: Vec<Worker>,
    num_envs: usize,
    obs_dim: usize,
    action_len: usize,
    seeds: Vec<Option<u64>>,
    restarts: Vec<u64>,
    failures: u64,
}

impl WorkerPool {
    /// Start the workers of `n` copies of Python env `target` (the settings of
    /// [`super::configure`]) and read their spec.
    pub fn spawn(
        target: Target,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        n: usize,
    ) -> Result<Self> {
        let settings = settings();
        let workers = settings
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |p| p.get()))
            .clamp(1, n.max(1));
        let mut pool = WorkerPool {
            target,
            kwargs: kwargs.clone(),
            settings,
            spec: EnvSpec::new("", Space::discrete(1), Space::discrete(1)),
            workers: Vec::with_capacity(workers),
            num_envs: n,
            obs_dim: 0,
            action_len: 0,
            seeds: vec![None; n],
            restarts: vec![0; n],
            failures: 0,
        };
        for w in 0..workers {
            let envs = (w * n / workers)..((w + 1) * n / workers);
            let (worker, spec) = pool.start(envs)?;
            if w == 0 {
                pool.obs_dim = spec.obs_dim();
                pool.action_len = spec.action_space.action_len();
                pool.spec = spec;
            }
            pool.workers.push(worker);
        }
        Ok(pool)
    }

    /// Spec of every env.
    pub fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    /// Number of envs.
    pub fn num_envs(&self) -> usize {
        self.num_envs
    }

    /// Faults contained so far (env exceptions and worker restarts).
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Reset every env (`seeds[i]`: `None` continues env `i`'s RNG stream) into `obs`.
    pub fn reset(
        &mut self,
        seeds: &[Option<u64>],
        obs: &mut [f32],
        out: &mut [Outcome],
    ) -> Result<()> {
        self.seeds.copy_from_slice(seeds);
        let messages: Vec<Vec<u8>> = self
            .workers
            .iter()
            .map(|w| reset_message(&seeds[w.envs.clone()]))
            .collect();
        self.exchange(&messages, obs, None, out)
    }

    /// One command per env (`actions`: `action_len` values per env, as f64); `autoreset`: a
    /// worker resets an env whose episode ended at once and returns its last observation in
    /// `final_obs` (rows in env order of the envs with `has_final`, packed per worker).
    pub fn step(
        &mut self,
        commands: &[Command1],
        actions: &[f64],
        autoreset: bool,
        obs: &mut [f32],
        final_obs: &mut [f32],
        out: &mut [Outcome],
    ) -> Result<()> {
        let k = self.action_len;
        let messages: Vec<Vec<u8>> = self
            .workers
            .iter()
            .map(|w| {
                let r = w.envs.clone();
                let mut m = Vec::with_capacity(2 + r.len() * (1 + 8 * k));
                m.push(b'S');
                m.push(autoreset as u8);
                m.extend(commands[r.clone()].iter().map(|&c| c as u8));
                for a in &actions[r.start * k..r.end * k] {
                    m.extend_from_slice(&a.to_le_bytes());
                }
                m
            })
            .collect();
        self.exchange(&messages, obs, Some(final_obs), out)
    }

    /// Send every worker its message, then read every reply, restarting the workers that died
    /// or hung.
    fn exchange(
        &mut self,
        messages: &[Vec<u8>],
        obs: &mut [f32],
        mut final_obs: Option<&mut [f32]>,
        out: &mut [Outcome],
    ) -> Result<()> {
        let sent: Vec<bool> = self
            .workers
            .iter_mut()
            .zip(messages)
            .map(|(w, m)| write_frame(&mut w.stdin, m).is_ok())
            .collect();
        let d = self.obs_dim;
        for (w, sent) in sent.into_iter().enumerate() {
            let envs = self.workers[w].envs.clone();
            let reply = if sent {
                match self.workers[w].replies.recv_timeout(self.settings.timeout) {
                    Ok(Some(reply)) => Ok(reply),
                    Ok(None) | Err(RecvTimeoutError::Disconnected) => Err(None),
                    Err(RecvTimeoutError::Timeout) => Err(Some(self.settings.timeout)),
                }
            } else {
                Err(None)
            };
            let obs_rows = &mut obs[envs.start * d..envs.end * d];
            let finals = final_obs
                .as_deref_mut()
                .map(|f| &mut f[envs.start * d..envs.end * d]);
            match reply {
                Ok(reply) => self.read_reply(&reply, envs.clone(), obs_rows, finals, out)?,
                Err(hung) => self.restart(w, hung, obs_rows, &mut out[envs])?,
            }
        }
        Ok(())
    }

    /// Decode worker reply `reply` for `envs`.
    fn read_reply(
        &mut self,
        reply: &[u8],
        envs: Range<usize>,
        obs: &mut [f32],
        final_obs: Option<&mut [f32]>,
        out: &mut [Outcome],
    ) -> Result<()> {
        let (n, d) = (envs.len(), self.obs_dim);
        let bad = |what: &str| EnvError::Env {
            id: self.spec.id.clone(),
            message: format!("the Python worker sent a malformed reply ({what})"),
        };
        if reply.first() != Some(&b'O') || reply.len() < 1 + n * HEAD + n * d * 4 {
            return Err(bad("too short"));
        }
        let mut finals = 0;
        for (j, head) in reply[1..1 + n * HEAD].chunks_exact(HEAD).enumerate() {
            let o = Outcome {
                fault: head[0] != 0,
                reward: f32::from_le_bytes([head[1], head[2], head[3], head[4]]),
                terminated: head[5] != 0,
                truncated: head[6] != 0,
                has_final: head[7] != 0,
            };
            finals += o.has_final as usize;
            out[envs.start + j] = o;
        }
        let mut at = 1 + n * HEAD;
        read_f32s(&reply[at..at + n * d * 4], obs);
        at += n * d * 4;
        if reply.len() < at + finals * d * 4 {
            return Err(bad("final observations missing"));
        }
        if let Some(final_obs) = final_obs {
            // Packed in the reply; spread to the rows of the envs they belong to.
            let mut row = 0;
            for (j, o) in out[envs.clone()].iter().enumerate() {
                if o.has_final {
                    read_f32s(
                        &reply[at + row * d * 4..at + (row + 1) * d * 4],
                        &mut final_obs[j * d..(j + 1) * d],
                    );
                    row += 1;
                }
            }
        }
        at += finals * d * 4;
        while at + 8 <= reply.len() {
            let env = u32::from_le_bytes(reply[at..at + 4].try_into().unwrap_or_default()) as usize;
            let len =
                u32::from_le_bytes(reply[at + 4..at + 8].try_into().unwrap_or_default()) as usize;
            let text = String::from_utf8_lossy(&reply[at + 8..(at + 8 + len).min(reply.len())]);
            at += 8 + len;
            self.restarts[envs.start + env.min(n - 1)] += 1;
            self.fault(format!(
                "env {} raised an exception; it was made again and reset, and the step counts as a \
                 truncation:\n{}",
                envs.start + env,
                text.trim_end()
            ))?;
        }
        Ok(())
    }

    /// Count a fault, log it, and fail once there are too many.
    fn fault(&mut self, what: String) -> Result<()> {
        self.failures += 1;
        eprintln!(
            "engram: Python env `{}`: {what} (fault {} of at most {}, env.python_max_failures)",
            self.spec.id, self.failures, self.settings.max_failures
        );
        if self.failures > self.settings.max_failures {
            return Err(EnvError::Crashed {
                id: self.spec.id.clone(),
                message: format!(
                    "{} faults, more than env.python_max_failures = {}; fix the env (the tracebacks \
                     are above) or raise the limit",
                    self.failures, self.settings.max_failures
                ),
            });
        }
        Ok(())
    }

    /// Replace worker `w`, which died (`hung`: `None`) or did not answer in time, and reset its
    /// envs into `obs`, each one faulting.
    fn restart(
        &mut self,
        w: usize,
        hung: Option<Duration>,
        obs: &mut [f32],
        out: &mut [Outcome],
    ) -> Result<()> {
        let envs = self.workers[w].envs.clone();
        let what = match hung {
            Some(t) => format!(
                "did not answer within {:.1} s (env.python_timeout_s)",
                t.as_secs_f64()
            ),
            None => {
                let status = self.workers[w]
                    .child
                    .wait()
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                format!("died ({status})")
            }
        };
        self.fault(format!(
            "the worker of envs {}..{} {what}; it was started again and its envs reset, each step \
             counting as a truncation",
            envs.start, envs.end
        ))?;
        let (worker, _) = self.start(envs.clone())?;
        self.workers[w] = worker;
        let seeds: Vec<Option<u64>> = envs
            .clone()
            .map(|i| {
                self.restarts[i] += 1;
                self.seeds[i].map(|s| s.wrapping_add(SEED_STRIDE.wrapping_mul(self.restarts[i])))
            })
            .collect();
        let message = reset_message(&seeds);
        write_frame(&mut self.workers[w].stdin, &message).map_err(|e| self.io_error(e))?;
        let reply = match self.workers[w].replies.recv_timeout(self.settings.timeout) {
            Ok(Some(reply)) => reply,
            _ => {
                return Err(EnvError::Crashed {
                    id: self.spec.id.clone(),
                    message: "a restarted Python worker failed its first reset; see the log above"
                        .into(),
                })
            }
        };
        let mut scratch = vec![Outcome::default(); self.num_envs];
        self.read_reply(&reply, envs.clone(), obs, None, &mut scratch)?;
        for o in out.iter_mut() {
            *o = Outcome {
                fault: true,
                truncated: true,
                ..Outcome::default()
            };
        }
        Ok(())
    }

    fn io_error(&self, e: std::io::Error) -> EnvError {
        EnvError::Crashed {
            id: self.spec.id.clone(),
            message: format!("cannot talk to its Python worker: {e}"),
        }
    }

    /// Start a worker for `envs` and read its spec.
    fn start(&self, envs: Range<usize>) -> Result<(Worker, EnvSpec)> {
        let id = self.target.id();
        let python = self.settings.interpreter();
        let config = serde_json::json!({
            "kind": self.target.kind(),
            "target": self.target.name(),
            "kwargs": self.kwargs,
            "imports": self.settings.imports,
            "wrappers": self.settings.wrappers,
            "sys_path": self.settings.sys_path,
            "num_envs": envs.len(),
        });
        let mut child = Command::new(&python)
            .arg("-c")
            .arg(WORKER_PY)
            .env("ENGRAM_PY_WORKER", config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| EnvError::Env {
                id: id.clone(),
                message: format!(
                    "cannot start the Python interpreter `{}` ({e}); set env.python_interpreter \
                     (or ENGRAM_PYTHON) to a Python with gymnasium installed",
                    python.display()
                ),
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, replies) = mpsc::channel();
        std::thread::Builder::new()
            .name("engram-py-reader".into())
            .spawn(move || loop {
                let frame = read_frame(&mut stdout);
                let end = frame.is_none();
                if tx.send(frame).is_err() || end {
                    return;
                }
            })
            .map_err(|e| EnvError::Env {
                id: id.clone(),
                message: format!("cannot start a reader thread: {e}"),
            })?;
        let mut worker = Worker {
            child,
            stdin,
            replies,
            envs,
        };
        let startup = self.settings.timeout.max(Duration::from_secs(60));
        let hello = match worker.replies.recv_timeout(startup) {
            Ok(Some(hello)) => hello,
            Ok(None) | Err(_) => {
                let status = worker.child.try_wait().ok().flatten();
                return Err(EnvError::Env {
                    id,
                    message: format!(
                        "its Python worker ({}) {} before describing the env; see its output above",
                        python.display(),
                        status.map_or_else(
                            || format!("did not answer within {} s", startup.as_secs()),
                            |s| format!("exited ({s})")
                        )
                    ),
                });
            }
        };
        match hello.split_first() {
            Some((b'H', json)) => {
                let wire: WireSpec = serde_json::from_slice(json).map_err(|e| EnvError::Env {
                    id: id.clone(),
                    message: format!("the Python worker sent an unreadable spec: {e}"),
                })?;
                let mut spec =
                    EnvSpec::new(id, wire.observation_space.into(), wire.action_space.into());
                spec.max_episode_steps = wire.max_episode_steps;
                Ok((worker, spec))
            }
            Some((b'E', text)) => Err(EnvError::Env {
                id,
                message: format!(
                    "the Python env could not be made ({}):\n{}\n{}",
                    python.display(),
                    String::from_utf8_lossy(text).trim_end(),
                    self.target.hint()
                ),
            }),
            _ => Err(EnvError::Env {
                id,
                message: "the Python worker sent no spec".into(),
            }),
        }
    }
}

/// `R` + per env (has seed, seed).
fn reset_message(seeds: &[Option<u64>]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + seeds.len() * 9);
    m.push(b'R');
    for s in seeds {
        m.push(s.is_some() as u8);
        m.extend_from_slice(&s.unwrap_or(0).to_le_bytes());
    }
    m
}

fn write_frame(w: &mut ChildStdin, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)?;
    w.flush()
}

fn read_frame(r: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn read_f32s(bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

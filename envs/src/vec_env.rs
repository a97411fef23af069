//! `VecEnv`: E environments over one contiguous observation buffer, with autoreset and episode stats.

use std::panic::{self, AssertUnwindSafe};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::env::{Env, EnvSpec, Step};
use crate::error::{EnvError, Result};
use crate::python::{Command1, Outcome, Target, WorkerPool};
use crate::space::Action;

/// What happens when a sub-environment's episode ends (Gymnasium 1.x `AutoresetMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoresetMode {
    /// The ending step resets at once: `obs()` holds the new episode's first observation and
    /// `final_obs(i)` the last observation of the episode that ended (Gymnasium `SAME_STEP`).
    /// Engram's default: no step is wasted and truncated episodes can bootstrap.
    #[default]
    SameStep,
    /// The ending step returns the final observation in `obs()`; the next `step` ignores that
    /// env's action, resets it and returns its first observation with reward 0 and both flags
    /// false (Gymnasium `NEXT_STEP`).
    NextStep,
    /// No automatic reset: the caller resets ended envs with [`VecEnv::reset_done`]; stepping
    /// an ended env is an error (Gymnasium `DISABLED`).
    Disabled,
}

/// A batch of actions, one per env, row-major.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ActionBatch<'a> {
    /// One integer per env.
    Discrete(&'a [i64]),
    /// `action_len` integers per env.
    MultiDiscrete(&'a [i64]),
    /// `action_len` floats per env.
    Continuous(&'a [f32]),
}

impl ActionBatch<'_> {
    fn len(&self) -> usize {
        match self {
            ActionBatch::Discrete(v) | ActionBatch::MultiDiscrete(v) => v.len(),
            ActionBatch::Continuous(v) => v.len(),
        }
    }

    #[inline]
    fn get(&self, i: usize, width: usize) -> Action<'_> {
        match self {
            ActionBatch::Discrete(v) => Action::Discrete(v[i]),
            ActionBatch::MultiDiscrete(v) => Action::MultiDiscrete(&v[i * width..(i + 1) * width]),
            ActionBatch::Continuous(v) => Action::Continuous(&v[i * width..(i + 1) * width]),
        }
    }
}

/// Return and length of an episode that just ended.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct EpisodeStats {
    /// Undiscounted return.
    pub episode_return: f64,
    /// Number of steps.
    pub length: u64,
}

/// Settings of a [`VecEnv`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VecEnvConfig {
    /// Autoreset semantics.
    pub autoreset: AutoresetMode,
    /// Step envs in parallel with rayon when there are at least this many.
    pub parallel_threshold: usize,
}

impl Default for VecEnvConfig {
    fn default() -> Self {
        VecEnvConfig {
            autoreset: AutoresetMode::SameStep,
            parallel_threshold: 256,
        }
    }
}

/// Per-env state kept beside the environment.
struct Slot {
    env: Box<dyn Env>,
    episode_return: f64,
    length: u64,
    /// NextStep/Disabled: the episode ended on the previous step.
    ended: bool,
    /// Panics raised by this env's `step` (each one contained and followed by a reset).
    panics: u64,
}

/// Python envs of a VecEnv: their worker pool and the bookkeeping a [`Slot`] holds for a local env.
struct PythonEnvs {
    pool: WorkerPool,
    /// Per env: (episode return, length, ended).
    book: Vec<(f64, u64, bool)>,
    outcomes: Vec<Outcome>,
    commands: Vec<Command1>,
    actions: Vec<f64>,
}

/// E environments stepped together into one `[E, obs_dim]` f32 buffer.
///
/// Seeding follows Gymnasium's `SyncVectorEnv`: `reset(Some(s))` seeds env `i` with `s + i`;
/// later resets (autoresets included) continue each env's own RNG stream.
///
/// Python envs (`gymnasium:` and `python:` ids) are stepped in worker processes instead: all
/// workers get their actions before any reply is read, and a worker resets its envs itself
/// (SameStep). A Python exception, a dead or a hung worker is contained like a panic.
pub struct VecEnv {
    slots: Vec<Slot>,
    python: Option<PythonEnvs>,
    spec: EnvSpec,
    obs_dim: usize,
    action_len: usize,
    config: VecEnvConfig,
    obs: Vec<f32>,
    final_obs: Vec<f32>,
    has_final: Vec<bool>,
    rewards: Vec<f32>,
    terminated: Vec<bool>,
    truncated: Vec<bool>,
    episodes: Vec<Option<EpisodeStats>>,
}

impl VecEnv {
    /// Group `envs`, which must all have the same spaces.
    pub fn new(envs: Vec<Box<dyn Env>>, config: VecEnvConfig) -> Result<Self> {
        let first = envs.first().ok_or_else(|| EnvError::Env {
            id: "VecEnv".into(),
            message: "needs at least one environment".into(),
        })?;
        let spec = first.spec().clone();
        for e in &envs {
            let s = e.spec();
            if s.observation_space != spec.observation_space || s.action_space != spec.action_space
            {
                return Err(EnvError::Env {
                    id: s.id.clone(),
                    message: format!(
                        "its spaces differ from those of `{}`; a VecEnv needs identical spaces",
                        spec.id
                    ),
                });
            }
        }
        let n = envs.len();
        let slots = envs
            .into_iter()
            .map(|env| Slot {
                env,
                episode_return: 0.0,
                length: 0,
                ended: false,
                panics: 0,
            })
            .collect();
        Ok(Self::assemble(slots, None, spec, n, config))
    }

    /// A VecEnv of `n` envs (local `slots` or `python` ones) with fresh buffers.
    fn assemble(
        slots: Vec<Slot>,
        python: Option<PythonEnvs>,
        spec: EnvSpec,
        n: usize,
        config: VecEnvConfig,
    ) -> Self {
        let obs_dim = spec.obs_dim();
        VecEnv {
            slots,
            python,
            action_len: spec.action_space.action_len(),
            spec,
            obs_dim,
            config,
            obs: vec![0.0; n * obs_dim],
            final_obs: vec![0.0; n * obs_dim],
            has_final: vec![false; n],
            rewards: vec![0.0; n],
            terminated: vec![false; n],
            truncated: vec![false; n],
            episodes: vec![None; n],
        }
    }

    /// `num_envs` copies of registry environment `id`.
    pub fn make(
        id: &str,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        num_envs: usize,
        config: VecEnvConfig,
    ) -> Result<Self> {
        if let Some(target) = Target::parse(id) {
            return Self::python(WorkerPool::spawn(target?, kwargs, num_envs)?, config);
        }
        let envs = (0..num_envs)
            .map(|_| crate::catalog::make(id, kwargs))
            .collect::<Result<Vec<_>>>()?;
        Self::new(envs, config)
    }

    /// Python envs in `pool`.
    fn python(pool: WorkerPool, config: VecEnvConfig) -> Result<Self> {
        let n = pool.num_envs();
        let spec = pool.spec().clone();
        let action_len = spec.action_space.action_len();
        let python = PythonEnvs {
            pool,
            book: vec![(0.0, 0, false); n],
            outcomes: vec![Outcome::default(); n],
            commands: vec![Command1::Step; n],
            actions: vec![0.0; n * action_len],
        };
        Ok(Self::assemble(vec![], Some(python), spec, n, config))
    }

    /// Number of environments.
    pub fn num_envs(&self) -> usize {
        self.rewards.len()
    }

    /// Spec shared by all environments.
    pub fn spec(&self) -> &EnvSpec {
        &self.spec
    }

    /// Flat observation length of one env.
    pub fn obs_dim(&self) -> usize {
        self.obs_dim
    }

    /// Reset every env (env `i` seeded with `seed + i` when a seed is given).
    pub fn reset(&mut self, seed: Option<u64>) -> Result<&[f32]> {
        let d = self.obs_dim;
        if let Some(py) = &mut self.python {
            let seeds: Vec<Option<u64>> = (0..py.book.len())
                .map(|i| seed.map(|s| s.wrapping_add(i as u64)))
                .collect();
            py.pool.reset(&seeds, &mut self.obs, &mut py.outcomes)?;
            py.book.fill((0.0, 0, false));
        }
        for (i, (slot, obs)) in self
            .slots
            .iter_mut()
            .zip(self.obs.chunks_mut(d))
            .enumerate()
        {
            slot.env
                .reset(seed.map(|s| s.wrapping_add(i as u64)), obs)?;
            slot.episode_return = 0.0;
            slot.length = 0;
            slot.ended = false;
        }
        self.has_final.fill(false);
        self.rewards.fill(0.0);
        self.terminated.fill(false);
        self.truncated.fill(false);
        self.episodes.fill(None);
        Ok(&self.obs)
    }

    /// Disabled mode: reset the envs whose episode has ended (continuing their RNG streams).
    pub fn reset_done(&mut self) -> Result<()> {
        let d = self.obs_dim;
        if let Some(py) = &mut self.python {
            for (c, b) in py.commands.iter_mut().zip(&py.book) {
                *c = if b.2 { Command1::Reset } else { Command1::Keep };
            }
            py.pool.step(
                &py.commands,
                &py.actions,
                false,
                &mut self.obs,
                &mut self.final_obs,
                &mut py.outcomes,
            )?;
            for b in &mut py.book {
                *b = (0.0, 0, false);
            }
            return Ok(());
        }
        for (slot, obs) in self.slots.iter_mut().zip(self.obs.chunks_mut(d)) {
            if slot.ended {
                slot.env.reset(None, obs)?;
                slot.ended = false;
                slot.episode_return = 0.0;
                slot.length = 0;
            }
        }
        Ok(())
    }

    /// Step every env with its action; results are read with the accessors.
    pub fn step(&mut self, actions: ActionBatch<'_>) -> Result<()> {
        let n = self.num_envs();
        let width = self.action_len;
        if actions.len() != n * width {
            return Err(EnvError::BufferSize {
                id: self.spec.id.clone(),
                what: "actions",
                got: actions.len(),
                expected: n * width,
            });
        }
        if self.python.is_some() {
            return self.step_python(actions);
        }
        let d = self.obs_dim;
        let mode = self.config.autoreset;
        if n >= self.config.parallel_threshold {
            // One contiguous block of envs per thread: the work per env is uniform and tiny.
            let chunk = n.div_ceil(rayon::current_num_threads()).max(1);
            (
                self.slots.par_iter_mut(),
                self.obs.par_chunks_mut(d),
                self.final_obs.par_chunks_mut(d),
                self.has_final.par_iter_mut(),
                self.rewards.par_iter_mut(),
                self.terminated.par_iter_mut(),
                self.truncated.par_iter_mut(),
                self.episodes.par_iter_mut(),
            )
                .into_par_iter()
                .enumerate()
                .with_min_len(chunk)
                .try_for_each(
                    |(i, (slot, obs, fin, has_final, reward, term, trunc, episode))| {
                        Lane {
                            slot,
                            obs,
                            fin,
                            has_final,
                            reward,
                            term,
                            trunc,
                            episode,
                            action: actions.get(i, width),
                        }
                        .step(mode)
                    },
                )
        } else {
            let lanes = self
                .slots
                .iter_mut()
                .zip(self.obs.chunks_mut(d))
                .zip(self.final_obs.chunks_mut(d))
                .zip(self.has_final.iter_mut())
                .zip(self.rewards.iter_mut())
                .zip(self.terminated.iter_mut())
                .zip(self.truncated.iter_mut())
                .zip(self.episodes.iter_mut());
            for (i, (((((((slot, obs), fin), has_final), reward), term), trunc), episode)) in
                lanes.enumerate()
            {
                Lane {
                    slot,
                    obs,
                    fin,
                    has_final,
                    reward,
                    term,
                    trunc,
                    episode,
                    action: actions.get(i, width),
                }
                .step(mode)?;
            }
            Ok(())
        }
    }

    /// Observations `[E, obs_dim]` after the last reset or step.
    pub fn obs(&self) -> &[f32] {
        &self.obs
    }

    /// Rewards of the last step.
    pub fn rewards(&self) -> &[f32] {
        &self.rewards
    }

    /// Terminated flags of the last step.
    pub fn terminated(&self) -> &[bool] {
        &self.terminated
    }

    /// Truncated flags of the last step.
    pub fn truncated(&self) -> &[bool] {
        &self.truncated
    }

    /// SameStep mode: the last observation of env `i`'s episode if it ended on the last step
    /// (the observation to bootstrap from when it was truncated). In the other modes the final
    /// observation is in [`VecEnv::obs`].
    pub fn final_obs(&self, i: usize) -> Option<&[f32]> {
        self.has_final[i].then(|| &self.final_obs[i * self.obs_dim..(i + 1) * self.obs_dim])
    }

    /// Episodes that ended on the last step, by env index.
    pub fn finished_episodes(&self) -> impl Iterator<Item = (usize, EpisodeStats)> + '_ {
        self.episodes
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (i, e)))
    }

    /// Panics raised by the envs' `step` since creation. Each was contained: the env was reset
    /// and the step reported as a truncation without a final observation (`final_obs` is
    /// `None`) and without episode statistics.
    ///
    /// For Python envs: the faults contained (exceptions, dead and hung workers).
    pub fn panics(&self) -> u64 {
        match &self.python {
            Some(py) => py.pool.failures(),
            None => self.slots.iter().map(|s| s.panics).sum(),
        }
    }

    /// Borrow env `i` (e.g. to render it); `None` for Python envs, which live in workers.
    pub fn env(&self, i: usize) -> Option<&dyn Env> {
        self.slots.get(i).map(|s| s.env.as_ref())
    }

    /// [`VecEnv::step`] for Python envs: one exchange with every worker.
    fn step_python(&mut self, actions: ActionBatch<'_>) -> Result<()> {
        let width = self.action_len;
        let mode = self.config.autoreset;
        let py = self.python.as_mut().expect("python envs");
        for i in 0..py.book.len() {
            let action = actions.get(i, width);
            if !self.spec.action_space.contains(&action) {
                return Err(EnvError::InvalidAction {
                    id: self.spec.id.clone(),
                    action: action.to_string(),
                    space: self.spec.action_space.to_string(),
                });
            }
            py.commands[i] = if py.book[i].2 {
                if mode == AutoresetMode::Disabled {
                    return Err(EnvError::NeedsReset {
                        id: self.spec.id.clone(),
                        when: "after the episode ended",
                    });
                }
                Command1::Reset
            } else {
                Command1::Step
            };
        }
        match actions {
            ActionBatch::Discrete(v) | ActionBatch::MultiDiscrete(v) => {
                for (o, &a) in py.actions.iter_mut().zip(v) {
                    *o = a as f64;
                }
            }
            ActionBatch::Continuous(v) => {
                for (o, &a) in py.actions.iter_mut().zip(v) {
                    *o = a as f64;
                }
            }
        }
        py.pool.step(
            &py.commands,
            &py.actions,
            mode == AutoresetMode::SameStep,
            &mut self.obs,
            &mut self.final_obs,
            &mut py.outcomes,
        )?;
        for i in 0..py.book.len() {
            let o = py.outcomes[i];
            let book = &mut py.book[i];
            self.has_final[i] = false;
            self.episodes[i] = None;
            if o.fault || py.commands[i] == Command1::Reset {
                // A fault is contained as a panic is: new episode (already reset by the pool),
                // the step reported as a truncation without final observation or statistics.
                *book = (0.0, 0, o.fault && mode != AutoresetMode::SameStep);
                self.rewards[i] = 0.0;
                self.terminated[i] = false;
                self.truncated[i] = o.fault;
                continue;
            }
            self.rewards[i] = o.reward;
            self.terminated[i] = o.terminated;
            self.truncated[i] = o.truncated;
            book.0 += o.reward as f64;
            book.1 += 1;
            if o.terminated || o.truncated {
                self.episodes[i] = Some(EpisodeStats {
                    episode_return: book.0,
                    length: book.1,
                });
                if mode == AutoresetMode::SameStep {
                    self.has_final[i] = o.has_final;
                    *book = (0.0, 0, false);
                } else {
                    book.2 = true;
                }
            }
        }
        Ok(())
    }
}

/// Everything one env's step touches, so the sequential and parallel paths share one body.
struct Lane<'a> {
    slot: &'a mut Slot,
    obs: &'a mut [f32],
    fin: &'a mut [f32],
    has_final: &'a mut bool,
    reward: &'a mut f32,
    term: &'a mut bool,
    trunc: &'a mut bool,
    episode: &'a mut Option<EpisodeStats>,
    action: Action<'a>,
}

impl Lane<'_> {
    #[inline]
    fn step(self, mode: AutoresetMode) -> Result<()> {
        let slot = self.slot;
        *self.has_final = false;
        *self.episode = None;
        if slot.ended {
            if mode == AutoresetMode::Disabled {
                return Err(EnvError::NeedsReset {
                    id: slot.env.spec().id.clone(),
                    when: "after the episode ended",
                });
            }
            slot.env.reset(None, self.obs)?;
            slot.ended = false;
            slot.episode_return = 0.0;
            slot.length = 0;
            *self.reward = 0.0;
            *self.term = false;
            *self.trunc = false;
            return Ok(());
        }
        let env = &mut slot.env;
        let (action, obs) = (self.action, &mut *self.obs);
        let stepped = panic::catch_unwind(AssertUnwindSafe(|| env.step(action, obs)));
        let crashed = match &stepped {
            Err(_) | Ok(Err(EnvError::Crashed { .. })) => true,
            Ok(_) => false,
        };
        let (false, Ok(result)) = (crashed, stepped) else {
            // A panicking (or crashed plugin) env is contained: its state is unknown, so it starts
            // a new episode (SameStep: now; the other modes: as after any ending step). The
            // aborted episode is reported as truncated, with no final observation to bootstrap
            // from (SameStep) and no episode statistics. A panic in that reset is not contained.
            slot.panics += 1;
            slot.episode_return = 0.0;
            slot.length = 0;
            if mode == AutoresetMode::SameStep {
                slot.env.reset(None, self.obs)?;
            } else {
                slot.ended = true;
            }
            *self.reward = 0.0;
            *self.term = false;
            *self.trunc = true;
            return Ok(());
        };
        let Step {
            reward,
            terminated,
            truncated,
        } = result?;
        *self.reward = reward;
        *self.term = terminated;
        *self.trunc = truncated;
        slot.episode_return += reward as f64;
        slot.length += 1;
        if terminated || truncated {
            *self.episode = Some(EpisodeStats {
                episode_return: slot.episode_return,
                length: slot.length,
            });
            if mode == AutoresetMode::SameStep {
                self.fin.copy_from_slice(self.obs);
                *self.has_final = true;
                slot.env.reset(None, self.obs)?;
                slot.episode_return = 0.0;
                slot.length = 0;
            } else {
                slot.ended = true;
            }
        }
        Ok(())
    }
}

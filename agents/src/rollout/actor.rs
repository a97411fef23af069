//! An actor: one VecEnv, a no-autodiff policy copy and the core state of every env.

use burn::tensor::Device;
use engram_envs::{ActionBatch, Space, VecEnv, VecEnvConfig};
use engram_memory::{CoreState, RecurrentCore};
use rand::SeedableRng;
use rand_pcg::Pcg64;

use super::chunk::{ActionData, Chunk};
use super::layout::SequenceLayout;
use crate::config::TrainConfig;
use crate::error::Result;
use crate::policy::distribution::{self, ActionKind};
use crate::policy::{matrix, read, Policy, PolicyInput};

/// Steps its envs with a policy copy and hands back [`Chunk`]s.
pub struct Actor {
    envs: VecEnv,
    policy: Policy,
    policy_version: u64,
    state: CoreState,
    episode_starts: Vec<bool>,
    action: ActionKind,
    bounds: Option<(Vec<f32>, Vec<f32>)>,
    rng: Pcg64,
    device: Device,
    input: PolicyInput,
}

impl Actor {
    /// An actor over `envs` (reset with `seed`), acting with `policy` on `device` (no autodiff).
    pub fn new(mut envs: VecEnv, policy: Policy, seed: u64, device: Device) -> Result<Self> {
        envs.reset(Some(seed))?;
        let spec = envs.spec().clone();
        let action = ActionKind::for_space(&spec.id, &spec.action_space)?;
        let bounds = match &spec.action_space {
            Space::Box { low, high, .. } => Some((low.clone(), high.clone())),
            _ => None,
        };
        let n = envs.num_envs();
        let state = policy.core.init_state(n, &device);
        let input = policy.input(envs.obs_dim(), n);
        Ok(Actor {
            envs,
            policy,
            policy_version: 0,
            state,
            episode_starts: vec![true; n],
            action,
            bounds,
            rng: Pcg64::seed_from_u64(seed ^ 0x00ac_7012),
            device,
            input,
        })
    }

    /// Actor `index` of a run of `config` (envs of the stage with `kwargs`, seeded from the
    /// stage's seed base `seed` and the actor's `generation`, 0 unless recreated), acting with
    /// `policy` on `device`. Threads and remote actors are all made here.
    pub fn for_run(
        config: &TrainConfig,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        policy: Policy,
        device: &Device,
        seed: u64,
        index: usize,
        generation: u64,
    ) -> Result<Self> {
        let per_actor = config.envs_per_actor();
        let envs = Actor::make_envs(&config.env.id, kwargs, per_actor)?;
        let seed = seed
            .wrapping_add((index * per_actor) as u64)
            .wrapping_add(generation.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Actor::new(envs, policy, seed, device.clone())
    }

    /// Build the VecEnv of an actor.
    pub fn make_envs(
        id: &str,
        kwargs: &serde_json::Map<String, serde_json::Value>,
        n: usize,
    ) -> Result<VecEnv> {
        Ok(VecEnv::make(id, kwargs, n, VecEnvConfig::default())?)
    }

    /// Replace the acting policy with newer weights.
    pub fn set_policy(&mut self, policy: Policy, version: u64) {
        self.policy = policy;
        self.policy_version = version;
    }

    /// The acting policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Current core state of every env (flat `[E, W]`), e.g. for checkpoints.
    pub fn state_flat(&self) -> Vec<f32> {
        self.state.to_flat()
    }

    /// Collect one rollout of `layout.rollout_len()` steps per env, recording the core state
    /// before every sequence start.
    pub fn collect(&mut self, layout: SequenceLayout) -> Result<Chunk> {
        let len = layout.rollout_len();
        let n = self.envs.num_envs();
        let d = self.input.width();
        let k = self.action.action_len();
        let mut chunk = Chunk {
            num_envs: n,
            len,
            obs_dim: d,
            obs: Vec::with_capacity(len * n * d),
            actions: match self.action {
                ActionKind::Categorical(_) => ActionData::Int(Vec::with_capacity(len * n * k)),
                ActionKind::Gaussian(_) => ActionData::Float(Vec::with_capacity(len * n * k)),
            },
            action_len: k,
            log_probs: Vec::with_capacity(len * n),
            values: Vec::with_capacity(len * n),
            rewards: Vec::with_capacity(len * n),
            terminated: Vec::with_capacity(len * n),
            truncated: Vec::with_capacity(len * n),
            final_values: Vec::with_capacity(len * n),
            episode_starts: Vec::with_capacity(len * n),
            last_values: vec![],
            last_obs: vec![],
            last_starts: vec![],
            seq_states: Vec::with_capacity(layout.count()),
            episodes: vec![],
            policy_version: self.policy_version,
            env_panics: 0,
        };
        let panics_before = self.envs.panics();
        let mut int_actions = vec![0i64; n * k];
        let mut float_actions = vec![0f32; n * k];
        let mut clipped = vec![0f32; n * k];
        for t in 0..len {
            if t % layout.stride() == 0 && chunk.seq_states.len() < layout.count() {
                chunk.seq_states.push(self.state.to_flat());
            }
            let rows = self.input.rows(self.envs.obs());
            chunk.obs.extend_from_slice(&rows);
            chunk.episode_starts.extend_from_slice(&self.episode_starts);
            let state = std::mem::replace(&mut self.state, CoreState::from_parts(vec![]));
            let state = state.reset_rows(&self.episode_starts)?;
            let obs = matrix(rows, n, d, &self.device);
            let (out, values, state) = self.policy.step(obs, state)?;
            self.state = state;
            let out = read(out);
            chunk.values.extend(read(values));
            let w = self.action.head_width();
            match &self.action {
                ActionKind::Categorical(groups) => {
                    for e in 0..n {
                        let lp = distribution::categorical(
                            &mut self.rng,
                            &out[e * w..(e + 1) * w],
                            groups,
                            false,
                            &mut int_actions[e * k..(e + 1) * k],
                        );
                        chunk.log_probs.push(lp);
                    }
                    if let ActionData::Int(v) = &mut chunk.actions {
                        v.extend_from_slice(&int_actions);
                    }
                }
                ActionKind::Gaussian(_) => {
                    let std = self.policy.action_std();
                    for e in 0..n {
                        let sampled = &mut float_actions[e * k..(e + 1) * k];
                        let lp = distribution::gaussian(
                            &mut self.rng,
                            &out[e * w..e * w + k],
                            &std,
                            false,
                            sampled,
                        );
                        for (j, (&a, c)) in sampled
                            .iter()
                            .zip(&mut clipped[e * k..(e + 1) * k])
                            .enumerate()
                        {
                            *c = match &self.bounds {
                                Some((lo, hi)) => a.clamp(lo[j], hi[j]),
                                None => a,
                            };
                        }
                        chunk.log_probs.push(lp);
                    }
                    if let ActionData::Float(v) = &mut chunk.actions {
                        v.extend_from_slice(&float_actions);
                    }
                }
            }
            let batch = match (&self.action, k) {
                (ActionKind::Categorical(_), 1) => ActionBatch::Discrete(&int_actions),
                (ActionKind::Categorical(_), _) => ActionBatch::MultiDiscrete(&int_actions),
                (ActionKind::Gaussian(_), _) => ActionBatch::Continuous(&clipped),
            };
            self.envs.step(batch)?;
            match batch {
                ActionBatch::Continuous(a) => self.input.record_float(a, self.envs.rewards()),
                ActionBatch::Discrete(a) | ActionBatch::MultiDiscrete(a) => {
                    self.input.record_int(a, self.envs.rewards())
                }
            }
            chunk.rewards.extend_from_slice(self.envs.rewards());
            chunk.terminated.extend_from_slice(self.envs.terminated());
            chunk.truncated.extend_from_slice(self.envs.truncated());
            chunk.final_values.extend(self.final_values()?);
            for (e, s) in self.episode_starts.iter_mut().enumerate() {
                *s = self.envs.terminated()[e] || self.envs.truncated()[e];
            }
            self.input.reset(&self.episode_starts);
            chunk
                .episodes
                .extend(self.envs.finished_episodes().map(|(_, s)| s));
        }
        // Values after the last step, from a copy of the state (the next collect starts from it).
        let state = self.state.clone().reset_rows(&self.episode_starts)?;
        let rows = self.input.rows(self.envs.obs());
        let (_, values, _) = self
            .policy
            .step(matrix(rows.clone(), n, d, &self.device), state)?;
        chunk.last_values = read(values);
        chunk.last_obs = rows;
        chunk.last_starts = self.episode_starts.clone();
        chunk.env_panics = self.envs.panics() - panics_before;
        Ok(chunk)
    }

    /// Panics raised (and contained) in this actor's envs so far.
    pub fn env_panics(&self) -> u64 {
        self.envs.panics()
    }

    /// Version of the acting policy.
    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// `V(final observation)` for envs truncated on the last step (0 elsewhere, and where an
    /// env panicked: its aborted episode has no final observation).
    fn final_values(&self) -> Result<Vec<f32>> {
        let n = self.envs.num_envs();
        let rows: Vec<usize> = (0..n)
            .filter(|&e| {
                self.envs.truncated()[e]
                    && !self.envs.terminated()[e]
                    && self.envs.final_obs(e).is_some()
            })
            .collect();
        let mut out = vec![0.0; n];
        if rows.is_empty() {
            return Ok(out);
        }
        let d = self.input.width();
        let mut data = Vec::with_capacity(rows.len() * d);
        for &e in &rows {
            let fin = self.envs.final_obs(e).expect("filtered above");
            data.extend(self.input.row(e, fin));
        }
        let state = self.state.clone().select_rows(&rows)?;
        let (_, values, _) = self
            .policy
            .step(matrix(data, rows.len(), d, &self.device), state)?;
        for (&e, v) in rows.iter().zip(read(values)) {
            out[e] = v;
        }
        Ok(out)
    }
}

//! The training configuration: TOML sections `env`, `policy`, `ppo`, `run`, with `--set` overrides.

use engram_memory::CoreConfig;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// Everything a training run needs. Unknown keys are errors that name the valid keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Which environment and how many copies.
    pub env: EnvSection,
    /// Network shape.
    #[serde(default)]
    pub policy: PolicySection,
    /// Recurrent PPO hyperparameters.
    #[serde(default)]
    pub ppo: PpoSection,
    /// Run length, seed, device, logging and checkpoints.
    #[serde(default)]
    pub run: RunSection,
}

/// `[env]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    /// Registry id, e.g. `CartPole-v1`.
    pub id: String,
    /// Keyword arguments of the environment.
    #[serde(default)]
    pub kwargs: toml::Table,
    /// Environments stepped in parallel (split across actor threads).
    #[serde(default = "default_num_envs")]
    pub num_envs: usize,
}

/// `[policy]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySection {
    /// Hidden sizes of the observation encoder MLP (tanh).
    #[serde(default = "default_encoder")]
    pub encoder: Vec<usize>,
    /// The memory core (`kind = "lstm" | "gru" | "rims" | "brims" | "screened" | "rel_lstm"`);
    /// its `input_size` is filled in from the encoder.
    #[serde(default = "default_core")]
    pub core: CoreConfig,
}

/// `[ppo]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoSection {
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Anneal the learning rate linearly to 0 over the run.
    pub anneal_lr: bool,
    /// Steps per env per rollout.
    pub rollout_len: usize,
    /// Length of the training sequences (truncated BPTT), burn-in included.
    pub seq_len: usize,
    /// Leading steps of each sequence that only warm up the recurrent state (no loss).
    pub burn_in: usize,
    /// Recompute the stored sequence-initial states with the current weights each epoch.
    pub refresh_states: bool,
    /// Passes over the rollout per update.
    pub epochs: usize,
    /// Minibatches per epoch (each made of whole sequences).
    pub minibatches: usize,
    /// Discount.
    pub gamma: f64,
    /// GAE lambda.
    pub gae_lambda: f64,
    /// Policy ratio clip.
    pub clip_coef: f64,
    /// Clip the value loss around the old values.
    pub clip_vloss: bool,
    /// Entropy bonus coefficient.
    pub ent_coef: f64,
    /// Value loss coefficient.
    pub vf_coef: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Normalise advantages per minibatch.
    pub norm_adv: bool,
}

/// `[run]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunSection {
    /// Environment steps to train for.
    pub total_steps: u64,
    /// Seed of weights, environments and sampling.
    pub seed: u64,
    /// `cpu` (burn flex), `libtorch` or `cuda:N`.
    pub device: String,
    /// Parent directory of run directories.
    pub runs_dir: String,
    /// Run name (default: env id, core kind and seed).
    pub name: Option<String>,
    /// Actor threads stepping environments.
    pub actor_threads: usize,
    /// Save a checkpoint every this many updates (0: only at the end and on Ctrl-C).
    pub checkpoint_every: u64,
}

fn default_num_envs() -> usize {
    8
}
fn default_encoder() -> Vec<usize> {
    vec![64]
}
fn default_core() -> CoreConfig {
    CoreConfig::default_for("lstm", 0, 64).expect("lstm is a core kind")
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            encoder: default_encoder(),
            core: default_core(),
        }
    }
}

impl Default for PpoSection {
    fn default() -> Self {
        PpoSection {
            learning_rate: 2.5e-4,
            anneal_lr: true,
            rollout_len: 128,
            seq_len: 16,
            burn_in: 0,
            refresh_states: false,
            epochs: 4,
            minibatches: 4,
            gamma: 0.99,
            gae_lambda: 0.95,
            clip_coef: 0.2,
            clip_vloss: true,
            ent_coef: 0.01,
            vf_coef: 0.5,
            max_grad_norm: 0.5,
            norm_adv: true,
        }
    }
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            total_steps: 150_000,
            seed: 1,
            device: "cpu".into(),
            runs_dir: "runs".into(),
            name: None,
            actor_threads: 1,
            checkpoint_every: 25,
        }
    }
}

impl TrainConfig {
    /// Parse TOML text, apply `section.key=value` overrides, and validate.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| AgentError::Config(e.to_string()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let config: TrainConfig = table
            .try_into()
            .map_err(|e: toml::de::Error| AgentError::Config(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML (what a run directory stores).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| AgentError::Config(e.to_string()))
    }

    /// Check values that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let p = &self.ppo;
        let bad = |m: String| Err(AgentError::Config(m));
        if self.env.num_envs == 0 {
            return bad("env.num_envs must be at least 1".into());
        }
        if self.run.actor_threads == 0 || self.env.num_envs % self.run.actor_threads != 0 {
            return bad(format!(
                "run.actor_threads = {} must be at least 1 and divide env.num_envs = {}",
                self.run.actor_threads, self.env.num_envs
            ));
        }
        if p.seq_len == 0 || p.burn_in >= p.seq_len {
            return bad(format!(
                "ppo.seq_len = {} must be positive and above ppo.burn_in = {}",
                p.seq_len, p.burn_in
            ));
        }
        let stride = p.seq_len - p.burn_in;
        if p.rollout_len < p.seq_len || (p.rollout_len - p.seq_len) % stride != 0 {
            return bad(format!(
                "ppo.rollout_len = {} must be ppo.seq_len + a multiple of (seq_len - burn_in) = {stride} \
                 (e.g. rollout_len = {})",
                p.rollout_len,
                p.seq_len + stride * ((p.rollout_len.max(p.seq_len) - p.seq_len) / stride)
            ));
        }
        let sequences = self.env.num_envs * self.sequences_per_env();
        if p.minibatches == 0 || p.minibatches > sequences {
            return bad(format!("ppo.minibatches = {} must be in 1..={sequences} (the number of sequences per rollout)", p.minibatches));
        }
        if p.epochs == 0
            || p.learning_rate <= 0.0
            || !(0.0..=1.0).contains(&p.gamma)
            || !(0.0..=1.0).contains(&p.gae_lambda)
        {
            return bad(
                "ppo.epochs must be ≥ 1, learning_rate > 0, gamma and gae_lambda in [0, 1]".into(),
            );
        }
        if self.policy.encoder.contains(&0) {
            return bad("policy.encoder sizes must be positive".into());
        }
        Ok(())
    }

    /// Training sequences cut from each env's rollout.
    pub fn sequences_per_env(&self) -> usize {
        let p = &self.ppo;
        (p.rollout_len - p.seq_len) / (p.seq_len - p.burn_in) + 1
    }

    /// Environment steps per update.
    pub fn steps_per_update(&self) -> u64 {
        (self.env.num_envs * self.ppo.rollout_len) as u64
    }

    /// Updates in the whole run.
    pub fn total_updates(&self) -> u64 {
        self.run
            .total_steps
            .div_ceil(self.steps_per_update())
            .max(1)
    }
}

/// Apply one `section.key=value` override; the value is read as TOML, else as a string.
pub fn apply_override(table: &mut toml::Table, text: &str) -> Result<()> {
    let (path, raw) = text.split_once('=').ok_or_else(|| {
        AgentError::Config(format!("--set `{text}` must look like section.key=value"))
    })?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let keys: Vec<&str> = path.trim().split('.').collect();
    let (last, parents) = keys
        .split_last()
        .ok_or_else(|| AgentError::Config(format!("--set `{text}` has an empty key")))?;
    let mut node = table;
    for k in parents {
        node = node
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| AgentError::Config(format!("--set `{text}`: `{k}` is not a table")))?;
    }
    node.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n",
            &["ppo.learning_rate=1e-3".into(), "run.name=abc".into()],
        )
        .expect("valid");
        assert_eq!(c.ppo.learning_rate, 1e-3);
        assert_eq!(c.run.name.as_deref(), Some("abc"));
        assert_eq!(c.policy.core.kind(), "lstm");
        assert_eq!(c.sequences_per_env(), 8);
        let again = TrainConfig::from_toml(&c.to_toml().expect("toml"), &[]).expect("round trip");
        assert_eq!(again.ppo.learning_rate, 1e-3);
    }

    #[test]
    fn unknown_keys_name_the_valid_ones() {
        let err = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n[ppo]\nlerning_rate = 0.1\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("lerning_rate") && err.contains("learning_rate"),
            "{err}"
        );
        let err = TrainConfig::from_toml("[env]\nid = \"CartPole-v1\"\n", &["ppo.clip=0.1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`clip`") && err.contains("clip_coef"), "{err}");
        let err = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n[policy.core]\nkind = \"lstn\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("lstn") && err.contains("lstm"), "{err}");
    }

    #[test]
    fn sequence_geometry_is_checked() {
        let err = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n[ppo]\nrollout_len = 100\nseq_len = 16\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("rollout_len = 100"), "{err}");
        let c = TrainConfig::from_toml(
            "[env]\nid = \"CartPole-v1\"\n[ppo]\nrollout_len = 124\nseq_len = 16\nburn_in = 4\n",
            &[],
        )
        .expect("valid");
        assert_eq!(c.sequences_per_env(), 10);
    }
}

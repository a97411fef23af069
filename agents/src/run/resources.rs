//! Will the run fit? Memory and disk a config needs, estimated from its sizes before anything is allocated, against what the machine has.

use std::path::Path;

use crate::config::{Algo, TrainConfig};
use crate::error::{AgentError, Result};
use crate::policy::PolicyShape;

/// Bytes of one `f32`.
const F32: u64 = 4;
/// Space the logs of a run need beside its checkpoints before the first one is written.
const LOG_MARGIN: u64 = 16 << 20;

/// What a run needs in memory, by part, in bytes (an estimate from the config's sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// Scalar parameters of the policy.
    pub params: u64,
    /// Weights, gradients and Adam's two moments, plus each actor's acting copy.
    pub model: u64,
    /// The rollout (or queued chunks) and the envs' observation buffers.
    pub rollout: u64,
    /// What one minibatch's forward pass keeps for the backward pass.
    pub activations: u64,
}

impl MemoryEstimate {
    /// Work out the estimate for `config` with a policy of `shape` (on the host: a `cuda`
    /// learner keeps its model and activations on the GPU, so only the actors' copies count).
    pub fn new(config: &TrainConfig, shape: &PolicyShape, obs_dim: usize) -> Self {
        let n = |x: usize| x as u64;
        let params = shape.num_params(&config.policy);
        let on_gpu = config.run.device.starts_with("cuda");
        let actors = n(config.run.actor_threads).saturating_add(1);
        let learner_copies = if on_gpu { 0 } else { 4 };
        let model = params
            .saturating_mul(F32)
            .saturating_mul(learner_copies + actors);

        // Per step of one env: observation, action, log-prob, value, reward, flags, advantages.
        let per_step = n(obs_dim)
            .saturating_add(n(shape.head_width))
            .saturating_add(8);
        let hidden = n(config.policy.core.hidden_size());
        let stored_steps = match config.run.algo {
            Algo::Ppo => n(config.env.num_envs).saturating_mul(n(config.ppo.rollout_len)),
            Algo::Appo | Algo::Impala => {
                let chunks = n(config.async_.queue_capacity)
                    .saturating_add(n(config.batch_chunks()))
                    .saturating_add(n(config.run.actor_threads));
                chunks
                    .saturating_mul(n(config.envs_per_actor()))
                    .saturating_mul(n(config.async_.chunk_len))
            }
        };
        // Sequence-initial core states (h and c) beside the steps, one per sequence.
        let sequences = stored_steps / n(config.ppo.seq_len.max(1)) + n(config.env.num_envs);
        let env_buffers = n(config.env.num_envs).saturating_mul(n(obs_dim).saturating_mul(3) + 8);
        let rollout = stored_steps
            .saturating_mul(per_step)
            .saturating_add(sequences.saturating_mul(hidden.saturating_mul(2)))
            .saturating_add(env_buffers)
            .saturating_mul(F32);

        // Kept per training step: the encoder's and CNN's outputs before and after their
        // nonlinearity, the core's tape (gates, cell, attention: more for modular cores) and
        // the heads' inputs.
        let mut per_sample = shape.encoder.iter().fold(0u64, |sum, &(_, o)| {
            sum.saturating_add(n(o).saturating_mul(2))
        });
        if let Some(image) = shape.image {
            let [mut h, mut w, _] = image.shape;
            for c in &shape.conv {
                (h, w) = ((h - c.kernel) / c.stride + 1, (w - c.kernel) / c.stride + 1);
                per_sample = per_sample.saturating_add(n(c.out_channels * h * w).saturating_mul(2));
            }
        }
        let tape = if config.policy.core.is_modular() {
            48
        } else {
            16
        };
        per_sample = per_sample
            .saturating_add(hidden.saturating_mul(tape))
            .saturating_add(n(shape.head_input).saturating_mul(2));
        let samples = config.steps_per_update() / n(config.ppo.minibatches.max(1));
        let activations = if on_gpu {
            0
        } else {
            samples.saturating_mul(per_sample).saturating_mul(F32)
        };
        MemoryEstimate {
            params,
            model,
            rollout,
            activations,
        }
    }

    /// All parts together.
    pub fn total(&self) -> u64 {
        self.model
            .saturating_add(self.rollout)
            .saturating_add(self.activations)
    }

    /// Bytes of one checkpoint: weights and Adam's two moments.
    pub fn checkpoint_bytes(&self) -> u64 {
        self.params.saturating_mul(3 * F32).saturating_add(64 << 10)
    }

    /// Refuse the run if it cannot fit in `available` bytes of memory (of `total` on the
    /// machine); the error gives the estimate by part and what to lower.
    pub fn check_fits(&self, available: u64, total: u64) -> Result<()> {
        if self.total() <= available {
            return Ok(());
        }
        Err(AgentError::Config(format!(
            "this run needs about {} of memory ({} parameters: {} for weights, gradients, Adam and \
             the actors' copies; {} for the rollout and env buffers; {} of activations per \
             minibatch) but the machine has {} available (of {}); lower env.num_envs, \
             ppo.rollout_len or the policy's sizes (policy.core.hidden_size, policy.encoder), or \
             raise ppo.minibatches",
            bytes(self.total()),
            count(self.params),
            bytes(self.model),
            bytes(self.rollout),
            bytes(self.activations),
            bytes(available),
            bytes(total),
        )))
    }

    /// Refuse the run if the file system of `run_dir` has less than `free` bytes, too few for
    /// two checkpoints (the new one is written before the previous is removed) and the logs.
    pub fn check_disk(&self, run_dir: &Path, free: u64) -> Result<()> {
        let need = self
            .checkpoint_bytes()
            .saturating_mul(2)
            .saturating_add(LOG_MARGIN);
        if free >= need {
            return Ok(());
        }
        Err(AgentError::Config(format!(
            "the disk of {} has {} free, but this run needs at least {} (two checkpoints of {} \
             each and its logs); free some space or choose another run.runs_dir / --run-dir",
            run_dir.display(),
            bytes(free),
            bytes(need),
            bytes(self.checkpoint_bytes())
        )))
    }
}

/// Memory the machine has: `(available, total)` bytes, from `/proc/meminfo` (`None` where
/// it cannot be read, e.g. not on Linux: then nothing is refused).
pub fn machine_memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib.saturating_mul(1024))
    };
    Some((field("MemAvailable:")?, field("MemTotal:")?))
}

/// Bytes free for an unprivileged user on the file system holding `path` (`None` if it cannot
/// be asked).
pub fn free_disk(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated path and `stat` a buffer statvfs fills on success;
    // it is read only when the call returned 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between platforms (u32 or u64); widening is lossless.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let (blocks, block_size) = (stat.f_bavail as u64, stat.f_frsize as u64);
    Some(blocks.saturating_mul(block_size))
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`, or `more than 16 EiB` for a saturated estimate.
pub fn bytes(n: u64) -> String {
    if n == u64::MAX {
        return "more than 16 EiB".into();
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `70.4k`, `16.0M`, `4.0T` parameters.
fn count(n: u64) -> String {
    let n = n as f64;
    match n {
        x if x >= 1e12 => format!("{:.1}T", x / 1e12),
        x if x >= 1e9 => format!("{:.1}G", x / 1e9),
        x if x >= 1e6 => format!("{:.1}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
        assert_eq!(bytes(u64::MAX), "more than 16 EiB");
        assert_eq!(count(70_400), "70.4k");
        assert_eq!(count(16_000_000_000_000), "16.0T");
    }

    #[test]
    fn the_machine_reports_memory_and_disk() {
        let (available, total) = machine_memory().expect("/proc/meminfo on Linux");
        assert!(available > 0 && available <= total);
        assert!(free_disk(Path::new(".")).is_some_and(|b| b > 0));
        assert!(free_disk(Path::new("/no/such/dir/at/all")).is_none());
    }

    #[test]
    fn too_little_memory_or_disk_is_refused_with_the_estimate() {
        let est = MemoryEstimate {
            params: 1_000_000,
            model: 20 << 20,
            rollout: 10 << 20,
            activations: 2 << 20,
        };
        assert!(est.check_fits(32 << 20, 64 << 20).is_ok());
        let e = est.check_fits(31 << 20, 64 << 20).unwrap_err().to_string();
        assert!(e.contains("about 32.0 MiB"), "{e}");
        assert!(e.contains("1.0M parameters"), "{e}");
        assert!(e.contains("31.0 MiB available (of 64.0 MiB)"), "{e}");
        let need = est.checkpoint_bytes() * 2 + LOG_MARGIN;
        assert!(est.check_disk(Path::new("r"), need).is_ok());
        let e = est.check_disk(Path::new("r"), need - 1).unwrap_err();
        assert!(e.to_string().contains("the disk of r has"), "{e}");
    }
}

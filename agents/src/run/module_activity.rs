//! Module activity of modular cores over one episode, for TensorBoard histograms and images.

use burn::tensor::Device;
use engram_envs::{make, Action, Space};
use engram_memory::RecurrentCore;

use crate::error::Result;
use crate::logging::{activation_image, tags, RunLogger};
use crate::policy::{matrix, read, Policy};

/// Which episode to record module activity on.
pub struct ActivityProbe<'a> {
    /// Environment id.
    pub env_id: &'a str,
    /// Its keyword arguments.
    pub kwargs: &'a serde_json::Map<String, serde_json::Value>,
    /// Seed of the episode.
    pub seed: u64,
    /// Longest episode recorded.
    pub max_steps: usize,
}

/// Run one greedy episode and log module activations and attention at `step`.
/// Does nothing for cores without modules or memory.
pub fn log_module_activity(
    logger: &mut RunLogger,
    policy: &Policy,
    probe: &ActivityProbe<'_>,
    step: u64,
    device: &Device,
) -> Result<()> {
    let (env_id, kwargs, seed, max_steps) =
        (probe.env_id, probe.kwargs, probe.seed, probe.max_steps);
    let mut env = make(env_id, kwargs)?;
    let spec = env.spec().clone();
    let d = spec.obs_dim();
    let mut obs = vec![0.0f32; d];
    env.reset(Some(seed), &mut obs)?;
    let mut state = policy.core.init_state(1, device);
    let mut input = policy.input(d, 1);
    let mut masks: Vec<Vec<bool>> = Vec::new();
    let mut active_modules: Vec<Vec<f32>> = Vec::new();
    let mut attention: Vec<f32> = Vec::new();
    let mut memory_attention: Vec<f32> = Vec::new();
    let mut first_step_attention = None;
    for t in 0..max_steps {
        let (out, next, diag) = policy
            .step_with_diagnostics(matrix(input.rows(&obs), 1, input.width(), device), state)?;
        state = next;
        if diag.layers.is_empty() && diag.memory.is_none() {
            return Ok(());
        }
        let mut column = Vec::new();
        for (l, layer) in diag.layers.iter().enumerate() {
            let m = read(layer.active_mask.clone());
            if active_modules.len() <= l {
                active_modules.push(Vec::new());
            }
            for (i, &a) in m.iter().enumerate() {
                if a > 0.5 {
                    active_modules[l].push(i as f32);
                }
                column.push(a > 0.5);
            }
            if let Some(att) = layer
                .slot_attention("input")
                .or_else(|| layer.slot_attention("bottom_up"))
            {
                attention.extend(read(att));
            }
        }
        if let Some(mem) = &diag.memory {
            let att = read(mem.attention.clone());
            first_step_attention = Some(attention_on_age(&att, &read(mem.ages.clone()), t));
            memory_attention.extend(att);
        }
        masks.push(column);
        let out = read(out);
        let action = greedy(&spec.action_space, &out);
        let ints: Vec<i64> = action.iter().map(|&a| a as i64).collect();
        let act = match &spec.action_space {
            Space::Discrete { .. } => Action::Discrete(ints[0]),
            Space::MultiDiscrete { .. } => Action::MultiDiscrete(&ints),
            Space::Box { low, high, .. } => {
                let clipped: Vec<f32> = out
                    .iter()
                    .zip(low.iter().zip(high))
                    .map(|(x, (l, h))| x.clamp(*l, *h))
                    .collect();
                let step = env.step(Action::Continuous(&clipped), &mut obs)?;
                input.record_float(&clipped, &[step.reward]);
                if step.done() {
                    break;
                }
                continue;
            }
        };
        let step = env.step(act, &mut obs)?;
        input.record_int(&ints, &[step.reward]);
        if step.done() {
            break;
        }
    }
    for (l, active) in active_modules.iter().enumerate() {
        logger.histogram(
            &format!("{}/layer{l}", tags::MODULE_ACTIVATION_FREQUENCY),
            active,
            step,
        );
    }
    if !attention.is_empty() {
        logger.histogram(tags::MODULE_ATTENTION, &attention, step);
    }
    if !memory_attention.is_empty() {
        logger.histogram(
            &format!("{}/memory", tags::MODULE_ATTENTION),
            &memory_attention,
            step,
        );
    }
    if let Some(a) = first_step_attention {
        logger.scalar(tags::MEMORY_FIRST_STEP_ATTENTION, f64::from(a), step);
    }
    if masks.first().is_some_and(|c| !c.is_empty()) {
        logger.image(tags::MODULE_ACTIVATIONS, &activation_image(&masks), step);
    }
    Ok(())
}

/// The memory read's attention on the slot of age `age` (written `age` steps ago), 0 when no
/// slot holds that step's state.
fn attention_on_age(attention: &[f32], ages: &[f32], age: usize) -> f32 {
    attention
        .iter()
        .zip(ages)
        .filter(|(_, &a)| a == age as f32)
        .map(|(w, _)| w)
        .sum()
}

/// The most likely action per categorical group (or the mean for Gaussian heads).
fn greedy(space: &Space, out: &[f32]) -> Vec<usize> {
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i)
    };
    match space {
        Space::Discrete { .. } => vec![argmax(out)],
        Space::MultiDiscrete { nvec } => {
            let mut offset = 0;
            nvec.iter()
                .map(|&n| {
                    let a = argmax(&out[offset..offset + n as usize]);
                    offset += n as usize;
                    a
                })
                .collect()
        }
        Space::Box { .. } => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::attention_on_age;

    #[test]
    fn the_first_steps_attention_is_the_weight_of_the_slot_of_that_age() {
        // Slots: buffer ages 3, 2, 1 and a relevant slot of age 9; one empty slot (age −1).
        let att = [0.1, 0.2, 0.3, 0.4, 0.0];
        let ages = [3.0, 2.0, 1.0, 9.0, -1.0];
        assert_eq!(attention_on_age(&att, &ages, 9), 0.4);
        assert_eq!(attention_on_age(&att, &ages, 2), 0.2);
        assert_eq!(attention_on_age(&att, &ages, 5), 0.0);
    }
}

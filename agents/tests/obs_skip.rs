//! `policy.obs_skip`: the heads see the encoded input beside the core output, the same way when
//! acting step by step and when the learner unrolls a sequence.

use burn::tensor::Device;
use engram_agents::config::PolicySection;
use engram_agents::policy::{matrix, read, ActionKind, Policy};
use engram_memory::{CoreConfig, RecurrentCore};

const OBS: usize = 3;
const B: usize = 2;
const T: usize = 5;

fn policy(obs_skip: bool, device: &Device) -> Policy {
    let section = PolicySection {
        encoder: vec![8],
        core: CoreConfig::default_for("gru", 0, 6).expect("core"),
        obs_skip,
        ..Default::default()
    };
    device.seed(11);
    Policy::new(&section, OBS, &ActionKind::Categorical(vec![4]), device).expect("policy")
}

/// Observations `[B, OBS]` of step `t`.
fn obs(t: usize, device: &Device) -> burn::tensor::Tensor<2> {
    let data = (0..B * OBS)
        .map(|i| ((i * 7 + t * 3) % 11) as f32 / 5.0 - 1.0)
        .collect();
    matrix(data, B, OBS, device)
}

#[test]
fn heads_are_wider_by_the_encoder_width() {
    let device = Device::flex();
    assert_eq!(policy(false, &device).actor.weight.dims(), [6, 4]);
    assert_eq!(policy(true, &device).actor.weight.dims(), [6 + 8, 4]);
    assert_eq!(policy(true, &device).critic.weight.dims(), [6 + 8, 1]);
}

#[test]
fn unrolled_features_match_step_by_step_acting() {
    let device = Device::flex();
    let policy = policy(true, &device);
    // Acting: one step at a time, with an episode start for env 1 at t = 3.
    let starts: Vec<bool> = (0..B * T).map(|i| i % T == 0 || i == T + 3).collect();
    let mut state = policy.core.init_state(B, &device);
    let (mut logits, mut values) = (Vec::new(), Vec::new());
    for t in 0..T {
        let reset: Vec<bool> = (0..B).map(|b| starts[b * T + t]).collect();
        state = state.reset_rows(&reset).expect("reset");
        let (out, value, next) = policy.step(obs(t, &device), state).expect("step");
        logits.extend(read(out));
        values.extend(read(value));
        state = next;
    }
    // Learning: the same steps unrolled, time-major features through the heads.
    let state = policy.core.init_state(B, &device);
    let (features, _) = policy
        .unroll((0..T).map(|t| obs(t, &device)).collect(), state, &starts)
        .expect("unroll");
    assert_eq!(features.dims(), [T * B, 6 + 8]);
    let unrolled_logits = read(policy.actor.forward(features.clone()));
    let unrolled_values = read(policy.critic.forward(features));
    for (a, b) in logits.iter().zip(&unrolled_logits) {
        assert!((a - b).abs() < 1e-5, "logits {a} vs {b}");
    }
    for (a, b) in values.iter().zip(&unrolled_values) {
        assert!((a - b).abs() < 1e-5, "values {a} vs {b}");
    }
}

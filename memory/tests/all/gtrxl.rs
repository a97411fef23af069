//! GTrXL: the memory window (a step sees L·M steps back and no further), episode starts inside a sequence, gradients through the window, diagnostics.

use burn::tensor::{Tensor, TensorData};
use engram_memory::{GtrxlConfig, RecurrentCore};

use crate::common::*;

fn config(layers: usize, memory: usize) -> GtrxlConfig {
    GtrxlConfig::new(3, 8)
        .with_num_layers(layers)
        .with_num_heads(2)
        .with_memory_len(memory)
        .with_ff_size(12)
        // An open gate, so every block's attention reaches the output.
        .with_gate_bias(-2.0)
}

/// Outputs `[B, T, d]` of a sequence from the zero state.
fn outputs(core: &engram_memory::Gtrxl, x: Tensor<3>, starts: Option<&[bool]>) -> Vec<f32> {
    let b = x.dims()[0];
    let (y, _) = core
        .forward_sequence(x, core.init_state(b, &dev()), starts)
        .unwrap();
    host(&y)
}

/// `y[.., t, ..]` of row 0 from a flat `[1, T, d]` output.
fn at(y: &[f32], t: usize, d: usize) -> &[f32] {
    &y[t * d..(t + 1) * d]
}

#[test]
fn a_step_sees_layers_times_memory_steps_back_and_no_further() {
    let (layers, m, t, d) = (2, 3, 12, 8);
    let core = config(layers, m).init(&dev()).unwrap();
    let x = rand3([1, t, 3], 4, 1.0, &dev());
    let base = outputs(&core, x.clone(), None);
    // Change the input at step 2: step 2 + L·M still sees it, step 2 + L·M + 1 does not.
    let mut data = host(&x);
    for v in &mut data[2 * 3..3 * 3] {
        *v += 1.0;
    }
    let changed = outputs(
        &core,
        Tensor::from_data(TensorData::new(data, [1, t, 3]), &dev()),
        None,
    );
    for step in 0..t {
        let diff = max_diff(at(&base, step, d), at(&changed, step, d));
        if step < 2 || step > 2 + layers * m {
            assert_eq!(diff, 0.0, "step {step} must not see step 2");
        } else {
            assert!(diff > 1e-6, "step {step} must see step 2 (diff {diff})");
        }
    }
}

#[test]
fn an_episode_start_inside_a_sequence_hides_everything_before_it() {
    let (t, d) = (10, 8);
    let core = config(2, 4).init(&dev()).unwrap();
    let x = rand3([1, t, 3], 9, 1.0, &dev());
    let mut starts = vec![false; t];
    starts[6] = true;
    let y = outputs(&core, x.clone(), Some(&starts));
    let fresh = outputs(&core, x.narrow(1, 6, t - 6), None);
    for step in 6..t {
        assert!(max_diff(at(&y, step, d), at(&fresh, step - 6, d)) < 1e-5);
    }
}

#[test]
fn a_chunked_sequence_equals_the_whole_one_with_gradients_through_the_cached_window() {
    let t = 8;
    let cfg = config(2, 5);
    let core = cfg.init(&ad()).unwrap();
    let x = rand3([2, t, 3], 2, 1.0, &ad()).require_grad();
    let (whole, _) = core
        .forward_sequence(x.clone(), core.init_state(2, &ad()), None)
        .unwrap();
    let (first, state) = core
        .forward_sequence(x.clone().narrow(1, 0, 5), core.init_state(2, &ad()), None)
        .unwrap();
    let (second, _) = core
        .forward_sequence(x.clone().narrow(1, 5, t - 5), state, None)
        .unwrap();
    let chunked = Tensor::cat(vec![first, second], 1);
    assert_close(&whole, &chunked, 1e-5);
    // The last output's gradient reaches inputs in the previous chunk through the cache.
    let grads = chunked.narrow(1, t - 1, 1).sum().backward();
    let gx = host(&x.grad(&grads).unwrap());
    let first_chunk: f32 = gx[..5 * 3].iter().map(|v| v.abs()).sum();
    assert!(
        first_chunk > 0.0,
        "no gradient through the cached keys and values"
    );
    let whole_grads = whole.narrow(1, t - 1, 1).sum().backward();
    let gw = host(&x.grad(&whole_grads).unwrap());
    assert!(
        max_diff(&gx, &gw) < 1e-5,
        "chunked and whole gradients differ"
    );
}

#[test]
fn step_diagnostics_give_the_last_blocks_attention_over_the_window() {
    let m = 4;
    let core = config(1, m).init(&dev()).unwrap();
    let mut state = core.init_state(2, &dev());
    for step in 0..6 {
        let x = rand3([2, 1, 3], step, 1.0, &dev()).reshape([2, 3]);
        let (_, next, diag) = core.step_with_diagnostics(x, state).unwrap();
        state = next;
        let memory = diag.memory.expect("memory diagnostics");
        let att = host(&memory.attention);
        let valid = host(&memory.valid);
        let ages = host(&memory.ages);
        for row in 0..2 {
            let a = &att[row * (m + 1)..(row + 1) * (m + 1)];
            let v = &valid[row * (m + 1)..(row + 1) * (m + 1)];
            let cached = (step as usize).min(m);
            let expected: Vec<f32> = (0..=m)
                .map(|j| if j + cached >= m { 1.0 } else { 0.0 })
                .collect();
            assert_eq!(v, expected.as_slice(), "step {step}");
            assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            for j in 0..=m {
                if v[j] == 0.0 {
                    assert_eq!(a[j], 0.0);
                    assert_eq!(ages[row * (m + 1) + j], -1.0);
                } else {
                    assert_eq!(ages[row * (m + 1) + j], (m - j) as f32);
                }
            }
        }
    }
}

#[test]
fn bad_sizes_are_errors() {
    let err = GtrxlConfig::new(3, 10)
        .with_num_heads(4)
        .init(&dev())
        .unwrap_err()
        .to_string();
    assert!(err.contains("multiple of num_heads"), "{err}");
    assert!(GtrxlConfig::new(3, 8)
        .with_memory_len(0)
        .init(&dev())
        .is_err());
}

//! BRIMs: slot wiring, top-down switch, widths, multi-head ranking (§6.3).

use burn::tensor::Tensor;
use engram_memory::attention::top_k_active;
use engram_memory::{Brims, BrimsConfig, CoreState, ModularConfig, RecurrentCore};

use crate::common::*;

fn config(top_down: bool) -> BrimsConfig {
    BrimsConfig::new(6)
        .with_hidden_sizes(vec![12, 8])
        .with_num_modules(vec![4, 2])
        .with_top_k(vec![2, 1])
        .with_top_down(top_down)
        .with_modular(
            ModularConfig::new()
                .with_input_heads(4)
                .with_input_key_size(8)
                .with_comm_heads(2)
                .with_comm_key_size(4)
                .with_comm_value_size(4),
        )
}

fn state_with_top(core: &Brims, b: usize, top: Tensor<2>, d: &burn::tensor::Device) -> CoreState {
    let mut s = CoreState::from_parts(vec![
        rand2([b, 12], 1, 0.7, d),
        rand2([b, 12], 2, 0.7, d),
        top,
        rand2([b, 8], 3, 0.7, d),
    ]);
    s.check(&core.state_layout(), b).unwrap();
    s = CoreState::from_parts(s.parts);
    s
}

#[test]
fn layer_zero_reads_null_input_and_top_down_slots() {
    let d = dev();
    let core = config(true).init(&d).unwrap();
    let b = 2;
    let x = rand2([b, 6], 4, 1.0, &d);
    let (_, _, diag) = core
        .step_with_diagnostics(x.clone(), core.init_state(b, &d))
        .unwrap();
    let l0 = &diag.layers[0];
    assert_eq!(l0.slot_names, vec!["null", "input", "top_down"]);
    assert_eq!(l0.input_attention.as_ref().unwrap().dims(), [b, 4, 4, 3]);
    assert_eq!(diag.layers[1].slot_names, vec!["null", "bottom_up"]);
    // t = 0: the top-down slot is zero, so its key is zero: same score as the null slot.
    let td = host(&l0.top_down_attention().unwrap());
    let null = host(&l0.null_attention().unwrap());
    assert_eq!(td, null);

    // Perturbing h^top_{t−1} changes layer 0's attention and output.
    let s1 = state_with_top(&core, b, rand2([b, 8], 5, 0.7, &d), &d);
    let s2 = state_with_top(&core, b, rand2([b, 8], 6, 0.7, &d), &d);
    let (_, o1, d1) = core.step_with_diagnostics(x.clone(), s1).unwrap();
    let (_, o2, d2) = core.step_with_diagnostics(x.clone(), s2).unwrap();
    let a1 = host(d1.layers[0].input_attention.as_ref().unwrap());
    let a2 = host(d2.layers[0].input_attention.as_ref().unwrap());
    assert!(max_diff(&a1, &a2) > 0.0);
    assert!(max_diff(&host(&o1.parts[0]), &host(&o2.parts[0])) > 0.0);
}

#[test]
fn without_top_down_the_top_layer_does_not_reach_layer_zero() {
    let d = dev();
    let core = config(false).init(&d).unwrap();
    let b = 2;
    let x = rand2([b, 6], 4, 1.0, &d);
    let s1 = state_with_top(&core, b, rand2([b, 8], 5, 0.7, &d), &d);
    let s2 = state_with_top(&core, b, rand2([b, 8], 6, 0.7, &d), &d);
    let (_, o1, d1) = core.step_with_diagnostics(x.clone(), s1).unwrap();
    let (_, o2, _) = core.step_with_diagnostics(x, s2).unwrap();
    assert_eq!(d1.layers[0].slot_names, vec!["null", "input"]);
    assert_eq!(bits(&o1.parts[0]), bits(&o2.parts[0]));
    assert_eq!(bits(&o1.parts[1]), bits(&o2.parts[1]));
}

#[test]
fn upper_layer_reads_the_current_step_of_the_layer_below() {
    let d = dev();
    let core = config(true).init(&d).unwrap();
    let b = 3;
    let s = state_with_top(&core, b, rand2([b, 8], 7, 0.7, &d), &d);
    let x = rand2([b, 6], 8, 1.0, &d);
    let (y, out, _) = core.step_with_diagnostics(x, s.clone()).unwrap();
    // Re-run layer 1 by hand on layer 0's new state (passed up including inactive modules).
    let (h1, c1, _, _) = core.layers[1].step(
        vec![out.parts[0].clone()],
        s.parts[2].clone(),
        s.parts[3].clone(),
        &["null", "bottom_up"],
        false,
    );
    assert_eq!(bits(&h1), bits(&out.parts[2]));
    assert_eq!(bits(&c1), bits(&out.parts[3]));
    assert_eq!(bits(&y), bits(&h1));
}

#[test]
fn separate_and_concatenated_top_down_accept_any_widths() {
    let d = dev();
    for concat in [false, true] {
        let core = BrimsConfig::new(7)
            .with_hidden_sizes(vec![12, 10])
            .with_num_modules(vec![3, 2])
            .with_top_k(vec![2, 1])
            .with_concat_top_down(concat)
            .init(&d)
            .unwrap();
        let (y, s) = core
            .step(rand2([2, 7], 9, 1.0, &d), core.init_state(2, &d))
            .unwrap();
        assert_eq!(y.dims(), [2, 10]);
        assert_eq!(s.widths(), vec![12, 12, 10, 10]);
    }
}

#[test]
fn multi_head_ranking_uses_the_mean_null_attention() {
    let d = dev();
    let core = config(true).init(&d).unwrap();
    let b = 4;
    let s = state_with_top(&core, b, rand2([b, 8], 11, 0.7, &d), &d);
    let (_, _, diag) = core
        .step_with_diagnostics(rand2([b, 6], 12, 1.0, &d), s)
        .unwrap();
    for (l, k) in diag.layers.iter().zip([2usize, 1]) {
        let p = l.input_attention.clone().unwrap(); // [B, heads, n, S]
        let [bb, _, n, _] = p.dims();
        let mean_null = p.narrow(3, 0, 1).mean_dim(1).reshape([bb, n]);
        let expected = top_k_active(mean_null, k).float();
        assert_eq!(host(&expected), host(&l.active_mask));
    }
}

#[test]
fn mismatched_layer_lists_are_rejected() {
    let err = BrimsConfig::new(4)
        .with_hidden_sizes(vec![12, 8])
        .with_num_modules(vec![4])
        .init(&dev())
        .unwrap_err();
    assert!(err.to_string().contains("one entry per layer"), "{err}");
}

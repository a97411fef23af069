//! RIMs step: shapes, null slot, top-k, bit-exact inactive state, gradient masking,
//! communication and the reduction to an LSTM (§6.2).

use burn::module::Param;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Tensor, TensorData};
use engram_memory::attention::top_k_active;
use engram_memory::{
    CoreState, LstmConfig, MemoryError, ModularConfig, RecurrentCore, Rims, RimsConfig,
};

use crate::common::*;

const E: usize = 5;
const H: usize = 12;
const N: usize = 4;
const K: usize = 2;

fn small(device: &burn::tensor::Device) -> Rims {
    RimsConfig::new(E, H)
        .with_num_modules(N)
        .with_top_k(K)
        .with_modular(
            ModularConfig::new()
                .with_input_key_size(8)
                .with_comm_heads(2)
                .with_comm_key_size(4)
                .with_comm_value_size(4),
        )
        .init(device)
        .unwrap()
}

fn random_state(b: usize, seed: u64, device: &burn::tensor::Device) -> CoreState {
    CoreState::from_parts(vec![
        rand2([b, H], seed, 0.8, device),
        rand2([b, H], seed + 1, 0.8, device),
    ])
}

/// Active set by brute force: sort by (null attention ascending, index descending), take k.
fn brute_force(null: &[f32], n: usize, k: usize) -> Vec<bool> {
    let mut out = Vec::new();
    for row in null.chunks(n) {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)));
        let mut act = vec![false; n];
        for &i in &idx[..k] {
            act[i] = true;
        }
        out.extend(act);
    }
    out
}

#[test]
fn shapes_null_slot_and_probabilities() {
    let d = dev();
    let rims = RimsConfig::new(E, 24)
        .with_num_modules(6)
        .with_top_k(4)
        .init(&d)
        .unwrap();
    let b = 3;
    let x = rand2([b, E], 1, 1.0, &d);
    let h = rand2([b, 24], 2, 1.0, &d);
    let state = CoreState::from_parts(vec![h.clone(), rand2([b, 24], 3, 1.0, &d)]);
    let (y, s, diag) = rims.step_with_diagnostics(x.clone(), state).unwrap();
    assert_eq!(y.dims(), [b, 24]);
    assert_eq!(s.parts.len(), 2);
    let l = &diag.layers[0];
    let p = l.input_attention.clone().unwrap();
    assert_eq!(p.dims(), [b, 1, 6, 2]);
    assert_eq!(l.slot_names, vec!["null", "input"]);
    assert_eq!(l.active_mask.dims(), [b, 6]);
    let comm = l.communication_attention.clone().unwrap();
    assert_eq!(comm.dims(), [b, 4, 6, 6]);
    let sums = host(&comm.sum_dim(3));
    assert!(sums.iter().all(|v| (v - 1.0).abs() < 1e-5));
    // P[:, :, 1] = σ(s) with s = ⟨h_i W_Q^(i), x W_K⟩ / √64 (the null score is exactly 0).
    let att = rims.layer.attention.as_ref().unwrap();
    let q = att.query.forward(h.reshape([b, 6, 4])); // [B, n, 64]
    let wk = att.slot_kv[0].weight.val().narrow(1, 0, 64);
    let k = x.matmul(wk).unsqueeze_dim::<3>(2); // [B, 64, 1]
    let s_manual = q.matmul(k).div_scalar(8.0).reshape([b, 6]);
    let p1 = p.clone().narrow(3, 1, 1).reshape([b, 6]);
    assert_close(&p1, &sigmoid(s_manual), 1e-6);
    let p0 = p.narrow(3, 0, 1).reshape([b, 6]);
    assert_close(&(p0 + p1), &Tensor::ones([b, 6], &d), 1e-6);
}

#[test]
fn top_k_is_exact_and_matches_brute_force() {
    let d = dev();
    let rims = small(&d);
    let b = 5;
    let mut state = random_state(b, 10, &d);
    for t in 0..4 {
        let x = rand2([b, E], 20 + t, 1.0, &d);
        let (_, s, diag) = rims.step_with_diagnostics(x, state).unwrap();
        state = s;
        let l = &diag.layers[0];
        let mask = host(&l.active_mask);
        for row in mask.chunks(N) {
            assert_eq!(row.iter().filter(|&&v| v == 1.0).count(), K);
        }
        let null = host(&l.null_attention().unwrap());
        let expected = brute_force(&null, N, K);
        let got: Vec<bool> = mask.iter().map(|&v| v == 1.0).collect();
        assert_eq!(got, expected);
    }
}

#[test]
fn ties_at_the_zero_state_activate_the_highest_indices() {
    let d = dev();
    let rims = small(&d);
    let (_, _, diag) = rims
        .step_with_diagnostics(rand2([3, E], 1, 1.0, &d), rims.init_state(3, &d))
        .unwrap();
    let mask = host(&diag.layers[0].active_mask);
    assert_eq!(mask, [0.0, 0.0, 1.0, 1.0].repeat(3));
    // all-tied scores: the same rule, any k
    let tied = Tensor::<2>::zeros([2, 5], &d);
    let m: Vec<bool> = top_k_active(tied, 3)
        .into_data()
        .try_into_vec_as::<bool>()
        .unwrap();
    assert_eq!(m, [false, false, true, true, true].repeat(2));
    // k = n: everything active
    let all: Vec<bool> = top_k_active(rand2([2, 5], 3, 1.0, &d), 5)
        .into_data()
        .try_into_vec_as::<bool>()
        .unwrap();
    assert!(all.iter().all(|&v| v));
}

#[test]
fn inactive_modules_keep_their_state_bit_for_bit() {
    let d = dev();
    let rims = small(&d);
    let b = 4;
    let dd = H / N;
    let mut state = random_state(b, 30, &d);
    for t in 0..5 {
        let before_h = host(&state.parts[0]);
        let before_c = host(&state.parts[1]);
        let (_, s, diag) = rims
            .step_with_diagnostics(rand2([b, E], 40 + t, 1.0, &d), state)
            .unwrap();
        let mask = host(&diag.layers[0].active_mask);
        let (after_h, after_c) = (host(&s.parts[0]), host(&s.parts[1]));
        let mut changed_active = false;
        for row in 0..b {
            for i in 0..N {
                let cols = row * H + i * dd..row * H + (i + 1) * dd;
                if mask[row * N + i] == 0.0 {
                    for c in cols {
                        assert_eq!(after_h[c].to_bits(), before_h[c].to_bits());
                        assert_eq!(after_c[c].to_bits(), before_c[c].to_bits());
                    }
                } else if cols.clone().any(|c| after_h[c] != before_h[c]) {
                    changed_active = true;
                }
            }
        }
        assert!(changed_active);
        state = s;
    }
}

#[test]
fn inactive_modules_are_preserved_even_when_the_provisional_state_is_nan() {
    let d = dev();
    let mut rims = small(&d);
    // Module 0's cell produces NaN; at the zero state module 0 is inactive (tie-break).
    let mut bias = host(&rims.layer.cell.bias_ih.val());
    bias[0] = f32::NAN;
    let shape = rims.layer.cell.bias_ih.val().dims();
    rims.layer.cell.bias_ih =
        Param::from_tensor(Tensor::from_data(TensorData::new(bias, shape), &d));
    let (_, s, diag) = rims
        .step_with_diagnostics(rand2([2, E], 1, 1.0, &d), rims.init_state(2, &d))
        .unwrap();
    assert_eq!(host(&diag.layers[0].active_mask)[0], 0.0);
    let (h, c) = (host(&s.parts[0]), host(&s.parts[1]));
    for row in 0..2 {
        for col in 0..H / N {
            assert_eq!(h[row * H + col].to_bits(), 0f32.to_bits());
            assert_eq!(c[row * H + col].to_bits(), 0f32.to_bits());
        }
    }
}

#[test]
fn inactive_modules_get_no_gradient_and_an_identity_path_through_time() {
    let d = ad();
    let rims = small(&d);
    let dd = H / N;
    let h = rand2([1, H], 50, 0.8, &d).require_grad();
    let c = rand2([1, H], 51, 0.8, &d).require_grad();
    let state = CoreState::from_parts(vec![h.clone(), c.clone()]);
    let (y, _, diag) = rims
        .step_with_diagnostics(rand2([1, E], 52, 1.0, &d), state)
        .unwrap();
    let mask = host(&diag.layers[0].active_mask);
    let grads = y.sum().backward();
    let cell = &rims.layer.cell;
    let gi = host(&cell.weight_ih.val().grad(&grads).unwrap());
    let gh = host(&cell.weight_hh.val().grad(&grads).unwrap());
    let gb = host(&cell.bias_ih.val().grad(&grads).unwrap());
    let att = rims.layer.attention.as_ref().unwrap();
    let gq = host(&att.query.weight.val().grad(&grads).unwrap());
    let gh_prev = host(&h.grad(&grads).unwrap());
    let per = |v: &[f32]| v.len() / N;
    for i in 0..N {
        let slice = |v: &[f32]| v[i * per(v)..(i + 1) * per(v)].to_vec();
        let zero = |v: Vec<f32>| v.iter().all(|&g| g == 0.0);
        if mask[i] == 0.0 {
            assert!(zero(slice(&gi)) && zero(slice(&gh)) && zero(slice(&gb)) && zero(slice(&gq)));
            // y_i = h_{t−1,i} exactly, and no other path reaches it: the gradient is 1.
            assert!(gh_prev[i * dd..(i + 1) * dd].iter().all(|&g| g == 1.0));
        } else {
            assert!(!zero(slice(&gi)) && !zero(slice(&gq)));
        }
    }
}

#[test]
fn communication_old_state_switch_changes_only_active_outputs() {
    let d = dev();
    let a = small(&d);
    let mut b_core = a.clone();
    b_core.layer.comm_old_state = true;
    let b = 3;
    let dd = H / N;
    let state = random_state(b, 60, &d);
    let x = rand2([b, E], 61, 1.0, &d);
    let (ya, _, diag) = a.step_with_diagnostics(x.clone(), state.clone()).unwrap();
    let (yb, _) = b_core.step(x, state).unwrap();
    let mask = host(&diag.layers[0].active_mask);
    let (ya, yb) = (host(&ya), host(&yb));
    let mut active_differs = false;
    for row in 0..b {
        for i in 0..N {
            let cols = row * H + i * dd..row * H + (i + 1) * dd;
            if mask[row * N + i] == 0.0 {
                assert!(cols.clone().all(|c| ya[c].to_bits() == yb[c].to_bits()));
            } else if cols.clone().any(|c| ya[c] != yb[c]) {
                active_differs = true;
            }
        }
    }
    assert!(active_differs);
}

#[test]
fn rims_with_one_module_bypass_and_no_communication_is_an_lstm() {
    let d = dev();
    let (e, h) = (5, 6);
    let rims = RimsConfig::new(e, h)
        .with_num_modules(1)
        .with_top_k(1)
        .with_bypass_input_attention(true)
        .with_modular(ModularConfig::new().with_communication(false))
        .init(&d)
        .unwrap();
    let mut lstm = LstmConfig::new(e, h).init(&d).unwrap();
    let cell = &rims.layer.cell;
    lstm.weight_ih = Param::from_tensor(cell.weight_ih.val().reshape([e, 4 * h]));
    lstm.weight_hh = Param::from_tensor(cell.weight_hh.val().reshape([h, 4 * h]));
    lstm.bias = Param::from_tensor((cell.bias_ih.val() + cell.bias_hh.val()).reshape([4 * h]));
    let x = rand3([2, 50, e], 70, 1.0, &d);
    let (yr, _) = rims
        .forward_sequence(x.clone(), rims.init_state(2, &d), None)
        .unwrap();
    let (yl, _) = lstm
        .forward_sequence(x, lstm.init_state(2, &d), None)
        .unwrap();
    assert_close(&yr, &yl, 1e-5);
}

#[test]
fn bad_configs_name_the_fix() {
    let d = dev();
    let err = RimsConfig::new(E, H)
        .with_num_modules(3)
        .with_top_k(4)
        .init(&d)
        .unwrap_err();
    assert!(matches!(
        err,
        MemoryError::InvalidConfig { core: "rims", .. }
    ));
    assert!(err.to_string().contains("top_k = 4"), "{err}");
    let err = RimsConfig::new(E, 10)
        .with_num_modules(3)
        .with_top_k(2)
        .init(&d)
        .unwrap_err();
    assert!(err.to_string().contains("multiple of num_modules"), "{err}");
}

/// The Atari "version 2" RIMs from TOML: `n` modules of `d = 4`, GRU cells.
fn atari(n: usize, k: usize) -> Rims {
    let cfg: engram_memory::CoreConfig = toml::from_str(&format!(
        r#"
        kind = "rims"
        hidden_size = {}
        num_modules = {n}
        top_k = {k}
        modular = {{ input_attention = "AcrossModules", cell = "Gru", input_key_size = 8 }}
        "#,
        4 * n
    ))
    .unwrap();
    let engram_memory::CoreConfig::Rims(cfg) = cfg.with_input_size(E) else {
        panic!("not rims")
    };
    cfg.init(&dev()).unwrap()
}

/// Input attention `[B, n, 2]` (null, input) and active mask `[B, n]` of one step from a random
/// state.
fn atari_step(rims: &Rims, b: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let d = dev();
    let h = rims.hidden_size();
    let state = CoreState::from_parts(vec![rand2([b, h], seed, 1.0, &d)]);
    // Large inputs: the keys' small init (std 0.01) otherwise gives a near-uniform softmax whose
    // k-th and (k+1)-th entries can be within the sparsification's 1e-7 shift.
    let x = rand2([b, E], seed + 1, 300.0, &d);
    let (_, _, diag) = rims.step_with_diagnostics(x, state).unwrap();
    let l = &diag.layers[0];
    let p = l.input_attention.clone().unwrap();
    assert_eq!(p.dims(), [b, 1, rims.layer.modules, 2]);
    (host(&p), host(&l.active_mask))
}

#[test]
fn version_2_attention_is_across_modules_sparse_and_matches_the_mask() {
    // §6.2-13: n = 6, k = 4 (the Atari setting): exactly k non-zeros per row, summing to 1
    // across modules, and the active set is the non-zero set.
    let (n, k, b) = (6, 4, 5);
    let rims = atari(n, k);
    for seed in [1, 7, 13] {
        let (p, mask) = atari_step(&rims, b, seed);
        for r in 0..b {
            let null: Vec<f32> = (0..n).map(|i| p[(r * n + i) * 2]).collect();
            let inp: Vec<f32> = (0..n).map(|i| p[(r * n + i) * 2 + 1]).collect();
            assert!(null.iter().all(|&v| v == 0.0), "null column {null:?}");
            let nonzero: Vec<bool> = inp.iter().map(|&v| v > 0.0).collect();
            assert_eq!(
                nonzero.iter().filter(|&&v| v).count(),
                k,
                "row {r}: {inp:?}"
            );
            // Renormalised as w / (Σw + 1e-7): near-uniform attention at init (small Σw) sums
            // to slightly below 1.
            let sum = inp.iter().sum::<f32>();
            assert!(sum <= 1.0 + 1e-6 && sum > 0.99, "row {r}: {inp:?}");
            let active: Vec<bool> = mask[r * n..(r + 1) * n].iter().map(|&m| m > 0.5).collect();
            assert_eq!(active, nonzero, "row {r}");
        }
    }
}

#[test]
fn version_2_without_sparsification_is_a_softmax_across_modules() {
    // n = k + 1: the sparsification leaves the softmax unchanged, so every module gets
    // attention, the attention sums to 1 across modules (not per module, as in version 1),
    // and the k most attended modules are active.
    let (n, k, b) = (3, 2, 4);
    let rims = atari(n, k);
    let (p, mask) = atari_step(&rims, b, 3);
    for r in 0..b {
        let inp: Vec<f32> = (0..n).map(|i| p[(r * n + i) * 2 + 1]).collect();
        assert!(inp.iter().all(|&v| v > 0.0), "{inp:?}");
        assert!((inp.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{inp:?}");
        let least = (0..n).min_by(|&i, &j| inp[i].total_cmp(&inp[j])).unwrap();
        for i in 0..n {
            assert_eq!(mask[r * n + i] > 0.5, i != least, "row {r}: {inp:?}");
        }
    }
}

#[test]
fn version_2_is_rejected_for_brims() {
    let cfg: Result<engram_memory::CoreConfig, _> = toml::from_str(
        r#"
        kind = "brims"
        input_size = 4
        modular = { input_attention = "AcrossModules" }
        "#,
    );
    let err = cfg.unwrap().init(&dev()).unwrap_err();
    assert!(matches!(err, MemoryError::InvalidConfig { .. }), "{err}");
}

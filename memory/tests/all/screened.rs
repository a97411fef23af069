//! Relevancy-screened memory: bookkeeping trace, buffer semantics, masking, reductions,
//! far-past gradients and batch independence (§6.4).

use burn::module::Param;
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};
use engram_memory::screened::{push_row, screen_row};
use engram_memory::{
    BaseCore, BaseCoreConfig, CoreState, LstmConfig, RecurrentCore, RelLstmConfig, RimsConfig,
    Screened, ScreenedConfig,
};

use crate::common::*;

fn wrap(inner: BaseCore, nu: usize, rho: usize, d: &burn::tensor::Device) -> Screened {
    ScreenedConfig::new(BaseCoreConfig::Lstm(LstmConfig::new(1, 1)))
        .with_short_term(nu)
        .with_relevant(rho)
        .wrap(inner, d)
}

fn lstm_inner(e: usize, h: usize, d: &burn::tensor::Device) -> BaseCore {
    BaseCore::Lstm(LstmConfig::new(e, h).init(d).unwrap())
}

fn part(core: &Screened, s: &CoreState, name: &str) -> Vec<f32> {
    host(&s.parts[core.state_layout().index_of(name).unwrap()])
}

#[test]
fn scripted_attention_trace_follows_the_screening_rule() {
    let (nu, rho) = (2, 2);
    let mut valid = vec![false; 4];
    let mut score = vec![0f32; 4];
    let mut time = vec![0f32; 4];
    let alphas: [[f32; 4]; 6] = [
        [0.25, 0.25, 0.25, 0.25],
        [0.0, 1.0, 0.0, 0.0],
        [0.6, 0.4, 0.0, 0.0],
        [0.1, 0.2, 0.7, 0.0],   // the relevant entry's score stays frozen at 1.6
        [0.3, 0.1, 0.3, 0.3],   // 0.5 is not strictly greater than the minimum 0.5: discarded
        [0.5, 0.4, 0.05, 0.05], // 0.6 > 0.5: replaces slot 3
    ];
    let expected_writes = [None, None, Some(2), Some(3), None, Some(3)];
    for (t, a) in alphas.iter().enumerate() {
        let w = screen_row(&mut valid, &mut score, &mut time, a, nu, rho);
        assert_eq!(w, expected_writes[t], "step {t}");
        push_row(&mut valid, &mut score, &mut time, nu, t as f32);
    }
    assert_eq!(valid, vec![true; 4]);
    let want_score = [0.4f32, 0.0, 1.6, 0.6];
    for (g, w) in score.iter().zip(want_score) {
        assert!((g - w).abs() < 1e-6, "{score:?}");
    }
    assert_eq!(time, vec![4.0, 5.0, 0.0, 3.0]);
    // ties among the relevant set: the first index is replaced
    let mut valid = vec![true; 3];
    let mut score = vec![0.0, 0.5, 0.5];
    let mut time = vec![9.0, 1.0, 2.0];
    let mut s0 = score.clone();
    s0[0] = 0.7;
    score = s0;
    assert_eq!(
        screen_row(&mut valid, &mut score, &mut time, &[0.0, 0.0, 0.0], 1, 2),
        Some(1)
    );
    assert_eq!(time, vec![9.0, 9.0, 2.0]);
}

#[test]
fn buffer_holds_the_last_states_and_the_relevant_set_fills_in_order() {
    let d = dev();
    let (nu, rho, h, b) = (3, 2, 4, 2);
    let core = wrap(lstm_inner(3, h, &d), nu, rho, &d);
    let mut state = core.init_state(b, &d);
    let mut ys: Vec<Vec<f32>> = Vec::new();
    for t in 0..7usize {
        let (y, s, diag) = core
            .step_with_diagnostics(rand2([b, 3], 100 + t as u64, 1.0, &d), state)
            .unwrap();
        let mem = diag.memory.unwrap();
        let att = host(&mem.attention);
        assert!(att.iter().all(|v| v.is_finite()));
        let valid_before = host(&mem.valid);
        for (a, v) in att.iter().zip(&valid_before) {
            if *v == 0.0 {
                assert_eq!(*a, 0.0);
            }
        }
        ys.push(host(&y));
        state = s;
        let slots = part(&core, &state, "mem.slots");
        let valid = part(&core, &state, "mem.valid");
        let m = nu + rho;
        for row in 0..b {
            let v = &valid[row * m..(row + 1) * m];
            let n_buf = v[..nu].iter().filter(|&&x| x == 1.0).count();
            assert_eq!(n_buf, (t + 1).min(nu));
            let n_rel = v[nu..].iter().filter(|&&x| x == 1.0).count();
            assert_eq!(n_rel, (t + 1).saturating_sub(nu).min(rho));
            // slot nu-1-j holds y_{t-j}
            for j in 0..n_buf {
                let slot = nu - 1 - j;
                let got = &slots[(row * m + slot) * h..(row * m + slot + 1) * h];
                let want = &ys[t - j][row * h..(row + 1) * h];
                assert_eq!(got, want);
            }
            // the first relevant slot holds y_0 once it has been evicted
            if t >= nu {
                let got = &slots[(row * m + nu) * h..(row * m + nu + 1) * h];
                assert_eq!(got, &ys[0][row * h..(row + 1) * h]);
            }
        }
    }
    // attention candidates stay (ν + ρ)·H per sequence
    assert_eq!(
        core.state_layout().parts[core.state_layout().index_of("mem.slots").unwrap()].width,
        (nu + rho) * h
    );
}

#[test]
fn one_slot_and_no_relevant_set_is_the_plain_core() {
    let d = dev();
    let lstm = LstmConfig::new(3, 5).init(&d).unwrap();
    let core = wrap(BaseCore::Lstm(lstm.clone()), 1, 0, &d);
    let x = rand3([2, 30, 3], 200, 1.0, &d);
    let (ys, _) = core
        .forward_sequence(x.clone(), core.init_state(2, &d), None)
        .unwrap();
    let (yl, _) = lstm
        .forward_sequence(x.clone(), lstm.init_state(2, &d), None)
        .unwrap();
    assert_close(&ys, &yl, 1e-6);
    let rims = RimsConfig::new(3, 8)
        .with_num_modules(4)
        .with_top_k(2)
        .init(&d)
        .unwrap();
    let core = wrap(BaseCore::Rims(rims.clone()), 1, 0, &d);
    let (ys, _) = core
        .forward_sequence(x.clone(), core.init_state(2, &d), None)
        .unwrap();
    let (yr, _) = rims
        .forward_sequence(x, rims.init_state(2, &d), None)
        .unwrap();
    assert_close(&ys, &yr, 1e-6);
}

#[test]
fn buffer_longer_than_the_sequence_is_full_attention() {
    let d = dev();
    let (e, h, b, t_len) = (3, 5, 2, 8);
    let lstm = LstmConfig::new(e, h).init(&d).unwrap();
    let core = wrap(BaseCore::Lstm(lstm.clone()), t_len, 0, &d);
    let x = rand3([b, t_len, e], 300, 1.0, &d);
    let (ys, _) = core
        .forward_sequence(x.clone(), core.init_state(b, &d), None)
        .unwrap();
    // Reference: attention over all past outputs (MemRNN-style), same parameters.
    let (mut s, mut hh, mut c) = (
        Tensor::<2>::zeros([b, h], &d),
        Tensor::<2>::zeros([b, h], &d),
        Tensor::<2>::zeros([b, h], &d),
    );
    let mut outs: Vec<Tensor<2>> = Vec::new();
    for t in 0..t_len {
        let s_new = if outs.is_empty() {
            hh.clone()
        } else {
            let cand: Tensor<3> = Tensor::stack(outs.clone(), 1);
            let q = core.query.forward(s.clone()).unsqueeze_dim::<3>(1);
            let e_ = core
                .score
                .forward((q + core.key.forward(cand.clone())).tanh());
            let alpha = softmax(e_.reshape([b, outs.len()]), 1);
            let read = alpha.unsqueeze_dim::<3>(1).matmul(cand).reshape([b, h]);
            (hh.clone() + read).mul_scalar(0.5)
        };
        let xt = x.clone().narrow(1, t, 1).reshape([b, e]);
        let (h2, c2) = lstm.cell(xt, s_new.clone(), c);
        hh = h2.clone();
        c = c2;
        s = s_new;
        outs.push(h2);
    }
    let reference: Tensor<3> = Tensor::stack(outs, 1);
    assert_close(&ys, &reference, 1e-5);
}

#[test]
fn gradients_reach_retained_far_past_states() {
    let d = ad();
    let (e, h, t_len, nu, rho) = (3, 8, 1000, 10, 15);
    let mut lstm = LstmConfig::new(e, h).init(&d).unwrap();
    // Kill the cell-state path (forget gate bias −30) and weaken the recurrent weights, so
    // far-past information can only arrive through the memory.
    lstm.weight_hh = Param::from_tensor(lstm.weight_hh.val().mul_scalar(0.3).detach());
    let mut bias = host(&lstm.bias.val());
    for v in bias[h..2 * h].iter_mut() {
        *v = -30.0;
    }
    lstm.bias = Param::from_tensor(Tensor::from_data(TensorData::new(bias, [4 * h]), &d));
    let core = wrap(BaseCore::Lstm(lstm.clone()), nu, rho, &d);
    let xs: Vec<Tensor<2>> = (0..t_len)
        .map(|t| rand2([1, e], 1000 + t as u64, 1.0, &d).require_grad())
        .collect();
    let (ys, state) = core
        .forward_steps(xs.clone(), core.init_state(1, &d), None)
        .unwrap();
    let grads = ys.last().unwrap().clone().sum().backward();
    let norm = |t: usize| -> f32 {
        host(&xs[t].grad(&grads).unwrap())
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
    };
    let valid = part(&core, &state, "mem.valid");
    let time = part(&core, &state, "mem.time");
    let retained: Vec<usize> = (nu..nu + rho)
        .filter(|&m| valid[m] == 1.0)
        .map(|m| time[m] as usize)
        .collect();
    let tau_r = *retained.iter().min().unwrap();
    assert!(tau_r < t_len - 10 * nu, "retained states: {retained:?}");
    let tau_n = (300..700)
        .find(|&t| !retained.iter().any(|&r| r >= t && r <= t + 100))
        .expect("a stretch without retained states");
    let (g_r, g_n) = (norm(tau_r), norm(tau_n));
    eprintln!("retained {retained:?}; grad norm at {tau_r}: {g_r:e}, at {tau_n}: {g_n:e}");
    assert!(g_r > 1e-6, "gradient to retained step {tau_r}: {g_r}");
    assert!(
        g_n < 1e-3 * g_r,
        "gradient to discarded step {tau_n}: {g_n} vs {g_r}"
    );

    // The plain LSTM with the same weights loses the far past entirely.
    let xs2: Vec<Tensor<2>> = (0..t_len)
        .map(|t| rand2([1, e], 1000 + t as u64, 1.0, &d).require_grad())
        .collect();
    let (ys2, _) = lstm
        .forward_steps(xs2.clone(), lstm.init_state(1, &d), None)
        .unwrap();
    let grads2 = ys2.last().unwrap().clone().sum().backward();
    let g_lstm: f32 = host(&xs2[tau_r].grad(&grads2).unwrap())
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt();
    eprintln!("plain LSTM grad norm at {tau_r}: {g_lstm:e}");
    assert!(
        g_lstm < 1e-3 * g_r,
        "plain LSTM gradient {g_lstm} vs screened {g_r}"
    );
}

#[test]
fn screening_is_per_batch_row() {
    let d = dev();
    let core = wrap(lstm_inner(3, 4, &d), 3, 2, &d);
    let x = rand3([3, 25, 3], 400, 1.0, &d);
    let (y, s) = core
        .forward_sequence(x.clone(), core.init_state(3, &d), None)
        .unwrap();
    let perm = [2usize, 0, 1];
    let idx = Tensor::<1, burn::tensor::Int>::from_data(
        TensorData::new(perm.iter().map(|&i| i as i64).collect::<Vec<_>>(), [3]),
        &d,
    );
    let (yp, sp) = core
        .forward_sequence(x.select(0, idx.clone()), core.init_state(3, &d), None)
        .unwrap();
    assert_close(&y.select(0, idx), &yp, 1e-6);
    let s_sel = s.select_rows(&perm).unwrap();
    for (a, b) in s_sel.parts.iter().zip(&sp.parts) {
        assert_close(a, b, 1e-6);
    }
}

#[test]
fn rel_lstm_is_screened_lstm_with_paper_defaults() {
    let d = dev();
    let core = RelLstmConfig::new(10)
        .with_hidden_size(16)
        .init(&d)
        .unwrap();
    assert_eq!((core.short_term, core.relevant), (10, 15));
    assert_eq!(core.hidden_size(), 16);
    let names: Vec<String> = core
        .state_layout()
        .parts
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(
        names,
        [
            "h",
            "c",
            "mem.s",
            "mem.slots",
            "mem.valid",
            "mem.score",
            "mem.time",
            "mem.step"
        ]
    );
    let (y, _) = core
        .forward_sequence(rand3([2, 40, 10], 5, 1.0, &d), core.init_state(2, &d), None)
        .unwrap();
    assert!(host(&y).iter().all(|v| v.is_finite()));
}

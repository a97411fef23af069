//! LSTM/GRU cells, GroupLinear, group cells, blocked gradient and SAB sparse attention (§6.1).

use burn::module::Param;
use burn::tensor::{Bool, Tensor, TensorData};
use engram_memory::attention::{blocked_grad, sab_sparse};
use engram_memory::{
    CellKind, GroupCellConfig, GroupLinearConfig, GruConfig, LstmConfig, RecurrentCore,
};

use crate::common::*;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn lstm_step_matches_hand_computation() {
    let d = dev();
    let mut lstm = LstmConfig::new(1, 1).init(&d).unwrap();
    // rows: x, h; columns: i, f, g, o
    let w = [[0.5f32, -0.3, 0.8, 0.1], [0.2, 0.4, -0.6, 0.7]];
    let b = [0.1f32, 0.2, -0.1, 0.05];
    lstm.weight_ih = Param::from_tensor(Tensor::from_data([w[0]], &d));
    lstm.weight_hh = Param::from_tensor(Tensor::from_data([w[1]], &d));
    lstm.bias = Param::from_tensor(Tensor::from_data(b, &d));
    let (x, h, c) = (0.7f64, -0.4f64, 0.3f64);
    let z: Vec<f64> = (0..4)
        .map(|g| x * w[0][g] as f64 + h * w[1][g] as f64 + b[g] as f64)
        .collect();
    let c_new = sig(z[1]) * c + sig(z[0]) * z[2].tanh();
    let h_new = sig(z[3]) * c_new.tanh();
    let state = engram_memory::CoreState::from_parts(vec![
        Tensor::from_data([[h as f32]], &d),
        Tensor::from_data([[c as f32]], &d),
    ]);
    let (y, s) = lstm
        .step(Tensor::from_data([[x as f32]], &d), state)
        .unwrap();
    assert!((host(&y)[0] as f64 - h_new).abs() < 1e-6);
    assert!((host(&s.parts[1])[0] as f64 - c_new).abs() < 1e-6);
}

#[test]
fn gru_step_matches_hand_computation() {
    let d = dev();
    let mut gru = GruConfig::new(1, 1).init(&d).unwrap();
    let wi = [[0.5f32, -0.3, 0.8]];
    let wh = [[0.2f32, 0.4, -0.6]];
    let bi = [0.1f32, 0.2, -0.1];
    let bh = [0.03f32, -0.05, 0.07];
    gru.weight_ih = Param::from_tensor(Tensor::from_data(wi, &d));
    gru.weight_hh = Param::from_tensor(Tensor::from_data(wh, &d));
    gru.bias_ih = Param::from_tensor(Tensor::from_data(bi, &d));
    gru.bias_hh = Param::from_tensor(Tensor::from_data(bh, &d));
    let (x, h) = (0.7f64, -0.4f64);
    let gi: Vec<f64> = (0..3).map(|g| x * wi[0][g] as f64 + bi[g] as f64).collect();
    let gh: Vec<f64> = (0..3).map(|g| h * wh[0][g] as f64 + bh[g] as f64).collect();
    let r = sig(gi[0] + gh[0]);
    let z = sig(gi[1] + gh[1]);
    let n = (gi[2] + r * gh[2]).tanh();
    let expected = (1.0 - z) * n + z * h;
    let state = engram_memory::CoreState::from_parts(vec![Tensor::from_data([[h as f32]], &d)]);
    let (y, _) = gru
        .step(Tensor::from_data([[x as f32]], &d), state)
        .unwrap();
    assert!((host(&y)[0] as f64 - expected).abs() < 1e-6);
}

#[test]
fn lstm_gradient_matches_finite_differences() {
    let d = ad();
    let lstm = LstmConfig::new(3, 4).init(&d).unwrap();
    let xs: Vec<Tensor<2>> = (0..3).map(|t| rand2([2, 3], 10 + t, 1.0, &d)).collect();
    let loss_of = |l: &engram_memory::Lstm| {
        let (ys, _) = l
            .forward_steps(xs.clone(), l.init_state(2, &d), None)
            .unwrap();
        ys.into_iter()
            .map(|y| (y.clone() * y).sum())
            .reduce(|a, b| a + b)
            .unwrap()
    };
    let grads = loss_of(&lstm).backward();
    let g = host(&lstm.weight_hh.val().grad(&grads).unwrap());
    let w = host(&lstm.weight_hh.val());
    let eps = 1e-2f32;
    for &idx in &[0usize, 5, 17, 30, 63] {
        let mut plus = w.clone();
        plus[idx] += eps;
        let mut minus = w.clone();
        minus[idx] -= eps;
        let mut lp = lstm.clone();
        lp.weight_hh = Param::from_tensor(Tensor::from_data(TensorData::new(plus, [4, 16]), &d));
        let mut lm = lstm.clone();
        lm.weight_hh = Param::from_tensor(Tensor::from_data(TensorData::new(minus, [4, 16]), &d));
        let fd =
            (loss_of(&lp).into_scalar::<f32>() - loss_of(&lm).into_scalar::<f32>()) / (2.0 * eps);
        assert!(
            (fd - g[idx]).abs() < 2e-3 + 2e-2 * g[idx].abs(),
            "entry {idx}: finite difference {fd} vs autodiff {}",
            g[idx]
        );
    }
}

#[test]
fn group_linear_equals_separate_matmuls_and_keeps_zero_rows() {
    let d = dev();
    let gl = GroupLinearConfig::new(3, 4, 5).init(&d);
    let mut x = rand3([2, 3, 4], 1, 1.0, &d);
    x = x.slice_assign([0..1, 1..2, 0..4], Tensor::zeros([1, 1, 4], &d));
    let y = gl.forward(x.clone());
    assert_eq!(y.dims(), [2, 3, 5]);
    for g in 0..3 {
        let xg = x.clone().narrow(1, g, 1).reshape([2, 4]);
        let wg = gl.weight.val().narrow(0, g, 1).reshape([4, 5]);
        assert_close(
            &y.clone().narrow(1, g, 1).reshape([2, 5]),
            &xg.matmul(wg),
            1e-6,
        );
    }
    let zero_row = host(&y.narrow(0, 0, 1).narrow(1, 1, 1));
    assert!(zero_row.iter().all(|&v| v == 0.0));
}

/// Maps module `i` of a group LSTM onto a plain LSTM.
fn module_lstm(
    cell: &engram_memory::GroupCell,
    i: usize,
    a: usize,
    dd: usize,
) -> engram_memory::Lstm {
    let d = dev();
    let mut l = LstmConfig::new(a, dd).init(&d).unwrap();
    let wi = cell.weight_ih.val().narrow(0, i, 1).reshape([a, 4 * dd]);
    let wh = cell.weight_hh.val().narrow(0, i, 1).reshape([dd, 4 * dd]);
    let b = (cell.bias_ih.val() + cell.bias_hh.val())
        .narrow(0, i, 1)
        .reshape([4 * dd]);
    l.weight_ih = Param::from_tensor(wi);
    l.weight_hh = Param::from_tensor(wh);
    l.bias = Param::from_tensor(b);
    l
}

#[test]
fn group_lstm_equals_independent_lstms_and_block_diagonal_lstm() {
    let d = dev();
    let (n, a, dd, b) = (3, 5, 4, 2);
    let cell = GroupCellConfig::new(CellKind::Lstm, n, a, dd).init(&d);
    let u = rand3([b, n, a], 2, 1.0, &d);
    let h = rand3([b, n, dd], 3, 1.0, &d);
    let c = rand3([b, n, dd], 4, 1.0, &d);
    let (h2, c2) = cell.forward(u.clone(), h.clone(), c.clone());
    // (a) n independent LSTMs with the sliced weights (with n = 1 this is (c)).
    for i in 0..n {
        let l = module_lstm(&cell, i, a, dd);
        let pick = |t: &Tensor<3>, w| t.clone().narrow(1, i, 1).reshape([b, w]);
        let (hi, ci) = l.cell(pick(&u, a), pick(&h, dd), pick(&c, dd));
        assert_close(&pick(&h2, dd), &hi, 1e-6);
        assert_close(&pick(&c2, dd), &ci, 1e-6);
    }
    // (b) one full LSTM with the official block-diagonal ("blockified") weights.
    let (e_full, h_full) = (n * a, n * dd);
    let wi = host(&cell.weight_ih.val());
    let wh = host(&cell.weight_hh.val());
    let bias = host(&(cell.bias_ih.val() + cell.bias_hh.val()));
    let mut w = vec![0f32; (e_full + h_full) * 4 * h_full];
    let mut bf = vec![0f32; 4 * h_full];
    for i in 0..n {
        for g in 0..4 {
            for j in 0..dd {
                let col = g * h_full + i * dd + j;
                for r in 0..a {
                    w[(i * a + r) * 4 * h_full + col] = wi[(i * a + r) * 4 * dd + g * dd + j];
                }
                for r in 0..dd {
                    w[(e_full + i * dd + r) * 4 * h_full + col] =
                        wh[(i * dd + r) * 4 * dd + g * dd + j];
                }
                bf[col] = bias[i * 4 * dd + g * dd + j];
            }
        }
    }
    let mut full = LstmConfig::new(e_full, h_full).init(&d).unwrap();
    let w = Tensor::<2>::from_data(TensorData::new(w, [e_full + h_full, 4 * h_full]), &d);
    full.weight_ih = Param::from_tensor(w.clone().narrow(0, 0, e_full));
    full.weight_hh = Param::from_tensor(w.narrow(0, e_full, h_full));
    full.bias = Param::from_tensor(Tensor::from_data(TensorData::new(bf, [4 * h_full]), &d));
    let (hf, cf) = full.cell(
        u.reshape([b, e_full]),
        h.reshape([b, h_full]),
        c.reshape([b, h_full]),
    );
    assert_close(&h2.reshape([b, h_full]), &hf, 1e-6);
    assert_close(&c2.reshape([b, h_full]), &cf, 1e-6);
}

#[test]
fn group_gru_equals_independent_grus() {
    let d = dev();
    let (n, a, dd, b) = (3, 5, 4, 2);
    let cell = GroupCellConfig::new(CellKind::Gru, n, a, dd).init(&d);
    let u = rand3([b, n, a], 5, 1.0, &d);
    let h = rand3([b, n, dd], 6, 1.0, &d);
    let (h2, _) = cell.forward(u.clone(), h.clone(), h.clone());
    for i in 0..n {
        let mut g = GruConfig::new(a, dd).init(&d).unwrap();
        let slice2 =
            |t: Tensor<3>, rows| Param::from_tensor(t.narrow(0, i, 1).reshape([rows, 3 * dd]));
        g.weight_ih = slice2(cell.weight_ih.val(), a);
        g.weight_hh = slice2(cell.weight_hh.val(), dd);
        g.bias_ih = Param::from_tensor(cell.bias_ih.val().narrow(0, i, 1).reshape([3 * dd]));
        g.bias_hh = Param::from_tensor(cell.bias_hh.val().narrow(0, i, 1).reshape([3 * dd]));
        let pick = |t: &Tensor<3>, w| t.clone().narrow(1, i, 1).reshape([b, w]);
        let hi = g.cell(pick(&u, a), pick(&h, dd));
        assert_close(&pick(&h2, dd), &hi, 1e-6);
    }
}

#[test]
fn blocked_gradient_is_identity_forward_and_masks_backward() {
    let d = ad();
    let x = rand2([3, 4], 7, 2.0, &d).require_grad();
    let mask_host = [
        true, false, true, false, false, false, true, true, true, false, false, true,
    ];
    let blocked = Tensor::<2, Bool>::from_data(TensorData::new(mask_host.to_vec(), [3, 4]), &d);
    let w = rand2([3, 4], 8, 1.0, &d);
    let y = blocked_grad(x.clone(), blocked);
    assert_eq!(bits(&y), bits(&x));
    let g = host(
        &(y * w.clone())
            .sum()
            .backward()
            .pipe(|gr| x.grad(&gr).unwrap()),
    );
    let wv = host(&w);
    for k in 0..12 {
        let expected = if mask_host[k] { 0.0 } else { wv[k] };
        assert_eq!(g[k], expected);
    }
}

trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

#[test]
fn sab_sparse_keeps_top_entries_and_is_idempotent() {
    let d = dev();
    let p = Tensor::<2>::from_data([[0.1f32, 0.4, 0.2, 0.3], [0.15, 0.35, 0.3, 0.2]], &d);
    assert_eq!(bits(&sab_sparse(p.clone(), 4)), bits(&p));
    assert_eq!(bits(&sab_sparse(p.clone(), 5)), bits(&p));
    let q = sab_sparse(p.clone(), 3);
    let v = host(&q);
    for row in v.chunks(4) {
        assert_eq!(row.iter().filter(|&&x| x > 0.0).count(), 2);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // already sparse with distinct values: unchanged up to eps
    let sparse = Tensor::<2>::from_data([[0.0f32, 0.7, 0.0, 0.3]], &d);
    assert_close(&sab_sparse(sparse.clone(), 3), &sparse, 1e-5);
}

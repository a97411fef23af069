//! Parity of every core on flex and on libtorch's CPU: same weights and inputs, same outputs and gradients.
//!
//! Built only with `--features tch` (see scripts/setup-libtorch.sh). Each core is initialised on
//! flex, its weights are copied to libtorch, and both run the same `[B, T]` sequence (a random
//! start state, an episode start inside the sequence) through forward and backward of a fixed
//! random projection of every output, once through the step loop (`forward_steps`) and once
//! through `forward_steps_concat` (what policies use; there the LSTM and GRU run flex's fused
//! sequence kernels on flex and libtorch's own RNN ops on libtorch). Outputs, the final state, the gradients of every
//! parameter and of every input step are compared.
//!
//! Tolerance: `max |flex − libtorch| ≤ TOL · max(1, max |libtorch|)` per tensor, `TOL = 1e-5`.
//! Both backends compute in f32 but sum matmuls in different orders and use different `exp`
//! kernels (our clamped sigmoid/tanh in `activation.rs` are built from `exp`, so both backends
//! run the same formula, not libtorch's own `sigmoid`/`tanh`). Over 12 recurrent steps, softmax
//! attention and top-k selection the largest difference seen was 3.7e-7 (the GRU, flex's fused
//! kernel against libtorch's step loop); `TOL` leaves over 25× headroom, while a wrong gate, mask
//! or reset gives differences ≥ 1e-2.

#![cfg(feature = "tch")]
#![allow(deprecated)] // burn 0.22 marks burn-tch deprecated; it is still the libtorch route

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use engram_memory::{
    BaseCoreConfig, BrimsConfig, CellKind, CoreConfig, FfmConfig, GroupCellConfig, GruConfig,
    GtrxlConfig, LstmConfig, RecurrentCore, RelLstmConfig, RimsConfig, ScreenedConfig, SeqLayout,
};

/// burn's seed is global: tests running in parallel would draw each other's initial weights
/// (a different start every run), so seeding and drawing the weights hold this lock.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

const TOL: f32 = 1e-5;
const B: usize = 3;
const T: usize = 12;
const E: usize = 10;
const H: usize = 16;

fn flex() -> Device {
    Device::flex().autodiff()
}

fn torch() -> Device {
    Device::libtorch().autodiff()
}

#[path = "all/common.rs"]
#[allow(dead_code)]
mod common;
use common::rand_vec;

fn host<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().try_into_vec_as::<f32>().expect("f32 data")
}

/// `max |a − b| / max(1, max |b|)`: the scaled difference the tolerance bounds.
fn scaled_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m: f32, d| if d.is_nan() || d > m { d } else { m }); // NaN wins
    let scale = b.iter().map(|y| y.abs()).fold(1.0, f32::max);
    assert!(diff.is_finite(), "non-finite values");
    diff / scale
}

/// Values and gradients of every float parameter, in visiting order.
struct Collect<'a> {
    grads: Option<&'a Gradients>,
    values: Vec<Vec<f32>>,
    grad_values: Vec<Vec<f32>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val();
        self.values.push(host(&v));
        if let Some(g) = self.grads {
            let grad = v.grad(g).expect("every parameter takes part in the loss");
            self.grad_values.push(host(&grad));
        }
    }
}

fn params<M: Module>(module: &M, grads: Option<&Gradients>) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut c = Collect {
        grads,
        values: vec![],
        grad_values: vec![],
    };
    module.visit(&mut c);
    (c.values, c.grad_values)
}

/// What one forward+backward gives, on the host.
struct Run {
    ys: Vec<f32>,
    state: Vec<f32>,
    param_grads: Vec<Vec<f32>>,
    input_grads: Vec<f32>,
}

/// Runs `core` (already on `device`) over the fixed sequence and backpropagates the fixed loss;
/// through `forward_steps` (the step loop) or, with `concat`, `forward_steps_concat` (what
/// policies use; the LSTM runs its fused sequence kernel there on flex).
fn run<C: RecurrentCore + Module>(core: &C, device: &Device, concat: bool) -> Run {
    let e = core.input_size();
    let h = core.hidden_size();
    let xs: Vec<Tensor<2>> = (0..T)
        .map(|t| {
            Tensor::from_data(
                TensorData::new(rand_vec(B * e, 100 + t as u64, 1.5), [B, e]),
                device,
            )
            .require_grad()
        })
        .collect();
    // A random start state, except screened memory's bookkeeping parts (`mem.*`), which start
    // empty as in a fresh episode.
    let layout = core.state_layout();
    let noise = rand_vec(B * layout.row_width(), 7, 0.5);
    let mut flat = vec![0.0f32; noise.len()];
    let mut offset = 0;
    for part in &layout.parts {
        if !part.name.starts_with("mem.") {
            for row in 0..B {
                let start = row * layout.row_width() + offset;
                flat[start..start + part.width].copy_from_slice(&noise[start..start + part.width]);
            }
        }
        offset += part.width;
    }
    let state = core.state_from_flat(&flat, B, device).expect("state");
    // Row 1 starts a new episode at t = 5, row 2 at t = 0 and t = 9.
    let mut starts = vec![false; B * T];
    starts[T + 5] = true;
    starts[2 * T] = true;
    starts[2 * T + 9] = true;
    let (ys, final_state) = if concat {
        let (y, st) = core
            .forward_steps_concat(xs.clone(), state, Some(&starts))
            .expect("shapes");
        let ys: Vec<Tensor<2>> = (0..T).map(|t| y.clone().narrow(0, t * B, B)).collect();
        (ys, st)
    } else {
        core.forward_steps(xs.clone(), state, Some(&starts))
            .expect("shapes")
    };
    let proj = |t: usize| {
        Tensor::<2>::from_data(
            TensorData::new(rand_vec(B * h, 500 + t as u64, 1.0), [B, h]),
            device,
        )
    };
    let loss = ys
        .iter()
        .enumerate()
        .map(|(t, y)| (y.clone() * proj(t)).sum())
        .reduce(|a, b| a + b)
        .expect("steps");
    let grads = loss.backward();
    let (_, param_grads) = params(core, Some(&grads));
    Run {
        ys: ys.iter().flat_map(host).collect(),
        state: final_state.to_flat(),
        param_grads,
        input_grads: xs
            .iter()
            .flat_map(|x| host(&x.grad(&grads).expect("input gradient")))
            .collect(),
    }
}

/// Builds `cfg` on flex, copies it to libtorch, runs both and asserts parity; returns the
/// largest scaled difference seen.
fn check(name: &str, cfg: CoreConfig) -> f32 {
    let f = flex();
    // burn initialises parameters lazily (on first read or fork), so under the lock.
    let (core, copy) = {
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        f.seed(11);
        let core = cfg.init(&f).expect("config");
        let copy = core.clone().fork(&torch());
        (core, copy)
    };
    let (fv, _) = params(&core, None);
    let (tv, _) = params(&copy, None);
    assert_eq!(fv, tv, "{name}: weights differ after the copy to libtorch");
    assert!(!fv.is_empty());

    let mut worst = 0.0f32;
    for concat in [false, true] {
        let a = run(&core, &f, concat);
        let b = run(&copy, &torch(), concat);
        let path = if concat {
            "forward_steps_concat"
        } else {
            "forward_steps"
        };
        let mut compare = |what: &str, x: &[f32], y: &[f32]| {
            let d = scaled_diff(x, y);
            assert!(
                d <= TOL,
                "{name} ({path}): {what} differ by {d:e} (scaled) > {TOL:e}"
            );
            worst = worst.max(d);
        };
        compare("outputs", &a.ys, &b.ys);
        compare("final states", &a.state, &b.state);
        compare("input gradients", &a.input_grads, &b.input_grads);
        assert_eq!(a.param_grads.len(), b.param_grads.len());
        for (i, (x, y)) in a.param_grads.iter().zip(&b.param_grads).enumerate() {
            compare(&format!("gradients of parameter {i}"), x, y);
        }
    }
    eprintln!("{name}: max scaled difference {worst:e}");
    worst
}

#[test]
fn lstm() {
    check("lstm", CoreConfig::Lstm(LstmConfig::new(E, H)));
}

#[test]
fn gru() {
    check("gru", CoreConfig::Gru(GruConfig::new(E, H)));
}

#[test]
fn rims() {
    check(
        "rims",
        CoreConfig::Rims(RimsConfig::new(E, H).with_num_modules(4).with_top_k(2)),
    );
}

#[test]
fn brims() {
    check(
        "brims",
        CoreConfig::Brims(
            BrimsConfig::new(E)
                .with_hidden_sizes(vec![H, H])
                .with_num_modules(vec![4, 4])
                .with_top_k(vec![2, 2]),
        ),
    );
}

#[test]
fn screened() {
    check(
        "screened",
        // ν = 3, ρ = 4: within 12 steps states leave the buffer and are screened into the
        // relevant set (with the defaults ν = 10, ρ = 15 they would barely get there).
        CoreConfig::Screened(
            ScreenedConfig::new(BaseCoreConfig::Gru(GruConfig::new(E, H)))
                .with_short_term(3)
                .with_relevant(4),
        ),
    );
}

#[test]
fn rel_lstm() {
    check(
        "rel_lstm",
        CoreConfig::RelLstm(
            RelLstmConfig::new(E)
                .with_hidden_size(H)
                .with_short_term(3)
                .with_relevant(4),
        ),
    );
}

#[test]
fn group_cells() {
    for kind in [CellKind::Lstm, CellKind::Gru] {
        let f = flex();
        let (cell, copy) = {
            let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
            f.seed(3);
            let cell = GroupCellConfig::new(kind, 4, 5, 6).init(&f);
            let copy = cell.clone().fork(&torch());
            (cell, copy)
        };
        let one = |cell: &engram_memory::GroupCell, d: &Device| {
            let t = |n: usize, seed: u64, shape: [usize; 3]| {
                Tensor::<3>::from_data(TensorData::new(rand_vec(n, seed, 1.0), shape), d)
                    .require_grad()
            };
            let (u, h, c) = (
                t(3 * 4 * 5, 1, [3, 4, 5]),
                t(3 * 4 * 6, 2, [3, 4, 6]),
                t(3 * 4 * 6, 3, [3, 4, 6]),
            );
            let (h2, c2) = cell.forward(u.clone(), h.clone(), c.clone());
            let w = Tensor::<3>::from_data(TensorData::new(rand_vec(72, 4, 1.0), [3, 4, 6]), d);
            let grads = ((h2.clone() + c2.clone() * 0.5) * w).sum().backward();
            let (_, pg) = params(cell, Some(&grads));
            let mut out = vec![host(&h2), host(&c2), host(&u.grad(&grads).unwrap())];
            out.push(host(&h.grad(&grads).unwrap()));
            out.extend(pg);
            out
        };
        let (a, b) = (one(&cell, &f), one(&copy, &torch()));
        for (x, y) in a.iter().zip(&b) {
            let d = scaled_diff(x, y);
            assert!(d <= TOL, "group cell {kind:?}: differ by {d:e} > {TOL:e}");
        }
    }
}

#[test]
fn gtrxl() {
    check(
        "gtrxl",
        // A window shorter than the test's sequence, so cached keys and values are used.
        CoreConfig::Gtrxl(
            GtrxlConfig::new(E, H)
                .with_num_heads(2)
                .with_memory_len(3)
                .with_gate_bias(-1.0),
        ),
    );
}

#[test]
fn ffm() {
    check(
        "ffm",
        // Horizons up to 16 steps: every trace decays and turns visibly within the sequence.
        CoreConfig::Ffm(
            FfmConfig::new(E, H)
                .with_memory_size(6)
                .with_context_size(3)
                .with_max_period(16.0),
        ),
    );
}

/// The LSTM and GRU sequences on libtorch are libtorch's own RNN ops (`fused_sequence` answers
/// there, on autodiff and on plain libtorch), and they match flex's fused kernels without resets
/// (one plain call) and with a reset in some row at every step and in every row at once (one
/// packed call of segments of every length).
#[test]
fn lstm_and_gru_sequences_run_as_libtorch_rnn_ops() {
    use engram_memory::CoreState;
    let (t, b) = (9, 4);
    // Row r starts an episode at every step t with (t + r) % 4 == 0 (row 0 at t = 0), and every
    // row at step 6.
    let starts: Vec<bool> = (0..b * t)
        .map(|k| {
            let (row, step) = (k / t, k % t);
            (step + row) % 4 == 0 || step == 6
        })
        .collect();
    for cfg in [
        CoreConfig::Lstm(LstmConfig::new(E, H)),
        CoreConfig::Gru(GruConfig::new(E, H)),
    ] {
        let name = cfg.kind();
        let one =
            |core: &engram_memory::Core, device: &Device, grad: bool, starts: Option<&[bool]>| {
                let x = Tensor::<3>::from_data(
                    TensorData::new(rand_vec(t * b * E, 21, 1.5), [t, b, E]),
                    device,
                );
                let x = if grad { x.require_grad() } else { x };
                let width = core.state_layout().row_width();
                let state = core
                    .state_from_flat(&rand_vec(b * width, 22, 0.5), b, device)
                    .expect("state");
                let (y, last): (Tensor<3>, CoreState) = core
                    .fused_sequence(&x, SeqLayout::TimeMajor, &state, starts)
                    .unwrap_or_else(|| panic!("{name}: no fused sequence on {device:?}"));
                let mut out = vec![host(&y), last.to_flat()];
                if grad {
                    let w = Tensor::<3>::from_data(
                        TensorData::new(rand_vec(t * b * H, 23, 1.0), [t, b, H]),
                        device,
                    );
                    let grads = (y * w).sum().backward();
                    out.push(host(&x.grad(&grads).expect("input gradient")));
                    out.extend(params(core, Some(&grads)).1);
                }
                out
            };
        for (grad, starts) in [false, true]
            .into_iter()
            .flat_map(|g| [(g, Some(&starts[..])), (g, None)])
        {
            let (f, l) = if grad {
                (Device::flex().autodiff(), Device::libtorch().autodiff())
            } else {
                (Device::flex(), Device::libtorch())
            };
            // Built on each device itself (a fork between plain and autodiff keeps the kind).
            let (core_f, core_l) = {
                let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
                f.seed(5);
                let core = cfg.init(&f).expect("config");
                let copy = core.clone().fork(&l);
                (core, copy)
            };
            let (a, c) = (
                one(&core_f, &f, grad, starts),
                one(&core_l, &l, grad, starts),
            );
            assert_eq!(a.len(), c.len());
            for (i, (x, y)) in a.iter().zip(&c).enumerate() {
                let d = scaled_diff(x, y);
                assert!(
                    d <= TOL,
                    "{name} (autodiff {grad}, resets {}): tensor {i} differs by {d:e} > {TOL:e}",
                    starts.is_some()
                );
            }
        }
    }
}

//! The fused sequence kernels (flex backend) against the generic step loop: outputs, final
//! state and every gradient, with a non-zero initial state and resets inside the sequence.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use engram_memory::{
    CoreConfig, CoreState, FfmConfig, GruConfig, LstmConfig, RecurrentCore, SeqLayout,
};

use crate::common::*;

/// A rayon pool of `threads` threads, for the tests that split a kernel's rows over threads.
pub fn pool_of(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon thread pool")
}

/// Runs `core` fused (`forward_sequence`) and through the generic step loop (the diagnostics
/// path, which never takes a fused kernel) on the same tracked inputs, `b ≥ 3` rows of 7 steps,
/// and compares outputs, final states and the gradients of inputs, initial state and every
/// parameter; checks that an untracked run (no tape) gives the same outputs; then the same for
/// `forward_steps` (per-step calls, fused per step where the core has a one-step kernel).
pub fn check_fused_equals_loop(cfg: CoreConfig, b: usize) {
    check_fused_equals_loop_from(cfg, b, 0.8)
}

/// [`check_fused_equals_loop`] from an initial state of scale `init_scale` (0: all zero, where
/// every module ties for activation).
pub fn check_fused_equals_loop_from(cfg: CoreConfig, b: usize, init_scale: f32) {
    let core = cfg.init(&ad()).unwrap().map(&mut WidenSmallInit);
    check_core_fused_equals_loop(core, b, init_scale)
}

/// [`check_fused_equals_loop_from`] for a core already built (on the autodiff flex device).
pub fn check_core_fused_equals_loop(core: engram_memory::Core, b: usize, init_scale: f32) {
    let d = ad();
    let t_len = 7;
    let e = core.input_size();
    let mut starts = vec![false; b * t_len];
    starts[t_len + 3] = true; // row 1 restarts at step 3
    starts[2 * t_len] = true; // row 2 restarts at step 0
    starts[(b - 1) * t_len + 5] = true; // the last row restarts at step 5
    let x = rand3([b, t_len, e], 3, 1.0, &d).require_grad();
    let init: Vec<Tensor<2>> = core
        .state_layout()
        .parts
        .iter()
        .enumerate()
        .map(|(i, p)| rand2([b, p.width], 40 + i as u64, init_scale, &d).require_grad())
        .collect();
    let reference = || {
        let (y, s, _) = core
            .forward_sequence_with_diagnostics(
                x.clone(),
                CoreState::from_parts(init.clone()),
                Some(&starts),
            )
            .unwrap();
        (y, s)
    };
    time_major_matches_batch_major(&core, &x, &init, &starts);
    let (y_f, s_f) = core
        .forward_sequence(
            x.clone(),
            CoreState::from_parts(init.clone()),
            Some(&starts),
        )
        .unwrap();
    // Nothing tracked (as actors run): the kernel keeps no tape (one step of scratch per block
    // of rows) and gives the same outputs and final state.
    let (y_n, s_n) = core
        .clone()
        .no_grad()
        .forward_sequence(
            x.clone().detach(),
            CoreState::from_parts(init.clone()).detach(),
            Some(&starts),
        )
        .unwrap();
    assert_close(&y_n, &y_f, 1e-6);
    for (n, f) in s_n.parts.iter().zip(&s_f.parts) {
        assert_close(n, f, 1e-6);
    }
    compare(&core, &x, &init, (y_f, s_f), reference(), init_scale > 0.0);
    untracked_input_keeps_other_gradients(&core, &x, &init, &starts);
    let xs = (0..t_len)
        .map(|t| x.clone().narrow(1, t, 1).reshape([b, e]))
        .collect();
    let (ys, s_s) = core
        .forward_steps(xs, CoreState::from_parts(init.clone()), Some(&starts))
        .unwrap();
    compare(
        &core,
        &x,
        &init,
        (Tensor::stack(ys, 1), s_s),
        reference(),
        init_scale > 0.0,
    );
}

/// The fused kernel over time-major input (`fused_sequence`, the training loop's) and
/// `forward_sequence` over batch-major input (the kernel reading those rows in place where it
/// takes `SeqLayout::BatchMajor`, else the same kernel between transposes) agree bit for bit:
/// outputs, final state and the gradients of the input, the initial state and every parameter.
fn time_major_matches_batch_major(
    core: &engram_memory::Core,
    x: &Tensor<3>,
    init: &[Tensor<2>],
    starts: &[bool],
) {
    let run = |time_major: bool| {
        let state = CoreState::from_parts(init.to_vec());
        let (y, s) = if time_major {
            let x_tm = x.clone().swap_dims(0, 1);
            let (y, s) = core
                .fused_sequence(&x_tm, SeqLayout::TimeMajor, &state, Some(starts))
                .expect("the core has a fused kernel on flex");
            (y.swap_dims(0, 1), s)
        } else {
            core.forward_sequence(x.clone(), state, Some(starts))
                .unwrap()
        };
        (
            bits(&y),
            s.parts.iter().map(bits).collect::<Vec<_>>(),
            weighted_loss(y, s).backward(),
        )
    };
    let ((y_t, s_t, g_t), (y_b, s_b, g_b)) = (run(true), run(false));
    assert_eq!(y_t, y_b);
    assert_eq!(s_t, s_b);
    assert_eq!(bits(&x.grad(&g_t).unwrap()), bits(&x.grad(&g_b).unwrap()));
    for p in init {
        match (p.grad(&g_t), p.grad(&g_b)) {
            (Some(a), Some(b)) => assert_eq!(bits(&a), bits(&b)),
            (a, b) => assert_eq!(a.is_some(), b.is_some()),
        }
    }
    let mut params = 0;
    core.visit(&mut ParamGrads(&g_t, &g_b, &mut params, 0.0));
    assert!(params >= 3, "compared {params} parameters");
}

/// The fused run again with `x` untracked (an environment's observations): the kernel skips the
/// input's gradient, and the initial state's and every parameter's gradients are those of the
/// tracked run.
fn untracked_input_keeps_other_gradients(
    core: &engram_memory::Core,
    x: &Tensor<3>,
    init: &[Tensor<2>],
    starts: &[bool],
) {
    let grads = |x: Tensor<3>| {
        let (y, s) = core
            .forward_sequence(x, CoreState::from_parts(init.to_vec()), Some(starts))
            .unwrap();
        weighted_loss(y, s).backward()
    };
    let untracked = x.clone().detach().set_require_grad(false);
    assert!(!untracked.is_require_grad());
    let (tracked, free) = (grads(x.clone()), grads(untracked));
    assert!(x.grad(&tracked).is_some());
    for p in init {
        match (p.grad(&tracked), p.grad(&free)) {
            (Some(a), Some(b)) => assert_eq!(bits(&a), bits(&b)),
            (a, b) => assert_eq!(a.is_some(), b.is_some()),
        }
    }
    let mut params = 0;
    core.visit(&mut ParamGrads(&tracked, &free, &mut params, 2e-5));
    assert!(params >= 3, "compared {params} parameters");
}

/// `Σ y ⊙ w_y + Σ_i s_i ⊙ w_i` with fixed random weights: every output and final state part
/// gets a gradient.
fn weighted_loss(y: Tensor<3>, s: CoreState) -> Tensor<1> {
    let d = y.device();
    let mut l = (y.clone() * rand3(y.dims(), 7, 1.0, &d)).sum();
    for (i, p) in s.parts.into_iter().enumerate() {
        l = l + (p.clone() * rand2(p.dims(), 60 + i as u64, 1.0, &d)).sum();
    }
    l
}

/// Compares two runs' outputs, final states and gradients (of `x`, the initial state and every
/// parameter).
fn compare(
    core: &engram_memory::Core,
    x: &Tensor<3>,
    init: &[Tensor<2>],
    (y_f, s_f): (Tensor<3>, CoreState),
    (y_l, s_l): (Tensor<3>, CoreState),
    check_init_grads: bool,
) {
    assert_close(&y_f, &y_l, 2e-6);
    for (a, l) in s_f.parts.iter().zip(&s_l.parts) {
        assert_close(a, l, 2e-6);
    }
    let g_f = weighted_loss(y_f, s_f).backward();
    let g_l = weighted_loss(y_l, s_l).backward();
    let (a, l) = (x.grad(&g_f).unwrap(), x.grad(&g_l).unwrap());
    assert_close(&a, &l, 1e-5);
    for p in init {
        // Bookkeeping parts (screened memory's validity, scores, times) get no gradient in the
        // loop, zeros from a kernel.
        match (p.grad(&g_f), p.grad(&g_l)) {
            (Some(a), Some(l)) => assert_close(&a, &l, 1e-5),
            (Some(g), None) | (None, Some(g)) => assert!(host(&g).iter().all(|&v| v == 0.0)),
            (None, None) => {}
        }
    }
    // Row 2 restarts at step 0, so its initial state gets no gradient.
    if check_init_grads {
        let (g0, w) = (host(&init[0].grad(&g_f).unwrap()), init[0].dims()[1]);
        assert!(g0[2 * w..3 * w].iter().all(|&v| v == 0.0));
    }
    let mut params = 0;
    core.visit(&mut ParamGrads(&g_f, &g_l, &mut params, 2e-5));
    assert!(params >= 3, "compared {params} parameters");
}

/// Rescales every parameter initialised at a small scale (RMS below 0.05: the attention's query
/// and communication projections, `N(0, 0.01²)` as in the official RIMs code) to RMS 0.5. At
/// 0.01 the attention scores are ≈ 1e-6, the attention is uniform and the score paths' gradients
/// (queries, keys) are ≈ 1e-6 of the parameters' largest: below the comparison's tolerance, so a
/// wrong or missing score gradient would pass.
pub struct WidenSmallInit;

impl burn::module::ModuleMapper for WidenSmallInit {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let v = host(&param.val());
        let rms = (v.iter().map(|x| x * x).sum::<f32>() / v.len().max(1) as f32).sqrt();
        if rms > 0.0 && rms < 0.05 {
            param.map(|t| (t * (0.5 / rms)).detach().require_grad())
        } else {
            param
        }
    }
}

/// Compares each float parameter's gradient under two gradient sets, to a tolerance relative
/// to the second's largest magnitude (0: equal), counting the parameters.
struct ParamGrads<'a>(
    &'a burn::tensor::Gradients,
    &'a burn::tensor::Gradients,
    &'a mut usize,
    f32,
);

impl burn::module::ModuleVisitor for ParamGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (a, l) = (param.val().grad(self.0), param.val().grad(self.1));
        let (a, l) = (a.expect("fused gradient"), l.expect("loop gradient"));
        let scale = host(&l).iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(max_diff(&host(&a), &host(&l)) <= self.3 * scale);
        *self.2 += 1;
    }
}

#[test]
fn fused_lstm_equals_step_loop_with_gradients() {
    check_fused_equals_loop(CoreConfig::Lstm(LstmConfig::new(5, 6)), 3);
}

#[test]
fn fused_gru_equals_step_loop_with_gradients() {
    check_fused_equals_loop(CoreConfig::Gru(GruConfig::new(5, 6)), 3);
}

#[test]
fn fused_ffm_scan_equals_step_loop_with_gradients() {
    // Decays and frequencies of several horizons, so every γ has a distinct phase and size.
    let cfg = FfmConfig::new(5, 6)
        .with_memory_size(3)
        .with_context_size(2)
        .with_max_period(8.0);
    check_fused_equals_loop(CoreConfig::Ffm(cfg.clone()), 3);
    let pool = pool_of(3);
    // 12 rows × 7 steps: the read-out kernel splits its 84 rows into blocks of 64 and 20.
    pool.install(|| check_fused_equals_loop(CoreConfig::Ffm(cfg), 12));
}

/// Large enough steps (67 rows × H = 64) are split by rows over the thread pool: three threads
/// give uneven blocks of 23, 23 and 21 rows, with resets in the first and last block.
#[test]
fn fused_lstm_split_over_threads_equals_step_loop() {
    let pool = pool_of(3);
    pool.install(|| check_fused_equals_loop(CoreConfig::Lstm(LstmConfig::new(5, 64)), 67));
}

/// As above for the GRU (67 rows × H = 80: over the split threshold with its 3H gates).
#[test]
fn fused_gru_split_over_threads_equals_step_loop() {
    let pool = pool_of(3);
    pool.install(|| check_fused_equals_loop(CoreConfig::Gru(GruConfig::new(5, 80)), 67));
}

#[test]
fn forward_steps_concat_is_time_major_and_matches_forward_steps() {
    let d = ad();
    for cfg in [
        CoreConfig::Lstm(LstmConfig::new(5, 6)),
        CoreConfig::Gru(GruConfig::new(5, 6)),
    ] {
        let core = cfg.init(&d).unwrap();
        let xs: Vec<Tensor<2>> = (0..4).map(|t| rand2([2, 5], 80 + t, 1.0, &d)).collect();
        let starts = [false, false, true, false, false, true, false, false];
        let (cat, s1) = core
            .forward_steps_concat(xs.clone(), core.init_state(2, &d), Some(&starts))
            .unwrap();
        let (ys, s2) = core
            .forward_steps(xs, core.init_state(2, &d), Some(&starts))
            .unwrap();
        assert_close(&cat, &Tensor::cat(ys, 0), 2e-6);
        for (a, b) in s1.parts.iter().zip(&s2.parts) {
            assert_close(a, b, 2e-6);
        }
    }
}

/// GTrXL's blocks run batch-major: `forward_sequence` hands them its rows as they are (no
/// transposes), the training loop's time-major call transposes around them — the same outputs,
/// final state and gradients, bit for bit.
#[test]
fn gtrxl_time_major_matches_batch_major() {
    let cfg = engram_memory::GtrxlConfig::new(3, 8)
        .with_num_layers(2)
        .with_num_heads(2)
        .with_memory_len(3)
        .with_ff_size(12);
    let core = CoreConfig::Gtrxl(cfg).init(&ad()).unwrap();
    let (b, t_len) = (3, 7);
    let x = rand3([b, t_len, 3], 3, 1.0, &ad()).require_grad();
    // The zero state (its window's validity is part of it), tracked.
    let init: Vec<Tensor<2>> = core
        .init_state(b, &ad())
        .parts
        .into_iter()
        .map(|p| p.require_grad())
        .collect();
    let mut starts = vec![false; b * t_len];
    starts[t_len + 3] = true;
    time_major_matches_batch_major(&core, &x, &init, &starts);
}

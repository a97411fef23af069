//! One recurrent-PPO update from the same weights and batch on flex and on libtorch's CPU gives the same new weights.
//!
//! Built only with `--features tch` (see scripts/setup-libtorch.sh). A policy (MLP encoder →
//! core → heads) is initialised on flex and copied to libtorch; both learners run one update
//! (2 epochs × 2 minibatches = 4 Adam steps, global gradient clipping, a fixed shuffle seed) on
//! the same synthetic two-env rollout with episode starts inside its sequences.
//!
//! Tolerance: per parameter, `max |w_flex − w_libtorch| ≤ 2e-6 + 1e-3 · max |Δw_libtorch|`, where
//! `Δw` is that parameter's change over the update: the new weights agree to within a thousandth
//! of how far the update moved them (plus f32 rounding of the weights themselves). Adam divides
//! each gradient by its running RMS, so f32 differences in the gradients (≈1e-6 relative) reach
//! the weights only at that relative size; a missed gradient term or a wrong reset moves the
//! weights by a large fraction of `Δw`. The update's losses must agree to 1e-4 (scaled). Seen:
//! at most 6e-8 (GRU) for steps of 4e-3, i.e. f32 rounding of the weights.

#![cfg(feature = "tch")]
#![allow(deprecated)] // burn 0.22 marks burn-tch deprecated; it is still the libtorch route

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use engram_agents::algo::{Algorithm, Learner, Ppo, UpdateStats};
use engram_agents::config::{PolicySection, PpoSection};
use engram_agents::policy::{ActionKind, Policy};
use engram_agents::rollout::{ActionData, Chunk, SequenceLayout};
use engram_agents::run::device::device_for;
use engram_memory::{CoreConfig, RecurrentCore};
use rand::SeedableRng;
use rand_pcg::Pcg64;

/// burn's seed is global: tests running in parallel would draw each other's initial weights
/// (a different start every run), so seeding and drawing the weights hold this lock.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

const OBS: usize = 5;
const ENVS: usize = 2;
const LEN: usize = 16;
const SEQ: usize = 8;
const LR: f64 = 1e-3;

/// Deterministic values in (−1, 1).
fn wave(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 + 1.0) * 0.618_034 + seed).sin() * ((i as f32) * 0.37 + seed).cos())
        .collect()
}

/// A two-env rollout of `LEN` steps (time-major), episodes ending inside the sequences.
fn chunk(state_width: usize) -> Chunk {
    let n = LEN * ENVS;
    let starts: Vec<bool> = (0..n)
        .map(|i| {
            let (t, e) = (i / ENVS, i % ENVS);
            t == 0 || (e == 0 && t == 5) || (e == 1 && (t == 3 || t == 11))
        })
        .collect();
    let terminated: Vec<bool> = (0..n).map(|i| i + ENVS < n && starts[i + ENVS]).collect();
    Chunk {
        num_envs: ENVS,
        len: LEN,
        obs_dim: OBS,
        obs: wave(n * OBS, 0.3),
        actions: ActionData::Int((0..n).map(|i| ((i * 7) % 3) as i64).collect()),
        action_len: 1,
        log_probs: wave(n, 1.1).iter().map(|v| -1.1 + 0.3 * v).collect(),
        values: wave(n, 2.0).iter().map(|v| 0.5 * v).collect(),
        rewards: wave(n, 4.0)
            .iter()
            .map(|v| if *v > 0.0 { 1.0 } else { 0.0 })
            .collect(),
        terminated,
        truncated: vec![false; n],
        final_values: vec![0.0; n],
        episode_starts: starts,
        last_values: vec![0.2, -0.1],
        last_obs: wave(ENVS * OBS, 5.0),
        last_starts: vec![false, true],
        seq_states: vec![vec![0.0; state_width * ENVS]; LEN / SEQ],
        episodes: vec![],
        policy_version: 0,
        env_panics: 0,
    }
}

/// Every float parameter's values, in visiting order.
struct Values(Vec<Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param.val().to_data().try_into_vec_as::<f32>().unwrap();
        self.0.push(v);
    }
}

fn values(policy: &Policy) -> Vec<Vec<f32>> {
    let mut v = Values(vec![]);
    policy.visit(&mut v);
    v.0
}

fn update(policy: Policy, device: Device) -> (Vec<Vec<f32>>, UpdateStats) {
    let layout = SequenceLayout::new(LEN, SEQ, 0).expect("layout");
    let ppo = PpoSection {
        rollout_len: LEN,
        seq_len: SEQ,
        epochs: 2,
        minibatches: 2,
        ..PpoSection::default()
    };
    let width = policy.core.state_layout().row_width();
    let mut learner = Learner::new(policy, ppo, layout, device);
    let mut chunks = vec![chunk(width)];
    let mut rng = Pcg64::seed_from_u64(5);
    let stats = Ppo
        .update(&mut learner, &mut chunks, LR, &mut rng, 1)
        .expect("update");
    (values(&learner.policy), stats)
}

/// Builds a policy with `kind`'s core on flex, updates it on flex and on libtorch, compares.
fn check(kind: &str) {
    let flex = Device::flex().autodiff();
    let torch = Device::libtorch().autodiff();
    let section = PolicySection {
        encoder: vec![16],
        core: CoreConfig::default_for(kind, 0, 12).expect("core"),
        ..PolicySection::default()
    };
    // burn initialises parameters lazily: reading them draws the weights, so under the lock.
    let (policy, before) = {
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        flex.seed(9);
        let policy =
            Policy::new(&section, OBS, &ActionKind::Categorical(vec![3]), &flex).expect("policy");
        let before = values(&policy);
        (policy, before)
    };
    let copy = policy.clone().fork(&torch);
    assert_eq!(
        before,
        values(&copy),
        "{kind}: weights differ after the copy"
    );

    let (wf, sf) = update(policy, flex);
    let (wt, st) = update(copy, torch);
    let mut worst = 0.0f32;
    let mut moved = 0.0f32;
    for (i, ((f, t), b)) in wf.iter().zip(&wt).zip(&before).enumerate() {
        let step = t
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, |m: f32, d| if d.is_nan() || d > m { d } else { m }); // NaN wins
        let diff = f
            .iter()
            .zip(t)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, |m: f32, d| if d.is_nan() || d > m { d } else { m }); // NaN wins
        let tol = 2e-6 + 1e-3 * step;
        assert!(
            diff <= tol,
            "{kind}: parameter {i} differs by {diff:e} after the update (moved {step:e}, tolerance {tol:e})"
        );
        worst = worst.max(diff);
        moved = moved.max(step);
    }
    assert!(moved > 1e-4, "{kind}: the update did not move the weights");
    let pairs = [
        ("policy loss", sf.policy_loss, st.policy_loss),
        ("value loss", sf.value_loss, st.value_loss),
        ("entropy", sf.entropy, st.entropy),
        ("approx kl", sf.approx_kl, st.approx_kl),
        ("grad norm", sf.grad_norm, st.grad_norm),
    ];
    for (what, a, b) in pairs {
        let d = (a - b).abs() / b.abs().max(1.0);
        assert!(d <= 1e-4, "{kind}: {what} {a} on flex, {b} on libtorch");
    }
    eprintln!("{kind}: max weight difference {worst:e} (largest update step {moved:e})");
}

#[test]
fn ppo_update_lstm() {
    check("lstm");
}

#[test]
fn ppo_update_gru() {
    check("gru");
}

#[test]
fn ppo_update_rims() {
    check("rims");
}

#[test]
fn ppo_update_brims() {
    check("brims");
}

#[test]
fn ppo_update_rel_lstm() {
    check("rel_lstm");
}

#[test]
fn ppo_update_ffm() {
    check("ffm");
}

#[test]
fn ppo_update_gtrxl() {
    check("gtrxl");
}

#[test]
fn run_device_names_select_libtorch() {
    let d = device_for("libtorch").expect("libtorch CPU is built in");
    assert_eq!(d, Device::libtorch());
    let a = Tensor::<2>::from_data([[1.0f32, 2.0], [3.0, 4.0]], &d);
    let v = a
        .clone()
        .matmul(a)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_eq!(v, vec![7.0, 10.0, 15.0, 22.0]);
    // Without a CUDA device (as in CI) the error says so; with one, cuda:0 is a libtorch device.
    match device_for("cuda:0") {
        Ok(d) => assert_eq!(d, Device::libtorch_cuda(0)),
        Err(e) => assert!(e.to_string().contains("CUDA device"), "{e}"),
    }
}

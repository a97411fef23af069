//! Recurrent PPO semantics: episode boundaries, chunked vs full BPTT, stored and refreshed states.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use engram_agents::algo::grad_norm::global_norm;
use engram_agents::algo::minibatch::SeqRef;
use engram_agents::algo::{ppo, Algorithm, Learner};
use engram_agents::config::{PolicySection, PpoSection};
use engram_agents::policy::{matrix, read, ActionKind, Policy};
use engram_agents::rollout::Actor;
use engram_agents::rollout::{ActionData, Chunk, SequenceLayout};
use engram_memory::{CoreConfig, RecurrentCore};
use rand::SeedableRng;

const OBS: usize = 3;
/// The first sequence of the first env row of the first chunk.
const SEQ0: SeqRef = SeqRef {
    chunk: 0,
    env: 0,
    seq: 0,
};

fn policy(kind: &str, obs_dim: usize, actions: usize, device: &Device) -> Policy {
    let section = PolicySection {
        encoder: vec![8],
        core: CoreConfig::default_for(kind, 0, 12).expect("core"),
        ..Default::default()
    };
    device.seed(7);
    Policy::new(
        &section,
        obs_dim,
        &ActionKind::Categorical(vec![actions]),
        device,
    )
    .expect("policy")
}

/// A one-env chunk of `len` steps with the given observations and episode starts.
fn chunk(obs: Vec<f32>, starts: Vec<bool>, state_width: usize, count: usize) -> Chunk {
    let len = starts.len();
    let terminated: Vec<bool> = (0..len).map(|t| t + 1 < len && starts[t + 1]).collect();
    Chunk {
        num_envs: 1,
        len,
        obs_dim: OBS,
        obs,
        actions: ActionData::Int((0..len).map(|t| (t % 2) as i64).collect()),
        action_len: 1,
        log_probs: vec![-0.69; len],
        values: (0..len).map(|t| t as f32 * 0.1).collect(),
        rewards: vec![1.0; len],
        terminated,
        truncated: vec![false; len],
        final_values: vec![0.0; len],
        episode_starts: starts,
        last_values: vec![0.5],
        last_obs: vec![0.0; OBS],
        last_starts: vec![false],
        seq_states: vec![vec![0.0; state_width]; count],
        episodes: vec![],
        policy_version: 0,
        env_panics: 0,
    }
}

fn observations(len: usize, seed: f32) -> Vec<f32> {
    (0..len * OBS)
        .map(|i| (i as f32 * 0.37 + seed).sin())
        .collect()
}

fn learner(kind: &str, seq_len: usize, rollout: usize, device: &Device) -> Learner {
    learner_for(kind, seq_len, rollout, OBS, 2, device)
}

fn learner_for(
    kind: &str,
    seq_len: usize,
    rollout: usize,
    obs_dim: usize,
    actions: usize,
    device: &Device,
) -> Learner {
    let layout = SequenceLayout::new(rollout, seq_len, 0).expect("layout");
    let ppo = PpoSection {
        rollout_len: rollout,
        seq_len,
        minibatches: 1,
        epochs: 1,
        ..PpoSection::default()
    };
    Learner::new(
        policy(kind, obs_dim, actions, device),
        ppo,
        layout,
        device.clone(),
    )
}

#[test]
fn nothing_crosses_an_episode_boundary() {
    for kind in ["lstm", "gru", "rims"] {
        let device = Device::flex().autodiff();
        let l = learner(kind, 12, 12, &device);
        let w = l.policy.core.state_layout().row_width();
        // Episode A is steps 0..5, episode B starts at step 5.
        let starts: Vec<bool> = (0..12).map(|t| t == 0 || t == 5).collect();
        let base = observations(12, 0.0);
        let mut perturbed = base.clone();
        for x in &mut perturbed[..5 * OBS] {
            *x += 3.0; // change everything episode A saw
        }
        // Core outputs of episode B's steps (rows 5.. of the time-major unroll of one sequence).
        let out = |obs: Vec<f32>| -> Vec<f32> {
            let chunks = vec![chunk(obs, starts.clone(), w, 1)];
            let targets = vec![(vec![1.0; 12], vec![1.0; 12])];
            let batch = ppo::batch(&l, &chunks, &targets, &[SEQ0]).expect("batch");
            let (h, _) = l
                .policy
                .unroll(batch.seqs.obs, batch.seqs.state, &batch.seqs.episode_starts)
                .expect("unroll");
            read(h.narrow(0, 5, 7))
        };
        let (a, b) = (out(base), out(perturbed));
        assert_eq!(a, b, "{kind}: outputs of episode B depend on episode A");
    }
}

#[test]
fn loss_on_the_next_episode_ignores_the_previous_one() {
    let device = Device::flex().autodiff();
    let l = learner("lstm", 10, 10, &device);
    let w = l.policy.core.state_layout().row_width();
    let starts: Vec<bool> = (0..10).map(|t| t == 0 || t == 4).collect();
    let mut losses = vec![];
    for shift in [0.0, 5.0] {
        let mut obs = observations(10, 1.0);
        for x in &mut obs[..4 * OBS] {
            *x += shift;
        }
        let chunks = vec![chunk(obs, starts.clone(), w, 1)];
        // Targets that zero the first episode's contribution: advantage and return equal its value.
        let adv: Vec<f32> = (0..10).map(|t| if t < 4 { 0.0 } else { 1.0 }).collect();
        let targets = vec![(adv, vec![0.0; 10])];
        let mut batch = ppo::batch(&l, &chunks, &targets, &[SEQ0]).expect("batch");
        let mask: Vec<f32> = (0..10).map(|t| if t < 4 { 0.0 } else { 1.0 }).collect();
        batch.mask = Tensor::from_data(burn::tensor::TensorData::new(mask, [10]), &device);
        batch.mask_count = 6.0;
        losses.push(
            ppo::losses(&l, &batch)
                .expect("losses")
                .total
                .into_scalar::<f32>(),
        );
    }
    assert_eq!(losses[0], losses[1]);
}

#[test]
fn chunked_bptt_equals_full_bptt_when_the_chunk_is_the_episode() {
    let device = Device::flex().autodiff();
    let len = 9;
    let l = learner("lstm", len, len, &device);
    let w = l.policy.core.state_layout().row_width();
    let obs = observations(len, 2.0);
    let starts: Vec<bool> = (0..len).map(|t| t == 0).collect();
    let chunks = vec![chunk(obs.clone(), starts, w, 1)];
    let targets = vec![(
        (0..len).map(|t| (t as f32 - 4.0) * 0.3).collect(),
        (0..len).map(|t| t as f32 * 0.2).collect(),
    )];
    let batch = ppo::batch(&l, &chunks, &targets, &[SEQ0]).expect("batch");
    let chunked = ppo::losses(&l, &batch).expect("losses").value;
    let chunked_value = chunked.clone().into_scalar::<f32>();
    let g_chunked = GradientsParams::from_grads(chunked.backward(), &l.policy);

    // Full BPTT by hand: one step at a time from a zero state, value loss over the episode.
    let mut state = l.policy.core.init_state(1, &device);
    let mut values = vec![];
    for t in 0..len {
        let (_, v, s) = l
            .policy
            .step(
                matrix(obs[t * OBS..(t + 1) * OBS].to_vec(), 1, OBS, &device),
                state,
            )
            .expect("step");
        state = s;
        values.push(v);
    }
    let v = Tensor::cat(values, 0);
    let ret = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(targets[0].1.clone(), [len]),
        &device,
    );
    let old = Tensor::<1>::from_data(
        burn::tensor::TensorData::new(chunks[0].values.clone(), [len]),
        &device,
    );
    let unclipped = (v.clone() - ret.clone()) * (v.clone() - ret.clone());
    let clipped_v = old.clone() + (v - old).clamp(-0.2, 0.2);
    let clipped = (clipped_v.clone() - ret.clone()) * (clipped_v - ret);
    let full = unclipped.max_pair(clipped).mean() * 0.5;
    let full_value = full.clone().into_scalar::<f32>();
    let g_full = GradientsParams::from_grads(full.backward(), &l.policy);
    assert!(
        (chunked_value - full_value).abs() < 1e-6,
        "{chunked_value} vs {full_value}"
    );
    let (a, b) = (
        global_norm(&l.policy, &g_chunked),
        global_norm(&l.policy, &g_full),
    );
    assert!(
        a > 0.0 && (a - b).abs() < 1e-5 * a.max(1.0),
        "grad norms {a} vs {b}"
    );
}

#[test]
fn stored_states_match_a_refresh_with_unchanged_weights() {
    for kind in ["lstm", "rims"] {
        let device = Device::flex();
        let train_device = device.clone().autodiff();
        let l = learner_for(kind, 8, 32, 4, 4, &train_device);
        let envs =
            Actor::make_envs("popgym-RepeatPreviousEasy-v0", &Default::default(), 3).expect("envs");
        let mut actor = Actor::new(envs, l.policy.valid(), 5, device.clone()).expect("actor");
        let layout = SequenceLayout::new(32, 8, 0).expect("layout");
        let _ = actor.collect(layout).expect("warm-up rollout");
        let mut chunks = vec![actor.collect(layout).expect("rollout")];
        let stored = chunks[0].seq_states.clone();
        assert!(
            stored[0].iter().any(|&x| x != 0.0),
            "the second rollout starts from a carried state"
        );
        ppo::refresh_states(&l, &mut chunks).expect("refresh");
        for (k, (a, b)) in stored.iter().zip(&chunks[0].seq_states).enumerate() {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, |m: f32, d| if d.is_nan() || d > m { d } else { m }); // NaN wins
            assert!(diff < 1e-5, "{kind}: sequence {k} state differs by {diff}");
        }
    }
}

#[test]
fn actors_feed_the_previous_action_and_reward_and_clear_them_at_episode_starts() {
    let device = Device::flex();
    let section = PolicySection {
        encoder: vec![8],
        core: CoreConfig::default_for("gru", 0, 12).expect("core"),
        prev_action_reward: true,
        ..Default::default()
    };
    // CartPole: 4 observations, then a one-hot of the 2 actions, then the reward.
    let policy =
        Policy::new(&section, 4, &ActionKind::Categorical(vec![2]), &device).expect("policy");
    let envs = Actor::make_envs("CartPole-v1", &Default::default(), 2).expect("envs");
    let mut actor = Actor::new(envs, policy, 3, device).expect("actor");
    let layout = SequenceLayout::new(64, 64, 0).expect("layout");
    let ch = actor.collect(layout).expect("rollout");
    assert_eq!(ch.obs_dim, 7);
    let ActionData::Int(actions) = &ch.actions else {
        panic!("categorical actions")
    };
    let mut starts_seen = 0;
    for t in 0..64 {
        for e in 0..2 {
            let i = t * 2 + e;
            let extra = &ch.obs[i * 7 + 4..(i + 1) * 7];
            if ch.episode_starts[i] {
                starts_seen += 1;
                assert_eq!(extra, [0.0; 3], "step {t} env {e} starts an episode");
            } else {
                let prev = (t - 1) * 2 + e;
                let mut want = [0.0; 3];
                want[actions[prev] as usize] = 1.0;
                want[2] = ch.rewards[prev];
                assert_eq!(extra, want, "step {t} env {e}");
            }
        }
    }
    assert!(starts_seen > 2, "the rollout crosses episode ends");
}

#[test]
fn acting_and_learning_agree_so_ppo_starts_every_update_at_zero_kl() {
    // The actor's step-by-step inference and the learner's sequence forward (with carried
    // states, resets inside sequences and several sequences per rollout) give the same
    // log-probabilities for every core: PPO's first minibatch sees ratio 1 everywhere.
    for kind in engram_memory::CORE_KINDS.iter().copied() {
        let device = Device::flex();
        let train_device = device.clone().autodiff();
        let mut l = learner_for(kind, 8, 24, 4, 2, &train_device);
        let envs = Actor::make_envs("CartPole-v1", &Default::default(), 3).expect("envs");
        let mut actor = Actor::new(envs, l.policy.valid(), 5, device.clone()).expect("actor");
        let layout = SequenceLayout::new(24, 8, 0).expect("layout");
        let _ = actor.collect(layout).expect("warm-up rollout");
        let mut chunks = vec![actor.collect(layout).expect("rollout")];
        assert!(
            chunks[0].episode_starts.iter().skip(3).any(|&s| s),
            "{kind}: the rollout crosses an episode start"
        );
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let stats = ppo::Ppo
            .update(&mut l, &mut chunks, 1e-3, &mut rng, 1)
            .expect("update");
        assert!(
            stats.behaviour_kl.abs() < 1e-6,
            "{kind}: the learner's first forward differs from the actor's (KL {:e})",
            stats.behaviour_kl
        );
        assert!(stats.approx_kl.is_finite(), "{kind}");
    }
}

//! The rules of the built-in environments, checked with oracle, memoryless and random policies.

use engram_envs::{make, Action, Env, EnvRng, Space};
use serde_json::{json, Map, Value};

fn env(id: &str, kwargs: Value) -> Box<dyn Env> {
    make(id, kwargs.as_object().unwrap_or(&Map::new())).unwrap_or_else(|e| panic!("{e}"))
}

fn argmax(v: &[f32]) -> i64 {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as i64)
        .unwrap_or(0)
}

/// Run one episode; `policy(history of observations)` picks each action. Returns (return, steps).
fn episode(
    env: &mut dyn Env,
    seed: u64,
    mut policy: impl FnMut(&[Vec<f32>]) -> i64,
) -> (f64, usize) {
    let mut obs = vec![0.0; env.spec().obs_dim()];
    env.reset(Some(seed), &mut obs).expect("reset");
    let mut history = vec![obs.clone()];
    let (mut ret, mut steps) = (0.0, 0);
    loop {
        let a = policy(&history);
        let s = env.step(Action::Discrete(a), &mut obs).expect("step");
        ret += s.reward as f64;
        steps += 1;
        history.push(obs.clone());
        if s.done() {
            return (ret, steps);
        }
    }
}

#[test]
fn passive_tmaze_oracle_scores_one_and_memoryless_half() {
    for l in [1u64, 10, 100, 10_000] {
        let mut e = env("TMaze-Passive-v0", json!({ "corridor_length": l }));
        for seed in 0..20 {
            let (ret, steps) = episode(e.as_mut(), seed, |h| {
                if h.len() as u64 <= l {
                    0
                } else if h[0][1] > 0.0 {
                    1
                } else {
                    3
                }
            });
            assert_eq!(steps as u64, l + 1);
            assert!((ret - 1.0).abs() < 1e-9, "L={l} seed {seed}: return {ret}");
        }
    }
    let mut e = env("TMaze-Passive-v0", json!({ "corridor_length": 20 }));
    let n = 2000;
    let wins: f64 = (0..n)
        .map(|s| episode(e.as_mut(), s, |h| if h.len() <= 20 { 0 } else { 1 }).0)
        .sum();
    let rate = wins / n as f64;
    assert!((rate - 0.5).abs() < 0.04, "memoryless success {rate}");
}

#[test]
fn passive_tmaze_with_a_range_of_lengths_draws_each_episode_s_corridor() {
    let mut e = env(
        "TMaze-Passive-v0",
        json!({ "corridor_length": 20, "min_corridor_length": 5 }),
    );
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200 {
        // Walk right until the junction shows (obs[0] = 1), then turn to the cue's side.
        let (ret, steps) = episode(e.as_mut(), seed, |h| {
            if h.last().expect("an observation")[0] < 0.5 {
                0
            } else if h[0][1] > 0.0 {
                1
            } else {
                3
            }
        });
        assert!((ret - 1.0).abs() < 1e-9, "seed {seed}: return {ret}");
        seen.insert(steps - 1);
    }
    assert_eq!(
        seen,
        (5..=20).collect(),
        "every length in the range, and only those"
    );
    // Late steps cost -1/L of the episode's own L: one wasted step costs 1 in all.
    for seed in 0..20 {
        let (ret, _) = episode(e.as_mut(), seed, |h| if h.len() == 1 { 2 } else { 0 });
        assert!((ret + 1.0).abs() < 1e-5, "seed {seed}: {ret}");
    }
    let err = make(
        "TMaze-Passive-v0",
        json!({ "corridor_length": 20, "min_corridor_length": 30 })
            .as_object()
            .expect("an object"),
    )
    .err()
    .expect("an error")
    .to_string();
    assert!(
        err.contains("`min_corridor_length` = 30") && err.contains("at most corridor_length = 20"),
        "{err}"
    );
}

#[test]
fn passive_tmaze_penalises_falling_behind() {
    let mut e = env("TMaze-Passive-v0", json!({ "corridor_length": 10 }));
    // One wasted step (left into the wall) makes the junction unreachable and costs -1/L per late step.
    let (ret, steps) = episode(e.as_mut(), 0, |h| if h.len() == 1 { 2 } else { 0 });
    assert_eq!(steps, 11);
    assert!((ret - (-10.0 / 10.0)).abs() < 1e-6, "{ret}");
}

#[test]
fn active_tmaze_shows_the_goal_only_at_the_oracle() {
    let l = 50u64;
    let mut e = env("TMaze-Active-v0", json!({ "corridor_length": l }));
    for seed in 0..10 {
        let mut goal = 0.0;
        let (ret, steps) = episode(e.as_mut(), seed, |h| {
            let t = h.len() - 1;
            if t == 0 {
                assert_eq!(h[0], vec![0.0, 0.0], "the start cell shows nothing");
                return 2;
            }
            if t == 1 {
                goal = h[1][1];
                assert!(goal == 1.0 || goal == -1.0);
            }
            if (t as u64) < l + 2 {
                0
            } else if goal > 0.0 {
                1
            } else {
                3
            }
        });
        assert_eq!(steps as u64, l + 3);
        assert!((ret - 1.0).abs() < 1e-6, "seed {seed}: {ret}");
    }
}

#[test]
fn memory_chain_follows_bsuite_timing() {
    let (l, bits) = (5usize, 3usize);
    let mut e = env(
        "MemoryChain-v0",
        json!({ "memory_length": l, "num_bits": bits }),
    );
    let mut obs = vec![0.0; bits + 2];
    for seed in 0..50 {
        e.reset(Some(seed), &mut obs).expect("reset");
        assert_eq!(obs[0], 1.0);
        let context: Vec<f32> = obs[2..].to_vec();
        assert!(context.iter().all(|&c| c == 1.0 || c == -1.0));
        let mut query = None;
        for t in 1..=l {
            let s = e.step(Action::Discrete(0), &mut obs).expect("step");
            assert_eq!(s.reward, 0.0);
            assert!(!s.done());
            if t == 1 {
                assert_eq!(
                    &obs[2..],
                    &context[..],
                    "the first step shows the context again"
                );
            }
            if t == l {
                query = Some(obs[1] as usize);
            } else if t > 1 {
                assert!(obs[1..].iter().all(|&x| x == 0.0));
            }
        }
        let q = query.expect("query shown at step L");
        let answer = if context[q] > 0.0 { 1 } else { 0 };
        let s = e.step(Action::Discrete(answer), &mut obs).expect("step");
        assert!(s.terminated);
        assert_eq!(s.reward, 1.0);
    }
    let mut sweep = env("MemoryLen-v0", json!({ "setting": 22 }));
    let (_, steps) = episode(sweep.as_mut(), 0, |_| 0);
    assert_eq!(steps, 101);
    let mut longest = env("MemoryLen-v0", json!({ "setting": 28 }));
    let (_, steps) = episode(longest.as_mut(), 0, |_| 0);
    assert_eq!(steps, 1001);
    let size = env("MemorySize-v0", json!({ "setting": 16 }));
    assert_eq!(size.spec().obs_dim(), 42);
}

/// Oracle for RepeatFirst / RepeatPrevious: decode suits from one-hot history.
fn repeat_oracle(k: Option<usize>) -> impl FnMut(&[Vec<f32>]) -> i64 {
    move |h: &[Vec<f32>]| {
        let t = h.len();
        match k {
            None => argmax(&h[0]),
            Some(k) if t >= k => argmax(&h[t - k]),
            Some(_) => 0,
        }
    }
}

#[test]
fn popgym_repeat_tasks_lengths_oracles_and_random() {
    let cases = [
        ("popgym-RepeatFirstEasy-v0", 51, None),
        ("popgym-RepeatFirstMedium-v0", 415, None),
        ("popgym-RepeatFirstHard-v0", 831, None),
        ("popgym-RepeatPreviousEasy-v0", 51, Some(4)),
        ("popgym-RepeatPreviousMedium-v0", 103, Some(32)),
        ("popgym-RepeatPreviousHard-v0", 155, Some(64)),
    ];
    for (id, len, k) in cases {
        let mut e = env(id, json!({}));
        for seed in 0..5 {
            let (ret, steps) = episode(e.as_mut(), seed, repeat_oracle(k));
            assert_eq!(steps, len, "{id}");
            assert!((ret - 1.0).abs() < 1e-4, "{id} oracle return {ret}");
        }
        let mut rng = EnvRng::from_seed(9);
        let n = 300;
        let mean: f64 = (0..n)
            .map(|s| episode(e.as_mut(), 100 + s, |_| rng.below(4) as i64).0)
            .sum::<f64>()
            / n as f64;
        assert!((mean + 0.5).abs() < 0.05, "{id} random mean {mean}");
    }
}

#[test]
fn popgym_count_recall_spaces_and_oracle() {
    for (id, len, c, actions) in [
        ("popgym-CountRecallEasy-v0", 51, 2, 27),
        ("popgym-CountRecallMedium-v0", 103, 4, 27),
        ("popgym-CountRecallHard-v0", 207, 13, 17),
    ] {
        let mut e = env(id, json!({}));
        assert_eq!(e.spec().action_space, Space::discrete(actions));
        assert_eq!(
            e.spec().observation_space,
            Space::multi_discrete(vec![c; 2])
        );
        for seed in 0..5 {
            let mut counted = 0usize;
            let mut counts = vec![0i64; c as usize];
            let (ret, steps) = episode(e.as_mut(), seed, |h| {
                let cu = c as usize;
                while counted < h.len() {
                    counts[argmax(&h[counted][..cu]) as usize] += 1;
                    counted += 1;
                }
                counts[argmax(&h[h.len() - 1][cu..]) as usize]
            });
            assert_eq!(steps, len, "{id}");
            assert!((ret - 1.0).abs() < 1e-4, "{id} oracle return {ret}");
        }
    }
}

#[test]
fn popgym_autoencode_plays_back_in_reverse() {
    for (id, n) in [
        ("popgym-AutoencodeEasy-v0", 52),
        ("popgym-AutoencodeMedium-v0", 104),
        ("popgym-AutoencodeHard-v0", 156),
    ] {
        let mut e = env(id, json!({}));
        for seed in 0..3 {
            let (ret, steps) = episode(e.as_mut(), seed, |h| {
                // Watch phase observations are h[0..n]; the last one carries mode 0.
                let t = h.len() - 1;
                if t < n - 1 {
                    assert_eq!(h[t][1], 1.0, "watch mode flag");
                    return 0;
                }
                if t == n - 1 {
                    assert_eq!(h[t][0], 1.0, "the last card arrives flagged play");
                }
                let back = t - (n - 1); // 0 for the first recall
                argmax(&h[n - 1 - back][2..])
            });
            assert_eq!(steps, 2 * n - 1, "{id}");
            assert!((ret - 1.0).abs() < 1e-4, "{id} oracle return {ret}");
        }
    }
}

#[test]
fn popgym_stateless_cartpole_hides_velocities() {
    let mut full = env("CartPole-v1", json!({}));
    let mut pos = env("popgym-PositionOnlyCartPoleEasy-v0", json!({}));
    let (mut a, mut b) = (vec![0.0; 4], vec![0.0; 2]);
    full.reset(Some(5), &mut a).expect("reset");
    pos.reset(Some(5), &mut b).expect("reset");
    assert_eq!(b, vec![a[0], a[2]]);
    loop {
        let sa = full.step(Action::Discrete(1), &mut a).expect("step");
        let sb = pos.step(Action::Discrete(1), &mut b).expect("step");
        assert_eq!(b, vec![a[0], a[2]]);
        assert_eq!(sb.reward, 1.0 / 200.0);
        assert_eq!(sa.terminated, sb.terminated);
        if sa.done() {
            break;
        }
    }
    for (level, limit) in [("Easy", 200), ("Medium", 400), ("Hard", 600)] {
        let e = env(&format!("popgym-PositionOnlyCartPole{level}-v0"), json!({}));
        assert_eq!(e.spec().max_episode_steps, Some(limit));
        let noisy = env(
            &format!("popgym-NoisyPositionOnlyCartPole{level}-v0"),
            json!({}),
        );
        assert_eq!(
            noisy.spec().max_episode_steps,
            Some(200),
            "noisy levels keep 200 steps"
        );
    }
    let mut noisy = env("popgym-NoisyPositionOnlyCartPoleHard-v0", json!({}));
    noisy.reset(Some(5), &mut b).expect("reset");
    full.reset(Some(5), &mut a).expect("reset");
    assert_ne!(b, vec![a[0], a[2]], "noise is added");
    assert!((b[0] - a[0]).abs() < 2.0);
}

#[test]
fn copy_and_denoise_envs_reward_the_recalled_symbols() {
    for (id, delay) in [("Copy-v0", 30usize), ("Denoise-v0", 30)] {
        let mut e = env(id, json!({ "delay": delay }));
        for seed in 0..5 {
            let (ret, steps) = episode(e.as_mut(), seed, |h| {
                let t = h.len() - 1;
                if t < delay + 10 {
                    return 0;
                }
                let data: Vec<i64> = h
                    .iter()
                    .map(|o| argmax(o))
                    .filter(|&s| (1..=8).contains(&s))
                    .collect();
                data[t - delay - 10]
            });
            assert_eq!(steps, delay + 20);
            assert!((ret - 1.0).abs() < 1e-5, "{id}: {ret}");
        }
        let (ret, _) = episode(e.as_mut(), 0, |_| 0);
        assert_eq!(ret, 0.0, "blanks earn nothing");
    }
}

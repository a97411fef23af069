//! CartPole-v1 and Pendulum-v1 against vectors recorded from Python Gymnasium 1.4.0
//! (scripts/gen_gymnasium_vectors.py): every observation bit for bit, across episode ends.
#![allow(clippy::excessive_precision)] // reference values are quoted exactly as Python printed them

use engram_envs::{make, Action, Env};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn replay(fixture: &str, id: &str) -> usize {
    let data = load(fixture);
    let mut checked = 0;
    for run in data["runs"].as_array().expect("runs") {
        let seed = run["seed"].as_u64().expect("seed");
        let mut env: Box<dyn Env> = make(id, &serde_json::Map::new()).expect("make");
        let mut obs = vec![0.0f32; env.spec().obs_dim()];
        env.reset(Some(seed), &mut obs).expect("reset");
        assert_eq!(
            obs,
            floats(&run["reset_obs"]),
            "{id} seed {seed}: reset observation"
        );
        for (t, rec) in run["steps"].as_array().expect("steps").iter().enumerate() {
            let ints;
            let reals;
            let action = match &rec["action"] {
                Value::Array(_) => {
                    reals = floats(&rec["action"]);
                    Action::Continuous(&reals)
                }
                a => {
                    ints = a.as_i64().expect("int action");
                    Action::Discrete(ints)
                }
            };
            let step = env.step(action, &mut obs).expect("step");
            let where_ = format!("{id} seed {seed} step {t}");
            assert_eq!(obs, floats(&rec["obs"]), "{where_}: observation");
            assert_eq!(
                step.reward,
                rec["reward"].as_f64().expect("reward") as f32,
                "{where_}: reward"
            );
            assert_eq!(
                step.terminated,
                rec["terminated"].as_bool().expect("flag"),
                "{where_}: terminated"
            );
            assert_eq!(
                step.truncated,
                rec["truncated"].as_bool().expect("flag"),
                "{where_}: truncated"
            );
            if let Some(reset) = rec.get("reset_obs") {
                env.reset(None, &mut obs).expect("reset");
                assert_eq!(
                    obs,
                    floats(reset),
                    "{where_}: observation after reset without seed"
                );
            }
            checked += 1;
        }
    }
    checked
}

#[test]
fn cartpole_matches_gymnasium_step_for_step() {
    let steps = replay("cartpole_v1.json", "CartPole-v1");
    assert!(steps > 4000);
}

#[test]
fn pendulum_matches_gymnasium_step_for_step() {
    let steps = replay("pendulum_v1.json", "Pendulum-v1");
    assert!(steps > 2000);
}

#[test]
fn cartpole_reference_values_from_the_research_notes() {
    // docs/research/envs.md §8.1: seed 0 with actions 1,0,1,1,0; always-1 episodes of 8 (seed 0) and 10 (seed 42) steps.
    let mut env = make("CartPole-v1", &serde_json::Map::new()).expect("make");
    let mut obs = [0.0f32; 4];
    env.reset(Some(0), &mut obs).expect("reset");
    assert_eq!(
        obs,
        [
            0.013696168549358845,
            -0.023021329194307327,
            -0.04590264707803726,
            -0.04834723472595215
        ]
    );
    for a in [1, 0, 1, 1, 0] {
        env.step(Action::Discrete(a), &mut obs).expect("step");
    }
    assert_eq!(
        obs,
        [
            0.027139831334352493,
            0.17582906782627106,
            -0.0771908238530159,
            -0.42436373233795166
        ]
    );
    for (seed, expected) in [(0, 8), (42, 10)] {
        env.reset(Some(seed), &mut obs).expect("reset");
        let mut n = 0;
        while !env
            .step(Action::Discrete(1), &mut obs)
            .expect("step")
            .done()
        {
            n += 1;
        }
        assert_eq!(n + 1, expected, "seed {seed}");
    }
}

#[test]
fn pendulum_reference_values_from_the_research_notes() {
    let mut env = make("Pendulum-v1", &serde_json::Map::new()).expect("make");
    let mut obs = [0.0f32; 3];
    env.reset(Some(0), &mut obs).expect("reset");
    assert_eq!(
        obs,
        [0.652016282081604, 0.758204996585846, -0.46042656898498535]
    );
    let expected = [
        -0.7617553092739346,
        -0.7550701910284209,
        -0.9370663214148967,
        -1.1222695344993172,
    ];
    for (u, r) in [0.0f32, 2.0, -2.0, 1.5].into_iter().zip(expected) {
        let step = env.step(Action::Continuous(&[u]), &mut obs).expect("step");
        assert_eq!(step.reward, r as f32);
    }
    assert_eq!(
        obs,
        [0.4671783149242401, 0.8841631412506104, 2.12121844291687]
    );
    // Zero torque is never terminated and truncated at exactly 200 steps.
    env.reset(Some(3), &mut obs).expect("reset");
    for t in 1..=200 {
        let s = env
            .step(Action::Continuous(&[0.0]), &mut obs)
            .expect("step");
        assert!(!s.terminated);
        assert_eq!(s.truncated, t == 200, "step {t}");
    }
}

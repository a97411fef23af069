//! V-trace against an independent NumPy implementation (fixtures from scripts/gen_vtrace_fixtures.py).

use engram_agents::algo::vtrace::{vtrace, VtraceInput, VtraceParams};
use serde_json::Value;

fn floats(case: &Value, key: &str) -> Vec<f32> {
    case[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture key {key}"))
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

fn flags(case: &Value, key: &str) -> Vec<bool> {
    case[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture key {key}"))
        .iter()
        .map(|v| v.as_bool().expect("bool"))
        .collect()
}

#[test]
fn vtrace_matches_the_numpy_reference() {
    let text = include_str!("fixtures/vtrace.json");
    let cases: serde_json::Map<String, Value> = serde_json::from_str(text).expect("fixture json");
    assert_eq!(cases.len(), 4);
    for (name, case) in &cases {
        let p = &case["params"];
        let param = |k: &str| p[k].as_f64().expect("param") as f32;
        let (terminated, truncated) = (flags(case, "terminated"), flags(case, "truncated"));
        assert!(
            name == "on_policy" || terminated.iter().any(|&t| t) || truncated.iter().any(|&t| t),
            "{name}: the fixture must end episodes inside the chunk"
        );
        let out = vtrace(
            VtraceInput {
                rewards: &floats(case, "rewards"),
                values: &floats(case, "values"),
                bootstrap: &floats(case, "bootstrap"),
                final_values: &floats(case, "final_values"),
                terminated: &terminated,
                truncated: &truncated,
                log_rhos: &floats(case, "log_rhos"),
                num_envs: case["num_envs"].as_u64().expect("num_envs") as usize,
            },
            VtraceParams {
                gamma: param("gamma"),
                lambda: param("lam"),
                rho_bar: param("rho_bar"),
                c_bar: param("c_bar"),
                pg_rho_bar: param("pg_rho_bar"),
            },
        );
        for (key, got) in [
            ("vs", &out.vs),
            ("advantages", &out.advantages),
            ("pg_rhos", &out.pg_rhos),
        ] {
            let want = floats(case, key);
            assert_eq!(got.len(), want.len(), "{name}/{key}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{name}/{key}[{i}]: ours {g}, NumPy {w}"
                );
            }
        }
        if name.starts_with("lagged") {
            let clipped = out
                .pg_rhos
                .iter()
                .filter(|&&r| r == param("pg_rho_bar"))
                .count();
            assert!(
                clipped > 0 && clipped < out.pg_rhos.len(),
                "{name}: lag must exercise the clip"
            );
        }
    }
}

//! Every preset in configs/ loads, makes its env at every curriculum stage and builds its policy.

use burn::tensor::Device;
use engram_agents::config::TrainConfig;
use engram_agents::policy::{ActionKind, Policy};

#[test]
fn every_preset_loads_makes_its_envs_and_builds_its_policy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.display();
        let text = std::fs::read_to_string(&path).expect("read");
        let config = TrainConfig::from_toml(&text, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Python envs are made in worker processes; their presets are tested with the bridge.
        if config.env.id.contains(':') {
            continue;
        }
        for stage in 0..=config.env.curriculum.len() {
            let kwargs = config.env.kwargs_of_stage(stage);
            let env = engram_envs::make(&config.env.id, &kwargs)
                .unwrap_or_else(|e| panic!("{name}: stage {stage}: {e}"));
            let spec = env.spec();
            let action = ActionKind::for_space(&config.env.id, &spec.action_space)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            Policy::for_space(
                &config.policy,
                &spec.observation_space,
                &action,
                &Device::flex(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} presets found in {}",
        dir.display()
    );
}

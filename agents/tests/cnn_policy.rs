//! Image observations: the CNN encoder's shapes, and a policy that learns from pixels.

use std::path::Path;
use std::sync::Once;

use burn::tensor::{Device, Tensor};
use engram_agents::config::{CnnSection, PolicySection};
use engram_agents::policy::{ActionKind, Policy};
use engram_agents::{train, TrainConfig, TrainOptions};
use engram_envs::{register, Action, Env, EnvRng, EnvSpec, Space, Step};
use rand::Rng;

#[test]
fn image_observations_go_through_the_cnn_and_other_columns_pass_by() {
    let device = Device::flex();
    let space = Space::uniform_box(0.0, 255.0, vec![10, 12, 3]);
    let section = PolicySection {
        encoder: vec![8],
        prev_action_reward: true,
        cnn: CnnSection {
            channels: vec![4, 6],
            kernels: vec![3, 3],
            strides: vec![1, 2],
        },
        ..Default::default()
    };
    let policy = Policy::for_space(&section, &space, &ActionKind::Categorical(vec![5]), &device)
        .expect("policy");
    // 10x12 → 8x10 (k3 s1) → 3x4 (k3 s2): 6·3·4 = 72 features, then 5 + 1 previous action/reward.
    assert_eq!(policy.conv.len(), 2);
    assert_eq!(policy.encoder[0].weight.dims(), [72 + 6, 8]);
    let obs = Tensor::<2>::ones([7, 360 + 6], &device);
    assert_eq!(policy.encode(obs).dims(), [7, 8]);
    // Flat observations never get a CNN.
    let flat = Policy::for_space(
        &section,
        &Space::uniform_box(0.0, 1.0, vec![4]),
        &ActionKind::Categorical(vec![2]),
        &device,
    )
    .expect("policy");
    assert!(flat.conv.is_empty());
    // A kernel larger than the image is a clear error.
    let big = PolicySection {
        cnn: CnnSection {
            channels: vec![4],
            kernels: vec![16],
            strides: vec![1],
        },
        ..section
    };
    let err = match Policy::for_space(&big, &space, &ActionKind::Categorical(vec![5]), &device) {
        Ok(_) => panic!("a 16x16 kernel cannot fit a 10x12 image"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("16x16 kernel") && err.contains("[10, 12, 3]"),
        "{err}"
    );
}

/// An 8×8 grey image, bright (255) on its left or right half; action 0 = left, 1 = right earns 1.
struct BrightSide {
    spec: EnvSpec,
    rng: EnvRng,
    right: bool,
    t: u32,
}

impl BrightSide {
    fn draw(&mut self, obs: &mut [f32]) {
        self.right = self.rng.random::<bool>();
        for y in 0..8 {
            for x in 0..8 {
                obs[y * 8 + x] = if (x >= 4) == self.right { 255.0 } else { 0.0 };
            }
        }
    }
}

impl Env for BrightSide {
    fn spec(&self) -> &EnvSpec {
        &self.spec
    }
    fn reset(&mut self, seed: Option<u64>, obs: &mut [f32]) -> engram_envs::Result<()> {
        if let Some(s) = seed {
            self.rng = EnvRng::from_seed(s);
        }
        self.t = 0;
        self.draw(obs);
        Ok(())
    }
    fn step(&mut self, action: Action<'_>, obs: &mut [f32]) -> engram_envs::Result<Step> {
        let reward = if matches!(action, Action::Discrete(a) if (a == 1) == self.right) {
            1.0
        } else {
            0.0
        };
        self.t += 1;
        self.draw(obs);
        Ok(Step {
            reward,
            terminated: self.t >= 16,
            truncated: false,
        })
    }
}

#[test]
fn a_cnn_policy_learns_from_pixels() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        register(
            "images/BrightSide-v0",
            "left or right half bright",
            vec![],
            |id, _| {
                Ok(BrightSide {
                    spec: EnvSpec::new(
                        id,
                        Space::uniform_box(0.0, 255.0, vec![8, 8, 1]),
                        Space::discrete(2),
                    ),
                    rng: EnvRng::from_seed(0),
                    right: false,
                    t: 0,
                })
            },
        )
        .expect("register");
    });
    let config = TrainConfig::from_toml(
        r#"
[env]
id = "images/BrightSide-v0"
num_envs = 8
[policy]
encoder = [16]
core = { kind = "gru", hidden_size = 16 }
cnn = { channels = [4], kernels = [3], strides = [2] }
[ppo]
learning_rate = 3e-3
rollout_len = 32
seq_len = 16
gamma = 0.5  # each reward depends on the current image only
[run]
total_steps = 40960
checkpoint_every = 0
"#,
        &[],
    )
    .expect("config");
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cnn_policy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let summary = train(&config, &dir, &TrainOptions::default()).expect("train");
    // Random play earns 8 of 16; the policy must read the image.
    assert!(
        summary.recent_return > 14.0,
        "return {}",
        summary.recent_return
    );
}

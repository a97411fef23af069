//! The policy: observation encoder (CNN for images, then MLP) → memory core → categorical or Gaussian head, plus value head.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use engram_envs::Space;
use engram_memory::{Core, CoreState, RecurrentCore, StepDiagnostics};

use crate::config::PolicySection;
use crate::error::{AgentError, Result};

pub mod distribution;
pub mod input;
pub mod shape;

pub use distribution::ActionKind;
pub use input::PolicyInput;
pub use shape::PolicyShape;

/// Encoder → core → heads, as one burn module.
#[derive(Module, Debug)]
pub struct Policy {
    /// Convolutional layers for image observations (ReLU after each; empty otherwise).
    pub conv: Vec<Conv2d>,
    /// `[H, W, C]` of image observations (empty for flat ones).
    pub image: Vec<usize>,
    /// Image observations are mapped to [0, 1] by `(x − image_low) · image_scale`.
    pub image_low: f32,
    /// See `image_low`.
    pub image_scale: f32,
    /// Observation encoder layers (tanh after each).
    pub encoder: Vec<Linear>,
    /// The memory core.
    pub core: Core,
    /// Actor head: logits (categorical) or means (Gaussian).
    pub actor: Linear,
    /// Value head.
    pub critic: Linear,
    /// Log standard deviation of the Gaussian head (absent for categorical heads).
    pub log_std: Option<Param<Tensor<1>>>,
    /// Sizes of the categorical groups (empty for a Gaussian head).
    pub groups: Vec<usize>,
    /// Gaussian action dimensions (0 for categorical heads).
    pub gaussian_dims: usize,
    /// The input carries the previous action and reward after the observation.
    pub prev_action_reward: bool,
    /// The heads see the encoded input beside the core output (`policy.obs_skip`).
    pub obs_skip: bool,
}

/// What one evaluation of stored actions gives the learner (time-major rows).
pub struct Evaluation {
    /// Log-probabilities of the taken actions `[N]`.
    pub log_prob: Tensor<1>,
    /// Entropies `[N]`.
    pub entropy: Tensor<1>,
    /// Values `[N]`.
    pub value: Tensor<1>,
}

impl Policy {
    /// Build a policy for flat observations of `obs_dim` values and `action` outputs on `device`.
    pub fn new(
        section: &PolicySection,
        obs_dim: usize,
        action: &ActionKind,
        device: &Device,
    ) -> Result<Self> {
        Self::build(
            section,
            &PolicyShape::new(section, obs_dim, None, action)?,
            action,
            device,
        )
    }

    /// Build a policy for observations from `space`: a `Box` of shape `[H, W, C]` goes through
    /// the CNN of `section.cnn` first, anything else straight into the MLP.
    pub fn for_space(
        section: &PolicySection,
        space: &Space,
        action: &ActionKind,
        device: &Device,
    ) -> Result<Self> {
        Self::build(
            section,
            &PolicyShape::for_space(section, space, action)?,
            action,
            device,
        )
    }

    fn build(
        section: &PolicySection,
        shape: &PolicyShape,
        action: &ActionKind,
        device: &Device,
    ) -> Result<Self> {
        let conv = shape
            .conv
            .iter()
            .map(|c| {
                Conv2dConfig::new([c.in_channels, c.out_channels], [c.kernel, c.kernel])
                    .with_stride([c.stride, c.stride])
                    .init(device)
            })
            .collect();
        let encoder = shape
            .encoder
            .iter()
            .map(|&(i, o)| LinearConfig::new(i, o).init(device))
            .collect();
        let core = section
            .core
            .clone()
            .with_input_size(shape.core_input)
            .init(device)?;
        let actor = LinearConfig::new(shape.head_input, shape.head_width).init(device);
        // Small actor and unit critic output scales, as CleanRL's orthogonal init intends.
        let actor = Linear {
            weight: Param::from_tensor((actor.weight.val() * 0.01).detach()),
            ..actor
        };
        let critic = LinearConfig::new(shape.head_input, 1).init(device);
        let (groups, log_std) = match action {
            ActionKind::Categorical(g) => (g.clone(), None),
            ActionKind::Gaussian(d) => (
                vec![],
                Some(Param::from_tensor(Tensor::zeros([*d], device))),
            ),
        };
        let (image, image_low, image_scale) = match shape.image {
            Some(img) => (img.shape.to_vec(), img.low, img.scale),
            None => (vec![], 0.0, 1.0),
        };
        Ok(Policy {
            conv,
            image,
            image_low,
            image_scale,
            encoder,
            core,
            actor,
            critic,
            log_std,
            groups,
            gaussian_dims: shape.gaussian_dims,
            prev_action_reward: section.prev_action_reward,
            obs_skip: section.obs_skip,
        })
    }

    /// The kind of action head.
    pub fn action_kind(&self) -> ActionKind {
        if self.gaussian_dims > 0 {
            ActionKind::Gaussian(self.gaussian_dims)
        } else {
            ActionKind::Categorical(self.groups.clone())
        }
    }

    /// An input builder for `num_envs` envs with `obs_dim` observations.
    pub fn input(&self, obs_dim: usize, num_envs: usize) -> PolicyInput {
        PolicyInput::new(
            self.prev_action_reward,
            obs_dim,
            &self.action_kind(),
            num_envs,
        )
    }

    /// Encode observations `[N, obs_dim]` (the previous action and reward after them, if used).
    pub fn encode(&self, obs: Tensor<2>) -> Tensor<2> {
        let x = if self.conv.is_empty() {
            obs
        } else {
            self.encode_image(obs)
        };
        self.encoder
            .iter()
            .fold(x, |x, layer| layer.forward(x).tanh())
    }

    /// Image rows `[N, H·W·C]` (channels last, as Gymnasium lays them out) → CNN → flat features,
    /// with any columns after the image passed through.
    fn encode_image(&self, obs: Tensor<2>) -> Tensor<2> {
        let [n, d] = obs.dims();
        let (h, w, c) = (self.image[0], self.image[1], self.image[2]);
        let pixels = h * w * c;
        let image = (obs.clone().narrow(1, 0, pixels) - self.image_low) * self.image_scale;
        let mut x: Tensor<4> = image.reshape([n, h, w, c]).permute([0, 3, 1, 2]);
        for layer in &self.conv {
            x = relu(layer.forward(x));
        }
        let features: Tensor<2> = x.flatten(1, 3);
        if d > pixels {
            Tensor::cat(vec![features, obs.narrow(1, pixels, d - pixels)], 1)
        } else {
            features
        }
    }

    /// One acting step: observations `[B, obs_dim]` → (head output `[B, W]`, values `[B]`, next state).
    pub fn step(
        &self,
        obs: Tensor<2>,
        state: CoreState,
    ) -> Result<(Tensor<2>, Tensor<1>, CoreState)> {
        let x = self.encode(obs);
        let (h, state) = self.core.step(x.clone(), state)?;
        let h = self.head_features(h, x);
        let [b, _] = h.dims();
        Ok((
            self.actor.forward(h.clone()),
            self.critic.forward(h).reshape([b]),
            state,
        ))
    }

    /// [`Policy::step`] that also returns the core's diagnostics (module masks, attention, memory).
    pub fn step_with_diagnostics(
        &self,
        obs: Tensor<2>,
        state: CoreState,
    ) -> Result<(Tensor<2>, CoreState, StepDiagnostics)> {
        let x = self.encode(obs);
        let (h, state, diag) = self.core.step_with_diagnostics(x.clone(), state)?;
        Ok((self.actor.forward(self.head_features(h, x)), state, diag))
    }

    /// What the heads see: the core output `h [N, H]`, with the encoded input `x [N, E]` beside
    /// it when `obs_skip` is on.
    fn head_features(&self, h: Tensor<2>, x: Tensor<2>) -> Tensor<2> {
        if self.obs_skip {
            Tensor::cat(vec![h, x], 1)
        } else {
            h
        }
    }

    /// Run per-step observations `obs[t]: [B, obs_dim]` from `state` with resets at
    /// `episode_starts` (row-major `[B, T]`); returns the heads' features (the core outputs, and
    /// the encoded inputs beside them with `obs_skip`) concatenated time-major `[T * B, ·]`, and
    /// the final state.
    pub fn unroll(
        &self,
        obs: Vec<Tensor<2>>,
        state: CoreState,
        episode_starts: &[bool],
    ) -> Result<(Tensor<2>, CoreState)> {
        let xs: Vec<Tensor<2>> = obs.into_iter().map(|o| self.encode(o)).collect();
        let skip = self.obs_skip.then(|| Tensor::cat(xs.clone(), 0));
        let (h, state) = self
            .core
            .forward_steps_concat(xs, state, Some(episode_starts))?;
        Ok(match skip {
            Some(x) => (Tensor::cat(vec![h, x], 1), state),
            None => (h, state),
        })
    }

    /// Log-probabilities and entropies of `actions` under the heads at features `h [N, ·]` (from
    /// [`Policy::unroll`]), with values. Categorical actions come as `[N, groups]` integers, Gaussian ones as `[N, d]` floats.
    pub fn evaluate(
        &self,
        h: Tensor<2>,
        int_actions: Option<Tensor<2, Int>>,
        float_actions: Option<Tensor<2>>,
    ) -> Evaluation {
        let [n, _] = h.dims();
        let out = self.actor.forward(h.clone());
        let value = self.critic.forward(h).reshape([n]);
        let (log_prob, entropy) = match (&self.log_std, int_actions, float_actions) {
            (None, Some(actions), _) => {
                distribution::categorical_log_prob_entropy(out, &self.groups, actions)
            }
            (Some(log_std), _, Some(actions)) => {
                distribution::gaussian_log_prob_entropy(out, log_std.val(), actions)
            }
            _ => unreachable!("actions of the head's kind are always given"),
        };
        Evaluation {
            log_prob,
            entropy,
            value,
        }
    }

    /// The weights as a burnpack record in memory (what remote actors are sent).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bytes = self
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| AgentError::Checkpoint(format!("serialise policy weights: {e:?}")))?;
        Ok(bytes.to_vec())
    }

    /// This policy with the weights of [`Policy::to_bytes`]'s record; an error when they
    /// belong to another shape of policy.
    pub fn with_bytes(self, bytes: &[u8]) -> Result<Self> {
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(
            bytes.to_vec(),
        ))
        .map_err(|e| AgentError::Checkpoint(format!("read policy weights: {e:?}")))?;
        self.try_load_record(record).map_err(|e| {
            AgentError::Checkpoint(format!(
                "policy weights do not fit this policy (another config?): {e:?}"
            ))
        })
    }

    /// The Gaussian head's standard deviations (empty for categorical heads).
    pub fn action_std(&self) -> Vec<f32> {
        self.log_std
            .as_ref()
            .map_or_else(Vec::new, |p| read(p.val().exp()))
    }
}

/// A `[rows, cols]` tensor from row-major data.
pub fn matrix(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

/// Read a tensor's values.
pub fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap_or_default()
}

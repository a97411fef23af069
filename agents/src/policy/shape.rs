//! `PolicyShape`: the layer sizes a policy config gives for an observation space, worked out (and checked) before anything is built — used to build the policy and to count its parameters without allocating them.

use engram_envs::Space;

use super::ActionKind;
use crate::config::PolicySection;
use crate::error::{AgentError, Result};

/// One convolutional layer: input channels, output channels, square kernel, stride.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

/// How image observations are read: `[H, W, C]`, and `(x − low) · scale` maps them to [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageInput {
    /// `[H, W, C]`.
    pub shape: [usize; 3],
    /// Lowest value of the observation space.
    pub low: f32,
    /// `1 / (high − low)`.
    pub scale: f32,
}

/// The sizes of every layer of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyShape {
    /// Image observations, if the observation is a `[H, W, C]` box.
    pub image: Option<ImageInput>,
    /// Convolutional layers (empty for flat observations).
    pub conv: Vec<ConvShape>,
    /// Encoder layers as `(inputs, outputs)`.
    pub encoder: Vec<(usize, usize)>,
    /// Width of the core's input (the encoder's output).
    pub core_input: usize,
    /// Width the heads read: the core's output, plus the encoder's with `policy.obs_skip`.
    pub head_input: usize,
    /// Outputs of the actor head.
    pub head_width: usize,
    /// Gaussian action dimensions (each with a learned log-std), 0 for categorical heads.
    pub gaussian_dims: usize,
}

impl PolicyShape {
    /// The shape `section` gives for observations from `space` and `action` outputs; a CNN that
    /// does not fit the image is an error naming the layer.
    pub fn for_space(section: &PolicySection, space: &Space, action: &ActionKind) -> Result<Self> {
        let image = match space {
            Space::Box { low, high, shape } if shape.len() == 3 => {
                let (lo, hi) = (
                    low.iter().copied().fold(f32::INFINITY, f32::min),
                    high.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                );
                let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
                    (lo, hi)
                } else {
                    (0.0, 1.0)
                };
                Some(ImageInput {
                    shape: [shape[0], shape[1], shape[2]],
                    low: lo,
                    scale: 1.0 / (hi - lo),
                })
            }
            _ => None,
        };
        Self::new(section, space.flat_dim(), image, action)
    }

    /// The shape for flat observations of `obs_dim` values, or for `image` when given.
    pub fn new(
        section: &PolicySection,
        obs_dim: usize,
        image: Option<ImageInput>,
        action: &ActionKind,
    ) -> Result<Self> {
        let extra = super::PolicyInput::extra_width(section.prev_action_reward, action);
        let mut conv = Vec::new();
        let mut width = obs_dim + extra;
        if let Some(ImageInput {
            shape: [h, w, c], ..
        }) = image
        {
            let cnn = &section.cnn;
            if cnn.channels.len() != cnn.kernels.len() || cnn.channels.len() != cnn.strides.len() {
                return Err(AgentError::Config(
                    "policy.cnn.channels, kernels and strides must have one entry per layer".into(),
                ));
            }
            let (mut ch, mut hh, mut ww) = (c, h, w);
            for ((&out, &k), &s) in cnn.channels.iter().zip(&cnn.kernels).zip(&cnn.strides) {
                if k == 0 || s == 0 || out == 0 || k > hh || k > ww {
                    return Err(AgentError::Config(format!(
                        "policy.cnn: a {k}x{k} kernel with stride {s} and {out} channels does not fit \
                         a {hh}x{ww} input (image [H, W, C] = [{h}, {w}, {c}]); use smaller kernels or fewer layers"
                    )));
                }
                conv.push(ConvShape {
                    in_channels: ch,
                    out_channels: out,
                    kernel: k,
                    stride: s,
                });
                (ch, hh, ww) = (out, (hh - k) / s + 1, (ww - k) / s + 1);
            }
            width = ch * hh * ww + extra;
        }
        let mut encoder = Vec::new();
        for &h in &section.encoder {
            encoder.push((width, h));
            width = h;
        }
        let head_input = section.core.hidden_size() + if section.obs_skip { width } else { 0 };
        Ok(PolicyShape {
            image,
            conv,
            encoder,
            core_input: width,
            head_input,
            head_width: action.head_width(),
            gaussian_dims: match action {
                ActionKind::Categorical(_) => 0,
                ActionKind::Gaussian(d) => *d,
            },
        })
    }

    /// Scalar parameters of the policy `section` builds with this shape (the core's counted
    /// from its config), computed without allocating: absurd sizes give huge numbers.
    pub fn num_params(&self, section: &PolicySection) -> u64 {
        let n = |x: usize| x as u64;
        let linear = |i: usize, o: usize| n(i).saturating_add(1).saturating_mul(n(o));
        let conv = self.conv.iter().fold(0u64, |sum, c| {
            let weights = n(c.in_channels)
                .saturating_mul(n(c.kernel))
                .saturating_mul(n(c.kernel))
                .saturating_add(1)
                .saturating_mul(n(c.out_channels));
            sum.saturating_add(weights)
        });
        let encoder = self
            .encoder
            .iter()
            .fold(0u64, |sum, &(i, o)| sum.saturating_add(linear(i, o)));
        let core = section
            .core
            .clone()
            .with_input_size(self.core_input)
            .num_params();
        let heads = linear(self.head_input, self.head_width)
            .saturating_add(linear(self.head_input, 1))
            .saturating_add(n(self.gaussian_dims));
        conv.saturating_add(encoder)
            .saturating_add(core)
            .saturating_add(heads)
    }
}

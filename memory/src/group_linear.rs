//! GroupLinear: one bias-free weight matrix per group (block-diagonal linear map).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

/// Configuration of a [`GroupLinear`] layer.
#[derive(Config, Debug)]
pub struct GroupLinearConfig {
    /// Number of groups `G`.
    pub groups: usize,
    /// Input width per group.
    pub d_input: usize,
    /// Output width per group.
    pub d_output: usize,
    /// Standard deviation of the normal initialisation (the official code uses 0.01).
    #[config(default = 0.01)]
    pub init_std: f64,
}

/// `Y[b, g, :] = X[b, g, :] · W[g]` with `W: [G, d_in, d_out]` and no bias, so a zero input row
/// gives a zero output row.
#[derive(Module, Debug)]
pub struct GroupLinear {
    /// Weights `[G, d_in, d_out]`.
    pub weight: Param<Tensor<3>>,
}

impl GroupLinearConfig {
    /// The number of scalar parameters [`GroupLinearConfig::init`] creates, `G·d_in·d_out`,
    /// without allocating (saturating).
    pub fn num_params(&self) -> u64 {
        crate::spec::size_product(&[self.groups, self.d_input, self.d_output])
    }

    /// Builds the layer on `device` with `init_std · N(0, 1)` weights.
    pub fn init(&self, device: &Device) -> GroupLinear {
        GroupLinear {
            weight: Param::from_tensor(Tensor::random(
                [self.groups, self.d_input, self.d_output],
                Distribution::Normal(0.0, self.init_std),
                device,
            )),
        }
    }
}

impl GroupLinear {
    /// Applies the per-group maps: `[B, G, d_in] -> [B, G, d_out]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_group_major(x.swap_dims(0, 1)).swap_dims(0, 1)
    }

    /// Same map on group-major input: `[G, B, d_in] -> [G, B, d_out]`.
    pub fn forward_group_major(&self, x: Tensor<3>) -> Tensor<3> {
        x.matmul(self.weight.val())
    }
}

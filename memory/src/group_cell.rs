//! Group LSTM/GRU cells: `n` independent cells, one per module, computed with batched matmuls.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

use crate::gru::gru_gates;
use crate::lstm::lstm_gates;

/// Which recurrent cell each module runs.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum CellKind {
    /// LSTM (state `h` and `c`).
    Lstm,
    /// GRU (state `h` only).
    Gru,
}

/// Configuration of a [`GroupCell`].
#[derive(Config, Debug)]
pub struct GroupCellConfig {
    /// Cell type.
    pub kind: CellKind,
    /// Number of modules `n`.
    pub modules: usize,
    /// Input width per module `a`.
    pub input_size: usize,
    /// Hidden width per module `d`.
    pub hidden_size: usize,
}

/// `n` independent LSTM or GRU cells. Module `i` has weights `W_ih[i]: [a, G·d]`,
/// `W_hh[i]: [d, G·d]` and biases `[G·d]` (G = 4 gates i, f, g, o for LSTM; 3 gates r, z, n for
/// GRU), initialised `U(−1/√(n·d), 1/√(n·d))` like the official block-diagonal cell.
#[derive(Module, Debug)]
pub struct GroupCell {
    /// Input weights `[n, a, G·d]`.
    pub weight_ih: Param<Tensor<3>>,
    /// Hidden weights `[n, d, G·d]`.
    pub weight_hh: Param<Tensor<3>>,
    /// Input biases `[n, G·d]`.
    pub bias_ih: Param<Tensor<2>>,
    /// Hidden biases `[n, G·d]`.
    pub bias_hh: Param<Tensor<2>>,
    /// True for LSTM, false for GRU.
    pub is_lstm: bool,
    /// Hidden width per module `d`.
    pub hidden_size: usize,
}

impl CellKind {
    /// Number of gates `G`: 4 for LSTM (i, f, g, o), 3 for GRU (r, z, n).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

impl GroupCellConfig {
    /// The number of scalar parameters [`GroupCellConfig::init`] creates, `n·(a + d + 2)·G·d`,
    /// without allocating (saturating).
    pub fn num_params(&self) -> u64 {
        let (n, a, d, g) = (
            self.modules,
            self.input_size,
            self.hidden_size,
            self.kind.gates(),
        );
        crate::spec::count_sum([
            crate::spec::size_product(&[n, a, g, d]),
            crate::spec::size_product(&[n, d, g, d]),
            crate::spec::size_product(&[2, n, g, d]),
        ])
    }

    /// Builds the cells on `device`.
    pub fn init(&self, device: &Device) -> GroupCell {
        let gates = self.kind.gates();
        let (n, a, d) = (self.modules, self.input_size, self.hidden_size);
        let k = 1.0 / ((n * d) as f64).sqrt();
        let u = Distribution::Uniform(-k, k);
        GroupCell {
            weight_ih: Param::from_tensor(Tensor::random([n, a, gates * d], u, device)),
            weight_hh: Param::from_tensor(Tensor::random([n, d, gates * d], u, device)),
            bias_ih: Param::from_tensor(Tensor::random([n, gates * d], u, device)),
            bias_hh: Param::from_tensor(Tensor::random([n, gates * d], u, device)),
            is_lstm: self.kind == CellKind::Lstm,
            hidden_size: d,
        }
    }
}

impl GroupCell {
    /// One update on module-major tensors: `u [n, B, a]`, `h [n, B, d]`, `c [n, B, d]` (ignored
    /// by GRU) give `(h', c')` (for GRU `c' = h'`).
    pub fn forward_group_major(
        &self,
        u: Tensor<3>,
        h: Tensor<3>,
        c: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let d = self.hidden_size;
        let gi = u.matmul(self.weight_ih.val());
        let gh = h.clone().matmul(self.weight_hh.val());
        if self.is_lstm {
            let bias = (self.bias_ih.val() + self.bias_hh.val()).unsqueeze_dim(1);
            lstm_gates(gi + gh + bias, c, d)
        } else {
            let gi = gi + self.bias_ih.val().unsqueeze_dim(1);
            let gh = gh + self.bias_hh.val().unsqueeze_dim(1);
            let h = gru_gates(gi, gh, h, d);
            (h.clone(), h)
        }
    }

    /// One update on batch-major tensors: `u [B, n, a]`, `h, c [B, n, d]`.
    pub fn forward(&self, u: Tensor<3>, h: Tensor<3>, c: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let (h, c) =
            self.forward_group_major(u.swap_dims(0, 1), h.swap_dims(0, 1), c.swap_dims(0, 1));
        (h.swap_dims(0, 1), c.swap_dims(0, 1))
    }
}

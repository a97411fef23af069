//! GRU core (PyTorch `GRUCell` convention), all three gates in one matmul per operand.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

use crate::activation::{sigmoid, tanh};
use crate::core::{time_major_flags, RecurrentCore, StepOutput};
use crate::error::{self, invalid};
use crate::gru_kernel::GruOp;
use crate::host_op;
use crate::lstm_kernel::Dims;
use crate::seq_layout::SeqLayout;
use crate::spec::{count_sum, size_product};
use crate::state::{CoreState, StateLayout};
use crate::torch_rnn::{self, TorchRnn};

/// Configuration of a [`Gru`] core.
#[derive(Config, Debug)]
pub struct GruConfig {
    /// Input width `E`.
    pub input_size: usize,
    /// Hidden width `H` (also the output width).
    pub hidden_size: usize,
}

/// GRU core. State part: `h [B, H]`.
///
/// `r = σ(x W_ir + b_ir + h W_hr + b_hr)`, `z = σ(…)`, `n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn))`,
/// `h' = (1 − z) ⊙ n + z ⊙ h`. Weights are stored transposed (`[E, 3H]`, `[H, 3H]`), gates `r, z, n`.
#[derive(Module, Debug)]
pub struct Gru {
    /// Input weights `[E, 3H]` (PyTorch `W_ihᵀ`).
    pub weight_ih: Param<Tensor<2>>,
    /// Hidden weights `[H, 3H]` (PyTorch `W_hhᵀ`).
    pub weight_hh: Param<Tensor<2>>,
    /// Input bias `[3H]`.
    pub bias_ih: Param<Tensor<1>>,
    /// Hidden bias `[3H]`.
    pub bias_hh: Param<Tensor<1>>,
    /// Input width `E`.
    pub input_size: usize,
    /// Hidden width `H`.
    pub hidden_size: usize,
}

impl GruConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> error::Result<()> {
        if self.input_size == 0 || self.hidden_size == 0 {
            return Err(invalid(
                "gru",
                "input_size and hidden_size must be at least 1",
            ));
        }
        Ok(())
    }

    /// The number of scalar parameters [`GruConfig::init`] creates, without allocating:
    /// `(E + H)·3H` weights and `2·3H` biases (saturating).
    pub fn num_params(&self) -> u64 {
        let (e, h) = (self.input_size, self.hidden_size);
        count_sum([
            size_product(&[e, 3, h]),
            size_product(&[h, 3, h]),
            size_product(&[2, 3, h]),
        ])
    }

    /// Builds the core on `device` with PyTorch's `U(−1/√H, 1/√H)` initialisation.
    pub fn init(&self, device: &Device) -> error::Result<Gru> {
        self.validate()?;
        let (e, h) = (self.input_size, self.hidden_size);
        let k = 1.0 / (h as f64).sqrt();
        let u = Distribution::Uniform(-k, k);
        Ok(Gru {
            weight_ih: Param::from_tensor(Tensor::random([e, 3 * h], u, device)),
            weight_hh: Param::from_tensor(Tensor::random([h, 3 * h], u, device)),
            bias_ih: Param::from_tensor(Tensor::random([3 * h], u, device)),
            bias_hh: Param::from_tensor(Tensor::random([3 * h], u, device)),
            input_size: e,
            hidden_size: h,
        })
    }
}

crate::spec::sized_core_spec!(GruConfig => Gru, modular: false);

impl Gru {
    /// One GRU cell update: `(x [B,E], h [B,H]) -> h'`.
    pub fn cell(&self, x: Tensor<2>, h: Tensor<2>) -> Tensor<2> {
        let hs = self.hidden_size;
        let gi = x.matmul(self.weight_ih.val()) + self.bias_ih.val().unsqueeze_dim(0);
        let gh = h.clone().matmul(self.weight_hh.val()) + self.bias_hh.val().unsqueeze_dim(0);
        gru_gates(gi, gh, h, hs)
    }
}

/// GRU update from input pre-activations `gi [..., 3H]`, hidden ones `gh [..., 3H]` and the
/// previous state `h [..., H]`.
pub(crate) fn gru_gates<const D: usize>(
    gi: Tensor<D>,
    gh: Tensor<D>,
    h: Tensor<D>,
    hs: usize,
) -> Tensor<D> {
    let last = D - 1;
    let rz = sigmoid(gi.clone().narrow(last, 0, 2 * hs) + gh.clone().narrow(last, 0, 2 * hs));
    let r = rz.clone().narrow(last, 0, hs);
    let z = rz.narrow(last, hs, hs);
    let n = tanh(gi.narrow(last, 2 * hs, hs) + r * gh.narrow(last, 2 * hs, hs));
    // (1 − z) ⊙ n + z ⊙ h = n + z ⊙ (h − n)
    n.clone() + z * (h - n)
}

impl RecurrentCore for Gru {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn state_layout(&self) -> StateLayout {
        StateLayout::new([("h", self.hidden_size)])
    }

    fn output_part(&self) -> usize {
        0
    }

    /// The fused kernel (`gru_kernel`) on the flex backend: the input projection of all steps is
    /// one matmul, each step one `[B, H]·[H, 3H]` matmul and one elementwise pass, and the
    /// backward pass computes the weight gradients as single matmuls over all steps. On
    /// libtorch, libtorch's own GRU (cuDNN on CUDA; `torch_rnn`), time-major only (a batch-major
    /// call gets `None`: `forward_sequence` transposes around the time-major one).
    fn fused_sequence(
        &self,
        x: &Tensor<3>,
        layout: SeqLayout,
        state: &CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        let [d0, d1, _] = x.dims();
        let dims = Dims::of(x, layout, self.hidden_size);
        let (t, b, e, h) = (dims.steps, dims.batch, dims.input, dims.hidden);
        let op = GruOp {
            dims,
            resets: time_major_flags(episode_starts, b, t),
        };
        let inputs = [
            x.clone().reshape([t * b, e]),
            state.parts[0].clone(),
            self.weight_ih.val(),
            self.weight_hh.val(),
            self.bias_ih.val().unsqueeze_dim(0),
            self.bias_hh.val().unsqueeze_dim(0),
        ];
        let y = match host_op::run(&op, &inputs, [t * b, h]) {
            Some(y) => y.reshape([d0, d1, h]),
            // libtorch's path is time-major: a batch-major call transposes around it.
            None if layout == SeqLayout::BatchMajor => return None,
            None => torch_rnn::run(TorchRnn::Gru, &op.dims, op.resets.as_deref(), &inputs)?
                .reshape([d0, d1, h]),
        };
        let h_last = layout.last_step(&y);
        Some((y, CoreState::from_parts(vec![h_last])))
    }

    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        let h = state
            .parts
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!("state checked against the layout"));
        let h = self.cell(x, h);
        (
            h.clone(),
            CoreState::from_parts(vec![h]),
            diagnostics.then(Default::default),
        )
    }
}

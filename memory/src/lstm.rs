//! LSTM core with one fused gate matmul per step (PyTorch gate order i, f, g, o).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};

use crate::activation::{sigmoid, tanh};
use crate::core::{time_major_flags, RecurrentCore, StepOutput};
use crate::error::{self, invalid};
use crate::host_op;
use crate::lstm_kernel::{Dims, LstmOp};
use crate::seq_layout::SeqLayout;
use crate::spec::{count_sum, size_product};
use crate::state::{CoreState, StateLayout};
use crate::torch_rnn::{self, TorchRnn};

/// How the LSTM weights are initialised.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum LstmInit {
    /// PyTorch's `U(−1/√H, 1/√H)` for weights and biases.
    PyTorch,
    /// Xavier-normal weights per gate and `U(−1/√(E+H), 1/√(E+H))` biases (RelLSTM's code).
    XavierNormal,
}

/// Configuration of an [`Lstm`] core.
#[derive(Config, Debug)]
pub struct LstmConfig {
    /// Input width `E`.
    pub input_size: usize,
    /// Hidden width `H` (also the output width).
    pub hidden_size: usize,
    /// Weight initialisation.
    #[config(default = "LstmInit::PyTorch")]
    pub init: LstmInit,
}

/// LSTM core. State parts: `h [B, H]`, `c [B, H]`.
///
/// `weight_ih` is PyTorch's `W_ihᵀ` `[E, 4H]`, `weight_hh` is `W_hhᵀ` `[H, 4H]`; columns are
/// the gates `i, f, g, o` (all four gates in one matmul per operand). `bias` is `b_ih + b_hh`.
#[derive(Module, Debug)]
pub struct Lstm {
    /// Input-to-gates weight `[E, 4H]`.
    pub weight_ih: Param<Tensor<2>>,
    /// Hidden-to-gates weight `[H, 4H]`.
    pub weight_hh: Param<Tensor<2>>,
    /// Fused gate bias `[4H]`.
    pub bias: Param<Tensor<1>>,
    /// Input width `E`.
    pub input_size: usize,
    /// Hidden width `H`.
    pub hidden_size: usize,
}

impl LstmConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> error::Result<()> {
        if self.input_size == 0 || self.hidden_size == 0 {
            return Err(invalid(
                "lstm",
                "input_size and hidden_size must be at least 1",
            ));
        }
        Ok(())
    }

    /// The number of scalar parameters [`LstmConfig::init`] creates, without allocating:
    /// `(E + H)·4H` weights and `4H` biases (saturating).
    pub fn num_params(&self) -> u64 {
        let (e, h) = (self.input_size, self.hidden_size);
        count_sum([
            size_product(&[e, 4, h]),
            size_product(&[h, 4, h]),
            size_product(&[4, h]),
        ])
    }

    /// Builds the core on `device`.
    pub fn init(&self, device: &Device) -> error::Result<Lstm> {
        self.validate()?;
        let (e, h) = (self.input_size, self.hidden_size);
        let (weight, bias) = match self.init {
            LstmInit::PyTorch => {
                let k = 1.0 / (h as f64).sqrt();
                (
                    Tensor::<2>::random([e + h, 4 * h], Distribution::Uniform(-k, k), device),
                    Tensor::<1>::random([4 * h], Distribution::Uniform(-k, k), device).add(
                        Tensor::random([4 * h], Distribution::Uniform(-k, k), device),
                    ),
                )
            }
            LstmInit::XavierNormal => {
                let std = (2.0 / ((e + h) as f64 + h as f64)).sqrt();
                let k = 1.0 / ((e + h) as f64).sqrt();
                (
                    Tensor::<2>::random([e + h, 4 * h], Distribution::Normal(0.0, std), device),
                    Tensor::<1>::random([4 * h], Distribution::Uniform(-k, k), device),
                )
            }
        };
        Ok(Lstm {
            weight_ih: Param::from_tensor(weight.clone().narrow(0, 0, e)),
            weight_hh: Param::from_tensor(weight.narrow(0, e, h)),
            bias: Param::from_tensor(bias),
            input_size: e,
            hidden_size: h,
        })
    }
}

crate::spec::sized_core_spec!(LstmConfig => Lstm, modular: false);

impl Lstm {
    /// One LSTM cell update: `(x [B,E], h [B,H], c [B,H]) -> (h', c')`.
    pub fn cell(&self, x: Tensor<2>, h: Tensor<2>, c: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let hs = self.hidden_size;
        let gates = x.matmul(self.weight_ih.val())
            + h.matmul(self.weight_hh.val())
            + self.bias.val().unsqueeze_dim(0);
        lstm_gates(gates, c, hs)
    }
}

/// Applies the LSTM nonlinearities to pre-activations `[..., 4H]` (gate order i, f, g, o) and
/// the previous cell state `[..., H]`; returns `(h', c')`.
pub(crate) fn lstm_gates<const D: usize>(
    gates: Tensor<D>,
    c: Tensor<D>,
    hs: usize,
) -> (Tensor<D>, Tensor<D>) {
    let last = D - 1;
    let sig = sigmoid(gates.clone());
    let i = sig.clone().narrow(last, 0, hs);
    let f = sig.clone().narrow(last, hs, hs);
    let o = sig.narrow(last, 3 * hs, hs);
    let g = tanh(gates.narrow(last, 2 * hs, hs));
    let c_new = f * c + i * g;
    let h_new = o * tanh(c_new.clone());
    (h_new, c_new)
}

impl RecurrentCore for Lstm {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn state_layout(&self) -> StateLayout {
        StateLayout::new([("h", self.hidden_size), ("c", self.hidden_size)])
    }

    fn output_part(&self) -> usize {
        0
    }

    /// The fused kernel (`lstm_kernel`) on the flex backend: the input projection of all steps
    /// is one matmul, each step one `[B, H]·[H, 4H]` matmul and one pass of elementwise code, and
    /// the backward pass computes the weight gradients as single matmuls over all steps. On
    /// libtorch, libtorch's own LSTM (cuDNN on CUDA; `torch_rnn`), time-major only (a batch-major
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
        let op = LstmOp {
            dims,
            resets: time_major_flags(episode_starts, b, t),
        };
        let inputs = [
            x.clone().reshape([t * b, e]),
            state.parts[0].clone(),
            state.parts[1].clone(),
            self.weight_ih.val(),
            self.weight_hh.val(),
            self.bias.val().unsqueeze_dim(0),
        ];
        let z = match host_op::run(&op, &inputs, [(t + 1) * b, h]) {
            Some(z) => z,
            // libtorch's path is time-major: a batch-major call transposes around it.
            None if layout == SeqLayout::BatchMajor => return None,
            None => torch_rnn::run(TorchRnn::Lstm, &op.dims, op.resets.as_deref(), &inputs)?,
        };
        let y = z.clone().narrow(0, 0, t * b).reshape([d0, d1, h]);
        let h_last = layout.last_step(&y);
        let c_last = z.narrow(0, t * b, b);
        Some((y, CoreState::from_parts(vec![h_last, c_last])))
    }

    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        let mut parts = state.parts.into_iter();
        let (h, c) = match (parts.next(), parts.next()) {
            (Some(h), Some(c)) => (h, c),
            _ => unreachable!("state checked against the layout"),
        };
        let (h, c) = self.cell(x, h, c);
        (
            h.clone(),
            CoreState::from_parts(vec![h, c]),
            diagnostics.then(Default::default),
        )
    }
}

//! Fast and Forgetful Memory (Morad et al. 2023): a complex-valued decaying memory of `m` traces
//! at `c` frequencies, gated in and out, computed as one scan over a sequence.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::activation::sigmoid;
use crate::core::{time_major_flags, RecurrentCore, StepOutput};
use crate::error::{self, invalid};
use crate::ffm_kernel::{FfaDims, FfaScan, FfmReadOut};
use crate::host_op;
use crate::seq_layout::SeqLayout;
use crate::spec::{count_sum, size_product};
use crate::state::{CoreState, StateLayout};

/// Configuration of an [`Ffm`] core.
#[derive(Config, Debug)]
pub struct FfmConfig {
    /// Input width `E`.
    pub input_size: usize,
    /// Output width `H`.
    pub hidden_size: usize,
    /// Traces `m`: memory decay rates, spread from `min_period` to `max_period`.
    #[config(default = 32)]
    pub memory_size: usize,
    /// Context size `c`: rotation frequencies of every trace.
    #[config(default = 4)]
    pub context_size: usize,
    /// Shortest horizon (steps) of the initial decays and periods.
    #[config(default = 1.0)]
    pub min_period: f64,
    /// Longest horizon (steps): the slowest trace keeps 1 % of an input after this many steps.
    #[config(default = 1024.0)]
    pub max_period: f64,
}

/// Fast and Forgetful Memory. State parts: `re [m·c]`, `im [m·c]` (the real and imaginary
/// parts of `S`, trace-major).
///
/// `[g_in, u, skip, g_out] = x W_pre + b_pre`; `x̃ = u ⊙ σ(g_in)`;
/// `S_t = γ ⊙ S_{t−1} + x̃ ⊗ 1_c` with `γ_{jk} = e^{−|a_j|} e^{i ω_k}` (the state is zero at an
/// episode start); `z = LN([Re S_t, Im S_t] W_mix + b_mix)` (no affine);
/// `y = z ⊙ σ(g_out) + skip ⊙ (1 − σ(g_out))`. The output is not a state part, so screened
/// memory does not wrap this core.
#[derive(Module, Debug)]
pub struct Ffm {
    /// Input projection `W_pre [E, 2m + 2H]`: `g_in, u, skip, g_out`.
    pub pre_weight: Param<Tensor<2>>,
    /// Its bias `[2m + 2H]`.
    pub pre_bias: Param<Tensor<1>>,
    /// Decay parameters `a [m]` (`|γ_j| = e^{−|a_j|}`).
    pub decay: Param<Tensor<1>>,
    /// Rotation frequencies `ω [c]` (radians per step).
    pub frequency: Param<Tensor<1>>,
    /// Output mix `W_mix [2·m·c, H]`.
    pub mix_weight: Param<Tensor<2>>,
    /// Its bias `[H]`.
    pub mix_bias: Param<Tensor<1>>,
    /// Input width `E`.
    pub input_size: usize,
    /// Output width `H`.
    pub hidden_size: usize,
    /// Traces `m`.
    pub memory_size: usize,
    /// Context size `c`.
    pub context_size: usize,
}

impl FfmConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> error::Result<()> {
        if self.input_size == 0 || self.hidden_size == 0 {
            return Err(invalid(
                "ffm",
                "input_size and hidden_size must be at least 1",
            ));
        }
        if self.memory_size == 0 || self.context_size == 0 {
            return Err(invalid(
                "ffm",
                "memory_size and context_size must be at least 1",
            ));
        }
        let ordered = self.min_period >= 1.0 && self.max_period >= self.min_period;
        if !(ordered && self.max_period.is_finite()) {
            return Err(invalid(
                "ffm",
                format!(
                    "periods must satisfy 1 <= min_period <= max_period < inf; got {} and {}",
                    self.min_period, self.max_period
                ),
            ));
        }
        Ok(())
    }

    /// The number of scalar parameters [`FfmConfig::init`] creates, without allocating
    /// (saturating).
    pub fn num_params(&self) -> u64 {
        let (e, h, m, c) = (
            self.input_size,
            self.hidden_size,
            self.memory_size,
            self.context_size,
        );
        let pre = count_sum([size_product(&[2, m]), size_product(&[2, h])]);
        count_sum([
            pre.saturating_mul(e as u64 + 1),
            (m as u64).saturating_add(c as u64),
            size_product(&[2, m, c, h]),
            h as u64,
        ])
    }

    /// Builds the core on `device`: linear layers with PyTorch's `U(−1/√fan_in, 1/√fan_in)`;
    /// trace `j` forgets to 1 % after a horizon geometrically spaced from `min_period` to
    /// `max_period`, and frequency `k` has a period linearly spaced over the same range.
    pub fn init(&self, device: &Device) -> error::Result<Ffm> {
        self.validate()?;
        let (e, h, m, c) = (
            self.input_size,
            self.hidden_size,
            self.memory_size,
            self.context_size,
        );
        let uniform = |fan_in: usize| {
            let k = 1.0 / (fan_in as f64).sqrt();
            Distribution::Uniform(-k, k)
        };
        let spread = |i: usize, n: usize| {
            if n > 1 {
                i as f64 / (n - 1) as f64
            } else {
                0.0
            }
        };
        let (lo, hi) = (self.min_period, self.max_period);
        let decay: Vec<f32> = (0..m)
            .map(|j| {
                let horizon = lo * (hi / lo).powf(spread(j, m));
                (100f64.ln() / horizon) as f32
            })
            .collect();
        let frequency: Vec<f32> = (0..c)
            .map(|k| (2.0 * std::f64::consts::PI / (lo + (hi - lo) * spread(k, c))) as f32)
            .collect();
        let vec1 = |v: Vec<f32>| {
            let n = v.len();
            Tensor::<1>::from_data(TensorData::new(v, [n]), device)
        };
        let width = 2 * m + 2 * h;
        Ok(Ffm {
            pre_weight: Param::from_tensor(Tensor::random([e, width], uniform(e), device)),
            pre_bias: Param::from_tensor(Tensor::random([width], uniform(e), device)),
            decay: Param::from_tensor(vec1(decay)),
            frequency: Param::from_tensor(vec1(frequency)),
            mix_weight: Param::from_tensor(Tensor::random(
                [2 * m * c, h],
                uniform(2 * m * c),
                device,
            )),
            mix_bias: Param::from_tensor(Tensor::random([h], uniform(2 * m * c), device)),
            input_size: e,
            hidden_size: h,
            memory_size: m,
            context_size: c,
        })
    }
}

crate::spec::sized_core_spec!(FfmConfig => Ffm, modular: false);

/// The input projection split into its four parts, each `[N, ·]`.
struct Projected {
    gate_in: Tensor<2>,
    value: Tensor<2>,
    skip: Tensor<2>,
    gate_out: Tensor<2>,
}

impl Ffm {
    /// `x [N, E]` → the gated memory input `x̃ [N, m]` and the skip and output gate.
    fn project(&self, x: Tensor<2>) -> Projected {
        let (m, h) = (self.memory_size, self.hidden_size);
        let p = x.matmul(self.pre_weight.val()) + self.pre_bias.val().unsqueeze_dim(0);
        Projected {
            gate_in: p.clone().narrow(1, 0, m),
            value: p.clone().narrow(1, m, m),
            skip: p.clone().narrow(1, 2 * m, h),
            gate_out: p.narrow(1, 2 * m + h, h),
        }
    }

    /// `Re γ` and `Im γ` as `[1, m·c]` rows (trace-major).
    fn gamma(&self) -> (Tensor<2>, Tensor<2>) {
        let (m, c) = (self.memory_size, self.context_size);
        let magnitude = self
            .decay
            .val()
            .abs()
            .neg()
            .exp()
            .reshape([m, 1])
            .expand([m, c]);
        let w = self.frequency.val().reshape([1, c]).expand([m, c]);
        let re = (magnitude.clone() * w.clone().cos()).reshape([1, m * c]);
        let im = (magnitude * w.sin()).reshape([1, m * c]);
        (re, im)
    }

    /// The output from states `s [N, 2·m·c]` (`[Re | Im]` rows) and the projection's skip and
    /// output gate.
    fn read_out(&self, s: Tensor<2>, skip: Tensor<2>, gate_out: Tensor<2>) -> Tensor<2> {
        let z = s.matmul(self.mix_weight.val()) + self.mix_bias.val().unsqueeze_dim(0);
        let mean = z.clone().mean_dim(1);
        let centred = z - mean;
        let var = (centred.clone() * centred.clone()).mean_dim(1);
        let z = centred / (var + 1e-5).sqrt();
        let g = sigmoid(gate_out);
        z * g.clone() + skip * (g.neg() + 1.0)
    }
}

impl RecurrentCore for Ffm {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn state_layout(&self) -> StateLayout {
        let mc = self.memory_size * self.context_size;
        StateLayout::new([("re", mc), ("im", mc)])
    }

    /// FFM's output is not part of its state; 0 names `re`, and screened memory (the only user
    /// of this) does not wrap FFM.
    fn output_part(&self) -> usize {
        0
    }

    /// On flex: the projection of all steps in one matmul, the scan as one host kernel with
    /// its own backward ([`FfaScan`]), the mix of all steps in one matmul and the layer norm
    /// and gates as one more kernel ([`FfmReadOut`]).
    fn fused_sequence(
        &self,
        x: &Tensor<3>,
        layout: SeqLayout,
        state: &CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        if layout != SeqLayout::TimeMajor {
            return None; // its scan steps time-major: forward_sequence transposes around it
        }
        let [t, b, e] = x.dims();
        let (m, c, h) = (self.memory_size, self.context_size, self.hidden_size);
        let mc = m * c;
        if !host_op::on_flex(&state.parts[0]) {
            return None;
        }
        let pr = self.project(x.clone().reshape([t * b, e]));
        let op = FfaScan {
            dims: FfaDims {
                steps: t,
                batch: b,
                memory: m,
                context: c,
            },
            resets: time_major_flags(episode_starts, b, t),
        };
        let inputs = [
            pr.value * sigmoid(pr.gate_in),
            state.parts[0].clone(),
            state.parts[1].clone(),
            self.decay.val().unsqueeze_dim(0),
            self.frequency.val().unsqueeze_dim(0),
        ];
        let s = host_op::run(&op, &inputs, [t * b, 2 * mc])?;
        let last = s.clone().narrow(0, (t - 1) * b, b);
        let state =
            CoreState::from_parts(vec![last.clone().narrow(1, 0, mc), last.narrow(1, mc, mc)]);
        let z = s.matmul(self.mix_weight.val()) + self.mix_bias.val().unsqueeze_dim(0);
        let y = host_op::run(
            &FfmReadOut { width: h },
            &[z, pr.skip, pr.gate_out],
            [t * b, h],
        )?;
        Some((y.reshape([t, b, h]), state))
    }

    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        let [b, _] = x.dims();
        let (m, c) = (self.memory_size, self.context_size);
        let mut parts = state.parts.into_iter();
        let (re, im) = match (parts.next(), parts.next()) {
            (Some(re), Some(im)) => (re, im),
            _ => unreachable!("state checked against the layout"),
        };
        let pr = self.project(x);
        let input = (pr.value * sigmoid(pr.gate_in))
            .reshape([b, m, 1])
            .expand([b, m, c])
            .reshape([b, m * c]);
        let (p, q) = self.gamma();
        let re_next = p.clone() * re.clone() - q.clone() * im.clone() + input;
        let im_next = q * re + p * im;
        let s = Tensor::cat(vec![re_next.clone(), im_next.clone()], 1);
        let y = self.read_out(s, pr.skip, pr.gate_out);
        (
            y,
            CoreState::from_parts(vec![re_next, im_next]),
            diagnostics.then(Default::default),
        )
    }
}

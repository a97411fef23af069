//! Relevancy-screened memory (Kerg et al. 2020) as a wrapper around any base core: a short-term
//! buffer of the last ν outputs and a relevant set of ρ past outputs chosen by accumulated attention.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};

use crate::activation::tanh;
use crate::base_core::{BaseCore, BaseCoreConfig};
use crate::core::{RecurrentCore, Resets, StepOutput, StepsOutput};
use crate::diagnostics::{MemoryDiagnostics, StepDiagnostics};
use crate::error::{self, invalid};
use crate::lstm::LstmConfig;
use crate::seq_layout::SeqLayout;
use crate::spec::{count_sum, size_product, CoreSpec};
use crate::state::{CoreState, StateLayout};

/// Configuration of a [`Screened`] core.
#[derive(Config, Debug)]
pub struct ScreenedConfig {
    /// The wrapped core: a base core (lstm, gru, rims or brims), so screened memory cannot wrap
    /// itself.
    pub inner: BaseCoreConfig,
    /// Short-term buffer size ν (official copy task: 10), at least 1.
    #[config(default = 10)]
    pub short_term: usize,
    /// Relevant-set size ρ (official copy task: 15); 0 disables the relevant set.
    #[config(default = 15)]
    pub relevant: usize,
    /// Width of the additive attention; `None` uses the core's hidden size (official).
    pub attention_size: Option<usize>,
    /// Weight λ of the memory read in `s_t = ½(h_{t−1} + λ c_t)` (official: 1).
    #[config(default = 1.0)]
    pub lambda: f64,
}

/// Relevancy-screened memory around a base core.
///
/// Each step, with query `s_{t−1}` and candidates `C` = buffer (oldest first) then relevant set:
/// `e_m = v·tanh(s_{t−1} W_a + C_m U_a)` (empty slots masked), `α = softmax(e)`, `c_t = Σ α_m C_m`,
/// `s_t = ½(h_{t−1} + λ c_t)`; the inner core then steps with `s_t` in place of its hidden state
/// `h_{t−1}`. Its output `h_t` is pushed into the buffer; the state leaving the buffer enters the
/// relevant set by the rule of docs/research/models.md §4.5 ([`screen_row`]). With ν = 1 and ρ = 0 this is
/// exactly the inner core. Memory slots keep their autodiff graph, so gradients reach far states.
///
/// State parts: the inner core's parts, then `mem.s [H]`, `mem.slots [(ν+ρ)·H]`,
/// `mem.valid [ν+ρ]`, `mem.score [ν+ρ]`, `mem.time [ν+ρ]`, `mem.step [1]`.
#[derive(Module, Debug)]
pub struct Screened {
    /// The wrapped core.
    pub inner: BaseCore,
    /// Query projection `W_a` (no bias).
    pub query: Linear,
    /// Key projection `U_a` (no bias).
    pub key: Linear,
    /// Score vector `v` as a `[A, 1]` projection (no bias).
    pub score: Linear,
    /// Short-term buffer size ν.
    pub short_term: usize,
    /// Relevant-set size ρ.
    pub relevant: usize,
    /// Weight λ of the memory read.
    pub lambda: f64,
}

impl ScreenedConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> error::Result<()> {
        if self.short_term == 0 {
            return Err(invalid(
                "screened",
                "short_term (ν) must be at least 1; use ν = 1, ρ = 0 for the plain core",
            ));
        }
        if self.attention_size == Some(0) {
            return Err(invalid("screened", "attention_size must be at least 1"));
        }
        self.inner.validate()
    }

    /// The number of scalar parameters [`ScreenedConfig::init`] creates, without allocating
    /// (saturating): the inner core's plus the bias-free attention projections `W_a`, `U_a`
    /// (`H·A` each) and `v` (`A`), with `A = attention_size` or `H`.
    pub fn num_params(&self) -> u64 {
        memory_params(self.inner.hidden_size(), self.attention_size)
            .saturating_add(self.inner.num_params())
    }

    /// Builds the core on `device`.
    pub fn init(&self, device: &Device) -> error::Result<Screened> {
        self.validate()?;
        let inner = self.inner.init(device)?;
        Ok(self.wrap(inner, device))
    }

    /// Wraps an already-built base core.
    pub fn wrap(&self, inner: BaseCore, device: &Device) -> Screened {
        let h = inner.hidden_size();
        let a = self.attention_size.unwrap_or(h);
        Screened {
            inner,
            query: LinearConfig::new(h, a).with_bias(false).init(device),
            key: LinearConfig::new(h, a).with_bias(false).init(device),
            score: LinearConfig::new(a, 1).with_bias(false).init(device),
            short_term: self.short_term,
            relevant: self.relevant,
            lambda: self.lambda,
        }
    }
}

impl CoreSpec for ScreenedConfig {
    type Module = Screened;
    const MODULAR: bool = true;

    /// An LSTM of the given sizes inside, default memory.
    fn default_sized(input_size: usize, hidden_size: usize) -> Self {
        ScreenedConfig::new(BaseCoreConfig::Lstm(LstmConfig::new(
            input_size,
            hidden_size,
        )))
    }
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }
    fn hidden_size(&self) -> usize {
        self.inner.hidden_size()
    }
    fn with_input_size(self, input_size: usize) -> Self {
        ScreenedConfig {
            inner: self.inner.with_input_size(input_size),
            ..self
        }
    }
    fn validate(&self) -> error::Result<()> {
        ScreenedConfig::validate(self)
    }
    fn init(&self, device: &Device) -> error::Result<Screened> {
        ScreenedConfig::init(self, device)
    }
    fn num_params(&self) -> u64 {
        ScreenedConfig::num_params(self)
    }
}

/// Parameters of the memory's attention around a core of hidden size `h` (those
/// [`ScreenedConfig::wrap`] creates), saturating.
pub(crate) fn memory_params(h: usize, attention_size: Option<usize>) -> u64 {
    let a = attention_size.unwrap_or(h);
    count_sum([
        size_product(&[h, a]),
        size_product(&[h, a]),
        size_product(&[a, 1]),
    ])
}

/// Screening decision for one row, after the step's attention `alpha` (length ν+ρ) is known.
///
/// Slots `0..ν` are the buffer (oldest first), `ν..ν+ρ` the relevant set. Adds the buffer part
/// of `alpha` to the buffer scores; then, if the buffer is full (slot 0 valid), the oldest entry
/// leaves it: it takes the first free relevant slot, else replaces the relevant entry of lowest
/// (frozen) score — first index on ties — only if its own score is strictly greater, else it is
/// discarded. Returns the relevant slot (absolute index) written, if any. Does not shift the
/// buffer (see [`push_row`]).
pub fn screen_row(
    valid: &mut [bool],
    score: &mut [f32],
    time: &mut [f32],
    alpha: &[f32],
    nu: usize,
    rho: usize,
) -> Option<usize> {
    for m in 0..nu {
        if valid[m] {
            score[m] += alpha[m];
        }
    }
    if !valid[0] || rho == 0 {
        return None;
    }
    let (r, t) = (score[0], time[0]);
    let slot = match (nu..nu + rho).find(|&m| !valid[m]) {
        Some(free) => Some(free),
        None => {
            let mut best = nu;
            for m in nu + 1..nu + rho {
                if score[m] < score[best] {
                    best = m;
                }
            }
            (r > score[best]).then_some(best)
        }
    };
    if let Some(m) = slot {
        valid[m] = true;
        score[m] = r;
        time[m] = t;
    }
    slot
}

/// Shifts the buffer of one row by one and writes the newest state's bookkeeping (valid, score 0,
/// time `now`) in slot ν−1.
pub fn push_row(valid: &mut [bool], score: &mut [f32], time: &mut [f32], nu: usize, now: f32) {
    for m in 0..nu - 1 {
        valid[m] = valid[m + 1];
        score[m] = score[m + 1];
        time[m] = time[m + 1];
    }
    valid[nu - 1] = true;
    score[nu - 1] = 0.0;
    time[nu - 1] = now;
}

/// The memory of a batch during a run of steps: tensors that carry gradients plus host-side
/// bookkeeping (validity, scores, write times) that does not.
struct Memory {
    inner: CoreState,
    s: Tensor<2>,
    slots: Tensor<3>,
    keys: Tensor<3>,
    valid: Vec<bool>,
    score: Vec<f32>,
    time: Vec<f32>,
    step: Vec<f32>,
}

/// A tensor's values on the host (detached), row-major.
pub(crate) fn host_f32(t: Tensor<2>) -> Vec<f32> {
    t.detach()
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_default()
}

impl Screened {
    /// Number of candidate slots ν + ρ.
    pub fn slots(&self) -> usize {
        self.short_term + self.relevant
    }

    fn n_inner(&self) -> usize {
        self.inner.state_layout().parts.len()
    }

    fn unpack(&self, state: CoreState) -> Memory {
        let n_inner = self.n_inner();
        let (m, h) = (self.slots(), self.inner.hidden_size());
        let mut parts = state.parts;
        let rest = parts.split_off(n_inner);
        let mut rest = rest.into_iter();
        let mut next = || {
            rest.next()
                .unwrap_or_else(|| unreachable!("state checked against the layout"))
        };
        let s = next();
        let slots_flat = next();
        let [b, _] = slots_flat.dims();
        let slots = slots_flat.reshape([b, m, h]);
        let valid = host_f32(next()).into_iter().map(|v| v > 0.5).collect();
        let score = host_f32(next());
        let time = host_f32(next());
        let step = host_f32(next());
        let keys = self.key.forward(slots.clone());
        Memory {
            inner: CoreState::from_parts(parts),
            s,
            slots,
            keys,
            valid,
            score,
            time,
            step,
        }
    }

    fn pack(&self, mem: Memory) -> CoreState {
        let (m, h) = (self.slots(), self.inner.hidden_size());
        let device = mem.s.device();
        let b = mem.step.len();
        let f = |v: Vec<f32>, w: usize| Tensor::<2>::from_data(TensorData::new(v, [b, w]), &device);
        let mut parts = mem.inner.parts;
        parts.push(mem.s);
        parts.push(mem.slots.reshape([b, m * h]));
        parts.push(f(
            mem.valid
                .iter()
                .map(|&v| if v { 1.0 } else { 0.0 })
                .collect(),
            m,
        ));
        parts.push(f(mem.score, m));
        parts.push(f(mem.time, m));
        parts.push(f(mem.step, 1));
        CoreState::from_parts(parts)
    }

    fn reset(&self, mut mem: Memory, mask: Tensor<2, Bool>) -> Memory {
        let rows: Vec<bool> = mask.to_data().try_into_vec_as::<bool>().unwrap_or_default();
        let m = self.slots();
        for (b, &r) in rows.iter().enumerate() {
            if r {
                mem.valid[b * m..(b + 1) * m].fill(false);
                mem.score[b * m..(b + 1) * m].fill(0.0);
                mem.time[b * m..(b + 1) * m].fill(0.0);
                mem.step[b] = 0.0;
            }
        }
        let m3 = mask.clone().unsqueeze_dim::<3>(2);
        let sd = mem.slots.dims();
        let kd = mem.keys.dims();
        mem.slots = mem.slots.mask_fill(m3.clone().expand(sd), 0.0);
        mem.keys = mem.keys.mask_fill(m3.expand(kd), 0.0);
        let s_dims = mem.s.dims();
        mem.s = mem.s.mask_fill(mask.clone().expand(s_dims), 0.0);
        mem.inner = mem.inner.reset_rows_mask(mask);
        mem
    }

    fn step_memory(
        &self,
        x: Tensor<2>,
        mut mem: Memory,
        diagnostics: bool,
    ) -> (Tensor<2>, Memory, Option<StepDiagnostics>) {
        let (nu, rho, m) = (self.short_term, self.relevant, self.slots());
        let [b, _] = x.dims();
        let device = x.device();
        let h = self.inner.hidden_size();

        // Attention over the valid candidates.
        let invalid: Vec<bool> = mem.valid.iter().map(|&v| !v).collect();
        let any: Vec<bool> = (0..b)
            .map(|r| mem.valid[r * m..(r + 1) * m].iter().any(|&v| v))
            .collect();
        let invalid = Tensor::<2, Bool>::from_data(TensorData::new(invalid, [b, m]), &device);
        let any = Tensor::<2, Bool>::from_data(TensorData::new(any, [b, 1]), &device);
        let q = self.query.forward(mem.s.clone()).unsqueeze_dim::<3>(1); // [B, 1, A]
        let e = self
            .score
            .forward(tanh(q + mem.keys.clone()))
            .reshape([b, m])
            .mask_fill(invalid.clone(), -1e30);
        // Empty slots get exactly 0 (also when no slot is filled yet).
        let alpha = softmax(e, 1).mask_fill(invalid, 0.0);
        let read = alpha
            .clone()
            .unsqueeze_dim::<3>(1)
            .matmul(mem.slots.clone())
            .reshape([b, h]);
        let out = self.inner.output_part();
        let h_prev = mem.inner.parts[out].clone();
        let s_new = (h_prev.clone() + read.mul_scalar(self.lambda)).mul_scalar(0.5);
        let s_new = h_prev.mask_where(any.expand([b, h]), s_new);

        // Inner step with s_t in place of h_{t−1}.
        let mut inner = mem.inner;
        inner.parts[out] = s_new.clone();
        let (y, inner, inner_diag) = self.inner.step_unchecked(x, inner, diagnostics);

        // Bookkeeping on the host, then the same decisions applied to the tensors.
        let alpha_host = host_f32(alpha.clone());
        let diag = diagnostics.then(|| {
            let ages: Vec<f32> = (0..b * m)
                .map(|i| {
                    if mem.valid[i] {
                        mem.step[i / m] - mem.time[i]
                    } else {
                        -1.0
                    }
                })
                .collect();
            let valid: Vec<f32> = mem
                .valid
                .iter()
                .map(|&v| if v { 1.0 } else { 0.0 })
                .collect();
            let mut d = inner_diag.unwrap_or_default();
            d.memory = Some(MemoryDiagnostics {
                attention: alpha.detach(),
                ages: Tensor::from_data(TensorData::new(ages, [b, m]), &device),
                valid: Tensor::from_data(TensorData::new(valid, [b, m]), &device),
            });
            d
        });
        let mut write = vec![false; b * m];
        let mut any_write = false;
        for r in 0..b {
            let span = r * m..(r + 1) * m;
            if let Some(slot) = screen_row(
                &mut mem.valid[span.clone()],
                &mut mem.score[span.clone()],
                &mut mem.time[span.clone()],
                &alpha_host[span],
                nu,
                rho,
            ) {
                write[r * m + slot] = true;
                any_write = true;
            }
            push_row(
                &mut mem.valid[r * m..(r + 1) * m],
                &mut mem.score[r * m..(r + 1) * m],
                &mut mem.time[r * m..(r + 1) * m],
                nu,
                mem.step[r],
            );
            mem.step[r] += 1.0;
        }
        let mut slots = mem.slots;
        let mut keys = mem.keys;
        if any_write {
            let w = Tensor::<2, Bool>::from_data(TensorData::new(write, [b, m]), &device)
                .unsqueeze_dim::<3>(2);
            let sd = slots.dims();
            let kd = keys.dims();
            let leaving = slots.clone().narrow(1, 0, 1).expand(sd);
            let leaving_key = keys.clone().narrow(1, 0, 1).expand(kd);
            slots = slots.mask_where(w.clone().expand(sd), leaving);
            keys = keys.mask_where(w.expand(kd), leaving_key);
        }
        let y_key = self.key.forward(y.clone()).unsqueeze_dim::<3>(1);
        let shift = |t: Tensor<3>, new: Tensor<3>| {
            let mut pieces = Vec::with_capacity(3);
            if nu > 1 {
                pieces.push(t.clone().narrow(1, 1, nu - 1));
            }
            pieces.push(new);
            if rho > 0 {
                pieces.push(t.narrow(1, nu, rho));
            }
            Tensor::cat(pieces, 1)
        };
        mem.slots = shift(slots, y.clone().unsqueeze_dim::<3>(1));
        mem.keys = shift(keys, y_key);
        mem.inner = inner;
        mem.s = s_new;
        (y, mem, diag)
    }
}

impl RecurrentCore for Screened {
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }

    fn hidden_size(&self) -> usize {
        self.inner.hidden_size()
    }

    fn state_layout(&self) -> StateLayout {
        let mut layout = self.inner.state_layout();
        let (m, h) = (self.slots(), self.inner.hidden_size());
        layout.extend_prefixed(
            "mem.",
            &StateLayout::new([
                ("s", h),
                ("slots", m * h),
                ("valid", m),
                ("score", m),
                ("time", m),
                ("step", 1),
            ]),
        );
        layout
    }

    fn output_part(&self) -> usize {
        self.inner.output_part()
    }

    /// The fused kernel (`screened_kernel`) on flex when the inner core has one: the memory's
    /// attention, scores and replacement run on the host between the inner stack kernel's
    /// steps, and slots point at the outputs they hold instead of copying them.
    fn fused_sequence(
        &self,
        x: &Tensor<3>,
        layout: SeqLayout,
        state: &CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        crate::screened_kernel::run_screened(self, x, layout, state, episode_starts)
    }

    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        if let Some(out) = crate::modular_kernel::fused_step(self, &x, &state, diagnostics) {
            return out;
        }
        let mem = self.unpack(state);
        let (y, mem, d) = self.step_memory(x, mem, diagnostics);
        (y, self.pack(mem), d)
    }

    fn forward_steps_unchecked(
        &self,
        xs: Vec<Tensor<2>>,
        state: CoreState,
        resets: &Resets,
        diagnostics: bool,
    ) -> StepsOutput {
        let mut mem = self.unpack(state);
        let mut ys = Vec::with_capacity(xs.len());
        let mut diags = Vec::new();
        for (t, x) in xs.into_iter().enumerate() {
            if let Some(Some(mask)) = resets.get(t) {
                mem = self.reset(mem, mask.clone());
            }
            let (y, m, d) = self.step_memory(x, mem, diagnostics);
            mem = m;
            ys.push(y);
            if let Some(d) = d {
                diags.push(d);
            }
        }
        (ys, self.pack(mem), diags)
    }
}

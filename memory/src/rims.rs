//! RIMs: `n` modules with input attention over a null slot, hard top-k activation, blocked
//! gradients, communication, and bit-exact preservation of inactive modules' state.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Bool, Device, Tensor};

use crate::attention::{blocked_grad, top_k_active, Communication, InputAttention, ModularConfig};
use crate::core::{RecurrentCore, StepOutput};
use crate::diagnostics::{LayerDiagnostics, StepDiagnostics};
use crate::error::{self, invalid};
use crate::group_cell::{GroupCell, GroupCellConfig};
use crate::modular_kernel;
use crate::seq_layout::SeqLayout;
use crate::spec::count_sum;
use crate::state::{CoreState, StateLayout};

/// One RIMs layer's step result: `(h [B, n·d], c [B, n·d], active [B, n], diagnostics)`.
pub type LayerStep = (
    Tensor<2>,
    Tensor<2>,
    Tensor<2, Bool>,
    Option<LayerDiagnostics>,
);

/// One layer of `n` recurrent independent mechanisms reading from a list of input slots.
#[derive(Module, Debug)]
pub struct RimsLayer {
    /// Input attention; `None` when bypassed (every module then reads the single slot as is).
    pub attention: Option<InputAttention>,
    /// The `n` cells.
    pub cell: GroupCell,
    /// Communication; `None` when switched off.
    pub communication: Option<Communication>,
    /// Number of modules `n`.
    pub modules: usize,
    /// Active modules per step `k`.
    pub top_k: usize,
    /// Hidden size per module `d`.
    pub module_size: usize,
    /// Whether inactive modules expose their old state (not the provisional one) to communication.
    pub comm_old_state: bool,
}

/// Checks the sizes shared by RIMs and BRIMs layers.
pub(crate) fn check_layer(
    core: &'static str,
    hidden: usize,
    n: usize,
    k: usize,
    m: &ModularConfig,
) -> error::Result<()> {
    if n == 0 {
        return Err(invalid(core, "num_modules must be at least 1"));
    }
    if k == 0 || k > n {
        return Err(invalid(
            core,
            format!(
                "top_k = {k} must be between 1 and num_modules = {n}; lower top_k or add modules"
            ),
        ));
    }
    if hidden == 0 || hidden % n != 0 {
        return Err(invalid(
            core,
            format!(
                "hidden_size = {hidden} must be a positive multiple of num_modules = {n} \
                 (e.g. {})",
                n * (hidden / n).max(1)
            ),
        ));
    }
    if m.input_heads == 0 || m.input_key_size == 0 || m.value_size(hidden / n) == 0 {
        return Err(invalid(
            core,
            "input_heads, input_key_size and input_value_size must be at least 1",
        ));
    }
    if m.communication && (m.comm_heads == 0 || m.comm_key_size == 0 || m.comm_value_size == 0) {
        return Err(invalid(
            core,
            "comm_heads, comm_key_size and comm_value_size must be at least 1",
        ));
    }
    if !(0.0..1.0).contains(&m.dropout) {
        return Err(invalid(
            core,
            format!("dropout = {} must be in [0, 1)", m.dropout),
        ));
    }
    Ok(())
}

impl RimsLayer {
    /// The number of scalar parameters [`RimsLayer::new`] creates for the same arguments (`k`
    /// changes no shape), without allocating (saturating): input attention unless bypassed, the
    /// cells (reading the attention's `heads·dv`, or the single slot when bypassed) and
    /// communication when switched on.
    pub fn num_params_for(
        slots: &[usize],
        hidden: usize,
        n: usize,
        bypass: bool,
        m: &ModularConfig,
    ) -> u64 {
        let d = hidden.checked_div(n).unwrap_or(0);
        let (attention, cell_input) = if bypass {
            (0, slots.first().copied().unwrap_or(0))
        } else {
            (
                InputAttention::num_params_for(n, d, slots, m),
                m.input_heads.saturating_mul(m.value_size(d)),
            )
        };
        let cell = GroupCellConfig::new(m.cell, n, cell_input, d).num_params();
        let communication = if m.communication {
            Communication::num_params_for(n, d, m)
        } else {
            0
        };
        count_sum([attention, cell, communication])
    }

    /// Builds a layer of `n` modules with total hidden size `hidden`, reading slots of widths
    /// `slots` (with input attention) or one slot of width `slots[0]` (bypassed).
    pub fn new(
        slots: &[usize],
        hidden: usize,
        n: usize,
        k: usize,
        bypass: bool,
        m: &ModularConfig,
        device: &Device,
    ) -> Self {
        let d = hidden / n;
        let attention = (!bypass).then(|| InputAttention::new(n, d, k, slots, m, device));
        let cell_input = attention
            .as_ref()
            .map(|a| a.read_size())
            .unwrap_or_else(|| slots.first().copied().unwrap_or(0));
        RimsLayer {
            attention,
            cell: GroupCellConfig::new(m.cell, n, cell_input, d).init(device),
            communication: m.communication.then(|| Communication::new(n, d, m, device)),
            modules: n,
            top_k: k,
            module_size: d,
            comm_old_state: m.comm_inactive_old_state,
        }
    }

    /// Whether the modules are LSTMs (state `h` and `c`) rather than GRUs.
    pub fn is_lstm(&self) -> bool {
        self.cell.is_lstm
    }

    /// One step. `slots[j]: [B, w_j]` are the real input slots, `h`, `c: [B, n·d]` the previous
    /// state (`c` is ignored for GRU cells). Inactive modules keep `h` and `c` bit for bit.
    pub fn step(
        &self,
        slots: Vec<Tensor<2>>,
        h: Tensor<2>,
        c: Tensor<2>,
        slot_names: &[&'static str],
        diagnostics: bool,
    ) -> LayerStep {
        let [b, _] = h.dims();
        let (n, d) = (self.modules, self.module_size);
        let device = h.device();
        let h_gm = h.reshape([b, n, d]).swap_dims(0, 1); // [n, B, d]
        let c_gm = if self.is_lstm() {
            c.reshape([b, n, d]).swap_dims(0, 1)
        } else {
            h_gm.clone()
        };

        // (1)–(4) input attention, (5) selection.
        let (u, att) = match &self.attention {
            Some(att) => {
                let (u, p) = att.forward(h_gm.clone(), slots);
                (u, Some(p))
            }
            None => {
                let x = slots
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Tensor::zeros([b, 0], &device));
                let [_, e] = x.dims();
                (x.unsqueeze_dim::<3>(0).expand([n, b, e]), None)
            }
        };
        let inactivity = match (&self.attention, &att) {
            (Some(a), Some(p)) => a.inactivity(p.clone()),
            _ => Tensor::zeros([b, n], &device),
        };
        let active = top_k_active(inactivity, self.top_k); // [B, n]
        let active_gm = active
            .clone()
            .swap_dims(0, 1)
            .unsqueeze_dim::<3>(2)
            .expand([n, b, d]);
        let inactive_gm = active_gm.clone().bool_not();

        // (6) all cells, (7) blocked gradient, (8)–(9) communication and residual.
        let (h_new, c_new) = self.cell.forward_group_major(u, h_gm.clone(), c_gm.clone());
        let (h_bar, comm_att) = match &self.communication {
            Some(comm) => {
                let h_hat = blocked_grad(h_new.clone(), inactive_gm.clone());
                let kv = self
                    .comm_old_state
                    .then(|| h_hat.clone().mask_where(inactive_gm, h_gm.clone()));
                let (delta, att) = comm.forward(h_hat, kv);
                (h_new + delta, Some(att))
            }
            None => (h_new, None),
        };

        // (10) masked update: a select, so inactive modules are preserved exactly.
        let h_out = h_gm.mask_where(active_gm.clone(), h_bar);
        let c_out = c_gm.mask_where(active_gm, c_new);
        let h_out = h_out.swap_dims(0, 1).reshape([b, n * d]);
        let c_out = c_out.swap_dims(0, 1).reshape([b, n * d]);
        let diag = diagnostics.then(|| LayerDiagnostics {
            active_mask: active.clone().float(),
            input_attention: att.map(|p| p.detach()),
            slot_names: slot_names.to_vec(),
            communication_attention: comm_att.map(|a| a.detach()),
        });
        (h_out, c_out, active, diag)
    }
}

/// Configuration of a single-layer [`Rims`] core.
#[derive(Config, Debug)]
pub struct RimsConfig {
    /// Input width `E`.
    pub input_size: usize,
    /// Total hidden width `H = n·d` (also the output width).
    pub hidden_size: usize,
    /// Number of modules `n` (paper `k_T`).
    #[config(default = 6)]
    pub num_modules: usize,
    /// Active modules per step `k` (paper `k_A`).
    #[config(default = 4)]
    pub top_k: usize,
    /// Attention, communication, cell and dropout settings.
    #[config(default = "ModularConfig::new()")]
    pub modular: ModularConfig,
    /// Skip input attention: every module reads `x` directly (`U = x`); for ablations and the
    /// reduction to a plain LSTM.
    #[config(default = false)]
    pub bypass_input_attention: bool,
}

/// Recurrent Independent Mechanisms (Goyal et al. 2021), official event-based variant.
/// State parts: `h [B, H]` and, for LSTM modules, `c [B, H]` (module `i` owns columns
/// `i·d..(i+1)·d`).
#[derive(Module, Debug)]
pub struct Rims {
    /// The single modular layer.
    pub layer: RimsLayer,
    /// Input width `E`.
    pub input_size: usize,
}

impl RimsConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> error::Result<()> {
        if self.input_size == 0 {
            return Err(invalid("rims", "input_size must be at least 1"));
        }
        check_layer(
            "rims",
            self.hidden_size,
            self.num_modules,
            self.top_k,
            &self.modular,
        )
    }

    /// The number of scalar parameters [`RimsConfig::init`] creates, without allocating
    /// (saturating).
    pub fn num_params(&self) -> u64 {
        RimsLayer::num_params_for(
            &[self.input_size],
            self.hidden_size,
            self.num_modules,
            self.bypass_input_attention,
            &self.modular,
        )
    }

    /// Builds the core on `device`.
    pub fn init(&self, device: &Device) -> error::Result<Rims> {
        self.validate()?;
        Ok(Rims {
            layer: RimsLayer::new(
                &[self.input_size],
                self.hidden_size,
                self.num_modules,
                self.top_k,
                self.bypass_input_attention,
                &self.modular,
                device,
            ),
            input_size: self.input_size,
        })
    }
}

crate::spec::sized_core_spec!(RimsConfig => Rims, modular: true);

impl RecurrentCore for Rims {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn hidden_size(&self) -> usize {
        self.layer.modules * self.layer.module_size
    }

    fn state_layout(&self) -> StateLayout {
        let h = self.hidden_size();
        if self.layer.is_lstm() {
            StateLayout::new([("h", h), ("c", h)])
        } else {
            StateLayout::new([("h", h)])
        }
    }

    fn output_part(&self) -> usize {
        0
    }

    /// The fused kernel (`modular_kernel`) on flex, for null-slot input attention without
    /// dropout: the whole sequence's attention, selection, cells and communication in one op
    /// with its own backward.
    fn fused_sequence(
        &self,
        x: &Tensor<3>,
        layout: SeqLayout,
        state: &CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        modular_kernel::run_stack(self, x, layout, state, episode_starts)
    }

    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        if let Some(out) = crate::modular_kernel::fused_step(self, &x, &state, diagnostics) {
            return out;
        }
        let lstm = self.layer.is_lstm();
        let mut parts = state.parts.into_iter();
        let h = parts
            .next()
            .unwrap_or_else(|| unreachable!("state checked against the layout"));
        let c = if lstm {
            parts.next().unwrap_or_else(|| h.clone())
        } else {
            h.clone()
        };
        let (h, c, _, diag) = self
            .layer
            .step(vec![x], h, c, &["null", "input"], diagnostics);
        let parts = if lstm {
            vec![h.clone(), c]
        } else {
            vec![h.clone()]
        };
        let diag = diag.map(|l| StepDiagnostics {
            layers: vec![l],
            memory: None,
        });
        (h, CoreState::from_parts(parts), diag)
    }
}

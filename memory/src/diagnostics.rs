//! Per-step diagnostics a caller can switch on: activation masks, attention weights, memory ages.

use burn::tensor::Tensor;

/// What one modular (RIMs-style) layer did in one step. All tensors are detached.
#[derive(Debug, Clone)]
pub struct LayerDiagnostics {
    /// Active modules, `[B, n]`, exactly 1.0 for active and 0.0 for inactive.
    pub active_mask: Tensor<2>,
    /// Input attention, `[B, heads, n, S]`; slot 0 is the null slot, see `slot_names`.
    /// `None` when input attention is bypassed.
    pub input_attention: Option<Tensor<4>>,
    /// Names of the `S` input slots, e.g. `["null", "input"]` or `["null", "bottom_up", "top_down"]`.
    pub slot_names: Vec<&'static str>,
    /// Communication attention, `[B, heads, n, n]` (query module, key module); `None` when off.
    pub communication_attention: Option<Tensor<4>>,
}

impl LayerDiagnostics {
    /// Attention on the slot called `name`, averaged over heads, `[B, n]`.
    pub fn slot_attention(&self, name: &str) -> Option<Tensor<2>> {
        let att = self.input_attention.as_ref()?;
        let j = self.slot_names.iter().position(|s| *s == name)?;
        let [b, _, n, _] = att.dims();
        Some(att.clone().narrow(3, j, 1).mean_dim(1).reshape([b, n]))
    }

    /// Top-down attention (BRIMs), averaged over heads, `[B, n]`; `None` if the layer has none.
    pub fn top_down_attention(&self) -> Option<Tensor<2>> {
        self.slot_attention("top_down")
    }

    /// Attention on the null slot, averaged over heads, `[B, n]` (the ranking quantity).
    pub fn null_attention(&self) -> Option<Tensor<2>> {
        self.slot_attention("null")
    }
}

/// What the relevancy-screened memory did in one step. All tensors are detached.
#[derive(Debug, Clone)]
pub struct MemoryDiagnostics {
    /// Attention over the candidates, `[B, ν + ρ]`: short-term buffer (oldest first), then the
    /// relevant set. Empty slots get exactly 0.
    pub attention: Tensor<2>,
    /// Age in steps of each candidate (`now − time written`), `[B, ν + ρ]`; −1 for empty slots.
    pub ages: Tensor<2>,
    /// 1.0 where the candidate slot holds a state, 0.0 where it is empty, `[B, ν + ρ]`.
    pub valid: Tensor<2>,
}

/// Diagnostics of one step of any core; fields a core does not have stay empty.
#[derive(Debug, Clone, Default)]
pub struct StepDiagnostics {
    /// One entry per modular layer (RIMs: one; BRIMs: one per layer; LSTM/GRU: none).
    pub layers: Vec<LayerDiagnostics>,
    /// Screened-memory attention and slot ages (screened cores only).
    pub memory: Option<MemoryDiagnostics>,
}

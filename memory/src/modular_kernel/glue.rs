//! Runs RIMs layers through the fused kernel: sizes and flat parameters from the modules, the
//! flat state in and out, and which configurations the kernel covers.

use burn::tensor::Tensor;

use super::{CommDims, LayerDims, ModularOp, SlotDims, StackDims};
use crate::core::time_major_flags;
use crate::host_op;
use crate::rims::RimsLayer;
use crate::seq_layout::SeqLayout;
use crate::state::CoreState;

/// The kernel's sizes of `layer` reading `slots`, or `None` when the layer uses something the
/// kernel does not cover (across-module input attention, dropout).
pub(crate) fn layer_dims(layer: &RimsLayer, slots: Vec<SlotDims>) -> Option<LayerDims> {
    let att = layer.attention.as_ref();
    if att.is_some_and(|a| a.across_modules || a.dropout.prob != 0.0) {
        return None;
    }
    let bypass = att.is_none();
    if bypass && (slots.len() != 1 || slots[0].parts.len() != 1) {
        return None;
    }
    let comm = match &layer.communication {
        Some(c) if c.dropout.prob != 0.0 => return None,
        Some(c) => Some(CommDims {
            heads: c.heads,
            key: c.key_size,
            value: c.value_size,
            old_state: layer.comm_old_state,
        }),
        None => None,
    };
    Some(LayerDims {
        modules: layer.modules,
        module: layer.module_size,
        top_k: layer.top_k,
        lstm: layer.is_lstm(),
        bypass,
        heads: att.map_or(0, |a| a.heads),
        key: att.map_or(0, |a| a.key_size),
        value: att.map_or(0, |a| a.value_size),
        slots,
        comm,
    })
}

/// One layer's parameters, flattened to `[1, numel]` each, in the kernel's order.
fn layer_params(layer: &RimsLayer, out: &mut Vec<Tensor<2>>) {
    let flat3 = flat::<3>;
    if let Some(att) = &layer.attention {
        out.push(flat3(att.query.weight.val()));
        out.extend(att.slot_kv.iter().map(|l| flat(l.weight.val())));
    }
    let cell = &layer.cell;
    out.push(flat3(cell.weight_ih.val()));
    out.push(flat3(cell.weight_hh.val()));
    out.push(flat(cell.bias_ih.val()));
    out.push(flat(cell.bias_hh.val()));
    if let Some(c) = &layer.communication {
        out.push(flat3(c.qkv.weight.val()));
        out.push(flat(c.out.weight.val()));
        if let Some(b) = &c.out.bias {
            out.push(flat(b.val()));
        }
    }
}

/// A core the fused kernel can run as a stack of modular layers.
pub(crate) trait KernelStack {
    /// The kernel's layers and whether inactive modules are passed up, or `None` when the core
    /// uses something the kernel does not cover.
    fn kernel_layers(&self) -> Option<(Vec<LayerDims>, bool)>;
    /// The parameters, flattened to `[1, numel]` each, in the kernel's order.
    fn kernel_params(&self, out: &mut Vec<Tensor<2>>);
}

/// The sizes of a run of `core` over `x`, `[T, B, E]` or, batch-major, `[B, T, E]`.
pub(crate) fn stack_dims(
    core: &impl KernelStack,
    x: &Tensor<3>,
    layout: SeqLayout,
) -> Option<StackDims> {
    let [d0, d1, e] = x.dims();
    let (t, b) = layout.steps_batch([d0, d1]);
    let (layers, pass_inactive) = core.kernel_layers()?;
    Some(StackDims {
        steps: t,
        batch: b,
        input: e,
        layers,
        pass_inactive,
        layout,
    })
}

/// The flat parameters of `core` `[1, P]`.
pub(crate) fn flat_params(core: &impl KernelStack, extra: Vec<Tensor<2>>) -> Tensor<2> {
    let mut params = Vec::new();
    core.kernel_params(&mut params);
    params.extend(extra);
    Tensor::cat(params, 1)
}

/// A plain LSTM or GRU as one bypassed module (`k = 1`): its weights `[E, G·H]`, `[H, G·H]`
/// and biases (LSTM: the fused bias and a zero hidden bias).
pub(crate) fn single_cell_layer(input: usize, hidden: usize, lstm: bool) -> LayerDims {
    LayerDims {
        modules: 1,
        module: hidden,
        top_k: 1,
        lstm,
        bypass: true,
        heads: 0,
        key: 0,
        value: 0,
        slots: vec![SlotDims {
            parts: vec![(super::Source::Input, input)],
        }],
        comm: None,
    }
}

/// `t` flattened to `[1, numel]`.
pub(crate) fn flat<const D: usize>(t: Tensor<D>) -> Tensor<2> {
    let n = t.dims().iter().product::<usize>();
    t.reshape([1, n])
}

/// Whether the modular and screened kernels may run: not when the environment sets
/// `ENGRAM_FUSED_MODULAR=0` (read once), which runs RIMs, BRIMs and screened memory through the
/// tensor code instead (for before/after measurements and for bisecting a suspected kernel bug).
pub(crate) fn modular_kernels_enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("ENGRAM_FUSED_MODULAR").map_or(true, |v| v != "0"))
}

/// Runs `core` fused over `x` (`[T, B, E]`, or `[B, T, E]` when `layout` is batch-major) from
/// `state` with resets at `episode_starts` (row-major `[B, T]`); `None` off the flex backend or
/// for a configuration the kernel does not cover. Returns the top layer's outputs in the input's
/// layout and the final state (every layer's parts, in order).
pub(crate) fn run_stack(
    core: &impl KernelStack,
    x: &Tensor<3>,
    layout: SeqLayout,
    state: &CoreState,
    episode_starts: Option<&[bool]>,
) -> Option<(Tensor<3>, CoreState)> {
    if !modular_kernels_enabled() || !host_op::on_flex(&state.parts[0]) {
        return None;
    }
    let dims = stack_dims(core, x, layout)?;
    let [d0, d1, e] = x.dims();
    let (t, b) = (dims.steps, dims.batch);
    let resets = time_major_flags(episode_starts, b, t);
    let widths: Vec<usize> = state.parts.iter().map(|p| p.dims()[1]).collect();
    let (top, sw) = (dims.output(), dims.state_width());
    let inputs = [
        x.clone().reshape([t * b, e]),
        Tensor::cat(state.parts.clone(), 1),
        flat_params(core, Vec::new()),
    ];
    let len = dims.output_len();
    let op = ModularOp { dims, resets };
    let z = host_op::run(&op, &inputs, [1, len])?;
    let y = z.clone().narrow(1, 0, t * b * top).reshape([d0, d1, top]);
    let last = z.narrow(1, t * b * top, b * sw).reshape([b, sw]);
    Some((y, split_parts(last, &widths)))
}

/// Splits `[B, Σ w]` into state parts of widths `widths`.
pub(crate) fn split_parts(flat: Tensor<2>, widths: &[usize]) -> CoreState {
    let mut col = 0;
    let parts = widths
        .iter()
        .map(|&w| {
            let p = flat.clone().narrow(1, col, w);
            col += w;
            p
        })
        .collect();
    CoreState::from_parts(parts)
}

impl KernelStack for crate::rims::Rims {
    fn kernel_layers(&self) -> Option<(Vec<LayerDims>, bool)> {
        let slots = vec![SlotDims {
            parts: vec![(super::Source::Input, self.input_size)],
        }];
        Some((vec![layer_dims(&self.layer, slots)?], true))
    }
    fn kernel_params(&self, out: &mut Vec<Tensor<2>>) {
        layer_params(&self.layer, out);
    }
}

impl KernelStack for crate::brims::Brims {
    fn kernel_layers(&self) -> Option<(Vec<LayerDims>, bool)> {
        let layers = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| layer_dims(l, self.kernel_slots(i)))
            .collect::<Option<Vec<_>>>()?;
        Some((layers, self.pass_inactive))
    }
    fn kernel_params(&self, out: &mut Vec<Tensor<2>>) {
        for l in &self.layers {
            layer_params(l, out);
        }
    }
}

impl KernelStack for crate::lstm::Lstm {
    fn kernel_layers(&self) -> Option<(Vec<LayerDims>, bool)> {
        Some((
            vec![single_cell_layer(self.input_size, self.hidden_size, true)],
            true,
        ))
    }
    fn kernel_params(&self, out: &mut Vec<Tensor<2>>) {
        let bias = self.bias.val();
        out.push(flat(self.weight_ih.val()));
        out.push(flat(self.weight_hh.val()));
        out.push(flat(bias.clone()));
        out.push(flat(bias.zeros_like()));
    }
}

impl KernelStack for crate::gru::Gru {
    fn kernel_layers(&self) -> Option<(Vec<LayerDims>, bool)> {
        Some((
            vec![single_cell_layer(self.input_size, self.hidden_size, false)],
            true,
        ))
    }
    fn kernel_params(&self, out: &mut Vec<Tensor<2>>) {
        out.push(flat(self.weight_ih.val()));
        out.push(flat(self.weight_hh.val()));
        out.push(flat(self.bias_ih.val()));
        out.push(flat(self.bias_hh.val()));
    }
}

impl KernelStack for crate::base_core::BaseCore {
    fn kernel_layers(&self) -> Option<(Vec<LayerDims>, bool)> {
        match self {
            Self::Lstm(c) => c.kernel_layers(),
            Self::Gru(c) => c.kernel_layers(),
            Self::Rims(c) => c.kernel_layers(),
            Self::Brims(c) => c.kernel_layers(),
        }
    }
    fn kernel_params(&self, out: &mut Vec<Tensor<2>>) {
        match self {
            Self::Lstm(c) => c.kernel_params(out),
            Self::Gru(c) => c.kernel_params(out),
            Self::Rims(c) => c.kernel_params(out),
            Self::Brims(c) => c.kernel_params(out),
        }
    }
}

/// One step through a core's fused sequence kernel (`T = 1`), for actors: `None` when the
/// kernel does not run (diagnostics asked for, another device, an uncovered configuration).
pub(crate) fn fused_step(
    core: &impl crate::core::RecurrentCore,
    x: &Tensor<2>,
    state: &CoreState,
    diagnostics: bool,
) -> Option<crate::core::StepOutput> {
    if diagnostics {
        return None;
    }
    let [b, e] = x.dims();
    let (y, s) = core.fused_sequence(
        &x.clone().reshape([1, b, e]),
        SeqLayout::TimeMajor,
        state,
        None,
    )?;
    Some((y.reshape([b, core.hidden_size()]), s, None))
}

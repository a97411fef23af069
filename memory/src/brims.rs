//! BRIMs: a stack of RIMs layers with bottom-up input and top-down attention from layer ℓ+1 at t−1.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

use crate::attention::{InputAttentionKind, ModularConfig};
use crate::core::{RecurrentCore, StepOutput};
use crate::diagnostics::StepDiagnostics;
use crate::error::{self, invalid};
use crate::modular_kernel::{self, SlotDims, Source};
use crate::rims::{check_layer, RimsLayer};
use crate::seq_layout::SeqLayout;
use crate::spec::{count_sum, CoreSpec};
use crate::state::{CoreState, StateLayout};

/// Configuration of a [`Brims`] core. `hidden_sizes`, `num_modules` and `top_k` have one entry
/// per layer (bottom first).
#[derive(Config, Debug)]
pub struct BrimsConfig {
    /// Input width `E`.
    pub input_size: usize,
    /// Hidden width per layer (official MNIST/CIFAR: `[300, 300]`).
    #[config(default = "vec![300, 300]")]
    pub hidden_sizes: Vec<usize>,
    /// Modules per layer (official MNIST: `[6, 3]`).
    #[config(default = "vec![6, 3]")]
    pub num_modules: Vec<usize>,
    /// Active modules per layer (official MNIST: `[4, 2]`).
    #[config(default = "vec![4, 2]")]
    pub top_k: Vec<usize>,
    /// Top-down attention: layer ℓ also attends to layer ℓ+1's state at t−1 (paper scheme; the
    /// top layer has none). Off gives plain stacked RIMs.
    #[config(default = true)]
    pub top_down: bool,
    /// Concatenate the bottom-up and top-down inputs into one slot (`[null, bottom‖top]`) instead
    /// of giving each its own slot (`[null, bottom, top]`, the official default).
    #[config(default = false)]
    pub concat_top_down: bool,
    /// Pass inactive modules' states up to the next layer (BRIMs default); otherwise they are
    /// zeroed (`m ⊙ h`, the RIMs stacking default).
    #[config(default = true)]
    pub pass_inactive: bool,
    /// Attention, communication, cell and dropout settings (all layers).
    #[config(default = "ModularConfig::new()")]
    pub modular: ModularConfig,
}

/// Bidirectional RIMs (Mittal et al. 2020). State parts per layer `ℓ`: `l{ℓ}.h` and, for LSTM
/// modules, `l{ℓ}.c`. The output is the top layer's `h`.
#[derive(Module, Debug)]
pub struct Brims {
    /// The layers, bottom first.
    pub layers: Vec<RimsLayer>,
    /// Input width `E`.
    pub input_size: usize,
    /// Whether top-down slots are used.
    pub top_down: bool,
    /// Whether bottom-up and top-down inputs share one concatenated slot.
    pub concat_top_down: bool,
    /// Whether inactive modules' states are passed up.
    pub pass_inactive: bool,
}

impl BrimsConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> error::Result<()> {
        let l = self.hidden_sizes.len();
        if l == 0 {
            return Err(invalid(
                "brims",
                "hidden_sizes must name at least one layer",
            ));
        }
        if self.num_modules.len() != l || self.top_k.len() != l {
            return Err(invalid(
                "brims",
                format!(
                    "hidden_sizes, num_modules and top_k need one entry per layer; got {}, {} and {}",
                    l,
                    self.num_modules.len(),
                    self.top_k.len()
                ),
            ));
        }
        if self.modular.input_attention == InputAttentionKind::AcrossModules {
            return Err(invalid(
                "brims",
                "input_attention = \"AcrossModules\" (RIMs Atari version 2) is for single-layer RIMs; \
                 BRIMs use the null-slot attention",
            ));
        }
        if self.input_size == 0 {
            return Err(invalid("brims", "input_size must be at least 1"));
        }
        for i in 0..l {
            check_layer(
                "brims",
                self.hidden_sizes[i],
                self.num_modules[i],
                self.top_k[i],
                &self.modular,
            )?;
        }
        Ok(())
    }

    /// Widths of the real input slots of layer `i`.
    fn slot_widths(&self, i: usize) -> Vec<usize> {
        let below = if i == 0 {
            self.input_size
        } else {
            self.hidden_sizes[i - 1]
        };
        let above =
            (self.top_down && i + 1 < self.hidden_sizes.len()).then(|| self.hidden_sizes[i + 1]);
        match (above, self.concat_top_down) {
            (Some(a), true) => vec![below.saturating_add(a)],
            (Some(a), false) => vec![below, a],
            (None, _) => vec![below],
        }
    }

    /// The number of scalar parameters [`BrimsConfig::init`] creates, without allocating
    /// (saturating): one RIMs layer per entry of `hidden_sizes`, reading its slots (the input or
    /// the layer below, plus the layer above with top-down attention).
    pub fn num_params(&self) -> u64 {
        count_sum((0..self.hidden_sizes.len()).map(|i| {
            RimsLayer::num_params_for(
                &self.slot_widths(i),
                self.hidden_sizes[i],
                self.num_modules.get(i).copied().unwrap_or(0),
                false,
                &self.modular,
            )
        }))
    }

    /// Builds the core on `device`.
    pub fn init(&self, device: &Device) -> error::Result<Brims> {
        self.validate()?;
        let layers = (0..self.hidden_sizes.len())
            .map(|i| {
                RimsLayer::new(
                    &self.slot_widths(i),
                    self.hidden_sizes[i],
                    self.num_modules[i],
                    self.top_k[i],
                    false,
                    &self.modular,
                    device,
                )
            })
            .collect();
        Ok(Brims {
            layers,
            input_size: self.input_size,
            top_down: self.top_down,
            concat_top_down: self.concat_top_down,
            pass_inactive: self.pass_inactive,
        })
    }
}

impl CoreSpec for BrimsConfig {
    type Module = Brims;
    const MODULAR: bool = true;

    fn default_sized(input_size: usize, hidden_size: usize) -> Self {
        BrimsConfig::new(input_size).with_hidden_sizes(vec![hidden_size, hidden_size])
    }
    fn input_size(&self) -> usize {
        self.input_size
    }
    fn hidden_size(&self) -> usize {
        self.hidden_sizes.last().copied().unwrap_or(0)
    }
    fn with_input_size(self, input_size: usize) -> Self {
        BrimsConfig { input_size, ..self }
    }
    fn validate(&self) -> error::Result<()> {
        BrimsConfig::validate(self)
    }
    fn init(&self, device: &Device) -> error::Result<Brims> {
        BrimsConfig::init(self, device)
    }
    fn num_params(&self) -> u64 {
        BrimsConfig::num_params(self)
    }
}

impl Brims {
    /// Hidden width of layer `i`.
    pub fn layer_size(&self, i: usize) -> usize {
        self.layers[i].modules * self.layers[i].module_size
    }

    /// Number of state parts per layer (2 for LSTM modules, 1 for GRU).
    fn parts_per_layer(&self) -> usize {
        if self.layers.first().map(|l| l.is_lstm()).unwrap_or(true) {
            2
        } else {
            1
        }
    }

    /// Names of layer `i`'s input slots (null first).
    fn slot_names(&self, i: usize) -> Vec<&'static str> {
        let has_top = self.top_down && i + 1 < self.layers.len();
        let below = if i == 0 { "input" } else { "bottom_up" };
        match (has_top, self.concat_top_down) {
            (true, true) => vec!["null", "bottom_up+top_down"],
            (true, false) => vec!["null", below, "top_down"],
            (false, _) => vec!["null", below],
        }
    }
}

impl Brims {
    /// The kernel's slots of layer `i`: bottom-up (the input or the layer below) and, with
    /// top-down attention, the layer above, as separate slots or one concatenated slot.
    pub(crate) fn kernel_slots(&self, i: usize) -> Vec<SlotDims> {
        let below = if i == 0 {
            (Source::Input, self.input_size)
        } else {
            (Source::Below, self.layer_size(i - 1))
        };
        if self.top_down && i + 1 < self.layers.len() {
            let above = (Source::Above, self.layer_size(i + 1));
            if self.concat_top_down {
                vec![SlotDims {
                    parts: vec![below, above],
                }]
            } else {
                vec![
                    SlotDims { parts: vec![below] },
                    SlotDims { parts: vec![above] },
                ]
            }
        } else {
            vec![SlotDims { parts: vec![below] }]
        }
    }
}

impl RecurrentCore for Brims {
    /// The fused kernel (`modular_kernel`) on flex, for null-slot attention without dropout:
    /// every layer, step and top-down read of the sequence in one op with its own backward.
    fn fused_sequence(
        &self,
        x: &Tensor<3>,
        layout: SeqLayout,
        state: &CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        modular_kernel::run_stack(self, x, layout, state, episode_starts)
    }

    fn input_size(&self) -> usize {
        self.input_size
    }

    fn hidden_size(&self) -> usize {
        self.layer_size(self.layers.len() - 1)
    }

    fn state_layout(&self) -> StateLayout {
        let mut parts = Vec::new();
        for i in 0..self.layers.len() {
            let h = self.layer_size(i);
            parts.push((format!("l{i}.h"), h));
            if self.parts_per_layer() == 2 {
                parts.push((format!("l{i}.c"), h));
            }
        }
        StateLayout::new(parts)
    }

    fn output_part(&self) -> usize {
        (self.layers.len() - 1) * self.parts_per_layer()
    }

    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        if let Some(out) = crate::modular_kernel::fused_step(self, &x, &state, diagnostics) {
            return out;
        }
        let ppl = self.parts_per_layer();
        let prev = state.parts;
        let n_layers = self.layers.len();
        let mut below = x;
        let mut parts = Vec::with_capacity(prev.len());
        let mut diags = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let h_prev = prev[i * ppl].clone();
            let c_prev = if ppl == 2 {
                prev[i * ppl + 1].clone()
            } else {
                h_prev.clone()
            };
            let slots = if self.top_down && i + 1 < n_layers {
                let top = prev[(i + 1) * ppl].clone();
                if self.concat_top_down {
                    vec![Tensor::cat(vec![below, top], 1)]
                } else {
                    vec![below, top]
                }
            } else {
                vec![below]
            };
            let names = self.slot_names(i);
            let (h, c, active, diag) = layer.step(slots, h_prev, c_prev, &names, diagnostics);
            below = if self.pass_inactive {
                h.clone()
            } else {
                let [b, hd] = h.dims();
                let (n, d) = (layer.modules, layer.module_size);
                let inactive = active
                    .bool_not()
                    .unsqueeze_dim::<3>(2)
                    .expand([b, n, d])
                    .reshape([b, hd]);
                h.clone().mask_fill(inactive, 0.0)
            };
            parts.push(h);
            if ppl == 2 {
                parts.push(c);
            }
            if let Some(d) = diag {
                diags.push(d);
            }
        }
        let y = parts[(n_layers - 1) * ppl].clone();
        let diag = diagnostics.then(|| StepDiagnostics {
            layers: diags,
            memory: None,
        });
        (y, CoreState::from_parts(parts), diag)
    }
}

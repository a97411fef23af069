//! Gated Transformer-XL (Parisotto et al. 2020): Transformer-XL blocks with relative positions,
//! identity-map reordering and GRU-gated residuals, over a sliding window of cached keys and values.

use std::sync::{Arc, Mutex};

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::activation::{sigmoid, tanh};
use crate::core::{RecurrentCore, StepOutput};
use crate::diagnostics::{MemoryDiagnostics, StepDiagnostics};
use crate::error::{self, invalid};
use crate::masked_softmax::{masked_softmax, KeyMask};
use crate::screened::host_f32;
use crate::seq_layout::SeqLayout;
use crate::spec::{count_sum, size_product};
use crate::state::{CoreState, StateLayout};

/// Configuration of a [`Gtrxl`] core.
#[derive(Config, Debug)]
pub struct GtrxlConfig {
    /// Input width `E`.
    pub input_size: usize,
    /// Model and output width `d` (a multiple of `num_heads`).
    pub hidden_size: usize,
    /// Transformer blocks.
    #[config(default = 2)]
    pub num_layers: usize,
    /// Attention heads per block.
    #[config(default = 4)]
    pub num_heads: usize,
    /// Steps of the past each step attends to (beside itself): the memory window `M`.
    #[config(default = 64)]
    pub memory_len: usize,
    /// Width of each block's feed-forward layer (0: `4d`).
    #[config(default = 0)]
    pub ff_size: usize,
    /// Initial bias `b_g` of the GRU gates' update gate: at 2 a block starts close to the
    /// identity (Parisotto et al.), so the untrained network is a Markov policy.
    #[config(default = 2.0)]
    pub gate_bias: f64,
}

/// One GRU-type gate `g(x, y)`: `r = σ(W_r y + U_r x)`, `z = σ(W_z y + U_z x − b_g)`,
/// `ĥ = tanh(W_g y + U_g (r ⊙ x))`, `g = (1 − z) ⊙ x + z ⊙ ĥ`.
#[derive(Module, Debug)]
pub struct GruGate {
    /// `[W_r | W_z | W_g]`, `[d, 3d]`.
    pub w: Param<Tensor<2>>,
    /// `[U_r | U_z]`, `[d, 2d]`.
    pub u: Param<Tensor<2>>,
    /// `U_g`, `[d, d]`.
    pub u_g: Param<Tensor<2>>,
    /// `b_g`, `[d]`.
    pub bias: Param<Tensor<1>>,
}

/// One Transformer-XL block with identity-map reordering and gated residuals.
#[derive(Module, Debug)]
pub struct GtrxlBlock {
    /// Layer norm before attention: gain and bias `[d]`.
    pub norm1_gain: Param<Tensor<1>>,
    /// See `norm1_gain`.
    pub norm1_bias: Param<Tensor<1>>,
    /// `[W_q | W_k | W_v]`, `[d, 3d]`.
    pub qkv: Param<Tensor<2>>,
    /// Projection of the relative position encodings `W_R`, `[d, d]`.
    pub pos: Param<Tensor<2>>,
    /// Transformer-XL's content bias `u`, `[d]` (heads × key width).
    pub content_bias: Param<Tensor<1>>,
    /// Transformer-XL's position bias `v`, `[d]`.
    pub position_bias: Param<Tensor<1>>,
    /// Attention output projection `[d, d]`.
    pub out: Param<Tensor<2>>,
    /// The gate after attention.
    pub gate1: GruGate,
    /// Layer norm before the feed-forward layer.
    pub norm2_gain: Param<Tensor<1>>,
    /// See `norm2_gain`.
    pub norm2_bias: Param<Tensor<1>>,
    /// Feed-forward `[d, f]` and its bias `[f]`.
    pub ff1: Param<Tensor<2>>,
    /// See `ff1`.
    pub ff1_bias: Param<Tensor<1>>,
    /// Feed-forward `[f, d]` and its bias `[d]`.
    pub ff2: Param<Tensor<2>>,
    /// See `ff2`.
    pub ff2_bias: Param<Tensor<1>>,
    /// The gate after the feed-forward layer.
    pub gate2: GruGate,
}

/// Gated Transformer-XL. State parts: `count [1]` (valid cached steps, 0…M) and, per block `l`,
/// `keys_l [M·d]` and `values_l [M·d]`: the keys and values of the last `M` steps (oldest
/// first, zero where not valid). A step attends to those and itself only, so stepping equals
/// the sequence forward, and a step costs `O(M·d)` per block whatever `t`.
///
/// Block `l` (input `h`): `ȳ = RelAttn(LN(h))` over `[cached, h]`, `y = g(h, ReLU(ȳ))`,
/// `ē = FF(LN(y))`, `h' = g(y, ReLU(ē))`. Attention scores are Transformer-XL's
/// `(q + u)·k + (q + v)·W_R R_{i−j}` with sinusoidal `R`, over `√d_k`. The output is the last
/// block's `h'` (width `d`); the input is first projected to `d`.
#[derive(Module, Debug)]
pub struct Gtrxl {
    /// Input projection `[E, d]`.
    pub embed: Param<Tensor<2>>,
    /// Its bias `[d]`.
    pub embed_bias: Param<Tensor<1>>,
    /// The blocks.
    pub blocks: Vec<GtrxlBlock>,
    /// Input width `E`.
    pub input_size: usize,
    /// Model width `d`.
    pub hidden_size: usize,
    /// Heads.
    pub num_heads: usize,
    /// Memory window `M`.
    pub memory_len: usize,
}

impl GtrxlConfig {
    /// The feed-forward width.
    fn ff(&self) -> usize {
        if self.ff_size == 0 {
            4 * self.hidden_size
        } else {
            self.ff_size
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> error::Result<()> {
        if self.input_size == 0 || self.hidden_size == 0 {
            return Err(invalid(
                "gtrxl",
                "input_size and hidden_size must be at least 1",
            ));
        }
        if self.num_layers == 0 || self.num_heads == 0 || self.memory_len == 0 {
            return Err(invalid(
                "gtrxl",
                "num_layers, num_heads and memory_len must be at least 1",
            ));
        }
        if self.hidden_size % self.num_heads != 0 {
            return Err(invalid(
                "gtrxl",
                format!(
                    "hidden_size = {} must be a multiple of num_heads = {}",
                    self.hidden_size, self.num_heads
                ),
            ));
        }
        if !self.gate_bias.is_finite() {
            return Err(invalid("gtrxl", "gate_bias must be finite"));
        }
        Ok(())
    }

    /// The number of scalar parameters [`GtrxlConfig::init`] creates, without allocating
    /// (saturating).
    pub fn num_params(&self) -> u64 {
        let (e, d, f) = (self.input_size, self.hidden_size, self.ff());
        let gate = count_sum([size_product(&[6, d, d]), d as u64]);
        let block = count_sum([
            size_product(&[4, d]),    // two layer norms
            size_product(&[3, d, d]), // qkv
            size_product(&[2, d, d]), // pos, out
            size_product(&[2, d]),    // u, v
            gate,
            gate,
            size_product(&[2, d, f]),
            f as u64,
            d as u64,
        ]);
        count_sum([
            count_sum([size_product(&[e, d]), d as u64]),
            block.saturating_mul(self.num_layers as u64),
        ])
    }

    /// Builds the core on `device`: matrices with PyTorch's `U(−1/√fan_in, 1/√fan_in)`, layer
    /// norms at gain 1 and bias 0, Transformer-XL's biases at 0, gate biases at `gate_bias`.
    pub fn init(&self, device: &Device) -> error::Result<Gtrxl> {
        self.validate()?;
        let (e, d, f) = (self.input_size, self.hidden_size, self.ff());
        let matrix = |rows: usize, cols: usize| {
            let k = 1.0 / (rows as f64).sqrt();
            Param::from_tensor(Tensor::random(
                [rows, cols],
                Distribution::Uniform(-k, k),
                device,
            ))
        };
        let constant = |n: usize, v: f64| Param::from_tensor(Tensor::<1>::full([n], v, device));
        let gate = || GruGate {
            w: matrix(d, 3 * d),
            u: matrix(d, 2 * d),
            u_g: matrix(d, d),
            bias: constant(d, self.gate_bias),
        };
        let blocks = (0..self.num_layers)
            .map(|_| GtrxlBlock {
                norm1_gain: constant(d, 1.0),
                norm1_bias: constant(d, 0.0),
                qkv: matrix(d, 3 * d),
                pos: matrix(d, d),
                content_bias: constant(d, 0.0),
                position_bias: constant(d, 0.0),
                out: matrix(d, d),
                gate1: gate(),
                norm2_gain: constant(d, 1.0),
                norm2_bias: constant(d, 0.0),
                ff1: matrix(d, f),
                ff1_bias: constant(f, 0.0),
                ff2: matrix(f, d),
                ff2_bias: constant(d, 0.0),
                gate2: gate(),
            })
            .collect();
        let k = 1.0 / (e as f64).sqrt();
        Ok(Gtrxl {
            embed: matrix(e, d),
            embed_bias: Param::from_tensor(Tensor::random(
                [d],
                Distribution::Uniform(-k, k),
                device,
            )),
            blocks,
            input_size: e,
            hidden_size: d,
            num_heads: self.num_heads,
            memory_len: self.memory_len,
        })
    }
}

crate::spec::sized_core_spec!(GtrxlConfig => Gtrxl, modular: true);

/// `x [N, d]` layer-normalised with `gain` and `bias`.
fn layer_norm(x: Tensor<2>, gain: &Param<Tensor<1>>, bias: &Param<Tensor<1>>) -> Tensor<2> {
    let mean = x.clone().mean_dim(1);
    let centred = x - mean;
    let var = (centred.clone() * centred.clone()).mean_dim(1);
    centred / (var + 1e-5).sqrt() * gain.val().unsqueeze_dim(0) + bias.val().unsqueeze_dim(0)
}

impl GruGate {
    /// `g(x, y)` for rows `[N, d]`.
    fn forward(&self, x: Tensor<2>, y: Tensor<2>) -> Tensor<2> {
        let d = x.dims()[1];
        let wy = y.matmul(self.w.val());
        let ux = x.clone().matmul(self.u.val());
        let r = sigmoid(wy.clone().narrow(1, 0, d) + ux.clone().narrow(1, 0, d));
        let z = sigmoid(
            wy.clone().narrow(1, d, d) + ux.narrow(1, d, d) - self.bias.val().unsqueeze_dim(0),
        );
        let h = tanh(wy.narrow(1, 2 * d, d) + (r * x.clone()).matmul(self.u_g.val()));
        x.clone() + z * (h - x)
    }
}

/// The sinusoidal encodings of distances `K − 1, K − 2, …, 0` (Transformer-XL's order), `[K, d]`.
/// Computed once per `(K, d)` (every acting step needs the same window's) and kept in a small
/// cache.
fn distance_encodings(keys: usize, d: usize, device: &Device) -> Tensor<2> {
    /// `((K, d), encodings)`, the most recently added last.
    type Entry = ((usize, usize), Arc<Vec<f32>>);
    static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    let cached = {
        let cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|(key, _)| *key == (keys, d))
            .map(|(_, data)| data.clone())
    };
    let data = cached.unwrap_or_else(|| {
        let data = Arc::new(sinusoids(keys, d));
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= 32 {
            cache.remove(0);
        }
        cache.push(((keys, d), data.clone()));
        data
    });
    Tensor::from_data(TensorData::new(data.to_vec(), [keys, d]), device)
}

/// The encodings of [`distance_encodings`], row-major.
fn sinusoids(keys: usize, d: usize) -> Vec<f32> {
    let half = d.div_ceil(2);
    let rates: Vec<f64> = (0..half)
        .map(|k| 10000f64.powf(-((2 * k) as f64) / d as f64))
        .collect();
    let mut data = vec![0f32; keys * d];
    for c in 0..keys {
        let distance = (keys - 1 - c) as f64;
        for (k, &rate) in rates.iter().enumerate() {
            data[c * d + 2 * k] = (distance * rate).sin() as f32;
            if 2 * k + 1 < d {
                data[c * d + 2 * k + 1] = (distance * rate).cos() as f32;
            }
        }
    }
    data
}

/// Transformer-XL's relative shift: `x [N, T, K]` with column `c` for distance `K − 1 − c`
/// becomes `out[i, j] = x[i, j + T − 1 − i]`, the score of query `i` (the `(K − T + i)`-th key
/// position) for key `j`; entries with `j > K − T + i` are garbage and must be masked.
fn relative_shift(x: Tensor<3>) -> Tensor<3> {
    let [n, t, k] = x.dims();
    let zeros = Tensor::<3>::zeros([n, t, 1], &x.device());
    Tensor::cat(vec![zeros, x], 2)
        .reshape([n, k + 1, t])
        .narrow(1, 1, k)
        .reshape([n, t, k])
}

/// What the attention mask and the next state need from the episode starts.
struct Window {
    /// Which of the `M + T` keys each query may attend to.
    mask: KeyMask,
    /// Valid cached steps after the sequence, per row.
    count_after: Vec<f32>,
}

impl Gtrxl {
    /// The mask of `T` queries over `M` cached and `T` new keys, and the counts after.
    fn window(&self, count: &[f32], starts: Option<&[bool]>, t: usize) -> Window {
        let m = self.memory_len;
        let b = count.len();
        let k = m + t;
        let mut allowed = vec![false; b * t * k];
        let mut count_after = vec![0f32; b];
        for (row, &cached) in count.iter().enumerate() {
            let cached = cached.round().max(0.0) as usize;
            let mut first = None; // the first step of the current episode, if inside
            for i in 0..t {
                if starts.is_some_and(|s| s[row * t + i]) {
                    first = Some(i);
                }
                let line = &mut allowed[(row * t + i) * k..(row * t + i + 1) * k];
                // Keys j in [i, m + i]: the last M steps and this one (absolute positions).
                for (j, slot) in line.iter_mut().enumerate().take(m + i + 1).skip(i) {
                    *slot = if j < m {
                        first.is_none() && j >= m - cached.min(m)
                    } else {
                        first.is_none_or(|f| j - m >= f)
                    };
                }
            }
            count_after[row] = match first {
                Some(f) => (t - f).min(m),
                None => (cached + t).min(m),
            } as f32;
        }
        Window {
            mask: KeyMask {
                keep: Arc::new(allowed),
                steps: t,
                keys: k,
            },
            count_after,
        }
    }

    /// `x [B, T, E]` from `state`, resetting before the steps flagged in `starts` (row-major
    /// `[B, T]`): `y [B, T, d]`, the next state and, when asked, the last block's attention of
    /// the last step over its window of `M + 1` keys `[B, M + 1]` (averaged over heads) with
    /// 1.0 where a key is valid.
    fn run(
        &self,
        x: Tensor<3>,
        state: CoreState,
        starts: Option<&[bool]>,
        attention: bool,
    ) -> (Tensor<3>, CoreState, Option<(Tensor<2>, Tensor<2>)>) {
        let [b, t, e] = x.dims();
        let (d, m, heads) = (self.hidden_size, self.memory_len, self.num_heads);
        let dk = d / heads;
        let k = m + t;
        let device = x.device();
        let mut parts = state.parts.into_iter();
        let count_part = parts.next().expect("state checked against the layout");
        let count = host_f32(count_part);
        let window = self.window(&count, starts, t);
        let mut h =
            x.reshape([b * t, e]).matmul(self.embed.val()) + self.embed_bias.val().unsqueeze_dim(0);
        let positions = distance_encodings(k, d, &device);
        let keep: Vec<f32> = window
            .count_after
            .iter()
            .flat_map(|&c| (0..m).map(move |j| if j + c as usize >= m { 1.0 } else { 0.0 }))
            .collect();
        let keep =
            Tensor::<2>::from_data(TensorData::new(keep, [b, m]), &device).unsqueeze_dim::<3>(2);
        let mut next = vec![Tensor::from_data(
            TensorData::new(window.count_after.clone(), [b, 1]),
            &device,
        )];
        let mut last_attention = None;
        for (l, block) in self.blocks.iter().enumerate() {
            let cached_keys = parts.next().expect("layout").reshape([b, m, d]);
            let cached_values = parts.next().expect("layout").reshape([b, m, d]);
            let normed = layer_norm(h.clone(), &block.norm1_gain, &block.norm1_bias);
            let qkv = normed.matmul(block.qkv.val()).reshape([b, t, 3 * d]);
            let q = qkv.clone().narrow(2, 0, d);
            let keys = Tensor::cat(vec![cached_keys, qkv.clone().narrow(2, d, d)], 1);
            let values = Tensor::cat(vec![cached_values, qkv.narrow(2, 2 * d, d)], 1);
            next.push((keys.clone().narrow(1, t, m) * keep.clone()).reshape([b, m * d]));
            next.push((values.clone().narrow(1, t, m) * keep.clone()).reshape([b, m * d]));
            let heads_of = |x: Tensor<3>, n: usize| x.reshape([b, n, heads, dk]).swap_dims(1, 2);
            let q4 = heads_of(q, t);
            let u = block.content_bias.val().reshape([1, heads, 1, dk]);
            let v = block.position_bias.val().reshape([1, heads, 1, dk]);
            let content = (q4.clone() + u).matmul(heads_of(keys, k).swap_dims(2, 3));
            let p = positions
                .clone()
                .matmul(block.pos.val())
                .reshape([1, k, heads, dk])
                .swap_dims(1, 2)
                .swap_dims(2, 3); // [1, H, dk, K]
            let position = relative_shift((q4 + v).matmul(p).reshape([b * heads, t, k]))
                .reshape([b, heads, t, k]);
            let scores = (content + position) / (dk as f64).sqrt();
            let att = masked_softmax(scores, &window.mask);
            if attention && l + 1 == self.blocks.len() {
                // The last query's weights on keys t−1 … t−1+M (its window), averaged over heads.
                let window_of = |x: Tensor<4>| x.narrow(2, t - 1, 1).narrow(3, t - 1, m + 1);
                let weights = window_of(att.clone())
                    .mean_dim(1)
                    .reshape([b, m + 1])
                    .detach();
                let valid = window_of(window.mask.keep_tensor(&device)).reshape([b, m + 1]);
                last_attention = Some((weights, valid));
            }
            let read = att
                .matmul(heads_of(values, k))
                .swap_dims(1, 2)
                .reshape([b * t, d])
                .matmul(block.out.val());
            let y = block.gate1.forward(h, relu(read));
            let normed = layer_norm(y.clone(), &block.norm2_gain, &block.norm2_bias);
            let ff = relu(normed.matmul(block.ff1.val()) + block.ff1_bias.val().unsqueeze_dim(0))
                .matmul(block.ff2.val())
                + block.ff2_bias.val().unsqueeze_dim(0);
            h = block.gate2.forward(y, relu(ff));
        }
        (
            h.reshape([b, t, d]),
            CoreState::from_parts(next),
            last_attention,
        )
    }
}

impl RecurrentCore for Gtrxl {
    fn input_size(&self) -> usize {
        self.input_size
    }

    fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    fn state_layout(&self) -> StateLayout {
        let width = self.memory_len * self.hidden_size;
        let mut parts = vec![("count".to_string(), 1)];
        for l in 0..self.blocks.len() {
            parts.push((format!("keys_{l}"), width));
            parts.push((format!("values_{l}"), width));
        }
        StateLayout::new(parts)
    }

    /// GTrXL's output is not a state part; 0 names `count`, and screened memory (the only
    /// user of this) does not wrap GTrXL.
    fn output_part(&self) -> usize {
        0
    }

    /// The whole sequence as one pass per block (any device): attention of every step over
    /// the cached window and the sequence, masked at episode starts. The blocks run batch-major
    /// (`forward_sequence`'s order, read as is); a time-major call is transposed both ways.
    fn fused_sequence(
        &self,
        x: &Tensor<3>,
        layout: SeqLayout,
        state: &CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        let run = |x: Tensor<3>| self.run(x, state.clone(), episode_starts, false);
        match layout {
            SeqLayout::BatchMajor => {
                let (y, state, _) = run(x.clone());
                Some((y, state))
            }
            SeqLayout::TimeMajor => {
                let (y, state, _) = run(x.clone().swap_dims(0, 1));
                Some((y.swap_dims(0, 1), state))
            }
        }
    }

    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        let [b, e] = x.dims();
        let (y, state, read) = self.run(x.reshape([b, 1, e]), state, None, diagnostics);
        let diagnostics = read.map(|(attention, valid)| {
            let m = self.memory_len;
            // Key j of the window is M − j steps old (the step itself: 0); −1 where not valid.
            let ages: Vec<f32> = (0..=m).rev().map(|a| a as f32).collect();
            let ages = Tensor::<1>::from_data(TensorData::new(ages, [m + 1]), &valid.device())
                .unsqueeze_dim::<2>(0)
                .expand([b, m + 1]);
            StepDiagnostics {
                layers: vec![],
                memory: Some(MemoryDiagnostics {
                    attention,
                    ages: ages * valid.clone() + (valid.clone() - 1.0),
                    valid,
                }),
            }
        });
        (y.reshape([b, self.hidden_size]), state, diagnostics)
    }
}

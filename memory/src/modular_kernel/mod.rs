//! Fused RIMs/BRIMs sequence on host f32 buffers: a stack of modular layers (null-slot input
//! attention, hard top-k, group LSTM/GRU cells, communication, masked update, top-down slots)
//! run over a whole sequence with a saved tape, and backpropagation through time with every
//! weight gradient as one large matmul per module over all steps.
//!
//! The batch is split into chunks of rows that run the whole sequence independently, one per
//! thread: rows never interact, so the steps need no synchronisation; only the weight gradients
//! are summed over chunks. Layouts are time-major per chunk: row `t·Bc + r` of a `[T·Bc, ·]`
//! buffer is the chunk's row `r` at step `t`; a layer's module `i` owns columns `i·w..(i+1)·w`
//! of each per-module buffer.

mod backward;
mod comm_heads;
mod forward;
mod glue;

use rayon::prelude::*;

use crate::host_math::{give, take_zeroed};
use crate::host_op::HostOp;
use crate::seq_layout::{SeqLayout, SeqRows};

pub(crate) use backward::ChunkGrads;
pub(crate) use backward::{transposed_weights, StackBackward};
pub(crate) use forward::ChunkTape;
pub(crate) use forward::StackForward;
pub(crate) use glue::{
    flat, flat_params, fused_step, modular_kernels_enabled, run_stack, split_parts, stack_dims,
};

/// Where a part of an input slot comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The sequence input `x_t` (layer 0).
    Input,
    /// The layer below at `t` (its `h`, with inactive modules zeroed unless passed up).
    Below,
    /// The layer above at `t − 1` (top-down; its state after resets).
    Above,
}

/// One input slot of a layer: its parts, concatenated in this order (the rows of its key/value
/// projection follow the same order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlotDims {
    /// `(source, width)` of each part.
    pub parts: Vec<(Source, usize)>,
}

impl SlotDims {
    /// Width of the slot (sum of its parts).
    pub fn width(&self) -> usize {
        self.parts.iter().map(|p| p.1).sum()
    }
}

/// Communication sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CommDims {
    /// Heads.
    pub heads: usize,
    /// Key size per head.
    pub key: usize,
    /// Value size per head.
    pub value: usize,
    /// Keys and values of inactive modules from their old state instead of the provisional one.
    pub old_state: bool,
}

impl CommDims {
    /// Width of one module's query/key/value projection.
    pub fn qkv(&self) -> usize {
        self.heads * (2 * self.key + self.value)
    }

    /// Width of one module's read (every head's values).
    pub fn reads(&self) -> usize {
        self.heads * self.value
    }

    /// The attention scores' scale.
    pub fn scale(&self) -> f32 {
        score_scale(self.key)
    }

    /// Where head `h` of module `i`'s attention lies in a row of `n` modules' queries, keys and
    /// values starting at `base` (`n·qkv` wide: per module its queries, keys and values, each
    /// head after head).
    pub fn head_at(&self, base: usize, i: usize, h: usize, n: usize) -> comm_heads::HeadAt {
        let (ch, ck, cv) = (self.heads, self.key, self.value);
        comm_heads::HeadAt {
            query: base + i * self.qkv() + h * ck,
            key0: base + ch * ck + h * ck,
            value0: base + 2 * ch * ck + h * cv,
            stride: self.qkv(),
            modules: n,
            key: ck,
            value: cv,
        }
    }
}

/// The scale `1/√d_k` of attention scores over keys of size `key`.
fn score_scale(key: usize) -> f32 {
    1.0 / (key as f32).sqrt()
}

/// Sizes of one modular layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LayerDims {
    /// Modules `n`.
    pub modules: usize,
    /// Hidden width per module `d`.
    pub module: usize,
    /// Active modules per step `k`.
    pub top_k: usize,
    /// LSTM cells (else GRU).
    pub lstm: bool,
    /// No input attention: every module reads the single input slot as is (`U = x`), and the
    /// top-k ranks all-equal scores (RIMs' `bypass_input_attention`; with one module of `k = 1`,
    /// a plain LSTM or GRU).
    pub bypass: bool,
    /// Input-attention heads.
    pub heads: usize,
    /// Input-attention key size per head.
    pub key: usize,
    /// Input-attention value size per head.
    pub value: usize,
    /// The real input slots (the null slot is implicit).
    pub slots: Vec<SlotDims>,
    /// Communication, when on.
    pub comm: Option<CommDims>,
}

impl LayerDims {
    /// Layer width `n·d`.
    pub fn hidden(&self) -> usize {
        self.modules * self.module
    }
    /// Gates per module (4 for LSTM, 3 for GRU).
    pub fn gates(&self) -> usize {
        if self.lstm {
            4
        } else {
            3
        }
    }
    /// Modules active in every row: exactly `min(k, n)`, since the top-k's tie-break is a
    /// total order. The communication's per-module buffers hold only these, row after row.
    pub fn active_per_row(&self) -> usize {
        self.top_k.min(self.modules)
    }
    /// Width of one slot's key/value projection (0 when bypassed).
    pub fn kv(&self) -> usize {
        if self.bypass {
            0
        } else {
            self.heads * (self.key + self.value)
        }
    }
    /// Width of one module's read: `a = heads·dv`, or the input slot's width when bypassed.
    pub fn read(&self) -> usize {
        if self.bypass {
            self.slots[0].width()
        } else {
            self.heads * self.value
        }
    }
    /// Width of one module's queries (0 when bypassed).
    pub fn query(&self) -> usize {
        if self.bypass {
            0
        } else {
            self.heads * self.key
        }
    }
    /// The input attention scores' scale.
    pub fn input_scale(&self) -> f32 {
        score_scale(self.key)
    }
    /// Width of the layer's pre-gated blocks per row: `G·d` for every `(module i, slot j, head
    /// h)`, `h` fastest, a module's blocks side by side (0 when bypassed).
    pub fn blocks(&self) -> usize {
        if self.bypass {
            0
        } else {
            self.slots.len() * self.heads * self.modules * self.gates() * self.module
        }
    }
    /// Column of block `(module i, slot j, head h)` of a row of pre-gated blocks.
    pub fn block(&self, i: usize, j: usize, h: usize) -> usize {
        ((i * self.slots.len() + j) * self.heads + h) * self.gates() * self.module
    }
    /// Width of the folded keys `k̂` per row (see [`StackDims::folds_keys`]): `d` for every
    /// `(module i, slot j, head h)`.
    pub fn folded_keys(&self) -> usize {
        self.modules * self.slots.len() * self.heads * self.module
    }
    /// Column of block `(module i, slot j, head h)` of a row of folded keys.
    pub fn folded_block(&self, i: usize, j: usize, h: usize) -> usize {
        ((i * self.slots.len() + j) * self.heads + h) * self.module
    }
    /// Attention entries per row: heads × modules × (1 + slots) (0 when bypassed).
    pub fn attention(&self) -> usize {
        if self.bypass {
            0
        } else {
            self.heads * self.modules * (1 + self.slots.len())
        }
    }
}

/// Sizes of a fused run over a stack of layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StackDims {
    /// Steps `T`.
    pub steps: usize,
    /// Batch rows `B`.
    pub batch: usize,
    /// Input width `E`.
    pub input: usize,
    /// The layers, bottom first.
    pub layers: Vec<LayerDims>,
    /// Whether inactive modules' states are passed up unmasked.
    pub pass_inactive: bool,
    /// The row order of the input `x`, the output `y` and their gradients.
    pub layout: SeqLayout,
}

impl StackDims {
    /// The rows of the input, the output and their gradients.
    pub fn seq(&self) -> SeqRows {
        SeqRows {
            layout: self.layout,
            steps: self.steps,
            batch: self.batch,
        }
    }

    /// State parts per layer (`h`, and `c` for LSTM cells).
    fn parts_per_layer(&self) -> usize {
        if self.layers[0].lstm {
            2
        } else {
            1
        }
    }

    /// Width of the flat state: every layer's parts, in the core's state order.
    pub fn state_width(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.hidden() * self.parts_per_layer())
            .sum()
    }

    /// Width of the top layer (the output).
    pub fn output(&self) -> usize {
        self.layers[self.layers.len() - 1].hidden()
    }

    /// Length of the flat output: `y [T·B, H_top]` then the final state `[B, state_width]`.
    pub fn output_len(&self) -> usize {
        self.steps * self.batch * self.output() + self.batch * self.state_width()
    }

    /// Width of layer 0's pre-gated input per row (0 when it is not pre-gated).
    ///
    /// When every slot of layer 0 is the sequence input alone, a module's read is a fixed
    /// linear map of the input weighted by its attention: `u_i = Σ_j p_ij v_j` per head, so its
    /// gate input `u_i W_i = Σ_j p_ij (v_j W_i)`. The products `v_j W_i` (bypassed: `x W_i`)
    /// then do not depend on the recurrence and are computed for every step at once, one large
    /// matmul per block, instead of one small matmul per module and step — and the backward
    /// defers the values' gradient to one matmul per block at the end as well. Row layout:
    /// blocks of `G·d` for every `(module i, slot j, head h)` ([`LayerDims::block`]; bypassed:
    /// per module).
    pub fn pregate_width(&self) -> usize {
        let l0 = &self.layers[0];
        let gd = l0.gates() * l0.module;
        let input_only = l0
            .slots
            .iter()
            .all(|s| s.parts.len() == 1 && s.parts[0].0 == Source::Input);
        if l0.bypass {
            l0.modules * gd
        } else if input_only {
            l0.blocks()
        } else {
            0
        }
    }

    /// Whether layer `li` is pre-gated (layer 0 with a pre-gated width).
    pub fn pregated(&self, li: usize) -> bool {
        li == 0 && self.pregate_width() > 0
    }

    /// Whether a chunk of `rows` (`T·Bc`) pre-gates layer `li` through the precomposed weights
    /// `M_hji = W_v,hj W_i[h]` (the slot's value projection times the cell's input weights:
    /// `[w_j, G·d]` per block, side by side as `[w, blocks]`), skipping the values
    /// `v_hj = s_j W_v,hj` altogether: the forward then saves `w·heads·dv` multiply-adds a row
    /// (the values' projection) and the reads, the backward twice that (the values' gradient and
    /// its product back into the source), for `n·heads·w·dv·G·d` per call making `M` (and twice
    /// that for the weights' gradients from `M`'s). That pays from `n·G·d` rows on (RIMs of
    /// 4 × 32: 512; a training step's minibatch and an actor's step, below it, keep the values).
    ///
    /// Layer 0 when it is pre-gated (its slots read the input alone: its blocks are made for
    /// every step at once); a layer whose one slot is another layer's state (BRIMs' top layer,
    /// the upper layers of a plain stack) step by step, `s_t · M` in one product: a read of one
    /// slot is `u_i = p_i v`, so `u_i W_i = p_i (s M_i)` costs the forward what the reads'
    /// products did (one product instead of one per module), without the values.
    pub fn precomposes(&self, li: usize, rows: usize) -> bool {
        let l = &self.layers[li];
        let one_state_slot = l.slots.len() == 1
            && l.slots[0].parts.len() == 1
            && l.slots[0].parts[0].0 != Source::Input;
        let (eligible, w) = if li == 0 {
            (self.pregate_width() > 0, self.input)
        } else {
            (one_state_slot, l.slots[0].width())
        };
        // Per row and head, `w·n·G·d` multiply-adds against the values' `w·dv` and the blocks'
        // (or the reads' products') `dv·n·G·d`. Layer 0's blocks are one product over the chunk:
        // it precomposes where that costs no more (RIMs of 4 × 32: 0.8 of it, 5–6 % faster). A
        // layer pre-gated step by step keeps its blocks on the tape and sends their gradient down
        // at every step, which pays from a third less (BRIMs at the paper's sizes, 0.6 of it:
        // 6–7 % faster; BRIMs of 4 × 32 modules, 0.8: 2–7 % slower, so they keep the values).
        let ngd = l.modules * l.gates() * l.module;
        let (num, den) = if li == 0 { (1, 1) } else { (3, 2) };
        !l.bypass && eligible && rows >= ngd && num * w * ngd <= den * l.value * (w + ngd)
    }

    /// Whether a chunk of `rows` folds layer 0's input-attention keys into its queries' weights:
    /// a score is `q_hi · k_hj = h_i W_q,hi (x W_k,hj)ᵀ = h_i · (x C_hji)` with `C_hji = W_k,hj
    /// W_q,hiᵀ` `[E, d]` (the `folded` weights), so every step's `k̂_hji = x C_hji` is one matmul
    /// over the chunk's rows, like the pre-gated blocks, and a step's scores are dot products
    /// with the state: no keys, no queries' product per step, no queries' tape; the backward
    /// sends `ds·k̂` straight into `h_{t−1}` and makes `C`'s gradient from the input's rows, as
    /// `M`'s (see [`StackDims::precomposes`]). Where layer 0 precomposes and, per slot and head,
    /// `E·n·d` multiply-adds a row (the folded keys) cost no more than the keys' `E·dk` and the
    /// queries' `n·d·dk` (RIMs of 4 × 32 with E = 128 and dk = 64: the same; the backward then
    /// does a third of the keys' and queries' products, in one large one).
    pub fn folds_keys(&self, rows: usize) -> bool {
        let l = &self.layers[0];
        let (e, nd, dk) = (self.input, l.hidden(), l.key);
        let s = l.slots.len();
        self.precomposes(0, rows) && s * e * nd <= s * e * dk + nd * dk
    }

    /// Whether layer `li`'s gates take pre-gated blocks instead of reads in a chunk of `rows`
    /// (layer 0 pre-gated, or a layer that precomposes).
    pub fn gates_pregated(&self, li: usize, rows: usize) -> bool {
        self.pregated(li) || self.precomposes(li, rows)
    }
}

/// Offsets of one layer's parameters in the flat parameter buffer.
#[derive(Clone, Debug)]
pub(crate) struct LayerParams {
    /// Query projection `[n, d, heads·dk]`.
    pub query: usize,
    /// Key/value projection of each slot `[w_j, heads·(dk + dv)]`.
    pub slot_kv: Vec<usize>,
    /// Cell input weights `[n, a, G·d]`.
    pub w_ih: usize,
    /// Cell hidden weights `[n, d, G·d]`.
    pub w_hh: usize,
    /// Cell input biases `[n, G·d]`.
    pub b_ih: usize,
    /// Cell hidden biases `[n, G·d]`.
    pub b_hh: usize,
    /// Communication query/key/value `[n, d, qkv]`.
    pub comm_qkv: usize,
    /// Communication output `[heads·dv, 2d]`.
    pub comm_out: usize,
    /// Communication output bias `[2d]`.
    pub comm_bias: usize,
}

/// The sizes, in order, of one layer's parameter tensors in the flat buffer (the order the
/// cores pass them in).
pub(crate) fn layer_param_sizes(l: &LayerDims) -> Vec<usize> {
    let (n, d, g) = (l.modules, l.module, l.gates());
    let mut sizes = Vec::new();
    if !l.bypass {
        sizes.push(n * d * l.query());
        sizes.extend(l.slots.iter().map(|s| s.width() * l.kv()));
    }
    sizes.extend([n * l.read() * g * d, n * d * g * d, n * g * d, n * g * d]);
    if let Some(c) = &l.comm {
        sizes.extend([n * d * c.qkv(), c.reads() * 2 * d, 2 * d]);
    }
    sizes
}

/// Offsets of every layer's parameters and the total length.
pub(crate) fn param_layout(dims: &StackDims) -> (Vec<LayerParams>, usize) {
    let mut at = 0;
    let mut layers = Vec::with_capacity(dims.layers.len());
    for l in &dims.layers {
        let sizes = layer_param_sizes(l);
        let mut offsets = sizes.iter().scan(at, |acc, &s| {
            let o = *acc;
            *acc += s;
            Some(o)
        });
        let mut next = || offsets.next().unwrap_or(usize::MAX);
        let (query, slot_kv) = if l.bypass {
            (usize::MAX, Vec::new())
        } else {
            (next(), l.slots.iter().map(|_| next()).collect())
        };
        let (w_ih, w_hh, b_ih, b_hh) = (next(), next(), next(), next());
        let (comm_qkv, comm_out, comm_bias) = (next(), next(), next());
        layers.push(LayerParams {
            query,
            slot_kv,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            comm_qkv,
            comm_out,
            comm_bias,
        });
        at += sizes.iter().sum::<usize>();
    }
    (layers, at)
}

/// Most batch rows one chunk runs. A chunk's step touches its rows of every tape buffer (RIMs of
/// 4 × 32 with communication: about 18 KiB per row), so 64 rows about fill a core's L2 cache
/// (1 MiB) and 256 rows overflow it: in one chunk, B = 256 took 2.4× the time of B = 128 (RIMs,
/// one thread; BRIMs 2.5–2.8×); in chunks of 64 run one after the other, 1.9–2.05× for both.
/// Gemms with `m` = 64 still run at full speed.
const MAX_CHUNK_ROWS: usize = 64;

/// Rows per chunk: the whole batch on one thread for small runs, else an even split over the
/// rayon pool (each chunk runs the whole sequence), in chunks of at most [`MAX_CHUNK_ROWS`].
pub(crate) fn chunk_rows(dims: &StackDims) -> usize {
    split_rows(dims).min(MAX_CHUNK_ROWS)
}

/// Rows per thread: the whole batch on one thread for small runs, else an even split over the
/// rayon pool.
fn split_rows(dims: &StackDims) -> usize {
    let threads = rayon::current_num_threads();
    let per_row: usize = dims
        .layers
        .iter()
        .map(|l| l.hidden() * (l.read() + l.module) * l.gates())
        .sum();
    let work = dims.batch * dims.steps * per_row;
    if threads < 2 || work < 1 << 21 || dims.batch < 2 {
        dims.batch.max(1)
    } else {
        dims.batch.div_ceil(threads.min(dims.batch))
    }
}

/// The fused stack as a [`HostOp`] with inputs `x [T·B, E]` (rows in [`StackDims::layout`]'s
/// order), the flat initial state `[B, state_width]` and the flat parameters `[1, P]`; output the
/// flat `[1, output_len]` (its `y` rows in the same order).
pub(crate) struct ModularOp {
    /// Sizes.
    pub dims: StackDims,
    /// Time-major `[T·B]` reset flags, if any row resets.
    pub resets: Option<Vec<bool>>,
}

/// What the backward pass keeps: one tape per chunk, and the parameters.
pub(crate) struct Tape {
    dims: StackDims,
    rows: usize,
    params: Vec<f32>,
    chunks: Vec<ChunkTape>,
}

impl Drop for Tape {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.params));
    }
}

impl HostOp<3> for ModularOp {
    type Tape = Tape;

    fn forward(
        &self,
        [x, state, params]: [Vec<f32>; 3],
        keep_tape: bool,
    ) -> (Vec<f32>, Option<Tape>) {
        let d = &self.dims;
        let (tn, b, e, sw, top) = (d.steps, d.batch, d.input, d.state_width(), d.output());
        assert_eq!(x.len(), tn * b * e, "modular kernel: x");
        assert_eq!(state.len(), b * sw, "modular kernel: state");
        assert_eq!(
            params.len(),
            param_layout(d).1,
            "modular kernel: parameters"
        );
        let rows = chunk_rows(d);
        let starts = chunk_starts(b, rows);
        let chunks = map_chunks(&starts, |r0| {
            let bc = rows.min(b - r0);
            forward::run_chunk(d, r0, bc, &x, &state, &params, self.resets.as_deref())
        });
        // Not pooled: it becomes the output tensor.
        let mut z = vec![0.0; d.output_len()];
        let (y, last) = z.split_at_mut(tn * b * top);
        for (c, &r0) in chunks.iter().zip(&starts) {
            c.write_output(d, r0, y, last);
        }
        let tape = finish_inputs(keep_tape, [x, state, params], |params| Tape {
            dims: d.clone(),
            rows,
            params,
            chunks,
        });
        (z, tape)
    }

    fn backward(tape: &Tape, grad: &[f32], wanted: [bool; 3]) -> [Option<Vec<f32>>; 3] {
        let d = &tape.dims;
        let (b, e, sw) = (d.batch, d.input, d.state_width());
        let starts = chunk_starts(b, tape.rows);
        let weights_t = transposed_weights(d, &tape.params);
        let grads = map_chunks(&starts, |r0| {
            let c = &tape.chunks[r0 / tape.rows];
            backward::run_chunk(d, r0, c, &tape.params, &weights_t, grad, wanted)
        });
        give(weights_t);
        assemble_grads(grads, &starts, d.seq(), [e, sw], wanted)
    }
}

/// Gives the input buffers `[x, state, params]` back to the pool, except the parameters when a
/// tape is kept: `tape(params)` builds it.
pub(crate) fn finish_inputs<T>(
    keep_tape: bool,
    [x, state, params]: [Vec<f32>; 3],
    tape: impl FnOnce(Vec<f32>) -> T,
) -> Option<T> {
    give(x);
    give(state);
    if keep_tape {
        Some(tape(params))
    } else {
        give(params);
        None
    }
}

/// One step's active rows of every module, in ascending order (the rows where module `i` is
/// active: the rows its communication query, its `h̃`'s gradient and its cell's products are
/// made for), filled once per step into storage kept from step to step.
#[derive(Default)]
pub(crate) struct StepRows {
    /// Module `i`'s rows at `i·(Bc + 1)..`, `len[i]` of them (one spare slot: the fill stores
    /// every row and advances past the active ones, without a branch).
    rows: Vec<usize>,
    len: Vec<usize>,
}

impl StepRows {
    /// The rows of a step's activity `[Bc·n]` (row-major: row `r`'s modules at `r·n..`).
    pub fn fill(&mut self, active: &[bool], n: usize) {
        let bc = active.len() / n.max(1);
        self.rows.resize(n * (bc + 1), 0);
        self.len.clear();
        for i in 0..n {
            let rows = &mut self.rows[i * (bc + 1)..(i + 1) * (bc + 1)];
            let mut len = 0;
            for r in 0..bc {
                rows[len] = r;
                len += usize::from(active[r * n + i]);
            }
            self.len.push(len);
        }
    }

    /// Module `i`'s active rows.
    pub fn module(&self, i: usize) -> &[usize] {
        let stride = self.rows.len() / self.len.len().max(1);
        &self.rows[i * stride..][..self.len[i]]
    }
}

/// First batch row of each chunk of `rows` rows.
pub(crate) fn chunk_starts(batch: usize, rows: usize) -> Vec<usize> {
    (0..batch).step_by(rows.max(1)).collect()
}

/// `f(first row)` for every chunk, on the rayon pool when there is more than one.
pub(crate) fn map_chunks<T: Send>(starts: &[usize], f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if starts.len() > 1 {
        crate::host_math::on_pool(|| starts.par_iter().map(|&r0| f(r0)).collect())
    } else {
        starts.iter().map(|&r0| f(r0)).collect()
    }
}

/// The full gradients of `x` (`T·B` rows of `seq`, `E` wide), the flat state `[B, sw]` and the
/// parameters (summed over chunks) from the chunks' gradients.
pub(crate) fn assemble_grads(
    grads: Vec<ChunkGrads>,
    starts: &[usize],
    seq: SeqRows,
    [e, sw]: [usize; 2],
    wanted: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let b = seq.batch;
    let mut dx = wanted[0].then(|| take_zeroed(seq.steps * b * e));
    let mut dstate = wanted[1].then(|| take_zeroed(b * sw));
    let mut dparams: Option<Vec<f32>> = None;
    for (g, &r0) in grads.into_iter().zip(starts) {
        let bc = g.rows;
        if let Some(dx) = dx.as_mut() {
            for t in 0..seq.steps {
                seq.scatter_step(&g.x[t * bc * e..(t + 1) * bc * e], e, t, r0, dx);
            }
        }
        if let Some(ds) = dstate.as_mut() {
            ds[r0 * sw..(r0 + bc) * sw].copy_from_slice(&g.state);
        }
        match (&mut dparams, g.params) {
            (None, p) => dparams = p,
            (Some(acc), Some(p)) => {
                acc.iter_mut().zip(&p).for_each(|(a, v)| *a += v);
                give(p);
            }
            _ => {}
        }
        give(g.x);
        give(g.state);
    }
    [dx, dstate, dparams.filter(|_| wanted[2])]
}

//! Backpropagation through time of the fused modular stack for one chunk of batch rows: the
//! per-step gradients run backwards through the tape, the weight gradients are single matmuls
//! over all of the chunk's steps at the end.

use super::forward::{
    at, at_mut, comm_projection, group_matmul, old_state_projection, ChunkTape, LayerTape,
};
use super::{
    comm_heads, param_layout, CommDims, LayerDims, LayerParams, Source, StackDims, StepRows,
};
use crate::host_math::{
    add_term_simd, axpy_simd, dot_simd, give, matmul_view, take_gathered, take_overwritten,
    take_zeroed, transpose_into, weighted_sum_simd, View,
};
use crate::{gru_kernel, lstm_kernel};

/// A chunk's gradients.
pub(crate) struct ChunkGrads {
    /// Rows in the chunk.
    pub rows: usize,
    /// Of the inputs `[T·Bc, E]`.
    pub x: Vec<f32>,
    /// Of the initial state `[Bc, state_width]`.
    pub state: Vec<f32>,
    /// Of the flat parameters, when asked for.
    pub params: Option<Vec<f32>>,
}

/// Where a layer's active (row, module) pairs keep their gradients: module `i`'s own dense
/// buffers hold one row per chunk row `t·Bc + r` where it was active, in that (time-major)
/// order, so the weight gradients read them without a gather and no step zeroes or skips the
/// rows of inactive modules (half of them at top-k 2 of 4).
struct ActiveRows {
    /// Per module, the chunk's rows `t·Bc + r` where it was active, ascending.
    rows: Vec<Vec<usize>>,
    /// `[T·Bc·n]`: each active (row, module)'s place among its module's rows.
    place: Vec<u32>,
    /// `[(T + 1)·n]`: module `i`'s first place at step `t`, at `t·n + i`.
    start: Vec<usize>,
}

impl ActiveRows {
    fn new(active: &[bool], n: usize, bc: usize, steps: usize) -> Self {
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut place = vec![0u32; active.len()];
        let mut start = Vec::with_capacity((steps + 1) * n);
        for t in 0..steps {
            start.extend(rows.iter().map(Vec::len));
            for q in t * bc..(t + 1) * bc {
                for (i, on) in rows.iter_mut().enumerate() {
                    if active[q * n + i] {
                        place[q * n + i] = on.len() as u32;
                        on.push(q);
                    }
                }
            }
        }
        start.extend(rows.iter().map(Vec::len));
        ActiveRows { rows, place, start }
    }

    /// Module `i`'s places at step `t`.
    fn step(&self, i: usize, t: usize) -> std::ops::Range<usize> {
        let n = self.rows.len();
        self.start[t * n + i]..self.start[(t + 1) * n + i]
    }

    /// Whether module `i` was active in every row.
    fn all(&self, i: usize, rows: usize) -> bool {
        self.rows[i].len() == rows
    }

    /// Step `t`'s rows of every module's gradients (`grads[i]`, `[active rows, width]`) times
    /// its block of the transposed weights (`wt`: `n` blocks `[width, cols]`), added to (or
    /// written into) columns `i·cols..` of the step's rows of `dst` `[Bc, n·cols]`.
    #[allow(clippy::too_many_arguments)]
    fn step_products(
        &self,
        t: usize,
        bc: usize,
        grads: &[Vec<f32>],
        width: usize,
        wt: &[f32],
        cols: usize,
        dst: &mut [f32],
        accumulate: bool,
    ) {
        let n = self.rows.len();
        for (i, (src, on)) in grads.iter().zip(&self.rows).enumerate() {
            let places = self.step(i, t);
            let w = View::dense(&wt[i * width * cols..][..width * cols], cols);
            let rows = &on[places.clone()];
            let stride = n * cols;
            scatter_product(
                dst,
                stride,
                i * cols,
                t * bc,
                accumulate,
                src,
                width,
                rows,
                places,
                w,
            );
        }
    }
}

/// One layer's per-step gradients kept for the weight gradients (each `[T·Bc, width]`, or per
/// module over its active rows, see [`ActiveRows`]).
struct LayerGrads {
    /// The active (row, module) pairs and their places.
    on: ActiveRows,
    /// Of the queries, per module `[active rows, qw]` — with folded keys (see
    /// [`StackDims::folds_keys`]), of the module's folded keys `k̂` `[active rows, S·heads·d]`.
    dq: Vec<Vec<f32>>,
    /// Of every slot's keys and values (empty with folded keys).
    dkv: Vec<f32>,
    /// Of the gate pre-activations from the input side (LSTM: of all gates), per module
    /// `[active rows, G·d]`.
    dgi: Vec<Vec<f32>>,
    /// GRU: of the gate pre-activations from the hidden side, likewise.
    dgh: Vec<Vec<f32>>,
    /// The reads `u` of the active modules, rebuilt from the tape's attention and values by
    /// the steps for the cells' input weights' gradient, per module `[active rows, heads·dv]`
    /// (empty when bypassed or pre-gated).
    reads: Vec<Vec<f32>>,
    /// The current step's active rows of every module.
    step_rows: StepRows,
    /// Of the communication projection of `h̃`, for the last `window` steps only (`[window·Bc,
    /// n·qkv]`, step `t` in slot `t % window`): its weight gradient is added a window at a time,
    /// while the rows are in cache.
    dqkv: Vec<f32>,
    /// Of the old-state key source's projection, likewise.
    dkvs: Vec<f32>,
    /// Steps per window: enough for [`WEIGHT_GRAD_ROWS`] rows.
    window: usize,
    /// Of the active modules' communication output projection `[k·2d]`, a window as `dqkv`
    /// (every step writes its slot whole).
    dgo: Vec<f32>,
    /// The active modules' communication reads `[k·heads·dv]`, rebuilt by the steps, a window
    /// as `dgo`: the output projection's weight gradient is added with the projection's.
    reads_comm: Vec<f32>,
}

impl LayerGrads {
    fn new(
        l: &LayerDims,
        active: &[bool],
        bc: usize,
        steps: usize,
        pregated: bool,
        folds: bool,
    ) -> Self {
        let (n, dm, gd) = (l.modules, l.module, l.gates() * l.module);
        let rows = steps * bc;
        let on = ActiveRows::new(active, n, bc, steps);
        // Not zeroed here: [`InputAttentionGrad`] and [`CommAttentionGrad`] clear (or set) each
        // step's rows just before they accumulate into them, while they are in cache (zeroing
        // the whole `[T·Bc, ·]` buffers up front cost a pass over memory: 4–5 % of RIMs'
        // forward+backward). The gate gradients' rows are written whole by the cells' backward.
        let z = |w: usize| take_overwritten(rows * w);
        let per_module = |w: usize| -> Vec<Vec<f32>> {
            on.rows
                .iter()
                .map(|r| take_overwritten(r.len() * w))
                .collect()
        };
        let (cw, comm_reads, comm_out) = l.comm.map_or((0, 0, 0), |c| (c.qkv(), c.reads(), 2 * dm));
        let old = l.comm.is_some_and(|c| c.old_state);
        let window = WEIGHT_GRAD_ROWS.div_ceil(bc.max(1)).clamp(1, steps.max(1));
        LayerGrads {
            dq: per_module(if folds {
                l.folded_keys() / l.modules
            } else if l.bypass {
                0
            } else {
                l.query()
            }),
            dkv: z(if folds { 0 } else { l.slots.len() * l.kv() }),
            dgi: per_module(gd),
            dgh: per_module(if l.lstm { 0 } else { gd }),
            reads: if l.bypass || pregated {
                Vec::new()
            } else {
                per_module(l.read())
            },
            dqkv: take_overwritten(window * bc * n * cw),
            dkvs: take_overwritten(if old { window * bc * n * cw } else { 0 }),
            window,
            dgo: take_overwritten(window * bc * l.active_per_row() * comm_out),
            reads_comm: take_overwritten(window * bc * l.active_per_row() * comm_reads),
            step_rows: StepRows::default(),
            on,
        }
    }
}

impl Drop for LayerGrads {
    fn drop(&mut self) {
        for v in [
            &mut self.dkv,
            &mut self.dqkv,
            &mut self.dkvs,
            &mut self.dgo,
            &mut self.reads_comm,
        ] {
            give(std::mem::take(v));
        }
        for v in self
            .dq
            .drain(..)
            .chain(self.dgi.drain(..))
            .chain(self.dgh.drain(..))
            .chain(self.reads.drain(..))
        {
            give(v);
        }
    }
}

/// Rows per matmul of the communication projection's weight gradient (a window of steps): at
/// B = 64 a step per matmul, in cache; at the presets' B = 4 a matmul per step would cost more
/// in calls than it saves.
const WEIGHT_GRAD_ROWS: usize = 64;

/// Backpropagates the chunk starting at batch row `r0`; `dz` is the gradient of the full flat
/// output; `wanted` says which of the inputs' gradients (`x`, the initial state, the
/// parameters) are asked for.
pub(crate) fn run_chunk(
    d: &StackDims,
    r0: usize,
    tape: &ChunkTape,
    params: &[f32],
    weights_t: &[f32],
    dz: &[f32],
    wanted: [bool; 3],
) -> ChunkGrads {
    let (tn, b, top) = (d.steps, d.batch, d.output());
    let (dy, dlast) = dz.split_at(tn * b * top);
    let mut run = StackBackward::new(d, r0, tape, params, weights_t, dlast, wanted);
    let mut scratch = take_overwritten(tape.rows * top);
    for t in (0..tn).rev() {
        run.add_output_grad(d.seq().step_block(dy, top, t, r0, tape.rows, &mut scratch));
        run.run_step(t);
        run.end_step(t);
    }
    give(scratch);
    run.finish()
}

/// The backward pass of one chunk, step by step (in reverse): [`StackBackward::run_step`] runs
/// the layers' backward of step `t`, after which a wrapper may read and add to the gradient of
/// the top layer's state at `t − 1` ([`StackBackward::top_prev_grad`]) before
/// [`StackBackward::end_step`] applies the resets and moves to `t − 1`.
pub(crate) struct StackBackward<'a> {
    d: &'a StackDims,
    tape: &'a ChunkTape,
    params: &'a [f32],
    /// The weights transposed (see [`transposed_weights`]).
    weights_t: &'a [f32],
    offsets: Vec<LayerParams>,
    ppl: usize,
    /// Gradients reaching each layer's output and cell state at the current step.
    dh: Vec<Vec<f32>>,
    dc: Vec<Vec<f32>>,
    /// Gradients of each layer's state at the step before (being accumulated).
    dhp: Vec<Vec<f32>>,
    dcp: Vec<Vec<f32>>,
    grads: Vec<LayerGrads>,
    /// The chunk's parameter gradients (flat, as the parameters), when asked for: the
    /// communication projection's are added a window of steps at a time, the rest at
    /// [`StackBackward::finish`].
    dparams: Option<Vec<f32>>,
    /// Whether the input's gradient is asked for (else [`StackBackward::finish`] skips its
    /// products: a sequence's inputs that need no gradient cost none).
    want_x: bool,
}

impl<'a> StackBackward<'a> {
    /// Starts from the gradient of the final state (`dlast`: the full flat `[B, ·]` buffer whose
    /// first `state_width` columns are the stack's state); `weights_t` is
    /// [`transposed_weights`]`(d, params)`, made once for all chunks; `wanted`: the gradients
    /// of `x`, the initial state and the parameters asked for.
    pub fn new(
        d: &'a StackDims,
        r0: usize,
        tape: &'a ChunkTape,
        params: &'a [f32],
        weights_t: &'a [f32],
        dlast: &[f32],
        [want_x, _, want_params]: [bool; 3],
    ) -> Self {
        let bc = tape.rows;
        let row_width = dlast.len() / d.batch.max(1);
        let ppl = if d.layers[0].lstm { 2 } else { 1 };
        let (offsets, _) = param_layout(d);
        let mut dh = Vec::new();
        let mut dc = Vec::new();
        let mut col = 0;
        for l in &d.layers {
            let nd = l.hidden();
            let mut h = take_zeroed(bc * nd);
            let mut c = take_zeroed(if ppl == 2 { bc * nd } else { 0 });
            for r in 0..bc {
                let src = (r0 + r) * row_width + col;
                h[r * nd..(r + 1) * nd].copy_from_slice(&dlast[src..src + nd]);
                if ppl == 2 {
                    c[r * nd..(r + 1) * nd].copy_from_slice(&dlast[src + nd..src + 2 * nd]);
                }
            }
            dh.push(h);
            dc.push(c);
            col += ppl * nd;
        }
        let grads = d
            .layers
            .iter()
            .zip(&tape.layers)
            .enumerate()
            .map(|(li, (l, lt))| {
                let pregated = d.gates_pregated(li, d.steps * bc);
                let folds = !lt.folded.is_empty();
                LayerGrads::new(l, &lt.active, bc, d.steps, pregated, folds)
            })
            .collect();
        StackBackward {
            d,
            tape,
            params,
            weights_t,
            offsets,
            ppl,
            dh,
            dc,
            dhp: Vec::new(),
            dcp: Vec::new(),
            grads,
            dparams: want_params.then(|| take_zeroed(param_layout(d).1)),
            want_x,
        }
    }

    /// Adds `dy [Bc, H]` to the gradient of the top layer's output at the current step.
    pub fn add_output_grad(&mut self, dy: &[f32]) {
        let top = self.dh.len() - 1;
        self.dh[top].iter_mut().zip(dy).for_each(|(a, v)| *a += v);
    }

    /// Runs every layer's backward of step `t`, top layer first.
    pub fn run_step(&mut self, t: usize) {
        let (d, bc, ppl) = (self.d, self.tape.rows, self.ppl);
        let n_layers = d.layers.len();
        self.dhp = d
            .layers
            .iter()
            .map(|l| take_zeroed(bc * l.hidden()))
            .collect();
        self.dcp = d
            .layers
            .iter()
            .map(|l| take_zeroed(if ppl == 2 { bc * l.hidden() } else { 0 }))
            .collect();
        for li in (0..n_layers).rev() {
            let (dh_below, dh_rest) = self.dh.split_at_mut(li);
            let (dhp_lo, dhp_rest) = self.dhp.split_at_mut(li + 1);
            let step = StepGrads {
                dh: &dh_rest[0],
                dc: &self.dc[li],
                dhp: &mut dhp_lo[li],
                dcp: &mut self.dcp[li],
                dbelow: dh_below.last_mut().map(|v| &mut v[..]),
                below_active: (li > 0 && !d.pass_inactive).then(|| {
                    let nb = d.layers[li - 1].modules;
                    (
                        &self.tape.layers[li - 1].active[t * bc * nb..(t + 1) * bc * nb],
                        nb,
                    )
                }),
                dabove: dhp_rest.first_mut().map(|v| &mut v[..]),
            };
            // Compiled for the baseline target, as the forward step (see there).
            layer_back(
                &d.layers[li],
                &self.offsets[li],
                self.params,
                self.weights_t,
                &self.tape.layers[li],
                &mut self.grads[li],
                step_blocks(d, self.tape, li, t),
                t,
                bc,
                step,
                self.dparams.as_deref_mut(),
            );
        }
    }

    /// The gradient of the top layer's state at `t − 1` (the `h` step `t` started from),
    /// between `run_step(t)` and `end_step(t)`.
    pub fn top_prev_grad(&mut self) -> &mut [f32] {
        let top = self.dhp.len() - 1;
        &mut self.dhp[top]
    }

    /// Applies step `t`'s resets (no gradient reaches a state that was zeroed) and moves to
    /// step `t − 1`.
    pub fn end_step(&mut self, t: usize) {
        let bc = self.tape.rows;
        if let Some(resets) = &self.tape.resets {
            for (row, _) in resets[t * bc..(t + 1) * bc]
                .iter()
                .enumerate()
                .filter(|p| *p.1)
            {
                for (li, l) in self.d.layers.iter().enumerate() {
                    let nd = l.hidden();
                    self.dhp[li][row * nd..(row + 1) * nd].fill(0.0);
                    if self.ppl == 2 {
                        self.dcp[li][row * nd..(row + 1) * nd].fill(0.0);
                    }
                }
            }
        }
        let dhp = std::mem::take(&mut self.dhp);
        let dcp = std::mem::take(&mut self.dcp);
        for v in std::mem::replace(&mut self.dh, dhp)
            .into_iter()
            .chain(std::mem::replace(&mut self.dc, dcp))
        {
            give(v);
        }
    }

    /// The gradients of the inputs (empty when not asked for) and the initial state, and of the
    /// parameters when asked.
    pub fn finish(mut self) -> ChunkGrads {
        let (d, tape, ppl) = (self.d, self.tape, self.ppl);
        let (e, sw, bc) = (d.input, d.state_width(), tape.rows);
        let rows = d.steps * bc;
        let mut dstate = take_zeroed(bc * sw);
        let mut col = 0;
        for (li, l) in d.layers.iter().enumerate() {
            let nd = l.hidden();
            for r in 0..bc {
                dstate[r * sw + col..r * sw + col + nd]
                    .copy_from_slice(&self.dh[li][r * nd..(r + 1) * nd]);
                if ppl == 2 {
                    dstate[r * sw + col + nd..r * sw + col + 2 * nd]
                        .copy_from_slice(&self.dc[li][r * nd..(r + 1) * nd]);
                }
            }
            col += ppl * nd;
        }
        let l0 = &d.layers[0];
        let kvw = l0.kv();
        // The input's gradient, when asked for: through every layer-0 slot that reads it (and,
        // precomposed, through the pre-gated blocks), or straight into every module's cell when
        // bypassed.
        let want_x = self.want_x;
        let mut dx = if want_x {
            take_zeroed(rows * e)
        } else {
            Vec::new()
        };
        if !l0.bypass && d.pregate_width() > 0 {
            pregated_value_grads(
                d,
                0,
                &self.offsets[0],
                self.params,
                tape,
                &mut self.grads[0],
                self.dparams.as_deref_mut(),
                want_x.then_some(&mut dx),
            );
        }
        // The layers pre-gated step by step sent their sources' gradients at each step.
        for li in (1..d.layers.len()).filter(|&li| !tape.layers[li].precomposed.is_empty()) {
            pregated_value_grads(
                d,
                li,
                &self.offsets[li],
                self.params,
                tape,
                &mut self.grads[li],
                self.dparams.as_deref_mut(),
                None,
            );
        }
        if l0.bypass && want_x {
            let gd = l0.gates() * l0.module;
            let g0 = &self.grads[0];
            for (i, (src, on)) in g0.dgi.iter().zip(&g0.on.rows).enumerate() {
                let w_ih = &self.params[self.offsets[0].w_ih + i * e * gd..][..e * gd];
                let w = View::dense(w_ih, gd).t();
                scatter_product(&mut dx, e, 0, 0, true, src, gd, on, 0..on.len(), w);
            }
        }
        for (j, slot) in l0.slots.iter().enumerate().filter(|_| want_x && !l0.bypass) {
            let mut row = 0;
            for &(src, w) in &slot.parts {
                let cols = kv_columns(l0, &tape.layers[0]);
                if src == Source::Input && cols > 0 {
                    let wkv = &self.params[self.offsets[0].slot_kv[j] + row * kvw..][..w * kvw];
                    matmul_view(
                        &mut dx,
                        0,
                        e,
                        true,
                        View::cols(&self.grads[0].dkv, l0.slots.len() * kvw, j * kvw, cols),
                        View::cols(wkv, kvw, 0, cols).t(),
                    );
                }
                row += w;
            }
        }
        let dparams = self.dparams.take().map(|mut g| {
            for li in 0..d.layers.len() {
                weight_grads(d, li, &self.offsets[li], tape, &self.grads[li], &mut g);
            }
            g
        });
        for v in self.dh.iter_mut().chain(self.dc.iter_mut()) {
            give(std::mem::take(v));
        }
        ChunkGrads {
            rows: bc,
            x: dx,
            state: dstate,
            params: dparams,
        }
    }
}

/// Layer `li`'s pre-gated blocks at step `t`: a precomposed layer 0's kept blocks of the active
/// modules ([`LayerTape::xg_kept`]), layer 0's part of the chunk's pre-gated input, or a layer's
/// own blocks when it is pre-gated step by step; `None` otherwise.
fn step_blocks<'a>(d: &StackDims, tape: &'a ChunkTape, li: usize, t: usize) -> Option<&'a [f32]> {
    let lt = &tape.layers[li];
    let l = &d.layers[li];
    if !lt.xg_kept.is_empty() {
        let kept = if lt.compact {
            l.active_per_row()
        } else {
            l.modules
        };
        Some(at(&lt.xg_kept, t, tape.rows, kept * l.blocks() / l.modules))
    } else if li == 0 && !tape.xg.is_empty() {
        Some(at(&tape.xg, t, tape.rows, d.pregate_width()))
    } else if !lt.xg.is_empty() {
        Some(at(&lt.xg, t, tape.rows, d.layers[li].blocks()))
    } else {
        None
    }
}

/// The gradient buffers of one layer's backward step.
struct StepGrads<'a> {
    /// Reaching the layer's output `h_t` and cell state `c_t` `[Bc, n·d]`.
    dh: &'a [f32],
    dc: &'a [f32],
    /// Of its state at `t − 1` (accumulated).
    dhp: &'a mut [f32],
    dcp: &'a mut [f32],
    /// Of the layer below's output at `t` (accumulated), if any.
    dbelow: Option<&'a mut [f32]>,
    /// The layer below's active modules at step `t` `[Bc·n_below]` and `n_below`, when its
    /// inactive modules are masked out of what this layer reads.
    below_active: Option<(&'a [bool], usize)>,
    /// Of the layer above's state at `t − 1` (accumulated), if any.
    dabove: Option<&'a mut [f32]>,
}

/// One layer's backward step `t`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn layer_back(
    l: &LayerDims,
    o: &LayerParams,
    params: &[f32],
    wt: &[f32],
    tape: &LayerTape,
    grads: &mut LayerGrads,
    xg: Option<&[f32]>,
    t: usize,
    bc: usize,
    sg: StepGrads,
    dparams: Option<&mut [f32]>,
) {
    let (n, dm, nd, gd) = (l.modules, l.module, l.hidden(), l.gates() * l.module);
    let (kvw, qw, aw) = (l.kv(), l.query(), l.read());
    let s = l.slots.len();
    let active = &tape.active[t * bc * n..(t + 1) * bc * n];
    let hp = at(&tape.hp, t, bc, nd);
    let StepGrads {
        dh,
        dc,
        dhp,
        dcp,
        dbelow,
        below_active,
        dabove,
    } = sg;
    // Inactive modules pass their gradients straight to t − 1; active ones reach h̃ (and c̃).
    let mut dhn = take_zeroed(bc * nd);
    for r in 0..bc {
        for i in 0..n {
            let span = r * nd + i * dm..r * nd + (i + 1) * dm;
            if active[r * n + i] {
                dhn[span.clone()].copy_from_slice(&dh[span]);
            } else {
                dhp[span.clone()]
                    .iter_mut()
                    .zip(&dh[span.clone()])
                    .for_each(|(a, v)| *a += v);
                if l.lstm {
                    dcp[span.clone()]
                        .iter_mut()
                        .zip(&dc[span])
                        .for_each(|(a, v)| *a += v);
                }
            }
        }
    }
    // Communication: Δ = σ(gate)·tanh(fc) of the attention read; h̃ feeds it with its gradient
    // blocked for inactive modules.
    if let Some(c) = l.comm {
        let (ch, cw) = (c.heads, c.qkv());
        let (ow, ka) = (c.reads(), l.active_per_row());
        // Row `a` of `sg`, `tf`, `o`, `dgo` and `dob` is the `a`-th active (row, module).
        pulp::Arch::new().dispatch(CommUpdateGrad {
            sg: at(&tape.sg, t, bc, ka * dm),
            tf: at(&tape.tf, t, bc, ka * dm),
            dh: &dhn,
            active,
            module: dm,
            dgo: at_mut(&mut grads.dgo, t % grads.window, bc, ka * 2 * dm),
        });
        let mut dob = take_overwritten(bc * ka * ow);
        matmul_view(
            &mut dob,
            0,
            ow,
            false,
            View::dense(at(&grads.dgo, t % grads.window, bc, ka * 2 * dm), 2 * dm),
            View::dense(&wt[o.comm_out..o.comm_out + ow * 2 * dm], ow),
        );
        // The step's queries, keys and values, recomputed (the forward keeps only `h̃`).
        let mut qkv_buf = take_overwritten(bc * n * cw);
        grads.step_rows.fill(active, n);
        let on = &grads.step_rows;
        comm_projection(l, o, params, at(&tape.hn, t, bc, nd), on, &mut qkv_buf);
        let mut kvs_buf = take_overwritten(if c.old_state { bc * n * cw } else { 0 });
        if c.old_state {
            old_state_projection(l, o, params, at(&tape.src, t, bc, nd), &mut kvs_buf);
        }
        let qkv = &qkv_buf[..];
        let keys = if c.old_state { &kvs_buf[..] } else { qkv };
        // Queries' gradients go to dqkv; keys' and values' to dkvs (old state) or dqkv.
        let slot = t % grads.window;
        let (dq, dk): (&mut [f32], Option<&mut [f32]>) = if c.old_state {
            (
                at_mut(&mut grads.dqkv, slot, bc, n * cw),
                Some(at_mut(&mut grads.dkvs, slot, bc, n * cw)),
            )
        } else {
            (at_mut(&mut grads.dqkv, slot, bc, n * cw), None)
        };
        pulp::Arch::new().dispatch(CommAttentionGrad {
            c,
            n,
            active,
            att: at(&tape.att, t, bc, ka * ch * n),
            dreads: &dob,
            qkv,
            keys,
            reads: at_mut(&mut grads.reads_comm, slot, bc, ka * ow),
            dq,
            dk,
        });
        give(dob);
        give(qkv_buf);
        give(kvs_buf);
        // Back through the projection into h̃, whose gradient is blocked for inactive modules:
        // per module, only its active rows are multiplied.
        let wc_t = &wt[o.comm_qkv..];
        let dqkv = at(&grads.dqkv, t % grads.window, bc, n * cw);
        for i in 0..n {
            let w = View::dense(&wc_t[i * dm * cw..(i + 1) * dm * cw], dm);
            active_rows_product(dqkv, n, i, cw, on.module(i), w, dm, |r, row| {
                axpy(&mut dhn[r * nd + i * dm..][..dm], 1.0, row)
            });
        }
        if c.old_state {
            // The old-state keys' source: h̃ for active modules, h_{t−1} for inactive ones.
            let mut dsrc = take_zeroed(bc * nd);
            let dkvs = at(&grads.dkvs, t % grads.window, bc, n * cw);
            group_matmul(&mut dsrc, false, dkvs, wc_t, n, cw, dm, false);
            for r in 0..bc {
                for i in 0..n {
                    let span = r * nd + i * dm..r * nd + (i + 1) * dm;
                    let dst = if active[r * n + i] {
                        &mut dhn[span.clone()]
                    } else {
                        &mut dhp[span.clone()]
                    };
                    dst.iter_mut().zip(&dsrc[span]).for_each(|(a, v)| *a += v);
                }
            }
            give(dsrc);
        }
        if t % grads.window == 0 {
            if let Some(g) = dparams {
                let steps = grads.window.min(tape.hn.len() / (bc * nd).max(1) - t);
                comm_weight_grads(l, o, tape, grads, t, steps, bc, g);
            }
        }
    }
    // The cells (active modules only; inactive ones got no gradient).
    {
        let kept = if tape.compact { l.active_per_row() } else { n };
        let acts = at(&tape.acts, t, bc, kept * gd);
        let aux = at(&tape.aux, t, bc, kept * dm);
        let places = &grads.on.place[t * bc * n..(t + 1) * bc * n];
        let cp = if l.lstm {
            at(&tape.cp, t, bc, kept * dm)
        } else {
            &[][..]
        };
        pulp::Arch::new().dispatch(CellBackward {
            n,
            dm,
            gd,
            compact: tape.compact,
            lstm: l.lstm,
            active,
            places,
            acts,
            aux,
            cp,
            hp,
            dhn: &dhn,
            dc,
            dgi: &mut grads.dgi,
            dgh: &mut grads.dgh,
            dhp: &mut *dhp,
            dcp: &mut *dcp,
        });
    }
    give(dhn);
    let dgh = if l.lstm { &grads.dgi } else { &grads.dgh };
    grads
        .on
        .step_products(t, bc, dgh, gd, &wt[o.w_hh..], dm, dhp, true);
    // Input attention over [null, slots] (a bypassed layer's reads are the input itself: their
    // gradient is one matmul over all steps at the end).
    if l.bypass {
        return;
    }
    // The reads' gradient — unless pre-gated: then the attention's gradient comes from the
    // pre-gated blocks and the values' from one matmul per block at the end.
    // (Rows of inactive modules are never read: their reads got no gradient.)
    let mut du = take_overwritten(if xg.is_some() { 0 } else { bc * n * aw });
    if xg.is_none() {
        grads
            .on
            .step_products(t, bc, &grads.dgi, gd, &wt[o.w_ih..], aw, &mut du, false);
    }
    let q_rows = if tape.compact { l.active_per_row() } else { n };
    let folds = !tape.folded.is_empty();
    // With folded keys there are no keys, values or queries on the tape.
    let (kv_row, q_row) = if folds {
        (0, 0)
    } else {
        (s * kvw, q_rows * qw)
    };
    let khat_row = if folds {
        q_rows * l.folded_keys() / n
    } else {
        0
    };
    pulp::Arch::new().dispatch(InputAttentionGrad {
        l,
        active,
        kv: at(&tape.kv, t, bc, kv_row),
        q: at(&tape.q, t, bc, q_row),
        khat: at(&tape.khat, t, bc, khat_row),
        kept_blocks: !tape.xg_kept.is_empty(),
        hp,
        dhp: &mut *dhp,
        compact: tape.compact,
        p: at(&tape.p, t, bc, l.attention()),
        places: &grads.on.place[t * bc * n..(t + 1) * bc * n],
        xg,
        dgi: &grads.dgi,
        du: &du,
        reads: &mut grads.reads,
        dq: &mut grads.dq,
        dkv: at_mut(&mut grads.dkv, t, bc, kv_row),
    });
    give(du);
    if !folds {
        grads
            .on
            .step_products(t, bc, &grads.dq, qw, &wt[o.query..], dm, dhp, true);
    }
    // The slots' sources (the input's part is one matmul over all steps at the end): through
    // the keys and values, or, pre-gated step by step, the keys and the precomposed weights.
    let dkv = at(&grads.dkv, t, bc, kv_row);
    let cols = kv_columns(l, tape);
    let (mut dbelow, mut dabove) = (dbelow, dabove);
    for (j, slot) in l.slots.iter().enumerate() {
        let mut row = 0;
        for &(src, w) in &slot.parts {
            // The part's rows of the slot's `[w_j, kvw]` projection (its first `cols` columns):
            // columns of its transpose.
            let wkv_t = View::cols(
                &wt[o.slot_kv[j]..][..slot.width() * cols],
                slot.width(),
                row,
                w,
            );
            row += w;
            let dst: &mut [f32] = match src {
                Source::Input => continue,
                Source::Below => dbelow.as_deref_mut().expect("a layer below"),
                Source::Above => dabove.as_deref_mut().expect("a layer above"),
            };
            let mut g = take_zeroed(bc * w);
            matmul_view(
                &mut g,
                0,
                w,
                false,
                View::cols(dkv, s * kvw, j * kvw, cols),
                wkv_t,
            );
            if !tape.precomposed.is_empty() {
                precomposed_source_grad(l, tape, grads, j, t, bc, &mut g);
            }
            match (src, below_active) {
                (Source::Below, Some((act, nb))) => {
                    // Inactive modules of the layer below were zeroed on the way up.
                    let per = w / nb;
                    for r in 0..bc {
                        for m in 0..nb {
                            if act[r * nb + m] {
                                let span = r * w + m * per..r * w + (m + 1) * per;
                                dst[span.clone()]
                                    .iter_mut()
                                    .zip(&g[span])
                                    .for_each(|(a, v)| *a += v);
                            }
                        }
                    }
                }
                _ => dst.iter_mut().zip(&g).for_each(|(a, v)| *a += v),
            }
            give(g);
        }
    }
}

/// A layer pre-gated step by step: what its slot `j`'s blocks `s_t M` send their source at step
/// `t`, `Σ_{h,i} (p_hij ⊙ dgi_i) M_hjiᵀ` over each module's active rows, added to `g` `[Bc, w]`.
fn precomposed_source_grad(
    l: &LayerDims,
    tape: &LayerTape,
    grads: &LayerGrads,
    j: usize,
    t: usize,
    bc: usize,
    g: &mut [f32],
) {
    let (n, gd, s, heads) = (l.modules, l.gates() * l.module, l.slots.len(), l.heads);
    let (pa, pw, w) = (l.attention(), l.blocks(), l.slots[j].width());
    for (i, dgi_i) in grads.dgi.iter().enumerate() {
        let places = grads.on.step(i, t);
        let rows = &grads.on.rows[i][places.clone()];
        let mut scaled = take_overwritten(rows.len() * gd);
        for h in 0..heads {
            let at_p = (h * n + i) * (1 + s) + 1 + j;
            weigh_gate_grads(
                &mut scaled,
                dgi_i,
                gd,
                places.clone(),
                rows,
                &tape.p,
                pa,
                at_p,
            );
            let block = l.block(i, j, h);
            let m = View::cols(&tape.precomposed, pw, block, gd);
            scatter_product(
                g,
                w,
                0,
                t * bc,
                true,
                &scaled,
                gd,
                rows,
                0..rows.len(),
                m.t(),
            );
        }
        give(scaled);
    }
}

/// The cells' backward of one step on its rows, for the active modules only (inactive ones got
/// no gradient): the gate pre-activations' gradients (`dgi`; GRU: also `dgh`) and what reaches
/// the state before (`dcp`; GRU: `dhp`). A [`pulp::WithSimd`], so that its loops over a module's
/// `d` units are compiled for the CPU's vector width.
struct CellBackward<'a> {
    n: usize,
    dm: usize,
    /// Gates per module `G·d`.
    gd: usize,
    /// Whether `acts` and `aux` hold the active modules' rows only ([`LayerTape::compact`]).
    compact: bool,
    lstm: bool,
    /// `[Bc·n]`.
    active: &'a [bool],
    /// `[Bc·n]`: each active (row, module)'s place among its module's rows.
    places: &'a [u32],
    /// Tape: activated gates `[Bc, n·G·d]`, `tanh(c_t)` (GRU: `h W_hn + b_hn`) and `c_{t−1}`
    /// (GRU: empty) `[Bc, n·d]` (compact: `[Bc·k, G·d]`, `[Bc·k, d]`, `[Bc·k, d]`), `h_{t−1}`
    /// `[Bc, n·d]`.
    acts: &'a [f32],
    aux: &'a [f32],
    cp: &'a [f32],
    hp: &'a [f32],
    /// Gradients reaching `h̃` and `c_t`.
    dhn: &'a [f32],
    dc: &'a [f32],
    /// Per module `[active rows, G·d]` (GRU: `dgh` likewise; LSTM: empty).
    dgi: &'a mut [Vec<f32>],
    dgh: &'a mut [Vec<f32>],
    dhp: &'a mut [f32],
    dcp: &'a mut [f32],
}

impl pulp::WithSimd for CellBackward<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (n, dm, gd) = (self.n, self.dm, self.gd);
        let (acts, aux, cp, hp, dhn, dc) =
            (self.acts, self.aux, self.cp, self.hp, self.dhn, self.dc);
        let (dgi, dgh, dhp, dcp) = (self.dgi, self.dgh, self.dhp, self.dcp);
        let nd = n * dm;
        let on = self.active.iter().enumerate().filter(|p| *p.1);
        for (nth, (ri, _)) in on.enumerate() {
            let (r, i) = (ri / n, ri % n);
            // The pair's row of the gates' and `aux`'s tape.
            let kept = if self.compact { nth } else { ri };
            let a = &acts[kept * gd..][..gd];
            let at = r * nd + i * dm..r * nd + (i + 1) * dm;
            let aux = &aux[kept * dm..(kept + 1) * dm];
            let cp = if cp.is_empty() {
                cp
            } else {
                &cp[kept * dm..(kept + 1) * dm]
            };
            let place = self.places[ri] as usize * gd..(self.places[ri] as usize + 1) * gd;
            let gi = &mut dgi[i][place.clone()];
            if self.lstm {
                lstm_cell_grads(
                    a,
                    [&dhn[at.clone()], &dc[at.clone()]],
                    [aux, cp],
                    gi,
                    &mut dcp[at],
                );
            } else {
                gru_cell_grads(
                    a,
                    &dhn[at.clone()],
                    [aux, &hp[at.clone()]],
                    [gi, &mut dgh[i][place]],
                    &mut dhp[at],
                );
            }
        }
    }
}

/// One (row, module)'s LSTM gate gradients `dgi = [di, df, dg, do]` from its activated gates
/// `a = [i, f, g, o]`, the gradients `[dh̃, dc_t]` and the tape's `[tanh(c_t), c_{t−1}]`; adds
/// `dc_t·f` to `dcp`. A function of its own, so that its slices are known not to overlap and the
/// loop vectorises (inline, indexing the step's buffers, it ran scalar).
#[inline(always)]
fn lstm_cell_grads(
    a: &[f32],
    [dh, dc]: [&[f32]; 2],
    [tanh_c, cp]: [&[f32]; 2],
    dgi: &mut [f32],
    dcp: &mut [f32],
) {
    let d = dcp.len();
    let (ig, rest) = a.split_at(d);
    let (fg, rest) = rest.split_at(d);
    let (gg, og) = rest.split_at(d);
    let (di, rest) = dgi.split_at_mut(d);
    let (df, rest) = rest.split_at_mut(d);
    let (dg, d_o) = rest.split_at_mut(d);
    let (og, d_o) = (&og[..d], &mut d_o[..d]);
    let (dh, dc, tanh_c, cp) = (&dh[..d], &dc[..d], &tanh_c[..d], &cp[..d]);
    for k in 0..d {
        let gates = [ig[k], fg[k], gg[k], og[k]];
        let [gi, gf, gc, go, dc_prev] =
            lstm_kernel::unit_grads([dh[k], dc[k]], gates, [tanh_c[k], cp[k]]);
        (di[k], df[k], dg[k], d_o[k]) = (gi, gf, gc, go);
        dcp[k] += dc_prev;
    }
}

/// One (row, module)'s GRU pre-activation gradients (`dgi = [dr, dz, dn]`, `dgh` the same with
/// `r ⊙` on `n`) from its activated gates `a = [r, z, n]`, the gradient `dh̃` and the tape's
/// `[h W_hn + b_hn, h_{t−1}]`; adds the direct part `dh̃·z` to `dhp`. A function of its own for
/// the reason of [`lstm_cell_grads`].
#[inline(always)]
fn gru_cell_grads(
    a: &[f32],
    dh: &[f32],
    [gh_n, hp]: [&[f32]; 2],
    [dgi, dgh]: [&mut [f32]; 2],
    dhp: &mut [f32],
) {
    let d = dhp.len();
    let (rg, rest) = a.split_at(d);
    let (zg, ng) = rest.split_at(d);
    let ng = &ng[..d];
    let (gi_r, rest) = dgi.split_at_mut(d);
    let (gi_z, gi_n) = rest.split_at_mut(d);
    let (gh_r, rest) = dgh.split_at_mut(d);
    let (gh_z, gh_nn) = rest.split_at_mut(d);
    let (gi_n, gh_nn) = (&mut gi_n[..d], &mut gh_nn[..d]);
    let (dh, gh_n, hp) = (&dh[..d], &gh_n[..d], &hp[..d]);
    for k in 0..d {
        let [drp, dzp, dnp, direct] =
            gru_kernel::unit_grads(dh[k], [rg[k], zg[k], ng[k]], hp[k], gh_n[k]);
        dhp[k] += direct;
        gi_r[k] = drp;
        gi_z[k] = dzp;
        gi_n[k] = dnp;
        gh_r[k] = drp;
        gh_z[k] = dzp;
        gh_nn[k] = dnp * rg[k];
    }
}

/// The weights a backward step multiplies by their transpose, transposed at the same offsets as
/// in `params` (biases left out), once per backward for all its chunks: gemm packs a transposed
/// operand from strided reads at every call, which made these products (`[Bc, G·d]·W_ihᵀ`, …)
/// cost twice the forward's. Left out (and unwritten) too: what no step multiplies back, the
/// projection of a slot that reads the input alone and the cells' input weights of a bypassed or
/// pre-gated layer 0 (the input's gradient and those weights' come from `params` at the end).
/// (Pooled: give it back.)
pub(crate) fn transposed_weights(d: &StackDims, params: &[f32]) -> Vec<f32> {
    let (offsets, _) = param_layout(d);
    let mut wt = take_overwritten(params.len());
    // `n` blocks `[rows, cols]` from `at`, each written as `[cols, rows]`.
    let mut blocks = |at: usize, n: usize, rows: usize, cols: usize| {
        for i in 0..n {
            let from = at + i * rows * cols;
            transpose_into(&mut wt[from..], &params[from..], rows, cols);
        }
    };
    for (li, (l, o)) in d.layers.iter().zip(&offsets).enumerate() {
        let (n, dm, gd) = (l.modules, l.module, l.gates() * l.module);
        if !l.bypass {
            blocks(o.query, n, dm, l.query());
            for (j, slot) in l.slots.iter().enumerate() {
                if slot.parts.iter().any(|&(src, _)| src != Source::Input) {
                    blocks(o.slot_kv[j], 1, slot.width(), l.kv());
                }
            }
        }
        if !(l.bypass || d.pregated(li)) {
            blocks(o.w_ih, n, l.read(), gd);
        }
        blocks(o.w_hh, n, dm, gd);
        if let Some(c) = l.comm {
            blocks(o.comm_qkv, n, dm, c.qkv());
            blocks(o.comm_out, 1, c.reads(), 2 * dm);
        }
    }
    wt
}

/// Adds the communication projections' weight gradients of steps `t0..t0 + steps` (a window,
/// its gradients in slots `0..steps` of `dqkv`/`dkvs`/`dgo`) to `g`: keys and values from
/// every row's `h̃` (or, with old-state keys, from `src`), queries from the active rows' `h̃`;
/// the output projection and its bias from the active modules' rebuilt reads.
#[allow(clippy::too_many_arguments)]
fn comm_weight_grads(
    l: &LayerDims,
    o: &LayerParams,
    tape: &LayerTape,
    grads: &LayerGrads,
    t0: usize,
    steps: usize,
    bc: usize,
    g: &mut [f32],
) {
    let Some(c) = l.comm else { return };
    let (n, dm, nd) = (l.modules, l.module, l.hidden());
    let (cw, cq) = (c.qkv(), c.heads * c.key);
    let rows = steps * bc;
    // The window's rows of the time-major tape.
    let hn = &tape.hn[t0 * bc * nd..][..rows * nd];
    let active = &tape.active[t0 * bc * n..][..rows * n];
    let dqkv = &grads.dqkv[..rows * n * cw];
    for i in 0..n {
        let gi = o.comm_qkv + i * dm * cw;
        if c.old_state {
            let src = &tape.src[t0 * bc * nd..][..rows * nd];
            let dkvs = View::cols(&grads.dkvs[..rows * n * cw], n * cw, i * cw, cw);
            matmul_view(g, gi, cw, true, View::cols(src, nd, i * dm, dm).t(), dkvs);
        } else {
            let dkv = View::cols(dqkv, n * cw, i * cw + cq, cw - cq);
            matmul_view(
                g,
                gi + cq,
                cw,
                true,
                View::cols(hn, nd, i * dm, dm).t(),
                dkv,
            );
        }
        let on: Vec<usize> = (0..rows).filter(|&q| active[q * n + i]).collect();
        if on.is_empty() {
            continue;
        }
        let h_on = take_gathered(hn, nd, i * dm, dm, &on);
        let dq_on = take_gathered(dqkv, n * cw, i * cw, cq, &on);
        matmul_view(
            g,
            gi,
            cw,
            true,
            View::dense(&h_on, dm).t(),
            View::dense(&dq_on, cq),
        );
        give(h_on);
        give(dq_on);
    }
    let (ow, out) = (c.reads(), 2 * dm);
    let reads_out = rows * l.active_per_row();
    let dgo = &grads.dgo[..reads_out * out];
    matmul_view(
        g,
        o.comm_out,
        out,
        true,
        View::dense(&grads.reads_comm[..reads_out * ow], ow).t(),
        View::dense(dgo, out),
    );
    col_sums(dgo, out, &mut g[o.comm_bias..o.comm_bias + out]);
}

/// A pre-gated layer's values' gradient, deferred from the steps (layer 0's, or a layer
/// pre-gated step by step through precomposed weights): for every block `(slot j, head h,
/// module i)`, `dv_hj += (p_hij ⊙ dgi_i) W_iᵀ` over the chunk's rows where module `i` was active
/// (the others carry no gradient); and, when `g` is given, the cell input weights' gradient from
/// the same products, `W_i[h] += v_hjᵀ (p_hij ⊙ dgi_i)` (the reads `u_ih = Σ_j p_hij v_hj` are
/// not kept).
///
/// Through precomposed weights `M = W_v,hj W_i[h]` (the layer tape's `precomposed`) there are
/// no values: layer 0's blocks' gradient goes straight into the input, `dx += (p ⊙ dgi_i) Mᵀ`
/// (a layer pre-gated step by step sent its source's at each step), and the weights' gradients
/// come from `M`'s, `dM = sᵀ (p ⊙ dgi_i)` over the slot's source `s`: `W_v,hj += dM W_i[h]ᵀ`,
/// `W_i[h] += W_v,hjᵀ dM`.
#[allow(clippy::too_many_arguments)]
fn pregated_value_grads(
    d: &StackDims,
    li: usize,
    o: &LayerParams,
    params: &[f32],
    tape: &ChunkTape,
    grads: &mut LayerGrads,
    mut g: Option<&mut [f32]>,
    mut dx: Option<&mut [f32]>,
) {
    let l = &d.layers[li];
    let (n, gd, aw, s) = (l.modules, l.gates() * l.module, l.read(), l.slots.len());
    let (heads, dk, dv, kvw, pa, pw) = (l.heads, l.key, l.value, l.kv(), l.attention(), l.blocks());
    let rows = d.steps * tape.rows;
    let lt = &tape.layers[li];
    let precomposed = &lt.precomposed[..];
    // What the slots read (all of one width): the input, or another layer's state.
    let (source, e): (&[f32], usize) = match l.slots[0].parts[0].0 {
        Source::Input => (&tape.x, d.input),
        Source::Below => (tape.layers[li - 1].upward(), l.slots[0].width()),
        Source::Above => (&tape.layers[li + 1].hp, l.slots[0].width()),
    };
    let LayerGrads {
        on, dgi, dkv, dq, ..
    } = grads;
    for (i, (rows_i, dgi_i)) in on.rows.iter().zip(dgi.iter()).enumerate() {
        let all = on.all(i, rows);
        let picked = rows_i.len();
        let mut scaled = take_overwritten(picked * gd);
        // Precomposed: the module's source rows, for `dM` (gathered once for all its blocks).
        let xs = (!precomposed.is_empty() && g.is_some())
            .then(|| gather(source, e, 0, e, (!all).then_some(rows_i)));
        let mut dm = take_overwritten(if xs.is_some() { e * gd } else { 0 });
        for j in 0..s {
            for h in 0..heads {
                let at_p = (h * n + i) * (1 + s) + 1 + j;
                weigh_gate_grads(&mut scaled, dgi_i, gd, 0..picked, rows_i, &lt.p, pa, at_p);
                let w_at = o.w_ih + i * aw * gd + h * dv * gd;
                let w = View::dense(&params[w_at..][..dv * gd], gd);
                let col = j * kvw + heads * dk + h * dv;
                let scaled_v = View::dense(&scaled, gd);
                if !precomposed.is_empty() {
                    if let Some(dx) = dx.as_deref_mut() {
                        let block = l.block(i, j, h);
                        let m = View::cols(precomposed, pw, block, gd);
                        scatter_product(dx, e, 0, 0, true, &scaled, gd, rows_i, 0..picked, m.t());
                    }
                    if let (Some(g), Some(xs)) = (g.as_deref_mut(), xs.as_ref()) {
                        let x_on = pick(xs, source, e, 0, e);
                        matmul_view(&mut dm, 0, gd, false, x_on.t(), scaled_v);
                        let dm_v = View::dense(&dm, gd);
                        let wv_at = o.slot_kv[j] + heads * dk + h * dv;
                        matmul_view(g, wv_at, kvw, true, dm_v, w.t());
                        let w_v =
                            View::cols(&params[o.slot_kv[j]..][..e * kvw], kvw, col - j * kvw, dv);
                        matmul_view(g, w_at, gd, true, w_v.t(), dm_v);
                    }
                    continue;
                }
                if let Some(g) = g.as_deref_mut() {
                    let vals = gather(&lt.kv, s * kvw, col, dv, (!all).then_some(rows_i));
                    let vals_v = pick(&vals, &lt.kv, s * kvw, col, dv);
                    matmul_view(g, w_at, gd, true, vals_v.t(), scaled_v);
                    give_some(vals);
                }
                let width = s * kvw;
                scatter_product(
                    dkv,
                    width,
                    col,
                    0,
                    true,
                    &scaled,
                    gd,
                    rows_i,
                    0..picked,
                    w.t(),
                );
            }
        }
        if !lt.folded.is_empty() {
            let xs = (source, xs.as_ref());
            folded_key_grads(l, o, params, lt, i, &dq[i], rows_i, xs, &mut g, &mut dx);
        }
        give_some(xs.flatten());
        give(dm);
        give(scaled);
    }
}

/// Layer 0's folded keys' part of [`pregated_value_grads`] for module `i` (see
/// [`StackDims::folds_keys`]): from the gradient of its `k̂ = x C_i` over its active rows
/// (`dkh`, `[rows, S·heads·d]`), `dx += dk̂ C_iᵀ` and, when `g` is given (`xs`: the input and
/// the module's rows of it, gathered unless every row), `dC = xᵀ dk̂` into the keys' and queries' weights: `C_hji = W_k,hj W_q,hiᵀ`, so
/// `W_k,hj += dC W_q,hi` and `W_q,hi += dCᵀ W_k,hj`.
#[allow(clippy::too_many_arguments)]
fn folded_key_grads(
    l: &LayerDims,
    o: &LayerParams,
    params: &[f32],
    lt: &LayerTape,
    i: usize,
    dkh: &[f32],
    rows_i: &[usize],
    xs: (&[f32], Option<&Option<Vec<f32>>>),
    g: &mut Option<&mut [f32]>,
    dx: &mut Option<&mut [f32]>,
) {
    let (n, dm, heads, dk, qw, kvw) = (l.modules, l.module, l.heads, l.key, l.query(), l.kv());
    let (fw, e) = (l.folded_keys(), l.slots[0].width());
    let kw = fw / n;
    if let Some(dx) = dx.as_deref_mut() {
        let c_i = View::cols(&lt.folded, fw, i * kw, kw);
        scatter_product(dx, e, 0, 0, true, dkh, kw, rows_i, 0..rows_i.len(), c_i.t());
    }
    let (Some(g), (x, Some(xs))) = (g.as_deref_mut(), xs) else {
        return;
    };
    let x_on = pick(xs, x, e, 0, e);
    let mut dc = take_overwritten(e * kw);
    matmul_view(&mut dc, 0, kw, false, x_on.t(), View::dense(dkh, kw));
    let w_q = &params[o.query + i * dm * qw..][..dm * qw];
    for j in 0..l.slots.len() {
        let w_k = &params[o.slot_kv[j]..][..e * kvw];
        for h in 0..heads {
            let dc_b = View::cols(&dc, kw, (j * heads + h) * dm, dm);
            let (w_qh, w_kh) = (
                View::cols(w_q, qw, h * dk, dk),
                View::cols(w_k, kvw, h * dk, dk),
            );
            matmul_view(g, o.slot_kv[j] + h * dk, kvw, true, dc_b, w_qh);
            matmul_view(g, o.query + i * dm * qw + h * dk, qw, true, dc_b.t(), w_kh);
        }
    }
    give(dc);
}

/// `p ⊙ dgi` of a block: each of module `i`'s gate gradients at `places` (`dgi_i`, `[active
/// rows, gd]`) times its chunk row's (`rows`) attention weight `p[row·pa + at_p]` (the tape's
/// `[T·Bc, pa]` attention), written densely into `scaled`.
#[allow(clippy::too_many_arguments)]
fn weigh_gate_grads(
    scaled: &mut [f32],
    dgi_i: &[f32],
    gd: usize,
    places: std::ops::Range<usize>,
    rows: &[usize],
    p: &[f32],
    pa: usize,
    at_p: usize,
) {
    for ((dst, place), &row) in scaled.chunks_exact_mut(gd).zip(places).zip(rows) {
        let pj = p[row * pa + at_p];
        let src = &dgi_i[place * gd..(place + 1) * gd];
        dst.iter_mut().zip(src).for_each(|(a, &v)| *a = pj * v);
    }
}

/// Columns of a slot's key/value projection that its source's gradient and the projection's
/// weight gradient take: all of them, or the keys' alone when the layer pre-gates through
/// precomposed weights (the values' columns are then never made; their weights get their
/// gradient in [`pregated_value_grads`]), none when the keys are folded too (theirs come with
/// `C`'s, see [`folded_key_grads`]).
fn kv_columns(l: &LayerDims, lt: &LayerTape) -> usize {
    if !lt.folded.is_empty() {
        0
    } else if lt.precomposed.is_empty() {
        l.kv()
    } else {
        l.heads * l.key
    }
}

/// `dst[(row − base)·stride + col..]` (+)= its row of `src[places] · w`, for every place of
/// `src` (a module's `[active rows, width]` gradients) and its chunk row in `rows`: one product
/// over the places, written in place when their rows are consecutive, else scattered row by
/// row.
#[allow(clippy::too_many_arguments)]
fn scatter_product(
    dst: &mut [f32],
    stride: usize,
    col: usize,
    base: usize,
    accumulate: bool,
    src: &[f32],
    width: usize,
    rows: &[usize],
    places: std::ops::Range<usize>,
    w: View,
) {
    let (Some(&first), Some(&last)) = (rows.first(), rows.last()) else {
        return;
    };
    let src = View::dense(&src[places.start * width..places.end * width], width);
    if last - first + 1 == rows.len() {
        let at = (first - base) * stride + col;
        matmul_view(dst, at, stride, accumulate, src, w);
        return;
    }
    let cols = if w.transposed { w.rows } else { w.cols };
    let mut out = take_overwritten(rows.len() * cols);
    matmul_view(&mut out, 0, cols, false, src, w);
    for (&row, v) in rows.iter().zip(out.chunks_exact(cols)) {
        let d = &mut dst[(row - base) * stride + col..][..cols];
        if accumulate {
            axpy(d, 1.0, v);
        } else {
            d.copy_from_slice(v);
        }
    }
    give(out);
}

/// Module `i`'s block of the step's rows `on` (where it was active), times `w`: `src [Bc,
/// n·width]` (block `i` at columns `i·width..`, zero in inactive rows, so they are skipped: half
/// the product at top-k 2 of 4), each product row (`cols` wide) handed to `put(row in the chunk,
/// values)`.
#[allow(clippy::too_many_arguments)]
fn active_rows_product(
    src: &[f32],
    n: usize,
    i: usize,
    width: usize,
    on: &[usize],
    w: View,
    cols: usize,
    mut put: impl FnMut(usize, &[f32]),
) {
    if on.is_empty() {
        return;
    }
    let picked = take_gathered(src, n * width, i * width, width, on);
    let mut out = take_overwritten(on.len() * cols);
    matmul_view(&mut out, 0, cols, false, View::dense(&picked, width), w);
    for (q, &r) in on.iter().enumerate() {
        put(r, &out[q * cols..(q + 1) * cols]);
    }
    give(picked);
    give(out);
}

/// Rows `on` of columns `col..col + cols` of a `[rows, width]` buffer, gathered densely; `None`
/// when `on` is every row (read in place with [`pick`]).
fn gather(
    buf: &[f32],
    width: usize,
    col: usize,
    cols: usize,
    on: Option<&[usize]>,
) -> Option<Vec<f32>> {
    on.map(|on| take_gathered(buf, width, col, cols, on))
}

/// The view of what [`gather`] returned, or of the columns in place.
fn pick<'a>(
    g: &'a Option<Vec<f32>>,
    buf: &'a [f32],
    width: usize,
    col: usize,
    cols: usize,
) -> View<'a> {
    match g {
        Some(v) => View::dense(v, cols),
        None => View::cols(buf, width, col, cols),
    }
}

/// Adds layer `li`'s weight gradients (all steps of the chunk at once) to `g`.
fn weight_grads(
    d: &StackDims,
    li: usize,
    o: &LayerParams,
    tape: &ChunkTape,
    grads: &LayerGrads,
    g: &mut [f32],
) {
    let l = &d.layers[li];
    let lt = &tape.layers[li];
    let (n, dm, nd, gd) = (l.modules, l.module, l.hidden(), l.gates() * l.module);
    let (kvw, qw, aw, s) = (l.kv(), l.query(), l.read(), l.slots.len());
    let rows = d.steps * tape.rows;
    // Only the rows where module i was active carry gradients to its cell, query, read and
    // communication query: their gradients are kept per module (see [`ActiveRows`]) and the
    // inputs' rows gathered, so the matmuls skip the others (half the rows for top-k 2 of 4).
    for i in 0..n {
        let on = (!grads.on.all(i, rows)).then_some(&grads.on.rows[i][..]);
        let hp = gather(&lt.hp, nd, i * dm, dm, on);
        let hp_i = pick(&hp, &lt.hp, nd, i * dm, dm);
        if !l.bypass && lt.folded.is_empty() {
            let dq_i = View::dense(&grads.dq[i], qw);
            matmul_view(g, o.query + i * dm * qw, qw, true, hp_i.t(), dq_i);
        }
        let dgi_i = View::dense(&grads.dgi[i], gd);
        // A bypassed layer's reads are the input itself; a pre-gated layer's input weights got
        // their gradient with the values' (see [`pregated_value_grads`]).
        if l.bypass {
            let reads = gather(&tape.x, aw, 0, aw, on);
            let reads_i = pick(&reads, &tape.x, aw, 0, aw);
            matmul_view(g, o.w_ih + i * aw * gd, gd, true, reads_i.t(), dgi_i);
            give_some(reads);
        } else if let Some(reads) = grads.reads.get(i) {
            let reads_i = View::dense(reads, aw);
            matmul_view(g, o.w_ih + i * aw * gd, gd, true, reads_i.t(), dgi_i);
        }
        let dgh_i = if l.lstm {
            dgi_i
        } else {
            View::dense(&grads.dgh[i], gd)
        };
        matmul_view(g, o.w_hh + i * dm * gd, gd, true, hp_i.t(), dgh_i);
        give_some(hp);
        // The biases: the gradients' column sums (an LSTM's two bias vectors get the same).
        let mut sums = vec![0.0f32; gd];
        col_sums(&grads.dgi[i], gd, &mut sums);
        axpy(&mut g[o.b_ih + i * gd..][..gd], 1.0, &sums);
        if !l.lstm {
            sums.fill(0.0);
            col_sums(&grads.dgh[i], gd, &mut sums);
        }
        axpy(&mut g[o.b_hh + i * gd..][..gd], 1.0, &sums);
    }
    for (j, slot) in l.slots.iter().enumerate().filter(|_| !l.bypass) {
        let mut row = 0;
        for &(src, w) in &slot.parts {
            let source: &[f32] = match src {
                Source::Input => &tape.x,
                Source::Below => tape.layers[li - 1].upward(),
                Source::Above => &tape.layers[li + 1].hp,
            };
            let cols = kv_columns(l, lt);
            if cols == 0 {
                continue; // folded keys: their weights got theirs with `C`'s
            }
            matmul_view(
                g,
                o.slot_kv[j] + row * kvw,
                kvw,
                true,
                View::dense(source, w).t(),
                View::cols(&grads.dkv, s * kvw, j * kvw, cols),
            );
            row += w;
        }
    }
    // (The communication's projections were added a window at a time, see
    // [`comm_weight_grads`].)
}

/// The backward of the communication's gated update `h = h̃ + σ(g)·tanh(f)` for the active
/// modules of a step, compiled for the CPU's vector width: `dgo` (a row per active module:
/// `f` half, then `g` half) from `dh` (the gradient reaching `h̃`, `[Bc, n·d]`).
struct CommUpdateGrad<'a> {
    sg: &'a [f32],
    tf: &'a [f32],
    dh: &'a [f32],
    active: &'a [bool],
    module: usize,
    dgo: &'a mut [f32],
}

impl pulp::WithSimd for CommUpdateGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let dm = self.module;
        let on = (0..self.active.len()).filter(|&ri| self.active[ri]);
        for (a, ri) in on.enumerate() {
            let (sg, tf) = (&self.sg[a * dm..][..dm], &self.tf[a * dm..][..dm]);
            let dh = &self.dh[ri * dm..][..dm];
            let (df, dg) = self.dgo[a * 2 * dm..][..2 * dm].split_at_mut(dm);
            for k in 0..dm {
                let (sv, tv, g) = (sg[k], tf[k], dh[k]);
                df[k] = g * sv * (1.0 - tv * tv);
                dg[k] = g * tv * sv * (1.0 - sv);
            }
        }
    }
}

/// The backward of one step's input attention for the active modules, compiled for the CPU's
/// vector width: the attention's gradient (from the pre-gated blocks and the gate gradients,
/// or from the reads' gradients `du`), then the keys', values' (into `dkv`) and queries' (into
/// each module's active rows of `dq`) gradients. An inactive module's read got no gradient.
struct InputAttentionGrad<'a> {
    l: &'a LayerDims,
    active: &'a [bool],
    kv: &'a [f32],
    /// The step's queries `[Bc, n·heads·dk]`, or with `compact` the active modules' only
    /// `[Bc·k, heads·dk]` ([`LayerTape::compact`]).
    q: &'a [f32],
    /// With folded keys (else empty): the step's `k̂` `[Bc, n·S·heads·d]`; the scores' gradient
    /// goes into `dhp` (`ds·k̂`) and into `dq` (`ds·h_{t−1}`, the module's `k̂` gradient), none
    /// into `dkv`.
    khat: &'a [f32],
    /// Whether `xg` holds the kept blocks of the step's active modules (as `q`, in module
    /// order: see [`LayerTape::xg_kept`]) rather than every module's of every row.
    kept_blocks: bool,
    /// `h_{t−1}` `[Bc, n·d]` and its gradient.
    hp: &'a [f32],
    dhp: &'a mut [f32],
    compact: bool,
    p: &'a [f32],
    places: &'a [u32],
    xg: Option<&'a [f32]>,
    dgi: &'a [Vec<f32>],
    du: &'a [f32],
    /// Per module, the active rows' reads, rebuilt (as the forward made them) when not
    /// pre-gated; empty when pre-gated.
    reads: &'a mut [Vec<f32>],
    dq: &'a mut [Vec<f32>],
    dkv: &'a mut [f32],
}

impl pulp::WithSimd for InputAttentionGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let l = self.l;
        let (n, gd, s) = (l.modules, l.gates() * l.module, l.slots.len());
        let (heads, dk, dv, kvw, qw, aw) = (l.heads, l.key, l.value, l.kv(), l.query(), l.read());
        let (kv, q, p, dkv) = (self.kv, self.q, self.p, self.dkv);
        let (folds, dm, fw) = (!self.khat.is_empty(), l.module, l.folded_keys());
        let ka = l.active_per_row();
        let q_rows = if self.compact { ka } else { n };
        let pw = l.attention();
        let bc = self.active.len() / n.max(1);
        let scale = l.input_scale();
        let mut dp = vec![0.0f32; s];
        // Each module's row of `q`.
        let mut q_row = vec![0usize; n];
        for r in 0..bc {
            let on = &self.active[r * n..(r + 1) * n];
            let mut nth = 0;
            for (i, qr) in q_row.iter_mut().enumerate() {
                *qr = if self.compact {
                    r * ka + nth
                } else {
                    r * n + i
                };
                nth += usize::from(on[i]);
            }
            // This row's gradients are zeroed just before they are added to, in cache.
            if !folds {
                dkv[r * s * kvw..(r + 1) * s * kvw].fill(0.0);
            }
            for h in 0..heads {
                for i in 0..n {
                    if !self.active[r * n + i] {
                        continue; // its read got no gradient
                    }
                    let pr = &p[r * pw + (h * n + i) * (1 + s)..][..1 + s];
                    let place = self.places[r * n + i] as usize;
                    if h == 0 && !folds {
                        self.dq[i][place * qw..(place + 1) * qw].fill(0.0);
                    }
                    let dur: &[f32] = match self.xg {
                        Some(xg) => {
                            // dp_j = dgi_i · (v_hj W_i), the pre-gated block.
                            let dgi = &self.dgi[i][place * gd..][..gd];
                            // A row of every module's blocks, or the pair's kept ones.
                            let (row, first, rows) = if self.kept_blocks {
                                (q_row[i], l.block(i, 0, 0), bc * q_rows)
                            } else {
                                (r, 0, bc)
                            };
                            let xw = xg.len() / rows.max(1);
                            for (j, g) in dp.iter_mut().enumerate() {
                                let block = l.block(i, j, h) - first;
                                *g = dot_simd(simd, dgi, &xg[row * xw + block..][..gd]);
                            }
                            &[]
                        }
                        None => {
                            let dur = &self.du[r * n * aw + i * aw + h * dv..][..dv];
                            let value =
                                |j: usize| &kv[r * s * kvw + j * kvw + heads * dk + h * dv..][..dv];
                            for (j, g) in dp.iter_mut().enumerate() {
                                *g = dot_simd(simd, dur, value(j));
                            }
                            let ur = &mut self.reads[i][place * aw + h * dv..][..dv];
                            weighted_sum_simd(simd, ur, &pr[1..], value);
                            dur
                        }
                    };
                    let mean: f32 = (0..s).map(|j| pr[1 + j] * dp[j]).sum();
                    if folds {
                        // Every block of the module's `k̂` gradient is set once, here; `k̂` is
                        // the pair's kept row (as `q`).
                        let span = r * n * dm + i * dm..r * n * dm + (i + 1) * dm;
                        for j in 0..s {
                            let ds = pr[1 + j] * (dp[j] - mean) * scale;
                            let own = l.folded_block(i, j, h) - l.folded_block(i, 0, 0);
                            let kh = &self.khat[q_row[i] * fw / n + own..][..dm];
                            axpy_simd(simd, &mut self.dhp[span.clone()], ds, kh);
                            let dk_hat = &mut self.dq[i][place * fw / n + own..][..dm];
                            add_term_simd(simd, true, dk_hat, ds, &self.hp[span.clone()]);
                        }
                        continue;
                    }
                    let qbase = q_row[i] * qw + h * dk;
                    let dq = &mut self.dq[i][place * qw + h * dk..][..dk];
                    for j in 0..s {
                        let pj = pr[1 + j];
                        let ds = pj * (dp[j] - mean) * scale;
                        let kbase = r * s * kvw + j * kvw + h * dk;
                        let vbase = r * s * kvw + j * kvw + heads * dk + h * dv;
                        if !dur.is_empty() {
                            axpy_simd(simd, &mut dkv[vbase..vbase + dv], pj, dur);
                        }
                        axpy_simd(simd, &mut dkv[kbase..kbase + dk], ds, &q[qbase..qbase + dk]);
                        axpy_simd(simd, dq, ds, &kv[kbase..kbase + dk]);
                    }
                }
            }
        }
    }
}

/// The backward of one step's communication attention ([`CommAttention`](super::forward)),
/// compiled for the CPU's vector width: from the reads' gradients `dreads` (a row per active
/// module, as the forward's reads) and the taped attention, the gradients of the queries (into
/// `dq`) and of the keys and values (into `dk`, or `dq` when they share its buffer). Only active
/// modules: an inactive one's update was discarded, so no gradient reaches its query, whose
/// columns are left unwritten (and unread) unless old-state keys read the buffers whole.
struct CommAttentionGrad<'a> {
    c: CommDims,
    n: usize,
    active: &'a [bool],
    /// The taped attention `[Bc·k, heads·n]`, a row per active module.
    att: &'a [f32],
    dreads: &'a [f32],
    qkv: &'a [f32],
    keys: &'a [f32],
    /// The reads, rebuilt as the forward made them (a row per active module).
    reads: &'a mut [f32],
    dq: &'a mut [f32],
    dk: Option<&'a mut [f32]>,
}

impl pulp::WithSimd for CommAttentionGrad<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        let (c, n) = (self.c, self.n);
        comm_heads::dispatch(s, self, c, n);
    }
}

impl comm_heads::HeadRows for CommAttentionGrad<'_> {
    #[inline(always)]
    fn rows<S: pulp::Simd, const N: usize>(self, s: S) {
        let (c, n) = (self.c, self.n);
        let (ch, cv, cw, ow) = (c.heads, c.value, c.qkv(), c.reads());
        let (scale, att, keys, qkv) = (c.scale(), self.att, self.keys, self.qkv);
        let (dq, mut dk) = (self.dq, self.dk);
        let mut a = 0;
        // Old-state keys: both buffers are read whole (an inactive module's query columns, the
        // queries' buffer's key and value columns), so each row starts from zero here, while it
        // is about to be in cache. Otherwise every column that is read is written: the row's
        // first active module sets every module's key and value gradients (later ones add to
        // them), and a query's gradient is set by its first key.
        let zeroed = dk.is_some();
        for (r, on) in self.active.chunks_exact(n).enumerate() {
            let base = r * n * cw;
            if let Some(dk) = dk.as_deref_mut() {
                dq[base..base + n * cw].fill(0.0);
                dk[base..base + n * cw].fill(0.0);
            }
            for (nth, i) in (0..n).filter(|&i| on[i]).enumerate() {
                for h in 0..ch {
                    let ar = &att[(a * ch + h) * n..][..n];
                    let dor = &self.dreads[a * ow + h * cv..][..cv];
                    let read = &mut self.reads[a * ow + h * cv..][..cv];
                    let g = comm_heads::HeadGrads {
                        dq: &mut *dq,
                        dk: dk.as_deref_mut(),
                        first: nth == 0 && !zeroed,
                        dq_first: !zeroed,
                    };
                    let inputs = comm_heads::HeadInputs {
                        at: c.head_at(base, i, h, n),
                        att: ar,
                        dread: dor,
                        qkv,
                        keys,
                        scale,
                    };
                    comm_heads::head_backward::<S, N>(s, &inputs, read, g);
                }
                a += 1;
            }
        }
    }
}

/// Gives a gathered buffer back to the pool.
fn give_some(v: Option<Vec<f32>>) {
    if let Some(v) = v {
        give(v);
    }
}

/// `y += a·x`.
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, &x)| *y += a * x);
}

/// Adds the column sums of the row-major `m` (`width` columns) to `out`.
fn col_sums(m: &[f32], width: usize, out: &mut [f32]) {
    for row in m.chunks(width) {
        out.iter_mut().zip(row).for_each(|(a, v)| *a += v);
    }
}

//! Forward pass of the fused modular stack for one chunk of batch rows, keeping the tape.

use super::{
    comm_heads, param_layout, CommDims, LayerDims, LayerParams, Source, StackDims, StepRows,
};
use crate::gru_kernel::GateForward as GruGateForward;
use crate::host_math::{
    axpy_simd, dot_simd, exp_fused, exp_simd, give, matmul_view, offset_scale_simd, sigmoid,
    stream_copy, stream_fence, take_copy, take_gathered, take_overwritten, take_repeated,
    take_zeroed, tanh, weighted_sum_simd, View,
};
use crate::lstm_kernel::GateForward;

/// One layer's tape over the chunk's steps (each buffer `[T·Bc, width]`, time-major).
pub(crate) struct LayerTape {
    /// `h_{t−1}` and `c_{t−1}` after resets (`c` empty for GRU cells; with
    /// [`LayerTape::compact`], the active modules' `c_{t−1}` only, `[k·d]`).
    pub hp: Vec<f32>,
    pub cp: Vec<f32>,
    /// Every slot's keys and values `[S·heads·(dk + dv)]` (layer 0: the input's part of every
    /// step is written before the steps, see [`input_projection`]; empty when the keys are
    /// folded).
    pub kv: Vec<f32>,
    /// Queries `[n·heads·dk]` — with [`LayerTape::compact`], the active modules' only
    /// (`[k·heads·dk]`, in module order: an inactive module's read gets no gradient); empty
    /// when the keys are folded.
    pub q: Vec<f32>,
    /// Layer 0 with its keys folded into its queries' weights (see [`StackDims::folds_keys`]):
    /// the weights `C_hji = W_k,hj W_q,hiᵀ` `[E, n·S·heads·d]`, block `(i, j, h)` at column
    /// `(i·S·heads + j·heads + h)·d` (a module's blocks side by side); else empty.
    pub folded: Vec<f32>,
    /// With `folded`: the active modules' folded keys `k̂ = x C` of every step `[T·Bc·k,
    /// S·heads·d]` (in module order; every module's with `k = n`), which the backward reads;
    /// else empty.
    pub khat: Vec<f32>,
    /// Layer 0 when it precomposes (see [`StackDims::precomposes`]): the active modules'
    /// pre-gated blocks `x M_i` of every step `[T·Bc·k, S·heads·G·d]` (in module order; every
    /// module's with `k = n`), which the attention's gradient reads; else empty. The step makes
    /// every module's (an inactive module's cell still runs) in [`StackForward`]'s step buffer,
    /// and keeping only these cost less than writing every module's for the whole chunk before
    /// the steps and streaming them back twice.
    pub xg_kept: Vec<f32>,
    /// Input attention `[heads, n, 1 + S]` per row (slot 0 = null).
    pub p: Vec<f32>,
    /// The reads `[n·heads·dv]` of the current step only (`[Bc, n·heads·dv]`): the backward
    /// rebuilds the active modules' reads from the attention and the values (empty when
    /// bypassed: the reads are the input; and when pre-gated: the cells take `Σ_j p_j (v_j W)`
    /// and the backward makes `W`'s gradient from the attention and the values, or the
    /// precomposed weights).
    pub u: Vec<f32>,
    /// Active modules `[T·Bc·n]`.
    pub active: Vec<bool>,
    /// Activated gates `[n·G·d]`: LSTM `σ(i), σ(f), tanh(g), σ(o)`; GRU `r, z, n` — with
    /// [`LayerTape::compact`], the active modules' only (`[k·G·d]`, in module order).
    pub acts: Vec<f32>,
    /// LSTM: `tanh(c_t)`; GRU: the hidden part of the candidate's pre-activation `h W_hn + b_hn`
    /// `[n·d]` — with [`LayerTape::compact`], the active modules' only (`[k·d]`).
    pub aux: Vec<f32>,
    /// Whether `cp`, `q`, `acts` and `aux` keep only the active modules' rows (`k < n`, not
    /// bypassed), in module order: an inactive module's cell and read get no gradient, so these
    /// rows are never read back, and writing them to the tape and streaming past them in the
    /// backward cost memory traffic. The step works on every module's in the `step_*` buffers
    /// (the current step's only: an inactive module's `h̃` still feeds the communication, its
    /// queries the top-k, its `c_{t−1}` its kept state) and then keeps the active pairs' rows.
    pub compact: bool,
    /// With `compact`: the current step's `c_{t−1}` of every module `[Bc, n·d]` (LSTM cells;
    /// else empty).
    pub step_cp: Vec<f32>,
    /// With `compact`: the current step's queries of every module `[Bc, n·heads·dk]` (else
    /// empty).
    pub step_q: Vec<f32>,
    /// With `compact`: the current step's gates of every module `[Bc, n·G·d]` (else empty).
    pub step_gates: Vec<f32>,
    /// With `compact`: the current step's `aux` of every module `[Bc, n·d]` (else empty).
    pub step_aux: Vec<f32>,
    /// The cells' new states `h̃` `[n·d]`.
    pub hn: Vec<f32>,
    /// Communication: queries/keys/values from `h̃` `[n·qkv]` (queries of active modules only),
    /// of the current step only (`[Bc, n·qkv]`): the backward recomputes them
    /// ([`comm_projection`]), since kept for every step they were the tape's widest buffer and
    /// writing and reading them back cost more than the products.
    pub qkv: Vec<f32>,
    /// The current step's active rows of every module (the communication's queries).
    pub step_rows: StepRows,
    /// Communication with old-state keys: the key source (`h̃` active, `h_{t−1}` inactive) and
    /// its projection (of the current step only, as `qkv`).
    pub src: Vec<f32>,
    pub kvs: Vec<f32>,
    /// Communication attention of the active modules, in module order `[k·heads·n]` (an inactive
    /// module's update is discarded, so its attention is not computed).
    pub att: Vec<f32>,
    /// Communication read of the active modules, in module order `[k·heads·dv]` (an inactive
    /// module's update is discarded, so it is not computed), of the current step only
    /// (`[Bc, k·heads·dv]`): the backward rebuilds it from the attention and the recomputed
    /// values.
    pub o: Vec<f32>,
    /// `σ(gate)` and `tanh(fc)` of the active modules' communication output `[k·d]` each.
    pub sg: Vec<f32>,
    pub tf: Vec<f32>,
    /// The layer's output `h_t` `[n·d]`.
    pub hout: Vec<f32>,
    /// A layer pre-gated step by step (see [`StackDims::precomposes`]): each step's pre-gated
    /// blocks `[blocks]`, `s_t · M`, which the attention's gradient reads; else empty (layer 0's
    /// are the chunk's [`ChunkTape::xg`]).
    pub xg: Vec<f32>,
    /// The layer's precomposed weights `M_hji = W_v,hj W_i[h]` `[w, blocks]` (see
    /// [`StackDims::precomposes`]), when the chunk pre-gates it through them; else empty.
    pub precomposed: Vec<f32>,
    /// What the layer above reads: `h_t` with inactive modules zeroed (only when they are not
    /// passed up; otherwise `hout` is read).
    pub up: Vec<f32>,
}

impl LayerTape {
    /// Layer `li`'s tape for a chunk of `rows` (`T·Bc`) rows, `step_rows` (`Bc`) a step.
    fn new(dims: &StackDims, li: usize, rows: usize, step_rows: usize) -> Self {
        let l = &dims.layers[li];
        let masked_up = !dims.pass_inactive && li + 1 < dims.layers.len();
        let pregated = dims.gates_pregated(li, rows);
        let step_blocks = li > 0 && dims.precomposes(li, rows);
        let folds = li == 0 && dims.folds_keys(rows);
        let kept_blocks = li == 0 && dims.precomposes(li, rows);
        let (n, d, nd) = (l.modules, l.module, l.hidden());
        // Every step writes these whole (or, the attention, whatever of it is read), so they
        // skip zeroing.
        let whole = |width: usize| take_overwritten(rows * width);
        let ka = l.active_per_row();
        let comm = l.comm.unwrap_or(CommDims {
            heads: 0,
            key: 0,
            value: 0,
            old_state: false,
        });
        let old = l.comm.is_some_and(|c| c.old_state);
        let on = l.comm.is_some();
        let compact = !l.bypass && ka < n;
        let kept = if compact { ka } else { n };
        let step = |width: usize| {
            take_overwritten(if compact {
                rows.min(step_rows) * width
            } else {
                0
            })
        };
        LayerTape {
            hp: whole(nd),
            cp: whole(if l.lstm { kept * d } else { 0 }),
            kv: whole(if folds { 0 } else { l.slots.len() * l.kv() }),
            q: whole(if folds { 0 } else { kept * l.query() }),
            folded: Vec::new(),
            khat: whole(if folds { kept * l.folded_keys() / n } else { 0 }),
            xg_kept: whole(if kept_blocks {
                kept * l.blocks() / n
            } else {
                0
            }),
            step_cp: step(if l.lstm { nd } else { 0 }),
            step_q: step(if folds { 0 } else { n * l.query() }),
            p: whole(l.attention()),
            u: take_overwritten(if l.bypass || pregated {
                0
            } else {
                rows.min(step_rows) * n * l.read()
            }),
            active: vec![false; rows * n],
            acts: whole(kept * l.gates() * d),
            aux: whole(kept * d),
            compact,
            step_gates: step(n * l.gates() * d),
            step_aux: step(nd),
            hn: whole(nd),
            qkv: take_overwritten(rows.min(step_rows) * n * comm.qkv()),
            step_rows: StepRows::default(),
            src: whole(if old { nd } else { 0 }),
            kvs: take_overwritten(if old {
                rows.min(step_rows) * n * comm.qkv()
            } else {
                0
            }),
            att: whole(ka * comm.heads * n),
            o: take_overwritten(rows.min(step_rows) * ka * comm.heads * comm.value),
            sg: whole(if on { ka * d } else { 0 }),
            tf: whole(if on { ka * d } else { 0 }),
            hout: whole(nd),
            up: whole(if masked_up { nd } else { 0 }),
            xg: whole(if step_blocks { l.blocks() } else { 0 }),
            precomposed: Vec::new(),
        }
    }

    /// What the layer above reads at every step (`[T·Bc, n·d]`).
    pub fn upward(&self) -> &[f32] {
        if self.up.is_empty() {
            &self.hout
        } else {
            &self.up
        }
    }
}

impl Drop for LayerTape {
    fn drop(&mut self) {
        for v in [
            &mut self.hp,
            &mut self.cp,
            &mut self.kv,
            &mut self.q,
            &mut self.p,
            &mut self.u,
            &mut self.acts,
            &mut self.aux,
            &mut self.step_cp,
            &mut self.step_q,
            &mut self.step_gates,
            &mut self.step_aux,
            &mut self.hn,
            &mut self.qkv,
            &mut self.src,
            &mut self.kvs,
            &mut self.att,
            &mut self.o,
            &mut self.sg,
            &mut self.tf,
            &mut self.hout,
            &mut self.up,
            &mut self.xg,
            &mut self.precomposed,
            &mut self.folded,
            &mut self.khat,
            &mut self.xg_kept,
        ] {
            give(std::mem::take(v));
        }
    }
}

/// A chunk's tape: its inputs, resets, every layer's tape and the final state.
pub(crate) struct ChunkTape {
    /// Rows in the chunk.
    pub rows: usize,
    /// The chunk's inputs `[T·Bc, E]`.
    pub x: Vec<f32>,
    /// The chunk's reset flags `[T·Bc]`.
    pub resets: Option<Vec<bool>>,
    /// Layer 0's pre-gated input `[T·Bc, pregate_width]` (empty when not pre-gated, and when
    /// bypassed: then it is layer 0's gates' tape, `x W_ih` with a GRU's input biases; an
    /// LSTM's cell adds its biases).
    pub xg: Vec<f32>,
    /// Per layer.
    pub layers: Vec<LayerTape>,
    /// Final state `[Bc, state_width]`.
    pub last: Vec<f32>,
}

impl Drop for ChunkTape {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.x));
        give(std::mem::take(&mut self.xg));
        give(std::mem::take(&mut self.last));
    }
}

impl ChunkTape {
    /// Writes the chunk's outputs (top layer `h_t`, in the stack's row order) and final state
    /// into the full output buffers.
    pub fn write_output(&self, d: &StackDims, r0: usize, y: &mut [f32], last: &mut [f32]) {
        let (bc, top, sw) = (self.rows, d.output(), d.state_width());
        let hout = &self.layers[self.layers.len() - 1].hout;
        for t in 0..d.steps {
            d.seq()
                .scatter_step(&hout[t * bc * top..(t + 1) * bc * top], top, t, r0, y);
        }
        last[r0 * sw..(r0 + bc) * sw].copy_from_slice(&self.last);
    }
}

/// Step `t`'s rows of a `[T·Bc, w]` buffer.
pub(crate) fn at(v: &[f32], t: usize, bc: usize, w: usize) -> &[f32] {
    &v[t * bc * w..(t + 1) * bc * w]
}

/// Step `t`'s rows of a `[T·Bc, w]` buffer, mutably.
pub(crate) fn at_mut(v: &mut [f32], t: usize, bc: usize, w: usize) -> &mut [f32] {
    &mut v[t * bc * w..(t + 1) * bc * w]
}

/// Runs rows `r0..r0 + bc` of the batch through the whole sequence.
pub(crate) fn run_chunk(
    d: &StackDims,
    r0: usize,
    bc: usize,
    x: &[f32],
    state: &[f32],
    params: &[f32],
    resets: Option<&[bool]>,
) -> ChunkTape {
    let mut run = StackForward::new(d, r0, bc, x, state, params, resets);
    for t in 0..d.steps {
        run.begin_step(t);
        run.run_step(t);
    }
    run.finish()
}

/// The forward pass of one chunk, step by step: [`StackForward::begin_step`] applies the step's
/// resets (a wrapper may then replace the top layer's state, as screened memory does), and
/// [`StackForward::run_step`] runs the layers.
pub(crate) struct StackForward<'a> {
    d: &'a StackDims,
    params: &'a [f32],
    offsets: Vec<LayerParams>,
    bc: usize,
    /// Parts per layer (2 for LSTM cells).
    ppl: usize,
    x: Vec<f32>,
    resets: Option<Vec<bool>>,
    layers: Vec<LayerTape>,
    /// The current state per layer `[Bc, n·d]`.
    hs: Vec<Vec<f32>>,
    cs: Vec<Vec<f32>>,
    /// Layer 0's pre-gated input of every step (see [`StackDims::pregate_width`]; empty when
    /// bypassed: then it is the layer's gates' tape) — or, when [`StackForward::step_made`], of
    /// the current step only `[Bc, pregate_width]`.
    xg: Vec<f32>,
    /// With folded keys: the current step's `k̂ = x_t C` `[Bc, n·S·heads·d]` (else empty).
    khat: Vec<f32>,
}

impl<'a> StackForward<'a> {
    /// Gathers the chunk's inputs, resets and initial state (`state` is the full flat state
    /// `[B, state_width]`, its first `state_width` columns used) and projects the inputs.
    pub fn new(
        d: &'a StackDims,
        r0: usize,
        bc: usize,
        x: &[f32],
        state: &[f32],
        params: &'a [f32],
        resets: Option<&[bool]>,
    ) -> Self {
        let (tn, b, e, sw) = (d.steps, d.batch, d.input, d.state_width());
        let row_width = state.len() / b.max(1);
        let n_layers = d.layers.len();
        let (offsets, _) = param_layout(d);
        let mut xc = take_overwritten(tn * bc * e);
        for t in 0..tn {
            d.seq()
                .gather_step(x, e, t, r0, &mut xc[t * bc * e..(t + 1) * bc * e]);
        }
        let resets = resets.map(|r| {
            (0..tn)
                .flat_map(|t| r[t * b + r0..t * b + r0 + bc].iter().copied())
                .collect::<Vec<bool>>()
        });
        let rows = tn * bc;
        let mut layers: Vec<LayerTape> = d
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut tape = LayerTape::new(d, i, rows, bc);
                if d.precomposes(i, rows) {
                    tape.precomposed = precompose(l, &offsets[i], params);
                }
                if i == 0 && d.folds_keys(rows) {
                    tape.folded = fold_keys(l, &offsets[i], params, d.input);
                }
                tape
            })
            .collect();
        let ppl = if d.layers[0].lstm { 2 } else { 1 };
        let mut hs: Vec<Vec<f32>> = Vec::with_capacity(n_layers);
        let mut cs: Vec<Vec<f32>> = Vec::with_capacity(n_layers);
        let mut col = 0;
        debug_assert!(row_width >= sw);
        for l in &d.layers {
            let nd = l.hidden();
            for (k, dst) in [&mut hs, &mut cs].into_iter().enumerate().take(ppl) {
                let mut v = take_zeroed(bc * nd);
                for r in 0..bc {
                    let src = (r0 + r) * row_width + col + k * nd;
                    v[r * nd..(r + 1) * nd].copy_from_slice(&state[src..src + nd]);
                }
                dst.push(v);
            }
            col += ppl * nd;
        }
        let l0 = &mut layers[0];
        if l0.folded.is_empty() {
            let keys_only = !l0.precomposed.is_empty();
            input_projection(d, &offsets[0], params, &xc, keys_only, &mut l0.kv);
        }
        // Precomposed: the step makes its blocks (and folded keys) into step buffers.
        let step_made = !l0.precomposed.is_empty();
        let mut xg = if step_made {
            take_overwritten(bc * d.pregate_width())
        } else {
            pregated_input(d, &offsets[0], params, &xc, &l0.kv, rows)
        };
        let khat = take_overwritten(if l0.folded.is_empty() {
            0
        } else {
            bc * d.layers[0].folded_keys()
        });
        if d.layers[0].bypass {
            // `x W_ih` (a GRU's with `b_ih`) is the whole input side of the gates: it becomes
            // the gates' tape, to which every step adds `h W_hh` (as the fused LSTM kernel
            // does).
            give(std::mem::replace(
                &mut layers[0].acts,
                std::mem::take(&mut xg),
            ));
        }
        StackForward {
            d,
            params,
            offsets,
            bc,
            ppl,
            x: xc,
            resets,
            layers,
            hs,
            cs,
            xg,
            khat,
        }
    }

    /// Whether layer 0 precomposes: each step makes its pre-gated blocks `x_t M` (and folded
    /// keys) into `xg` (and `khat`), and the layer's tape keeps the active modules'.
    fn step_made(&self) -> bool {
        !self.layers[0].precomposed.is_empty()
    }

    /// Whether row `r` of the chunk starts a new episode at step `t`.
    pub fn resets_at(&self, t: usize, r: usize) -> bool {
        self.resets.as_ref().is_some_and(|v| v[t * self.bc + r])
    }

    /// Applies step `t`'s resets to every layer's state and records the states in the tape.
    pub fn begin_step(&mut self, t: usize) {
        let bc = self.bc;
        for (li, l) in self.d.layers.iter().enumerate() {
            let nd = l.hidden();
            for row in 0..bc {
                if self.resets_at(t, row) {
                    self.hs[li][row * nd..(row + 1) * nd].fill(0.0);
                    if self.ppl == 2 {
                        self.cs[li][row * nd..(row + 1) * nd].fill(0.0);
                    }
                }
            }
            stream_copy(at_mut(&mut self.layers[li].hp, t, bc, nd), &self.hs[li]);
            if self.ppl == 2 {
                let tape = &mut self.layers[li];
                let cp = if tape.compact {
                    &mut tape.step_cp[..bc * nd]
                } else {
                    at_mut(&mut tape.cp, t, bc, nd)
                };
                cp.copy_from_slice(&self.cs[li]);
            }
        }
    }

    /// The top layer's `h` at step `t` after resets `[Bc, H]` (valid after `begin_step(t)`).
    pub fn top_state(&self) -> &[f32] {
        &self.hs[self.hs.len() - 1]
    }

    /// Replaces the top layer's `h` for step `t` (after `begin_step(t)`, before `run_step(t)`).
    pub fn set_top_state(&mut self, t: usize, h: &[f32]) {
        let top = self.hs.len() - 1;
        let nd = self.d.layers[top].hidden();
        self.hs[top].copy_from_slice(h);
        at_mut(&mut self.layers[top].hp, t, self.bc, nd).copy_from_slice(h);
    }

    /// Runs every layer's step `t`; returns the top layer's output `[Bc, H]`.
    pub fn run_step(&mut self, t: usize) -> &[f32] {
        let (d, bc, rows) = (self.d, self.bc, self.d.steps * self.bc);
        let n_layers = d.layers.len();
        let pw = d.pregate_width();
        let step_made = self.step_made();
        if step_made {
            // Layer 0's pre-gated blocks and folded keys of this step, for every module.
            let (l0, e) = (&self.layers[0], d.input);
            let x = View::dense(at(&self.x, t, bc, e), e);
            let m = View::dense(&l0.precomposed, pw);
            matmul_view(&mut self.xg, 0, pw, false, x, m);
            let fw = d.layers[0].folded_keys();
            if !l0.folded.is_empty() {
                let c = View::dense(&l0.folded, fw);
                matmul_view(&mut self.khat, 0, fw, false, x, c);
            }
        }
        for li in 0..n_layers {
            let (below, rest) = self.layers.split_at_mut(li);
            let (this, above) = rest.split_at_mut(1);
            let sources = SlotSources {
                below: below
                    .last()
                    .map(|b| at(b.upward(), t, bc, b.hp.len() / rows)),
                // The layer above's state after this step's resets (its tape's copy is
                // streamed out of the cache).
                above: above.first().map(|_| &self.hs[li + 1][..]),
                xg: (li == 0 && !self.xg.is_empty()).then(|| {
                    if step_made {
                        &self.xg[..]
                    } else {
                        at(&self.xg, t, bc, pw)
                    }
                }),
                khat: (li == 0 && !self.khat.is_empty()).then_some(&self.khat[..]),
            };
            let l = &d.layers[li];
            // Compiled for the baseline target: the SIMD-compiled step (pulp's dispatch of a
            // named `WithSimd` op calling `layer_step`, AVX-512 here) measured 3–5 % slower for
            // RIMs and BRIMs at B = 32 and 64 (its loops are 32 long); the screened kernel's
            // chunk loops so compiled, 5–8 % slower.
            let c: &mut [f32] = match self.cs.get_mut(li) {
                Some(c) => c,
                None => &mut [],
            };
            layer_step(
                l,
                &self.offsets[li],
                self.params,
                &mut this[0],
                &self.hs[li],
                c,
                t,
                bc,
                &sources,
            );
            let nd = l.hidden();
            let tape = &mut this[0];
            self.hs[li].copy_from_slice(at(&tape.hout, t, bc, nd));
            if !tape.up.is_empty() {
                let (n, dm) = (l.modules, l.module);
                let rows = (t * bc * n)..((t + 1) * bc * n);
                let up = at_mut(&mut tape.up, t, bc, nd).chunks_exact_mut(dm);
                let hout = at(&tape.hout, t, bc, nd).chunks_exact(dm);
                for ((dst, src), &on) in up.zip(hout).zip(&tape.active[rows]) {
                    if on {
                        dst.copy_from_slice(src);
                    } else {
                        dst.fill(0.0);
                    }
                }
            }
        }
        &self.hs[n_layers - 1]
    }

    /// The final state `[Bc, state_width]` and the tape.
    pub fn finish(self) -> ChunkTape {
        // The tape's streamed rows, before another thread's backward reads them.
        stream_fence();
        let step_made = self.step_made();
        let (d, bc, ppl) = (self.d, self.bc, self.ppl);
        let sw = d.state_width();
        let mut last = take_zeroed(bc * sw);
        let mut col = 0;
        for (li, l) in d.layers.iter().enumerate() {
            let nd = l.hidden();
            for r in 0..bc {
                last[r * sw + col..r * sw + col + nd]
                    .copy_from_slice(&self.hs[li][r * nd..(r + 1) * nd]);
                if ppl == 2 {
                    last[r * sw + col + nd..r * sw + col + 2 * nd]
                        .copy_from_slice(&self.cs[li][r * nd..(r + 1) * nd]);
                }
            }
            col += ppl * nd;
        }
        for v in self.hs.into_iter().chain(self.cs) {
            give(v);
        }
        give(self.khat);
        let xg = if step_made {
            give(self.xg);
            Vec::new()
        } else {
            self.xg
        };
        ChunkTape {
            rows: bc,
            x: self.x,
            resets: self.resets,
            xg,
            layers: self.layers,
            last,
        }
    }
}

/// The input's part of layer 0's slots' keys and values, every step at once, written into the
/// layer's `kv` tape `[T·Bc, S·kvw]` (a slot's other parts add theirs step by step; with
/// `keys_only`, the keys' columns alone: the values' are left unwritten, and unread, when layer
/// 0 pre-gates through precomposed weights).
fn input_projection(
    d: &StackDims,
    o: &LayerParams,
    params: &[f32],
    xc: &[f32],
    keys_only: bool,
    kv: &mut [f32],
) {
    let l0 = &d.layers[0];
    let (e, kvw, s) = (d.input, l0.kv(), l0.slots.len());
    if l0.bypass {
        return;
    }
    for (j, slot) in l0.slots.iter().enumerate() {
        let mut row = 0;
        for &(src, w) in &slot.parts {
            if src == Source::Input {
                let wkv = &params[o.slot_kv[j] + row * kvw..][..w * kvw];
                let cols = if keys_only { l0.heads * l0.key } else { kvw };
                matmul_view(
                    kv,
                    j * kvw,
                    s * kvw,
                    false,
                    View::dense(xc, e),
                    View::cols(wkv, kvw, 0, cols),
                );
            }
            row += w;
        }
    }
}

/// Layer 0's pre-gated input of every step at once (empty when it is not pre-gated; see
/// [`StackDims::pregate_width`]): one matmul per block over all of the chunk's rows, from the
/// input's values (bypassed: the input itself). A layer 0 that precomposes makes its blocks
/// step by step instead (see [`LayerTape::xg_kept`]).
fn pregated_input(
    d: &StackDims,
    o: &LayerParams,
    params: &[f32],
    xc: &[f32],
    kv: &[f32],
    rows: usize,
) -> Vec<f32> {
    let pw = d.pregate_width();
    if pw == 0 {
        return Vec::new();
    }
    let l0 = &d.layers[0];
    let (n, gd, aw, e) = (l0.modules, l0.gates() * l0.module, l0.read(), d.input);
    let w_ih = |i: usize, from: usize, len: usize| {
        View::dense(&params[o.w_ih + i * aw * gd + from * gd..][..len * gd], gd)
    };
    if l0.bypass {
        // A GRU's with the input side's biases, as the step would add them; an LSTM's without
        // (its cell adds both biases).
        let mut xg = if l0.lstm {
            take_overwritten(rows * pw)
        } else {
            take_repeated(&params[o.b_ih..o.b_ih + pw], rows)
        };
        for i in 0..n {
            let x = View::dense(xc, e);
            matmul_view(&mut xg, i * gd, pw, !l0.lstm, x, w_ih(i, 0, e));
        }
        return xg;
    }
    let mut xg = take_overwritten(rows * pw);
    // Every slot reads the input alone (see `pregate_width`): its values are in `kv`.
    let (heads, dk, dv, kvw, s) = (l0.heads, l0.key, l0.value, l0.kv(), l0.slots.len());
    for j in 0..s {
        for h in 0..heads {
            let values = View::cols(kv, s * kvw, j * kvw + heads * dk + h * dv, dv);
            for i in 0..n {
                let block = l0.block(i, j, h);
                matmul_view(&mut xg, block, pw, false, values, w_ih(i, h * dv, dv));
            }
        }
    }
    xg
}

/// A layer's precomposed weights (see [`StackDims::precomposes`]; its slots all `w` wide):
/// `[w, blocks]`, every block `(module i, slot j, head h)` of its pre-gated blocks in their
/// order, `M = W_v,hj W_i[h]` `[w, G·d]` (the slot's value columns of head `h` times the
/// module's input weights' rows of that head).
fn precompose(l: &LayerDims, o: &LayerParams, params: &[f32]) -> Vec<f32> {
    let (n, gd, aw, pw) = (l.modules, l.gates() * l.module, l.read(), l.blocks());
    let (heads, dk, dv, kvw) = (l.heads, l.key, l.value, l.kv());
    let w = l.slots[0].width();
    let mut m = take_overwritten(w * pw);
    for j in 0..l.slots.len() {
        let wkv = &params[o.slot_kv[j]..][..w * kvw];
        for h in 0..heads {
            let values = View::cols(wkv, kvw, heads * dk + h * dv, dv);
            for i in 0..n {
                let block = l.block(i, j, h);
                let w_i = View::dense(&params[o.w_ih + i * aw * gd + h * dv * gd..][..dv * gd], gd);
                matmul_view(&mut m, block, pw, false, values, w_i);
            }
        }
    }
    m
}

/// Layer 0's folded keys' weights `C_hji = W_k,hj W_q,hiᵀ` `[E, n·S·heads·d]` (see
/// [`LayerTape::folded`]): every slot reads the input alone, `E` wide.
fn fold_keys(l: &LayerDims, o: &LayerParams, params: &[f32], e: usize) -> Vec<f32> {
    let (n, dm, heads, dk, kvw, qw) = (l.modules, l.module, l.heads, l.key, l.kv(), l.query());
    let fw = l.folded_keys();
    let mut c = take_overwritten(e * fw);
    for i in 0..n {
        let w_q = &params[o.query + i * dm * qw..][..dm * qw];
        for j in 0..l.slots.len() {
            let w_k = &params[o.slot_kv[j]..][..e * kvw];
            for h in 0..heads {
                matmul_view(
                    &mut c,
                    l.folded_block(i, j, h),
                    fw,
                    false,
                    View::cols(w_k, kvw, h * dk, dk),
                    View::cols(w_q, qw, h * dk, dk).t(),
                );
            }
        }
    }
    c
}

/// The inputs a layer's slots read at one step.
pub(crate) struct SlotSources<'a> {
    /// The layer below's upward output at this step `[Bc, n_below·d_below]`.
    pub below: Option<&'a [f32]>,
    /// The layer above's state at `t − 1` after resets `[Bc, n_above·d_above]`.
    pub above: Option<&'a [f32]>,
    /// Layer 0, when pre-gated: the step's pre-gated input `[Bc, pregate_width]`.
    pub xg: Option<&'a [f32]>,
    /// Layer 0 with folded keys: the step's `k̂` `[Bc, n·S·heads·d]`.
    pub khat: Option<&'a [f32]>,
}

impl SlotSources<'_> {
    /// The step's rows of a non-input source.
    pub fn get(&self, src: Source) -> &[f32] {
        match src {
            Source::Below => self.below.expect("a bottom-up slot has a layer below"),
            Source::Above => self.above.expect("a top-down slot has a layer above"),
            Source::Input => unreachable!("the input's projection is made before the steps"),
        }
    }
}

/// One layer's step `t` on the chunk's rows, writing the tape's step-`t` rows, from its state
/// `hp` (`h_{t−1}` after resets `[Bc, n·d]`: read from the state, not from the tape's copy,
/// which is streamed out of the cache); an LSTM layer's cell state `c` (`[Bc, n·d]`, `c_{t−1}`
/// after resets; empty for GRU cells) becomes `c_t`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn layer_step(
    l: &LayerDims,
    o: &LayerParams,
    params: &[f32],
    tape: &mut LayerTape,
    hp: &[f32],
    c: &mut [f32],
    t: usize,
    bc: usize,
    sources: &SlotSources,
) {
    let (n, dm, nd, g) = (l.modules, l.module, l.hidden(), l.gates());
    let (heads, kvw, qw, aw) = (l.heads, l.kv(), l.query(), l.read());
    let s = l.slots.len();

    if l.bypass {
        // Every module reads the input as is (its gates are pre-computed); all scores tie.
        let active = &mut tape.active[t * bc * n..(t + 1) * bc * n];
        let zeros = vec![0.0f32; n];
        for r in 0..bc {
            top_k_into(&zeros, l.top_k, &mut active[r * n..(r + 1) * n]);
        }
    }
    // Keys and values of every slot: the input's part is there from before the steps, the
    // other sources' parts add theirs (folded keys: none, every slot is the input).
    let folds = !tape.folded.is_empty();
    if !l.bypass && !folds {
        let kv = at_mut(&mut tape.kv, t, bc, s * kvw);
        for (j, slot) in l.slots.iter().enumerate() {
            let mut row = 0;
            let mut first = !slot.parts.iter().any(|&(src, _)| src == Source::Input);
            for &(src, w) in &slot.parts {
                let wkv = &params[o.slot_kv[j] + row * kvw..][..w * kvw];
                row += w;
                if src == Source::Input {
                    continue;
                }
                if !tape.precomposed.is_empty() {
                    // Pre-gated step by step: the source's keys, and its blocks `s_t · M`
                    // instead of its values.
                    let x = View::dense(sources.get(src), w);
                    let keys = View::cols(wkv, kvw, 0, heads * l.key);
                    matmul_view(kv, j * kvw, s * kvw, !first, x, keys);
                    let pw = l.blocks();
                    let m = View::dense(&tape.precomposed, pw);
                    matmul_view(at_mut(&mut tape.xg, t, bc, pw), 0, pw, false, x, m);
                } else {
                    let x = sources.get(src);
                    matmul_view(
                        kv,
                        j * kvw,
                        s * kvw,
                        !first,
                        View::dense(x, w),
                        View::dense(wkv, kvw),
                    );
                }
                first = false;
            }
        }
    }
    // Queries per module (folded keys: none, the scores are `h_{t−1}·k̂`).
    let compact = tape.compact;
    if !l.bypass && !folds {
        let q = if compact {
            &mut tape.step_q[..bc * n * qw]
        } else {
            at_mut(&mut tape.q, t, bc, n * qw)
        };
        group_matmul(q, false, hp, &params[o.query..], n, dm, qw, false);
    }
    // Input attention over [null, slots], the reads, and the top-k selection.
    if !l.bypass {
        // Pre-gated: the cells read the attention and the pre-gated blocks, not the reads.
        let reads = sources.xg.is_none() && tape.precomposed.is_empty();
        let (kv, q, khat) = if folds {
            let khat = sources.khat.expect("folded keys are made by the step");
            (&[][..], &[][..], khat)
        } else if compact {
            (
                at(&tape.kv, t, bc, s * kvw),
                &tape.step_q[..bc * n * qw],
                &[][..],
            )
        } else {
            (
                at(&tape.kv, t, bc, s * kvw),
                at(&tape.q, t, bc, n * qw),
                &[][..],
            )
        };
        pulp::Arch::new().dispatch(InputAttention {
            l,
            kv,
            q,
            khat,
            hp,
            p: at_mut(&mut tape.p, t, bc, l.attention()),
            reads: &mut tape.u[..if reads { bc * n * aw } else { 0 }],
            active: &mut tape.active[t * bc * n..(t + 1) * bc * n],
        });
    }
    // The cells.
    {
        let gd = g * dm;
        let acts = if compact {
            &mut tape.step_gates[..bc * n * gd]
        } else {
            at_mut(&mut tape.acts, t, bc, n * gd)
        };
        // The biases: an LSTM's `b_ih + b_hh`, added by its cell (or the pre-gated input); a
        // GRU's input side `b_ih` (held from the start by a bypassed layer's gates tape,
        // `x W_ih + b_ih`) and hidden side `b_hh`, copied into the rows its products add to.
        let (b_ih, b_hh) = (
            &params[o.b_ih..o.b_ih + n * gd],
            &params[o.b_hh..o.b_hh + n * gd],
        );
        let mut gh = take_repeated(if l.lstm { &[] } else { b_hh }, bc);
        let mut bias = take_copy(if l.bypass && !l.lstm { &[] } else { b_ih });
        if l.lstm {
            bias.iter_mut().zip(b_hh).for_each(|(a, b)| *a += b);
        }
        // Layer 0's pre-gated input of every step, or this step's blocks.
        let xg = sources
            .xg
            .or_else(|| (!tape.xg.is_empty()).then(|| at(&tape.xg, t, bc, l.blocks())));
        match xg {
            Some(xg) => {
                // `u_i W_i = Σ_{h,j} p_hij (v_hj W_i)` from the pre-gated blocks, after the bias.
                pulp::Arch::new().dispatch(PregatedInput {
                    l,
                    gates: acts,
                    bias: &bias,
                    p: at(&tape.p, t, bc, l.attention()),
                    xg,
                });
            }
            None if l.bypass => {}
            None => {
                // An LSTM cell adds the biases itself (one pass fewer over the gates).
                if !l.lstm {
                    for row in acts.chunks_exact_mut(n * gd) {
                        row.copy_from_slice(&bias);
                    }
                }
                let u = &tape.u[..bc * n * aw];
                group_matmul(acts, !l.lstm, u, &params[o.w_ih..], n, aw, gd, false)
            }
        }
        let cell_bias = l.lstm && xg.is_none();
        let dst = if l.lstm { &mut *acts } else { &mut gh[..] };
        group_matmul(dst, true, hp, &params[o.w_hh..], n, dm, gd, false);
        let aux = if compact {
            &mut tape.step_aux[..bc * nd]
        } else {
            at_mut(&mut tape.aux, t, bc, nd)
        };
        let hn = at_mut(&mut tape.hn, t, bc, nd);
        let cp = if !l.lstm {
            &[][..]
        } else if compact {
            &tape.step_cp[..bc * nd]
        } else {
            at(&tape.cp, t, bc, nd)
        };
        if l.lstm {
            // Every (row, module) is a row of the LSTM kernel's gate step, whose loop is
            // compiled for the CPU's vector width (the same arithmetic in the same order as the
            // step loop). An inactive module keeps `c_{t−1}`.
            pulp::Arch::new().dispatch(GateForward {
                h: dm,
                gates: acts,
                c: &mut *c,
                out: hn,
                tanh_c: aux,
                bias: if cell_bias { &bias } else { &[] },
            });
            let active = &tape.active[t * bc * n..(t + 1) * bc * n];
            for (ri, _) in active.iter().enumerate().filter(|p| !*p.1) {
                c[ri * dm..(ri + 1) * dm].copy_from_slice(&cp[ri * dm..(ri + 1) * dm]);
            }
        } else {
            // As the LSTM's: every (row, module) is a row of the GRU kernel's gate step.
            pulp::Arch::new().dispatch(GruGateForward {
                h: dm,
                gates: acts,
                gh: &gh,
                h_prev: hp,
                out: hn,
                gh_n: aux,
            });
        }
        give(gh);
        give(bias);
        if compact {
            // The active (row, module) pairs' queries, `c_{t−1}`, gates and `aux` onto the tape.
            let (active, ka) = (
                &tape.active[t * bc * n..(t + 1) * bc * n],
                l.active_per_row(),
            );
            for (step, kept, w) in [
                (&tape.step_q, &mut tape.q, if folds { 0 } else { qw }),
                (&tape.step_cp, &mut tape.cp, if l.lstm { dm } else { 0 }),
                (&tape.step_gates, &mut tape.acts, gd),
                (&tape.step_aux, &mut tape.aux, dm),
            ] {
                keep_active(step, active, w, at_mut(kept, t, bc, ka * w));
            }
        }
        // Layer 0 precomposed: the active pairs' pre-gated blocks and folded keys (every
        // module's when all are active), which the attention's gradient reads.
        if !tape.xg_kept.is_empty() {
            let active = &tape.active[t * bc * n..(t + 1) * bc * n];
            let kept = if compact { l.active_per_row() } else { n };
            let (bw, kw) = (l.blocks() / n, l.folded_keys() / n);
            let xg = sources.xg.expect("a precomposed layer 0 is pre-gated");
            keep_active(xg, active, bw, at_mut(&mut tape.xg_kept, t, bc, kept * bw));
            if let Some(khat) = sources.khat {
                keep_active(khat, active, kw, at_mut(&mut tape.khat, t, bc, kept * kw));
            }
        }
    }
    // Communication and the masked update.
    let active = &tape.active[t * bc * n..(t + 1) * bc * n];
    let hn = at(&tape.hn, t, bc, nd);
    let hout = at_mut(&mut tape.hout, t, bc, nd);
    let Some(c) = l.comm else {
        for r in 0..bc {
            for i in 0..n {
                let span = r * nd + i * dm..r * nd + (i + 1) * dm;
                let from = if active[r * n + i] { hn } else { hp };
                hout[span.clone()].copy_from_slice(&from[span]);
            }
        }
        return;
    };
    let ch = c.heads;
    tape.step_rows.fill(active, n);
    comm_projection(l, o, params, hn, &tape.step_rows, &mut tape.qkv);
    if c.old_state {
        let src = at_mut(&mut tape.src, t, bc, nd);
        for r in 0..bc {
            for i in 0..n {
                let span = r * nd + i * dm..r * nd + (i + 1) * dm;
                let from = if active[r * n + i] { hn } else { hp };
                src[span.clone()].copy_from_slice(&from[span]);
            }
        }
        old_state_projection(l, o, params, at(&tape.src, t, bc, nd), &mut tape.kvs);
    }
    let qkv = &tape.qkv[..];
    let keys: &[f32] = if c.old_state { &tape.kvs } else { qkv };
    let (ow, ka) = (c.reads(), l.active_per_row());
    pulp::Arch::new().dispatch(CommAttention {
        c,
        n,
        bc,
        qkv,
        keys,
        active,
        att: at_mut(&mut tape.att, t, bc, ka * ch * n),
        reads: &mut tape.o[..bc * ka * ow],
    });
    // Output projection of the active modules' reads at once: `[Bc·k, heads·dv]·[heads·dv, 2d]`.
    let mut go = take_repeated(&params[o.comm_bias..o.comm_bias + 2 * dm], bc * ka);
    matmul_view(
        &mut go,
        0,
        2 * dm,
        true,
        View::dense(&tape.o[..bc * ka * ow], ow),
        View::dense(&params[o.comm_out..o.comm_out + ow * 2 * dm], 2 * dm),
    );
    pulp::Arch::new().dispatch(CommUpdate {
        go: &go,
        sg: at_mut(&mut tape.sg, t, bc, ka * dm),
        tf: at_mut(&mut tape.tf, t, bc, ka * dm),
        hn,
        hp,
        hout,
        active,
        module: dm,
    });
    give(go);
}

/// One step's input attention over `[null, slots…]` for a chunk, compiled for the CPU's vector
/// width: per row, every head's and module's scores `q·k_j/√d_k` (the null slot's 0 first) into
/// `p`, exponentiated in one pass over the row and normalised per (head, module); the reads
/// `Σ_j p_j v_j` into `reads` (empty when pre-gated); the top-k by the null slot's mean weight.
struct InputAttention<'a> {
    l: &'a LayerDims,
    /// The step's slot keys and values `[Bc, S·(heads·(dk + dv))]` (empty when folded).
    kv: &'a [f32],
    q: &'a [f32],
    /// Folded keys (see [`StackDims::folds_keys`]): the step's `k̂` `[Bc, n·S·heads·d]`, scored
    /// against `hp` instead of queries against keys; else empty.
    khat: &'a [f32],
    /// `h_{t−1}` `[Bc, n·d]`.
    hp: &'a [f32],
    p: &'a mut [f32],
    reads: &'a mut [f32],
    active: &'a mut [bool],
}

impl pulp::WithSimd for InputAttention<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let l = self.l;
        let (n, s, heads) = (l.modules, l.slots.len(), l.heads);
        let (dk, dv, kvw, qw, aw, pw) =
            (l.key, l.value, l.kv(), l.query(), l.read(), l.attention());
        let scale = l.input_scale();
        let bc = self.active.len() / n.max(1);
        let (dm, fw) = (l.module, l.folded_keys());
        let folds = !self.khat.is_empty();
        let mut inact = vec![0.0f32; n];
        for r in 0..bc {
            let kv_r = if folds {
                &[][..]
            } else {
                &self.kv[r * s * kvw..(r + 1) * s * kvw]
            };
            let pr_all = &mut self.p[r * pw..(r + 1) * pw];
            for h in 0..heads {
                for i in 0..n {
                    let pr = &mut pr_all[(h * n + i) * (1 + s)..][..1 + s];
                    pr[0] = 0.0;
                    if folds {
                        let hv = &self.hp[r * n * dm + i * dm..][..dm];
                        for j in 0..s {
                            let kh = &self.khat[r * fw + l.folded_block(i, j, h)..][..dm];
                            pr[1 + j] = dot_simd(simd, hv, kh) * scale;
                        }
                    } else {
                        let qv = &self.q[r * n * qw + i * qw + h * dk..][..dk];
                        for j in 0..s {
                            let kvec = &kv_r[j * kvw + h * dk..][..dk];
                            pr[1 + j] = dot_simd(simd, qv, kvec) * scale;
                        }
                    }
                    let m = pr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    pr.iter_mut().for_each(|v| *v -= m);
                }
            }
            exp_in_place(simd, pr_all);
            inact.fill(0.0);
            for (g, pr) in pr_all.chunks_exact_mut(1 + s).enumerate() {
                let total: f32 = pr.iter().sum();
                pr.iter_mut().for_each(|v| *v /= total);
                let (h, i) = (g / n, g % n);
                inact[i] += pr[0];
                if self.reads.is_empty() {
                    continue;
                }
                let ur = &mut self.reads[r * n * aw + i * aw + h * dv..][..dv];
                weighted_sum_simd(simd, ur, &pr[1..], |j| {
                    &kv_r[j * kvw + heads * dk + h * dv..][..dv]
                });
            }
            inact.iter_mut().for_each(|v| *v /= heads as f32);
            top_k_into(&inact, l.top_k, &mut self.active[r * n..(r + 1) * n]);
        }
    }
}

/// The pre-gated gate inputs of a step, compiled for the CPU's vector width: each row's and
/// module's `bias + Σ_{h,j} p_hij (v_hj W_i)` from the pre-gated blocks `xg` (the same sums, in
/// the same order, as a scalar loop).
struct PregatedInput<'a> {
    l: &'a LayerDims,
    gates: &'a mut [f32],
    /// `[n·G·d]`.
    bias: &'a [f32],
    /// The step's input attention `[Bc, heads·n·(1 + S)]` (null slot first).
    p: &'a [f32],
    /// The step's pre-gated blocks `[Bc, n·S·heads·G·d]`.
    xg: &'a [f32],
}

impl pulp::WithSimd for PregatedInput<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        let l = self.l;
        let (n, gd, heads, slots) = (l.modules, l.gates() * l.module, l.heads, l.slots.len());
        let rows = self.gates.len() / (n * gd).max(1);
        let (pw, xw) = (heads * n * (1 + slots), self.xg.len() / rows.max(1));
        for (r, row) in self.gates.chunks_exact_mut(n * gd).enumerate() {
            for (i, dst) in row.chunks_exact_mut(gd).enumerate() {
                let bias = &self.bias[i * gd..(i + 1) * gd];
                if heads * slots == 0 {
                    dst.copy_from_slice(bias);
                }
                for h in 0..heads {
                    let pr = &self.p[r * pw + (h * n + i) * (1 + slots)..][..1 + slots];
                    for (j, &pj) in pr[1..].iter().enumerate() {
                        let block = l.block(i, j, h);
                        let x = &self.xg[r * xw + block..][..gd];
                        if h == 0 && j == 0 {
                            offset_scale_simd(s, dst, bias, pj, x);
                        } else {
                            axpy_simd(s, dst, pj, x);
                        }
                    }
                }
            }
        }
    }
}

/// The communication's gated update of a step, compiled for the CPU's vector width: from the
/// output projection `go` of the active modules' reads (a row per active module: `tanh` half,
/// then `σ` half), `tf = tanh`, `sg = σ`, and `h = h̃ + sg·tf` for active modules, `h_{t−1}`
/// for inactive ones.
struct CommUpdate<'a> {
    go: &'a [f32],
    sg: &'a mut [f32],
    tf: &'a mut [f32],
    hn: &'a [f32],
    hp: &'a [f32],
    hout: &'a mut [f32],
    active: &'a [bool],
    module: usize,
}

impl pulp::WithSimd for CommUpdate<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let dm = self.module;
        let rows = self.go.chunks_exact(2 * dm);
        for ((go, tf), sg) in rows
            .zip(self.tf.chunks_exact_mut(dm))
            .zip(self.sg.chunks_exact_mut(dm))
        {
            let (gt, gs) = go.split_at(dm);
            tf.iter_mut().zip(gt).for_each(|(o, &x)| *o = tanh(x));
            sg.iter_mut().zip(gs).for_each(|(o, &x)| *o = sigmoid(x));
        }
        let mut a = 0;
        for (ri, &on) in self.active.iter().enumerate() {
            let span = ri * dm..(ri + 1) * dm;
            let out = &mut self.hout[span.clone()];
            if on {
                let (sg, tf) = (&self.sg[a * dm..][..dm], &self.tf[a * dm..][..dm]);
                for (((o, &h), &g), &f) in out.iter_mut().zip(&self.hn[span]).zip(sg).zip(tf) {
                    *o = h + g * f;
                }
                a += 1;
            } else {
                out.copy_from_slice(&self.hp[span]);
            }
        }
    }
}

/// One step's communication attention of a chunk's active modules, compiled for the CPU's
/// vector width (its dot products and weighted sums are `key`/`value` long): per row, active
/// module and head, the softmax of `q·k_j/√d_k` over the `n` modules into `att` and the
/// weighted values into the module's row of `reads` (its place among the row's active ones).
struct CommAttention<'a> {
    c: CommDims,
    n: usize,
    bc: usize,
    /// Queries (of active modules), keys and values `[Bc, n·qkv]`.
    qkv: &'a [f32],
    /// Where the keys and values are read: `qkv`, or the old-state projection.
    keys: &'a [f32],
    active: &'a [bool],
    /// `[Bc·k, heads·n]`: a row per active module, as `reads`.
    att: &'a mut [f32],
    reads: &'a mut [f32],
}

impl pulp::WithSimd for CommAttention<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        let (c, n) = (self.c, self.n);
        comm_heads::dispatch(s, self, c, n);
    }
}

impl comm_heads::HeadRows for CommAttention<'_> {
    #[inline(always)]
    fn rows<S: pulp::Simd, const N: usize>(self, s: S) {
        let (c, n) = (self.c, self.n);
        let (ch, cv, cw, ow) = (c.heads, c.value, c.qkv(), c.reads());
        let (ka, scale) = (self.reads.len() / (self.bc * ow).max(1), c.scale());
        // One module's scores for every head `[heads, n]`, exponentiated in one SIMD pass.
        let mut scores = vec![0.0f32; ch * n];
        for r in 0..self.bc {
            let base = r * n * cw;
            // `a`: the module's place among the row's active modules (its rows of `o`, `sg`, `tf`).
            let active_modules = (0..n).filter(|&i| self.active[r * n + i]);
            for (a, i) in (r * ka..).zip(active_modules) {
                let head = |h: usize| c.head_at(base, i, h, n);
                for (h, sc) in scores.chunks_exact_mut(n).enumerate() {
                    comm_heads::head_scores::<S, N>(s, &head(h), self.qkv, self.keys, scale, sc);
                    let m = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    sc.iter_mut().for_each(|v| *v -= m);
                }
                exp_in_place(s, &mut scores);
                for (h, e) in scores.chunks_exact(n).enumerate() {
                    let total: f32 = e.iter().sum();
                    let ar = &mut self.att[(a * ch + h) * n..][..n];
                    ar.iter_mut().zip(e).for_each(|(o, &e)| *o = e / total);
                    let orow = &mut self.reads[a * ow + h * cv..][..cv];
                    comm_heads::head_read::<S, N>(s, &head(h), ar, self.keys, orow);
                }
            }
        }
    }
}

/// `v ← e^v` at the width of `s` ([`exp_simd`], its twin [`exp_fused`] on the tail).
#[inline(always)]
fn exp_in_place<S: pulp::Simd>(s: S, v: &mut [f32]) {
    let (head, tail) = S::as_mut_simd_f32s(v);
    for x in head {
        *x = exp_simd(s, *x);
    }
    for x in tail {
        *x = exp_fused(*x);
    }
}

/// The communication's projection of `h̃` (`hn [Bc, n·d]`) into `qkv [Bc, n·qkv]`: every
/// module's keys and values (unless they come from the old state) and the queries of the active
/// modules (`on`) only (an inactive module's update is discarded). The backward calls it again
/// with the same operands, so it recomputes the forward's values bit for bit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn comm_projection(
    l: &LayerDims,
    o: &LayerParams,
    params: &[f32],
    hn: &[f32],
    on: &StepRows,
    qkv: &mut [f32],
) {
    let Some(c) = l.comm else { return };
    let (n, dm, nd) = (l.modules, l.module, l.hidden());
    let (cw, cq) = (c.qkv(), c.heads * c.key);
    for i in 0..n {
        let w_i = &params[o.comm_qkv + i * dm * cw..][..dm * cw];
        if !c.old_state {
            matmul_view(
                qkv,
                i * cw + cq,
                n * cw,
                false,
                View::cols(hn, nd, i * dm, dm),
                View::cols(w_i, cw, cq, cw - cq),
            );
        }
        let on = on.module(i);
        let h_on = take_gathered(hn, nd, i * dm, dm, on);
        let mut q_on = take_overwritten(on.len() * cq);
        matmul_view(
            &mut q_on,
            0,
            cq,
            false,
            View::dense(&h_on, dm),
            View::cols(w_i, cw, 0, cq),
        );
        for (a, &r) in on.iter().enumerate() {
            qkv[r * n * cw + i * cw..][..cq].copy_from_slice(&q_on[a * cq..(a + 1) * cq]);
        }
        give(h_on);
        give(q_on);
    }
}

/// With old-state keys: the communication's projection of the key source `src [Bc, n·d]` (`h̃`
/// of active modules, `h_{t−1}` of inactive ones) into `kvs [Bc, n·qkv]` (the forward, and the
/// backward's recomputation).
pub(crate) fn old_state_projection(
    l: &LayerDims,
    o: &LayerParams,
    params: &[f32],
    src: &[f32],
    kvs: &mut [f32],
) {
    if let Some(c) = l.comm {
        let (n, dm) = (l.modules, l.module);
        group_matmul(
            kvs,
            false,
            src,
            &params[o.comm_qkv..],
            n,
            dm,
            c.qkv(),
            false,
        );
    }
}

/// The per-module (block-diagonal) matmul: for every module `i`, columns `i·w_out..` of `dst`
/// `[rows, n·w_out]` (+)= columns `i·w_in..` of `src` `[rows, n·w_in]` times module `i`'s
/// weight, the `i`-th `[w_in, w_out]` block of `weights` — or, with `transposed`, the transpose
/// of its `[w_out, w_in]` block (the backward of the forward map).
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_matmul(
    dst: &mut [f32],
    accumulate: bool,
    src: &[f32],
    weights: &[f32],
    n: usize,
    w_in: usize,
    w_out: usize,
    transposed: bool,
) {
    for i in 0..n {
        let w = &weights[i * w_in * w_out..(i + 1) * w_in * w_out];
        let w = if transposed {
            View::dense(w, w_in).t()
        } else {
            View::dense(w, w_out)
        };
        matmul_view(
            dst,
            i * w_out,
            n * w_out,
            accumulate,
            View::cols(src, n * w_in, i * w_in, w_in),
            w,
        );
    }
}

/// The active (row, module) pairs' `w`-wide rows of a step's `[Bc·n, w]` buffer, in order, into
/// `dst` `[Bc·k, w]` (nothing when `w = 0`: a GRU's `c`).
fn keep_active(src: &[f32], active: &[bool], w: usize, dst: &mut [f32]) {
    if w == 0 {
        return;
    }
    let on = active.iter().enumerate().filter(|p| *p.1);
    for (to, (ri, _)) in dst.chunks_exact_mut(w).zip(on) {
        stream_copy(to, &src[ri * w..(ri + 1) * w]);
    }
}

/// Hard top-k by least inactivity with the deterministic tie-break of
/// [`crate::attention::top_k_active`]: `j` beats `i` if `p_j < p_i`, or `p_j == p_i` and `j > i`.
fn top_k_into(inactivity: &[f32], k: usize, active: &mut [bool]) {
    let n = inactivity.len();
    for i in 0..n {
        let pi = inactivity[i];
        let beaten = (0..n)
            .filter(|&j| inactivity[j] < pi || (inactivity[j] == pi && j > i))
            .count();
        active[i] = k >= n || beaten < k;
    }
}

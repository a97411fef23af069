//! The one interface every recurrent core implements, and the sequence loop built on it.

use burn::tensor::{Bool, Device, Tensor, TensorData};

use crate::diagnostics::StepDiagnostics;
use crate::error::{MemoryError, Result};
use crate::seq_layout::SeqLayout;
use crate::state::{CoreState, StateLayout};

/// Output of one step: `(y [B, H], new state, diagnostics if asked for)`.
pub type StepOutput = (Tensor<2>, CoreState, Option<StepDiagnostics>);

/// Output of a run over steps: `(per-step outputs, final state, per-step diagnostics)`.
pub type StepsOutput = (Vec<Tensor<2>>, CoreState, Vec<StepDiagnostics>);

/// Per-step row resets of a sequence: `resets[t]` is `Some([B, 1] mask)` when any row starts a
/// new episode at step `t`.
pub type Resets = Vec<Option<Tensor<2, Bool>>>;

/// A recurrent core: initial state, one step, and a sequence forward with in-sequence resets.
///
/// Implementors provide the `*_unchecked` methods; callers use the checked ones.
pub trait RecurrentCore {
    /// Width `E` of the input at each step.
    fn input_size(&self) -> usize;

    /// Width `H` of the output at each step.
    fn hidden_size(&self) -> usize;

    /// The components of this core's state.
    fn state_layout(&self) -> StateLayout;

    /// Index of the state part that holds the last output `y_{t−1}` (the recurrent hidden state).
    fn output_part(&self) -> usize;

    /// One step, shapes already checked.
    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput;

    /// Several steps with resets, shapes already checked. Cores with per-sequence caches
    /// (screened memory) override this; the default loops over [`RecurrentCore::step_unchecked`].
    fn forward_steps_unchecked(
        &self,
        xs: Vec<Tensor<2>>,
        mut state: CoreState,
        resets: &Resets,
        diagnostics: bool,
    ) -> StepsOutput {
        let mut ys = Vec::with_capacity(xs.len());
        let mut diags = Vec::new();
        for (t, x) in xs.into_iter().enumerate() {
            if let Some(Some(mask)) = resets.get(t) {
                state = state.reset_rows_mask(mask.clone());
            }
            let (y, s, d) = self.step_unchecked(x, state, diagnostics);
            state = s;
            ys.push(y);
            if let Some(d) = d {
                diags.push(d);
            }
        }
        (ys, state, diags)
    }

    /// A fused whole-sequence forward, where this core has one for the device: `x` in
    /// `layout`'s order (time-major `[T, B, E]`, or batch-major `[B, T, E]` for a kernel that
    /// reads and writes those rows in place), `episode_starts` row-major `[B, T]` (already
    /// checked); returns the outputs in the same order (`[T, B, H]` / `[B, T, H]`) and the final
    /// state. `None` (the default): use the step loop — or, for a batch-major call,
    /// `forward_sequence` transposes around the time-major one (two copies).
    fn fused_sequence(
        &self,
        _x: &Tensor<3>,
        _layout: SeqLayout,
        _state: &CoreState,
        _episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        None
    }

    /// The initial (all-zero) state for `batch` rows.
    fn init_state(&self, batch: usize, device: &Device) -> CoreState {
        CoreState::zeros(&self.state_layout(), batch, device)
    }

    /// Rebuilds a state of this core from a flat buffer (see [`CoreState::to_flat`]).
    fn state_from_flat(&self, data: &[f32], batch: usize, device: &Device) -> Result<CoreState> {
        CoreState::from_flat(&self.state_layout(), data, batch, device)
    }

    /// One step: `x [B, E]` and the state give `y [B, H]` and the next state.
    fn step(&self, x: Tensor<2>, state: CoreState) -> Result<(Tensor<2>, CoreState)> {
        self.check_step(&x, &state)?;
        let (y, s, _) = self.step_unchecked(x, state, false);
        Ok((y, s))
    }

    /// One step that also returns its diagnostics.
    fn step_with_diagnostics(
        &self,
        x: Tensor<2>,
        state: CoreState,
    ) -> Result<(Tensor<2>, CoreState, StepDiagnostics)> {
        self.check_step(&x, &state)?;
        let (y, s, d) = self.step_unchecked(x, state, true);
        Ok((y, s, d.unwrap_or_default()))
    }

    /// Runs `x [B, T, E]` from `state`; a row's state is reset to zero before every step `t`
    /// with `episode_starts[b * T + t] == true` (row-major `[B, T]`). Returns `y [B, T, H]` and
    /// the state after the last step.
    ///
    /// Each step slices `x`; when `x` carries gradients the slices' backward costs `O(B·T·E)`
    /// each, so prefer [`RecurrentCore::forward_steps`] with per-step inputs in that case.
    fn forward_sequence(
        &self,
        x: Tensor<3>,
        state: CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Result<(Tensor<3>, CoreState)> {
        let (y, s, _) = self.sequence_impl(x, state, episode_starts, false)?;
        Ok((y, s))
    }

    /// [`RecurrentCore::forward_sequence`] that also returns per-step diagnostics.
    fn forward_sequence_with_diagnostics(
        &self,
        x: Tensor<3>,
        state: CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Result<(Tensor<3>, CoreState, Vec<StepDiagnostics>)> {
        self.sequence_impl(x, state, episode_starts, true)
    }

    /// Runs per-step inputs `xs[t]: [B, E]`; resets as in [`RecurrentCore::forward_sequence`]
    /// (`episode_starts` row-major `[B, T]`). Returns per-step outputs `[B, H]`.
    fn forward_steps(
        &self,
        xs: Vec<Tensor<2>>,
        state: CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Result<(Vec<Tensor<2>>, CoreState)> {
        for x in &xs {
            self.check_step(x, &state)?;
        }
        let batch = state.batch_size();
        let device = match xs.first() {
            Some(x) => x.device(),
            None => return Ok((vec![], state)),
        };
        let resets = build_resets(episode_starts, batch, xs.len(), &device)?;
        let (ys, s, _) = self.forward_steps_unchecked(xs, state, &resets, false);
        Ok((ys, s))
    }

    /// [`RecurrentCore::forward_steps`] with the outputs concatenated time-major `[T·B, H]`;
    /// uses the core's fused sequence kernel where it has one (`T ≥ 1`).
    fn forward_steps_concat(
        &self,
        xs: Vec<Tensor<2>>,
        state: CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Result<(Tensor<2>, CoreState)> {
        let t_len = xs.len();
        if t_len == 0 {
            return Err(MemoryError::Shape {
                what: "step inputs xs",
                expected: "at least one time step".into(),
                got: vec![0],
            });
        }
        for x in &xs {
            self.check_step(x, &state)?;
        }
        let batch = state.batch_size();
        build_resets(episode_starts, batch, t_len, &xs[0].device())?;
        let x = Tensor::stack(xs.clone(), 0);
        if let Some((y, s)) = self.fused_sequence(&x, SeqLayout::TimeMajor, &state, episode_starts)
        {
            return Ok((y.reshape([t_len * batch, self.hidden_size()]), s));
        }
        let (ys, s) = self.forward_steps(xs, state, episode_starts)?;
        Ok((Tensor::cat(ys, 0), s))
    }

    /// Checks the shapes of one step's input and state.
    fn check_step(&self, x: &Tensor<2>, state: &CoreState) -> Result<()> {
        let [b, e] = x.dims();
        if e != self.input_size() {
            return Err(MemoryError::Shape {
                what: "step input x",
                expected: format!("[B, {}]", self.input_size()),
                got: vec![b, e],
            });
        }
        state.check(&self.state_layout(), b)
    }

    /// Shared body of the sequence forwards.
    fn sequence_impl(
        &self,
        x: Tensor<3>,
        state: CoreState,
        episode_starts: Option<&[bool]>,
        diagnostics: bool,
    ) -> Result<(Tensor<3>, CoreState, Vec<StepDiagnostics>)> {
        let [b, t_len, e] = x.dims();
        if e != self.input_size() {
            return Err(MemoryError::Shape {
                what: "sequence input x",
                expected: format!("[B, T, {}]", self.input_size()),
                got: vec![b, t_len, e],
            });
        }
        if t_len == 0 {
            return Err(MemoryError::Shape {
                what: "sequence input x",
                expected: "at least one time step".into(),
                got: vec![b, t_len, e],
            });
        }
        state.check(&self.state_layout(), b)?;
        let device = x.device();
        let resets = build_resets(episode_starts, b, t_len, &device)?;
        if !diagnostics {
            let fused = self
                .fused_sequence(&x, SeqLayout::BatchMajor, &state, episode_starts)
                .or_else(|| {
                    let x_tm = x.clone().swap_dims(0, 1);
                    let (y, s) =
                        self.fused_sequence(&x_tm, SeqLayout::TimeMajor, &state, episode_starts)?;
                    Some((y.swap_dims(0, 1), s))
                });
            if let Some((y, s)) = fused {
                return Ok((y, s, vec![]));
            }
        }
        let xs: Vec<Tensor<2>> = (0..t_len)
            .map(|t| x.clone().narrow(1, t, 1).reshape([b, e]))
            .collect();
        let (ys, s, d) = self.forward_steps_unchecked(xs, state, &resets, diagnostics);
        Ok((Tensor::stack(ys, 1), s, d))
    }
}

/// Turns row-major `[B, T]` episode-start flags into per-step reset masks.
pub fn build_resets(
    episode_starts: Option<&[bool]>,
    batch: usize,
    steps: usize,
    device: &Device,
) -> Result<Resets> {
    let Some(starts) = episode_starts else {
        return Ok(vec![None; steps]);
    };
    if starts.len() != batch * steps {
        return Err(MemoryError::Shape {
            what: "episode_starts",
            expected: format!("{} flags (row-major [B={batch}, T={steps}])", batch * steps),
            got: vec![starts.len()],
        });
    }
    Ok((0..steps)
        .map(|t| {
            let col: Vec<bool> = (0..batch).map(|b| starts[b * steps + t]).collect();
            col.iter()
                .any(|&v| v)
                .then(|| Tensor::<2, Bool>::from_data(TensorData::new(col, [batch, 1]), device))
        })
        .collect())
}

/// Row-major `[B, T]` episode starts as time-major `[T·B]` flags; `None` when no row resets.
pub(crate) fn time_major_flags(
    episode_starts: Option<&[bool]>,
    batch: usize,
    steps: usize,
) -> Option<Vec<bool>> {
    let starts = episode_starts.filter(|s| s.iter().any(|&v| v))?;
    Some(
        (0..steps * batch)
            .map(|k| starts[(k % batch) * steps + k / batch])
            .collect(),
    )
}

/// Reads a `[B, T]` boolean tensor into the row-major flags the sequence forwards take.
pub fn episode_starts_to_vec(starts: Tensor<2, Bool>) -> Vec<bool> {
    starts
        .into_data()
        .try_into_vec_as::<bool>()
        .unwrap_or_default()
}

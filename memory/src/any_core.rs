//! `Core` and `BaseCore`: module enums that let policies use any core uniformly.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::brims::Brims;
use crate::core::{RecurrentCore, Resets, StepOutput, StepsOutput};
use crate::gru::Gru;
use crate::lstm::Lstm;
use crate::rims::Rims;
use crate::screened::Screened;
use crate::state::{CoreState, StateLayout};

/// A core that screened memory can wrap (every core except screened memory itself).
// Variants differ in size; cores are built once per policy, and burn's `Module` derive does not
// support boxed fields, so the size difference is accepted.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum BaseCore {
    /// LSTM.
    Lstm(Lstm),
    /// GRU.
    Gru(Gru),
    /// RIMs.
    Rims(Rims),
    /// BRIMs.
    Brims(Brims),
}

/// Any recurrent core of this crate; what policies hold.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Core {
    /// LSTM.
    Lstm(Lstm),
    /// GRU.
    Gru(Gru),
    /// RIMs.
    Rims(Rims),
    /// BRIMs.
    Brims(Brims),
    /// Relevancy-screened memory around a base core (also the RelLSTM form).
    Screened(Screened),
}

macro_rules! delegate {
    ($self:ident, $c:ident => $e:expr, [$($v:ident),*]) => {
        match $self {
            $(Self::$v($c) => $e,)*
        }
    };
}

impl RecurrentCore for BaseCore {
    fn input_size(&self) -> usize {
        delegate!(self, c => c.input_size(), [Lstm, Gru, Rims, Brims])
    }
    fn hidden_size(&self) -> usize {
        delegate!(self, c => c.hidden_size(), [Lstm, Gru, Rims, Brims])
    }
    fn state_layout(&self) -> StateLayout {
        delegate!(self, c => c.state_layout(), [Lstm, Gru, Rims, Brims])
    }
    fn output_part(&self) -> usize {
        delegate!(self, c => c.output_part(), [Lstm, Gru, Rims, Brims])
    }
    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        delegate!(self, c => c.step_unchecked(x, state, diagnostics), [Lstm, Gru, Rims, Brims])
    }
    fn forward_steps_unchecked(
        &self,
        xs: Vec<Tensor<2>>,
        state: CoreState,
        resets: &Resets,
        diagnostics: bool,
    ) -> StepsOutput {
        delegate!(self, c => c.forward_steps_unchecked(xs, state, resets, diagnostics), [Lstm, Gru, Rims, Brims])
    }
    fn fused_sequence(
        &self,
        x: &Tensor<3>,
        state: &CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        delegate!(self, c => c.fused_sequence(x, state, episode_starts), [Lstm, Gru, Rims, Brims])
    }
}

impl RecurrentCore for Core {
    fn input_size(&self) -> usize {
        delegate!(self, c => c.input_size(), [Lstm, Gru, Rims, Brims, Screened])
    }
    fn hidden_size(&self) -> usize {
        delegate!(self, c => c.hidden_size(), [Lstm, Gru, Rims, Brims, Screened])
    }
    fn state_layout(&self) -> StateLayout {
        delegate!(self, c => c.state_layout(), [Lstm, Gru, Rims, Brims, Screened])
    }
    fn output_part(&self) -> usize {
        delegate!(self, c => c.output_part(), [Lstm, Gru, Rims, Brims, Screened])
    }
    fn step_unchecked(&self, x: Tensor<2>, state: CoreState, diagnostics: bool) -> StepOutput {
        delegate!(self, c => c.step_unchecked(x, state, diagnostics), [Lstm, Gru, Rims, Brims, Screened])
    }
    fn forward_steps_unchecked(
        &self,
        xs: Vec<Tensor<2>>,
        state: CoreState,
        resets: &Resets,
        diagnostics: bool,
    ) -> StepsOutput {
        delegate!(self, c => c.forward_steps_unchecked(xs, state, resets, diagnostics), [Lstm, Gru, Rims, Brims, Screened])
    }
    fn fused_sequence(
        &self,
        x: &Tensor<3>,
        state: &CoreState,
        episode_starts: Option<&[bool]>,
    ) -> Option<(Tensor<3>, CoreState)> {
        delegate!(self, c => c.fused_sequence(x, state, episode_starts), [Lstm, Gru, Rims, Brims, Screened])
    }
}

impl Core {
    /// Short name of the core kind (`"lstm"`, `"gru"`, `"rims"`, `"brims"`, `"screened"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Core::Lstm(_) => "lstm",
            Core::Gru(_) => "gru",
            Core::Rims(_) => "rims",
            Core::Brims(_) => "brims",
            Core::Screened(_) => "screened",
        }
    }
}

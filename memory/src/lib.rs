//! Recurrent cores for Engram policies, as burn modules: LSTM/GRU, group cells, RIMs, BRIMs and
//! relevancy-screened memory, all behind one interface ([`RecurrentCore`]) and one state type
//! ([`CoreState`]).

pub mod activation;
pub mod allocator;
pub mod any_core;
pub mod attention;
pub mod base_core;
pub mod brims;
pub mod config;
pub mod core;
pub mod diagnostics;
pub mod error;
pub mod ffm;
mod ffm_kernel;
pub mod group_cell;
pub mod group_linear;
pub mod gru;
mod gru_kernel;
pub mod gtrxl;
mod host_math;
mod host_op;
pub mod lstm;
mod lstm_kernel;
mod masked_softmax;
mod modular_kernel;
pub mod rel_lstm;
pub mod rims;
pub mod screened;
mod screened_kernel;
mod seq_layout;
mod small_matmul;
pub mod spec;
pub mod state;
mod table;
mod torch_rnn;

pub use any_core::Core;
pub use attention::{InputAttentionKind, ModularConfig};
pub use base_core::{BaseCore, BaseCoreConfig, BASE_CORE_KINDS};
pub use brims::{Brims, BrimsConfig};
pub use config::{CoreConfig, CORE_KINDS};
pub use core::RecurrentCore;
pub use diagnostics::{LayerDiagnostics, MemoryDiagnostics, StepDiagnostics};
pub use error::{MemoryError, Result};
pub use ffm::{Ffm, FfmConfig};
pub use group_cell::{CellKind, GroupCell, GroupCellConfig};
pub use group_linear::{GroupLinear, GroupLinearConfig};
pub use gru::{Gru, GruConfig};
pub use gtrxl::{Gtrxl, GtrxlConfig};
pub use lstm::{Lstm, LstmConfig, LstmInit};
pub use rel_lstm::RelLstmConfig;
pub use rims::{Rims, RimsConfig, RimsLayer};
pub use screened::{Screened, ScreenedConfig};
pub use seq_layout::SeqLayout;
pub use spec::CoreSpec;
pub use state::{CoreState, StateLayout, StatePart};

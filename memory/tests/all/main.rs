//! Behaviour tests of the memory crate (docs/research/models.md §6), in one test binary.

mod brims;
mod cells;
mod common;
mod config;
mod fused;
mod fused_modular;
mod gtrxl;
mod num_params;
mod rims;
mod screened;
mod sequence;
mod state;

//! `Core`: the module enum that lets policies use any core uniformly.

pub use crate::base_core::BaseCore;

crate::table::core_table! {
    module
    /// Any recurrent core of this crate (a base or wrapper row of the core table; RelLSTM builds
    /// [`Core::Screened`]); what policies hold.
    Core
}

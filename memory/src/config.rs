//! `CoreConfig`: pick and configure any core from TOML/JSON (`kind = "lstm" | "gru" | …`).

use crate::any_core::Core;

crate::table::core_table! {
    config
    /// Configuration of any core, one variant per row of the core table (`table.rs`).
    /// Serialised as a table with a `kind` tag and the fields of that core's config; fields left
    /// out take their defaults (`input_size` defaults to 0 and is usually filled in by the policy
    /// with [`CoreConfig::with_input_size`]; `hidden_size` defaults to 128).
    ///
    /// ```toml
    /// kind = "rims"
    /// hidden_size = 120
    /// num_modules = 6
    /// top_k = 4
    /// modular = { comm_key_size = 16 }
    /// ```
    CoreConfig => Core,
    /// The kind names accepted in `kind = "…"`.
    CORE_KINDS
}

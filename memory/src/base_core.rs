//! `BaseCoreConfig` and `BaseCore`: the cores screened memory can wrap, from the core table's base rows.

crate::table::core_table! {
    base_config
    /// Configuration of a core that screened memory can wrap (a base row of the core table:
    /// LSTM, GRU, RIMs or BRIMs). Serialised like [`crate::CoreConfig`]; parsing a wrapper kind
    /// (`screened`, `rel_lstm`) is an error naming the allowed kinds.
    BaseCoreConfig => BaseCore,
    /// The kind names a [`BaseCoreConfig`] accepts.
    BASE_CORE_KINDS
}

crate::table::core_table! {
    base_module
    /// A core that screened memory can wrap (every core except screened memory itself).
    BaseCore
}

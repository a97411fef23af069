//! The core table: one row per core kind; every kind-indexed enum and its dispatch come from it.
//!
//! Adding a core: write its module (config implementing [`crate::spec::CoreSpec`], module
//! implementing [`crate::RecurrentCore`]) and add one row below. Everything else —
//! [`crate::CoreConfig`], [`crate::Core`], [`crate::CORE_KINDS`], `kind()`, `is_modular()`, the
//! serde dispatch, and for base rows [`crate::BaseCoreConfig`] and [`crate::BaseCore`] (what
//! screened memory can wrap) — is generated.

/// The core table. `core_table!(mode …)` expands [`core_enums!`] for one `mode` with every row.
///
/// Rows: `Variant("kind", ConfigType => ModuleType)`. `base` rows are the cores screened memory
/// can wrap; `others` are the cores it cannot (itself, and FFM and GTrXL, whose outputs are not
/// state parts); `presets` are configurations that build another row's
/// module (no module variant of their own; `Variant("kind", ConfigType)`). Order is the order of
/// [`crate::CORE_KINDS`] and of the enum variants.
macro_rules! core_table {
    ($($mode:tt)*) => {
        $crate::table::core_enums! {
            [$($mode)*]
            base {
                Lstm("lstm", $crate::lstm::LstmConfig => $crate::lstm::Lstm),
                Gru("gru", $crate::gru::GruConfig => $crate::gru::Gru),
                Rims("rims", $crate::rims::RimsConfig => $crate::rims::Rims),
                Brims("brims", $crate::brims::BrimsConfig => $crate::brims::Brims),
            }
            others {
                Screened("screened", $crate::screened::ScreenedConfig => $crate::screened::Screened),
                Ffm("ffm", $crate::ffm::FfmConfig => $crate::ffm::Ffm),
                Gtrxl("gtrxl", $crate::gtrxl::GtrxlConfig => $crate::gtrxl::Gtrxl),
            }
            presets {
                RelLstm("rel_lstm", $crate::rel_lstm::RelLstmConfig),
            }
        }
    };
}
pub(crate) use core_table;

/// Generates kind-indexed enums from the rows of [`core_table!`]. Modes:
///
/// * `base_config Name => Module, KINDS`: config enum of the base rows building `Module`; the other
///   and preset kinds are rejected when parsed, with the list of base kinds.
/// * `base_module Module`: module enum of the base rows.
/// * `config Name => Module, KINDS`: config enum of every row building `Module`.
/// * `module Module`: module enum of the base and other rows.
///
/// Each mode takes attributes (doc comments) before `Name`/`Module` and `KINDS`.
macro_rules! core_enums {
    (
        [base_config $(#[$attr:meta])* $name:ident => $module:ident, $(#[$kattr:meta])* $kinds:ident]
        base { $($v:ident($k:literal, $c:ty => $m:ty),)* }
        others { $($wv:ident($wk:literal, $wc:ty => $wm:ty),)* }
        presets { $($pv:ident($pk:literal, $pc:ty),)* }
    ) => {
        $crate::table::core_enums! {
            @config $(#[$attr])* $name => $module, $(#[$kattr])* $kinds,
            rows [$($v($k, $c),)*],
            rejected [$($wk,)* $($pk,)*]
        }
    };
    (
        [base_module $(#[$attr:meta])* $module:ident]
        base { $($v:ident($k:literal, $c:ty => $m:ty),)* }
        others { $($wv:ident($wk:literal, $wc:ty => $wm:ty),)* }
        presets { $($pv:ident($pk:literal, $pc:ty),)* }
    ) => {
        $crate::table::core_enums! {
            @module $(#[$attr])* $module,
            rows [$($v($k, $c => $m),)*]
        }
    };
    (
        [config $(#[$attr:meta])* $name:ident => $module:ident, $(#[$kattr:meta])* $kinds:ident]
        base { $($v:ident($k:literal, $c:ty => $m:ty),)* }
        others { $($wv:ident($wk:literal, $wc:ty => $wm:ty),)* }
        presets { $($pv:ident($pk:literal, $pc:ty),)* }
    ) => {
        $crate::table::core_enums! {
            @config $(#[$attr])* $name => $module, $(#[$kattr])* $kinds,
            rows [$($v($k, $c),)* $($wv($wk, $wc),)* $($pv($pk, $pc),)*],
            rejected []
        }
    };
    (
        [module $(#[$attr:meta])* $module:ident]
        base { $($v:ident($k:literal, $c:ty => $m:ty),)* }
        others { $($wv:ident($wk:literal, $wc:ty => $wm:ty),)* }
        presets { $($pv:ident($pk:literal, $pc:ty),)* }
    ) => {
        $crate::table::core_enums! {
            @module $(#[$attr])* $module,
            rows [$($v($k, $c => $m),)* $($wv($wk, $wc => $wm),)*]
        }
    };

    (
        @config $(#[$attr:meta])* $name:ident => $module:ident, $(#[$kattr:meta])* $kinds:ident,
        rows [$($v:ident($k:literal, $c:ty),)*],
        rejected [$($rk:literal,)*]
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub enum $name {
            $(
                #[doc = concat!("`kind = \"", $k, "\"`.")]
                $v($c),
            )*
        }

        $(#[$kattr])*
        pub const $kinds: [&str; [$($k),*].len()] = [$($k),*];

        impl $name {
            /// The default configuration of `kind` with the given sizes (each config's
            /// `CoreSpec::default_sized`; BRIMs: `hidden_size` for every layer; screened: an LSTM
            /// inside).
            pub fn default_for(
                kind: &str,
                input_size: usize,
                hidden_size: usize,
            ) -> $crate::error::Result<Self> {
                match kind {
                    $(
                        $k => Ok(Self::$v(<$c as $crate::spec::CoreSpec>::default_sized(
                            input_size,
                            hidden_size,
                        ))),
                    )*
                    other => Err($crate::spec::unknown_kind(other, &$kinds)),
                }
            }

            /// The `kind` tag of this configuration.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$v(_) => $k,)*
                }
            }

            /// Whether the core has module or memory diagnostics to log: true for RIMs, BRIMs,
            /// screened memory (whatever it wraps) and RelLSTM, false for LSTM and GRU.
            pub fn is_modular(&self) -> bool {
                match self {
                    $(Self::$v(_) => <$c as $crate::spec::CoreSpec>::MODULAR,)*
                }
            }

            /// Input width `E`.
            pub fn input_size(&self) -> usize {
                match self {
                    $(Self::$v(c) => $crate::spec::CoreSpec::input_size(c),)*
                }
            }

            /// Output width `H` (BRIMs: the top layer's).
            pub fn hidden_size(&self) -> usize {
                match self {
                    $(Self::$v(c) => $crate::spec::CoreSpec::hidden_size(c),)*
                }
            }

            /// The same configuration with input width `input_size`.
            pub fn with_input_size(self, input_size: usize) -> Self {
                match self {
                    $(Self::$v(c) => Self::$v($crate::spec::CoreSpec::with_input_size(c, input_size)),)*
                }
            }

            /// The number of scalar parameters `init` creates, computed from the sizes without
            /// allocating (saturating arithmetic, so absurd sizes give huge numbers, never
            /// overflow panics); check it against a memory budget before calling `init`.
            pub fn num_params(&self) -> u64 {
                match self {
                    $(Self::$v(c) => $crate::spec::CoreSpec::num_params(c),)*
                }
            }

            /// Checks the configuration; the error names the field and the fix.
            pub fn validate(&self) -> $crate::error::Result<()> {
                match self {
                    $(Self::$v(c) => $crate::spec::CoreSpec::validate(c),)*
                }
            }

            /// Builds the core on `device`.
            pub fn init(&self, device: &burn::tensor::Device) -> $crate::error::Result<$module> {
                match self {
                    $(Self::$v(c) => Ok($module::from($crate::spec::CoreSpec::init(c, device)?)),)*
                }
            }

            /// Serialises to a JSON value (`{"kind": …, fields…}`); unset options are left out.
            pub fn to_json(&self) -> $crate::error::Result<serde_json::Value> {
                let mut value = self.to_json_with_nulls()?;
                $crate::spec::strip_nulls(&mut value);
                Ok(value)
            }

            /// Serialises every field, unset options as `null` (the list of known fields).
            fn to_json_with_nulls(&self) -> $crate::error::Result<serde_json::Value> {
                match self {
                    $(Self::$v(c) => $crate::spec::tagged(c, $k),)*
                }
            }

            /// Parses a JSON value, filling left-out fields with defaults and rejecting unknown
            /// ones.
            pub fn from_json(value: serde_json::Value) -> $crate::error::Result<Self> {
                let (kind, user) = $crate::spec::take_kind(value, &$kinds)?;
                $(
                    if kind == $rk {
                        return Err($crate::error::MemoryError::Serde(format!(
                            "inner `kind = \"{kind}\"` is not allowed: inner must be {}; \
                             screened memory wraps only these",
                            $crate::spec::or_list(&$kinds)
                        )));
                    }
                )*
                let (input, hidden) = $crate::spec::requested_sizes(&user);
                let defaults = Self::default_for(&kind, input, hidden)?.to_json_with_nulls()?;
                match kind.as_str() {
                    $($k => Ok(Self::$v($crate::spec::parse_over_defaults(defaults, user, &kind)?)),)*
                    other => Err($crate::spec::unknown_kind(other, &$kinds)),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let value = self.to_json().map_err(serde::ser::Error::custom)?;
                serde::Serialize::serialize(&value, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
                Self::from_json(value).map_err(serde::de::Error::custom)
            }
        }
    };

    (
        @module $(#[$attr:meta])* $module:ident,
        rows [$($v:ident($k:literal, $c:ty => $m:ty),)*]
    ) => {
        $(#[$attr])*
        // Variants differ in size; cores are built once per policy, and burn's `Module` derive
        // does not support boxed fields, so the size difference is accepted.
        #[allow(clippy::large_enum_variant)]
        #[derive(burn::module::Module, Debug)]
        pub enum $module {
            $(
                #[doc = concat!("`kind = \"", $k, "\"`.")]
                $v($m),
            )*
        }

        $(
            impl From<$m> for $module {
                fn from(core: $m) -> Self {
                    Self::$v(core)
                }
            }
        )*

        impl $module {
            /// Short name of the core kind (`"lstm"`, `"gru"`, …; RelLSTM is `"screened"`).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$v(_) => $k,)*
                }
            }

            /// Whether the core has module or memory diagnostics to log (as
            /// [`crate::CoreConfig::is_modular`]).
            pub fn is_modular(&self) -> bool {
                match self {
                    $(Self::$v(_) => <$c as $crate::spec::CoreSpec>::MODULAR,)*
                }
            }
        }

        impl $crate::core::RecurrentCore for $module {
            fn input_size(&self) -> usize {
                match self {
                    $(Self::$v(c) => $crate::core::RecurrentCore::input_size(c),)*
                }
            }
            fn hidden_size(&self) -> usize {
                match self {
                    $(Self::$v(c) => $crate::core::RecurrentCore::hidden_size(c),)*
                }
            }
            fn state_layout(&self) -> $crate::state::StateLayout {
                match self {
                    $(Self::$v(c) => $crate::core::RecurrentCore::state_layout(c),)*
                }
            }
            fn output_part(&self) -> usize {
                match self {
                    $(Self::$v(c) => $crate::core::RecurrentCore::output_part(c),)*
                }
            }
            fn step_unchecked(
                &self,
                x: burn::tensor::Tensor<2>,
                state: $crate::state::CoreState,
                diagnostics: bool,
            ) -> $crate::core::StepOutput {
                match self {
                    $(Self::$v(c) => $crate::core::RecurrentCore::step_unchecked(c, x, state, diagnostics),)*
                }
            }
            fn forward_steps_unchecked(
                &self,
                xs: Vec<burn::tensor::Tensor<2>>,
                state: $crate::state::CoreState,
                resets: &$crate::core::Resets,
                diagnostics: bool,
            ) -> $crate::core::StepsOutput {
                match self {
                    $(Self::$v(c) => $crate::core::RecurrentCore::forward_steps_unchecked(
                        c, xs, state, resets, diagnostics,
                    ),)*
                }
            }
            fn fused_sequence(
                &self,
                x: &burn::tensor::Tensor<3>,
                layout: $crate::seq_layout::SeqLayout,
                state: &$crate::state::CoreState,
                episode_starts: Option<&[bool]>,
            ) -> Option<(burn::tensor::Tensor<3>, $crate::state::CoreState)> {
                match self {
                    $(Self::$v(c) => $crate::core::RecurrentCore::fused_sequence(
                        c, x, layout, state, episode_starts,
                    ),)*
                }
            }
        }
    };
}
pub(crate) use core_enums;

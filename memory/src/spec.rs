//! `CoreSpec`, what each core's configuration provides to the core table, and the JSON helpers.

use burn::tensor::Device;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{MemoryError, Result};

/// What a core's configuration type provides so that one row of the core table (`table.rs`)
/// is enough to make it a `kind = "…"` of [`crate::CoreConfig`].
///
/// Implementations delegate to the type's inherent methods where it has them, so calling
/// `LstmConfig::init` and `CoreSpec::init` builds exactly the same module.
pub trait CoreSpec: Clone + std::fmt::Debug + Serialize + DeserializeOwned {
    /// The module this configuration builds.
    type Module;

    /// Whether the core has module or memory diagnostics to log (module masks and attention of
    /// RIMs and BRIMs, memory attention and slot ages of screened memory and RelLSTM).
    const MODULAR: bool;

    /// The default configuration with input width `input_size` and output width `hidden_size`.
    fn default_sized(input_size: usize, hidden_size: usize) -> Self;

    /// Input width `E`.
    fn input_size(&self) -> usize;

    /// Output width `H`.
    fn hidden_size(&self) -> usize;

    /// The same configuration with input width `input_size`.
    fn with_input_size(self, input_size: usize) -> Self;

    /// Checks the configuration; the error names the field and the fix.
    fn validate(&self) -> Result<()>;

    /// Builds the module on `device`.
    fn init(&self, device: &Device) -> Result<Self::Module>;

    /// The number of scalar parameters `init` creates, computed from the sizes without
    /// allocating (saturating arithmetic, so absurd sizes give huge numbers, never overflow
    /// panics). Equals burn's `Module::num_params` of the built module for any valid config.
    fn num_params(&self) -> u64;
}

/// Implements [`CoreSpec`] for a configuration with `input_size` and `hidden_size` fields,
/// `new(input_size, hidden_size)` and inherent `validate`, `init` and `num_params`, by
/// delegating to those (so `Config::init` and `CoreSpec::init` build the same module).
macro_rules! sized_core_spec {
    ($config:ident => $module:ident, modular: $modular:expr) => {
        impl $crate::spec::CoreSpec for $config {
            type Module = $module;
            const MODULAR: bool = $modular;

            fn default_sized(input_size: usize, hidden_size: usize) -> Self {
                $config::new(input_size, hidden_size)
            }
            fn input_size(&self) -> usize {
                self.input_size
            }
            fn hidden_size(&self) -> usize {
                self.hidden_size
            }
            fn with_input_size(self, input_size: usize) -> Self {
                $config { input_size, ..self }
            }
            fn validate(&self) -> $crate::error::Result<()> {
                $config::validate(self)
            }
            fn init(&self, device: &burn::tensor::Device) -> $crate::error::Result<$module> {
                $config::init(self, device)
            }
            fn num_params(&self) -> u64 {
                $config::num_params(self)
            }
        }
    };
}
pub(crate) use sized_core_spec;

/// The product of `sizes` as a `u64`, saturating at `u64::MAX` (a parameter tensor's element
/// count).
pub(crate) fn size_product(sizes: &[usize]) -> u64 {
    sizes.iter().fold(1u64, |acc, &s| {
        acc.saturating_mul(u64::try_from(s).unwrap_or(u64::MAX))
    })
}

/// The sum of parameter `counts`, saturating at `u64::MAX`.
pub(crate) fn count_sum(counts: impl IntoIterator<Item = u64>) -> u64 {
    counts.into_iter().fold(0u64, u64::saturating_add)
}

/// `hidden_size` of a config table that leaves it out.
pub(crate) const DEFAULT_HIDDEN: usize = 128;

/// Splits a config table into its `kind` and its other fields; `kinds` are the accepted ones
/// (named in the error).
pub(crate) fn take_kind(value: Value, kinds: &[&str]) -> Result<(String, Map<String, Value>)> {
    let Value::Object(mut user) = value else {
        return Err(MemoryError::Serde(
            "a core config must be a table with a `kind` field".into(),
        ));
    };
    match user.remove("kind") {
        Some(Value::String(k)) => Ok((k, user)),
        Some(other) => Err(MemoryError::Serde(format!(
            "`kind` must be a string, one of {kinds:?}; got {other}"
        ))),
        None => Err(MemoryError::Serde(format!(
            "core config needs `kind`, one of {kinds:?}"
        ))),
    }
}

/// The `(input_size, hidden_size)` a config table asks for, defaults where left out.
pub(crate) fn requested_sizes(user: &Map<String, Value>) -> (usize, usize) {
    let input = user.get("input_size").and_then(Value::as_u64).unwrap_or(0) as usize;
    let hidden = user
        .get("hidden_size")
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_HIDDEN as u64) as usize;
    (input, hidden)
}

/// The error for a `kind` that no row of the table has.
pub(crate) fn unknown_kind(kind: &str, kinds: &[&str]) -> MemoryError {
    MemoryError::Serde(format!(
        "unknown core kind `{kind}`; expected one of {kinds:?}"
    ))
}

/// Serialises one core's config and adds the `kind` tag; unset options stay `null`.
pub(crate) fn tagged<T: Serialize>(config: &T, kind: &str) -> Result<Value> {
    let value = serde_json::to_value(config).map_err(|e| MemoryError::Serde(e.to_string()))?;
    let mut map = match value {
        Value::Object(m) => m,
        other => {
            return Err(MemoryError::Serde(format!(
                "config did not serialise to a table: {other}"
            )))
        }
    };
    map.insert("kind".into(), Value::String(kind.into()));
    Ok(Value::Object(map))
}

/// Overlays the user's fields on the defaults of `kind` (as from [`tagged`]), rejecting unknown
/// fields, and parses the result.
pub(crate) fn parse_over_defaults<T: DeserializeOwned>(
    defaults: Value,
    user: Map<String, Value>,
    kind: &str,
) -> Result<T> {
    let Value::Object(mut merged) = defaults else {
        return Err(MemoryError::Serde("defaults are not a table".into()));
    };
    merged.remove("kind");
    merge(&mut merged, user, kind)?;
    serde_json::from_value(Value::Object(merged))
        .map_err(|e| MemoryError::Serde(format!("kind `{kind}`: {e}")))
}

/// Removes `null` entries (unset options), which TOML cannot represent.
pub(crate) fn strip_nulls(value: &mut Value) {
    if let Value::Object(map) = value {
        map.retain(|_, v| !v.is_null());
        for v in map.values_mut() {
            strip_nulls(v);
        }
    }
}

/// Overlays `user` on `base`; nested tables merge, except tables with a `kind` (whole cores).
fn merge(base: &mut Map<String, Value>, user: Map<String, Value>, kind: &str) -> Result<()> {
    for (k, v) in user {
        match base.get_mut(&k) {
            None => {
                let mut known: Vec<&String> = base.keys().collect();
                known.sort();
                return Err(MemoryError::Serde(format!(
                    "unknown field `{k}` for core kind `{kind}`; known fields: {known:?}"
                )));
            }
            Some(Value::Object(b)) if v.is_object() && v.get("kind").is_none() => {
                if let Value::Object(u) = v {
                    merge(b, u, kind)?;
                }
            }
            Some(slot) => *slot = v,
        }
    }
    Ok(())
}

/// `"a, b, c or d"`.
pub(crate) fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

//! `CoreConfig`: pick and configure any core from TOML/JSON (`kind = "lstm" | "gru" | …`).

use burn::tensor::Device;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::any_core::{BaseCore, Core};
use crate::brims::BrimsConfig;
use crate::error::{MemoryError, Result};
use crate::gru::GruConfig;
use crate::lstm::LstmConfig;
use crate::rel_lstm::RelLstmConfig;
use crate::rims::RimsConfig;
use crate::screened::ScreenedConfig;

/// Configuration of any core. Serialised as a table with a `kind` tag and the fields of that
/// core's config; fields left out take their defaults (`input_size` defaults to 0 and is usually
/// filled in by the policy with [`CoreConfig::with_input_size`]; `hidden_size` defaults to 128).
///
/// ```toml
/// kind = "rims"
/// hidden_size = 120
/// num_modules = 6
/// top_k = 4
/// modular = { comm_key_size = 16 }
/// ```
#[derive(Debug, Clone)]
pub enum CoreConfig {
    /// `kind = "lstm"`.
    Lstm(LstmConfig),
    /// `kind = "gru"`.
    Gru(GruConfig),
    /// `kind = "rims"`.
    Rims(RimsConfig),
    /// `kind = "brims"`.
    Brims(BrimsConfig),
    /// `kind = "screened"`, with an `inner` core table.
    Screened(ScreenedConfig),
    /// `kind = "rel_lstm"`.
    RelLstm(RelLstmConfig),
}

/// The kind names accepted in `kind = "…"`.
pub const CORE_KINDS: [&str; 6] = ["lstm", "gru", "rims", "brims", "screened", "rel_lstm"];

const DEFAULT_HIDDEN: usize = 128;

impl CoreConfig {
    /// The default configuration of `kind` with the given sizes (BRIMs: `hidden_size` for every
    /// layer; screened: an LSTM inside).
    pub fn default_for(kind: &str, input_size: usize, hidden_size: usize) -> Result<Self> {
        Ok(match kind {
            "lstm" => CoreConfig::Lstm(LstmConfig::new(input_size, hidden_size)),
            "gru" => CoreConfig::Gru(GruConfig::new(input_size, hidden_size)),
            "rims" => CoreConfig::Rims(RimsConfig::new(input_size, hidden_size)),
            "brims" => CoreConfig::Brims(
                BrimsConfig::new(input_size).with_hidden_sizes(vec![hidden_size, hidden_size]),
            ),
            "screened" => CoreConfig::Screened(ScreenedConfig::new(Box::new(CoreConfig::Lstm(
                LstmConfig::new(input_size, hidden_size),
            )))),
            "rel_lstm" => {
                CoreConfig::RelLstm(RelLstmConfig::new(input_size).with_hidden_size(hidden_size))
            }
            other => {
                return Err(MemoryError::Serde(format!(
                    "unknown core kind `{other}`; expected one of {CORE_KINDS:?}"
                )))
            }
        })
    }

    /// The `kind` tag of this configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            CoreConfig::Lstm(_) => "lstm",
            CoreConfig::Gru(_) => "gru",
            CoreConfig::Rims(_) => "rims",
            CoreConfig::Brims(_) => "brims",
            CoreConfig::Screened(_) => "screened",
            CoreConfig::RelLstm(_) => "rel_lstm",
        }
    }

    /// Input width `E`.
    pub fn input_size(&self) -> usize {
        match self {
            CoreConfig::Lstm(c) => c.input_size,
            CoreConfig::Gru(c) => c.input_size,
            CoreConfig::Rims(c) => c.input_size,
            CoreConfig::Brims(c) => c.input_size,
            CoreConfig::Screened(c) => c.inner.input_size(),
            CoreConfig::RelLstm(c) => c.input_size,
        }
    }

    /// Output width `H` (BRIMs: the top layer's).
    pub fn hidden_size(&self) -> usize {
        match self {
            CoreConfig::Lstm(c) => c.hidden_size,
            CoreConfig::Gru(c) => c.hidden_size,
            CoreConfig::Rims(c) => c.hidden_size,
            CoreConfig::Brims(c) => c.hidden_sizes.last().copied().unwrap_or(0),
            CoreConfig::Screened(c) => c.inner.hidden_size(),
            CoreConfig::RelLstm(c) => c.hidden_size,
        }
    }

    /// The same configuration with input width `input_size`.
    pub fn with_input_size(self, input_size: usize) -> Self {
        match self {
            CoreConfig::Lstm(c) => CoreConfig::Lstm(LstmConfig { input_size, ..c }),
            CoreConfig::Gru(c) => CoreConfig::Gru(GruConfig { input_size, ..c }),
            CoreConfig::Rims(c) => CoreConfig::Rims(RimsConfig { input_size, ..c }),
            CoreConfig::Brims(c) => CoreConfig::Brims(BrimsConfig { input_size, ..c }),
            CoreConfig::Screened(c) => {
                let inner = (*c.inner).clone().with_input_size(input_size);
                CoreConfig::Screened(ScreenedConfig {
                    inner: Box::new(inner),
                    ..c
                })
            }
            CoreConfig::RelLstm(c) => CoreConfig::RelLstm(RelLstmConfig { input_size, ..c }),
        }
    }

    /// Checks the configuration; the error names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        match self {
            CoreConfig::Lstm(c) => c.validate(),
            CoreConfig::Gru(c) => c.validate(),
            CoreConfig::Rims(c) => c.validate(),
            CoreConfig::Brims(c) => c.validate(),
            CoreConfig::Screened(c) => c.validate(),
            CoreConfig::RelLstm(c) => c.validate(),
        }
    }

    /// Builds the core on `device`.
    pub fn init(&self, device: &Device) -> Result<Core> {
        Ok(match self {
            CoreConfig::Lstm(c) => Core::Lstm(c.init(device)?),
            CoreConfig::Gru(c) => Core::Gru(c.init(device)?),
            CoreConfig::Rims(c) => Core::Rims(c.init(device)?),
            CoreConfig::Brims(c) => Core::Brims(c.init(device)?),
            CoreConfig::Screened(c) => Core::Screened(c.init(device)?),
            CoreConfig::RelLstm(c) => Core::Screened(c.init(device)?),
        })
    }

    /// Builds a core that screened memory can wrap; errors for screened kinds.
    pub fn init_base(&self, device: &Device) -> Result<BaseCore> {
        Ok(match self {
            CoreConfig::Lstm(c) => BaseCore::Lstm(c.init(device)?),
            CoreConfig::Gru(c) => BaseCore::Gru(c.init(device)?),
            CoreConfig::Rims(c) => BaseCore::Rims(c.init(device)?),
            CoreConfig::Brims(c) => BaseCore::Brims(c.init(device)?),
            CoreConfig::Screened(_) | CoreConfig::RelLstm(_) => {
                return Err(crate::error::invalid(
                    "screened",
                    "inner must be lstm, gru, rims or brims; screened memory cannot wrap itself",
                ))
            }
        })
    }

    /// Serialises to a JSON value (`{"kind": …, fields…}`); unset options are left out.
    pub fn to_json(&self) -> Result<Value> {
        let mut value = self.to_json_with_nulls()?;
        strip_nulls(&mut value);
        Ok(value)
    }

    /// Serialises every field, unset options as `null` (the list of known fields).
    fn to_json_with_nulls(&self) -> Result<Value> {
        let inner = match self {
            CoreConfig::Lstm(c) => serde_json::to_value(c),
            CoreConfig::Gru(c) => serde_json::to_value(c),
            CoreConfig::Rims(c) => serde_json::to_value(c),
            CoreConfig::Brims(c) => serde_json::to_value(c),
            CoreConfig::Screened(c) => serde_json::to_value(c),
            CoreConfig::RelLstm(c) => serde_json::to_value(c),
        }
        .map_err(|e| MemoryError::Serde(e.to_string()))?;
        let mut map = match inner {
            Value::Object(m) => m,
            other => {
                return Err(MemoryError::Serde(format!(
                    "config did not serialise to a table: {other}"
                )))
            }
        };
        map.insert("kind".into(), Value::String(self.kind().into()));
        Ok(Value::Object(map))
    }

    /// Parses a JSON value, filling left-out fields with defaults and rejecting unknown ones.
    pub fn from_json(value: Value) -> Result<Self> {
        let Value::Object(mut user) = value else {
            return Err(MemoryError::Serde(
                "a core config must be a table with a `kind` field".into(),
            ));
        };
        let kind = match user.remove("kind") {
            Some(Value::String(k)) => k,
            Some(other) => {
                return Err(MemoryError::Serde(format!(
                    "`kind` must be a string, one of {CORE_KINDS:?}; got {other}"
                )))
            }
            None => {
                return Err(MemoryError::Serde(format!(
                    "core config needs `kind`, one of {CORE_KINDS:?}"
                )))
            }
        };
        let input = user.get("input_size").and_then(Value::as_u64).unwrap_or(0) as usize;
        let hidden = user
            .get("hidden_size")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_HIDDEN as u64) as usize;
        let defaults = CoreConfig::default_for(&kind, input, hidden)?.to_json_with_nulls()?;
        let Value::Object(mut merged) = defaults else {
            return Err(MemoryError::Serde("defaults are not a table".into()));
        };
        merged.remove("kind");
        merge(&mut merged, user, &kind)?;
        let merged = Value::Object(merged);
        let err = |e: serde_json::Error| MemoryError::Serde(format!("kind `{kind}`: {e}"));
        Ok(match kind.as_str() {
            "lstm" => CoreConfig::Lstm(serde_json::from_value(merged).map_err(err)?),
            "gru" => CoreConfig::Gru(serde_json::from_value(merged).map_err(err)?),
            "rims" => CoreConfig::Rims(serde_json::from_value(merged).map_err(err)?),
            "brims" => CoreConfig::Brims(serde_json::from_value(merged).map_err(err)?),
            "screened" => CoreConfig::Screened(serde_json::from_value(merged).map_err(err)?),
            _ => CoreConfig::RelLstm(serde_json::from_value(merged).map_err(err)?),
        })
    }
}

/// Removes `null` entries (unset options), which TOML cannot represent.
fn strip_nulls(value: &mut Value) {
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

impl Serialize for CoreConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CoreConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        CoreConfig::from_json(value).map_err(D::Error::custom)
    }
}

//! Keyword arguments of environments: declared with types and ranges, checked before `make`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{EnvError, Result};

/// The type and valid range of one keyword argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KwargKind {
    /// An integer in `min..=max`.
    Int {
        /// Smallest valid value.
        min: i64,
        /// Largest valid value.
        max: i64,
    },
    /// A number in `min..=max`.
    Float {
        /// Smallest valid value.
        min: f64,
        /// Largest valid value.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
}

impl fmt::Display for KwargKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KwargKind::Int { min, max } => write!(f, "an integer in [{min}, {max}]"),
            KwargKind::Float { min, max } => write!(f, "a number in [{min}, {max}]"),
            KwargKind::Bool => write!(f, "true or false"),
        }
    }
}

/// Declaration of one keyword argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KwargSpec {
    /// Argument name.
    pub name: String,
    /// Type and range.
    pub kind: KwargKind,
    /// Value used when the argument is not given (`null`: computed by the env, see `doc`).
    pub default: Value,
    /// One line saying what it does.
    pub doc: String,
}

impl KwargSpec {
    /// An integer argument.
    pub fn int(name: &str, min: i64, max: i64, default: i64, doc: &str) -> Self {
        KwargSpec {
            name: name.into(),
            kind: KwargKind::Int { min, max },
            default: default.into(),
            doc: doc.into(),
        }
    }

    /// A float argument; `default` `None` means "computed from the other arguments".
    pub fn float(name: &str, min: f64, max: f64, default: Option<f64>, doc: &str) -> Self {
        let default = default.map_or(Value::Null, Value::from);
        KwargSpec {
            name: name.into(),
            kind: KwargKind::Float { min, max },
            default,
            doc: doc.into(),
        }
    }

    /// A boolean argument.
    pub fn bool(name: &str, default: bool, doc: &str) -> Self {
        KwargSpec {
            name: name.into(),
            kind: KwargKind::Bool,
            default: default.into(),
            doc: doc.into(),
        }
    }

    fn check(&self, id: &str, value: &Value) -> Result<()> {
        let ok = match (&self.kind, value) {
            (KwargKind::Int { min, max }, v) => {
                v.as_i64().is_some_and(|x| (*min..=*max).contains(&x))
            }
            (KwargKind::Float { min, max }, v) => {
                v.as_f64().is_some_and(|x| x >= *min && x <= *max)
            }
            (KwargKind::Bool, v) => v.is_boolean(),
        };
        if ok {
            Ok(())
        } else {
            Err(EnvError::BadKwarg {
                id: id.into(),
                key: self.name.clone(),
                value: value.to_string(),
                expected: self.kind.to_string(),
            })
        }
    }
}

/// Checked keyword arguments, defaults filled in, handed to an environment factory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kwargs {
    values: BTreeMap<String, Value>,
}

impl Kwargs {
    /// Check `given` against `specs` for environment `id` and fill in defaults.
    pub fn resolve(
        id: &str,
        specs: &[KwargSpec],
        given: &serde_json::Map<String, Value>,
    ) -> Result<Self> {
        for key in given.keys() {
            if !specs.iter().any(|s| &s.name == key) {
                let valid = if specs.is_empty() {
                    "none".to_string()
                } else {
                    specs
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(EnvError::UnknownKwarg {
                    id: id.into(),
                    key: key.clone(),
                    valid,
                });
            }
        }
        let mut values = BTreeMap::new();
        for spec in specs {
            let value = given.get(&spec.name).unwrap_or(&spec.default);
            if !value.is_null() {
                spec.check(id, value)?;
            }
            values.insert(spec.name.clone(), value.clone());
        }
        Ok(Kwargs { values })
    }

    /// An integer argument (declared with [`KwargSpec::int`]).
    pub fn int(&self, name: &str) -> i64 {
        self.values
            .get(name)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| panic!("kwarg `{name}` was not declared as int"))
    }

    /// A float argument, `None` when left to its computed default.
    pub fn float(&self, name: &str) -> Option<f64> {
        self.values.get(name).and_then(Value::as_f64)
    }

    /// A boolean argument.
    pub fn bool(&self, name: &str) -> bool {
        self.values
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or_else(|| panic!("kwarg `{name}` was not declared as bool"))
    }

    /// All resolved values.
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs() -> Vec<KwargSpec> {
        vec![
            KwargSpec::int("corridor_length", 1, 100, 10, "cells"),
            KwargSpec::float("penalty", -1.0, 0.0, None, "per step"),
        ]
    }

    #[test]
    fn defaults_fill_in_and_values_are_kept() {
        let given = json!({"corridor_length": 50})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let kw = Kwargs::resolve("T-v0", &specs(), &given).expect("valid");
        assert_eq!(kw.int("corridor_length"), 50);
        assert_eq!(kw.float("penalty"), None);
    }

    #[test]
    fn unknown_key_names_the_valid_ones() {
        let given = json!({"corridor": 5})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let err = Kwargs::resolve("T-v0", &specs(), &given).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`corridor`") && msg.contains("corridor_length, penalty"),
            "{msg}"
        );
    }

    #[test]
    fn out_of_range_names_key_and_range() {
        let given = json!({"corridor_length": 0})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let msg = Kwargs::resolve("T-v0", &specs(), &given)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`corridor_length` = 0") && msg.contains("[1, 100]"),
            "{msg}"
        );
        let given = json!({"corridor_length": "ten"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(Kwargs::resolve("T-v0", &specs(), &given).is_err());
        let given = json!({"penalty": 0.5})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(Kwargs::resolve("T-v0", &specs(), &given)
            .unwrap_err()
            .to_string()
            .contains("[-1, 0]"));
    }
}

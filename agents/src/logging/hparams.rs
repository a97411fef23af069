//! TensorBoard HParams plugin summaries (experiment, session start and end) on tensorboard-proto's hparams types.
//!
//! TensorBoard's HParams tab reads, per run, a `Summary.Value` whose `metadata.plugin_data` is
//! named `hparams` and holds a serialized `HParamsPluginData` (tensorboard/plugins/hparams/
//! plugin_data.proto and api.proto), with an empty float tensor as its value, exactly as
//! TensorBoard's Python `hp.hparams()` writes it. tensorboard-proto ships those messages
//! (`plugin_hparams`, `api`; its proto package name differs, the field numbers are TensorBoard's).
//!
//! TensorBoard keeps, per run and tag, the first summary it reads: a resumed run's repeated
//! session start changes nothing, and once a session end is written the run keeps that status.
//! It also uses the first experiment summary of any run for the table's columns, so runs whose
//! configs have different keys (another core kind, other env kwargs) show one run's keys.

use std::collections::BTreeMap;

use protobuf::well_known_types::Value;
use protobuf::{Message, RepeatedField};
use tensorboard_proto::api::{
    DataType, DatasetType, Experiment, HParamInfo, MetricInfo, MetricName, Status,
};
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::summary::{
    Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Value,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::{TensorShapeProto, TensorShapeProto_Dim};
use tensorboard_proto::types::DataType as TensorDataType;

use super::LogError;

/// The plugin name TensorBoard's HParams plugin looks for.
pub const PLUGIN_NAME: &str = "hparams";
/// Tag of the experiment summary (the table's hyperparameter and metric columns).
pub const EXPERIMENT_TAG: &str = "_hparams_/experiment";
/// Tag of a session's start (its hyperparameter values).
pub const SESSION_START_INFO_TAG: &str = "_hparams_/session_start_info";
/// Tag of a session's end (its status).
pub const SESSION_END_INFO_TAG: &str = "_hparams_/session_end_info";
/// The `HParamsPluginData.version` TensorBoard reads.
const PLUGIN_DATA_VERSION: i32 = 0;
/// Arrays of scalars up to this length become one string hyperparameter (`"[64, 64]"`).
const MAX_ARRAY_LEN: usize = 8;

/// One hyperparameter's value, as TensorBoard's HParams table shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum HParamValue {
    /// A number (integers too, as TensorBoard stores every number as `f64`).
    Number(f64),
    /// A string (also short arrays, rendered as JSON).
    Text(String),
    /// A boolean.
    Bool(bool),
}

/// How a training session ended, for the HParams table's status column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Trained to the end.
    Success,
    /// Stopped by a divergence (non-finite loss or weights).
    Failure,
    /// Stopped before the end (interrupted): no session end is written, so a later session of
    /// the run can still record how it ended.
    Running,
}

/// Flatten a serialized config into `section.key` hyperparameters (nested tables join with
/// `.`): numbers, strings and booleans as they are, arrays of up to eight scalars as one string;
/// `null`, longer arrays and arrays of tables are left out.
pub fn flatten_hparams(config: &serde_json::Value) -> BTreeMap<String, HParamValue> {
    let mut out = BTreeMap::new();
    flatten_into("", config, &mut out);
    out
}

/// Add `value`'s scalars under `prefix` to `out`.
fn flatten_into(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, HParamValue>) {
    use serde_json::Value as J;
    let scalar = match value {
        J::Null => None,
        J::Bool(b) => Some(HParamValue::Bool(*b)),
        J::Number(n) => n.as_f64().map(HParamValue::Number),
        J::String(s) => Some(HParamValue::Text(s.clone())),
        J::Array(items) => short_array(items).map(HParamValue::Text),
        J::Object(map) => {
            for (key, item) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(&name, item, out);
            }
            None
        }
    };
    if let (Some(v), false) = (scalar, prefix.is_empty()) {
        out.insert(prefix.to_string(), v);
    }
}

/// `items` as compact JSON if it holds at most [`MAX_ARRAY_LEN`] numbers, strings or booleans.
fn short_array(items: &[serde_json::Value]) -> Option<String> {
    let scalars = items
        .iter()
        .all(|v| v.is_number() || v.is_string() || v.is_boolean());
    (scalars && items.len() <= MAX_ARRAY_LEN).then(|| {
        let parts: Vec<String> = items.iter().map(|v| v.to_string()).collect();
        format!("[{}]", parts.join(", "))
    })
}

/// The experiment summary: one column per hyperparameter in `hparams` and per scalar tag in
/// `metric_tags` (each read from the session's own run, group `""`).
pub(crate) fn experiment(
    hparams: &BTreeMap<String, HParamValue>,
    metric_tags: &[&str],
    time_created_secs: f64,
) -> Result<Summary, LogError> {
    let mut experiment = Experiment::new();
    experiment.set_time_created_secs(time_created_secs);
    experiment.set_hparam_infos(hparams.iter().map(|(n, v)| hparam_info(n, v)).collect());
    experiment.set_metric_infos(metric_tags.iter().map(|t| metric_info(t)).collect());
    let mut data = HParamsPluginData::new();
    data.set_experiment(experiment);
    plugin_summary(EXPERIMENT_TAG, &data)
}

/// The column of one hyperparameter.
fn hparam_info(name: &str, value: &HParamValue) -> HParamInfo {
    let mut info = HParamInfo::new();
    info.set_name(name.to_string());
    info.set_field_type(match value {
        HParamValue::Number(_) => DataType::DATA_TYPE_FLOAT64,
        HParamValue::Text(_) => DataType::DATA_TYPE_STRING,
        HParamValue::Bool(_) => DataType::DATA_TYPE_BOOL,
    });
    info
}

/// The column of one metric: the last value of scalar `tag` in the session's run.
fn metric_info(tag: &str) -> MetricInfo {
    let mut name = MetricName::new();
    name.set_tag(tag.to_string());
    let mut info = MetricInfo::new();
    info.set_name(name);
    info.set_dataset_type(DatasetType::DATASET_TRAINING);
    info
}

/// The session start summary: the run's hyperparameter values and where its checkpoints are.
pub(crate) fn session_start(
    hparams: &BTreeMap<String, HParamValue>,
    model_uri: &str,
    start_time_secs: f64,
) -> Result<Summary, LogError> {
    let mut start = SessionStartInfo::new();
    start.set_hparams(
        hparams
            .iter()
            .map(|(n, v)| (n.clone(), protobuf_value(v)))
            .collect(),
    );
    start.set_model_uri(model_uri.to_string());
    start.set_start_time_secs(start_time_secs);
    let mut data = HParamsPluginData::new();
    data.set_session_start_info(start);
    plugin_summary(SESSION_START_INFO_TAG, &data)
}

/// `value` as a `google.protobuf.Value`.
fn protobuf_value(value: &HParamValue) -> Value {
    let mut v = Value::new();
    match value {
        HParamValue::Number(x) => v.set_number_value(*x),
        HParamValue::Text(s) => v.set_string_value(s.clone()),
        HParamValue::Bool(b) => v.set_bool_value(*b),
    }
    v
}

/// The session end summary; `None` for [`SessionStatus::Running`], which records no end.
pub(crate) fn session_end(
    status: SessionStatus,
    end_time_secs: f64,
) -> Result<Option<Summary>, LogError> {
    let status = match status {
        SessionStatus::Success => Status::STATUS_SUCCESS,
        SessionStatus::Failure => Status::STATUS_FAILURE,
        SessionStatus::Running => return Ok(None),
    };
    let mut end = SessionEndInfo::new();
    end.set_status(status);
    end.set_end_time_secs(end_time_secs);
    let mut data = HParamsPluginData::new();
    data.set_session_end_info(end);
    plugin_summary(SESSION_END_INFO_TAG, &data).map(Some)
}

/// A summary holding `data` as the hparams plugin's content, with TensorBoard's empty tensor.
fn plugin_summary(tag: &str, data: &HParamsPluginData) -> Result<Summary, LogError> {
    let mut data = data.clone();
    data.set_version(PLUGIN_DATA_VERSION);
    let content = data.write_to_bytes().map_err(|e| LogError::HParams {
        reason: format!("cannot encode `{tag}`: {e}"),
    })?;
    let mut plugin = SummaryMetadata_PluginData::new();
    plugin.set_plugin_name(PLUGIN_NAME.to_string());
    plugin.set_content(content);
    let mut metadata = SummaryMetadata::new();
    metadata.set_plugin_data(plugin);
    let mut value = Summary_Value::new();
    value.set_tag(tag.to_string());
    value.set_metadata(metadata);
    value.set_tensor(null_tensor());
    let mut summary = Summary::new();
    summary.set_value(RepeatedField::from_vec(vec![value]));
    Ok(summary)
}

/// A float tensor of shape `[0]`: the value TensorBoard's Python writer gives hparams summaries.
fn null_tensor() -> TensorProto {
    let mut dim = TensorShapeProto_Dim::new();
    dim.set_size(0);
    let mut shape = TensorShapeProto::new();
    shape.set_dim(RepeatedField::from_vec(vec![dim]));
    let mut tensor = TensorProto::new();
    tensor.set_dtype(TensorDataType::DT_FLOAT);
    tensor.set_tensor_shape(shape);
    tensor
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::CodedInputStream;
    use serde_json::json;

    /// The one value of `summary`, checked to be an hparams plugin summary tagged `tag`.
    fn content_of(summary: &Summary, tag: &str) -> Vec<u8> {
        let value = &summary.get_value()[0];
        assert_eq!(value.get_tag(), tag);
        let tensor = value.get_tensor();
        assert_eq!(tensor.get_dtype(), TensorDataType::DT_FLOAT);
        assert_eq!(tensor.get_tensor_shape().get_dim()[0].get_size(), 0);
        let plugin = value.get_metadata().get_plugin_data();
        assert_eq!(plugin.get_plugin_name(), "hparams");
        plugin.get_content().to_vec()
    }

    /// `(field number, wire type)` of every top-level field in `bytes`, skipping the values.
    fn fields(bytes: &[u8]) -> Vec<(u32, protobuf::wire_format::WireType)> {
        let mut input = CodedInputStream::from_bytes(bytes);
        let mut out = Vec::new();
        while !input.eof().unwrap() {
            let (field, wire) = input.read_tag_unpack().unwrap();
            out.push((field, wire));
            input.skip_field(wire).unwrap();
        }
        out
    }

    /// The length-delimited payload of the one top-level field of `bytes`.
    fn only_submessage(bytes: &[u8]) -> (u32, Vec<u8>) {
        let mut input = CodedInputStream::from_bytes(bytes);
        let (field, _) = input.read_tag_unpack().unwrap();
        let payload = input.read_bytes().unwrap();
        assert!(input.eof().unwrap());
        (field, payload)
    }

    #[test]
    fn config_flattens_to_dotted_scalars() {
        let config = json!({
            "env": {"id": "CartPole-v1", "num_envs": 8, "kwargs": {"length": 10},
                    "python_interpreter": null, "curriculum": [{"until_step": 5}]},
            "policy": {"encoder": [64, 64], "core": {"kind": "lstm", "hidden_size": 128}},
            "ppo": {"learning_rate": 3e-4, "anneal_lr": true},
            "run": {"plugins": [], "long": [1, 2, 3, 4, 5, 6, 7, 8, 9]},
        });
        let flat = flatten_hparams(&config);
        let expected = BTreeMap::from([
            ("env.id".into(), HParamValue::Text("CartPole-v1".into())),
            ("env.num_envs".into(), HParamValue::Number(8.0)),
            ("env.kwargs.length".into(), HParamValue::Number(10.0)),
            (
                "policy.encoder".into(),
                HParamValue::Text("[64, 64]".into()),
            ),
            ("policy.core.kind".into(), HParamValue::Text("lstm".into())),
            ("policy.core.hidden_size".into(), HParamValue::Number(128.0)),
            ("ppo.learning_rate".into(), HParamValue::Number(3e-4)),
            ("ppo.anneal_lr".into(), HParamValue::Bool(true)),
            ("run.plugins".into(), HParamValue::Text("[]".into())),
        ]);
        assert_eq!(flat, expected);
    }

    #[test]
    fn session_start_has_tensorboards_field_numbers() {
        let hparams = BTreeMap::from([
            ("ppo.learning_rate".to_string(), HParamValue::Number(0.25)),
            ("env.id".to_string(), HParamValue::Text("T".into())),
            ("ppo.anneal_lr".to_string(), HParamValue::Bool(true)),
        ]);
        let summary = session_start(&hparams, "runs/a", 12.5).unwrap();
        let content = content_of(&summary, SESSION_START_INFO_TAG);
        // HParamsPluginData: version 0 is omitted; session_start_info = 3.
        let (field, start) = only_submessage(&content);
        assert_eq!(field, 3);
        // SessionStartInfo: hparams = 1 (a map: one entry each), model_uri = 2, start_time_secs = 5.
        let mut numbers: Vec<u32> = fields(&start).iter().map(|f| f.0).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, vec![1, 1, 1, 2, 5]);
        let mut input = CodedInputStream::from_bytes(&start);
        let mut entries = BTreeMap::new();
        while !input.eof().unwrap() {
            let (field, wire) = input.read_tag_unpack().unwrap();
            match field {
                1 => {
                    // Map entry: key = 1 (string), value = 2 (google.protobuf.Value).
                    let entry = input.read_bytes().unwrap();
                    let mut e = CodedInputStream::from_bytes(&entry);
                    assert_eq!(e.read_tag_unpack().unwrap().0, 1);
                    let key = e.read_string().unwrap();
                    assert_eq!(e.read_tag_unpack().unwrap().0, 2);
                    let value = Value::parse_from_bytes(&e.read_bytes().unwrap()).unwrap();
                    entries.insert(key, value);
                }
                2 => assert_eq!(input.read_string().unwrap(), "runs/a"),
                5 => assert_eq!(input.read_double().unwrap(), 12.5),
                _ => input.skip_field(wire).unwrap(),
            }
        }
        assert_eq!(entries["ppo.learning_rate"].get_number_value(), 0.25);
        assert_eq!(entries["env.id"].get_string_value(), "T");
        assert!(entries["ppo.anneal_lr"].get_bool_value());
    }

    #[test]
    fn experiment_lists_hparam_and_metric_columns() {
        let hparams = BTreeMap::from([
            ("a.x".to_string(), HParamValue::Number(1.0)),
            ("a.y".to_string(), HParamValue::Text("s".into())),
        ]);
        let summary = experiment(&hparams, &["hparams/m"], 3.0).unwrap();
        let content = content_of(&summary, EXPERIMENT_TAG);
        let (field, bytes) = only_submessage(&content);
        assert_eq!(field, 2);
        let numbers: Vec<u32> = fields(&bytes).iter().map(|f| f.0).collect();
        // time_created_secs = 3, hparam_infos = 4 (twice), metric_infos = 5.
        assert_eq!(numbers, vec![3, 4, 4, 5]);
        let experiment = Experiment::parse_from_bytes(&bytes).unwrap();
        let infos = experiment.get_hparam_infos();
        assert_eq!((infos[0].get_name(), infos[1].get_name()), ("a.x", "a.y"));
        assert_eq!(infos[0].get_field_type(), DataType::DATA_TYPE_FLOAT64);
        assert_eq!(infos[1].get_field_type(), DataType::DATA_TYPE_STRING);
        let metric = &experiment.get_metric_infos()[0];
        assert_eq!(metric.get_name().get_tag(), "hparams/m");
        assert_eq!(metric.get_name().get_group(), "");
    }

    #[test]
    fn session_end_has_status_and_time() {
        let summary = session_end(SessionStatus::Failure, 7.0).unwrap().unwrap();
        let content = content_of(&summary, SESSION_END_INFO_TAG);
        let (field, end) = only_submessage(&content);
        assert_eq!(field, 4);
        let mut input = CodedInputStream::from_bytes(&end);
        assert_eq!(input.read_tag_unpack().unwrap().0, 1);
        assert_eq!(input.read_int32().unwrap(), 2); // STATUS_FAILURE
        assert_eq!(input.read_tag_unpack().unwrap().0, 2);
        assert_eq!(input.read_double().unwrap(), 7.0);
        let success = session_end(SessionStatus::Success, 7.0).unwrap().unwrap();
        let (_, end) = only_submessage(&content_of(&success, SESSION_END_INFO_TAG));
        assert_eq!(
            SessionEndInfo::parse_from_bytes(&end).unwrap().get_status(),
            Status::STATUS_SUCCESS
        );
        assert!(session_end(SessionStatus::Running, 7.0).unwrap().is_none());
    }
}

//! Builds TensorBoard `Summary` protobufs (scalar, histogram, PNG image) from tensorboard-proto types.

use protobuf::RepeatedField;
use tensorboard_proto::summary::{HistogramProto, Summary, Summary_Image, Summary_Value};

use super::histogram::HistogramStats;
use super::{LogError, RgbImage};

/// PNG colourspace code for RGB in `Summary.Image`.
const COLORSPACE_RGB: i32 = 3;

/// Wrap one tagged value into a `Summary`.
fn single(value: Summary_Value) -> Summary {
    let mut summary = Summary::new();
    summary.set_value(RepeatedField::from_vec(vec![value]));
    summary
}

/// A scalar summary (TensorBoard stores scalars as `f32`).
pub(crate) fn scalar(tag: &str, value: f64) -> Summary {
    tensorboard_rs::summary::scalar(tag, value as f32)
}

/// A histogram summary with min, max, count, sums and bucket edges and counts.
pub(crate) fn histogram(tag: &str, stats: HistogramStats) -> Summary {
    let mut histo = HistogramProto::new();
    histo.set_min(stats.min);
    histo.set_max(stats.max);
    histo.set_num(stats.num);
    histo.set_sum(stats.sum);
    histo.set_sum_squares(stats.sum_squares);
    histo.set_bucket_limit(stats.bucket_limit);
    histo.set_bucket(stats.bucket);
    let mut value = Summary_Value::new();
    value.set_tag(tag.to_string());
    value.set_histo(histo);
    single(value)
}

/// A PNG-encoded RGB image summary.
///
/// Built here rather than with `tensorboard_rs::summary::image`, which panics on bad input and
/// swaps width and height when encoding non-square images.
pub(crate) fn image(tag: &str, image: &RgbImage) -> Result<Summary, LogError> {
    let png = image.encode_png(tag)?;
    let mut proto = Summary_Image::new();
    // encode_png has checked that both fit in i32.
    proto.set_width(image.width as i32);
    proto.set_height(image.height as i32);
    proto.set_colorspace(COLORSPACE_RGB);
    proto.set_encoded_image_string(png);
    let mut value = Summary_Value::new();
    value.set_tag(tag.to_string());
    value.set_image(proto);
    Ok(single(value))
}

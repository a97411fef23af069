//! Histogram statistics and equal-width buckets in the layout of TensorBoard's `HistogramProto`.

/// Number of equal-width buckets a histogram is split into.
pub(crate) const BUCKETS: usize = 30;

/// The fields of a `HistogramProto`, computed from raw values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramStats {
    /// Smallest finite value.
    pub min: f64,
    /// Largest finite value.
    pub max: f64,
    /// Number of finite values.
    pub num: f64,
    /// Sum of the finite values.
    pub sum: f64,
    /// Sum of their squares.
    pub sum_squares: f64,
    /// Right edge of each bucket (the last equals `max`).
    pub bucket_limit: Vec<f64>,
    /// Number of values in each bucket.
    pub bucket: Vec<f64>,
}

impl HistogramStats {
    /// Summarise the finite entries of `values` into at most `buckets` equal-width buckets
    /// between their min and max; `None` when there is no finite value (NaN and ±inf are
    /// skipped, as TensorBoard cannot draw them).
    pub(crate) fn from_values(values: &[f32], buckets: usize) -> Option<Self> {
        let buckets = buckets.max(1);
        let finite = || {
            values
                .iter()
                .filter(|v| v.is_finite())
                .map(|&v| f64::from(v))
        };
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut num, mut sum, mut sum_squares) = (0usize, 0.0, 0.0);
        for v in finite() {
            min = min.min(v);
            max = max.max(v);
            num += 1;
            sum += v;
            sum_squares += v * v;
        }
        if num == 0 {
            return None;
        }
        let width = (max - min) / buckets as f64;
        let (bucket_limit, bucket) = if width > 0.0 && width.is_finite() {
            let mut counts = vec![0.0; buckets];
            for v in finite() {
                // Truncation is the bucket index; clamp puts `max` into the last bucket.
                let index = (((v - min) / width) as usize).min(buckets - 1);
                counts[index] += 1.0;
            }
            let mut limits: Vec<f64> = (1..buckets).map(|i| min + width * i as f64).collect();
            limits.push(max);
            (limits, counts)
        } else {
            // All values equal (or a range too wide for f64): one bucket holding everything.
            (vec![max], vec![num as f64])
        };
        Some(Self {
            min,
            max,
            num: num as f64,
            sum,
            sum_squares,
            bucket_limit,
            bucket,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_and_buckets_of_a_ramp() {
        let values: Vec<f32> = (0..300).map(|i| i as f32).collect();
        let h = HistogramStats::from_values(&values, 30).unwrap();
        assert_eq!((h.min, h.max, h.num), (0.0, 299.0, 300.0));
        assert_eq!(h.sum, (0..300).sum::<i32>() as f64);
        assert_eq!(h.sum_squares, (0..300).map(|i| i * i).sum::<i32>() as f64);
        assert_eq!(h.bucket.len(), 30);
        assert_eq!(h.bucket_limit.len(), 30);
        assert_eq!(h.bucket.iter().sum::<f64>(), 300.0);
        assert_eq!(*h.bucket_limit.last().unwrap(), 299.0);
        assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
        // A uniform ramp fills every bucket with about 10 values.
        assert!(
            h.bucket.iter().all(|&c| (9.0..=11.0).contains(&c)),
            "{:?}",
            h.bucket
        );
    }

    #[test]
    fn constant_values_make_one_bucket() {
        let h = HistogramStats::from_values(&[2.5; 7], 30).unwrap();
        assert_eq!(h.bucket_limit, vec![2.5]);
        assert_eq!(h.bucket, vec![7.0]);
        assert_eq!((h.min, h.max, h.sum), (2.5, 2.5, 17.5));
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let h = HistogramStats::from_values(&[f32::NAN, 1.0, f32::INFINITY, 3.0], 2).unwrap();
        assert_eq!(h.num, 2.0);
        assert_eq!(h.bucket, vec![1.0, 1.0]);
        assert_eq!(h.bucket_limit, vec![2.0, 3.0]);
        assert!(HistogramStats::from_values(&[], 30).is_none());
        assert!(HistogramStats::from_values(&[f32::NAN], 30).is_none());
    }
}

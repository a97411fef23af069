//! Shared helpers: deterministic random tensors, host reads, approximate comparisons.

use burn::tensor::{Device, Tensor, TensorData};

/// The plain CPU device.
pub fn dev() -> Device {
    Device::flex()
}

/// The CPU device with autodiff.
pub fn ad() -> Device {
    Device::flex().autodiff()
}

/// Uniform(-scale, scale) values from a seed (SplitMix64: the data depend on the seed alone).
pub fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed ^ 0x5DEE_CE66_D1CE_4E5B;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A random 2-D tensor.
pub fn rand2(shape: [usize; 2], seed: u64, scale: f32, device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(rand_vec(shape[0] * shape[1], seed, scale), shape),
        device,
    )
}

/// A random 3-D tensor.
pub fn rand3(shape: [usize; 3], seed: u64, scale: f32, device: &Device) -> Tensor<3> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(rand_vec(n, seed, scale), shape), device)
}

/// Host copy of any float tensor.
pub fn host<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
    t.to_data().try_into_vec_as::<f32>().expect("f32 data")
}

/// Max absolute difference.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        // NaN wins (`f32::max` would drop it, and a NaN would compare as no difference).
        .fold(0.0, |m, d| if d.is_nan() || d > m { d } else { m })
}

/// Asserts two tensors are equal within `tol`.
pub fn assert_close<const D: usize>(a: &Tensor<D>, b: &Tensor<D>, tol: f32) {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let d = max_diff(&host(a), &host(b));
    assert!(d <= tol, "max difference {d} > {tol}");
}

/// Bit patterns of a tensor's values.
pub fn bits<const D: usize>(t: &Tensor<D>) -> Vec<u32> {
    host(t).iter().map(|v| v.to_bits()).collect()
}

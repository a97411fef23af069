//! Global gradient-norm clipping over all parameters (burn's own clipping is per parameter).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self.grads.get::<D>(param.id) else {
            return;
        };
        let squares = f64::from((g.clone() * g.clone()).sum().into_scalar::<f32>());
        if squares.is_finite() {
            self.total += squares;
            return;
        }
        // Overflowed: entries above 1.8e19 square to inf in f32, which would make the norm of a
        // finite gradient infinite. Scaled by the largest entry the squares stay finite (as
        // PyTorch's clipping, which accumulates in double, a finite gradient has a finite norm).
        let largest = f64::from(g.clone().abs().max().into_scalar::<f32>());
        if largest > 0.0 && largest.is_finite() {
            let unit = g / largest as f32;
            let sum = f64::from((unit.clone() * unit).sum().into_scalar::<f32>());
            self.total += largest * largest * sum;
        } else if largest != 0.0 {
            self.total += largest; // inf or NaN: the norm is not finite
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f32,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register::<D>(param.id, g * self.factor);
        }
    }
}

/// The global L2 norm of `grads` over `module`'s parameters.
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm { grads, total: 0.0 };
    module.visit(&mut v);
    v.total.sqrt()
}

/// Scale all gradients so their global norm is at most `max_norm`; returns the norm before clipping.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = global_norm(module, grads);
    clip_to_norm(module, grads, norm, max_norm);
    norm
}

/// Scale gradients whose global norm is `norm` (from [`global_norm`]) down to `max_norm` when
/// it is larger and finite.
pub fn clip_to_norm<M: Module>(module: &M, grads: &mut GradientsParams, norm: f64, max_norm: f64) {
    if norm > max_norm && norm.is_finite() {
        let mut s = Scale {
            grads,
            factor: (max_norm / (norm + 1e-6)) as f32,
        };
        module.visit(&mut s);
    }
}

/// Finds the parameter with the largest gradient entry (NaN counting as the largest).
struct Largest<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    worst: Option<(String, f32)>,
}

impl ModuleVisitor for Largest<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self.grads.get::<D>(param.id) else {
            return;
        };
        let values = g.into_data().try_to_vec::<f32>().unwrap_or_default();
        let largest =
            values
                .iter()
                .map(|v| v.abs())
                .fold(0.0f32, |m, v| if v.is_nan() || v > m { v } else { m });
        let beats = |w: f32| largest.is_nan() || (!w.is_nan() && largest > w);
        if self.worst.as_ref().is_none_or(|(_, w)| beats(*w)) {
            let path: Vec<&str> = self
                .path
                .iter()
                .map(String::as_str)
                .filter(|p| !p.is_empty())
                .collect();
            self.worst = Some((path.join("."), largest));
        }
    }
}

/// The module path of the parameter with the largest gradient entry and that entry's magnitude
/// (NaN first): which part of the model a non-finite gradient norm comes from.
pub fn largest_gradient<M: Module>(module: &M, grads: &GradientsParams) -> Option<(String, f32)> {
    let mut v = Largest {
        grads,
        path: Vec::new(),
        worst: None,
    };
    module.visit(&mut v);
    v.worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Net {
        first: Linear,
        second: Linear,
    }

    fn net() -> Net {
        let device = Device::flex();
        Net {
            first: LinearConfig::new(2, 3).init(&device),
            second: LinearConfig::new(3, 1).init(&device),
        }
    }

    /// A gradient of `shape` with every entry `v`.
    fn fill(v: f32, shape: [usize; 2]) -> Tensor<2> {
        Tensor::<2>::full(shape, v, &Device::flex())
    }

    #[test]
    fn huge_finite_gradients_have_a_finite_norm_and_are_clipped() {
        let (net, mut grads) = (net(), GradientsParams::new());
        // 1e20 squares to inf in f32; the norm is 1e20·√9 = 3e20 all the same.
        grads.register::<2>(net.first.weight.id, fill(1e20, [2, 3]));
        grads.register::<2>(net.second.weight.id, fill(-1e20, [3, 1]));
        let norm = clip_global_norm(&net, &mut grads, 0.5);
        assert!((norm / 3e20 - 1.0).abs() < 1e-5, "norm {norm}");
        assert!((global_norm(&net, &grads) - 0.5).abs() < 1e-4);
        // Small gradients keep their exact norm; an inf or NaN entry makes it non-finite.
        grads.register::<2>(net.first.weight.id, fill(3.0, [2, 3]));
        grads.register::<2>(net.second.weight.id, fill(4.0, [3, 1]));
        let expected = (6.0f64 * 9.0 + 3.0 * 16.0).sqrt();
        assert!((global_norm(&net, &grads) - expected).abs() < 1e-5);
        grads.register::<2>(net.second.weight.id, fill(f32::INFINITY, [3, 1]));
        assert_eq!(global_norm(&net, &grads), f64::INFINITY);
        grads.register::<2>(net.second.weight.id, fill(f32::NAN, [3, 1]));
        assert!(global_norm(&net, &grads).is_nan());
    }

    #[test]
    fn the_largest_gradient_is_named_by_its_path() {
        let (net, mut grads) = (net(), GradientsParams::new());
        grads.register::<2>(net.first.weight.id, fill(2.0, [2, 3]));
        grads.register::<2>(net.second.weight.id, fill(f32::INFINITY, [3, 1]));
        let (path, value) = largest_gradient(&net, &grads).expect("gradients");
        assert_eq!((path.as_str(), value), ("second.weight", f32::INFINITY));
        // NaN outranks everything.
        grads.register::<2>(net.first.weight.id, fill(f32::NAN, [2, 3]));
        let (path, value) = largest_gradient(&net, &grads).expect("gradients");
        assert_eq!(path, "first.weight");
        assert!(value.is_nan());
    }
}

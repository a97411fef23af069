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
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.total += (g.clone() * g).sum().into_scalar::<f32>() as f64;
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
    if norm > max_norm && norm.is_finite() {
        let mut s = Scale {
            grads,
            factor: (max_norm / (norm + 1e-6)) as f32,
        };
        module.visit(&mut s);
    }
    norm
}

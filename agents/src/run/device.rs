//! `run.device` names → burn devices: the flex CPU default, and libtorch CPU/CUDA behind the `tch` feature.

use burn::tensor::Device;

use crate::error::{AgentError, Result};

/// How to get a build with the libtorch backend; quoted by every error about it.
pub const LIBTORCH_HOWTO: &str = "install libtorch with `source scripts/setup-libtorch.sh` \
     (PyTorch from PyPI into target/libtorch-venv) and build with `--features tch`; see the README";

/// A parsed `run.device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceName {
    /// burn's pure-Rust flex backend (`cpu` or `flex`).
    Flex,
    /// libtorch on the CPU (`libtorch`).
    LibTorchCpu,
    /// libtorch on CUDA device `N` (`cuda` or `cuda:N`).
    LibTorchCuda(usize),
}

impl DeviceName {
    /// Parses `cpu`, `flex`, `libtorch`, `cuda` or `cuda:N`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "cpu" | "flex" => Ok(DeviceName::Flex),
            "libtorch" => Ok(DeviceName::LibTorchCpu),
            "cuda" => Ok(DeviceName::LibTorchCuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceName::LibTorchCuda)
                .ok_or_else(|| {
                    AgentError::Config(format!(
                        "unknown run.device `{other}`; expected cpu, libtorch or cuda:N"
                    ))
                }),
        }
    }
}

/// The compute device named by `run.device` (without autodiff).
///
/// `libtorch` and `cuda:N` need a build with the `tch` feature; `cuda:N` also needs a CUDA
/// device `N` that libtorch can see. Otherwise the error says how to get them.
pub fn device_for(name: &str) -> Result<Device> {
    match DeviceName::parse(name)? {
        DeviceName::Flex => Ok(Device::flex()),
        DeviceName::LibTorchCpu => libtorch_cpu(),
        DeviceName::LibTorchCuda(index) => libtorch_cuda(name, index),
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn 0.22 marks burn-tch deprecated; it is still the libtorch route
fn libtorch_cpu() -> Result<Device> {
    Ok(Device::libtorch())
}

#[cfg(not(feature = "tch"))]
fn libtorch_cpu() -> Result<Device> {
    Err(AgentError::Config(format!(
        "run.device = \"libtorch\" needs the libtorch backend, which this build does not include; \
         {LIBTORCH_HOWTO} (or use --device cpu)"
    )))
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // as above
fn libtorch_cuda(name: &str, index: usize) -> Result<Device> {
    if !tch::Cuda::is_available() {
        return Err(AgentError::Config(format!(
            "run.device = \"{name}\": libtorch sees no CUDA device. Install an NVIDIA driver \
             and build against a CUDA-enabled PyTorch (PyPI's Linux wheel is one; \
             scripts/setup-libtorch.sh installs it), or use --device libtorch for the CPU"
        )));
    }
    let count = tch::Cuda::device_count() as usize;
    if index >= count {
        return Err(AgentError::Config(format!(
            "run.device = \"{name}\": libtorch sees {count} CUDA device(s) (cuda:0..cuda:{})",
            count - 1
        )));
    }
    Ok(Device::libtorch_cuda(index))
}

#[cfg(not(feature = "tch"))]
fn libtorch_cuda(name: &str, _index: usize) -> Result<Device> {
    Err(AgentError::Config(format!(
        "run.device = \"{name}\" needs the libtorch CUDA backend, which this build does not \
         include; {LIBTORCH_HOWTO} (or use --device cpu)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(DeviceName::parse("cpu").unwrap(), DeviceName::Flex);
        assert_eq!(DeviceName::parse("flex").unwrap(), DeviceName::Flex);
        assert_eq!(
            DeviceName::parse("libtorch").unwrap(),
            DeviceName::LibTorchCpu
        );
        assert_eq!(
            DeviceName::parse("cuda").unwrap(),
            DeviceName::LibTorchCuda(0)
        );
        assert_eq!(
            DeviceName::parse("cuda:3").unwrap(),
            DeviceName::LibTorchCuda(3)
        );
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let e = DeviceName::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected cpu, libtorch or cuda:N"), "{bad}: {e}");
        }
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn libtorch_without_the_feature_says_how_to_install() {
        for name in ["libtorch", "cuda:0"] {
            let e = device_for(name).unwrap_err().to_string();
            assert!(
                e.contains("--features tch") && e.contains("setup-libtorch.sh"),
                "{e}"
            );
        }
    }
}

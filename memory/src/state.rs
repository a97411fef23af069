//! The core-state type shared by every core: named, batch-first `[B, width]` parts.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::error::{MemoryError, Result};

/// One named component of a core state, `width` values per batch row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePart {
    /// Name of the component (e.g. `"h"`, `"c"`, `"l1.h"`, `"mem_buffer"`).
    pub name: String,
    /// Number of `f32` values per batch row.
    pub width: usize,
}

/// The ordered list of components a core keeps in its state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateLayout {
    /// Components, in the order they appear in [`CoreState::parts`] and in flat buffers.
    pub parts: Vec<StatePart>,
}

impl StateLayout {
    /// A layout from `(name, width)` pairs.
    pub fn new<S: Into<String>>(parts: impl IntoIterator<Item = (S, usize)>) -> Self {
        Self {
            parts: parts
                .into_iter()
                .map(|(name, width)| StatePart {
                    name: name.into(),
                    width,
                })
                .collect(),
        }
    }

    /// Values per batch row when the state is flattened.
    pub fn row_width(&self) -> usize {
        self.parts.iter().map(|p| p.width).sum()
    }

    /// Widths of the components, in order.
    pub fn widths(&self) -> Vec<usize> {
        self.parts.iter().map(|p| p.width).collect()
    }

    /// Index of the component called `name`, if any.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.parts.iter().position(|p| p.name == name)
    }

    /// Appends the parts of `other`, each name prefixed by `prefix`.
    pub fn extend_prefixed(&mut self, prefix: &str, other: &StateLayout) {
        for p in &other.parts {
            self.parts.push(StatePart {
                name: format!("{prefix}{}", p.name),
                width: p.width,
            });
        }
    }
}

/// Recurrent state of any core: batch-first `[B, width]` float tensors, one per layout part.
///
/// The all-zero state is the initial state of every core, so resetting a row means zeroing it.
/// Parts that carry gradients (hidden states, memory slots) keep their autodiff graph until
/// [`CoreState::detach`] is called.
#[derive(Debug, Clone)]
pub struct CoreState {
    /// The components, in the order of the core's [`StateLayout`].
    pub parts: Vec<Tensor<2>>,
}

impl CoreState {
    /// Wraps already-built parts.
    pub fn from_parts(parts: Vec<Tensor<2>>) -> Self {
        Self { parts }
    }

    /// The all-zero (initial) state for `batch` rows.
    pub fn zeros(layout: &StateLayout, batch: usize, device: &Device) -> Self {
        Self {
            parts: layout
                .parts
                .iter()
                .map(|p| Tensor::zeros([batch, p.width], device))
                .collect(),
        }
    }

    /// Number of batch rows (0 for a state without parts).
    pub fn batch_size(&self) -> usize {
        self.parts.first().map(|p| p.dims()[0]).unwrap_or(0)
    }

    /// Widths of the parts.
    pub fn widths(&self) -> Vec<usize> {
        self.parts.iter().map(|p| p.dims()[1]).collect()
    }

    /// Values per row when flattened.
    pub fn row_width(&self) -> usize {
        self.widths().iter().sum()
    }

    /// Device of the state (the first part's), if it has parts.
    pub fn device(&self) -> Option<Device> {
        self.parts.first().map(|p| p.device())
    }

    /// Checks that this state fits `layout` with `batch` rows.
    pub fn check(&self, layout: &StateLayout, batch: usize) -> Result<()> {
        if self.parts.len() != layout.parts.len() {
            return Err(MemoryError::State(format!(
                "state has {} parts, the core expects {} ({:?})",
                self.parts.len(),
                layout.parts.len(),
                layout.parts.iter().map(|p| &p.name).collect::<Vec<_>>()
            )));
        }
        for (t, p) in self.parts.iter().zip(&layout.parts) {
            let [b, w] = t.dims();
            if b != batch || w != p.width {
                return Err(MemoryError::State(format!(
                    "part `{}` has shape [{b}, {w}], the core expects [{batch}, {}]; \
                     create it with `init_state` of the same core",
                    p.name, p.width
                )));
            }
        }
        Ok(())
    }

    /// Zeroes (resets to the initial state) every row whose mask value is true.
    ///
    /// `mask` has shape `[B, 1]`. Reset rows are exactly zero and pass no gradient back.
    pub fn reset_rows_mask(self, mask: Tensor<2, Bool>) -> Self {
        let parts = self
            .parts
            .into_iter()
            .map(|p| {
                let dims = p.dims();
                p.mask_fill(mask.clone().expand(dims), 0.0)
            })
            .collect();
        Self { parts }
    }

    /// Zeroes every row `b` with `mask[b] == true`; `mask.len()` must be the batch size.
    pub fn reset_rows(self, mask: &[bool]) -> Result<Self> {
        let batch = self.batch_size();
        if mask.len() != batch {
            return Err(MemoryError::Shape {
                what: "reset mask",
                expected: format!("{batch} values (one per batch row)"),
                got: vec![mask.len()],
            });
        }
        if !mask.iter().any(|&m| m) {
            return Ok(self);
        }
        let Some(device) = self.device() else {
            return Ok(self);
        };
        let m = Tensor::<2, Bool>::from_data(TensorData::new(mask.to_vec(), [batch, 1]), &device);
        Ok(self.reset_rows_mask(m))
    }

    /// Keeps the rows named by `indices`, in that order (rows may repeat).
    pub fn select_rows(self, indices: &[usize]) -> Result<Self> {
        let batch = self.batch_size();
        if let Some(&bad) = indices.iter().find(|&&i| i >= batch) {
            return Err(MemoryError::Shape {
                what: "row index",
                expected: format!("indices below the batch size {batch}"),
                got: vec![bad],
            });
        }
        let Some(device) = self.device() else {
            return Ok(self);
        };
        let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [indices.len()]), &device);
        Ok(Self {
            parts: self
                .parts
                .into_iter()
                .map(|p| p.select(0, idx.clone()))
                .collect(),
        })
    }

    /// Concatenates the rows of several states of the same layout.
    pub fn cat_rows(states: Vec<CoreState>) -> Result<Self> {
        let Some(first) = states.first() else {
            return Ok(Self { parts: vec![] });
        };
        let widths = first.widths();
        if let Some(bad) = states.iter().find(|s| s.widths() != widths) {
            return Err(MemoryError::State(format!(
                "cannot concatenate states with part widths {:?} and {:?}",
                widths,
                bad.widths()
            )));
        }
        let n_parts = widths.len();
        let mut columns: Vec<Vec<Tensor<2>>> = (0..n_parts).map(|_| Vec::new()).collect();
        for s in states {
            for (i, p) in s.parts.into_iter().enumerate() {
                columns[i].push(p);
            }
        }
        Ok(Self {
            parts: columns.into_iter().map(|c| Tensor::cat(c, 0)).collect(),
        })
    }

    /// Cuts the autodiff graph: the returned state carries values only.
    pub fn detach(self) -> Self {
        Self {
            parts: self.parts.into_iter().map(|p| p.detach()).collect(),
        }
    }

    /// Moves every part to `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            parts: self
                .parts
                .into_iter()
                .map(|p| p.to_device(device))
                .collect(),
        }
    }

    /// Flattens the state into `B × row_width` values, row after row (row `b` is the state of
    /// batch element `b`, its parts concatenated in layout order).
    pub fn to_flat(&self) -> Vec<f32> {
        if self.parts.is_empty() {
            return vec![];
        }
        let all = Tensor::cat(self.parts.iter().map(|p| p.clone().detach()).collect(), 1);
        all.into_data().try_into_vec_as::<f32>().unwrap_or_default()
    }

    /// Rebuilds a state of `layout` with `batch` rows from a buffer made by [`CoreState::to_flat`].
    pub fn from_flat(
        layout: &StateLayout,
        data: &[f32],
        batch: usize,
        device: &Device,
    ) -> Result<Self> {
        let row_width = layout.row_width();
        if data.len() != batch * row_width {
            return Err(MemoryError::FlatLength {
                got: data.len(),
                expected: batch * row_width,
                batch,
                row_width,
            });
        }
        let mut parts = Vec::with_capacity(layout.parts.len());
        let mut offset = 0;
        for p in &layout.parts {
            let mut v = Vec::with_capacity(batch * p.width);
            for b in 0..batch {
                let start = b * row_width + offset;
                v.extend_from_slice(&data[start..start + p.width]);
            }
            parts.push(Tensor::<2>::from_data(
                TensorData::new(v, [batch, p.width]),
                device,
            ));
            offset += p.width;
        }
        Ok(Self { parts })
    }
}

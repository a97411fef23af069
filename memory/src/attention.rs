//! Attention pieces of RIMs/BRIMs: input attention over a null slot, communication, hard top-k,
//! the blocked-gradient operator and SAB-style sparse attention.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Tensor, TensorData};

use crate::activation::{sigmoid, tanh};
use crate::group_linear::{GroupLinear, GroupLinearConfig};
use crate::spec::{count_sum, size_product};

/// Blocked gradient `BG(x, m)`: the forward value is `x` bit for bit; the backward passes the
/// gradient only where `blocked` is false (`∂/∂x = m` with `m = !blocked`).
pub fn blocked_grad<const D: usize>(x: Tensor<D>, blocked: Tensor<D, Bool>) -> Tensor<D> {
    x.clone().mask_where(blocked, x.detach())
}

/// SAB-style sparsification along the last dim with parameter `k`: rows of length `L ≤ k` are
/// returned unchanged; otherwise `δ = (k-th largest) + 1e-7`, `w = max(p − δ, 0)`, and
/// `p' = w / (Σw + 1e-7)`, which keeps the `k − 1` largest entries.
pub fn sab_sparse<const D: usize>(p: Tensor<D>, k: usize) -> Tensor<D> {
    let last = D - 1;
    let len = p.dims()[last];
    if len <= k || k == 0 {
        return p;
    }
    let kth = p.clone().topk(k, last).narrow(last, k - 1, 1);
    let w = (p - kth.add_scalar(1e-7)).clamp_min(0.0);
    let total = w.clone().sum_dim(last).add_scalar(1e-7);
    w / total
}

/// Hard top-k over modules with a deterministic tie-break.
///
/// `null_attention: [B, n]`; module `i` is active when fewer than `k` modules beat it, where `j`
/// beats `i` if `p_j < p_i`, or `p_j == p_i` and `j > i`. So the `k` modules with the least
/// null attention are active and, on ties, the highest indices win (e.g. at the zero state).
/// Returns `[B, n]` with exactly `k` true values per row (all true when `k ≥ n`).
pub fn top_k_active(null_attention: Tensor<2>, k: usize) -> Tensor<2, Bool> {
    let [b, n] = null_attention.dims();
    let device = null_attention.device();
    if k >= n {
        return Tensor::<2, Bool>::from_data(TensorData::new(vec![true; b * n], [b, n]), &device);
    }
    let p = null_attention.detach();
    let pi = p.clone().unsqueeze_dim::<3>(2).expand([b, n, n]);
    let pj = p.unsqueeze_dim::<3>(1).expand([b, n, n]);
    let mut later = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            later.push(j > i);
        }
    }
    let later = Tensor::<2, Bool>::from_data(TensorData::new(later, [n, n]), &device)
        .unsqueeze_dim::<3>(0)
        .expand([b, n, n]);
    let beats = pj
        .clone()
        .lower(pi.clone())
        .bool_or(pj.equal(pi).bool_and(later));
    let count = beats.int().sum_dim(2);
    count.lower_elem(k as i64).reshape([b, n])
}

/// How modules read their input slots (docs/research/models.md §2.2 vs §2.3).
#[derive(Config, Debug, Copy, PartialEq)]
pub enum InputAttentionKind {
    /// Official event-based "version 1": per module, a softmax over `[null, slots…]`; the `k`
    /// modules with the least attention on the null slot are active.
    NullSlot,
    /// Atari "version 2" (RIMs only): no null slot; per slot and head, a softmax across the
    /// modules, SAB-sparsified to its `k` largest entries (shifted and renormalised; unchanged
    /// when `n ≤ k + 1`); the `k` modules with the most attention are active.
    AcrossModules,
}

/// Attention and dropout settings shared by RIMs and BRIMs layers.
#[derive(Config, Debug)]
pub struct ModularConfig {
    /// Cell run by each module.
    #[config(default = "crate::group_cell::CellKind::Lstm")]
    pub cell: crate::group_cell::CellKind,
    /// Input attention: `NullSlot` (official event-based, default) or `AcrossModules` (Atari
    /// "version 2", RIMs only; official Atari runs pair it with `cell = "Gru"`).
    #[config(default = "InputAttentionKind::NullSlot")]
    pub input_attention: InputAttentionKind,
    /// Input-attention heads (official RIMs: 1; BRIMs MNIST: 4).
    #[config(default = 1)]
    pub input_heads: usize,
    /// Input-attention key size per head (official: 64).
    #[config(default = 64)]
    pub input_key_size: usize,
    /// Input-attention value size per head; `None` gives `4d / input_heads` (official `a = 4d`).
    pub input_value_size: Option<usize>,
    /// Whether modules communicate (official `do_block`).
    #[config(default = true)]
    pub communication: bool,
    /// Communication heads (official: 4).
    #[config(default = 4)]
    pub comm_heads: usize,
    /// Communication key size per head (paper/BRIMs/Atari: 32; event_based code: 16).
    #[config(default = 32)]
    pub comm_key_size: usize,
    /// Communication value size per head (paper/BRIMs/Atari: 32; event_based code: 16).
    #[config(default = 32)]
    pub comm_value_size: usize,
    /// Keys and values of inactive modules in communication: their provisional new state
    /// (official, `false`) or their old state (`true`).
    #[config(default = false)]
    pub comm_inactive_old_state: bool,
    /// Dropout on the input-attention read and the communication output (official: 0.1).
    #[config(default = 0.0)]
    pub dropout: f64,
}

impl ModularConfig {
    /// Input-attention value size per head for per-module hidden size `d`.
    pub fn value_size(&self, d: usize) -> usize {
        self.input_value_size
            .unwrap_or_else(|| d.saturating_mul(4).div_ceil(self.input_heads.max(1)))
    }
}

/// Input attention of `n` modules over `[null, slot_1, …]`: per-module queries from the previous
/// hidden state, per-slot bias-free key/value projections, softmax over slots per head. The null
/// slot's key and value are exactly zero, so its score is exactly 0. With
/// [`InputAttentionKind::AcrossModules`] the softmax runs across modules instead and is
/// sparsified to the `top_k` largest; the null column of the returned attention is then 0.
#[derive(Module, Debug)]
pub struct InputAttention {
    /// Per-module query projection `[n, d, heads·dk]`.
    pub query: GroupLinear,
    /// Per-slot key+value projection `[w_j, heads·(dk + dv)]`, no bias.
    pub slot_kv: Vec<Linear>,
    /// Dropout on the read.
    pub dropout: Dropout,
    /// Heads.
    pub heads: usize,
    /// Key size per head.
    pub key_size: usize,
    /// Value size per head.
    pub value_size: usize,
    /// Softmax across modules (Atari "version 2") instead of across slots.
    pub across_modules: bool,
    /// Modules kept by the sparsification across modules.
    pub top_k: usize,
}

impl InputAttention {
    /// The number of scalar parameters [`InputAttention::new`] creates for the same arguments,
    /// without allocating (saturating): the query projection `n·d·heads·dk` and, per slot of
    /// width `w`, the key/value projection `w·heads·(dk + dv)`.
    pub fn num_params_for(n: usize, d: usize, slots: &[usize], cfg: &ModularConfig) -> u64 {
        let (heads, dk, dv) = (cfg.input_heads, cfg.input_key_size, cfg.value_size(d));
        let query = GroupLinearConfig::new(n, d, heads.saturating_mul(dk)).num_params();
        let kv_width = heads.saturating_mul(dk.saturating_add(dv));
        count_sum(std::iter::once(query).chain(slots.iter().map(|&w| size_product(&[w, kv_width]))))
    }

    /// Builds the attention for `n` modules of hidden size `d`, `k` of them active, over slots
    /// of widths `slots`.
    pub fn new(
        n: usize,
        d: usize,
        k: usize,
        slots: &[usize],
        cfg: &ModularConfig,
        device: &burn::tensor::Device,
    ) -> Self {
        let (heads, dk, dv) = (cfg.input_heads, cfg.input_key_size, cfg.value_size(d));
        InputAttention {
            query: GroupLinearConfig::new(n, d, heads * dk).init(device),
            slot_kv: slots
                .iter()
                .map(|&w| {
                    LinearConfig::new(w, heads * (dk + dv))
                        .with_bias(false)
                        .with_initializer(Initializer::Normal {
                            mean: 0.0,
                            std: 0.01,
                        })
                        .init(device)
                })
                .collect(),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            heads,
            key_size: dk,
            value_size: dv,
            across_modules: cfg.input_attention == InputAttentionKind::AcrossModules,
            top_k: k,
        }
    }

    /// The score by which modules are ranked for activation from the attention
    /// `[B, heads, n, 1 + S]` of [`InputAttention::forward`], `[B, n]`: the `k` lowest are
    /// active. Null slot: the head-mean null attention; across modules: minus the head-mean
    /// attention summed over the slots.
    pub fn inactivity(&self, p: Tensor<4>) -> Tensor<2> {
        let [b, _, n, s] = p.dims();
        if self.across_modules {
            p.narrow(3, 1, s - 1)
                .sum_dim(3)
                .mean_dim(1)
                .reshape([b, n])
                .neg()
        } else {
            p.narrow(3, 0, 1).mean_dim(1).reshape([b, n])
        }
    }

    /// Width of the read per module, `heads · dv`.
    pub fn read_size(&self) -> usize {
        self.heads * self.value_size
    }

    /// `h [n, B, d]` (module-major) and the real slots `[B, w_j]` give the read
    /// `[n, B, heads·dv]` and the attention `[B, heads, n, 1 + slots]` (slot 0 = null).
    pub fn forward(&self, h: Tensor<3>, slots: Vec<Tensor<2>>) -> (Tensor<3>, Tensor<4>) {
        let [n, b, _] = h.dims();
        let (heads, dk, dv) = (self.heads, self.key_size, self.value_size);
        let s = slots.len();
        let kv: Vec<Tensor<2>> = slots
            .into_iter()
            .zip(&self.slot_kv)
            .map(|(x, lin)| lin.forward(x))
            .collect();
        let kv: Tensor<3> = Tensor::stack(kv, 1); // [B, S', heads·(dk+dv)]
        let k = kv
            .clone()
            .narrow(2, 0, heads * dk)
            .reshape([b, s, heads, dk])
            .permute([0, 2, 3, 1]); // [B, heads, dk, S']
        let v = kv
            .narrow(2, heads * dk, heads * dv)
            .reshape([b, s, heads, dv])
            .swap_dims(1, 2); // [B, heads, S', dv]
        let q = self
            .query
            .forward_group_major(h)
            .reshape([n, b, heads, dk])
            .permute([1, 2, 0, 3]); // [B, heads, n, dk]
        let scores = q.matmul(k).mul_scalar(1.0 / (dk as f64).sqrt()); // [B, heads, n, S']
        let null = Tensor::zeros([b, heads, n, 1], &scores.device());
        let p = if self.across_modules {
            let across = softmax(scores.swap_dims(2, 3), 3); // [B, heads, S', n]
            let sparse = sab_sparse(across, self.top_k + 1).swap_dims(2, 3);
            Tensor::cat(vec![null, sparse], 3)
        } else {
            softmax(Tensor::cat(vec![null, scores], 3), 3)
        };
        let read = p
            .clone()
            .narrow(3, 1, s)
            .matmul(v) // [B, heads, n, dv]
            .permute([2, 0, 1, 3])
            .reshape([n, b, heads * dv]);
        (self.dropout.forward(read), p)
    }
}

/// Communication between modules: multi-head attention from each module's provisional state to
/// all modules, then `Δ = σ(O W_g + b_g) ⊙ tanh(Dropout(O W_fc + b_fc))` with `W_g`, `W_fc`
/// shared by the modules (official). The caller adds `Δ` as a residual.
#[derive(Module, Debug)]
pub struct Communication {
    /// Per-module query/key/value projection `[n, d, heads·(2dk + dv)]`.
    pub qkv: GroupLinear,
    /// Shared output projection and gate `[heads·dv, 2d]` (columns `0..d` = fc, `d..2d` = gate).
    pub out: Linear,
    /// Dropout on the fc branch.
    pub dropout: Dropout,
    /// Heads.
    pub heads: usize,
    /// Key size per head.
    pub key_size: usize,
    /// Value size per head.
    pub value_size: usize,
    /// Hidden size per module.
    pub module_size: usize,
}

impl Communication {
    /// The number of scalar parameters [`Communication::new`] creates for the same arguments,
    /// without allocating (saturating): `n·d·heads·(2dk + dv)` for the query/key/value
    /// projection, `heads·dv·2d + 2d` for the output projection and gate (with bias).
    pub fn num_params_for(n: usize, d: usize, cfg: &ModularConfig) -> u64 {
        let (heads, dk, dv) = (cfg.comm_heads, cfg.comm_key_size, cfg.comm_value_size);
        let qkv_width = heads.saturating_mul(dk.saturating_mul(2).saturating_add(dv));
        count_sum([
            GroupLinearConfig::new(n, d, qkv_width).num_params(),
            size_product(&[heads, dv, 2, d]),
            size_product(&[2, d]),
        ])
    }

    /// Builds communication for `n` modules of hidden size `d`.
    pub fn new(n: usize, d: usize, cfg: &ModularConfig, device: &burn::tensor::Device) -> Self {
        let (heads, dk, dv) = (cfg.comm_heads, cfg.comm_key_size, cfg.comm_value_size);
        Communication {
            qkv: GroupLinearConfig::new(n, d, heads * (2 * dk + dv)).init(device),
            out: LinearConfig::new(heads * dv, 2 * d).init(device),
            dropout: DropoutConfig::new(cfg.dropout).init(),
            heads,
            key_size: dk,
            value_size: dv,
            module_size: d,
        }
    }

    /// Queries from `h [n, B, d]`, keys and values from `kv_source` (or `h` when `None`);
    /// returns `Δ [n, B, d]` and the attention `[B, heads, n, n]`.
    pub fn forward(&self, h: Tensor<3>, kv_source: Option<Tensor<3>>) -> (Tensor<3>, Tensor<4>) {
        let [n, b, _] = h.dims();
        let (heads, dk, dv, d) = (self.heads, self.key_size, self.value_size, self.module_size);
        let qkv = self.qkv.forward_group_major(h);
        let q = qkv
            .clone()
            .narrow(2, 0, heads * dk)
            .reshape([n, b, heads, dk])
            .permute([1, 2, 0, 3]); // [B, heads, n, dk]
        let kv = match kv_source {
            Some(src) => self.qkv.forward_group_major(src),
            None => qkv,
        };
        let k = kv
            .clone()
            .narrow(2, heads * dk, heads * dk)
            .reshape([n, b, heads, dk])
            .permute([1, 2, 3, 0]); // [B, heads, dk, n]
        let v = kv
            .narrow(2, 2 * heads * dk, heads * dv)
            .reshape([n, b, heads, dv])
            .permute([1, 2, 0, 3]); // [B, heads, n, dv]
        let att = softmax(q.matmul(k).mul_scalar(1.0 / (dk as f64).sqrt()), 3);
        let o = att
            .clone()
            .matmul(v)
            .permute([2, 0, 1, 3])
            .reshape([n, b, heads * dv]);
        let go = self.out.forward(o); // [n, B, 2d]
        let fc = self.dropout.forward(go.clone().narrow(2, 0, d));
        let gate = go.narrow(2, d, d);
        (sigmoid(gate) * tanh(fc), att)
    }
}

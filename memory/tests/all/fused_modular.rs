//! The fused RIMs/BRIMs and screened-memory kernels against the generic step loop: outputs,
//! final states and every gradient, over cells, attention and communication options, ties,
//! stacks, memory inner cores and thread splits.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use engram_memory::{
    BaseCoreConfig, BrimsConfig, CellKind, Core, CoreConfig, GruConfig, LstmConfig, ModularConfig,
    RimsConfig, ScreenedConfig,
};

use crate::common::ad;
use crate::fused::{
    check_core_fused_equals_loop, check_fused_equals_loop, check_fused_equals_loop_from, pool_of,
    WidenSmallInit,
};

/// Small attention sizes so the tests stay quick.
fn modular() -> ModularConfig {
    ModularConfig::new()
        .with_input_key_size(6)
        .with_comm_key_size(5)
        .with_comm_value_size(4)
        .with_comm_heads(2)
}

fn rims(cfg: ModularConfig, n: usize, k: usize) -> CoreConfig {
    CoreConfig::Rims(
        RimsConfig::new(5, 4 * n)
            .with_num_modules(n)
            .with_top_k(k)
            .with_modular(cfg),
    )
}

#[test]
fn fused_rims_lstm_with_communication_equals_step_loop() {
    check_fused_equals_loop(rims(modular(), 4, 2), 4);
}

#[test]
fn fused_rims_gru_without_communication_equals_step_loop() {
    let cfg = modular().with_cell(CellKind::Gru).with_communication(false);
    check_fused_equals_loop(rims(cfg, 5, 3), 3);
}

#[test]
fn fused_rims_two_heads_old_state_keys_equals_step_loop() {
    let cfg = modular()
        .with_input_heads(2)
        .with_input_value_size(Some(3))
        .with_comm_inactive_old_state(true);
    check_fused_equals_loop(rims(cfg.clone(), 4, 1), 3);
    check_fused_equals_loop(rims(cfg.with_cell(CellKind::Gru), 4, 3), 3);
}

#[test]
fn fused_rims_all_modules_active_equals_step_loop() {
    check_fused_equals_loop(rims(modular(), 3, 3), 3);
}

/// At the zero state every module ties: the highest indices win, in both implementations.
#[test]
fn fused_rims_ties_at_the_zero_state_equal_step_loop() {
    check_fused_equals_loop_from(rims(modular(), 4, 2), 3, 0.0);
    check_fused_equals_loop_from(rims(modular().with_cell(CellKind::Gru), 4, 2), 3, 0.0);
}

/// From `n·G·d` rows a chunk (here 12 rows × 7 steps against 4 × 16 or 4 × 12) pre-gates layer
/// 0 through the precomposed weights `W_v W_i`, without the values (the smaller batches above
/// keep them): one head and two, LSTM and GRU cells, communication with and without old-state
/// keys. (Values of 6 per head: with 3, `x W_v` and the blocks `v W_i` cost less than `x M`,
/// and the chunk keeps them.)
#[test]
fn fused_rims_precomposed_input_weights_equal_step_loop() {
    check_fused_equals_loop(rims(modular(), 4, 2), 12);
    // Every module active: the kept blocks are every module's.
    check_fused_equals_loop(rims(modular(), 3, 3), 12);
    let two_heads = modular()
        .with_input_heads(2)
        .with_input_value_size(Some(6))
        .with_comm_inactive_old_state(true)
        .with_cell(CellKind::Gru);
    check_fused_equals_loop(rims(two_heads, 4, 3), 12);
}

/// Those chunks (an input of 5) also fold layer 0's input-attention keys into its queries'
/// weights (`k̂ = x W_k W_qᵀ`, see `StackDims::folds_keys`); with an input of 12 (its folded keys
/// then cost more than the keys and queries) a chunk precomposes the values and keeps the keys
/// and queries: LSTM and GRU cells.
#[test]
fn fused_rims_precomposed_without_folded_keys_equal_step_loop() {
    let cfg = modular().with_input_value_size(Some(12));
    let wide_input = |cfg: ModularConfig| {
        CoreConfig::Rims(
            RimsConfig::new(12, 16)
                .with_num_modules(4)
                .with_top_k(2)
                .with_modular(cfg),
        )
    };
    check_fused_equals_loop(wide_input(cfg.clone()), 12);
    check_fused_equals_loop(wide_input(cfg.with_cell(CellKind::Gru)), 12);
}

/// Communication heads of whole vectors (16 floats: one AVX-512 vector, two AVX2 ones) run
/// through the fused heads that keep every module's accumulators in registers; the sizes above
/// take the per-module loops. Shared and separate key gradients (old-state keys), 4 and 3
/// modules, a BRIMs stack.
#[test]
fn fused_vector_wide_communication_heads_equal_step_loop() {
    let wide = modular().with_comm_key_size(16).with_comm_value_size(16);
    check_fused_equals_loop(rims(wide.clone(), 4, 2), 4);
    let old_state = wide.clone().with_comm_inactive_old_state(true);
    check_fused_equals_loop(rims(old_state, 3, 2), 3);
    let cfg = brims(wide, vec![8, 9], vec![4, 3], vec![2, 2]);
    check_fused_equals_loop(CoreConfig::Brims(cfg), 3);
}

fn brims(cfg: ModularConfig, sizes: Vec<usize>, n: Vec<usize>, k: Vec<usize>) -> BrimsConfig {
    BrimsConfig::new(5)
        .with_hidden_sizes(sizes)
        .with_num_modules(n)
        .with_top_k(k)
        .with_modular(cfg)
}

#[test]
fn fused_brims_top_down_equals_step_loop() {
    let cfg = brims(modular(), vec![8, 9], vec![4, 3], vec![2, 2]);
    check_fused_equals_loop(CoreConfig::Brims(cfg), 3);
}

#[test]
fn fused_brims_concatenated_top_down_masked_gru_equals_step_loop() {
    let cfg = brims(
        modular().with_cell(CellKind::Gru),
        vec![8, 6],
        vec![4, 2],
        vec![2, 1],
    )
    .with_concat_top_down(true)
    .with_pass_inactive(false);
    check_fused_equals_loop(CoreConfig::Brims(cfg), 4);
}

#[test]
fn fused_three_layer_brims_and_plain_stack_equal_step_loop() {
    let cfg =
        brims(modular(), vec![8, 6, 8], vec![4, 3, 2], vec![2, 2, 1]).with_pass_inactive(false);
    check_fused_equals_loop(CoreConfig::Brims(cfg.clone()), 3);
    check_fused_equals_loop(CoreConfig::Brims(cfg.with_top_down(false)), 3);
}

/// From `n·G·d` rows (here 12 × 7 against 4 × 4 × 4) a layer whose one slot is the layer below
/// (BRIMs' top layer, every upper layer of a plain stack) pre-gates step by step through the
/// precomposed weights where they cut the work by a third (values twice the module width here),
/// sending its blocks' gradient down at every step: one head and two, LSTM and GRU cells,
/// inactive modules passed up or masked.
#[test]
fn fused_stacks_precomposed_step_by_step_equal_step_loop() {
    let wide_values = modular().with_input_value_size(Some(32));
    let cfg = brims(wide_values, vec![16, 16], vec![4, 4], vec![2, 2]);
    check_fused_equals_loop(CoreConfig::Brims(cfg), 12);
    let two_heads = modular()
        .with_input_heads(2)
        .with_input_value_size(Some(24))
        .with_cell(CellKind::Gru);
    let plain = brims(two_heads, vec![12, 16, 8], vec![3, 4, 2], vec![2, 2, 1])
        .with_top_down(false)
        .with_pass_inactive(false);
    check_fused_equals_loop(CoreConfig::Brims(plain), 12);
}

/// 67 rows of a large enough stack run as three chunks of 23, 23 and 21 rows on three threads,
/// with resets in the first and last chunk.
#[test]
fn fused_brims_split_over_threads_equals_step_loop() {
    let pool = pool_of(3);
    let cfg = brims(modular(), vec![64, 64], vec![4, 4], vec![2, 2]);
    pool.install(|| check_fused_equals_loop(CoreConfig::Brims(cfg), 67));
}

/// On one thread, 150 rows run as chunks of at most 64 rows one after the other (64, 64, 22),
/// the weight gradients summed over them: the same as the step loop over all rows, for a stack
/// and for screened memory around it.
#[test]
fn fused_batches_over_64_rows_run_as_chunks_equal_step_loop() {
    let pool = pool_of(1);
    let cfg = brims(modular(), vec![8, 9], vec![4, 3], vec![2, 2]);
    pool.install(|| {
        check_fused_equals_loop(CoreConfig::Brims(cfg.clone()), 150);
        check_fused_equals_loop(screened(BaseCoreConfig::Brims(cfg)), 150);
    });
}

/// Without input attention every module reads `x` as is and the all-equal scores pick the
/// highest indices; with one module of `k = 1` this is the plain LSTM the screened kernel uses.
#[test]
fn fused_bypassed_rims_equals_step_loop() {
    let with_comm = RimsConfig::new(5, 12)
        .with_num_modules(3)
        .with_top_k(2)
        .with_modular(modular())
        .with_bypass_input_attention(true);
    check_fused_equals_loop(CoreConfig::Rims(with_comm.clone()), 3);
    let single = with_comm
        .with_num_modules(1)
        .with_top_k(1)
        .with_modular(modular().with_communication(false).with_cell(CellKind::Gru));
    check_fused_equals_loop(CoreConfig::Rims(single), 3);
}

fn screened(inner: BaseCoreConfig) -> CoreConfig {
    CoreConfig::Screened(
        ScreenedConfig::new(inner)
            .with_short_term(3)
            .with_relevant(2)
            .with_attention_size(Some(5)),
    )
}

/// Screened memory around an LSTM of `hidden` units: `[ν, ρ]` slots, attention width `attention`.
fn screened_lstm(hidden: usize, [nu, rho]: [usize; 2], attention: usize) -> CoreConfig {
    CoreConfig::Screened(
        ScreenedConfig::new(BaseCoreConfig::Lstm(LstmConfig::new(5, hidden)))
            .with_short_term(nu)
            .with_relevant(rho)
            .with_attention_size(Some(attention)),
    )
}

/// Seven steps through a memory of 3 + 2 slots: the buffer fills, entries leave it, compete for
/// the relevant set and are read back; resets empty it mid-sequence.
#[test]
fn fused_screened_lstm_and_gru_equal_step_loop() {
    check_fused_equals_loop(screened(BaseCoreConfig::Lstm(LstmConfig::new(5, 6))), 3);
    check_fused_equals_loop(screened(BaseCoreConfig::Gru(GruConfig::new(5, 6))), 4);
}

/// Widths past the CPU's vector width with a remainder (attention 21, hidden 37): the slot
/// scores, the read and their backward run both their SIMD bodies and their scalar tails.
#[test]
fn fused_screened_wide_equals_step_loop() {
    check_fused_equals_loop(screened_lstm(37, [3, 2], 21), 3);
}

#[test]
fn fused_screened_rims_and_brims_equal_step_loop() {
    let RimsOrBrims(r, b) = modular_inners();
    check_fused_equals_loop(screened(r), 3);
    check_fused_equals_loop(screened(b), 3);
}

/// A screened memory whose state starts empty (as every episode does).
#[test]
fn fused_screened_from_the_zero_state_equals_step_loop() {
    check_fused_equals_loop_from(
        screened(BaseCoreConfig::Lstm(LstmConfig::new(5, 6))),
        3,
        0.0,
    );
}

/// Queries and keys past `tanh_sum`'s limit (`|q|, |k| > 40`): the memory's query and key
/// projections scaled by 150 put most of them there and leave some within it (after resets, and
/// small states), so the scores and their backward take both ways to `tanh(q + k)` (from the
/// exponentials, and directly), also within one row; attention 21 runs the scalar tails too.
#[test]
fn fused_screened_with_far_out_queries_and_keys_equals_step_loop() {
    let core = screened_lstm(8, [3, 3], 21)
        .init(&ad())
        .unwrap()
        .map(&mut WidenSmallInit);
    let Core::Screened(mut s) = core else {
        unreachable!("a screened config builds a screened core")
    };
    s.query = s.query.map(&mut Scale(150.0));
    s.key = s.key.map(&mut Scale(150.0));
    check_core_fused_equals_loop(Core::Screened(s), 5, 0.8);
}

/// Multiplies every parameter by a factor.
struct Scale(f32);

impl ModuleMapper for Scale {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let f = self.0;
        param.map(|t| (t * f).detach().require_grad())
    }
}

/// The screened kernel split by rows over three threads.
#[test]
fn fused_screened_split_over_threads_equals_step_loop() {
    let pool = pool_of(3);
    let inner = BaseCoreConfig::Brims(brims(modular(), vec![64, 64], vec![4, 4], vec![2, 2]));
    pool.install(|| check_fused_equals_loop(screened(inner), 67));
}

/// Slots that fill the screened kernel's cache budget in 16 rows (ν 40, ρ 24, H = A = 64: 32 KiB
/// of keys and contents a row): one thread runs 37 rows as chunks of 16, 16 and 5.
#[test]
fn fused_screened_in_cache_sized_chunks_equals_step_loop() {
    pool_of(1).install(|| check_fused_equals_loop(screened_lstm(64, [40, 24], 64), 37));
}

/// A RIMs and a BRIMs inner core.
struct RimsOrBrims(BaseCoreConfig, BaseCoreConfig);

fn modular_inners() -> RimsOrBrims {
    let CoreConfig::Rims(r) = rims(modular(), 4, 2) else {
        unreachable!()
    };
    let b = brims(modular(), vec![8, 9], vec![4, 3], vec![2, 2]);
    RimsOrBrims(BaseCoreConfig::Rims(r), BaseCoreConfig::Brims(b))
}

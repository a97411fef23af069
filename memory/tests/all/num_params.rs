//! `num_params` from the config alone: equal to burn's count of the built module for every kind
//! and every option that changes a shape, and huge (never a panic) for absurd sizes.

use burn::module::Module;
use engram_memory::{
    BaseCoreConfig, BrimsConfig, CellKind, CoreConfig, CoreSpec, FfmConfig, GroupCellConfig,
    GroupLinearConfig, GruConfig, GtrxlConfig, InputAttentionKind, LstmConfig, LstmInit,
    ModularConfig, RelLstmConfig, RimsConfig, ScreenedConfig,
};

use crate::common::*;

/// Small attention sizes, so the built modules stay tiny.
fn modular() -> ModularConfig {
    ModularConfig::new()
        .with_input_heads(2)
        .with_input_key_size(3)
        .with_comm_heads(2)
        .with_comm_key_size(3)
        .with_comm_value_size(5)
}

/// Asserts that `cfg` counts exactly the parameters its built module has, through the enum and
/// through `CoreSpec`; returns the count.
fn check(cfg: CoreConfig) -> u64 {
    cfg.validate()
        .unwrap_or_else(|e| panic!("invalid test config {cfg:?}: {e}"));
    let expected = cfg.num_params();
    let built = cfg.init(&dev()).unwrap().num_params() as u64;
    assert_eq!(expected, built, "num_params of {cfg:?}");
    let via_spec = match &cfg {
        CoreConfig::Lstm(c) => CoreSpec::num_params(c),
        CoreConfig::Gru(c) => CoreSpec::num_params(c),
        CoreConfig::Rims(c) => CoreSpec::num_params(c),
        CoreConfig::Brims(c) => CoreSpec::num_params(c),
        CoreConfig::Screened(c) => CoreSpec::num_params(c),
        CoreConfig::RelLstm(c) => CoreSpec::num_params(c),
        CoreConfig::Ffm(c) => CoreSpec::num_params(c),
        CoreConfig::Gtrxl(c) => CoreSpec::num_params(c),
    };
    assert_eq!(via_spec, expected, "CoreSpec::num_params of {cfg:?}");
    expected
}

/// Asserts the count of a base config (through [`BaseCoreConfig`]), and of screened memory
/// around it with the default and an explicit attention size.
fn check_base(base: BaseCoreConfig) {
    let expected = base.num_params();
    let built = base.init(&dev()).unwrap().num_params() as u64;
    assert_eq!(expected, built, "BaseCoreConfig::num_params of {base:?}");
    let core = CoreConfig::from_json(base.to_json().unwrap()).unwrap();
    assert_eq!(check(core), expected);
    let h = base.hidden_size() as u64;
    let plain = check(CoreConfig::Screened(ScreenedConfig::new(base.clone())));
    assert_eq!(
        plain,
        expected + 2 * h * h + h,
        "screened (A = H) around {base:?}"
    );
    let narrow = check(CoreConfig::Screened(
        ScreenedConfig::new(base.clone())
            .with_attention_size(Some(3))
            .with_short_term(2)
            .with_relevant(0),
    ));
    assert_eq!(
        narrow,
        expected + 2 * h * 3 + 3,
        "screened (A = 3) around {base:?}"
    );
}

fn rims(input: usize, hidden: usize, n: usize, k: usize, m: ModularConfig) -> RimsConfig {
    RimsConfig::new(input, hidden)
        .with_num_modules(n)
        .with_top_k(k)
        .with_modular(m)
}

fn brims(layers: &[(usize, usize, usize)], top_down: bool, concat: bool) -> BrimsConfig {
    BrimsConfig::new(5)
        .with_hidden_sizes(layers.iter().map(|l| l.0).collect())
        .with_num_modules(layers.iter().map(|l| l.1).collect())
        .with_top_k(layers.iter().map(|l| l.2).collect())
        .with_top_down(top_down)
        .with_concat_top_down(concat)
        .with_modular(modular())
}

/// RIMs configs covering every option that changes a shape.
fn rims_configs() -> Vec<RimsConfig> {
    let mut out = Vec::new();
    for cell in [CellKind::Lstm, CellKind::Gru] {
        for communication in [true, false] {
            for bypass in [false, true] {
                out.push(
                    rims(
                        5,
                        12,
                        4,
                        2,
                        modular().with_cell(cell).with_communication(communication),
                    )
                    .with_bypass_input_attention(bypass),
                );
            }
        }
    }
    // Value size left to its default `4d / heads`, rounded up (d = 3, heads = 5: 12/5 → 3).
    out.push(rims(4, 9, 3, 1, modular().with_input_heads(5)));
    out.push(rims(4, 9, 3, 3, modular().with_input_value_size(Some(7))));
    out.push(rims(
        7,
        10,
        5,
        3,
        modular()
            .with_input_heads(3)
            .with_input_key_size(4)
            .with_input_value_size(Some(2))
            .with_comm_heads(1)
            .with_comm_key_size(6)
            .with_comm_value_size(2)
            .with_dropout(0.1),
    ));
    out.push(rims(
        3,
        8,
        2,
        1,
        modular()
            .with_cell(CellKind::Gru)
            .with_input_attention(InputAttentionKind::AcrossModules)
            .with_comm_inactive_old_state(true),
    ));
    out.push(rims(6, 6, 1, 1, modular()));
    out
}

/// BRIMs configs: 1–3 layers, with and without top-down, separate and concatenated slots.
fn brims_configs() -> Vec<BrimsConfig> {
    let mut out = vec![brims(&[(8, 4, 2)], true, false)];
    let two: &[(usize, usize, usize)] = &[(8, 4, 2), (6, 2, 1)];
    let three: &[(usize, usize, usize)] = &[(8, 4, 2), (6, 3, 2), (4, 2, 1)];
    for layers in [two, three] {
        for (top_down, concat) in [(true, false), (true, true), (false, false), (false, true)] {
            out.push(brims(layers, top_down, concat));
        }
    }
    out.push(
        brims(three, true, false)
            .with_pass_inactive(false)
            .with_modular(modular().with_cell(CellKind::Gru).with_communication(false)),
    );
    out.push(
        brims(two, true, true).with_modular(
            modular()
                .with_input_heads(3)
                .with_input_value_size(Some(4))
                .with_comm_heads(1),
        ),
    );
    out
}

#[test]
fn num_params_lstm_and_gru_match_the_built_modules() {
    // (E + H)·4H + 4H and (E + H)·3H + 6H, by hand.
    assert_eq!(check(CoreConfig::Lstm(LstmConfig::new(3, 5))), 8 * 20 + 20);
    assert_eq!(check(CoreConfig::Gru(GruConfig::new(3, 5))), 8 * 15 + 30);
    check(CoreConfig::Lstm(LstmConfig::new(1, 1)));
    check(CoreConfig::Lstm(
        LstmConfig::new(7, 4).with_init(LstmInit::XavierNormal),
    ));
    check(CoreConfig::Gru(GruConfig::new(10, 2)));
    for kind in ["lstm", "gru"] {
        check(CoreConfig::default_for(kind, 6, 9).unwrap());
    }
}

#[test]
fn num_params_ffm_match_the_built_modules() {
    // E·(2m + 2H) + (2m + 2H) + m + c + 2mc·H + H, by hand (E 3, H 5, m 4, c 2).
    let small = FfmConfig::new(3, 5)
        .with_memory_size(4)
        .with_context_size(2);
    assert_eq!(
        check(CoreConfig::Ffm(small)),
        3 * 18 + 18 + 4 + 2 + 16 * 5 + 5
    );
    check(CoreConfig::Ffm(
        FfmConfig::new(1, 1)
            .with_memory_size(1)
            .with_context_size(1),
    ));
    check(CoreConfig::default_for("ffm", 6, 9).unwrap());
}

#[test]
fn num_params_gtrxl_match_the_built_modules() {
    // Embedding E·d + d, then per block 17d² + 2df + 9d + f (E 3, d 4, f 6, one block).
    let small = GtrxlConfig::new(3, 4)
        .with_num_layers(1)
        .with_num_heads(2)
        .with_memory_len(5)
        .with_ff_size(6);
    assert_eq!(
        check(CoreConfig::Gtrxl(small)),
        3 * 4 + 4 + 17 * 16 + 2 * 4 * 6 + 9 * 4 + 6
    );
    check(CoreConfig::Gtrxl(GtrxlConfig::new(1, 1).with_num_heads(1)));
    check(CoreConfig::default_for("gtrxl", 6, 8).unwrap());
}

#[test]
fn num_params_rims_match_the_built_modules_for_every_option() {
    for cfg in rims_configs() {
        check(CoreConfig::Rims(cfg));
    }
    check(CoreConfig::default_for("rims", 5, 12).unwrap());
    // Switching communication off removes exactly its projections:
    // qkv n·d·heads·(2dk + dv) and out heads·dv·2d + 2d (n = 4, d = 3, heads = 2, dk = 3, dv = 5).
    let on = rims(5, 12, 4, 2, modular()).num_params();
    let off = rims(5, 12, 4, 2, modular().with_communication(false)).num_params();
    assert_eq!(on - off, 4 * 3 * 2 * 11 + 2 * 5 * 6 + 6);
}

#[test]
fn num_params_brims_match_the_built_modules_for_every_layout() {
    for cfg in brims_configs() {
        check(CoreConfig::Brims(cfg));
    }
    check(CoreConfig::default_for("brims", 5, 6).unwrap());
    // Top-down slots add key/value projections of the layer above's width, once per layer below
    // the top, whether separate or concatenated (the projection is linear without bias).
    let three: &[(usize, usize, usize)] = &[(8, 4, 2), (6, 3, 2), (4, 2, 1)];
    // heads·(dk + dv) with dv = ⌈4d/heads⌉ = 4, for d = 2 in layers 0 (8 / 4) and 1 (6 / 3).
    let kv = 2 * (3 + 4);
    let separate = brims(three, true, false).num_params();
    let concat = brims(three, true, true).num_params();
    let plain = brims(three, false, false).num_params();
    assert_eq!(separate, concat);
    assert_eq!(separate - plain, (6 * kv + 4 * kv) as u64);
}

#[test]
fn num_params_screened_adds_its_projections_around_each_base_kind() {
    check_base(BaseCoreConfig::Lstm(LstmConfig::new(4, 6)));
    check_base(BaseCoreConfig::Gru(GruConfig::new(4, 6)));
    for cfg in rims_configs() {
        check_base(BaseCoreConfig::Rims(cfg));
    }
    for cfg in brims_configs() {
        check_base(BaseCoreConfig::Brims(cfg));
    }
    for kind in engram_memory::BASE_CORE_KINDS {
        check_base(BaseCoreConfig::default_for(kind, 4, 6).unwrap());
    }
}

#[test]
fn num_params_rel_lstm_matches_the_built_module() {
    for (e, h, nu, rho) in [(4, 6, 2, 2), (3, 5, 1, 0), (7, 3, 10, 15)] {
        let cfg = RelLstmConfig::new(e)
            .with_hidden_size(h)
            .with_short_term(nu)
            .with_relevant(rho);
        let n = check(CoreConfig::RelLstm(cfg.clone()));
        // LSTM (E + H)·4H + 4H, then W_a, U_a: H·H each and v: H.
        assert_eq!(n as usize, (e + h) * 4 * h + 4 * h + 2 * h * h + h);
        assert_eq!(n, cfg.screened().num_params());
    }
    check(CoreConfig::default_for("rel_lstm", 5, 8).unwrap());
}

#[test]
fn num_params_of_layers_match_the_built_layers() {
    let d = dev();
    let gl = GroupLinearConfig::new(3, 4, 5);
    assert_eq!(gl.num_params(), gl.init(&d).num_params() as u64);
    for kind in [CellKind::Lstm, CellKind::Gru] {
        let gc = GroupCellConfig::new(kind, 3, 4, 5);
        assert_eq!(gc.num_params(), gc.init(&d).num_params() as u64);
    }
}

#[test]
fn num_params_of_huge_configs_is_huge_without_panicking_or_allocating() {
    // Never initialised: the count comes from the sizes alone.
    let lstm = CoreConfig::Lstm(LstmConfig::new(64, 1_000_000));
    assert_eq!(lstm.num_params(), 1_000_064 * 4_000_000 + 4_000_000);
    let gru = CoreConfig::Gru(GruConfig::new(64, 1_000_000));
    assert_eq!(gru.num_params(), 1_000_064 * 3_000_000 + 6_000_000);
    let parsed = CoreConfig::from_json(serde_json::json!({
        "kind": "rims", "input_size": 64, "hidden_size": 1_000_000, "num_modules": 4, "top_k": 2
    }))
    .unwrap();
    assert!(parsed.num_params() > 1_000_000_000_000);

    let big = usize::MAX / 2;
    let huge_modular = ModularConfig::new()
        .with_input_heads(big)
        .with_input_key_size(big)
        .with_comm_heads(big)
        .with_comm_key_size(big)
        .with_comm_value_size(big);
    let configs = vec![
        CoreConfig::Lstm(LstmConfig::new(big, big)),
        CoreConfig::Gru(GruConfig::new(usize::MAX, usize::MAX)),
        CoreConfig::Rims(RimsConfig::new(big, big)),
        CoreConfig::Rims(RimsConfig::new(3, big).with_num_modules(1).with_top_k(1)),
        CoreConfig::Rims(
            RimsConfig::new(big, big)
                .with_num_modules(1)
                .with_bypass_input_attention(true),
        ),
        CoreConfig::Rims(RimsConfig::new(3, 600).with_modular(huge_modular.clone())),
        CoreConfig::Brims(
            BrimsConfig::new(big)
                .with_hidden_sizes(vec![big, big, big])
                .with_num_modules(vec![1, 2, 3])
                .with_top_k(vec![1, 1, 1])
                .with_concat_top_down(true),
        ),
        CoreConfig::Brims(
            BrimsConfig::new(usize::MAX)
                .with_hidden_sizes(vec![usize::MAX, usize::MAX])
                .with_num_modules(vec![1, 1])
                .with_top_k(vec![1, 1])
                .with_modular(huge_modular),
        ),
        CoreConfig::Screened(
            ScreenedConfig::new(BaseCoreConfig::Lstm(LstmConfig::new(big, big)))
                .with_attention_size(Some(usize::MAX)),
        ),
        CoreConfig::Screened(ScreenedConfig::new(BaseCoreConfig::Brims(
            BrimsConfig::new(big).with_hidden_sizes(vec![big, big]),
        ))),
        CoreConfig::RelLstm(RelLstmConfig::new(big).with_hidden_size(big)),
    ];
    for cfg in configs {
        assert_eq!(cfg.num_params(), u64::MAX, "saturated count of {cfg:?}");
    }
    // Sizes whose count fits in u64 are exact even when large.
    let wide = CoreConfig::Lstm(LstmConfig::new(1 << 20, 1 << 20));
    assert_eq!(wide.num_params(), (2u64 << 20) * (4 << 20) + (4 << 20));
}

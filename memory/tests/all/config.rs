//! CoreConfig: TOML/JSON with defaults, unknown fields and bad values rejected with a fix.

use engram_memory::{
    BaseCoreConfig, CoreConfig, MemoryError, RecurrentCore, BASE_CORE_KINDS, CORE_KINDS,
};

use crate::common::*;

#[test]
fn toml_picks_a_core_and_fills_defaults() {
    let cfg: CoreConfig = toml::from_str(
        r#"
        kind = "rims"
        hidden_size = 12
        num_modules = 4
        top_k = 3
        modular = { comm_key_size = 16, cell = "Gru" }
        "#,
    )
    .unwrap();
    let CoreConfig::Rims(r) = &cfg else {
        panic!("not rims: {cfg:?}")
    };
    assert_eq!((r.hidden_size, r.num_modules, r.top_k), (12, 4, 3));
    assert_eq!(r.modular.comm_key_size, 16);
    assert_eq!(r.modular.comm_value_size, 32);
    assert_eq!(r.modular.input_key_size, 64);
    let core = cfg.with_input_size(5).init(&dev()).unwrap();
    assert_eq!((core.input_size(), core.hidden_size()), (5, 12));
    assert_eq!(core.state_layout().parts.len(), 1); // GRU modules: h only
}

#[test]
fn every_kind_round_trips_through_json_and_toml() {
    for cfg in crate::sequence::every_core() {
        let json = serde_json::to_string(&cfg).unwrap();
        let back: CoreConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&cfg).unwrap()
        );
        let t = toml::to_string(&cfg).unwrap();
        let back: CoreConfig = toml::from_str(&t).unwrap();
        assert_eq!(back.kind(), cfg.kind());
    }
    let screened: CoreConfig = toml::from_str(
        "kind = \"screened\"\nshort_term = 4\nrelevant = 0\nattention_size = 5\n[inner]\nkind = \"gru\"\nhidden_size = 7\n",
    )
    .unwrap();
    let core = screened.with_input_size(3).init(&dev()).unwrap();
    assert_eq!(core.hidden_size(), 7);
    let engram_memory::Core::Screened(s) = core else {
        panic!("not screened")
    };
    assert_eq!(s.query.weight.dims(), [7, 5]);
}

#[test]
fn unknown_fields_and_bad_values_are_explained() {
    let err = toml::from_str::<CoreConfig>("kind = \"lstm\"\nhiden_size = 3\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `hiden_size`"),
        "{err}"
    );
    let err = toml::from_str::<CoreConfig>("kind = \"transformer\"\n").unwrap_err();
    assert!(err.to_string().contains("unknown core kind"), "{err}");
    let cfg: CoreConfig = toml::from_str("kind = \"rims\"\nnum_modules = 2\ntop_k = 3\n").unwrap();
    let err = cfg.with_input_size(4).init(&dev()).unwrap_err();
    assert!(matches!(err, MemoryError::InvalidConfig { .. }));
    assert!(err.to_string().contains("lower top_k"), "{err}");
    let cfg: CoreConfig = toml::from_str("kind = \"lstm\"\n").unwrap();
    assert!(cfg
        .init(&dev())
        .unwrap_err()
        .to_string()
        .contains("input_size"));
    let cfg: CoreConfig =
        toml::from_str("kind = \"screened\"\nshort_term = 0\n[inner]\nkind = \"lstm\"\n").unwrap();
    assert!(cfg
        .with_input_size(2)
        .init(&dev())
        .unwrap_err()
        .to_string()
        .contains("short_term"));
}

#[test]
fn screened_memory_cannot_wrap_a_screened_core() {
    for inner in ["screened", "ffm", "gtrxl", "rel_lstm"] {
        let text = format!("kind = \"screened\"\n[inner]\nkind = \"{inner}\"\n");
        let err = toml::from_str::<CoreConfig>(&text).unwrap_err().to_string();
        assert!(
            err.contains(&format!("inner `kind = \"{inner}\"`")),
            "{err}"
        );
        assert!(
            err.contains("inner must be lstm, gru, rims or brims"),
            "{err}"
        );
        assert!(err.contains("screened memory wraps only these"), "{err}");
    }
    assert_eq!(BASE_CORE_KINDS, ["lstm", "gru", "rims", "brims"]);
    let err = toml::from_str::<CoreConfig>("kind = \"screened\"\n[inner]\nkind = \"tcn\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown core kind `tcn`"), "{err}");
}

#[test]
fn is_modular_per_kind() {
    let expected = [
        ("lstm", false),
        ("gru", false),
        ("rims", true),
        ("brims", true),
        ("screened", true),
        ("ffm", false),
        ("gtrxl", true),
        ("rel_lstm", true),
    ];
    assert_eq!(CORE_KINDS.len(), expected.len());
    for (kind, modular) in expected {
        let cfg = CoreConfig::default_for(kind, 3, 12).unwrap();
        assert_eq!(cfg.is_modular(), modular, "{kind}");
        // What the trainer decided before `is_modular` existed.
        assert_eq!(
            cfg.is_modular(),
            !matches!(kind, "lstm" | "gru" | "ffm"),
            "{kind}"
        );
        let core = cfg.init(&dev()).unwrap();
        assert_eq!(core.is_modular(), modular, "{kind}");
    }
    // Screened memory logs its memory diagnostics whatever it wraps.
    let cfg: CoreConfig = toml::from_str("kind = \"screened\"\n[inner]\nkind = \"gru\"\n").unwrap();
    assert!(cfg.is_modular());
}

#[test]
fn every_listed_kind_builds_and_round_trips() {
    let mut seen: Vec<&str> = crate::sequence::every_core()
        .iter()
        .map(CoreConfig::kind)
        .collect();
    seen.dedup();
    assert_eq!(
        seen, CORE_KINDS,
        "every_core covers every kind, in table order"
    );
    for kind in CORE_KINDS {
        let cfg = CoreConfig::default_for(kind, 3, 12).unwrap();
        assert_eq!(cfg.kind(), kind);
        let json = cfg.to_json().unwrap();
        assert_eq!(json["kind"], kind);
        let back = CoreConfig::from_json(json.clone()).unwrap();
        assert_eq!(back.kind(), kind);
        assert_eq!(back.to_json().unwrap(), json, "{kind}");
        assert_eq!(
            (back.input_size(), back.hidden_size()),
            (cfg.input_size(), cfg.hidden_size())
        );
        let core = back.init(&dev()).unwrap();
        let core_kind = if kind == "rel_lstm" { "screened" } else { kind };
        assert_eq!(core.kind(), core_kind);
        assert_eq!((core.input_size(), core.hidden_size()), (3, 12));
    }
    for kind in BASE_CORE_KINDS {
        let cfg = BaseCoreConfig::default_for(kind, 3, 12).unwrap();
        let back = BaseCoreConfig::from_json(cfg.to_json().unwrap()).unwrap();
        assert_eq!(back.to_json().unwrap(), cfg.to_json().unwrap(), "{kind}");
        assert_eq!(
            back.to_json().unwrap(),
            CoreConfig::default_for(kind, 3, 12)
                .unwrap()
                .to_json()
                .unwrap()
        );
    }
}

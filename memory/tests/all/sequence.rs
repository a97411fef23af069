//! The shared interface, for every core: sequence = steps, resets inside a sequence, flat state.

use engram_memory::{
    BaseCoreConfig, BrimsConfig, Core, CoreConfig, CoreState, GruConfig, LstmConfig, ModularConfig,
    RecurrentCore, RelLstmConfig, RimsConfig, ScreenedConfig,
};

use crate::common::*;

fn small_modular() -> ModularConfig {
    ModularConfig::new()
        .with_input_key_size(8)
        .with_comm_heads(2)
        .with_comm_key_size(4)
        .with_comm_value_size(4)
}

/// One small configuration of every core kind (input width 4).
pub fn every_core() -> Vec<CoreConfig> {
    let rims = RimsConfig::new(4, 8)
        .with_num_modules(4)
        .with_top_k(2)
        .with_modular(small_modular());
    vec![
        CoreConfig::Lstm(LstmConfig::new(4, 6)),
        CoreConfig::Gru(GruConfig::new(4, 6)),
        CoreConfig::Rims(rims.clone()),
        CoreConfig::Rims(
            rims.clone()
                .with_modular(small_modular().with_cell(engram_memory::CellKind::Gru)),
        ),
        CoreConfig::Brims(
            BrimsConfig::new(4)
                .with_hidden_sizes(vec![8, 6])
                .with_num_modules(vec![4, 2])
                .with_top_k(vec![2, 1])
                .with_modular(small_modular()),
        ),
        CoreConfig::Screened(
            ScreenedConfig::new(BaseCoreConfig::Rims(rims))
                .with_short_term(3)
                .with_relevant(2),
        ),
        CoreConfig::Ffm(
            engram_memory::FfmConfig::new(4, 6)
                .with_memory_size(3)
                .with_context_size(2)
                .with_max_period(16.0),
        ),
        CoreConfig::Gtrxl(
            engram_memory::GtrxlConfig::new(4, 6)
                .with_num_heads(2)
                .with_memory_len(4)
                .with_ff_size(8),
        ),
        CoreConfig::RelLstm(
            RelLstmConfig::new(4)
                .with_hidden_size(6)
                .with_short_term(2)
                .with_relevant(2),
        ),
    ]
}

fn build(cfg: &CoreConfig) -> Core {
    cfg.init(&dev()).unwrap()
}

#[test]
fn sequence_forward_equals_stepping() {
    let d = dev();
    for cfg in every_core() {
        let core = build(&cfg);
        let x = rand3([3, 9, 4], 1, 1.0, &d);
        let (y, s) = core
            .forward_sequence(x.clone(), core.init_state(3, &d), None)
            .unwrap();
        assert_eq!(y.dims(), [3, 9, core.hidden_size()]);
        let mut state = core.init_state(3, &d);
        for t in 0..9 {
            let (yt, st) = core
                .step(x.clone().narrow(1, t, 1).reshape([3, 4]), state)
                .unwrap();
            assert_close(
                &y.clone().narrow(1, t, 1).reshape([3, core.hidden_size()]),
                &yt,
                1e-6,
            );
            state = st;
        }
        for (a, b) in s.parts.iter().zip(&state.parts) {
            assert_close(a, b, 1e-6);
        }
    }
}

#[test]
fn episode_starts_reset_rows_inside_a_sequence() {
    let d = dev();
    for cfg in every_core() {
        let core = build(&cfg);
        let (b, t_len, cut) = (2, 10, 6);
        let x = rand3([b, t_len, 4], 2, 1.0, &d);
        // Row 1 starts a new episode at step `cut`; row 0 never does.
        let mut starts = vec![false; b * t_len];
        starts[t_len + cut] = true;
        let (y, _) = core
            .forward_sequence(x.clone(), core.init_state(b, &d), Some(&starts))
            .unwrap();
        let (y_plain, _) = core
            .forward_sequence(x.clone(), core.init_state(b, &d), None)
            .unwrap();
        let h = core.hidden_size();
        let row = |t: &burn::tensor::Tensor<3>, r: usize| t.clone().narrow(0, r, 1);
        assert_eq!(bits(&row(&y, 0)), bits(&row(&y_plain, 0)), "{}", cfg.kind());
        let tail = x.clone().narrow(0, 1, 1).narrow(1, cut, t_len - cut);
        let (y_fresh, _) = core
            .forward_sequence(tail, core.init_state(1, &d), None)
            .unwrap();
        assert_close(&row(&y, 1).narrow(1, cut, t_len - cut), &y_fresh, 1e-6);
        assert_eq!(y.dims(), [b, t_len, h]);
    }
}

#[test]
fn flat_state_round_trip_continues_identically() {
    let d = dev();
    for cfg in every_core() {
        let core = build(&cfg);
        let x = rand3([2, 12, 4], 3, 1.0, &d);
        let (_, s) = core
            .forward_sequence(x.clone().narrow(1, 0, 7), core.init_state(2, &d), None)
            .unwrap();
        let flat = s.to_flat();
        assert_eq!(flat.len(), 2 * core.state_layout().row_width());
        let s2 = core.state_from_flat(&flat, 2, &d).unwrap();
        let rest = x.narrow(1, 7, 5);
        let (ya, _) = core.forward_sequence(rest.clone(), s, None).unwrap();
        let (yb, _) = core.forward_sequence(rest, s2, None).unwrap();
        assert_eq!(bits(&ya), bits(&yb), "{}", cfg.kind());
        // per-row buffers: row 1 alone continues like row 1 of the batch
        let row1 = CoreState::from_flat(
            &core.state_layout(),
            &flat[core.state_layout().row_width()..],
            1,
            &d,
        )
        .unwrap();
        assert_eq!(row1.batch_size(), 1);
    }
}

#[test]
fn wrong_shapes_are_errors_not_panics() {
    let d = dev();
    let core = build(&every_core()[0]);
    assert!(core
        .step(rand2([2, 5], 1, 1.0, &d), core.init_state(2, &d))
        .is_err());
    assert!(core
        .step(rand2([2, 4], 1, 1.0, &d), core.init_state(3, &d))
        .is_err());
    assert!(core
        .forward_sequence(
            rand3([2, 3, 4], 1, 1.0, &d),
            core.init_state(2, &d),
            Some(&[true; 5])
        )
        .is_err());
    assert!(core.state_from_flat(&[0.0; 7], 2, &d).is_err());
}

//! CoreState: masks, row selection and concatenation, detach, flat buffers.

use burn::tensor::{Tensor, TensorData};
use engram_memory::{CoreState, StateLayout};

use crate::common::*;

fn layout() -> StateLayout {
    StateLayout::new([("h", 3), ("c", 2)])
}

fn numbered(b: usize) -> CoreState {
    let d = dev();
    let h: Vec<f32> = (0..b * 3).map(|i| i as f32 + 1.0).collect();
    let c: Vec<f32> = (0..b * 2).map(|i| -(i as f32) - 1.0).collect();
    CoreState::from_parts(vec![
        Tensor::from_data(TensorData::new(h, [b, 3]), &d),
        Tensor::from_data(TensorData::new(c, [b, 2]), &d),
    ])
}

#[test]
fn reset_rows_zeroes_exactly_the_masked_rows() {
    let s = numbered(3).reset_rows(&[false, true, false]).unwrap();
    assert_eq!(host(&s.parts[0]), vec![1., 2., 3., 0., 0., 0., 7., 8., 9.]);
    assert_eq!(host(&s.parts[1]), vec![-1., -2., 0., 0., -5., -6.]);
    assert!(numbered(3).reset_rows(&[true]).is_err());
}

#[test]
fn select_and_cat_rows() {
    let s = numbered(3);
    let picked = s.clone().select_rows(&[2, 0]).unwrap();
    assert_eq!(host(&picked.parts[0]), vec![7., 8., 9., 1., 2., 3.]);
    let joined = CoreState::cat_rows(vec![picked, s.clone()]).unwrap();
    assert_eq!(joined.batch_size(), 5);
    assert_eq!(host(&joined.parts[1])[4..], host(&s.parts[1])[..]);
    assert!(s.clone().select_rows(&[3]).is_err());
    let other = CoreState::zeros(&StateLayout::new([("h", 4)]), 1, &dev());
    assert!(CoreState::cat_rows(vec![s, other]).is_err());
}

#[test]
fn flat_buffers_are_row_major_per_env() {
    let s = numbered(2);
    let flat = s.to_flat();
    assert_eq!(flat, vec![1., 2., 3., -1., -2., 4., 5., 6., -3., -4.]);
    let back = CoreState::from_flat(&layout(), &flat, 2, &dev()).unwrap();
    assert_eq!(host(&back.parts[0]), host(&s.parts[0]));
    assert_eq!(host(&back.parts[1]), host(&s.parts[1]));
    assert!(CoreState::from_flat(&layout(), &flat[1..], 2, &dev()).is_err());
    assert!(back.check(&layout(), 2).is_ok());
    assert!(back.check(&layout(), 3).is_err());
}

#[test]
fn detach_cuts_the_graph() {
    let d = ad();
    let x = rand2([2, 3], 1, 1.0, &d).require_grad();
    let s = CoreState::from_parts(vec![x.clone() * 2.0]);
    let kept = s.clone().parts[0].clone().sum();
    let g = kept.backward();
    assert!(x.grad(&g).is_some());
    let detached = s.detach();
    assert!(!detached.parts[0].is_tracked());
}

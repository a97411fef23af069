//! The supervised copy/denoise harness: it learns, it reports what it ran, and its time limit stops it.

use engram_memory::copy_task::Task;
use engram_memory::supervised::{train, TrainSpec};
use engram_memory::{CoreConfig, LstmConfig};

fn lstm_spec(task: Task, steps: usize) -> TrainSpec {
    let mut spec = TrainSpec::new(task, CoreConfig::Lstm(LstmConfig::new(0, 64)));
    spec.train_length = 2;
    spec.eval_length = 2;
    spec.steps = steps;
    spec.batch = 32;
    spec.learning_rate = 3e-3;
    spec.loss_last_only = true;
    spec.seed = 3;
    spec.log_every = 50;
    spec
}

#[test]
fn lstm_learns_a_short_copy_above_chance() {
    let report = train(&lstm_spec(Task::Copy, 1000), |_| {}).expect("trains");
    assert_eq!(report.steps, 1000);
    assert_eq!(report.curve.len(), 20);
    let first = report.curve[0].1;
    assert!(
        report.final_loss < 0.85 * first,
        "loss {first} → {}",
        report.final_loss
    );
    let mean = report.eval_position_accuracy.iter().sum::<f32>() / 10.0;
    assert!((mean - report.eval_accuracy).abs() < 1e-6);
    // Chance on the recalled symbols is 1/8.
    assert!(
        report.eval_accuracy > 0.3,
        "eval accuracy {} (chance {})",
        report.eval_accuracy,
        report.chance_accuracy
    );
}

#[test]
fn max_seconds_stops_training_and_still_evaluates() {
    let mut spec = lstm_spec(Task::Denoise, 1_000_000);
    spec.max_seconds = Some(1.0);
    let report = train(&spec, |_| {}).expect("trains");
    assert!(
        report.steps >= 1 && report.steps < 1_000_000,
        "steps {}",
        report.steps
    );
    assert!(report.eval_loss.is_finite());
    // The last progress point is the step training stopped at.
    assert_eq!(report.curve.last().map(|c| c.0), Some(report.steps));
}

#[test]
fn stop_at_accuracy_ends_training_and_transfer_evaluates_further_delays() {
    let mut spec = lstm_spec(Task::Copy, 20_000);
    spec.stop_at_accuracy = Some(0.25);
    spec.transfer_lengths = vec![3, 6];
    let report = train(&spec, |_| {}).expect("trains");
    assert!(report.steps < 20_000, "ran all {} steps", report.steps);
    assert!(report.train_accuracy >= 0.25, "{}", report.train_accuracy);
    let lengths: Vec<usize> = report.transfer.iter().map(|t| t.length).collect();
    assert_eq!(lengths, [3, 6]);
    assert!(report
        .transfer
        .iter()
        .all(|t| (0.0..=1.0).contains(&t.accuracy) && t.loss.is_finite()));
}

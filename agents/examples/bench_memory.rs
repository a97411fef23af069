//! Trains a core on copy/denoise and prints recall accuracy (the `engram bench memory` harness).
//!
//! ```text
//! cargo run --release -p engram-agents --example bench_memory -- \
//!     --task copy --core rel_lstm --length 200 --steps 600 --seed 1
//! ```
//! Options: `--task copy|denoise`, `--core lstm|gru|rims|brims|screened|rel_lstm`,
//! `--length T` (train and eval), `--train-length T`, `--eval-length T2`, `--hidden H`,
//! `--steps N`, `--batch B`, `--lr LR`, `--optimizer adam|rmsprop`, `--clip-global`, `--seed S`,
//! `--loss-last`, `--modules N --top-k K`,
//! `--short-term NU --relevant RHO`, `--log-every N`.

use std::process::ExitCode;

use engram_agents::supervised::{train, GradClip, OptimizerKind, TrainSpec};
use engram_envs::SequenceTask as Task;
use engram_memory::CoreConfig;

fn value<T: std::str::FromStr>(args: &[String], i: usize, flag: &str) -> Result<T, String> {
    args.get(i + 1)
        .ok_or_else(|| format!("{flag} needs a value"))?
        .parse()
        .map_err(|_| format!("bad value for {flag}: {:?}", args.get(i + 1)))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut task = Task::Copy;
    let mut core = String::from("lstm");
    let (mut train_len, mut eval_len) = (None::<usize>, None::<usize>);
    let mut length = 50usize;
    let mut hidden = 128usize;
    let (mut steps, mut batch, mut lr, mut seed) = (500usize, 32usize, 1e-3f64, 0u64);
    let (mut modules, mut top_k) = (None::<usize>, None::<usize>);
    let (mut nu, mut rho) = (None::<usize>, None::<usize>);
    let mut loss_last = false;
    let mut optimizer = OptimizerKind::Adam;
    let mut clip_global = false;
    let mut log_every = 50usize;
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        let mut takes = true;
        match flag {
            "--task" => {
                task = value::<String>(&args, i, flag)?
                    .parse()
                    .map_err(|e| format!("{e}"))?
            }
            "--core" => core = value(&args, i, flag)?,
            "--length" => length = value(&args, i, flag)?,
            "--train-length" => train_len = Some(value(&args, i, flag)?),
            "--eval-length" => eval_len = Some(value(&args, i, flag)?),
            "--hidden" => hidden = value(&args, i, flag)?,
            "--steps" => steps = value(&args, i, flag)?,
            "--batch" => batch = value(&args, i, flag)?,
            "--lr" => lr = value(&args, i, flag)?,
            "--seed" => seed = value(&args, i, flag)?,
            "--modules" => modules = Some(value(&args, i, flag)?),
            "--top-k" => top_k = Some(value(&args, i, flag)?),
            "--short-term" => nu = Some(value(&args, i, flag)?),
            "--relevant" => rho = Some(value(&args, i, flag)?),
            "--log-every" => log_every = value(&args, i, flag)?,
            "--optimizer" => {
                optimizer = OptimizerKind::parse(&value::<String>(&args, i, flag)?)
                    .map_err(|e| e.to_string())?
            }
            "--loss-last" => {
                loss_last = true;
                takes = false;
            }
            "--clip-global" => {
                clip_global = true;
                takes = false;
            }
            other => return Err(format!("unknown option {other}")),
        }
        i += if takes { 2 } else { 1 };
    }
    let mut cfg =
        CoreConfig::default_for(&core, task.num_inputs(), hidden).map_err(|e| e.to_string())?;
    match &mut cfg {
        CoreConfig::Rims(r) => {
            r.num_modules = modules.unwrap_or(r.num_modules);
            r.top_k = top_k.unwrap_or(r.top_k);
        }
        CoreConfig::Screened(s) => {
            s.short_term = nu.unwrap_or(s.short_term);
            s.relevant = rho.unwrap_or(s.relevant);
        }
        CoreConfig::RelLstm(s) => {
            s.short_term = nu.unwrap_or(s.short_term);
            s.relevant = rho.unwrap_or(s.relevant);
        }
        _ => {}
    }
    let mut spec = TrainSpec::new(task, cfg);
    spec.train_length = train_len.unwrap_or(length);
    spec.eval_length = eval_len.unwrap_or(length);
    spec.steps = steps;
    spec.batch = batch;
    spec.optimizer = optimizer;
    spec.learning_rate = lr;
    if clip_global {
        spec.grad_clip = Some(GradClip::Global(1.0));
    }
    spec.seed = seed;
    spec.loss_last_only = loss_last;
    spec.log_every = log_every;
    println!(
        "task={task} core={core} hidden={hidden} train_T={} eval_T={} steps={steps} batch={batch} optimizer={optimizer:?} lr={lr} clip_global={clip_global} seed={seed}",
        spec.train_length, spec.eval_length
    );
    let report = train(&spec, |p| {
        println!(
            "step {:>6}  loss {:.4}  acc(last10) {:.3}  {:.0}s",
            p.step, p.loss, p.accuracy, p.seconds
        )
    })
    .map_err(|e| e.to_string())?;
    println!(
        "RESULT task={} core={} params={} train_T={} eval_T={} steps={} seed={} train_acc={:.3} eval_acc={:.3} eval_ce={:.4} chance={:.3} time={:.0}s",
        report.task,
        report.core,
        report.parameters,
        report.train_length,
        report.eval_length,
        report.steps,
        report.seed,
        report.train_accuracy,
        report.eval_accuracy,
        report.eval_loss,
        report.chance_accuracy,
        report.seconds
    );
    if let Some((retained, attended)) = report.symbol_memory {
        println!(
            "MEMORY symbol states retained at the last step {retained:.3}, attention on them during recall {attended:.3}"
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    engram_memory::allocator::keep_freed_memory();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

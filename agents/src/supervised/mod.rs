//! Supervised training harness behind `engram bench memory`: train a core on copy/denoise and report recall accuracy.

use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, RmsPropConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};

use engram_envs::{EnvRng, SequenceTask as Task};
use engram_memory::{Core, CoreConfig, RecurrentCore};

use crate::algo::grad_norm::clip_global_norm;
use crate::error::{AgentError, Result};

mod data;

pub use data::{generate, SeqBatch};

/// The harness's optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// Adam (β 0.9 / 0.999, ε 1e-5): the RIMs paper's choice and our default.
    Adam,
    /// RMSprop with PyTorch's defaults (α 0.99, ε 1e-8, no momentum, not centred): the official
    /// `copytask.py` / `denoisetask.py` of Kerg et al.
    RmsProp,
}

impl OptimizerKind {
    /// Parse `adam` or `rmsprop`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "adam" => Ok(Self::Adam),
            "rmsprop" => Ok(Self::RmsProp),
            other => Err(AgentError::Config(format!(
                "unknown optimizer `{other}`; use adam or rmsprop"
            ))),
        }
    }
}

/// How gradients are clipped before each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradClip {
    /// Each parameter tensor's gradient to this L2 norm on its own (burn's clipping).
    PerParameter(f32),
    /// All gradients together to this global L2 norm (PyTorch's `clip_grad_norm_`, as the
    /// official scripts do).
    Global(f32),
}

/// What to train and how.
#[derive(Debug, Clone)]
pub struct TrainSpec {
    /// Task.
    pub task: Task,
    /// Core (its `input_size` is set from the task).
    pub core: CoreConfig,
    /// Delay `T` during training.
    pub train_length: usize,
    /// Delay `T` at evaluation (e.g. 4× the training delay to test generalisation).
    pub eval_length: usize,
    /// Optimisation steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Learning rate.
    pub learning_rate: f64,
    /// Gradient clipping (official: global norm 1.0); `None` disables clipping.
    pub grad_clip: Option<GradClip>,
    /// Seed of the data and of the parameter initialisation.
    pub seed: u64,
    /// Evaluation batches (of `batch` sequences).
    pub eval_batches: usize,
    /// Cross-entropy on the last 10 outputs only (Kerg et al.) instead of all `T+20` (RIMs).
    pub loss_last_only: bool,
    /// Report progress every this many steps (0: never).
    pub log_every: usize,
    /// Device to train and evaluate on (without autodiff; the harness adds it).
    pub device: Device,
    /// Stop training after the first step that ends past this many seconds (then evaluate), even
    /// if `steps` are not done.
    pub max_seconds: Option<f64>,
    /// Stop training once the mean training accuracy over the last 10 steps reaches this (then
    /// evaluate).
    pub stop_at_accuracy: Option<f32>,
    /// Further delays to evaluate the trained model at (transfer, e.g. train at 50, evaluate at
    /// 1000 and 5000), after the main evaluation at `eval_length`.
    pub transfer_lengths: Vec<usize>,
    /// After training, measure [`Report::gradient_profile`] at `eval_length`.
    pub gradient_profile: bool,
}

impl TrainSpec {
    /// Defaults: T = 50 (train and eval), 1000 steps, batch 32, Adam 1e-3, per-parameter clip 1.0,
    /// seed 0, flex.
    pub fn new(task: Task, core: CoreConfig) -> Self {
        Self {
            task,
            core,
            train_length: 50,
            eval_length: 50,
            steps: 1000,
            batch: 32,
            optimizer: OptimizerKind::Adam,
            learning_rate: 1e-3,
            grad_clip: Some(GradClip::PerParameter(1.0)),
            seed: 0,
            eval_batches: 4,
            loss_last_only: false,
            log_every: 50,
            device: Device::flex(),
            max_seconds: None,
            stop_at_accuracy: None,
            transfer_lengths: Vec::new(),
            gradient_profile: false,
        }
    }
}

/// Recall at a further delay, after training: see [`TrainSpec::transfer_lengths`].
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// The delay `T`.
    pub length: usize,
    /// Accuracy on the last 10 outputs.
    pub accuracy: f32,
    /// Cross-entropy averaged over all positions.
    pub loss: f32,
}

/// A progress line passed to the caller's callback.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Steps done.
    pub step: usize,
    /// Training loss of the last step.
    pub loss: f32,
    /// Accuracy on the last 10 outputs of the last training batch.
    pub accuracy: f32,
    /// Seconds since the start.
    pub seconds: f64,
}

/// Result of a training run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Task.
    pub task: Task,
    /// Core kind.
    pub core: String,
    /// Core parameters.
    pub parameters: usize,
    /// Training delay.
    pub train_length: usize,
    /// Evaluation delay.
    pub eval_length: usize,
    /// Steps run (fewer than asked when `max_seconds` stopped training).
    pub steps: usize,
    /// Seed.
    pub seed: u64,
    /// Mean training loss over the last 10 steps.
    pub final_loss: f32,
    /// Mean accuracy on the last 10 outputs over the last 10 training batches.
    pub train_accuracy: f32,
    /// Accuracy on the last 10 outputs at the evaluation delay.
    pub eval_accuracy: f32,
    /// Accuracy at each of the 10 recall positions at the evaluation delay (which symbols are
    /// recalled: a plateau can be some positions solved and the rest at chance).
    pub eval_position_accuracy: PositionAccuracy,
    /// Cross-entropy averaged over all positions at the evaluation delay.
    pub eval_loss: f32,
    /// Chance accuracy on the recalled symbols (1/8).
    pub chance_accuracy: f32,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// `(step, loss, accuracy)` at every log point.
    pub curve: Vec<(usize, f32, f32)>,
    /// Recall at each of [`TrainSpec::transfer_lengths`].
    pub transfer: Vec<Transfer>,
    /// Screened memory on copy, at evaluation: `(retained, attended)` — the mean fraction of the
    /// 10 symbol states (written at steps 0..9) held in memory at the last step, and the mean
    /// attention mass on symbol states over the 10 recall steps. `None` for other cores/tasks.
    pub symbol_memory: SymbolMemory,
    /// `‖∂L/∂x_t‖` for every step `t` of one batch at the evaluation delay (L2 norm over the
    /// input, mean over the batch; `L` the training loss): how much credit reaches each step,
    /// e.g. the symbols at `t` = 0..9 from the recall at the end (docs/research/models.md §6.4, item 20).
    /// `None` unless [`TrainSpec::gradient_profile`].
    pub gradient_profile: Option<Vec<f32>>,
}

/// A core with a linear readout to the task's classes.
#[derive(Module, Debug)]
pub struct SequenceModel {
    /// The recurrent core.
    pub core: Core,
    /// Readout `[H, classes]`.
    pub readout: Linear,
}

impl SequenceModel {
    /// Logits `[B, L, classes]` for one-hot inputs `[B, L, V]`, from the zero state.
    pub fn forward(&self, x: Tensor<3>) -> Result<Tensor<3>> {
        let [b, _, _] = x.dims();
        let state = self.core.init_state(b, &x.device());
        let (y, _) = self.core.forward_sequence(x, state, None)?;
        Ok(self.readout.forward(y))
    }
}

/// The optimiser `spec` asks for, with per-parameter clipping built in when asked (global
/// clipping is applied to the gradients before each step instead).
fn optimizer(spec: &TrainSpec) -> ModuleOptimizer {
    let per_parameter = match spec.grad_clip {
        Some(GradClip::PerParameter(max_norm)) => Some(GradientClippingConfig::Norm(max_norm)),
        _ => None,
    };
    match spec.optimizer {
        OptimizerKind::Adam => AdamConfig::new().with_grad_clipping(per_parameter).init(),
        OptimizerKind::RmsProp => RmsPropConfig::new()
            .with_alpha(0.99)
            .with_momentum(0.0)
            .with_epsilon(1e-8)
            .with_grad_clipping(per_parameter)
            .init(),
    }
}

fn tensors(batch: &SeqBatch, classes: usize, device: &Device) -> (Tensor<3>, Tensor<3>) {
    let x = Tensor::from_data(
        TensorData::new(
            batch.inputs.clone(),
            [batch.batch, batch.len, batch.input_size],
        ),
        device,
    );
    let mut onehot = vec![0f32; batch.batch * batch.len * classes];
    for (i, &c) in batch.targets.iter().enumerate() {
        onehot[i * classes + c] = 1.0;
    }
    let y = Tensor::from_data(
        TensorData::new(onehot, [batch.batch, batch.len, classes]),
        device,
    );
    (x, y)
}

/// Accuracy at each of the 10 recall positions.
pub type PositionAccuracy = [f32; 10];

/// Mean of the per-position accuracies.
fn mean_accuracy(per_position: &PositionAccuracy) -> f32 {
    per_position.iter().sum::<f32>() / per_position.len() as f32
}

/// Cross-entropy (mean over the chosen positions) and accuracy at each of the last 10 positions.
fn loss_and_accuracy(
    logits: Tensor<3>,
    onehot: Tensor<3>,
    batch: &SeqBatch,
    last_only: bool,
) -> (Tensor<1>, PositionAccuracy) {
    let [b, l, c] = logits.dims();
    let logp = log_softmax(logits.clone(), 2);
    let (logp, onehot, positions) = if last_only {
        (logp.narrow(1, l - 10, 10), onehot.narrow(1, l - 10, 10), 10)
    } else {
        (logp, onehot, l)
    };
    let loss = (logp * onehot)
        .sum()
        .neg()
        .div_scalar((b * positions) as f64);
    let lg: Vec<f32> = logits
        .narrow(1, l - 10, 10)
        .detach()
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_default();
    let mut correct = [0usize; 10];
    for row in 0..b {
        for (k, hits) in correct.iter_mut().enumerate() {
            let off = (row * 10 + k) * c;
            let pred = (0..c)
                .max_by(|&i, &j| lg[off + i].total_cmp(&lg[off + j]))
                .unwrap_or(0);
            if pred == batch.targets[row * l + l - 10 + k] {
                *hits += 1;
            }
        }
    }
    (loss.reshape([1]), correct.map(|c| c as f32 / b as f32))
}

/// Trains `spec.core` on `spec.task` and evaluates recall accuracy at `spec.eval_length`.
///
/// Runs on `spec.device` with autodiff; `on_progress` is called every `log_every` steps.
pub fn train(spec: &TrainSpec, mut on_progress: impl FnMut(&Progress)) -> Result<Report> {
    if spec.batch == 0
        || spec.train_length == 0
        || spec.eval_length == 0
        || spec.transfer_lengths.contains(&0)
    {
        return Err(AgentError::Config(
            "bench memory: batch, train_length, eval_length and transfer lengths must be at least 1"
                .into(),
        ));
    }
    let start = Instant::now();
    let device = spec.device.clone().autodiff();
    device.seed(spec.seed);
    let task = spec.task;
    let classes = task.num_classes();
    let core_cfg = spec.core.clone().with_input_size(task.num_inputs());
    let core = core_cfg.init(&device)?;
    let readout = LinearConfig::new(core.hidden_size(), classes).init(&device);
    let mut model = SequenceModel { core, readout };
    let parameters = model.num_params();
    let mut optim = optimizer(spec);
    let mut rng = EnvRng::from_seed(spec.seed);
    let mut curve = Vec::new();
    let mut recent: Vec<(f32, f32)> = Vec::new();
    let out_of_time = || {
        spec.max_seconds
            .is_some_and(|limit| start.elapsed().as_secs_f64() >= limit)
    };
    let mut steps_done = 0;
    for step in 1..=spec.steps {
        steps_done = step;
        let data = generate(task, &mut rng, spec.batch, spec.train_length);
        let (x, y) = tensors(&data, classes, &device);
        let logits = model.forward(x)?;
        let (loss, per_position) = loss_and_accuracy(logits, y, &data, spec.loss_last_only);
        let acc = mean_accuracy(&per_position);
        let loss_value: f32 = loss.clone().into_scalar::<f32>();
        if !loss_value.is_finite() {
            return Err(AgentError::SupervisedNonFinite {
                step,
                loss: loss_value,
            });
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(GradClip::Global(max_norm)) = spec.grad_clip {
            clip_global_norm(&model, &mut grads, f64::from(max_norm));
        }
        model = optim.step(spec.learning_rate, model, grads);
        recent.push((loss_value, acc));
        if recent.len() > 10 {
            recent.remove(0);
        }
        let solved = spec.stop_at_accuracy.is_some_and(|target| {
            recent.len() == 10 && recent.iter().map(|r| r.1).sum::<f32>() / 10.0 >= target
        });
        let stop = solved || out_of_time();
        if spec.log_every > 0 && (step % spec.log_every == 0 || step == spec.steps || stop) {
            let p = Progress {
                step,
                loss: loss_value,
                accuracy: acc,
                seconds: start.elapsed().as_secs_f64(),
            };
            curve.push((step, loss_value, acc));
            on_progress(&p);
        }
        if stop {
            break;
        }
    }
    let (eval_position_accuracy, eval_loss, symbol_memory) =
        evaluate(&model, spec, spec.eval_length, &mut rng)?;
    let gradient_profile = if spec.gradient_profile {
        Some(input_gradient_profile(&model, spec, &mut rng)?)
    } else {
        None
    };
    let mut transfer = Vec::with_capacity(spec.transfer_lengths.len());
    for &length in &spec.transfer_lengths {
        let (per_position, loss, _) = evaluate(&model, spec, length, &mut rng)?;
        transfer.push(Transfer {
            length,
            accuracy: mean_accuracy(&per_position),
            loss,
        });
    }
    let n = recent.len().max(1) as f32;
    Ok(Report {
        task,
        core: core_cfg.kind().to_string(),
        parameters,
        train_length: spec.train_length,
        eval_length: spec.eval_length,
        steps: steps_done,
        seed: spec.seed,
        final_loss: recent.iter().map(|r| r.0).sum::<f32>() / n,
        train_accuracy: recent.iter().map(|r| r.1).sum::<f32>() / n,
        eval_accuracy: mean_accuracy(&eval_position_accuracy),
        eval_position_accuracy,
        eval_loss,
        chance_accuracy: 1.0 / 8.0,
        seconds: start.elapsed().as_secs_f64(),
        curve,
        transfer,
        symbol_memory,
        gradient_profile,
    })
}

/// [`Report::gradient_profile`]: the norm of the training loss's gradient with respect to each
/// step's input, on one batch at the evaluation delay.
fn input_gradient_profile(
    model: &SequenceModel,
    spec: &TrainSpec,
    rng: &mut EnvRng,
) -> Result<Vec<f32>> {
    let device = spec.device.clone().autodiff();
    let data = generate(spec.task, rng, spec.batch, spec.eval_length);
    let (x, y) = tensors(&data, spec.task.num_classes(), &device);
    let x = x.require_grad();
    let logits = model.forward(x.clone())?;
    let (loss, _) = loss_and_accuracy(logits, y, &data, spec.loss_last_only);
    let grads = loss.backward();
    let grad = x
        .grad(&grads)
        .ok_or_else(|| AgentError::Config("bench memory: no gradient reached the inputs".into()))?;
    let norms = grad
        .powf_scalar(2.0)
        .sum_dim(2)
        .sqrt()
        .mean_dim(0)
        .reshape([data.len]);
    Ok(norms
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_default())
}

/// `(retained, attended)` of [`Report::symbol_memory`], when measured.
type SymbolMemory = Option<(f32, f32)>;

/// Accuracy at each of the last 10 outputs and all-position cross-entropy at delay `length`,
/// and for screened memory on copy the symbol-memory statistics of [`Report::symbol_memory`].
fn evaluate(
    model: &SequenceModel,
    spec: &TrainSpec,
    length: usize,
    rng: &mut EnvRng,
) -> Result<(PositionAccuracy, f32, SymbolMemory)> {
    let model = model.valid();
    let device = spec.device.clone();
    let classes = spec.task.num_classes();
    let (mut acc, mut loss) = ([0.0f32; 10], 0.0);
    let mut memory: SymbolMemory = None;
    let batches = spec.eval_batches.max(1);
    for _ in 0..batches {
        let data = generate(spec.task, rng, spec.batch, length);
        let (x, y) = tensors(&data, classes, &device);
        let logits = model.forward(x.clone())?;
        let (l, a) = loss_and_accuracy(logits, y, &data, false);
        for (sum, a) in acc.iter_mut().zip(a) {
            *sum += a / batches as f32;
        }
        loss += l.into_scalar::<f32>();
        if spec.task == Task::Copy && matches!(model.core, Core::Screened(_)) {
            let (r, at) = symbol_memory(&model.core, x)?;
            let m = memory.get_or_insert((0.0, 0.0));
            m.0 += r / batches as f32;
            m.1 += at / batches as f32;
        }
    }
    Ok((acc, loss / batches as f32, memory))
}

/// Copy task with screened memory: the mean fraction of the 10 symbol states (written at steps
/// 0..9) in memory at the last step, and the mean attention mass on them over the last 10 steps.
fn symbol_memory(core: &Core, x: Tensor<3>) -> Result<(f32, f32)> {
    let [b, l, _] = x.dims();
    let state = core.init_state(b, &x.device());
    let (_, _, diags) = core.forward_sequence_with_diagnostics(x, state, None)?;
    let host = |t: &Tensor<2>| t.to_data().try_into_vec_as::<f32>().unwrap_or_default();
    let (mut retained, mut attended) = (0.0, 0.0);
    for (t, d) in diags.iter().enumerate().skip(l.saturating_sub(10)) {
        let Some(mem) = &d.memory else { continue };
        let (ages, alpha) = (host(&mem.ages), host(&mem.attention));
        // A slot holds a symbol state when it was written at step ≤ 9, i.e. its age ≥ t − 9.
        let symbol = |i: usize| ages[i] >= 0.0 && ages[i] + 9.0 >= t as f32;
        attended += (0..ages.len())
            .filter(|&i| symbol(i))
            .map(|i| alpha[i])
            .sum::<f32>()
            / (b * 10) as f32;
        if t == l - 1 {
            retained = (0..ages.len()).filter(|&i| symbol(i)).count() as f32 / (b * 10) as f32;
        }
    }
    Ok((retained, attended))
}

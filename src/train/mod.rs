//! Mini-batch training with a seeded shuffle, the lecture's running loss
//! estimate, and evaluation after each epoch; checkpoints to stop and resume
//! a run bit for bit.

mod checkpoint;

pub use checkpoint::Checkpoint;
use checkpoint::settings;

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::{Dataset, strip_order};
use crate::dense::SKIPS_ZEROS_MIN_WIDTH;
use crate::gemm::{Isa, MatRef, Par, f32_sliver_rows};
use crate::loss::cross_entropy_row;
use crate::mlp::{Infer, Mlp, MlpWorkspace, argmax_rows};
use crate::optim::{Optimizer, OptimizerState, Schedule};
use crate::par::PoolError;

/// How to train. [`TrainConfig::default()`] is a neutral start (each
/// field's default is in its doc); `train_mnist`'s own defaults are tuned
/// for its MNIST job (5 epochs, cosine schedule, seed 1) and its `--help`
/// states them.
///
/// ```
/// use densekit::optim::Schedule;
/// use densekit::train::TrainConfig;
/// let config = TrainConfig { epochs: 3, ..TrainConfig::default() };
/// assert_eq!((config.batch_size, config.seed, config.schedule), (128, 0, Schedule::Constant));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set (default 10).
    pub epochs: usize,
    /// Samples per step; the last batch of an epoch may be smaller (it is
    /// used). Default 128.
    pub batch_size: usize,
    /// Seeds the per-epoch shuffles (default 0).
    pub seed: u64,
    /// λ of the running loss estimate `Q ← λ·ε + (1 − λ)·Q` (default 0.01).
    pub running_lambda: f64,
    /// Learning-rate schedule over epochs (default [`Schedule::Constant`]).
    pub schedule: Schedule,
    /// Threads for the kernels (results do not depend on it); default
    /// [`Par::Auto`].
    pub par: Par,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 128,
            seed: 0,
            running_lambda: 0.01,
            schedule: Schedule::Constant,
            par: Par::Auto,
        }
    }
}

/// What one epoch achieved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Exact mean cross-entropy over the epoch's batches (weighted by size).
    pub train_loss: f64,
    /// The lecture's running estimate Q at the end of the epoch.
    pub running_loss: f64,
    /// Fraction of training samples classified right during the epoch.
    pub train_accuracy: f64,
    /// Mean cross-entropy on the test set after the epoch.
    pub test_loss: f64,
    /// Fraction of the test set classified right after the epoch.
    pub test_accuracy: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
    /// Seconds spent training this epoch (evaluation excluded; the first
    /// epoch includes arranging the data, see [`train`]).
    pub train_seconds: f64,
    /// Seconds spent evaluating after this epoch.
    pub eval_seconds: f64,
}

/// Progress reported while training.
#[derive(Clone, Copy, Debug)]
pub enum Progress<'a> {
    /// After each step: epoch (1-based), steps done in it, steps per epoch, Q.
    Step {
        /// 1-based epoch.
        epoch: usize,
        /// Steps done in this epoch.
        step: usize,
        /// Steps per epoch.
        steps: usize,
        /// Running loss estimate.
        running_loss: f64,
    },
    /// After each epoch's evaluation.
    Epoch(&'a EpochMetrics),
    /// A checkpoint, after a report answered with [`Flow::Checkpoint`].
    Checkpoint(&'a Checkpoint),
}

/// What the caller of [`train_with`] wants after a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    #[default]
    Continue,
    /// Hand over a [`Checkpoint`] of the run as it stands (through
    /// [`Progress::Checkpoint`]), then go on.
    Checkpoint,
    /// Stop here: [`train_with`] returns [`TrainError::Interrupted`] with a
    /// checkpoint to resume from, and the network as the last step left it.
    Stop,
}

/// Why training stopped early.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainError {
    /// The loss became NaN or infinite: a batch's training loss, or the
    /// evaluation loss or the weights after an epoch's last update.
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// Step within the epoch.
        step: usize,
        /// The learning rate in use.
        lr: f32,
    },
    /// The data does not fit the network.
    Mismatch(String),
    /// The threads `config.par` asks for could not be started.
    Pool(PoolError),
    /// The caller asked to stop ([`Flow::Stop`]); the checkpoint resumes the
    /// run where it stopped.
    Interrupted(Box<Checkpoint>),
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::Diverged { epoch, step, lr } => write!(
                f,
                "training diverged: the loss or the weights became NaN or infinite at epoch \
                 {epoch}, step {step} (learning rate {lr}); try a lower learning rate"
            ),
            TrainError::Mismatch(msg) => f.write_str(msg),
            TrainError::Pool(e) => write!(f, "{e}"),
            TrainError::Interrupted(c) => write!(
                f,
                "training stopped after epoch {} and {} steps of the next",
                c.epochs_done, c.steps_done
            ),
        }
    }
}

impl std::error::Error for TrainError {}

/// Loss and accuracy on a data set, evaluated in chunks, by an [`Mlp`] or a
/// [`PackedMlp`](crate::mlp::PackedMlp) (the same bits); also fills a
/// `classes × classes` confusion matrix (`[true][predicted]`) if given.
pub fn evaluate(
    net: &impl Infer,
    data: &Dataset,
    par: Par,
    ws: &mut MlpWorkspace,
    mut confusion: Option<&mut [usize]>,
) -> (f64, f64) {
    const CHUNK: usize = 2000;
    let classes = *net.sizes().last().expect("sizes");
    let features = data.feature_count;
    let (mut loss, mut correct) = (0.0, 0usize);
    let mut labels = Vec::with_capacity(CHUNK);
    let mut x = Vec::with_capacity(CHUNK * features);
    for (c, label_chunk) in data.labels.chunks(CHUNK).enumerate() {
        let rows = label_chunk.len();
        x.clear();
        data.gather_range(c * CHUNK..c * CHUNK + rows, &mut x);
        let logits = net.infer(MatRef::from_row_major(&x, rows, features), ws, par);
        labels.clear();
        labels.extend(label_chunk.iter().map(|&l| l as usize));
        let logit_rows = MatRef::from_row_major(logits, rows, classes);
        for (r, (predicted, &label)) in argmax_rows(logits, classes).zip(&labels).enumerate() {
            loss += cross_entropy_row(logit_rows, r, label);
            correct += usize::from(predicted == label);
            if let Some(confusion) = confusion.as_deref_mut() {
                confusion[label * classes + predicted] += 1;
            }
        }
    }
    let n = data.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}

/// Trains `net` with `optimizer`, evaluating on `test` after each epoch.
///
/// Images (data sets with an `image_shape`) train with their pixels
/// rearranged into compact tiles and the network's inputs reordered to
/// match, which makes the first layer's sparse weight gradient cheaper (see
/// [`strip_order`]); the network is handed back in the data's own input
/// order. Sums then run in the tiled order, so the weights differ from
/// training in the original order by rounding.
///
/// Deterministic: the same seed gives bitwise-identical weights and metrics
/// (timings aside) for any thread count. The loop, `progress` calls
/// included, runs on a thread of the pool `config.par` names.
///
/// # Errors
/// [`TrainError::Diverged`] if a batch's loss, or the evaluation loss or
/// the weights after an epoch, became NaN or infinite (the weights are left
/// as the last update made them, possibly non-finite, and
/// [`Mlp::save`] refuses those), or [`TrainError::Mismatch`] if the data
/// does not fit the network: a feature count other than its inputs, a
/// label not below its output count (the message names the sample), pixels
/// that do not fill `len × feature_count`, or an empty training set.
pub fn train(
    net: &mut Mlp,
    optimizer: &Optimizer,
    train: &Dataset,
    test: &Dataset,
    config: &TrainConfig,
    mut progress: impl FnMut(Progress<'_>) + Send,
) -> Result<Vec<EpochMetrics>, TrainError> {
    train_with(net, optimizer, train, test, config, None, |p| {
        progress(p);
        Flow::Continue
    })
}

/// Checks a data set once, before any step, so that bad data is an error
/// naming the sample rather than a panic deep inside a batch: its pixels
/// fill `len × feature_count` exactly and every label is a class of the
/// network's `classes` outputs.
fn check_samples(name: &str, set: &Dataset, classes: usize) -> Result<(), TrainError> {
    let expected = set.len() * set.feature_count;
    if set.pixels.len() != expected {
        return Err(TrainError::Mismatch(format!(
            "the {name} set has {} labels of {} features each, so {expected} pixels, but holds {}",
            set.len(),
            set.feature_count,
            set.pixels.len()
        )));
    }
    match set.labels.iter().position(|&l| usize::from(l) >= classes) {
        Some(i) => Err(TrainError::Mismatch(format!(
            "{name} sample {i} has label {}, but the network has {classes} outputs (labels 0..{classes})",
            set.labels[i]
        ))),
        None => Ok(()),
    }
}

/// [`train`], with the caller in control: after every report `progress`
/// answers with a [`Flow`] (go on, hand over a [`Checkpoint`], or stop), and
/// `resume` continues a run from a checkpoint of it.
///
/// A resumed run gives the same bits as the run it continues would have
/// (weights, optimizer state, metrics; timings aside): the checkpoint holds
/// the weights and the optimizer's buffers, the epoch's partial sums and the
/// history, and the shuffles are replayed from the seed.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::optim::{Optimizer, Sgd};
/// use densekit::train::{Flow, Progress, TrainConfig, TrainError, train, train_with};
/// let data = Dataset { pixels: (0..64 * 4).map(|i| (i * 37 % 256) as u8).collect(),
///                      labels: (0..64).map(|i| (i % 2) as u8).collect(),
///                      feature_count: 4, image_shape: None };
/// let opt = Optimizer::Sgd(Sgd { lr: 0.1, ..Sgd::default() });
/// let config = TrainConfig { epochs: 3, batch_size: 8, ..TrainConfig::default() };
/// let fresh = Mlp::new(&[4, 8, 2], Activation::Relu, 1);
/// // Stop after the 5th step of epoch 2, then resume.
/// let mut net = fresh.clone();
/// let stopped = train_with(&mut net, &opt, &data, &data, &config, None, |p| match p {
///     Progress::Step { epoch: 2, step: 5, .. } => Flow::Stop,
///     _ => Flow::Continue,
/// });
/// let Err(TrainError::Interrupted(checkpoint)) = stopped else { panic!() };
/// train_with(&mut net, &opt, &data, &data, &config, Some(&checkpoint), |_| Flow::Continue).unwrap();
/// // The same weights as a run never stopped.
/// let mut whole = fresh.clone();
/// train(&mut whole, &opt, &data, &data, &config, |_| {}).unwrap();
/// assert_eq!(net, whole);
/// ```
///
/// # Errors
/// As [`train`]; [`TrainError::Interrupted`] when `progress` stops the run;
/// [`TrainError::Mismatch`] if `resume` comes from another network or other
/// settings (optimizer, seed, batch size, epochs, schedule).
pub fn train_with(
    net: &mut Mlp,
    optimizer: &Optimizer,
    train: &Dataset,
    test: &Dataset,
    config: &TrainConfig,
    resume: Option<&Checkpoint>,
    mut progress: impl FnMut(Progress<'_>) -> Flow + Send,
) -> Result<Vec<EpochMetrics>, TrainError> {
    let features = train.feature_count;
    if features != net.sizes()[0] || test.feature_count != features {
        return Err(TrainError::Mismatch(format!(
            "the network takes {} inputs but the data has {} (train) and {} (test) features per sample",
            net.sizes()[0],
            features,
            test.feature_count
        )));
    }
    if config.batch_size == 0 || train.is_empty() {
        return Err(TrainError::Mismatch(
            "batch size and training set must be non-empty".into(),
        ));
    }
    let classes = net.sizes()[net.sizes().len() - 1];
    for (name, set) in [("training", train), ("test", test)] {
        check_samples(name, set, classes)?;
    }
    let mut state = match resume {
        Some(checkpoint) => {
            checkpoint
                .fits(net, optimizer, config)
                .map_err(TrainError::Mismatch)?;
            *net = checkpoint.net.clone();
            checkpoint.optimizer.clone()
        }
        None => optimizer.state(net.params().len()),
    };
    config.par.ready().map_err(TrainError::Pool)?;
    // The loop runs on a thread of the kernels' pool: each of its thousands
    // of kernel calls then starts its parallel work right there instead of
    // handing it to the pool and waiting (784-256-10 at batch 128: about
    // 15% faster per epoch on two threads).
    config.par.install(|| {
        let started = Instant::now();
        let order = pixel_order(net, train).filter(|_| test.image_shape == train.image_shape);
        let mut run = Run {
            net,
            optimizer,
            config,
            state: &mut state,
            inverse: None,
        };
        let Some(order) = order else {
            return run.epochs(train, test, resume, &mut progress, 0.0);
        };
        // Train on the pixels in compact tiles, then give the weights back
        // in the data's own order (also after a divergence or a stop); the
        // optimizer's buffers, laid out like the weights, move alike.
        let (train, test) = (
            train.with_feature_order(&order),
            test.with_feature_order(&order),
        );
        let inverse = inverse_permutation(&order);
        run.net.reorder_inputs(&order);
        *run.state = reorder_state(run.net, run.state, &order);
        run.inverse = Some(&inverse);
        let setup_seconds = started.elapsed().as_secs_f64();
        let result = run.epochs(&train, &test, resume, &mut progress, setup_seconds);
        run.net.reorder_inputs(&inverse);
        result
    })
}

/// The permutation that undoes `order`.
fn inverse_permutation(order: &[usize]) -> Vec<usize> {
    let mut inverse = vec![0; order.len()];
    for (j, &from) in order.iter().enumerate() {
        inverse[from] = j;
    }
    inverse
}

/// `state`'s buffers (laid out like `net`'s parameters) with the network's
/// inputs reordered as [`Mlp::reorder_inputs`] would (values only move).
fn reorder_state(net: &Mlp, state: &OptimizerState, order: &[usize]) -> OptimizerState {
    let reorder = |buffer: &[f32]| {
        let mut as_net = Mlp::from_parts(net.sizes(), net.hidden_activation(), buffer.to_vec())
            .expect("optimizer buffers are laid out like the parameters");
        as_net.reorder_inputs(order);
        as_net.params().to_vec()
    };
    let (first, second) = state.buffers();
    OptimizerState::from_parts(state.step, reorder(first), reorder(second))
        .expect("both buffers have one value per parameter")
}

/// The order in which [`train`] gives `net` the pixels of `data`, if it
/// rearranges them: strips a third of a kernel sliver tall (see
/// [`strip_order`]; 4 rows on AVX-512, whose 12-pixel slivers then cover
/// 4 × 3 tiles, 2 on AVX2), for images and a first layer wide enough to skip
/// zero pixels at all. MNIST, 784-256-10 at batch 128: the weight gradient
/// keeps 34% of its k steps instead of 49%.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::train::pixel_order;
/// let images = Dataset { pixels: vec![0; 2 * 784], labels: vec![0, 1],
///                        feature_count: 784, image_shape: Some((28, 28)) };
/// // 4 × 3 tiles on AVX-512, 2 × 3 on AVX2 (none on the scalar kernel).
/// if let Some(order) = pixel_order(&Mlp::new(&[784, 256, 10], Activation::Relu, 1), &images) {
///     assert_eq!(order.len(), 784);
/// }
/// // The lecture's single softmax layer is too narrow to skip zeros.
/// assert!(pixel_order(&Mlp::new(&[784, 10], Activation::Relu, 1), &images).is_none());
/// ```
pub fn pixel_order(net: &Mlp, data: &Dataset) -> Option<Vec<usize>> {
    let (rows, cols) = data.image_shape?;
    let band = f32_sliver_rows(Isa::selected()) / 3;
    (net.sizes()[1] >= SKIPS_ZEROS_MIN_WIDTH && band >= 2 && rows * cols == data.feature_count)
        .then(|| strip_order(rows, cols, band))
}

/// A run of [`train_with`] on data in the order the network expects.
struct Run<'a> {
    net: &'a mut Mlp,
    optimizer: &'a Optimizer,
    config: &'a TrainConfig,
    state: &'a mut OptimizerState,
    /// The permutation back to the data's own input order, if the run
    /// trains on reordered inputs (checkpoints hold the data's order).
    inverse: Option<&'a [usize]>,
}

/// Where an epoch stands, for a checkpoint taken within it.
#[derive(Clone, Copy, Debug)]
struct EpochSoFar {
    epochs_done: usize,
    steps_done: usize,
    loss_sum: f64,
    correct: usize,
    lr: f32,
    running: Option<f64>,
}

impl Run<'_> {
    /// A checkpoint of the run as it stands, in the data's input order.
    fn checkpoint(&self, at: EpochSoFar, history: &[EpochMetrics]) -> Checkpoint {
        let (net, optimizer) = match self.inverse {
            Some(inverse) => {
                let mut net = self.net.clone();
                net.reorder_inputs(inverse);
                (net, reorder_state(self.net, self.state, inverse))
            }
            None => (self.net.clone(), self.state.clone()),
        };
        Checkpoint {
            net,
            optimizer,
            epochs_done: at.epochs_done,
            steps_done: at.steps_done,
            loss_sum: at.loss_sum,
            correct: at.correct,
            lr: at.lr,
            running_loss: at.running,
            history: history.to_vec(),
            settings: settings(self.optimizer, self.config),
        }
    }

    /// Answers a report's [`Flow`]: `Err` to stop.
    fn follow(
        &self,
        flow: Flow,
        at: EpochSoFar,
        history: &[EpochMetrics],
        progress: &mut impl FnMut(Progress<'_>) -> Flow,
    ) -> Result<(), TrainError> {
        match flow {
            Flow::Continue => Ok(()),
            Flow::Checkpoint => {
                progress(Progress::Checkpoint(&self.checkpoint(at, history)));
                Ok(())
            }
            Flow::Stop => Err(TrainError::Interrupted(Box::new(
                self.checkpoint(at, history),
            ))),
        }
    }

    /// The epochs, from the start or from `resume`; `setup_seconds`
    /// (arranging the data) counts towards the first epoch run.
    fn epochs(
        &mut self,
        train: &Dataset,
        test: &Dataset,
        resume: Option<&Checkpoint>,
        progress: &mut impl FnMut(Progress<'_>) -> Flow,
        setup_seconds: f64,
    ) -> Result<Vec<EpochMetrics>, TrainError> {
        let config = self.config;
        let features = train.feature_count;
        let mut grads = vec![0.0f32; self.net.params().len()];
        let mut ws = MlpWorkspace::new();
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let (mut x, mut labels, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        let steps = train.len().div_ceil(config.batch_size);
        // Not `with_capacity(config.epochs)`: the epoch count is the user's,
        // and a huge one must run (until interrupted), not fail to allocate.
        let mut history = resume.map_or_else(Vec::new, |c| c.history.clone());
        let mut running = resume.and_then(|c| c.running_loss);
        let first_epoch = history.len() + 1;
        // The shuffles of the epochs already done, replayed: the generator
        // then stands where the interrupted run left it.
        for _ in 1..first_epoch {
            order.shuffle(&mut rng);
        }
        for epoch in first_epoch..=config.epochs {
            let started = Instant::now();
            order.shuffle(&mut rng);
            let (mut loss_sum, mut correct, mut lr, skip) = match resume {
                Some(c) if epoch == first_epoch && c.steps_done > 0 => {
                    (c.loss_sum, c.correct, c.lr, c.steps_done)
                }
                _ => (0.0, 0, self.optimizer.lr(), 0),
            };
            for (step, batch) in order.chunks(config.batch_size).enumerate().skip(skip) {
                // The next batch's pixels load while this one trains.
                if let Some(next) = order.get((step + 1) * config.batch_size..) {
                    train.prefetch_rows(&next[..next.len().min(config.batch_size)]);
                }
                // The batch's samples grouped by class: images of one class
                // share more of their nonzero pixels, so the first layer's
                // zero-skipping GEMM drops more k steps (MNIST at batch 128:
                // 45.5% kept instead of 50%). Same batch, same seed: still
                // deterministic.
                rows.clear();
                rows.extend_from_slice(batch);
                rows.sort_by_key(|&i| train.labels[i]);
                // Every slot is overwritten: only grow, never clear.
                x.resize(rows.len() * features, 0.0);
                train.gather_into(&rows, &mut x, config.par);
                labels.clear();
                labels.extend(rows.iter().map(|&i| train.labels[i] as usize));
                let stats = self.net.gradients(
                    MatRef::from_row_major(&x, batch.len(), features),
                    &labels,
                    &mut grads,
                    &mut ws,
                    config.par,
                );
                if !stats.loss.is_finite() {
                    return Err(TrainError::Diverged {
                        epoch,
                        step: step + 1,
                        lr,
                    });
                }
                let progress_epochs = (epoch - 1) as f64 + step as f64 / steps as f64;
                lr = config.schedule.lr(self.optimizer.lr(), progress_epochs);
                self.optimizer
                    .update(self.state, self.net.params_mut(), &grads, lr, config.par);
                loss_sum += stats.loss * batch.len() as f64;
                correct += stats.correct;
                let q = match running {
                    None => stats.loss,
                    Some(q) => {
                        config.running_lambda * stats.loss + (1.0 - config.running_lambda) * q
                    }
                };
                running = Some(q);
                let flow = progress(Progress::Step {
                    epoch,
                    step: step + 1,
                    steps,
                    running_loss: q,
                });
                let at = EpochSoFar {
                    epochs_done: epoch - 1,
                    steps_done: step + 1,
                    loss_sum,
                    correct,
                    lr,
                    running,
                };
                self.follow(flow, at, &history, progress)?;
            }
            let train_seconds = started.elapsed().as_secs_f64()
                + if epoch == first_epoch {
                    setup_seconds
                } else {
                    0.0
                };
            let eval_started = Instant::now();
            let (test_loss, test_accuracy) = evaluate(self.net, test, config.par, &mut ws, None);
            // The epoch's last update is checked here: a batch's loss is
            // computed before its update, so a final step that makes the
            // weights non-finite shows only in the weights (a ReLU can hide
            // NaN from the evaluation loss) or in the evaluation loss.
            if !test_loss.is_finite() || !self.net.params().iter().all(|p| p.is_finite()) {
                return Err(TrainError::Diverged {
                    epoch,
                    step: steps,
                    lr,
                });
            }
            let metrics = EpochMetrics {
                epoch,
                train_loss: loss_sum / train.len() as f64,
                running_loss: running.unwrap_or(f64::NAN),
                train_accuracy: correct as f64 / train.len() as f64,
                test_loss,
                test_accuracy,
                lr,
                train_seconds,
                eval_seconds: eval_started.elapsed().as_secs_f64(),
            };
            let flow = progress(Progress::Epoch(&metrics));
            history.push(metrics);
            let at = EpochSoFar {
                epochs_done: epoch,
                steps_done: 0,
                loss_sum: 0.0,
                correct: 0,
                lr,
                running,
            };
            self.follow(flow, at, &history, progress)?;
        }
        Ok(history)
    }
}

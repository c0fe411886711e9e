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

use crate::data::{Augment, Augmenter, Dataset, strip_order};
use crate::dense::SKIPS_ZEROS_MIN_WIDTH;
use crate::gemm::{Isa, MatRef, Par, f32_sliver_rows};
use crate::loss::{Loss, Targets, cross_entropy_row};
use crate::mlp::{Dropout, Infer, Mlp, MlpWorkspace, argmax_rows};
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
#[derive(Clone, Debug, PartialEq)]
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
    /// Inverted dropout on the hidden layers' outputs while training: one
    /// rate in `[0, 1)` for every hidden layer, or one per hidden layer
    /// (see [`Dropout`]); default none. Masks are drawn from the seed and
    /// the step, the same for any thread count.
    pub dropout: Vec<f32>,
    /// Max-norm constraint on each hidden unit's incoming weights after
    /// every update (see [`Mlp::constrain`]); default none.
    pub max_norm: Option<f32>,
    /// Distortion of the training images, drawn per sample and epoch from
    /// the seed (see [`Augment`]); default none. Needs images.
    pub augment: Augment,
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
            dropout: Vec::new(),
            max_norm: None,
            augment: Augment::None,
        }
    }
}

/// A loss and its metric on one set of samples.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::optim::{Adam, Optimizer};
/// use densekit::train::{TrainConfig, TrainData};
/// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
/// let xor = Dataset::classification(&x[..], 2, &[0u32, 1, 1, 0][..]).unwrap();
/// let mut net = Mlp::new(&[2, 8, 2], Activation::Tanh, 1);
/// let opt = Optimizer::Adam(Adam { lr: 0.05, ..Adam::default() });
/// let config = TrainConfig { epochs: 100, batch_size: 4, ..TrainConfig::default() };
/// use densekit::gemm::Par;
/// use densekit::mlp::MlpWorkspace;
/// use densekit::train::{evaluate, train};
/// train(&mut net, &opt, TrainData::new(&xor), &config, |_| {}).unwrap();
/// let score = evaluate(&net, &xor, Par::Seq, &mut MlpWorkspace::new(), None);
/// assert_eq!(score.accuracy(), Some(1.0)); // XOR learned
/// assert!(score.loss < 0.1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// The mean loss: cross-entropy per sample, or squared error per
    /// output (see [`Loss`]).
    pub loss: f64,
    /// The metric that goes with the loss.
    pub metric: Metric,
}

/// The metric reported beside a loss.
///
/// ```
/// use densekit::train::{Metric, Score};
/// let score = Score { loss: 0.25, metric: Metric::Rmse(0.5) };
/// assert_eq!((score.rmse(), score.accuracy()), (Some(0.5), None));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Fraction of samples whose largest output is their label
    /// (classification).
    Accuracy(f64),
    /// Root mean squared error over samples and outputs, `√MSE`
    /// (regression).
    Rmse(f64),
}

impl Score {
    /// The accuracy, for a classification set.
    ///
    /// ```
    /// use densekit::train::{Metric, Score};
    /// assert_eq!(Score { loss: 0.1, metric: Metric::Accuracy(0.98) }.accuracy(), Some(0.98));
    /// ```
    pub fn accuracy(&self) -> Option<f64> {
        match self.metric {
            Metric::Accuracy(a) => Some(a),
            Metric::Rmse(_) => None,
        }
    }

    /// The RMSE, for a regression set.
    ///
    /// ```
    /// use densekit::train::{Metric, Score};
    /// assert_eq!(Score { loss: 0.1, metric: Metric::Accuracy(0.98) }.rmse(), None);
    /// ```
    pub fn rmse(&self) -> Option<f64> {
        match self.metric {
            Metric::Rmse(r) => Some(r),
            Metric::Accuracy(_) => None,
        }
    }

    /// The score of a `loss` summed over `samples` with `correct` right
    /// answers, under `kind`'s metric.
    fn of(kind: Loss, loss_sum: f64, correct: usize, samples: usize) -> Score {
        // An empty set has no score: NaN, not a made-up zero.
        let n = samples as f64;
        let loss = loss_sum / n;
        let metric = match kind {
            Loss::SoftmaxCrossEntropy => Metric::Accuracy(correct as f64 / n),
            Loss::MeanSquaredError => Metric::Rmse(loss.sqrt()),
        };
        Score { loss, metric }
    }
}

/// What one epoch achieved.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::optim::{Adam, Optimizer};
/// use densekit::train::{TrainConfig, TrainData};
/// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
/// let xor = Dataset::classification(&x[..], 2, &[0u32, 1, 1, 0][..]).unwrap();
/// let mut net = Mlp::new(&[2, 8, 2], Activation::Tanh, 1);
/// let opt = Optimizer::Adam(Adam { lr: 0.05, ..Adam::default() });
/// let config = TrainConfig { epochs: 100, batch_size: 4, ..TrainConfig::default() };
/// use densekit::train::train;
/// let config = TrainConfig { epochs: 3, ..config };
/// let history = train(&mut net, &opt, TrainData::new(&xor).with_test(&xor), &config, |_| {}).unwrap();
/// assert_eq!(history.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1, 2, 3]);
/// assert!(history[2].test.is_some() && history[2].val.is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// The training set during the epoch: the exact mean loss over its
    /// batches (weighted by size) and the metric of the answers given
    /// while training.
    pub train: Score,
    /// The lecture's running estimate Q at the end of the epoch.
    pub running_loss: f64,
    /// The validation set after the epoch, if the run has one.
    pub val: Option<Score>,
    /// The test set after the epoch, if the run has one.
    pub test: Option<Score>,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
    /// Seconds spent training this epoch (evaluation excluded; the first
    /// epoch includes arranging the data, see [`train`]).
    pub train_seconds: f64,
    /// Seconds spent evaluating after this epoch.
    pub eval_seconds: f64,
}

/// The data of a run: the set it trains on, and the sets it scores after
/// each epoch (a validation set to tune on, a test set to report; either
/// may be absent). All share the feature count and the kind of target.
///
/// ```
/// use densekit::data::Dataset;
/// use densekit::train::TrainData;
/// let all = Dataset::from_pixels(vec![7; 10 * 4], 4, vec![1; 10]).unwrap();
/// // The last 2 samples held out for validation, borrowed.
/// let (train, val) = (all.rows(0..8), all.rows(8..10));
/// let data = TrainData::new(&train).with_val(&val);
/// assert!(data.test.is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct TrainData<'a> {
    /// What the network trains on.
    pub train: &'a Dataset<'a>,
    /// Scored after each epoch, for choosing settings.
    pub val: Option<&'a Dataset<'a>>,
    /// Scored after each epoch, for reporting.
    pub test: Option<&'a Dataset<'a>>,
}

impl<'a> TrainData<'a> {
    /// Training on `train`, scoring nothing else.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// use densekit::train::TrainData;
    /// let all = Dataset::classification(vec![0.0f32, 1.0, 1.0, 0.0, 0.5, 0.5], 2, vec![0, 1, 0]).unwrap();
    /// // The first two samples train; the last one validates.
    /// let (train, val) = (all.rows(0..2), all.rows(2..3));
    /// let data = TrainData::new(&train).with_val(&val);
    /// assert_eq!((data.train.len(), data.val.map(|v| v.len())), (2, Some(1)));
    /// ```
    pub fn new(train: &'a Dataset<'a>) -> Self {
        TrainData {
            train,
            val: None,
            test: None,
        }
    }

    /// With a validation set.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// use densekit::train::TrainData;
    /// let all = Dataset::regression(vec![0.0f32, 1.0, 2.0, 3.0], 1, vec![0.0, 2.0, 4.0, 6.0], 1).unwrap();
    /// let (train, val) = (all.rows(0..3), all.rows(3..4));
    /// assert_eq!(TrainData::new(&train).with_val(&val).val.map(|v| v.len()), Some(1));
    /// ```
    pub fn with_val(self, val: &'a Dataset<'a>) -> Self {
        TrainData {
            val: Some(val),
            ..self
        }
    }

    /// With a test set.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// use densekit::train::TrainData;
    /// let train = Dataset::classification(vec![0.0f32, 1.0], 1, vec![0, 1]).unwrap();
    /// let test = Dataset::classification(vec![0.5f32], 1, vec![1]).unwrap();
    /// assert!(TrainData::new(&train).with_test(&test).test.is_some());
    /// ```
    pub fn with_test(self, test: &'a Dataset<'a>) -> Self {
        TrainData {
            test: Some(test),
            ..self
        }
    }
}

/// Progress reported while training.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::optim::{Adam, Optimizer};
/// use densekit::train::{TrainConfig, TrainData};
/// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
/// let xor = Dataset::classification(&x[..], 2, &[0u32, 1, 1, 0][..]).unwrap();
/// let mut net = Mlp::new(&[2, 8, 2], Activation::Tanh, 1);
/// let opt = Optimizer::Adam(Adam { lr: 0.05, ..Adam::default() });
/// let config = TrainConfig { epochs: 100, batch_size: 4, ..TrainConfig::default() };
/// use densekit::train::{train, Progress};
/// let config = TrainConfig { epochs: 2, ..config };
/// let (mut steps, mut epochs) = (0, 0);
/// train(&mut net, &opt, TrainData::new(&xor), &config, |p| match p {
///     Progress::Step { .. } => steps += 1,
///     Progress::Epoch(_) => epochs += 1,
///     Progress::Checkpoint(_) => {}
/// }).unwrap();
/// assert_eq!((steps, epochs), (2, 2)); // one batch of 4 per epoch
/// ```
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
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::optim::{Adam, Optimizer};
/// use densekit::train::{TrainConfig, TrainData};
/// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
/// let xor = Dataset::classification(&x[..], 2, &[0u32, 1, 1, 0][..]).unwrap();
/// let mut net = Mlp::new(&[2, 8, 2], Activation::Tanh, 1);
/// let opt = Optimizer::Adam(Adam { lr: 0.05, ..Adam::default() });
/// let config = TrainConfig { epochs: 100, batch_size: 4, ..TrainConfig::default() };
/// use densekit::train::{train_with, Flow, Progress, TrainError};
/// // Stop as soon as the training loss is small enough.
/// let result = train_with(&mut net, &opt, TrainData::new(&xor), &config, None, |p| match p {
///     Progress::Epoch(m) if m.train.loss < 0.3 => Flow::Stop,
///     _ => Flow::Continue,
/// });
/// match result {
///     Err(TrainError::Interrupted(checkpoint)) => assert!(checkpoint.epochs_done < 100),
///     other => panic!("expected an early stop, got {other:?}"),
/// }
/// ```
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
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::optim::{Optimizer, Sgd};
/// use densekit::train::{train, TrainConfig, TrainData, TrainError};
/// // Three features for a network that takes two.
/// let data = Dataset::classification(vec![0.0f32; 6], 3, vec![0, 1]).unwrap();
/// let mut net = Mlp::new(&[2, 2], Activation::Relu, 1);
/// let opt = Optimizer::Sgd(Sgd::default());
/// let err = train(&mut net, &opt, TrainData::new(&data), &TrainConfig::default(), |_| {}).unwrap_err();
/// assert!(matches!(err, TrainError::Mismatch(_)));
/// ```
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

/// The loss and metric of a network on a data set, evaluated in chunks,
/// by an [`Mlp`] or a [`PackedMlp`](crate::mlp::PackedMlp) (the same bits):
/// cross-entropy and accuracy for class labels, mean squared error and RMSE
/// for real targets. Also fills a `classes × classes` confusion matrix
/// (`[true][predicted]`) of a classification set if given. An empty set
/// scores NaN.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::gemm::Par;
/// use densekit::mlp::{Mlp, MlpWorkspace};
/// use densekit::train::evaluate;
/// let net = Mlp::new(&[2, 3], Activation::Relu, 1);
/// let data = Dataset::classification(vec![1.0, 0.0, 0.0, 1.0], 2, vec![0, 2]).unwrap();
/// let score = evaluate(&net, &data, Par::Seq, &mut MlpWorkspace::new(), None);
/// assert!(score.loss > 0.0 && score.accuracy().is_some());
/// ```
///
/// # Panics
/// If the set's feature count is not the network's input count, a label
/// is not below its output count, a regression set has another target
/// count than its outputs, or `confusion` is not `classes × classes`.
#[track_caller]
pub fn evaluate(
    net: &impl Infer,
    data: &Dataset,
    par: Par,
    ws: &mut MlpWorkspace,
    mut confusion: Option<&mut [usize]>,
) -> Score {
    const CHUNK: usize = 2000;
    let outputs = *net.sizes().last().expect("sizes");
    let features = data.feature_count();
    assert!(
        features == net.sizes()[0],
        "evaluate: the data has {features} features per sample but the network takes {}",
        net.sizes()[0]
    );
    if let Some(count) = data.target_count() {
        assert!(
            count == outputs,
            "evaluate: the data has {count} targets per sample but the network {outputs} outputs"
        );
    }
    if let Some(confusion) = confusion.as_deref() {
        assert!(
            confusion.len() == outputs * outputs,
            "evaluate: a confusion matrix of {} slots for {outputs} classes",
            confusion.len()
        );
    }
    let (mut loss, mut correct) = (0.0, 0usize);
    let (mut labels, mut values) = (Vec::with_capacity(CHUNK), Vec::new());
    let mut x = Vec::with_capacity(CHUNK * features);
    for start in (0..data.len()).step_by(CHUNK) {
        let rows = CHUNK.min(data.len() - start);
        x.clear();
        data.gather_range(start..start + rows, &mut x);
        let out = net.infer(MatRef::from_row_major(&x, rows, features), ws, par);
        labels.clear();
        values.clear();
        data.gather_targets(start..start + rows, &mut labels, &mut values);
        let out_rows = MatRef::from_row_major(out, rows, outputs);
        match data.loss() {
            Loss::SoftmaxCrossEntropy => {
                for (r, (predicted, &label)) in argmax_rows(out, outputs).zip(&labels).enumerate() {
                    assert!(
                        label < outputs,
                        "evaluate: sample {} has label {label}, but the network has {outputs} outputs",
                        start + r
                    );
                    loss += cross_entropy_row(out_rows, r, label);
                    correct += usize::from(predicted == label);
                    if let Some(confusion) = confusion.as_deref_mut() {
                        confusion[label * outputs + predicted] += 1;
                    }
                }
            }
            Loss::MeanSquaredError => {
                let squares: f64 = out
                    .iter()
                    .zip(&values)
                    .map(|(&p, &t)| (f64::from(p) - f64::from(t)).powi(2))
                    .sum();
                loss += squares / outputs as f64;
            }
        }
    }
    Score::of(data.loss(), loss, correct, data.len())
}

/// Trains `net` with `optimizer` on `data.train`, scoring `data.val` and
/// `data.test` after each epoch. The targets choose the loss (see
/// [`Loss`]): class labels train softmax cross-entropy, real targets mean
/// squared error.
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
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::optim::{Optimizer, Sgd};
/// use densekit::train::{TrainConfig, TrainData, train};
/// // y = 2x − 1 from 64 samples.
/// let x: Vec<f32> = (0..64).map(|i| i as f32 / 32.0 - 1.0).collect();
/// let y: Vec<f32> = x.iter().map(|x| 2.0 * x - 1.0).collect();
/// let data = Dataset::regression(&x[..], 1, &y[..], 1).unwrap();
/// let mut net = Mlp::new(&[1, 1], Activation::Identity, 1);
/// let opt = Optimizer::Sgd(Sgd { lr: 0.1, ..Sgd::default() });
/// let config = TrainConfig { epochs: 50, batch_size: 8, ..TrainConfig::default() };
/// let history = train(&mut net, &opt, TrainData::new(&data), &config, |_| {}).unwrap();
/// assert!(history.last().unwrap().train.rmse().unwrap() < 1e-3);
/// ```
///
/// # Errors
/// [`TrainError::Diverged`] if a batch's loss, or an evaluation loss or
/// the weights after an epoch, became NaN or infinite (the weights are left
/// as the last update made them, possibly non-finite, and
/// [`Mlp::save`] refuses those), or [`TrainError::Mismatch`] if the data
/// does not fit the network, checked before the first step: a feature
/// count other than its inputs, a label not below its output count (the
/// message names the sample), a target count other than its outputs, sets
/// of different kinds (labels and real targets), or an empty set.
pub fn train(
    net: &mut Mlp,
    optimizer: &Optimizer,
    data: TrainData<'_>,
    config: &TrainConfig,
    mut progress: impl FnMut(Progress<'_>) + Send,
) -> Result<Vec<EpochMetrics>, TrainError> {
    train_with(net, optimizer, data, config, None, |p| {
        progress(p);
        Flow::Continue
    })
}

/// Checks the sets of a run once, before any step, so that bad data is an
/// error naming the sample rather than a panic deep inside a batch.
fn check_data(net: &Mlp, data: &TrainData<'_>) -> Result<(), TrainError> {
    let mismatch = |msg: String| Err(TrainError::Mismatch(msg));
    let (inputs, outputs) = (net.sizes()[0], net.sizes()[net.sizes().len() - 1]);
    let sets = [
        ("training", Some(data.train)),
        ("validation", data.val),
        ("test", data.test),
    ];
    for (name, set) in sets.into_iter().filter_map(|(n, s)| Some((n, s?))) {
        if set.is_empty() {
            return mismatch(format!("the {name} set is empty"));
        }
        if set.feature_count() != inputs {
            return mismatch(format!(
                "the network takes {inputs} inputs but the {name} set has {} features per sample",
                set.feature_count()
            ));
        }
        if set.loss() != data.train.loss() {
            return mismatch(format!(
                "the {name} set has {} but the training set {}",
                targets_kind(set),
                targets_kind(data.train)
            ));
        }
        if let Some(labels) = set.labels()
            && let Some(i) = labels.iter().position(|&l| l as usize >= outputs)
        {
            return mismatch(format!(
                "{name} sample {i} has label {}, but the network has {outputs} outputs (labels 0..{outputs})",
                labels[i]
            ));
        }
        if let Some(count) = set.target_count()
            && count != outputs
        {
            return mismatch(format!(
                "the {name} set has {count} targets per sample but the network {outputs} outputs"
            ));
        }
    }
    Ok(())
}

/// Checks the dropout rates, max-norm and augmentation against the network
/// and the training set.
fn check_regularization(
    net: &Mlp,
    config: &TrainConfig,
    train: &Dataset,
) -> Result<(), TrainError> {
    let mismatch = |msg: String| Err(TrainError::Mismatch(msg));
    let hidden = net.layers() - 1;
    let rates = &config.dropout;
    if rates.len() > 1 && rates.len() != hidden {
        return mismatch(format!(
            "{} dropout rates for {hidden} hidden layers: give one for all, or one per layer",
            rates.len()
        ));
    }
    if let Some(rate) = rates.iter().find(|r| !(0.0..1.0).contains(*r)) {
        return mismatch(format!("a dropout rate must be in [0, 1), got {rate}"));
    }
    if let Some(norm) = config.max_norm
        && !(norm.is_finite() && norm > 0.0)
    {
        return mismatch(format!(
            "the max-norm must be finite and positive, got {norm}"
        ));
    }
    if config.augment != Augment::None {
        Augmenter::new(config.augment, train, None).map_err(TrainError::Mismatch)?;
    }
    Ok(())
}

/// "class labels" or "real targets", for messages.
fn targets_kind(set: &Dataset) -> &'static str {
    match set.loss() {
        Loss::SoftmaxCrossEntropy => "class labels",
        Loss::MeanSquaredError => "real targets",
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
/// use densekit::train::{Flow, Progress, TrainConfig, TrainData, TrainError, train, train_with};
/// let pixels: Vec<u8> = (0..64 * 4).map(|i| (i * 37 % 256) as u8).collect();
/// let set = Dataset::from_pixels(pixels, 4, (0..64).map(|i| i % 2).collect::<Vec<u32>>()).unwrap();
/// let data = TrainData::new(&set).with_test(&set);
/// let opt = Optimizer::Sgd(Sgd { lr: 0.1, ..Sgd::default() });
/// let config = TrainConfig { epochs: 3, batch_size: 8, ..TrainConfig::default() };
/// let fresh = Mlp::new(&[4, 8, 2], Activation::Relu, 1);
/// // Stop after the 5th step of epoch 2, then resume.
/// let mut net = fresh.clone();
/// let stopped = train_with(&mut net, &opt, data, &config, None, |p| match p {
///     Progress::Step { epoch: 2, step: 5, .. } => Flow::Stop,
///     _ => Flow::Continue,
/// });
/// let Err(TrainError::Interrupted(checkpoint)) = stopped else { panic!() };
/// train_with(&mut net, &opt, data, &config, Some(&checkpoint), |_| Flow::Continue).unwrap();
/// // The same weights as a run never stopped.
/// let mut whole = fresh.clone();
/// train(&mut whole, &opt, data, &config, |_| {}).unwrap();
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
    data: TrainData<'_>,
    config: &TrainConfig,
    resume: Option<&Checkpoint>,
    mut progress: impl FnMut(Progress<'_>) -> Flow + Send,
) -> Result<Vec<EpochMetrics>, TrainError> {
    if config.batch_size == 0 {
        return Err(TrainError::Mismatch(
            "the batch size must be positive".into(),
        ));
    }
    check_data(net, &data)?;
    check_regularization(net, config, data.train)?;
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
    // handing it to the pool and waiting.
    config.par.install(|| {
        let started = Instant::now();
        let shape = data.train.image_shape();
        let order = pixel_order(net, data.train).filter(|_| {
            [data.val, data.test]
                .iter()
                .flatten()
                .all(|s| s.image_shape() == shape)
        });
        let augmented = config.augment != Augment::None;
        let augmenter = |order: Option<&[usize]>| {
            augmented.then(|| {
                Augmenter::new(config.augment, data.train, order).expect("checked before training")
            })
        };
        let mut run = Run {
            net,
            optimizer,
            config,
            state: &mut state,
            inverse: None,
            augmenter: None,
        };
        let Some(order) = order else {
            run.augmenter = augmenter(None);
            return run.epochs(data, resume, &mut progress, 0.0);
        };
        // Train on the pixels in compact tiles, then give the weights back
        // in the data's own order (also after a divergence or a stop); the
        // optimizer's buffers, laid out like the weights, move alike. An
        // augmented training set stays as it is: the augmenter reads each
        // distorted pixel into its place in the tiled order.
        let reordered = |set: &Dataset<'_>| set.with_feature_order(&order);
        let train = (!augmented).then(|| reordered(data.train));
        let (val, test) = (data.val.map(reordered), data.test.map(reordered));
        let inverse = inverse_permutation(&order);
        run.net.reorder_inputs(&order);
        *run.state = reorder_state(run.net, run.state, &order);
        run.inverse = Some(&inverse);
        run.augmenter = augmenter(Some(&order));
        let setup_seconds = started.elapsed().as_secs_f64();
        let data = TrainData {
            train: train.as_ref().unwrap_or(data.train),
            val: val.as_ref(),
            test: test.as_ref(),
        };
        let result = run.epochs(data, resume, &mut progress, setup_seconds);
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
/// zero pixels at all: compact tiles are more often all zero, so the
/// weight gradient keeps fewer of its k steps.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::data::Dataset;
/// use densekit::mlp::Mlp;
/// use densekit::train::pixel_order;
/// let images = Dataset::images(vec![0; 2 * 784], (28, 28), vec![0, 1]).unwrap();
/// // 4 × 3 tiles on AVX-512, 2 × 3 on AVX2 (none on the scalar kernel).
/// if let Some(order) = pixel_order(&Mlp::new(&[784, 256, 10], Activation::Relu, 1), &images) {
///     assert_eq!(order.len(), 784);
/// }
/// // The lecture's single softmax layer is too narrow to skip zeros.
/// assert!(pixel_order(&Mlp::new(&[784, 10], Activation::Relu, 1), &images).is_none());
/// ```
pub fn pixel_order(net: &Mlp, data: &Dataset) -> Option<Vec<usize>> {
    let (rows, cols) = data.image_shape()?;
    let band = f32_sliver_rows(Isa::selected()) / 3;
    (net.sizes()[1] >= SKIPS_ZEROS_MIN_WIDTH && band >= 2 && rows * cols == data.feature_count())
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
    /// Distorts the training images as they are gathered, if asked to.
    augmenter: Option<Augmenter>,
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
        data: TrainData<'_>,
        resume: Option<&Checkpoint>,
        progress: &mut impl FnMut(Progress<'_>) -> Flow,
        setup_seconds: f64,
    ) -> Result<Vec<EpochMetrics>, TrainError> {
        let config = self.config;
        let train = data.train;
        let kind = train.loss();
        let features = train.feature_count();
        let mut grads = vec![0.0f32; self.net.params().len()];
        let mut ws = MlpWorkspace::new();
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let (mut x, mut labels, mut values, mut rows) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
                // zero-skipping GEMM drops more k steps. Same batch, same
                // seed: still deterministic.
                rows.clear();
                rows.extend_from_slice(batch);
                if let Some(classes) = train.labels() {
                    rows.sort_by_key(|&i| classes[i]);
                }
                // Every slot is overwritten: only grow, never clear.
                x.resize(rows.len() * features, 0.0);
                match &self.augmenter {
                    Some(a) => {
                        a.gather(train, &rows, &mut x, config.seed, epoch as u64, config.par)
                    }
                    None => train.gather_into(&rows, &mut x, config.par),
                }
                labels.clear();
                values.clear();
                train.gather_targets(rows.iter().copied(), &mut labels, &mut values);
                let targets = match kind {
                    Loss::SoftmaxCrossEntropy => Targets::Classes(&labels),
                    Loss::MeanSquaredError => Targets::Values(&values),
                };
                let dropout = Dropout {
                    rates: &config.dropout,
                    seed: config.seed,
                    step: ((epoch - 1) * steps + step) as u64,
                };
                let stats = self.net.gradients_with(
                    MatRef::from_row_major(&x, batch.len(), features),
                    targets,
                    (!config.dropout.is_empty()).then_some(&dropout),
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
                self.net.constrain(config.max_norm);
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
            let mut score = |set: Option<&Dataset>| {
                set.map(|s| evaluate(self.net, s, config.par, &mut ws, None))
            };
            let (val, test) = (score(data.val), score(data.test));
            // The epoch's last update is checked here: a batch's loss is
            // computed before its update, so a final step that makes the
            // weights non-finite shows only in the weights (a ReLU can hide
            // NaN from the evaluation loss) or in an evaluation loss.
            let scores_finite = [val, test].iter().flatten().all(|s| s.loss.is_finite());
            if !scores_finite || !self.net.params().iter().all(|p| p.is_finite()) {
                return Err(TrainError::Diverged {
                    epoch,
                    step: steps,
                    lr,
                });
            }
            let metrics = EpochMetrics {
                epoch,
                train: Score::of(kind, loss_sum, correct, train.len()),
                running_loss: running.unwrap_or(f64::NAN),
                val,
                test,
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

//! Mini-batch training with a seeded shuffle, the lecture's running loss
//! estimate, and evaluation after each epoch.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::{Dataset, strip_order};
use crate::dense::SKIPS_ZEROS_MIN_WIDTH;
use crate::gemm::{Isa, MatRef, Par, f32_sliver_rows};
use crate::loss::cross_entropy_row;
use crate::mlp::{Mlp, MlpWorkspace, argmax_rows};
use crate::optim::{Optimizer, Schedule};

/// How to train.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per step; the last batch of an epoch may be smaller (it is used).
    pub batch_size: usize,
    /// Seeds the per-epoch shuffles.
    pub seed: u64,
    /// λ of the running loss estimate `Q ← λ·ε + (1 − λ)·Q`.
    pub running_lambda: f64,
    /// Learning-rate schedule over epochs.
    pub schedule: Schedule,
    /// Threads for the kernels (results do not depend on it).
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
        }
    }
}

impl std::error::Error for TrainError {}

/// Loss and accuracy on a data set, evaluated in chunks; also fills a
/// `classes × classes` confusion matrix (`[true][predicted]`) if given.
pub fn evaluate(
    net: &Mlp,
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
        let logits = net.forward(MatRef::from_row_major(&x, rows, features), ws, par);
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
/// does not fit the network.
pub fn train(
    net: &mut Mlp,
    optimizer: &Optimizer,
    train: &Dataset,
    test: &Dataset,
    config: &TrainConfig,
    mut progress: impl FnMut(Progress<'_>) + Send,
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
    // The loop runs on a thread of the kernels' pool: each of its thousands
    // of kernel calls then starts its parallel work right there instead of
    // handing it to the pool and waiting (784-256-10 at batch 128: about
    // 15% faster per epoch on two threads).
    config.par.install(|| {
        let started = Instant::now();
        let order = pixel_order(net, train).filter(|_| test.image_shape == train.image_shape);
        let Some(order) = order else {
            return run_epochs(net, optimizer, train, test, config, &mut progress, 0.0);
        };
        // Train on the pixels in compact tiles, then give the weights back
        // in the data's own order (also after a divergence).
        let (train, test) = (
            train.with_feature_order(&order),
            test.with_feature_order(&order),
        );
        net.reorder_inputs(&order);
        let setup_seconds = started.elapsed().as_secs_f64();
        let result = run_epochs(
            net,
            optimizer,
            &train,
            &test,
            config,
            &mut progress,
            setup_seconds,
        );
        let mut inverse = vec![0; order.len()];
        for (j, &from) in order.iter().enumerate() {
            inverse[from] = j;
        }
        net.reorder_inputs(&inverse);
        result
    })
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

/// The epochs of [`train`], on data in the order the network expects;
/// `setup_seconds` (arranging the data) counts towards the first epoch.
fn run_epochs(
    net: &mut Mlp,
    optimizer: &Optimizer,
    train: &Dataset,
    test: &Dataset,
    config: &TrainConfig,
    progress: &mut impl FnMut(Progress<'_>),
    setup_seconds: f64,
) -> Result<Vec<EpochMetrics>, TrainError> {
    let features = train.feature_count;
    let mut state = optimizer.state(net.params().len());
    let mut grads = vec![0.0f32; net.params().len()];
    let mut ws = MlpWorkspace::new();
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let (mut x, mut labels, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    let steps = train.len().div_ceil(config.batch_size);
    let mut running: Option<f64> = None;
    // Not `with_capacity(config.epochs)`: the epoch count is the user's,
    // and a huge one must run (until interrupted), not fail to allocate.
    let mut history = Vec::new();
    for epoch in 1..=config.epochs {
        let started = Instant::now();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        let mut lr = optimizer.lr();
        for (step, batch) in order.chunks(config.batch_size).enumerate() {
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
            let stats = net.gradients(
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
            lr = config.schedule.lr(optimizer.lr(), progress_epochs);
            optimizer.update(&mut state, net.params_mut(), &grads, lr, config.par);
            loss_sum += stats.loss * batch.len() as f64;
            correct += stats.correct;
            let q = match running {
                None => stats.loss,
                Some(q) => config.running_lambda * stats.loss + (1.0 - config.running_lambda) * q,
            };
            running = Some(q);
            progress(Progress::Step {
                epoch,
                step: step + 1,
                steps,
                running_loss: q,
            });
        }
        let train_seconds =
            started.elapsed().as_secs_f64() + if epoch == 1 { setup_seconds } else { 0.0 };
        let eval_started = Instant::now();
        let (test_loss, test_accuracy) = evaluate(net, test, config.par, &mut ws, None);
        // The epoch's last update is checked here: a batch's loss is
        // computed before its update, so a final step that makes the
        // weights non-finite shows only in the weights (a ReLU can hide NaN
        // from the evaluation loss) or in the evaluation loss.
        if !test_loss.is_finite() || !net.params().iter().all(|p| p.is_finite()) {
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
        progress(Progress::Epoch(&metrics));
        history.push(metrics);
    }
    Ok(history)
}

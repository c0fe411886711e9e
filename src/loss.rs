//! Losses with their gradients, each computed in one pass.

use crate::gemm::{Element, MatMut, MatRef};

/// The losses a network trains with, each with the metric reported
/// beside it.
///
/// ```
/// use densekit::data::Dataset;
/// use densekit::loss::Loss;
/// // A data set's targets choose its loss.
/// let classes = Dataset::classification(vec![0.0f32, 1.0], 1, vec![0, 1]).unwrap();
/// let values = Dataset::regression(vec![0.0f32, 1.0], 1, vec![0.5, 1.5], 1).unwrap();
/// assert_eq!((classes.loss(), values.loss()), (Loss::SoftmaxCrossEntropy, Loss::MeanSquaredError));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Softmax over the outputs, then cross-entropy against a class label
    /// ([`softmax_cross_entropy`]); reported with the accuracy of the
    /// argmax.
    SoftmaxCrossEntropy,
    /// Mean squared error against real targets ([`mse`], PyTorch's
    /// `MSELoss`: the mean over samples and outputs); reported with its
    /// square root, the RMSE.
    MeanSquaredError,
}

/// The targets of a batch, which also choose the loss: class labels train
/// softmax cross-entropy, real values mean squared error.
///
/// ```
/// use densekit::loss::{Loss, Targets};
/// assert_eq!(Targets::Classes(&[3, 1]).loss(), Loss::SoftmaxCrossEntropy);
/// assert_eq!(Targets::Values(&[0.5, 2.0]).loss(), Loss::MeanSquaredError);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Targets<'a> {
    /// One class label per sample.
    Classes(&'a [usize]),
    /// `batch × outputs` values, row-major.
    Values(&'a [f32]),
}

impl Targets<'_> {
    /// The loss these targets train with.
    ///
    /// ```
    /// use densekit::loss::{Loss, Targets};
    /// assert_eq!(Targets::Classes(&[3, 1]).loss(), Loss::SoftmaxCrossEntropy);
    /// assert_eq!(Targets::Values(&[0.5]).loss(), Loss::MeanSquaredError);
    /// ```
    pub fn loss(&self) -> Loss {
        match self {
            Targets::Classes(_) => Loss::SoftmaxCrossEntropy,
            Targets::Values(_) => Loss::MeanSquaredError,
        }
    }
}

/// Softmax followed by cross-entropy against integer labels, fused.
///
/// For logits `z` of shape (batch, classes) and labels `t`, returns the mean
/// loss `(1/batch)·Σ_r [log Σ_c e^{z_rc} − z_{r,t_r}]` and writes
/// `dlogits = (softmax(z) − onehot(t)) / batch`, its exact gradient, in the
/// same pass. Uses the log-sum-exp shift by the row maximum, so large logits
/// neither overflow nor lose the answer; sums run in f64.
///
/// # Panics
/// If `labels.len()` is not the batch size, a label is ≥ the number of
/// classes, or `dlogits` is not the shape of `logits` (names the shapes).
///
/// ```
/// use densekit::gemm::{MatMut, MatRef};
/// use densekit::loss::softmax_cross_entropy;
/// let logits = [1000.0f32, 1000.0]; // one sample, two equal classes
/// let mut grad = [0.0f32; 2];
/// let loss = softmax_cross_entropy(MatRef::from_row_major(&logits, 1, 2), &[1],
///     MatMut::from_row_major(&mut grad, 1, 2));
/// assert!((loss - std::f64::consts::LN_2).abs() < 1e-12);
/// assert_eq!(grad, [0.5, -0.5]);
/// ```
#[track_caller]
pub fn softmax_cross_entropy<T: Element>(
    logits: MatRef<'_, T>,
    labels: &[usize],
    mut dlogits: MatMut<'_, T>,
) -> f64 {
    let (batch, classes) = logits.shape();
    assert!(
        labels.len() == batch,
        "softmax_cross_entropy: {} labels for {batch}×{classes} logits",
        labels.len()
    );
    assert!(
        dlogits.shape() == (batch, classes),
        "softmax_cross_entropy: dlogits is {}×{} but logits are {batch}×{classes}",
        dlogits.nrows(),
        dlogits.ncols()
    );
    if let Some((r, &t)) = labels.iter().enumerate().find(|&(_, &t)| t >= classes) {
        panic!(
            "softmax_cross_entropy: label {t} of sample {r} is out of range for {classes} classes"
        );
    }
    if classes == 0 {
        return 0.0;
    }
    let scale = 1.0 / batch.max(1) as f64;
    // e^{z − max} of every logit, through one vectorized exp over the batch:
    // one exp per logit serves both the sum and the softmax.
    let mut maxes = Vec::with_capacity(batch);
    let mut shifted = Vec::with_capacity(batch * classes);
    for r in 0..batch {
        let max = row_max(logits, r);
        maxes.push(max);
        match logits.row(r) {
            Some(row) => shifted.extend(row.iter().map(|z| z.to_f64() - max)),
            None => shifted.extend((0..classes).map(|c| logits.get(r, c).to_f64() - max)),
        }
    }
    crate::simd::exp_in_place(&mut shifted);
    let mut total = 0.0;
    let rows = shifted.chunks_exact(classes).zip(labels).zip(&maxes);
    for (r, ((exps, &label), &max)) in rows.enumerate() {
        let sum: f64 = exps.iter().sum();
        total += sum.ln() - (logits.get(r, label).to_f64() - max);
        let grad = |c: usize, e: f64| {
            let onehot = if c == label { 1.0 } else { 0.0 };
            T::from_f64((e / sum - onehot) * scale)
        };
        match dlogits.row_mut(r) {
            Some(out) => {
                for (c, (slot, &e)) in out.iter_mut().zip(exps).enumerate() {
                    *slot = grad(c, e);
                }
            }
            None => {
                for (c, &e) in exps.iter().enumerate() {
                    dlogits.set(r, c, grad(c, e));
                }
            }
        }
    }
    total * scale
}

/// The cross-entropy of row `r` of `logits` against `label`, without a
/// gradient (for evaluation): `log Σ_c e^{z_c} − z_label`, stably.
///
/// ```
/// use densekit::gemm::MatRef;
/// use densekit::loss::cross_entropy_row;
/// let logits = [0.0f32, 0.0];
/// assert!((cross_entropy_row(MatRef::from_row_major(&logits, 1, 2), 0, 1) - 2f64.ln()).abs() < 1e-12);
/// ```
///
/// # Panics
/// If `r` or `label` is out of range.
#[track_caller]
pub fn cross_entropy_row<T: Element>(logits: MatRef<'_, T>, r: usize, label: usize) -> f64 {
    let (max, log_sum) = shifted_log_sum_exp(logits, r);
    log_sum - (logits.get(r, label).to_f64() - max)
}

/// `(m, log Σ_c e^{z_c − m})` for row `r`, with `m` the row maximum (so no
/// term overflows), summed in f64.
fn shifted_log_sum_exp<T: Element>(logits: MatRef<'_, T>, r: usize) -> (f64, f64) {
    let classes = logits.ncols();
    let max = row_max(logits, r);
    // Sixteen logits at a time through the vectorized exp, without allocating.
    let mut sum = 0.0;
    let mut chunk = [0.0f64; 16];
    for c0 in (0..classes).step_by(chunk.len()) {
        let part = &mut chunk[..(classes - c0).min(16)];
        for (c, slot) in part.iter_mut().enumerate() {
            *slot = logits.get(r, c0 + c).to_f64() - max;
        }
        crate::simd::exp_in_place(part);
        sum += part.iter().sum::<f64>();
    }
    (max, sum.ln())
}

/// The largest logit of row `r`, in f64.
fn row_max<T: Element>(logits: MatRef<'_, T>, r: usize) -> f64 {
    match logits.row(r) {
        Some(row) => row
            .iter()
            .map(|z| z.to_f64())
            .fold(f64::NEG_INFINITY, f64::max),
        None => (0..logits.ncols())
            .map(|c| logits.get(r, c).to_f64())
            .fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Mean squared error `(1/N)·Σ (p − t)²` over all `N` elements, writing its
/// gradient `dpred = 2·(p − t)/N` in the same pass.
///
/// # Panics
/// If `target` or `dpred` differ in shape from `pred` (names the shapes).
///
/// ```
/// use densekit::gemm::{MatMut, MatRef};
/// use densekit::loss::mse;
/// let mut d = [0.0f64; 2];
/// let loss = mse(MatRef::from_row_major(&[1.0, 3.0], 1, 2),
///     MatRef::from_row_major(&[0.0, 1.0], 1, 2), MatMut::from_row_major(&mut d, 1, 2));
/// assert_eq!(loss, 2.5);
/// assert_eq!(d, [1.0, 2.0]);
/// ```
#[track_caller]
pub fn mse<T: Element>(
    pred: MatRef<'_, T>,
    target: MatRef<'_, T>,
    mut dpred: MatMut<'_, T>,
) -> f64 {
    let (rows, cols) = pred.shape();
    for (name, shape) in [("target", target.shape()), ("dpred", dpred.shape())] {
        assert!(
            shape == (rows, cols),
            "mse: {name} is {}×{} but pred is {rows}×{cols}",
            shape.0,
            shape.1
        );
    }
    let n = (rows * cols).max(1) as f64;
    let mut total = 0.0;
    for r in 0..rows {
        for c in 0..cols {
            let diff = pred.get(r, c).to_f64() - target.get(r, c).to_f64();
            total += diff * diff;
            dpred.set(r, c, T::from_f64(2.0 * diff / n));
        }
    }
    total / n
}

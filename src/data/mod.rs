//! Data sets: features and targets in memory, and the MNIST IDX files.
//!
//! A [`Dataset`] holds `len` samples of `feature_count` features each,
//! row-major, as `f32` values or as bytes (image pixels, read as
//! `pixel / 255`), with one target per sample: a class label (trained with
//! softmax cross-entropy) or `target_count` real values (trained with mean
//! squared error). It owns its data or borrows it from the caller.
//!
//! ```
//! use densekit::data::Dataset;
//! // Four samples of two features, borrowed, with class labels.
//! let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
//! let xor = Dataset::classification(&x[..], 2, vec![0, 1, 1, 0]).unwrap();
//! assert_eq!((xor.len(), xor.feature_count(), xor.labels()), (4, 2, Some(&[0, 1, 1, 0][..])));
//! // The same inputs with a real target each.
//! let sum = Dataset::regression(&x[..], 2, vec![0.0, 1.0, 1.0, 2.0], 1).unwrap();
//! assert_eq!(sum.targets(), Some(&[0.0, 1.0, 1.0, 2.0][..]));
//! ```

mod augment;
pub mod idx;

pub use augment::{Augment, Augmenter};

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::loss::Loss;
use crate::par::Par;

use idx::{DataError, DataErrorKind, IMAGES_MAGIC, LABELS_MAGIC, read_idx};

/// Number of classes in MNIST and its drop-in variants.
///
/// ```
/// use densekit::data::CLASSES;
/// assert_eq!(CLASSES, 10); // the digits 0–9
/// ```
pub const CLASSES: usize = 10;

/// A data set: `len` samples of `feature_count` features, row-major, and a
/// target per sample (a class label, or `target_count` real values). Built
/// by [`classification`](Self::classification),
/// [`regression`](Self::regression), [`images`](Self::images) or
/// [`from_pixels`](Self::from_pixels), which check the shapes once; the
/// data is owned (`Vec`) or borrowed (`&[T]`), as `Cow` allows.
///
/// Byte features (pixels) stay bytes, a quarter of the memory traffic of
/// `f32`, and become `pixel / 255` when rows are gathered, as the lecture
/// normalizes them.
///
/// ```
/// use densekit::data::Dataset;
/// // Four samples of two features (XOR), borrowed from the caller.
/// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
/// let labels = [0u32, 1, 1, 0];
/// let xor = Dataset::classification(&x[..], 2, &labels[..]).unwrap();
/// assert_eq!((xor.len(), xor.feature_count(), xor.labels()), (4, 2, Some(&labels[..])));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset<'a> {
    features: Features<'a>,
    feature_count: usize,
    targets: Targets<'a>,
    image_shape: Option<(usize, usize)>,
}

/// A data set's features, `len × feature_count`, row-major.
#[derive(Clone, Debug, PartialEq)]
enum Features<'a> {
    /// Bytes, read as `byte / 255`.
    Pixels(Cow<'a, [u8]>),
    /// Values, read as they are.
    Values(Cow<'a, [f32]>),
}

/// A data set's targets.
#[derive(Clone, Debug, PartialEq)]
enum Targets<'a> {
    /// One class label per sample.
    Labels(Cow<'a, [u32]>),
    /// `count` values per sample, row-major.
    Values {
        values: Cow<'a, [f32]>,
        count: usize,
    },
}

impl Targets<'_> {
    /// These targets, copied if borrowed.
    fn into_owned(self) -> Targets<'static> {
        match self {
            Targets::Labels(l) => Targets::Labels(Cow::Owned(l.into_owned())),
            Targets::Values { values, count } => Targets::Values {
                values: Cow::Owned(values.into_owned()),
                count,
            },
        }
    }
}

/// Why a [`Dataset`] could not be built: shapes that do not fit, or a
/// value that cannot be trained on. The message names the sample.
///
/// ```
/// use densekit::data::Dataset;
/// let err = Dataset::classification(vec![1.0, f32::NAN], 1, vec![0, 1]).unwrap_err();
/// assert!(err.to_string().contains("sample 1"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetError(String);

impl fmt::Display for DatasetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DatasetError {}

/// `Err(DatasetError)` with a formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => { Err(DatasetError(format!($($arg)*))) };
}

impl<'a> Dataset<'a> {
    /// A classification set: `f32` features, `feature_count` per sample,
    /// and one class label per sample (checked against the network's class
    /// count when training starts).
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset::classification(vec![0.5, -1.0, 2.0, 0.0], 2, vec![1, 0]).unwrap();
    /// assert_eq!(data.len(), 2);
    /// let err = Dataset::classification(vec![0.5, -1.0, 2.0], 2, vec![1, 0]).unwrap_err();
    /// assert!(err.to_string().contains("2 samples of 2 features need 4 values, got 3"));
    /// ```
    ///
    /// # Errors
    /// If `features` does not hold `labels.len() × feature_count` values,
    /// or a feature is NaN or infinite (the message names the sample).
    pub fn classification(
        features: impl Into<Cow<'a, [f32]>>,
        feature_count: usize,
        labels: impl Into<Cow<'a, [u32]>>,
    ) -> Result<Dataset<'a>, DatasetError> {
        let (features, labels) = (features.into(), labels.into());
        check_features(features.len(), feature_count, labels.len())?;
        check_finite("feature", &features, feature_count)?;
        Ok(Dataset {
            features: Features::Values(features),
            feature_count,
            targets: Targets::Labels(labels),
            image_shape: None,
        })
    }

    /// A regression set: `f32` features, `feature_count` per sample, and
    /// `target_count` real targets per sample (the network's outputs),
    /// both row-major.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// // Three samples, one feature, two targets each.
    /// let data = Dataset::regression(vec![1.0, 2.0, 3.0], 1, vec![1.0, 2.0, 2.0, 4.0, 3.0, 6.0], 2).unwrap();
    /// assert_eq!((data.len(), data.target_count()), (3, Some(2)));
    /// ```
    ///
    /// # Errors
    /// If `target_count` is zero, `targets` is not a whole number of
    /// samples, `features` does not hold `len × feature_count` values, or a
    /// value is NaN or infinite (the message names the sample).
    pub fn regression(
        features: impl Into<Cow<'a, [f32]>>,
        feature_count: usize,
        targets: impl Into<Cow<'a, [f32]>>,
        target_count: usize,
    ) -> Result<Dataset<'a>, DatasetError> {
        let (features, targets) = (features.into(), targets.into());
        if target_count == 0 || targets.len() % target_count != 0 {
            return invalid!(
                "{} targets are not a whole number of samples of {target_count} targets",
                targets.len()
            );
        }
        check_features(features.len(), feature_count, targets.len() / target_count)?;
        check_finite("feature", &features, feature_count)?;
        check_finite("target", &targets, target_count)?;
        Ok(Dataset {
            features: Features::Values(features),
            feature_count,
            targets: Targets::Values {
                values: targets,
                count: target_count,
            },
            image_shape: None,
        })
    }

    /// A classification set of byte features (read as `byte / 255`),
    /// `feature_count` per sample, with one label per sample.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset::from_pixels(vec![0, 255, 51, 102], 2, vec![1, 2]).unwrap();
    /// let mut x = Vec::new();
    /// data.gather(&[1, 0], &mut x);
    /// assert_eq!(x, [0.2, 0.4, 0.0, 1.0]);
    /// ```
    ///
    /// # Errors
    /// If `pixels` does not hold `labels.len() × feature_count` bytes.
    pub fn from_pixels(
        pixels: impl Into<Cow<'a, [u8]>>,
        feature_count: usize,
        labels: impl Into<Cow<'a, [u32]>>,
    ) -> Result<Dataset<'a>, DatasetError> {
        let (pixels, labels) = (pixels.into(), labels.into());
        check_features(pixels.len(), feature_count, labels.len())?;
        Ok(Dataset {
            features: Features::Pixels(pixels),
            feature_count,
            targets: Targets::Labels(labels),
            image_shape: None,
        })
    }

    /// [`from_pixels`](Self::from_pixels) for images of `rows × cols`
    /// pixels each, row-major: a trainer may then rearrange the pixels (see
    /// [`strip_order`]).
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset::images(vec![0; 2 * 6], (2, 3), vec![0, 1]).unwrap();
    /// assert_eq!((data.feature_count(), data.image_shape()), (6, Some((2, 3))));
    /// ```
    ///
    /// # Errors
    /// As [`from_pixels`](Self::from_pixels), or if `rows × cols` overflows.
    pub fn images(
        pixels: impl Into<Cow<'a, [u8]>>,
        (rows, cols): (usize, usize),
        labels: impl Into<Cow<'a, [u32]>>,
    ) -> Result<Dataset<'a>, DatasetError> {
        let Some(feature_count) = rows.checked_mul(cols) else {
            return invalid!("images of {rows}×{cols} pixels overflow usize");
        };
        let mut data = Dataset::from_pixels(pixels, feature_count, labels)?;
        data.image_shape = Some((rows, cols));
        Ok(data)
    }

    /// Builds a data set from IDX images (`len × rows × cols` bytes) and
    /// labels.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// use densekit::data::idx::Idx;
    /// let images = Idx { dims: vec![2, 1, 2], data: vec![0, 255, 255, 0] };
    /// let labels = Idx { dims: vec![2], data: vec![3, 9] };
    /// let set = Dataset::from_idx(images, labels).unwrap();
    /// assert_eq!((set.len(), set.image_shape(), set.labels()), (2, Some((1, 2)), Some(&[3, 9][..])));
    /// ```
    ///
    /// # Errors
    /// A message if the counts differ or a label is not below [`CLASSES`].
    pub fn from_idx(images: idx::Idx, labels: idx::Idx) -> Result<Dataset<'static>, String> {
        let count = images.dims[0];
        if labels.dims[0] != count {
            return Err(format!("{count} images but {} labels", labels.dims[0]));
        }
        if let Some((i, &l)) = labels
            .data
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= CLASSES)
        {
            return Err(format!("label {l} of sample {i} is not below {CLASSES}"));
        }
        let labels: Vec<u32> = labels.data.iter().map(|&l| u32::from(l)).collect();
        Dataset::images(images.data, (images.dims[1], images.dims[2]), labels)
            .map_err(|e| e.to_string())
    }

    /// Number of samples.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let set = Dataset::classification(vec![0.0f32; 6], 3, vec![0, 1]).unwrap();
    /// assert_eq!(set.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        match &self.targets {
            Targets::Labels(labels) => labels.len(),
            Targets::Values { values, count } => values.len() / count,
        }
    }

    /// Whether there are no samples.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// assert!(Dataset::classification(Vec::<f32>::new(), 3, Vec::new()).unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features per sample (784 for 28×28 images).
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let set = Dataset::classification(vec![0.0f32; 6], 3, vec![0, 1]).unwrap();
    /// assert_eq!(set.feature_count(), 3);
    /// ```
    pub fn feature_count(&self) -> usize {
        self.feature_count
    }

    /// `(rows, cols)` of each sample when the samples are images with their
    /// pixels in row-major order (IDX files give it); `None` otherwise.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let images = Dataset::images(vec![0u8; 2 * 6], (2, 3), vec![4, 7]).unwrap();
    /// assert_eq!(images.image_shape(), Some((2, 3)));
    /// ```
    pub fn image_shape(&self) -> Option<(usize, usize)> {
        self.image_shape
    }

    /// The class labels, one per sample, if this is a classification set.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let set = Dataset::classification(vec![0.0f32; 4], 2, vec![1, 0]).unwrap();
    /// assert_eq!(set.labels(), Some(&[1, 0][..]));
    /// ```
    pub fn labels(&self) -> Option<&[u32]> {
        match &self.targets {
            Targets::Labels(labels) => Some(labels),
            Targets::Values { .. } => None,
        }
    }

    /// The regression targets, `len × target_count` row-major, if this is
    /// a regression set.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let set = Dataset::regression(vec![0.0f32; 4], 2, vec![0.5, -1.0], 1).unwrap();
    /// assert_eq!(set.targets(), Some(&[0.5, -1.0][..]));
    /// assert_eq!(set.labels(), None);
    /// ```
    pub fn targets(&self) -> Option<&[f32]> {
        match &self.targets {
            Targets::Labels(_) => None,
            Targets::Values { values, .. } => Some(values),
        }
    }

    /// Targets per sample of a regression set (`None` for class labels).
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let set = Dataset::regression(vec![0.0f32; 4], 2, vec![0.5, -1.0, 2.0, 3.0], 2).unwrap();
    /// assert_eq!(set.target_count(), Some(2));
    /// ```
    pub fn target_count(&self) -> Option<usize> {
        match self.targets {
            Targets::Labels(_) => None,
            Targets::Values { count, .. } => Some(count),
        }
    }

    /// The loss a network trains on this set with: softmax cross-entropy
    /// for class labels, mean squared error for real targets.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// use densekit::loss::Loss;
    /// let set = Dataset::regression(vec![0.0f32; 2], 1, vec![0.5, -1.0], 1).unwrap();
    /// assert_eq!(set.loss(), Loss::MeanSquaredError);
    /// ```
    pub fn loss(&self) -> Loss {
        match self.targets {
            Targets::Labels(_) => Loss::SoftmaxCrossEntropy,
            Targets::Values { .. } => Loss::MeanSquaredError,
        }
    }

    /// The byte features, if the features are pixels.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let images = Dataset::images(vec![0u8, 255, 9, 1], (1, 2), vec![3, 5]).unwrap();
    /// assert_eq!(images.pixels(), Some(&[0u8, 255, 9, 1][..]));
    /// assert_eq!(images.values(), None);
    /// ```
    pub fn pixels(&self) -> Option<&[u8]> {
        match &self.features {
            Features::Pixels(p) => Some(p),
            Features::Values(_) => None,
        }
    }

    /// The `f32` features, if they are not pixels.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let set = Dataset::classification(vec![0.25f32, 0.5], 1, vec![0, 1]).unwrap();
    /// assert_eq!(set.values(), Some(&[0.25f32, 0.5][..]));
    /// ```
    pub fn values(&self) -> Option<&[f32]> {
        match &self.features {
            Features::Pixels(_) => None,
            Features::Values(v) => Some(v),
        }
    }

    /// Samples `range`, borrowed from this set (no copy): for example a
    /// validation split of the last samples of a training set.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset::from_pixels(vec![1, 2, 3, 4, 5, 6], 2, vec![0, 1, 2]).unwrap();
    /// let (train, val) = (data.rows(0..2), data.rows(2..3));
    /// assert_eq!((train.len(), val.pixels(), val.labels()), (2, Some(&[5, 6][..]), Some(&[2][..])));
    /// ```
    ///
    /// # Panics
    /// If `range` is not within `0..len`.
    #[track_caller]
    pub fn rows(&self, range: Range<usize>) -> Dataset<'_> {
        assert!(
            range.start <= range.end && range.end <= self.len(),
            "Dataset::rows: samples {range:?} of a set of {}",
            self.len()
        );
        let f = self.feature_count;
        let features = match &self.features {
            Features::Pixels(p) => {
                Features::Pixels(Cow::Borrowed(&p[range.start * f..range.end * f]))
            }
            Features::Values(v) => {
                Features::Values(Cow::Borrowed(&v[range.start * f..range.end * f]))
            }
        };
        let targets = match &self.targets {
            Targets::Labels(l) => Targets::Labels(Cow::Borrowed(&l[range])),
            Targets::Values { values, count } => Targets::Values {
                values: Cow::Borrowed(&values[range.start * count..range.end * count]),
                count: *count,
            },
        };
        Dataset {
            features,
            feature_count: f,
            targets,
            image_shape: self.image_shape,
        }
    }

    /// This set with its data copied if borrowed, free of the lender.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let features = vec![0.0f32; 4];
    /// let borrowed = Dataset::classification(&features[..], 2, vec![0, 1]).unwrap();
    /// let owned: Dataset<'static> = borrowed.into_owned();
    /// drop(features);
    /// assert_eq!(owned.len(), 2);
    /// ```
    pub fn into_owned(self) -> Dataset<'static> {
        Dataset {
            features: match self.features {
                Features::Pixels(p) => Features::Pixels(Cow::Owned(p.into_owned())),
                Features::Values(v) => Features::Values(Cow::Owned(v.into_owned())),
            },
            feature_count: self.feature_count,
            targets: self.targets.into_owned(),
            image_shape: self.image_shape,
        }
    }

    /// This data set with each sample's features reordered: feature `j` of
    /// the result is feature `order[j]` of `self` (pair it with
    /// [`Mlp::reorder_inputs`](crate::mlp::Mlp::reorder_inputs)). The result
    /// owns its features and is no longer in image layout: its
    /// `image_shape` is `None`.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset::images(vec![1, 2, 3, 4, 5, 6], (1, 3), vec![0, 1]).unwrap();
    /// let swapped = data.with_feature_order(&[2, 0, 1]);
    /// assert_eq!(swapped.pixels(), Some(&[3, 1, 2, 6, 4, 5][..]));
    /// ```
    ///
    /// # Panics
    /// If `order` is not a permutation of `0..feature_count`.
    #[track_caller]
    pub fn with_feature_order(&self, order: &[usize]) -> Dataset<'static> {
        let f = self.feature_count;
        assert!(
            is_permutation(order, f),
            "Dataset::with_feature_order: the order must be a permutation of 0..{f}"
        );
        let features = match &self.features {
            Features::Pixels(p) => Features::Pixels(Cow::Owned(permuted(p, order))),
            Features::Values(v) => Features::Values(Cow::Owned(permuted(v, order))),
        };
        Dataset {
            features,
            feature_count: f,
            targets: self.targets.clone().into_owned(),
            image_shape: None,
        }
    }

    /// Appends the features of samples `rows` (in that order) to `out`,
    /// `feature_count` values each (pixels as `pixel / 255`).
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset::classification(vec![1.0, 2.0, 3.0, 4.0], 2, vec![0, 1]).unwrap();
    /// let mut x = Vec::new();
    /// data.gather(&[1, 0], &mut x);
    /// assert_eq!(x, [3.0, 4.0, 1.0, 2.0]);
    /// ```
    ///
    /// # Panics
    /// If a row index is out of range.
    #[track_caller]
    pub fn gather(&self, rows: &[usize], out: &mut Vec<f32>) {
        let start = out.len();
        out.resize(start + rows.len() * self.feature_count, 0.0);
        self.gather_rows(rows, &mut out[start..]);
    }

    /// Writes the features of samples `rows` into `out` (`rows.len() ×
    /// feature_count` slots), a few rows ahead prefetched: shuffled rows of
    /// a data set larger than the caches then do not wait on memory row by
    /// row.
    fn gather_rows(&self, rows: &[usize], out: &mut [f32]) {
        let f = self.feature_count;
        if f == 0 {
            return;
        }
        let prefetch_ahead = |i: usize| {
            if let Some(&ahead) = rows.get(i + GATHER_PREFETCH_ROWS) {
                self.prefetch_row(ahead);
            }
        };
        for &r in rows.iter().take(GATHER_PREFETCH_ROWS) {
            self.prefetch_row(r);
        }
        let slots = out.chunks_exact_mut(f).zip(rows).enumerate();
        match &self.features {
            Features::Pixels(p) => {
                for (i, (slot, &r)) in slots {
                    prefetch_ahead(i);
                    crate::simd::bytes_divided_into(&p[r * f..][..f], PIXEL_MAX, slot);
                }
            }
            Features::Values(v) => {
                for (i, (slot, &r)) in slots {
                    prefetch_ahead(i);
                    slot.copy_from_slice(&v[r * f..][..f]);
                }
            }
        }
    }

    /// Writes the features of samples `rows` (in that order) into `out`,
    /// `feature_count` values each, as [`gather`](Self::gather) does, using
    /// the threads `par` allows for a large batch (each converts a band of
    /// rows; the values do not depend on the split).
    ///
    /// ```
    /// use densekit::Par;
    /// use densekit::data::Dataset;
    /// let data = Dataset::from_pixels(vec![0, 255, 51, 102], 2, vec![1, 2]).unwrap();
    /// let mut x = vec![0.0; 4];
    /// data.gather_into(&[1, 0], &mut x, Par::Auto);
    /// assert_eq!(x, [0.2, 0.4, 0.0, 1.0]);
    /// ```
    ///
    /// # Panics
    /// If `out` does not hold `rows.len() × feature_count` values, or a row
    /// index is out of range.
    #[track_caller]
    pub fn gather_into(&self, rows: &[usize], out: &mut [f32], par: Par) {
        /// A feature costs about as much as this many multiply-adds (`Par`'s
        /// unit of work): a batch of 128 MNIST rows is worth two threads.
        const MULTIPLY_ADDS_PER_FEATURE: usize = 16;
        let f = self.feature_count;
        assert!(
            out.len() == rows.len() * f,
            "Dataset::gather_into: {} rows of {f} features need {} slots, got {}",
            rows.len(),
            rows.len() * f,
            out.len()
        );
        if f == 0 || rows.is_empty() {
            return;
        }
        par.run(out.len() * MULTIPLY_ADDS_PER_FEATURE, |threads| {
            let per = rows.len().div_ceil(threads.max(1));
            if threads > 1 {
                out.par_chunks_mut(per * f)
                    .zip(rows.par_chunks(per))
                    .for_each(|(out, rows)| self.gather_rows(rows, out));
            } else {
                self.gather_rows(rows, out);
            }
        });
    }

    /// Appends the targets of samples `rows` (in that order): their labels
    /// to `labels` for a classification set, else their `target_count`
    /// values each to `values`.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let set = Dataset::classification(vec![0.0f32; 3], 1, vec![4, 5, 6]).unwrap();
    /// let (mut labels, mut values) = (Vec::new(), Vec::new());
    /// set.gather_targets([2, 0], &mut labels, &mut values);
    /// assert_eq!((labels, values.len()), (vec![6, 4], 0));
    /// ```
    ///
    /// # Panics
    /// If a row index is out of range.
    #[track_caller]
    pub fn gather_targets(
        &self,
        rows: impl IntoIterator<Item = usize>,
        labels: &mut Vec<usize>,
        values: &mut Vec<f32>,
    ) {
        match &self.targets {
            Targets::Labels(l) => labels.extend(rows.into_iter().map(|r| l[r] as usize)),
            Targets::Values { values: v, count } => {
                for r in rows {
                    values.extend_from_slice(&v[r * count..][..*count]);
                }
            }
        }
    }

    /// Asks the CPU to start loading the features of samples `rows` into
    /// the caches (a hint: it never faults and changes nothing). The
    /// trainer calls it for the next mini-batch, so gathering that batch
    /// does not wait on memory.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let set = Dataset::classification(vec![0.0f32; 6], 2, vec![0, 1, 0]).unwrap();
    /// set.prefetch_rows(&[2, 0]); // a hint only
    /// ```
    ///
    /// # Panics
    /// If a row index is out of range.
    #[track_caller]
    pub fn prefetch_rows(&self, rows: &[usize]) {
        for &r in rows {
            self.prefetch_row(r);
        }
    }

    fn prefetch_row(&self, r: usize) {
        let f = self.feature_count;
        match &self.features {
            Features::Pixels(p) => crate::simd::prefetch_read(&p[r * f..][..f]),
            Features::Values(v) => crate::simd::prefetch_read(&v[r * f..][..f]),
        }
    }

    /// Appends the features of the samples in `range` to `out`.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let images = Dataset::images(vec![0u8, 255, 51, 102], (1, 2), vec![0, 1]).unwrap();
    /// let mut x = Vec::new();
    /// images.gather_range(1..2, &mut x);
    /// assert_eq!(x, [0.2, 0.4]); // pixels / 255
    /// ```
    ///
    /// # Panics
    /// If `range` is not within `0..len`.
    #[track_caller]
    pub fn gather_range(&self, range: Range<usize>, out: &mut Vec<f32>) {
        let f = self.feature_count;
        match &self.features {
            Features::Pixels(p) => crate::simd::append_bytes_divided(
                &p[range.start * f..range.end * f],
                PIXEL_MAX,
                out,
            ),
            Features::Values(v) => out.extend_from_slice(&v[range.start * f..range.end * f]),
        }
    }
}

/// `Ok` if `values` features are `samples × feature_count`.
fn check_features(values: usize, feature_count: usize, samples: usize) -> Result<(), DatasetError> {
    match samples.checked_mul(feature_count) {
        Some(want) if want == values => Ok(()),
        want => invalid!(
            "{samples} samples of {feature_count} features need {} values, got {values}",
            want.map_or("more than usize::MAX".to_string(), |w| w.to_string())
        ),
    }
}

/// `Ok` if every value is finite, else an error naming the first that is
/// not (`what` `j` of sample `i`).
fn check_finite(what: &str, values: &[f32], per_sample: usize) -> Result<(), DatasetError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(at) => invalid!(
            "{what} {} of sample {} is {}",
            at % per_sample,
            at / per_sample,
            values[at]
        ),
        None => Ok(()),
    }
}

/// Each `order.len()`-wide row of `rows` permuted: value `j` of a result
/// row is value `order[j]` of the row.
fn permuted<T: Copy + Default + Send + Sync>(rows: &[T], order: &[usize]) -> Vec<T> {
    let f = order.len();
    let mut out = vec![T::default(); rows.len()];
    if f > 0 {
        out.par_chunks_mut(f * ROWS_PER_TASK)
            .zip(rows.par_chunks(f * ROWS_PER_TASK))
            .for_each(|(out, rows)| {
                for (out, row) in out.chunks_exact_mut(f).zip(rows.chunks_exact(f)) {
                    for (o, &from) in out.iter_mut().zip(order) {
                        *o = row[from];
                    }
                }
            });
    }
    out
}

/// Samples per parallel task when reordering features.
const ROWS_PER_TASK: usize = 1024;

/// Whether `order` is a permutation of `0..n`.
pub(crate) fn is_permutation(order: &[usize], n: usize) -> bool {
    let mut seen = vec![false; n];
    order.len() == n
        && order
            .iter()
            .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

/// The pixels of a row-major `rows × cols` image in strips `band` rows
/// tall, each strip read column by column: runs of consecutive pixels then
/// cover compact `band`-tall tiles instead of a thin slice of one row.
///
/// Why: the first layer's weight gradient `dwᵀ = xᵀ·dz` skips, per sliver of
/// consecutive pixels (12 on AVX-512), every image whose pixels there are
/// all zero. Compact tiles are more often all zero than slices of a row
/// (`docs/design.md`).
///
/// ```
/// use densekit::data::strip_order;
/// // A 3 × 2 image in strips two rows tall, then the last row alone.
/// assert_eq!(strip_order(3, 2, 2), [0, 2, 1, 3, 4, 5]);
/// ```
pub fn strip_order(rows: usize, cols: usize, band: usize) -> Vec<usize> {
    let band = band.max(1);
    (0..rows)
        .step_by(band)
        .flat_map(|top| {
            (0..cols).flat_map(move |c| (top..(top + band).min(rows)).map(move |r| r * cols + c))
        })
        .collect()
}

/// How many rows ahead [`Dataset::gather`] prefetches: enough misses in
/// flight to cover memory latency (an MNIST row is 13 cache lines).
const GATHER_PREFETCH_ROWS: usize = 4;

/// The largest pixel value: features are `pixel / PIXEL_MAX`.
const PIXEL_MAX: f32 = 255.0;

/// The lecture's input normalization: `pixel / 255`.
///
/// ```
/// assert_eq!(densekit::data::pixel_to_feature(51), 0.2);
/// ```
#[inline]
pub fn pixel_to_feature(pixel: u8) -> f32 {
    f32::from(pixel) / PIXEL_MAX
}

/// MNIST's training and test sets.
///
/// ```
/// use densekit::data::{load_mnist, Mnist};
/// // With the four MNIST files in `dir` (this repository's data/mnist):
/// fn sizes(dir: &str) -> Result<(usize, usize), densekit::data::idx::DataError> {
///     let Mnist { train, test } = load_mnist(dir)?;
///     Ok((train.len(), test.len()))
/// }
/// assert!(sizes("/no/such/folder").is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60,000 samples in the original.
    pub train: Dataset<'static>,
    /// 10,000 samples in the original.
    pub test: Dataset<'static>,
}

/// The four MNIST file names (without `.gz`): train images, train labels,
/// test images, test labels.
///
/// ```
/// use densekit::data::MNIST_FILES;
/// assert_eq!(MNIST_FILES[0], "train-images-idx3-ubyte");
/// ```
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Loads MNIST (or any data set in its IDX layout under the same file
/// names) from `dir`. Each file may be gzipped (`NAME.gz`, preferred) or raw
/// (`NAME`); gzip is recognized by content, not name.
///
/// ```
/// use densekit::data::load_mnist;
/// let err = load_mnist("/no/such/folder").unwrap_err();
/// assert!(err.to_string().contains("train-images-idx3-ubyte"));
/// ```
///
/// # Errors
/// A [`DataError`] naming the file: missing (saying which names were tried),
/// unreadable, corrupt, or inconsistent (image and label counts differ,
/// labels out of range).
pub fn load_mnist(dir: impl AsRef<Path>) -> Result<Mnist, DataError> {
    let dir = dir.as_ref();
    let [train_images, train_labels, test_images, test_labels] =
        MNIST_FILES.map(|name| locate(dir, name));
    let load = |images: Result<PathBuf, DataError>, labels: Result<PathBuf, DataError>| {
        let (images, labels) = (images?, labels?);
        let image_idx = read_idx(&images, IMAGES_MAGIC)?;
        let label_idx = read_idx(&labels, LABELS_MAGIC)?;
        Dataset::from_idx(image_idx, label_idx).map_err(|msg| DataError {
            path: labels.clone(),
            kind: DataErrorKind::Invalid(format!("does not match {}: {msg}", images.display())),
        })
    };
    Ok(Mnist {
        train: load(train_images, train_labels)?,
        test: load(test_images, test_labels)?,
    })
}

/// `dir/NAME.gz` if present, else `dir/NAME`, else an error naming both.
fn locate(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(DataError {
            path: gz.clone(),
            kind: DataErrorKind::Invalid(format!(
                "not found (also looked for {}); point --data-dir or MNIST_DIR at a folder with the four MNIST IDX files",
                raw.display()
            )),
        })
    }
}

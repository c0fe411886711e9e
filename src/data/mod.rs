//! Data sets: the MNIST IDX files, loaded into memory as `f32` features.

pub mod idx;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::par::Par;

use idx::{DataError, DataErrorKind, IMAGES_MAGIC, LABELS_MAGIC, read_idx};

/// Number of classes in MNIST and its drop-in variants.
pub const CLASSES: usize = 10;

/// A labelled set of images. Pixels are kept as bytes (a quarter of the
/// memory traffic of `f32`) and become features `pixel / 255` in `[0, 1]`,
/// as the lecture does, when rows are gathered.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `len × feature_count` pixels, row-major.
    pub pixels: Vec<u8>,
    /// One label in `0..CLASSES` per sample.
    pub labels: Vec<u8>,
    /// Values per sample (784 for 28×28 images).
    pub feature_count: usize,
    /// `(rows, cols)` of each sample when the samples are images with their
    /// pixels in row-major order (IDX files give it), so that a trainer may
    /// rearrange them (see [`strip_order`]); `None` otherwise.
    pub image_shape: Option<(usize, usize)>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Builds a data set from images (`len × rows × cols` bytes) and labels.
    ///
    /// # Errors
    /// A message if the counts differ or a label is not below [`CLASSES`].
    pub fn from_idx(images: idx::Idx, labels: idx::Idx) -> Result<Dataset, String> {
        let (count, feature_count) = (images.dims[0], images.dims[1] * images.dims[2]);
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
        Ok(Dataset {
            pixels: images.data,
            labels: labels.data,
            feature_count,
            image_shape: Some((images.dims[1], images.dims[2])),
        })
    }

    /// This data set with each sample's features reordered: feature `j` of
    /// the result is feature `order[j]` of `self` (pair it with
    /// [`Mlp::reorder_inputs`](crate::mlp::Mlp::reorder_inputs)). The result
    /// is no longer in image layout: its `image_shape` is `None`.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset { pixels: vec![1, 2, 3, 4, 5, 6], labels: vec![0, 1],
    ///                      feature_count: 3, image_shape: Some((1, 3)) };
    /// let swapped = data.with_feature_order(&[2, 0, 1]);
    /// assert_eq!(swapped.pixels, [3, 1, 2, 6, 4, 5]);
    /// ```
    ///
    /// # Panics
    /// If `order` is not a permutation of `0..feature_count`.
    #[track_caller]
    pub fn with_feature_order(&self, order: &[usize]) -> Dataset {
        let f = self.feature_count;
        assert!(
            is_permutation(order, f),
            "Dataset::with_feature_order: the order must be a permutation of 0..{f}"
        );
        let mut pixels = vec![0u8; self.pixels.len()];
        if f > 0 {
            pixels
                .par_chunks_mut(f * ROWS_PER_TASK)
                .zip(self.pixels.par_chunks(f * ROWS_PER_TASK))
                .for_each(|(out, pixels)| {
                    for (out, row) in out.chunks_exact_mut(f).zip(pixels.chunks_exact(f)) {
                        for (o, &from) in out.iter_mut().zip(order) {
                            *o = row[from];
                        }
                    }
                });
        }
        Dataset {
            pixels,
            labels: self.labels.clone(),
            feature_count: f,
            image_shape: None,
        }
    }

    /// Appends the features of samples `rows` (in that order) to `out`,
    /// `feature_count` values each, as `pixel / 255`.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset { pixels: vec![0, 255, 51, 102], labels: vec![1, 2],
    ///                      feature_count: 2, image_shape: None };
    /// let mut x = Vec::new();
    /// data.gather(&[1, 0], &mut x);
    /// assert_eq!(x, [0.2, 0.4, 0.0, 1.0]);
    /// ```
    pub fn gather(&self, rows: &[usize], out: &mut Vec<f32>) {
        out.reserve(rows.len() * self.feature_count);
        self.for_each_pixel_row(rows, |pixels| append_features(pixels, out));
    }

    /// Calls `f` with the pixels of samples `rows`, in that order. Shuffled
    /// rows of a data set larger than the caches: a few rows ahead are
    /// prefetched, so the conversion does not wait on memory row by row.
    #[inline(always)]
    fn for_each_pixel_row(&self, rows: &[usize], mut f: impl FnMut(&[u8])) {
        let n = self.feature_count;
        let row = |r: usize| &self.pixels[r * n..][..n];
        for &r in rows.iter().take(GATHER_PREFETCH_ROWS) {
            crate::simd::prefetch_read(row(r));
        }
        for (i, &r) in rows.iter().enumerate() {
            if let Some(&ahead) = rows.get(i + GATHER_PREFETCH_ROWS) {
                crate::simd::prefetch_read(row(ahead));
            }
            f(row(r));
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
    /// let data = Dataset { pixels: vec![0, 255, 51, 102], labels: vec![1, 2],
    ///                      feature_count: 2, image_shape: None };
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
        /// A pixel costs about as much as this many multiply-adds (`Par`'s
        /// unit of work): a batch of 128 MNIST rows is worth two threads.
        const MULTIPLY_ADDS_PER_PIXEL: usize = 16;
        let f = self.feature_count;
        assert!(
            out.len() == rows.len() * f,
            "Dataset::gather_into: {} rows of {f} features need {} slots, got {}",
            rows.len(),
            rows.len() * f,
            out.len()
        );
        let gather = |rows: &[usize], out: &mut [f32]| {
            let mut slots = out.chunks_exact_mut(f);
            self.for_each_pixel_row(rows, |pixels| {
                let slot = slots.next().expect("one slot per row (checked above)");
                crate::simd::bytes_divided_into(pixels, PIXEL_MAX, slot);
            });
        };
        if f == 0 || rows.is_empty() {
            return;
        }
        par.run(out.len() * MULTIPLY_ADDS_PER_PIXEL, |threads| {
            let per = rows.len().div_ceil(threads.max(1));
            if threads > 1 {
                out.par_chunks_mut(per * f)
                    .zip(rows.par_chunks(per))
                    .for_each(|(out, rows)| gather(rows, out));
            } else {
                gather(rows, out);
            }
        });
    }

    /// Asks the CPU to start loading the pixels of samples `rows` into the
    /// caches (a hint: it never faults and changes nothing). The trainer
    /// calls it for the next mini-batch, so gathering that batch does not
    /// wait on memory.
    ///
    /// # Panics
    /// If a row index is out of range.
    #[track_caller]
    pub fn prefetch_rows(&self, rows: &[usize]) {
        let f = self.feature_count;
        for &r in rows {
            crate::simd::prefetch_read(&self.pixels[r * f..][..f]);
        }
    }

    /// Appends the features of the samples in `range` to `out`.
    pub fn gather_range(&self, range: std::ops::Range<usize>, out: &mut Vec<f32>) {
        let f = self.feature_count;
        append_features(&self.pixels[range.start * f..range.end * f], out);
    }
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
/// all zero. Compact tiles are more often all zero: on MNIST a 12-pixel
/// sliver holds a nonzero pixel in 34% of the images as 4 × 3 tiles, 49% as
/// a 1 × 12 slice of a row.
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

/// Appends `pixel / 255` for each of `pixels` to `out`, eight pixels per
/// vector division where AVX2 is present (the same bits as
/// [`pixel_to_feature`]: IEEE division is correctly rounded in every lane).
fn append_features(pixels: &[u8], out: &mut Vec<f32>) {
    crate::simd::append_bytes_divided(pixels, PIXEL_MAX, out);
}

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
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60,000 samples in the original.
    pub train: Dataset,
    /// 10,000 samples in the original.
    pub test: Dataset,
}

/// The four MNIST file names (without `.gz`): train images, train labels,
/// test images, test labels.
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

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
        })
    }

    /// Appends the features of samples `rows` (in that order) to `out`,
    /// `feature_count` values each, as `pixel / 255`.
    ///
    /// ```
    /// use densekit::data::Dataset;
    /// let data = Dataset { pixels: vec![0, 255, 51, 102], labels: vec![1, 2], feature_count: 2 };
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
    /// let data = Dataset { pixels: vec![0, 255, 51, 102], labels: vec![1, 2], feature_count: 2 };
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
pub fn load_mnist(dir: &Path) -> Result<Mnist, DataError> {
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

//! Random distortions of image samples, applied while a batch is gathered
//! (no second pass, no copy of the data set): each sample's distortion is
//! drawn from a hash of `(seed, epoch, sample index)`, so it is the same for
//! any thread count and any batch it lands in.

use rayon::prelude::*;

use super::{Dataset, Features, PIXEL_MAX};
use crate::par::Par;
use crate::rng::mix;

/// A random distortion of each training image, drawn anew every epoch.
///
/// ```
/// use densekit::data::Augment;
/// assert_eq!("shift:2".parse::<Augment>(), Ok(Augment::Shift(2)));
/// assert_eq!("none".parse::<Augment>(), Ok(Augment::None));
/// assert!(matches!("affine".parse::<Augment>(), Ok(Augment::Affine { .. })));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Augment {
    /// The images as they are.
    #[default]
    None,
    /// A translation by a whole number of pixels, uniform in `±n` along
    /// each axis; pixels moved in from outside are 0. Labels are kept.
    Shift(u32),
    /// An affine map about the image center, sampled with bilinear
    /// interpolation: rotation uniform in `±degrees`, scale in
    /// `1 ± scale`, shear in `±shear`, translation in `±shift` pixels.
    Affine {
        /// Largest rotation, degrees.
        degrees: f32,
        /// Largest relative change of size.
        scale: f32,
        /// Largest shear (x moves by `shear · y`).
        shear: f32,
        /// Largest translation, pixels.
        shift: f32,
    },
}

impl Augment {
    /// `affine`'s defaults: ±10°, ±10% size, ±0.1 shear, ±2 pixels.
    pub const AFFINE: Augment = Augment::Affine {
        degrees: 10.0,
        scale: 0.1,
        shear: 0.1,
        shift: 2.0,
    };
}

impl std::str::FromStr for Augment {
    type Err = String;

    /// `none`, `shift:N` (N pixels), `affine` (the defaults of
    /// [`Augment::AFFINE`]) or `affine:DEGREES,SCALE,SHEAR,SHIFT`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = s.split_once(':').map_or((s, None), |(n, a)| (n, Some(a)));
        let bad =
            || format!("`{s}`: expected none, shift:N, affine or affine:DEGREES,SCALE,SHEAR,SHIFT");
        match (name, arg) {
            ("none", None) => Ok(Augment::None),
            ("shift", Some(n)) => n.parse().map(Augment::Shift).map_err(|_| bad()),
            ("affine", None) => Ok(Augment::AFFINE),
            ("affine", Some(list)) => {
                let v: Vec<f32> = list
                    .split(',')
                    .map(|x| x.trim().parse::<f32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad())?;
                match v[..] {
                    [degrees, scale, shear, shift]
                        if v.iter().all(|x| x.is_finite() && *x >= 0.0) =>
                    {
                        Ok(Augment::Affine {
                            degrees,
                            scale,
                            shear,
                            shift,
                        })
                    }
                    _ => Err(bad()),
                }
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Augment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Augment::None => f.write_str("none"),
            Augment::Shift(n) => write!(f, "shift:{n}"),
            Augment::Affine {
                degrees,
                scale,
                shear,
                shift,
            } => {
                write!(f, "affine:{degrees},{scale},{shear},{shift}")
            }
        }
    }
}

/// Gathers distorted images of a data set in image layout into a batch,
/// its features optionally reordered (feature `j` of a gathered row is
/// pixel `order[j]` of the distorted image; see
/// [`strip_order`](super::strip_order)).
///
/// ```
/// use densekit::Par;
/// use densekit::data::{Augment, Augmenter, Dataset};
/// // One 3×3 image with a bright center.
/// let data = Dataset::images(vec![0, 0, 0, 0, 255, 0, 0, 0, 0], (3, 3), vec![0]).unwrap();
/// let augmenter = Augmenter::new(Augment::Shift(1), &data, None).unwrap();
/// let mut x = vec![0.0; 9];
/// augmenter.gather(&data, &[0], &mut x, 5, 1, Par::Seq);
/// assert_eq!(x.iter().filter(|&&v| v == 1.0).count(), 1); // moved, not lost
/// ```
#[derive(Clone, Debug)]
pub struct Augmenter {
    augment: Augment,
    rows: usize,
    cols: usize,
    /// `(row, col)` in the image of each gathered feature.
    at: Vec<(u16, u16)>,
}

impl Augmenter {
    /// An augmenter for `data`'s images, gathering in `order` if given.
    ///
    /// ```
    /// use densekit::data::{Augment, Augmenter, Dataset};
    /// let images = Dataset::images(vec![0u8; 2 * 9], (3, 3), vec![0, 1]).unwrap();
    /// assert!(Augmenter::new(Augment::Shift(1), &images, None).is_ok());
    /// let flat = Dataset::classification(vec![0.0f32; 4], 2, vec![0, 1]).unwrap();
    /// assert!(Augmenter::new(Augment::Shift(1), &flat, None).is_err()); // no image shape
    /// ```
    ///
    /// # Errors
    /// If `data` has no image shape, or `order` is not a permutation of
    /// its features.
    pub fn new(
        augment: Augment,
        data: &Dataset,
        order: Option<&[usize]>,
    ) -> Result<Augmenter, String> {
        let Some((rows, cols)) = data.image_shape() else {
            return Err(format!(
                "--augment {augment} needs images (a data set with an image shape)"
            ));
        };
        if rows > usize::from(u16::MAX) || cols > usize::from(u16::MAX) {
            return Err(format!("images of {rows}×{cols} are too large to augment"));
        }
        let n = rows * cols;
        let identity: Vec<usize> = (0..n).collect();
        let order = order.unwrap_or(&identity);
        if !super::is_permutation(order, n) {
            return Err(format!("the feature order is not a permutation of 0..{n}"));
        }
        let at = order
            .iter()
            .map(|&p| ((p / cols) as u16, (p % cols) as u16))
            .collect();
        Ok(Augmenter {
            augment,
            rows,
            cols,
            at,
        })
    }

    /// Writes samples `rows` of `data`, each distorted as drawn for
    /// `(seed, epoch, sample)`, into `out` (`rows.len() × features`), on
    /// the threads `par` allows (the values do not depend on them).
    ///
    /// ```
    /// use densekit::data::{Augment, Augmenter, Dataset};
    /// use densekit::gemm::Par;
    /// let images = Dataset::images(vec![255u8; 2 * 9], (3, 3), vec![0, 1]).unwrap();
    /// let augmenter = Augmenter::new(Augment::None, &images, None).unwrap();
    /// let mut x = vec![0.0f32; 2 * 9];
    /// augmenter.gather(&images, &[1, 0], &mut x, 1, 0, Par::Seq);
    /// assert!(x.iter().all(|&v| v == 1.0)); // undistorted, pixels / 255
    /// ```
    ///
    /// # Panics
    /// If `data` is not the shape the augmenter was made for, `out` has the
    /// wrong length, or a row index is out of range.
    #[track_caller]
    pub fn gather(
        &self,
        data: &Dataset,
        rows: &[usize],
        out: &mut [f32],
        seed: u64,
        epoch: u64,
        par: Par,
    ) {
        let f = self.rows * self.cols;
        assert!(
            data.feature_count() == f && out.len() == rows.len() * f,
            "Augmenter::gather: {} rows of {} features into {} slots, for {}×{} images",
            rows.len(),
            data.feature_count(),
            out.len(),
            self.rows,
            self.cols
        );
        if f == 0 {
            return;
        }
        let one = |(slot, &r): (&mut [f32], &usize)| {
            let key = sample_key(seed, epoch, r);
            match &data.features {
                Features::Pixels(p) => {
                    self.distort(&p[r * f..][..f], key, slot, |v| f32::from(v) / PIXEL_MAX)
                }
                Features::Values(v) => self.distort(&v[r * f..][..f], key, slot, |v| v),
            }
        };
        /// A distorted pixel costs about as much as this many multiply-adds.
        const MULTIPLY_ADDS_PER_PIXEL: usize = 32;
        par.run(out.len() * MULTIPLY_ADDS_PER_PIXEL, |threads| {
            if threads > 1 {
                out.par_chunks_mut(f).zip(rows).for_each(one);
            } else {
                out.chunks_mut(f).zip(rows).for_each(one);
            }
        });
    }

    /// One image `src` (row-major) distorted as `key` draws it, into `out`.
    fn distort<T: Copy>(&self, src: &[T], key: u64, out: &mut [f32], value: impl Fn(T) -> f32) {
        let (rows, cols) = (self.rows as isize, self.cols as isize);
        let mut draws = Draws(key);
        match self.augment {
            Augment::None => {
                for (o, &(r, c)) in out.iter_mut().zip(&self.at) {
                    *o = value(src[usize::from(r) * self.cols + usize::from(c)]);
                }
            }
            Augment::Shift(n) => {
                let n = i64::from(n);
                let span = (2 * n + 1) as u64;
                let dy = (draws.next() % span) as i64 - n;
                let dx = (draws.next() % span) as i64 - n;
                for (o, &(r, c)) in out.iter_mut().zip(&self.at) {
                    let (sr, sc) = (r as isize - dy as isize, c as isize - dx as isize);
                    *o = if (0..rows).contains(&sr) && (0..cols).contains(&sc) {
                        value(src[sr as usize * self.cols + sc as usize])
                    } else {
                        0.0
                    };
                }
            }
            Augment::Affine {
                degrees,
                scale,
                shear,
                shift,
            } => {
                let angle = draws.symmetric(degrees).to_radians();
                let size = 1.0 + draws.symmetric(scale);
                let shear = draws.symmetric(shear);
                let (ty, tx) = (draws.symmetric(shift), draws.symmetric(shift));
                // The map from an output pixel back to where it is read.
                let (sin, cos) = angle.sin_cos();
                let (cy, cx) = ((rows - 1) as f32 / 2.0, (cols - 1) as f32 / 2.0);
                let pixel = |r: isize, c: isize| {
                    if (0..rows).contains(&r) && (0..cols).contains(&c) {
                        value(src[r as usize * self.cols + c as usize])
                    } else {
                        0.0
                    }
                };
                for (o, &(r, c)) in out.iter_mut().zip(&self.at) {
                    let (y, x) = (f32::from(r) - cy - ty, f32::from(c) - cx - tx);
                    let x = x - shear * y;
                    let sx = (cos * x + sin * y) / size + cx;
                    let sy = (-sin * x + cos * y) / size + cy;
                    let (r0, c0) = (sy.floor(), sx.floor());
                    let (fy, fx) = (sy - r0, sx - c0);
                    let (r0, c0) = (r0 as isize, c0 as isize);
                    let top = pixel(r0, c0) * (1.0 - fx) + pixel(r0, c0 + 1) * fx;
                    let bottom = pixel(r0 + 1, c0) * (1.0 - fx) + pixel(r0 + 1, c0 + 1) * fx;
                    *o = top * (1.0 - fy) + bottom * fy;
                }
            }
        }
    }
}

/// The key of one sample's distortion in one epoch.
fn sample_key(seed: u64, epoch: u64, sample: usize) -> u64 {
    mix(mix(mix(seed ^ 0xA076_1D64_78BD_642F) ^ epoch) ^ sample as u64)
}

/// A stream of random numbers from a key.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[−limit, limit)`.
    fn symmetric(&mut self, limit: f32) -> f32 {
        let unit = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * limit
    }
}

//! Inverted dropout with a counter-based mask: whether element `e` of
//! hidden layer `l` is kept at step `t` is a hash of `(seed, t, l, e)`, so
//! the mask is the same for any thread count and for a run resumed from a
//! checkpoint, and the backward pass regenerates it instead of storing it.

use rayon::prelude::*;

use crate::gemm::Par;
use crate::rng::mix;

/// Dropout for one training step: each hidden unit's output is zeroed
/// with probability `rate` (per hidden layer) and the kept ones are scaled
/// by `1 / (1 − rate)`, so evaluation, which drops nothing, sees the same
/// expected activations (PyTorch's `nn.Dropout`).
///
/// ```
/// use densekit::mlp::Dropout;
/// let dropout = Dropout { rates: &[0.5], seed: 1, step: 7 };
/// let kept = (0..100_000).filter(|&e| dropout.keeps(0, e)).count();
/// assert!((kept as f64 / 1e5 - 0.5).abs() < 0.01);
/// assert_eq!(dropout.rate(3), 0.5); // one rate serves every hidden layer
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout<'a> {
    /// The drop probability of each hidden layer's outputs, in `[0, 1)`;
    /// one value serves every hidden layer.
    pub rates: &'a [f32],
    /// Seeds the masks (the run's seed).
    pub seed: u64,
    /// The step: a new mask every step.
    pub step: u64,
}

impl Dropout<'_> {
    /// The drop probability of hidden layer `layer` (0 if none is given).
    ///
    /// ```
    /// use densekit::mlp::Dropout;
    /// let dropout = Dropout { rates: &[0.2, 0.3], seed: 1, step: 0 };
    /// assert_eq!((dropout.rate(0), dropout.rate(1), dropout.rate(2)), (0.2, 0.3, 0.0));
    /// ```
    pub fn rate(&self, layer: usize) -> f32 {
        match self.rates {
            [] => 0.0,
            [one] => *one,
            rates => rates.get(layer).copied().unwrap_or(0.0),
        }
    }

    /// Whether element `element` (row-major index in the batch's
    /// `batch × width` outputs) of hidden layer `layer` is kept.
    ///
    /// ```
    /// use densekit::mlp::Dropout;
    /// let none = Dropout { rates: &[0.0], seed: 1, step: 0 };
    /// assert!((0..1000).all(|e| none.keeps(0, e)));
    /// let a = Dropout { rates: &[0.5], seed: 1, step: 0 };
    /// let b = Dropout { step: 1, ..a };
    /// assert!((0..1000).any(|e| a.keeps(0, e) != b.keeps(0, e))); // a new mask every step
    /// ```
    pub fn keeps(&self, layer: usize, element: usize) -> bool {
        let threshold = drop_threshold(self.rate(layer));
        hash(self.layer_key(layer), element) >= threshold
    }

    fn layer_key(&self, layer: usize) -> u64 {
        mix(mix(self.seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_add(self.step) ^ ((layer as u64) << 56))
    }

    /// Applies the mask of hidden layer `layer` to a `batch × width` block
    /// (rows `stride` apart): `v ← v · keep · scale`, element `(r, c)`
    /// kept as [`keeps`](Self::keeps)`(layer, r · width + c)` says. Training
    /// passes the activations with `scale = 1/(1 − p)`; backward passes the
    /// gradient likewise, and the activations with `scale = 1 − p` to
    /// recover them.
    ///
    /// ```
    /// use densekit::Par;
    /// use densekit::mlp::Dropout;
    /// let dropout = Dropout { rates: &[0.25], seed: 1, step: 2 };
    /// let mut v = vec![1.0f32; 4 * 8];
    /// dropout.apply(0, &mut v, 8, 8, 1.0 / 0.75, Par::Seq);
    /// for (e, &x) in v.iter().enumerate() {
    ///     assert_eq!(x, if dropout.keeps(0, e) { 1.0 / 0.75 } else { 0.0 });
    /// }
    /// ```
    pub fn apply(
        &self,
        layer: usize,
        block: &mut [f32],
        width: usize,
        stride: usize,
        scale: f32,
        par: Par,
    ) {
        let rate = self.rate(layer);
        if rate == 0.0 || width == 0 {
            return;
        }
        let (threshold, key) = (drop_threshold(rate), self.layer_key(layer));
        let row = |(r, values): (usize, &mut [f32])| {
            for (c, v) in values[..width].iter_mut().enumerate() {
                let keep = hash(key, r * width + c) >= threshold;
                *v = if keep { *v * scale } else { 0.0 };
            }
        };
        // Each element's fate depends on its index alone: any split of the
        // rows gives the same bits.
        par.run(block.len() * MULTIPLY_ADDS_PER_ELEMENT, |threads| {
            if threads > 1 {
                block.par_chunks_mut(stride).enumerate().for_each(row);
            } else {
                block.chunks_mut(stride).enumerate().for_each(row);
            }
        });
    }
}

/// A masked element costs about as much as this many multiply-adds
/// (`Par`'s unit of work).
const MULTIPLY_ADDS_PER_ELEMENT: usize = 8;

/// Hashes below this drop the element: `rate · 2³²`.
fn drop_threshold(rate: f32) -> u32 {
    (f64::from(rate) * 4_294_967_296.0).min(u32::MAX as f64) as u32
}

/// The 32 high bits of a mix of `key` and `element`.
#[inline(always)]
fn hash(key: u64, element: usize) -> u32 {
    (mix(key ^ (element as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)) >> 32) as u32
}

//! Counter-based random numbers: a value is a hash of its coordinates
//! (seed, step, layer, element …), not the next draw of a stream, so
//! dropout masks and augmentations come out the same for any thread count
//! and order of work, and a resumed run regenerates them.

/// SplitMix64's finalizer: a bijection of `u64` whose every output bit
/// depends on every input bit.
///
/// Chain it to hash several coordinates: `mix(mix(seed) ^ step)`.
#[inline(always)]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

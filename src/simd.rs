//! Vectorized math and data helpers on top of the ISA layer ([`crate::isa`]):
//! `exp`, `expm1` on the reduced range, byte-to-float conversion, prefetch.

use crate::isa::{Element, Lanes, MAX_LANES, Simd, SimdFn, dispatch};

/// `exp(x)` lane-wise: `x = n·ln2 + r`, `exp(r)` by polynomial, times `2ⁿ`.
///
/// Inputs above the overflow bound give +∞, below the underflow bound 0
/// (results that would be subnormal are flushed), NaN gives NaN.
///
/// # Safety
/// As [`Lanes`]: runs under the implementation's target features.
#[inline(always)]
pub(crate) unsafe fn exp<V: Lanes>(x: V) -> V {
    let e = |v: f64| V::Elem::from_f64(v);
    // SAFETY: forwarded trait contract.
    unsafe {
        let (lo, hi) = V::EXP_RANGE;
        // Operand order keeps NaN: x86 max/min return their second operand on NaN.
        let clamped = V::splat(e(hi)).min(V::splat(e(lo)).max(x));
        let n = clamped.mul(V::splat(e(core::f64::consts::LOG2_E))).round();
        // ln2 split in two so n·ln2_hi is exact (Cody–Waite).
        let r = n.fmadd(V::splat(e(-0.693_359_375)), clamped);
        let r = n.fmadd(V::splat(e(2.121_944_400_546_905_8e-4)), r);
        let mut p = V::splat(e(V::EXP_POLY[0]));
        for &c in &V::EXP_POLY[1..] {
            p = p.fmadd(r, V::splat(e(c)));
        }
        let one = V::splat(V::Elem::ONE);
        let y = p.mul(r.mul(r)).add(r).add(one);
        // 2ⁿ in two halves so n = max exponent + 1 does not overflow early.
        let half = n.mul(V::splat(e(0.5))).round();
        let scaled = y.mul(half.pow2i()).mul(n.sub(half).pow2i());
        let inf = V::splat(e(f64::INFINITY));
        let zero = V::splat(V::Elem::ZERO);
        // Saturate outside the range; NaN fails both tests and stays NaN via `scaled`.
        let scaled = x.gt_select(V::splat(e(hi)), inf, scaled);
        V::splat(e(lo)).gt_select(x, zero, scaled)
    }
}

/// `v ← eᵛ` for every value: [`exp`] on the selected ISA's lanes (tail
/// included, through a padded vector, so a value's result does not depend
/// on its position).
pub(crate) fn exp_in_place(values: &mut [f64]) {
    dispatch(ExpInPlace(values));
}

/// The body of [`exp_in_place`].
struct ExpInPlace<'a>(&'a mut [f64]);

impl SimdFn for ExpInPlace<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn call<S: Simd>(self) {
        // SAFETY: `call` runs under S's features (trait contract).
        unsafe {
            map_lanes::<S::F64>(
                self.0,
                #[inline(always)]
                |v| exp(v),
            )
        }
    }
}

/// `v ← f(v)` over `values`, whole vectors and then the tail through a
/// padded vector, so every value sees the same instructions.
///
/// `f` must be an `#[inline(always)]` closure: a closure is not compiled
/// with the caller's target features, so one left out of line turns every
/// intrinsic in it into a call.
///
/// # Safety
/// As [`Lanes`]: runs under `V`'s target features.
#[inline(always)]
pub(crate) unsafe fn map_lanes<V: Lanes>(values: &mut [V::Elem], f: impl Fn(V) -> V) {
    const { assert!(V::LANES <= MAX_LANES) };
    let mut chunks = values.chunks_exact_mut(V::LANES);
    for chunk in &mut chunks {
        // SAFETY: the chunk holds exactly LANES elements; V's features are on.
        unsafe { f(V::loadu(chunk.as_ptr())).storeu(chunk.as_mut_ptr()) };
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut pad = [V::Elem::ZERO; MAX_LANES];
        pad[..tail.len()].copy_from_slice(tail);
        // SAFETY: `pad` holds MAX_LANES ≥ LANES elements; V's features are on.
        unsafe { f(V::loadu(pad.as_ptr())).storeu(pad.as_mut_ptr()) };
        let n = tail.len();
        tail.copy_from_slice(&pad[..n]);
    }
}

/// `exp(r) − 1` without cancellation, for `|r| ≤ ln2/2` (the reduced range
/// of [`exp`], where its polynomial is `r + r²·P(r)`).
///
/// # Safety
/// As [`Lanes`].
#[inline(always)]
pub(crate) unsafe fn expm1_reduced<V: Lanes>(r: V) -> V {
    // SAFETY: forwarded trait contract.
    unsafe {
        let mut p = V::splat(V::Elem::from_f64(V::EXP_POLY[0]));
        for &c in &V::EXP_POLY[1..] {
            p = p.fmadd(r, V::splat(V::Elem::from_f64(c)));
        }
        p.mul(r.mul(r)).add(r)
    }
}

/// Appends `b as f32 / divisor` for each byte of `src` to `out`: exactly
/// the scalar quotients (IEEE division is correctly rounded in every lane),
/// vectorized for the selected ISA.
pub(crate) fn append_bytes_divided(src: &[u8], divisor: f32, out: &mut Vec<f32>) {
    let start = out.len();
    out.resize(start + src.len(), 0.0);
    bytes_divided_into(src, divisor, &mut out[start..]);
}

/// Writes `b as f32 / divisor` for each byte of `src` into `out`: the
/// same values as [`append_bytes_divided`], into a slice.
///
/// # Panics
/// If the lengths differ.
#[track_caller]
pub(crate) fn bytes_divided_into(src: &[u8], divisor: f32, out: &mut [f32]) {
    assert!(
        src.len() == out.len(),
        "bytes_divided_into: {} bytes into {} slots",
        src.len(),
        out.len()
    );
    dispatch(BytesDivided { src, divisor, out });
}

/// The body of [`bytes_divided_into`]: a plain loop, which the compiler
/// vectorizes for the ISA it is compiled under.
struct BytesDivided<'a> {
    src: &'a [u8],
    divisor: f32,
    out: &'a mut [f32],
}

impl SimdFn for BytesDivided<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn call<S: Simd>(self) {
        for (slot, &b) in self.out.iter_mut().zip(self.src) {
            *slot = f32::from(b) / self.divisor;
        }
    }
}

/// Asks the CPU to start pulling `data`'s cache lines into L1, so a later
/// pass over it does not wait on memory (a random row of a data set larger
/// than the caches is otherwise a few serial misses). Only a hint: it never
/// faults, whatever the address; a no-op on architectures without one.
#[inline]
pub(crate) fn prefetch_read<T>(data: &[T]) {
    let bytes = core::mem::size_of_val(data);
    for offset in (0..bytes).step_by(64) {
        crate::isa::prefetch_l1(data.as_ptr().cast::<u8>().wrapping_add(offset));
    }
}

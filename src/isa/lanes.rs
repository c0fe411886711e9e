//! [`Lanes`]: one vocabulary of lane-wise operations for every ISA, and its
//! portable implementation on the scalars themselves (one lane).

use super::{Element, Isa, Simd, SimdFn};

/// Lane-wise arithmetic on `LANES` values of `Elem`.
///
/// Implemented by `f32`/`f64` (one lane, the portable path) and by each
/// ISA's vectors (`x86.rs`: AVX2 and AVX-512; `neon.rs`: NEON). Code
/// written against it (the GEMM microkernel, the activation epilogue,
/// `exp`) exists once and is compiled per ISA behind [`Simd::run`] or a
/// kernel's `#[target_feature]` shim.
///
/// # Safety
/// Every method is `unsafe` because the vector implementations may only run
/// inside a function compiled with their ISA's target features; the scalar
/// implementations are safe to call anywhere. Pointer arguments must be
/// valid for `LANES` elements.
pub trait Lanes: Copy {
    /// The element type of each lane.
    type Elem: Element;
    /// Number of lanes.
    const LANES: usize;
    /// Coefficients of the `exp` polynomial on `[-ln2/2, ln2/2]`, highest first,
    /// ending with the `r²` coefficient (`exp(r) ≈ 1 + r + r²·P(r)`).
    const EXP_POLY: &'static [f64];
    /// `exp` overflows to +∞ above this and flushes to 0 below the negative bound.
    const EXP_RANGE: (f64, f64);

    unsafe fn splat(x: Self::Elem) -> Self;
    unsafe fn broadcast(p: *const Self::Elem) -> Self;
    unsafe fn loadu(p: *const Self::Elem) -> Self;
    unsafe fn storeu(self, p: *mut Self::Elem);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    /// `self·b + c` (one rounding on FMA hardware; the scalar path rounds twice).
    unsafe fn fmadd(self, b: Self, c: Self) -> Self;
    /// `self > o ? self : o` (x86 `max` semantics, kept on every ISA), so
    /// NaN in either gives `o`.
    unsafe fn max(self, o: Self) -> Self;
    /// `self < o ? self : o` (x86 `min` semantics).
    unsafe fn min(self, o: Self) -> Self;
    /// Lane-wise `self > o ? yes : no` (false for NaN).
    unsafe fn gt_select(self, o: Self, yes: Self, no: Self) -> Self;
    /// Round to the nearest integer (ties to even).
    unsafe fn round(self) -> Self;
    /// `2^self` for integral `self` in the normal exponent range.
    unsafe fn pow2i(self) -> Self;
    /// Clears the sign bit.
    unsafe fn abs(self) -> Self;
    /// Copies the sign of `sign` onto `self` (which must be non-negative).
    unsafe fn with_sign_of(self, sign: Self) -> Self;

    /// Whether [`Lanes::fmadd_lane`] is one instruction (NEON's `fmla` by
    /// element): then a kernel loads a column of A as whole vectors and
    /// multiplies by their lanes, instead of broadcasting each A value
    /// (`ld1r` occupies a vector pipe that the FMAs need).
    const FMA_BY_LANE: bool = false;

    /// `self·a[lane] + c`, for `lane < LANES`.
    #[inline(always)]
    unsafe fn fmadd_lane(self, a: Self, lane: usize, c: Self) -> Self {
        let mut values = [Self::Elem::ZERO; MAX_LANES];
        // SAFETY: `values` holds MAX_LANES ≥ LANES elements; the caller
        // runs under the implementation's features.
        unsafe {
            a.storeu(values.as_mut_ptr());
            self.fmadd(Self::splat(values[lane]), c)
        }
    }

    /// Whether [`Lanes::load_first`] and [`Lanes::store_first`] are single
    /// masked instructions (AVX-512): a kernel then computes a tile narrower
    /// than its width in place, instead of through a temporary tile.
    const MASKED: bool = false;

    /// Lanes `0..n` loaded from `p` (`n ≤ LANES`), zero in the others;
    /// nothing past `p + n` is read, so `p` needs only `n` valid elements.
    #[inline(always)]
    unsafe fn load_first(p: *const Self::Elem, n: usize) -> Self {
        let mut values = [Self::Elem::ZERO; MAX_LANES];
        // SAFETY: the caller vouches for n ≤ LANES ≤ MAX_LANES readable
        // values at p, and runs under the implementation's features.
        unsafe {
            core::ptr::copy_nonoverlapping(p, values.as_mut_ptr(), n);
            Self::loadu(values.as_ptr())
        }
    }

    /// Stores lanes `0..n` to `p` (`n ≤ LANES`); nothing past `p + n` is
    /// written.
    #[inline(always)]
    unsafe fn store_first(self, p: *mut Self::Elem, n: usize) {
        let mut values = [Self::Elem::ZERO; MAX_LANES];
        // SAFETY: the caller vouches for n ≤ LANES writable values at p,
        // and runs under the implementation's features.
        unsafe {
            self.storeu(values.as_mut_ptr());
            core::ptr::copy_nonoverlapping(values.as_ptr(), p, n);
        }
    }
}

/// The most lanes of any [`Lanes`] type (AVX-512 f32): the size of the
/// padded buffers through which slice tails go as one vector.
pub(crate) const MAX_LANES: usize = 16;

macro_rules! impl_scalar_lanes {
    ($t:ty, $bits:ty, $mant:expr, $bias:expr, $poly:expr, $range:expr) => {
        impl Lanes for $t {
            type Elem = $t;
            const LANES: usize = 1;
            const EXP_POLY: &'static [f64] = $poly;
            const EXP_RANGE: (f64, f64) = $range;
            #[inline(always)]
            unsafe fn splat(x: $t) -> $t {
                x
            }
            #[inline(always)]
            unsafe fn broadcast(p: *const $t) -> $t {
                // SAFETY: the caller guarantees `p` is readable.
                unsafe { *p }
            }
            #[inline(always)]
            unsafe fn loadu(p: *const $t) -> $t {
                // SAFETY: the caller guarantees `p` is readable.
                unsafe { *p }
            }
            #[inline(always)]
            unsafe fn storeu(self, p: *mut $t) {
                // SAFETY: the caller guarantees `p` is writable.
                unsafe { *p = self }
            }
            #[inline(always)]
            unsafe fn add(self, o: $t) -> $t {
                self + o
            }
            #[inline(always)]
            unsafe fn sub(self, o: $t) -> $t {
                self - o
            }
            #[inline(always)]
            unsafe fn mul(self, o: $t) -> $t {
                self * o
            }
            #[inline(always)]
            unsafe fn div(self, o: $t) -> $t {
                self / o
            }
            #[inline(always)]
            unsafe fn fmadd(self, b: $t, c: $t) -> $t {
                // Unfused on purpose: without hardware FMA `mul_add` is a libm call.
                self * b + c
            }
            #[inline(always)]
            unsafe fn max(self, o: $t) -> $t {
                if self > o { self } else { o }
            }
            #[inline(always)]
            unsafe fn min(self, o: $t) -> $t {
                if self < o { self } else { o }
            }
            #[inline(always)]
            unsafe fn gt_select(self, o: $t, yes: $t, no: $t) -> $t {
                if self > o { yes } else { no }
            }
            #[inline(always)]
            unsafe fn round(self) -> $t {
                self.round_ties_even()
            }
            #[inline(always)]
            unsafe fn pow2i(self) -> $t {
                <$t>::from_bits(((self as i64 + $bias) as $bits) << $mant)
            }
            #[inline(always)]
            unsafe fn abs(self) -> $t {
                self.abs()
            }
            #[inline(always)]
            unsafe fn with_sign_of(self, sign: $t) -> $t {
                self.copysign(sign)
            }
        }
    };
}

/// One `Lanes` implementation per vector type (`x86.rs`, `neon.rs`): the
/// operations that are a single intrinsic with the operands in order, by
/// name; the others (which differ in shape between ISAs: masks instead of
/// blends, integer instead of float bit operations, NEON's accumulator-first
/// `fmla` and NaN-propagating `fmax`) as expressions over the raw registers.
macro_rules! vector_lanes {
    ($v:ident, $t:ty, $n:expr, $poly:expr, $range:expr,
     [$set1:ident, $loadu:ident, $storeu:ident, $add:ident, $sub:ident, $mul:ident,
      $div:ident],
     fmadd: |$fa:ident, $fb:ident, $fc:ident| $fmadd:expr,
     max: |$xa:ident, $xb:ident| $max:expr,
     min: |$na:ident, $nb:ident| $min:expr,
     gt_select: |$ga:ident, $gb:ident, $yes:ident, $no:ident| $gt_select:expr,
     round: |$r:ident| $round:expr,
     pow2i: |$x:ident| $pow2i:expr,
     abs: |$av:ident| $abs:expr,
     with_sign_of: |$wv:ident, $ws:ident| $with_sign_of:expr
     $(, fmadd_lane: |$lb:ident, $la:ident, $ll:ident, $lc:ident| $fmadd_lane:expr)?
     $(, masked: [$mask:ty, $maskz_loadu:ident, $mask_storeu:ident])?) => {
        // SAFETY (every unsafe block below): the trait contract says
        // callers run under the type's target features, and pointers are
        // valid for LANES elements.
        impl Lanes for $v {
            type Elem = $t;
            const LANES: usize = $n;
            const EXP_POLY: &'static [f64] = $poly;
            const EXP_RANGE: (f64, f64) = $range;
            #[inline(always)]
            unsafe fn splat(x: $t) -> Self {
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($set1(x)) }
            }
            #[inline(always)]
            unsafe fn broadcast(p: *const $t) -> Self {
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($set1(*p)) }
            }
            #[inline(always)]
            unsafe fn loadu(p: *const $t) -> Self {
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($loadu(p)) }
            }
            #[inline(always)]
            unsafe fn storeu(self, p: *mut $t) {
                // SAFETY: see the macro's SAFETY note.
                unsafe { $storeu(p, self.0) }
            }
            #[inline(always)]
            unsafe fn add(self, o: Self) -> Self {
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($add(self.0, o.0)) }
            }
            #[inline(always)]
            unsafe fn sub(self, o: Self) -> Self {
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($sub(self.0, o.0)) }
            }
            #[inline(always)]
            unsafe fn mul(self, o: Self) -> Self {
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($mul(self.0, o.0)) }
            }
            #[inline(always)]
            unsafe fn div(self, o: Self) -> Self {
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($div(self.0, o.0)) }
            }
            #[inline(always)]
            unsafe fn fmadd(self, b: Self, c: Self) -> Self {
                let ($fa, $fb, $fc) = (self.0, b.0, c.0);
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($fmadd) }
            }
            #[inline(always)]
            unsafe fn max(self, o: Self) -> Self {
                let ($xa, $xb) = (self.0, o.0);
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($max) }
            }
            #[inline(always)]
            unsafe fn min(self, o: Self) -> Self {
                let ($na, $nb) = (self.0, o.0);
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($min) }
            }
            #[inline(always)]
            unsafe fn gt_select(self, o: Self, yes: Self, no: Self) -> Self {
                let ($ga, $gb, $yes, $no) = (self.0, o.0, yes.0, no.0);
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($gt_select) }
            }
            #[inline(always)]
            unsafe fn round(self) -> Self {
                let $r = self.0;
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($round) }
            }
            #[inline(always)]
            unsafe fn pow2i(self) -> Self {
                let $x = self.0;
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($pow2i) }
            }
            #[inline(always)]
            unsafe fn abs(self) -> Self {
                let $av = self.0;
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($abs) }
            }
            #[inline(always)]
            unsafe fn with_sign_of(self, sign: Self) -> Self {
                let ($wv, $ws) = (self.0, sign.0);
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($with_sign_of) }
            }
            $(
            const FMA_BY_LANE: bool = true;
            #[inline(always)]
            unsafe fn fmadd_lane(self, a: Self, lane: usize, c: Self) -> Self {
                debug_assert!(lane < $n);
                let ($lb, $la, $ll, $lc) = (self.0, a.0, lane, c.0);
                // SAFETY: see the macro's SAFETY note.
                unsafe { $v($fmadd_lane) }
            }
            )?
            $(
            const MASKED: bool = true;
            #[inline(always)]
            unsafe fn load_first(p: *const $t, n: usize) -> Self {
                debug_assert!(n <= $n);
                let mask = ((1u64 << n) - 1) as $mask;
                // SAFETY: see the macro's SAFETY note; masked-off lanes
                // touch no memory.
                unsafe { $v($maskz_loadu(mask, p)) }
            }
            #[inline(always)]
            unsafe fn store_first(self, p: *mut $t, n: usize) {
                debug_assert!(n <= $n);
                let mask = ((1u64 << n) - 1) as $mask;
                // SAFETY: as above.
                unsafe { $mask_storeu(p, mask, self.0) }
            }
            )?
        }
    };
}
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(super) use vector_lanes;

/// Cephes `expf` minimax coefficients (relative error ≈ 1 ulp on the reduced range).
pub(super) const EXP_POLY_F32: &[f64] = &[
    1.987_569_150_0e-4,
    1.398_199_950_7e-3,
    8.333_451_907_3e-3,
    4.166_579_589_4e-2,
    1.666_666_545_9e-1,
    5.000_000_120_1e-1,
];
/// Taylor coefficients 1/13! … 1/2! (truncation error < 2⁻⁵⁶ on |r| ≤ ln2/2).
pub(super) const EXP_POLY_F64: &[f64] = &[
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];
pub(super) const EXP_RANGE_F32: (f64, f64) = (-87.33, 88.72);
pub(super) const EXP_RANGE_F64: (f64, f64) = (-708.39, 709.78);

impl_scalar_lanes!(f32, u32, 23, 127, EXP_POLY_F32, EXP_RANGE_F32);
impl_scalar_lanes!(f64, u64, 52, 1023, EXP_POLY_F64, EXP_RANGE_F64);

/// The portable "ISA": plain Rust on the scalars, one lane at a time.
#[derive(Clone, Copy, Debug)]
pub struct Portable;

// SAFETY: the scalar lanes need no target feature.
unsafe impl Simd for Portable {
    const ISA: Isa = Isa::Scalar;
    type F32 = f32;
    type F64 = f64;
    #[inline(always)]
    unsafe fn run<F: SimdFn>(f: F) -> F::Output {
        // SAFETY: the scalar lanes run on every CPU.
        unsafe { f.call::<Portable>() }
    }
}

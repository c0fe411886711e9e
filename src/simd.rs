//! One vocabulary of lane-wise operations for every ISA.
//!
//! [`Lanes`] is implemented by the scalars `f32`/`f64` (one lane, the
//! portable path) and, on x86-64, by the AVX2 vectors [`F32x8`]/[`F64x4`]
//! and the AVX-512 vectors [`F32x16`]/[`F64x8`].
//! Code written against it (the GEMM microkernel, the activation epilogue,
//! `exp`) exists once and is instantiated per ISA behind thin
//! `#[target_feature]` shims.

use crate::gemm::Element;

/// Lane-wise arithmetic on `LANES` values of `Elem`.
///
/// # Safety
/// Every method is `unsafe` because the vector implementations may only run
/// inside a function compiled with their target features (`avx2,fma` for
/// the 256-bit types, `avx512f` for the 512-bit ones); the
/// scalar implementations are safe to call anywhere. Pointer arguments must
/// be valid for `LANES` elements.
pub trait Lanes: Copy {
    type Elem: Element;
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
    /// x86 `max` semantics: `self > o ? self : o`, so NaN in either gives `o`.
    unsafe fn max(self, o: Self) -> Self;
    /// x86 `min` semantics: `self < o ? self : o`.
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
}

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

/// Cephes `expf` minimax coefficients (relative error ≈ 1 ulp on the reduced range).
const EXP_POLY_F32: &[f64] = &[
    1.987_569_150_0e-4,
    1.398_199_950_7e-3,
    8.333_451_907_3e-3,
    4.166_579_589_4e-2,
    1.666_666_545_9e-1,
    5.000_000_120_1e-1,
];
/// Taylor coefficients 1/13! … 1/2! (truncation error < 2⁻⁵⁶ on |r| ≤ ln2/2).
const EXP_POLY_F64: &[f64] = &[
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
const EXP_RANGE_F32: (f64, f64) = (-87.33, 88.72);
const EXP_RANGE_F64: (f64, f64) = (-708.39, 709.78);

impl_scalar_lanes!(f32, u32, 23, 127, EXP_POLY_F32, EXP_RANGE_F32);
impl_scalar_lanes!(f64, u64, 52, 1023, EXP_POLY_F64, EXP_RANGE_F64);

#[cfg(target_arch = "x86_64")]
pub use x86::{F32x8, F32x16, F64x4, F64x8};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use super::{EXP_POLY_F32, EXP_POLY_F64, EXP_RANGE_F32, EXP_RANGE_F64, Lanes};

    /// Eight f32 lanes in a ymm register (AVX2 + FMA).
    #[derive(Clone, Copy)]
    pub struct F32x8(__m256);
    /// Four f64 lanes in a ymm register (AVX2 + FMA).
    #[derive(Clone, Copy)]
    pub struct F64x4(__m256d);
    /// Sixteen f32 lanes in a zmm register (AVX-512F).
    #[derive(Clone, Copy)]
    pub struct F32x16(__m512);
    /// Eight f64 lanes in a zmm register (AVX-512F).
    #[derive(Clone, Copy)]
    pub struct F64x8(__m512d);

    /// One `Lanes` implementation per vector type: the operations that are a
    /// single intrinsic by name, the others (which differ in shape between
    /// AVX2 and AVX-512: masks instead of blends, integer instead of float
    /// bit operations) as expressions over the raw registers.
    macro_rules! vector_lanes {
        ($v:ident, $t:ty, $n:expr, $poly:expr, $range:expr,
         [$set1:ident, $loadu:ident, $storeu:ident, $add:ident, $sub:ident, $mul:ident,
          $div:ident, $fmadd:ident, $max:ident, $min:ident],
         gt_select: |$ga:ident, $gb:ident, $yes:ident, $no:ident| $gt_select:expr,
         round: |$r:ident| $round:expr,
         pow2i: |$x:ident| $pow2i:expr,
         abs: |$av:ident| $abs:expr,
         with_sign_of: |$wv:ident, $ws:ident| $with_sign_of:expr) => {
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
                    // SAFETY: see the macro's SAFETY note.
                    unsafe { $v($fmadd(self.0, b.0, c.0)) }
                }
                #[inline(always)]
                unsafe fn max(self, o: Self) -> Self {
                    // SAFETY: see the macro's SAFETY note.
                    unsafe { $v($max(self.0, o.0)) }
                }
                #[inline(always)]
                unsafe fn min(self, o: Self) -> Self {
                    // SAFETY: see the macro's SAFETY note.
                    unsafe { $v($min(self.0, o.0)) }
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
            }
        };
    }

    /// Round to nearest, ties to even, without raising exceptions.
    const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

    vector_lanes!(F32x8, f32, 8, EXP_POLY_F32, EXP_RANGE_F32,
    [_mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, _mm256_sub_ps,
     _mm256_mul_ps, _mm256_div_ps, _mm256_fmadd_ps, _mm256_max_ps, _mm256_min_ps],
    gt_select: |a, b, yes, no| _mm256_blendv_ps(no, yes, _mm256_cmp_ps::<_CMP_GT_OQ>(a, b)),
    round: |x| _mm256_round_ps::<NEAREST>(x),
    pow2i: |x| {
        let n = _mm256_cvtps_epi32(x);
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n, _mm256_set1_epi32(127))))
    },
    abs: |x| _mm256_andnot_ps(_mm256_set1_ps(-0.0), x),
    with_sign_of: |x, s| _mm256_or_ps(x, _mm256_and_ps(_mm256_set1_ps(-0.0), s)));

    vector_lanes!(F64x4, f64, 4, EXP_POLY_F64, EXP_RANGE_F64,
    [_mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_add_pd, _mm256_sub_pd,
     _mm256_mul_pd, _mm256_div_pd, _mm256_fmadd_pd, _mm256_max_pd, _mm256_min_pd],
    gt_select: |a, b, yes, no| _mm256_blendv_pd(no, yes, _mm256_cmp_pd::<_CMP_GT_OQ>(a, b)),
    round: |x| _mm256_round_pd::<NEAREST>(x),
    pow2i: |x| {
        let n = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(x));
        _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_add_epi64(n, _mm256_set1_epi64x(1023))))
    },
    abs: |x| _mm256_andnot_pd(_mm256_set1_pd(-0.0), x),
    with_sign_of: |x, s| _mm256_or_pd(x, _mm256_and_pd(_mm256_set1_pd(-0.0), s)));

    // AVX-512F alone has no float bit operations (those are AVX-512DQ), so
    // sign manipulation goes through the integer registers' view.
    vector_lanes!(F32x16, f32, 16, EXP_POLY_F32, EXP_RANGE_F32,
    [_mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_add_ps, _mm512_sub_ps,
     _mm512_mul_ps, _mm512_div_ps, _mm512_fmadd_ps, _mm512_max_ps, _mm512_min_ps],
    gt_select: |a, b, yes, no| _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b), no, yes),
    round: |x| _mm512_roundscale_ps::<NEAREST>(x),
    pow2i: |x| {
        let n = _mm512_cvtps_epi32(x);
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(n, _mm512_set1_epi32(127))))
    },
    abs: |x| _mm512_castsi512_ps(_mm512_and_si512(
        _mm512_castps_si512(x), _mm512_set1_epi32(i32::MAX))),
    with_sign_of: |x, s| _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(x),
        _mm512_and_si512(_mm512_castps_si512(s), _mm512_set1_epi32(i32::MIN)))));

    vector_lanes!(F64x8, f64, 8, EXP_POLY_F64, EXP_RANGE_F64,
    [_mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_add_pd, _mm512_sub_pd,
     _mm512_mul_pd, _mm512_div_pd, _mm512_fmadd_pd, _mm512_max_pd, _mm512_min_pd],
    gt_select: |a, b, yes, no| _mm512_mask_blend_pd(_mm512_cmp_pd_mask::<_CMP_GT_OQ>(a, b), no, yes),
    round: |x| _mm512_roundscale_pd::<NEAREST>(x),
    pow2i: |x| {
        // f64 → i64 conversion is AVX-512DQ; through i32 (the exponent fits) is F.
        let n = _mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(x));
        _mm512_castsi512_pd(_mm512_slli_epi64::<52>(_mm512_add_epi64(n, _mm512_set1_epi64(1023))))
    },
    abs: |x| _mm512_castsi512_pd(_mm512_and_si512(
        _mm512_castpd_si512(x), _mm512_set1_epi64(i64::MAX))),
    with_sign_of: |x, s| _mm512_castsi512_pd(_mm512_or_si512(
        _mm512_castpd_si512(x),
        _mm512_and_si512(_mm512_castpd_si512(s), _mm512_set1_epi64(i64::MIN)))));
}

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

/// `v ← eᵛ` for every value: [`exp`] four lanes at a time where AVX2 is
/// present (tail included, through a padded vector, so a value's result does
/// not depend on its position), `f64::exp` elsewhere.
pub(crate) fn exp_in_place(values: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::Isa::selected() >= crate::gemm::Isa::Avx2Fma {
        // SAFETY: AVX2 and FMA were detected (Isa::selected only returns
        // available ISAs, and every ISA from Avx2Fma up includes them).
        unsafe { exp_in_place_avx2(values) };
        return;
    }
    for v in values {
        *v = v.exp();
    }
}

/// The AVX2 body of [`exp_in_place`].
///
/// # Safety
/// The CPU supports AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_in_place_avx2(values: &mut [f64]) {
    let (chunks, tail) = values.as_chunks_mut::<4>();
    for chunk in chunks {
        // SAFETY: the chunk holds 4 values; AVX2 and FMA are enabled here.
        unsafe { exp::<F64x4>(F64x4::loadu(chunk.as_ptr())).storeu(chunk.as_mut_ptr()) };
    }
    if !tail.is_empty() {
        let mut pad = [0.0f64; 4];
        pad[..tail.len()].copy_from_slice(tail);
        // SAFETY: `pad` holds 4 values; AVX2 and FMA are enabled here.
        unsafe { exp::<F64x4>(F64x4::loadu(pad.as_ptr())).storeu(pad.as_mut_ptr()) };
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
/// eight at a time where AVX2 is present.
pub(crate) fn append_bytes_divided(src: &[u8], divisor: f32, out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::Isa::selected() >= crate::gemm::Isa::Avx2Fma {
        out.reserve(src.len());
        let spare = &mut out.spare_capacity_mut()[..src.len()];
        // SAFETY: AVX2 was detected (Isa::selected only returns available
        // ISAs, and every ISA from Avx2Fma up includes AVX2); `spare` has
        // room for src.len() values.
        unsafe { bytes_divided_avx2(src, divisor, spare) };
        let len = out.len() + src.len();
        // SAFETY: the first src.len() spare slots were all written above.
        unsafe { out.set_len(len) };
        return;
    }
    out.extend(src.iter().map(|&b| f32::from(b) / divisor));
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
    #[cfg(target_arch = "x86_64")]
    if crate::gemm::Isa::selected() >= crate::gemm::Isa::Avx2Fma {
        let slots: *mut [f32] = out;
        // SAFETY: MaybeUninit<f32> has f32's layout, and the body below only
        // stores initialized f32 values through it; AVX2 was detected (as in
        // append_bytes_divided) and the lengths match.
        unsafe {
            bytes_divided_avx2(
                src,
                divisor,
                &mut *(slots as *mut [core::mem::MaybeUninit<f32>]),
            )
        };
        return;
    }
    for (slot, &b) in out.iter_mut().zip(src) {
        *slot = f32::from(b) / divisor;
    }
}

/// The AVX2 body of [`append_bytes_divided`]: writes every slot of `out`.
///
/// # Safety
/// The CPU supports AVX2; `out.len() == src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bytes_divided_avx2(src: &[u8], divisor: f32, out: &mut [core::mem::MaybeUninit<f32>]) {
    use core::arch::x86_64::*;
    let d = _mm256_set1_ps(divisor);
    let (bytes, rest) = src.as_chunks::<8>();
    let (slots, rest_slots) = out.as_chunks_mut::<8>();
    for (b, slot) in bytes.iter().zip(slots) {
        // SAFETY: `b` holds 8 readable bytes and `slot` 8 writable f32; AVX2 is enabled.
        unsafe {
            let wide = _mm256_cvtepu8_epi32(_mm_loadl_epi64(b.as_ptr().cast()));
            let q = _mm256_div_ps(_mm256_cvtepi32_ps(wide), d);
            _mm256_storeu_ps(slot.as_mut_ptr().cast(), q);
        }
    }
    for (&b, slot) in rest.iter().zip(rest_slots) {
        slot.write(f32::from(b) / divisor);
    }
}

/// Asks the CPU to start pulling `data`'s cache lines into L1, so a later
/// pass over it does not wait on memory (a random row of a data set larger
/// than the caches is otherwise a few serial misses). Only a hint: it never
/// faults, whatever the address; a no-op off x86-64.
#[inline]
pub(crate) fn prefetch_read<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let bytes = core::mem::size_of_val(data);
        for offset in (0..bytes).step_by(64) {
            let line = data.as_ptr().cast::<i8>().wrapping_add(offset);
            // SAFETY: SSE is part of the x86-64 baseline, and a prefetch
            // never reads architecturally or faults; `line` is inside `data`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

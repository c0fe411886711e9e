//! The x86-64 vector ISAs: AVX2 + FMA (256-bit lanes) and AVX-512F
//! (512-bit lanes), their detection and their `Simd` shims.

use core::arch::x86_64::*;

use super::lanes::{EXP_POLY_F32, EXP_POLY_F64, EXP_RANGE_F32, EXP_RANGE_F64, vector_lanes};
use super::{Isa, Lanes, simd_isa};

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

/// Round to nearest, ties to even, without raising exceptions.
const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

vector_lanes!(F32x8, f32, 8, EXP_POLY_F32, EXP_RANGE_F32,
[_mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_add_ps, _mm256_sub_ps,
 _mm256_mul_ps, _mm256_div_ps],
fmadd: |a, b, c| _mm256_fmadd_ps(a, b, c),
max: |a, b| _mm256_max_ps(a, b),
min: |a, b| _mm256_min_ps(a, b),
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
 _mm256_mul_pd, _mm256_div_pd],
fmadd: |a, b, c| _mm256_fmadd_pd(a, b, c),
max: |a, b| _mm256_max_pd(a, b),
min: |a, b| _mm256_min_pd(a, b),
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
 _mm512_mul_ps, _mm512_div_ps],
fmadd: |a, b, c| _mm512_fmadd_ps(a, b, c),
max: |a, b| _mm512_max_ps(a, b),
min: |a, b| _mm512_min_ps(a, b),
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
    _mm512_and_si512(_mm512_castps_si512(s), _mm512_set1_epi32(i32::MIN)))),
masked: [__mmask16, _mm512_maskz_loadu_ps, _mm512_mask_storeu_ps]);

vector_lanes!(F64x8, f64, 8, EXP_POLY_F64, EXP_RANGE_F64,
[_mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_add_pd, _mm512_sub_pd,
 _mm512_mul_pd, _mm512_div_pd],
fmadd: |a, b, c| _mm512_fmadd_pd(a, b, c),
max: |a, b| _mm512_max_pd(a, b),
min: |a, b| _mm512_min_pd(a, b),
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
    _mm512_and_si512(_mm512_castpd_si512(s), _mm512_set1_epi64(i64::MIN)))),
masked: [__mmask8, _mm512_maskz_loadu_pd, _mm512_mask_storeu_pd]);

simd_isa!(
    /// AVX2 + FMA as a [`Simd`] type: 8 f32 or 4 f64 lanes.
    Avx2Fma: Isa::Avx2Fma, "avx2,fma", f32: F32x8, f64: F64x4
);
simd_isa!(
    /// AVX-512F (with AVX2 + FMA) as a [`Simd`] type: 16 f32 or 8 f64 lanes.
    Avx512: Isa::Avx512, "avx512f,avx2,fma", f32: F32x16, f64: F64x8
);

/// Whether the CPU has AVX2 and FMA.
pub(super) fn avx2_fma_detected() -> bool {
    // std caches the CPUID result, so this is a load and a test after the first call.
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Whether the CPU has AVX-512F.
pub(super) fn avx512_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

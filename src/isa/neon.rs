//! aarch64 Advanced SIMD (NEON): 128-bit lanes, part of every aarch64 CPU,
//! and its `Simd` shim.
//!
//! Two operations differ from the x86 instructions the [`Lanes`] contract
//! was first written for, and are built to keep its semantics: `fmla`
//! takes the accumulator first, and `fmax`/`fmin` return NaN when either
//! operand is NaN, where `max`/`min` must return the second operand; they
//! become a compare and a bit select. NEON alone has an FMA by vector
//! element ([`Lanes::fmadd_lane`]), which the GEMM kernel uses for A.

use core::arch::aarch64::*;

use super::lanes::{EXP_POLY_F32, EXP_POLY_F64, EXP_RANGE_F32, EXP_RANGE_F64, vector_lanes};
use super::{Isa, Lanes, simd_isa};

/// Four f32 lanes in a 128-bit NEON register.
#[derive(Clone, Copy)]
pub struct F32x4(float32x4_t);
/// Two f64 lanes in a 128-bit NEON register.
#[derive(Clone, Copy)]
pub struct F64x2(float64x2_t);

vector_lanes!(F32x4, f32, 4, EXP_POLY_F32, EXP_RANGE_F32,
[vdupq_n_f32, vld1q_f32, vst1q_f32, vaddq_f32, vsubq_f32, vmulq_f32, vdivq_f32],
fmadd: |a, b, c| vfmaq_f32(c, a, b),
max: |a, b| vbslq_f32(vcgtq_f32(a, b), a, b),
min: |a, b| vbslq_f32(vcltq_f32(a, b), a, b),
gt_select: |a, b, yes, no| vbslq_f32(vcgtq_f32(a, b), yes, no),
round: |x| vrndnq_f32(x),
pow2i: |x| vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(vcvtnq_s32_f32(x), vdupq_n_s32(127)))),
abs: |x| vabsq_f32(x),
with_sign_of: |x, s| vreinterpretq_f32_u32(vorrq_u32(
    vreinterpretq_u32_f32(x),
    vandq_u32(vreinterpretq_u32_f32(s), vdupq_n_u32(1 << 31)))),
// `lane` is a constant once the kernel's row loop is unrolled.
fmadd_lane: |b, a, lane, c| match lane {
    0 => vfmaq_laneq_f32::<0>(c, b, a),
    1 => vfmaq_laneq_f32::<1>(c, b, a),
    2 => vfmaq_laneq_f32::<2>(c, b, a),
    _ => vfmaq_laneq_f32::<3>(c, b, a),
});

vector_lanes!(F64x2, f64, 2, EXP_POLY_F64, EXP_RANGE_F64,
[vdupq_n_f64, vld1q_f64, vst1q_f64, vaddq_f64, vsubq_f64, vmulq_f64, vdivq_f64],
fmadd: |a, b, c| vfmaq_f64(c, a, b),
max: |a, b| vbslq_f64(vcgtq_f64(a, b), a, b),
min: |a, b| vbslq_f64(vcltq_f64(a, b), a, b),
gt_select: |a, b, yes, no| vbslq_f64(vcgtq_f64(a, b), yes, no),
round: |x| vrndnq_f64(x),
pow2i: |x| vreinterpretq_f64_s64(vshlq_n_s64::<52>(vaddq_s64(vcvtnq_s64_f64(x), vdupq_n_s64(1023)))),
abs: |x| vabsq_f64(x),
with_sign_of: |x, s| vreinterpretq_f64_u64(vorrq_u64(
    vreinterpretq_u64_f64(x),
    vandq_u64(vreinterpretq_u64_f64(s), vdupq_n_u64(1 << 63)))),
fmadd_lane: |b, a, lane, c| match lane {
    0 => vfmaq_laneq_f64::<0>(c, b, a),
    _ => vfmaq_laneq_f64::<1>(c, b, a),
});

simd_isa!(
    /// NEON as a [`Simd`](super::Simd) type: 4 f32 or 2 f64 lanes.
    Neon: Isa::Neon, "neon", f32: F32x4, f64: F64x2
);

/// Whether the CPU has NEON (every aarch64 Linux, macOS and Windows target
/// requires it; checked like the other ISAs so the rule has no exception).
pub(super) fn detected() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

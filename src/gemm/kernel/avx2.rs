//! AVX2 + FMA microkernels: one generic body, thin `#[target_feature]` shims.
//!
//! The tile is `6 × 2` vectors: 6×16 for f32 and 6×8 for f64 (BLIS's
//! Haswell shape). Twelve accumulators, two B vectors and one broadcast A
//! value use 15 of the 16 ymm registers; each k step issues 12 FMAs against
//! 8 loads, so the two FMA pipes, not the load ports, set the pace.

use core::arch::x86_64::*;

use super::Kernel;
use crate::gemm::dispatch::Isa;
use crate::gemm::element::Element;
use crate::simd::Lanes;

/// Register tile rows (broadcast A values per k step).
const MR: usize = 6;
/// Rows of A per packed block. 144 × 256 f32 = 144 KiB (72 × 256 f64 the
/// same), well inside a 512 KiB–1 MiB L2 with room for the streamed B sliver.
const MC_F32: usize = 144;
/// See [`MC_F32`].
const MC_F64: usize = 72;
/// Packed panel depth: a 6 × 256 A sliver (6 KiB) plus a 256 × 16 B sliver
/// (16 KiB) fit a 32 KiB L1 together.
const KC_F32: usize = 256;
/// Same byte footprint as [`KC_F32`] with 8-column f64 slivers.
const KC_F64: usize = 256;
/// Columns of B per packed panel: 256 × 4080 × 4 B ≈ 4 MiB stays in L3.
const NC: usize = 4080;

// SAFETY: `tile_6x16_f32` needs AVX2 and FMA; `Element::kernel` hands this
// value out only after `Isa::Avx2Fma.is_available()` returned true.
pub(crate) static F32: Kernel<f32> = unsafe {
    Kernel::new(
        Isa::Avx2Fma,
        [MR, 2 * 8],
        [MC_F32, KC_F32, NC],
        tile_6x16_f32,
    )
};
// SAFETY: as above, for `tile_6x8_f64`.
pub(crate) static F64: Kernel<f64> = unsafe {
    Kernel::new(
        Isa::Avx2Fma,
        [MR, 2 * 4],
        [MC_F64, KC_F64, NC],
        tile_6x8_f64,
    )
};

/// The kernel body shared by both element types: an `MR × 2·LANES` tile.
///
/// # Safety
/// Runs only under `avx2,fma`; the pointers satisfy the kernel contract.
#[inline(always)]
unsafe fn tile_body<V: Lanes>(
    k: usize,
    alpha: V::Elem,
    a: *const V::Elem,
    [ars, acs]: [isize; 2],
    b: *const V::Elem,
    beta: V::Elem,
    c: *mut V::Elem,
    rsc: isize,
) {
    let l = V::LANES;
    let nr = 2 * l;
    // SAFETY (whole body): the caller runs under avx2+fma and the pointers
    // satisfy the kernel contract: A[i, p] is at a + i·ars + p·acs, `b` holds k·NR values,
    // and C rows `c + i·rsc` hold NR writable values each.
    unsafe {
        // C is touched only after the k loop: start pulling its rows in now.
        for i in 0..MR {
            let row = c.offset(i as isize * rsc) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(nr * size_of::<V::Elem>() - 1));
        }
        let mut ab = [[V::splat(V::Elem::ZERO); 2]; MR];
        let rows: [*const V::Elem; MR] = core::array::from_fn(|i| a.offset(i as isize * ars));
        let mut b = b;
        let mut at = 0isize;
        for _ in 0..k {
            let b0 = V::loadu(b);
            let b1 = V::loadu(b.add(l));
            for (ab, row) in ab.iter_mut().zip(rows) {
                let ai = V::broadcast(row.offset(at));
                ab[0] = ai.fmadd(b0, ab[0]);
                ab[1] = ai.fmadd(b1, ab[1]);
            }
            at += acs;
            b = b.add(nr);
        }
        let alpha = V::splat(alpha);
        for (i, ab) in ab.iter().enumerate() {
            let row = c.offset(i as isize * rsc);
            for (v, &ab) in ab.iter().enumerate() {
                let p = row.add(v * l);
                let out = if beta == V::Elem::ZERO {
                    alpha.mul(ab)
                } else {
                    V::splat(beta).fmadd(V::loadu(p), alpha.mul(ab))
                };
                out.storeu(p);
            }
        }
    }
}

/// f32 shim: 6 × 16 tile.
///
/// # Safety
/// The CPU supports AVX2 and FMA; the pointers satisfy the kernel contract.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_6x16_f32(
    k: usize,
    alpha: f32,
    a: *const f32,
    a_strides: [isize; 2],
    b: *const f32,
    beta: f32,
    c: *mut f32,
    rsc: isize,
) {
    // SAFETY: forwarded contract; this function enables the features the body needs.
    unsafe { tile_body::<crate::simd::F32x8>(k, alpha, a, a_strides, b, beta, c, rsc) }
}

/// f64 shim: 6 × 8 tile.
///
/// # Safety
/// The CPU supports AVX2 and FMA; the pointers satisfy the kernel contract.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_6x8_f64(
    k: usize,
    alpha: f64,
    a: *const f64,
    a_strides: [isize; 2],
    b: *const f64,
    beta: f64,
    c: *mut f64,
    rsc: isize,
) {
    // SAFETY: forwarded contract; this function enables the features the body needs.
    unsafe { tile_body::<crate::simd::F64x4>(k, alpha, a, a_strides, b, beta, c, rsc) }
}

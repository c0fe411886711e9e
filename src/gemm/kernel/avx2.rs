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

/// One ymm register's worth of `Self`, with the few operations the kernel needs.
///
/// Every method is `#[inline(always)]` and must only run inside a function
/// compiled with `#[target_feature(enable = "avx2,fma")]`.
trait Avx2Vector: Element {
    type V: Copy;
    /// Elements per vector.
    const LANES: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: Self) -> Self::V;
    unsafe fn broadcast(p: *const Self) -> Self::V;
    unsafe fn loadu(p: *const Self) -> Self::V;
    unsafe fn storeu(p: *mut Self, v: Self::V);
    unsafe fn vmul(a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c` with one rounding.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
}

macro_rules! impl_avx2_vector {
    ($t:ty, $v:ty, $lanes:expr, $zero:ident, $set1:ident, $bcast:ident, $loadu:ident,
     $storeu:ident, $mul:ident, $fmadd:ident) => {
        impl Avx2Vector for $t {
            type V = $v;
            const LANES: usize = $lanes;
            #[inline(always)]
            unsafe fn zero() -> $v {
                // SAFETY: callers run under avx2+fma (trait contract).
                unsafe { $zero() }
            }
            #[inline(always)]
            unsafe fn splat(x: $t) -> $v {
                // SAFETY: as above.
                unsafe { $set1(x) }
            }
            #[inline(always)]
            unsafe fn broadcast(p: *const $t) -> $v {
                // SAFETY: as above; the caller guarantees `p` is readable.
                unsafe { $bcast(&*p) }
            }
            #[inline(always)]
            unsafe fn loadu(p: *const $t) -> $v {
                // SAFETY: as above; the caller guarantees LANES readable values at `p`.
                unsafe { $loadu(p) }
            }
            #[inline(always)]
            unsafe fn storeu(p: *mut $t, v: $v) {
                // SAFETY: as above; the caller guarantees LANES writable values at `p`.
                unsafe { $storeu(p, v) }
            }
            #[inline(always)]
            unsafe fn vmul(a: $v, b: $v) -> $v {
                // SAFETY: callers run under avx2+fma (trait contract).
                unsafe { $mul(a, b) }
            }
            #[inline(always)]
            unsafe fn fmadd(a: $v, b: $v, c: $v) -> $v {
                // SAFETY: callers run under avx2+fma (trait contract).
                unsafe { $fmadd(a, b, c) }
            }
        }
    };
}

impl_avx2_vector!(
    f32,
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_broadcast_ss,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_mul_ps,
    _mm256_fmadd_ps
);
impl_avx2_vector!(
    f64,
    __m256d,
    4,
    _mm256_setzero_pd,
    _mm256_set1_pd,
    _mm256_broadcast_sd,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_mul_pd,
    _mm256_fmadd_pd
);

/// The kernel body shared by both element types: an `MR × 2·LANES` tile.
///
/// # Safety
/// Runs only under `avx2,fma`; the pointers satisfy the kernel contract.
#[inline(always)]
unsafe fn tile_body<T: Avx2Vector>(
    k: usize,
    alpha: T,
    a: *const T,
    [ars, acs]: [isize; 2],
    b: *const T,
    beta: T,
    c: *mut T,
    rsc: isize,
) {
    let l = T::LANES;
    let nr = 2 * l;
    // SAFETY (whole body): the caller runs under avx2+fma and the pointers
    // satisfy the kernel contract: A[i, p] is at a + i·ars + p·acs, `b` holds k·NR values,
    // and C rows `c + i·rsc` hold NR writable values each.
    unsafe {
        // C is touched only after the k loop: start pulling its rows in now.
        for i in 0..MR {
            let row = c.offset(i as isize * rsc) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(nr * size_of::<T>() - 1));
        }
        let mut ab = [[T::zero(); 2]; MR];
        let rows: [*const T; MR] = core::array::from_fn(|i| a.offset(i as isize * ars));
        let mut b = b;
        let mut at = 0isize;
        for _ in 0..k {
            let b0 = T::loadu(b);
            let b1 = T::loadu(b.add(l));
            for (ab, row) in ab.iter_mut().zip(rows) {
                let ai = T::broadcast(row.offset(at));
                ab[0] = T::fmadd(ai, b0, ab[0]);
                ab[1] = T::fmadd(ai, b1, ab[1]);
            }
            at += acs;
            b = b.add(nr);
        }
        let alpha = T::splat(alpha);
        for (i, ab) in ab.iter().enumerate() {
            let row = c.offset(i as isize * rsc);
            for (v, &ab) in ab.iter().enumerate() {
                let p = row.add(v * l);
                let out = if beta == T::ZERO {
                    T::vmul(alpha, ab)
                } else {
                    T::fmadd(T::splat(beta), T::loadu(p), T::vmul(alpha, ab))
                };
                T::storeu(p, out);
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
    unsafe { tile_body(k, alpha, a, a_strides, b, beta, c, rsc) }
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
    unsafe { tile_body(k, alpha, a, a_strides, b, beta, c, rsc) }
}

//! AVX2 + FMA microkernels: one generic `#[target_feature]` body,
//! instantiated per element type and row count.
//!
//! The full tile is `6 × 2` vectors: 6×16 for f32 and 6×8 for f64 (BLIS's
//! Haswell shape). Twelve accumulators, two B vectors and one broadcast A
//! value use 15 of the 16 ymm registers; each k step issues 12 FMAs against
//! 8 loads, so the two FMA pipes, not the load ports, set the pace.

use core::arch::x86_64::*;

use super::{Kernel, TileEpilogue, TileFn};
use crate::gemm::dispatch::Isa;
use crate::gemm::element::Element;
use crate::simd::Lanes;
use crate::simd::{F32x8, F64x4};

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

// SAFETY: the tiles need AVX2 and FMA; `Element::kernel` hands this value
// out only after `Isa::Avx2Fma.is_available()` returned true.
pub(crate) static F32: Kernel<f32> = unsafe {
    Kernel::new(
        Isa::Avx2Fma,
        [MR, 2 * 8],
        [MC_F32, KC_F32, NC],
        &tiles_by_rows!(F32x8),
    )
};
// SAFETY: as above.
pub(crate) static F64: Kernel<f64> = unsafe {
    Kernel::new(
        Isa::Avx2Fma,
        [MR, 2 * 4],
        [MC_F64, KC_F64, NC],
        &tiles_by_rows!(F64x4),
    )
};

/// The tile functions for 1 ..= MR rows.
macro_rules! tiles_by_rows {
    ($v:ty) => {
        [
            tile::<$v, 1> as TileFn<<$v as Lanes>::Elem>,
            tile::<$v, 2>,
            tile::<$v, 3>,
            tile::<$v, 4>,
            tile::<$v, 5>,
            tile::<$v, 6>,
        ]
    };
}
use tiles_by_rows;

/// A `ROWS × 2·LANES` tile (ROWS ≤ 6): 6×16 for f32 and 6×8 for f64 when
/// full. Fewer rows serve the last sliver of a block, so no FMA is spent on
/// padding rows.
///
/// # Safety
/// The CPU supports AVX2 and FMA; the pointers satisfy the kernel contract.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<V: Lanes, const ROWS: usize>(
    k: usize,
    alpha: V::Elem,
    a: *const V::Elem,
    [ars, acs]: [isize; 2],
    b: *const V::Elem,
    bs: isize,
    beta: V::Elem,
    c: *mut V::Elem,
    rsc: isize,
    epilogue: Option<&TileEpilogue<V::Elem>>,
) {
    let l = V::LANES;
    let nr = 2 * l;
    // SAFETY (whole body): this function runs under avx2+fma and the pointers
    // satisfy the kernel contract: A[i, p] is at a + i·ars + p·acs for
    // i < ROWS, B[p, j] at b + p·bs + j for j < NR, C rows `c + i·rsc` hold NR
    // writable values each, and an epilogue bias holds NR (or ROWS) values.
    unsafe {
        // C is touched only after the k loop: start pulling its rows in now.
        for i in 0..ROWS {
            let row = c.offset(i as isize * rsc) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(nr * size_of::<V::Elem>() - 1));
        }
        let mut ab = [[V::splat(V::Elem::ZERO); 2]; ROWS];
        let rows: [*const V::Elem; ROWS] = core::array::from_fn(|i| a.offset(i as isize * ars));
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
            b = b.offset(bs);
        }
        let alpha = V::splat(alpha);
        for (i, ab) in ab.iter().enumerate() {
            let row = c.offset(i as isize * rsc);
            for (v, &ab) in ab.iter().enumerate() {
                let p = row.add(v * l);
                let mut out = if beta == V::Elem::ZERO {
                    alpha.mul(ab)
                } else {
                    V::splat(beta).fmadd(V::loadu(p), alpha.mul(ab))
                };
                if let Some(e) = epilogue {
                    if !e.bias.is_null() {
                        let bias = if e.bias_per_row {
                            V::broadcast(e.bias.add(i))
                        } else {
                            V::loadu(e.bias.add(v * l))
                        };
                        out = out.add(bias);
                    }
                    out = e.act.apply_lanes(out);
                }
                out.storeu(p);
            }
        }
    }
}

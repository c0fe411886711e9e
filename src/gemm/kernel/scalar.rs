//! Portable microkernel: plain Rust, no intrinsics, runs on every target.
//!
//! Multiplies and adds are separate operations (no fused multiply-add), so
//! the code stays fast on CPUs without FMA, where `mul_add` is a libm call.

use super::{KSteps, Kernel, TileEpilogue, TileFn};
use crate::isa::Element;
use crate::isa::Isa;

/// Register tile rows for the portable kernel.
const MR: usize = 4;
/// Register tile columns for the portable kernel (one 128-bit vector of f32
/// when the compiler vectorizes the inner loop).
const NR: usize = 4;
/// Rows of A per packed block: `MC × KC` elements stay in a 256 KiB L2.
const MC: usize = 64;
/// Packed panel depth: an `MR × KC` plus a `KC × NR` sliver stay in L1.
const KC: usize = 256;
/// Columns of B per packed panel.
const NC: usize = 4096;

/// Columns of the one-row kernel: 16 independent sums rather than the full
/// tile's 4, which a single row would wait on.
const ONE_ROW_NR: usize = 16;

// SAFETY: the portable kernel runs on every CPU.
pub(crate) static F32: Kernel<f32> = unsafe {
    Kernel::new(Isa::Scalar, [MR, NR], [MC, KC, NC], &tiles_by_rows::<f32>())
        .with_one_row(&F32_ONE_ROW)
};
// SAFETY: as above.
pub(crate) static F64: Kernel<f64> = unsafe {
    Kernel::new(Isa::Scalar, [MR, NR], [MC, KC, NC], &tiles_by_rows::<f64>())
        .with_one_row(&F64_ONE_ROW)
};
// SAFETY: as above.
static F32_ONE_ROW: Kernel<f32> = unsafe { one_row_kernel::<f32>() };
// SAFETY: as above.
static F64_ONE_ROW: Kernel<f64> = unsafe { one_row_kernel::<f64>() };

/// The tile functions for 1 ..= MR rows.
const fn tiles_by_rows<T: Element>() -> [TileFn<T>; MR] {
    [
        tile::<T, 1, NR>,
        tile::<T, 2, NR>,
        tile::<T, 3, NR>,
        tile::<T, 4, NR>,
    ]
}

/// The `1 × 16` kernel for products of one row, at the full kernel's KC.
///
/// # Safety
/// Always sound: the portable tiles run on every CPU.
const unsafe fn one_row_kernel<T: Element>() -> Kernel<T> {
    // SAFETY: as for the full kernel.
    unsafe {
        Kernel::new(
            Isa::Scalar,
            [1, ONE_ROW_NR],
            [1, KC, NC],
            &[tile::<T, 1, ONE_ROW_NR>],
        )
    }
}

/// `C[0..ROWS, 0..NR] := β·C + α·A·B` (ROWS ≤ MR; NR = 4, or 16 for the
/// one-row kernel); see the module contract.
///
/// # Safety
/// The kernel contract in [`super`]: `a` holds `k·MR` and `b` holds `k·NR`
/// readable values, and `c + i·rsc + j` is valid for `i < MR`, `j < NR`.
unsafe fn tile<T: Element, const ROWS: usize, const NR: usize>(
    steps: KSteps<'_>,
    alpha: T,
    a: *const T,
    [ars, acs]: [isize; 2],
    b: *const T,
    bs: isize,
    beta: T,
    c: *mut T,
    rsc: isize,
    epilogue: Option<&TileEpilogue<T>>,
    cols: usize,
) {
    debug_assert_eq!(cols, NR, "the portable kernel has no edge tiles");
    let mut ab = [[T::ZERO; NR]; ROWS];
    let (k, listed) = match steps {
        KSteps::All(k) => (k, None),
        KSteps::Listed(listed) => (listed.len(), Some(listed)),
    };
    for t in 0..k {
        let p = listed.map_or(t, |listed| usize::from(listed[t]));
        // SAFETY: the contract guarantees NR readable values at b + p·bs.
        let b = unsafe { core::slice::from_raw_parts(b.offset(p as isize * bs), NR) };
        // SAFETY: A[i, t] is readable at a + i·ars + t·acs for i < ROWS, t < k.
        let a: [T; ROWS] =
            core::array::from_fn(|i| unsafe { *a.offset(i as isize * ars + t as isize * acs) });
        for i in 0..ROWS {
            for j in 0..NR {
                ab[i][j] = ab[i][j] + a[i] * b[j];
            }
        }
    }
    for (i, ab) in ab.iter().enumerate() {
        // SAFETY: row i of the tile is NR contiguous valid elements at c + i·rsc.
        let row = unsafe { core::slice::from_raw_parts_mut(c.offset(i as isize * rsc), NR) };
        for (j, (c, &ab)) in row.iter_mut().zip(ab).enumerate() {
            let mut out = if beta == T::ZERO {
                alpha * ab
            } else {
                alpha * ab + beta * *c
            };
            if let Some(e) = epilogue {
                if !e.bias.is_null() {
                    // SAFETY: an epilogue bias holds NR (per column) or ROWS (per row) values.
                    out = out + unsafe { *e.bias.add(if e.bias_per_row { i } else { j }) };
                }
                // SAFETY: the scalar Lanes implementation runs on every CPU.
                out = unsafe { e.act.apply_lanes(out) };
            }
            *c = out;
        }
    }
}

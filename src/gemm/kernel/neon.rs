//! NEON microkernels: the shared tile body compiled for aarch64 Advanced
//! SIMD, instantiated per element type and row count.
//!
//! The full tile is `8 × 3` vectors: 8×12 for f32 and 8×6 for f64 (the
//! shape of BLIS's and OpenBLAS's armv8 kernels). Twenty-four accumulators,
//! three B vectors and two A vectors (the packed A column, 8 values) use 29
//! of the 32 registers. Each k step issues 24 `fmla` by vector element
//! ([`Lanes::fmadd_lane`](crate::isa::Lanes::fmadd_lane)) against 5 loads,
//! so the FMA pipes alone set the pace (`benches/neon_mca.py`). Broadcasting
//! each A value instead (`ld1r`, as the x86 kernels do) takes a vector pipe
//! from the FMAs; the other shapes that fit 32 registers need more A loads
//! per FMA (12×8) or have fewer accumulators (4×20). See `docs/design.md`.
//!
//! Products of one row run on a 1 × 16 vector kernel (see
//! [`ONE_ROW_VECTORS`]).

use super::vector::{one_row_kernel, tiles_by_rows, vector_tile_fn};
use super::{KSteps, Kernel, TileEpilogue, TileFn};
use crate::isa::{F32x4, F64x2, Isa, Lanes};

/// Register tile rows (broadcast A values per k step).
const MR: usize = 8;
/// B vectors per k step (3 × 4 f32 = 12 columns, 3 × 2 f64 = 6).
const NV: usize = 3;
/// Rows of A per packed block: 128 × 256 f32 = 128 KiB (64 rows of f64,
/// the same bytes), inside the 1 MiB L2 of a Neoverse core or the shared
/// L2 of an Apple cluster, next to the B sliver being streamed.
const MC_F32: usize = 128;
/// See [`MC_F32`].
const MC_F64: usize = 64;
/// Packed panel depth: an 8 × 256 A sliver (8 KiB) and a 256 × 12 B sliver
/// (12 KiB) fit a 64 KiB L1 (Neoverse N1/V1; Apple's is 128 KiB) with room
/// for the C tile. f64 slivers are half as wide, so the same depth holds.
const KC: usize = 256;
/// Columns of B per packed panel (a multiple of 12 and of 6): 256 × 4080 ×
/// 4 B ≈ 4 MiB, inside a Graviton or Apple last-level cache.
const NC: usize = 4080;

// SAFETY: the tiles need NEON; `kernel::lookup` hands this value out only
// after `Isa::Neon.is_available()` returned true.
pub(crate) static F32: Kernel<f32> = unsafe {
    Kernel::new(
        Isa::Neon,
        [MR, NV * 4],
        [MC_F32, KC, NC],
        &tiles_by_rows!(tile::<F32x4, NV>, [1, 2, 3, 4, 5, 6, 7, 8]),
    )
    .with_one_row(&F32_ONE_ROW)
};
// SAFETY: as above.
pub(crate) static F64: Kernel<f64> = unsafe {
    Kernel::new(
        Isa::Neon,
        [MR, NV * 2],
        [MC_F64, KC, NC],
        &tiles_by_rows!(tile::<F64x2, NV>, [1, 2, 3, 4, 5, 6, 7, 8]),
    )
    .with_one_row(&F64_ONE_ROW)
};

/// Vectors of the one-row kernel, `1 × 16` vectors (64 f32, 32 f64):
/// sixteen independent accumulators where a single row of the full tile
/// has three, enough to cover four FMA pipes of 4-cycle latency; with one
/// broadcast and one B vector at a time, 18 of the 32 registers.
const ONE_ROW_VECTORS: usize = 16;

// SAFETY: as above (handed out through its full twin).
static F32_ONE_ROW: Kernel<f32> =
    unsafe { one_row_kernel!(Isa::Neon, tile::<F32x4, ONE_ROW_VECTORS>, KC, 4096) };
// SAFETY: as above.
static F64_ONE_ROW: Kernel<f64> =
    unsafe { one_row_kernel!(Isa::Neon, tile::<F64x2, ONE_ROW_VECTORS>, KC, 4096) };

vector_tile_fn!("neon");

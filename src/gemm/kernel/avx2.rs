//! AVX2 + FMA microkernels: the shared tile body compiled for AVX2 + FMA,
//! instantiated per element type and row count.
//!
//! The full tile is `6 × 2` vectors: 6×16 for f32 and 6×8 for f64 (BLIS's
//! Haswell shape). Twelve accumulators, two B vectors and one broadcast A
//! value use 15 of the 16 ymm registers; each k step issues 12 FMAs against
//! 8 loads, so the two FMA pipes, not the load ports, set the pace.

use super::vector::{one_row_kernel, tiles_by_rows, vector_tile_fn};
use super::{KSteps, Kernel, TileEpilogue, TileFn};
use crate::isa::{F32x8, F64x4};
use crate::isa::{Isa, Lanes};

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

// SAFETY: the tiles need AVX2 and FMA; `kernel::lookup` hands this value
// out only after `Isa::Avx2Fma.is_available()` returned true.
pub(crate) static F32: Kernel<f32> = unsafe {
    Kernel::new(
        Isa::Avx2Fma,
        [MR, 2 * 8],
        [MC_F32, KC_F32, NC],
        &tiles_by_rows!(tile::<F32x8, 2>, [1, 2, 3, 4, 5, 6]),
    )
    .with_one_row(&F32_ONE_ROW)
};
// SAFETY: as above.
pub(crate) static F64: Kernel<f64> = unsafe {
    Kernel::new(
        Isa::Avx2Fma,
        [MR, 2 * 4],
        [MC_F64, KC_F64, NC],
        &tiles_by_rows!(tile::<F64x4, 2>, [1, 2, 3, 4, 5, 6]),
    )
    .with_one_row(&F64_ONE_ROW)
};

/// Vectors of the one-row kernel, `1 × 12` vectors (96 f32, 48 f64):
/// twelve independent accumulators where a single row of the full tile
/// has two; with one broadcast and B as memory operands, 13 of the 16 ymm
/// registers.
const ONE_ROW_VECTORS: usize = 12;

// SAFETY: as above.
static F32_ONE_ROW: Kernel<f32> = unsafe {
    one_row_kernel!(
        Isa::Avx2Fma,
        tile::<F32x8, ONE_ROW_VECTORS>,
        KC_F32,
        96 * 42
    )
};
// SAFETY: as above.
static F64_ONE_ROW: Kernel<f64> = unsafe {
    one_row_kernel!(
        Isa::Avx2Fma,
        tile::<F64x4, ONE_ROW_VECTORS>,
        KC_F64,
        96 * 42
    )
};
vector_tile_fn!("avx2,fma");

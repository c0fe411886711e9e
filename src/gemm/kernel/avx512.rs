//! AVX-512 microkernels: the shared tile body compiled for AVX-512F,
//! instantiated per element type and row count.
//!
//! The full tile is `12 × 2` vectors: 12×32 for f32 and 12×16 for f64.
//! Twenty-four accumulators and two B vectors use 26 of the 32 zmm
//! registers (the A broadcasts fold into the FMAs as memory operands); each
//! k step issues 24 FMAs against 14 loads, so the FMA units set the pace
//! with half the load traffic per flop of the AVX2 tile, and a tile has
//! four times the work to amortize its C traffic over.
//!
//! With 24 FMAs per two B loads the tile hides B rows streaming from L2 at
//! any stride, so a row-contiguous B is read in place whatever the number
//! of rows, and up to [`ALIASED_B_IN_PLACE_MAX_ROWS`] rows even
//! when B's rows are a multiple of 4 KiB apart.
//!
//! Products of one row (a single sample's forward pass) run on a 1 × 16
//! vector kernel instead (see [`ONE_ROW_VECTORS`]).
//!
//! Products with few columns (an output layer's n = 10) would waste most of
//! a 32-wide tile, so each kernel carries a one-vector-wide twin (12×16 for
//! f32, 12×8 for f64) that the driver picks by its cost model. Shallow f32
//! products (an output layer's `k = 10` input gradient, a first layer's
//! weight gradient at batch 32) are offered a four-row, four-vector twin,
//! 4×64, whose fixed cost per tile is much the smaller (see
//! [`SHALLOW_MAX_DEPTH`]).

use super::vector::{one_row_kernel, tiles_by_rows, vector_tile_fn};
use super::{KSteps, Kernel, TileEpilogue, TileFn};
use crate::isa::{F32x16, F64x8};
use crate::isa::{Isa, Lanes};

/// Rows of A per packed block: 48 × 1024 f32 = 192 KiB (f64: 384 KiB),
/// inside a 1 MiB L2 next to the B sliver being streamed. Small blocks keep
/// the A slivers hot while every B sliver of the panel passes by.
const MC_F32: usize = 48;
/// See [`MC_F32`].
const MC_F64: usize = 48;
/// Packed panel depth. Deep, unlike BLIS's L1-sized choice: at 24 FMAs per
/// 2 B loads the kernel keeps pace with B slivers streaming from L2 (or L3),
/// so the depth is chosen to cut the passes over C instead: every MLP
/// product (k ≤ 1024) runs as one panel and stores its C tiles once.
const KC_F32: usize = 1024;
/// Same depth as [`KC_F32`] (each k step reads 128 bytes of B either way).
const KC_F64: usize = 1024;
/// Columns of B per packed panel (a multiple of both NRs). A full
/// 1024 × 4064 f32 panel is 16 MiB, half the 32 MiB L3; the B slivers
/// stream from there at 128 bytes per 24 FMAs.
const NC: usize = 4064;

/// Products with at most this many rows read B in place even when its rows
/// are a multiple of 4 KiB apart (a 1024-wide f32 matrix). Each tile then
/// streams its B sliver from L2 again, but with few rows of A a packed B
/// value would feed only a few tiles and the pass over B costs more. With
/// more rows the in-place speed hangs on where B's pages land in the L2 (its
/// rows all map to the same L1 sets), so B is packed; see `docs/design.md`.
const ALIASED_B_IN_PLACE_MAX_ROWS: usize = 64;

/// The AVX-512 kernel on lane type `$v`, `$nv` vectors wide, with a tile
/// for each row count in `[$rows]` (1 to MR; 1 to 12 unless given) and
/// `MC × KC × NC` blocking: B read in place whenever it has contiguous rows
/// (aliasing ones for few rows of A), and tiles narrower than the kernel
/// (an n = 10 output layer) computed in place with masked loads and stores.
macro_rules! avx512_kernel {
    ($v:ty, $nv:literal, [$($rows:literal),*], $mc:expr, $kc:expr, $nc:expr) => {
        Kernel::new(
            Isa::Avx512,
            [[$($rows),*].len(), $nv * <$v as Lanes>::LANES],
            [$mc, $kc, $nc],
            &tiles_by_rows!(tile::<$v, $nv>, [$($rows),*]),
        )
        .reading_b_in_place_up_to(usize::MAX, ALIASED_B_IN_PLACE_MAX_ROWS)
        .with_edge_tiles(&tiles_by_rows!(tile::<$v, $nv>, [$($rows),*], masked edges))
    };
    ($v:ty, $nv:literal, $mc:expr, $kc:expr) => {
        avx512_kernel!($v, $nv, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], $mc, $kc, NC)
    };
}

/// Products at most this deep are offered the shallow f32 twin, `4 × 64`
/// (four vectors wide, 16 accumulators). At small k a tile's fixed costs
/// (its C stores, the start and end of its k loop) weigh on every FMA, and
/// the 12-row tile's are several times those of the 4-row one. Up to
/// k = 128 the 4-row tile is level or ahead on every shape measured (64³
/// most, where B stays in L1); deeper, the full tile's better reuse of B
/// wins on some large shapes and loses on others (`docs/design.md`).
const SHALLOW_MAX_DEPTH: usize = 128;

/// Columns of B per packed panel of the shallow twin (a multiple of 64).
const NC_SHALLOW: usize = 4032;

/// Vectors of the one-row kernel, `1 × 16` vectors (256 f32, 128 f64):
/// sixteen independent accumulators cover the FMA latency that a single row
/// of the full tile (two accumulators) waits on, and each k step reads a
/// whole 1 KiB row of a 256-wide B, so B streams from L2 front to back (at
/// about 50 bytes a cycle here; tiles of half rows, 1 KiB apart, got 35).
const ONE_ROW_VECTORS: usize = 16;

// SAFETY: the tiles need AVX-512F (plus AVX2/FMA, implied by
// `Isa::Avx512`); `kernel::lookup` hands these out (the narrow ones through
// their wide twin) only after `Isa::Avx512.is_available()` returned true.
pub(crate) static F32: Kernel<f32> = unsafe {
    avx512_kernel!(F32x16, 2, MC_F32, KC_F32)
        .with_narrow(&F32_NARROW)
        .with_shallow(&F32_SHALLOW, SHALLOW_MAX_DEPTH)
        .with_one_row(&F32_ONE_ROW)
};
// SAFETY: as above.
static F32_SHALLOW: Kernel<f32> =
    unsafe { avx512_kernel!(F32x16, 4, [1, 2, 3, 4], MC_F32, KC_F32, NC_SHALLOW) };
// SAFETY: as above (handed out through its full twin).
static F32_ONE_ROW: Kernel<f32> =
    unsafe { one_row_kernel!(Isa::Avx512, tile::<F32x16, ONE_ROW_VECTORS>, KC_F32, 4096) };
// SAFETY: as above.
static F32_NARROW: Kernel<f32> = unsafe { avx512_kernel!(F32x16, 1, MC_F32, KC_F32) };
// SAFETY: as above.
pub(crate) static F64: Kernel<f64> = unsafe {
    avx512_kernel!(F64x8, 2, MC_F64, KC_F64)
        .with_narrow(&F64_NARROW)
        .with_one_row(&F64_ONE_ROW)
};
// SAFETY: as above.
static F64_ONE_ROW: Kernel<f64> =
    unsafe { one_row_kernel!(Isa::Avx512, tile::<F64x8, ONE_ROW_VECTORS>, KC_F64, 4096) };
// SAFETY: as above.
static F64_NARROW: Kernel<f64> = unsafe { avx512_kernel!(F64x8, 1, MC_F64, KC_F64) };

vector_tile_fn!("avx512f,avx2,fma");

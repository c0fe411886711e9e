//! The register-tile body shared by the vector kernels (AVX2, AVX-512,
//! NEON), written once against [`Lanes`] and compiled per ISA by the thin
//! `#[target_feature]` shim that [`vector_tile_fn!`] declares in each ISA's
//! kernel file.

use super::{KSteps, TileEpilogue};
use crate::isa::{Element, Lanes};

/// Declares `tile::<V, NV, ROWS, EDGE>`, the [`TileFn`](super::TileFn): a
/// `ROWS × NV·LANES` tile whose body is [`tile_body`], compiled with the
/// target features `$features` (those of lane type `V`'s ISA). With `EDGE`
/// (only for lanes with masked loads and stores, [`Lanes::MASKED`]) it
/// touches just the first `cols` columns of B and C.
macro_rules! vector_tile_fn {
    ($features:literal) => {
        /// A `ROWS × NV·LANES` tile (its first `cols` columns with `EDGE`):
        /// [`tile_body`](super::vector::tile_body) compiled for this file's ISA.
        ///
        /// # Safety
        /// The CPU supports this file's ISA, `V` is one of its lane types,
        /// and the pointers satisfy the kernel contract.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn tile<V: Lanes, const NV: usize, const ROWS: usize, const EDGE: bool>(
            steps: KSteps<'_>,
            alpha: V::Elem,
            a: *const V::Elem,
            a_strides: [isize; 2],
            b: *const V::Elem,
            bs: isize,
            beta: V::Elem,
            c: *mut V::Elem,
            rsc: isize,
            epilogue: Option<&TileEpilogue<V::Elem>>,
            cols: usize,
        ) {
            // SAFETY: the ISA's features are enabled here; the pointer
            // contract is forwarded.
            unsafe {
                super::vector::tile_body::<V, NV, ROWS, EDGE>(
                    steps, alpha, a, a_strides, b, bs, beta, c, rsc, epilogue, cols,
                )
            }
        }
    };
}
pub(crate) use vector_tile_fn;

/// The tile functions `shim::<V, NV, r, false>` for each listed row count
/// `r`, in order: entry `r − 1` computes an `r`-row tile `NV` vectors wide;
/// with `masked edges`, their edge twins `shim::<V, NV, r, true>` (see
/// [`Kernel::with_edge_tiles`](super::Kernel::with_edge_tiles)).
macro_rules! tiles_by_rows {
    ($shim:ident::<$v:ty, $nv:tt>, [$($rows:literal),*]) => {
        tiles_by_rows!(@ $shim, $v, $nv, false, [$($rows),*])
    };
    ($shim:ident::<$v:ty, $nv:tt>, [$($rows:literal),*], masked edges) => {
        tiles_by_rows!(@ $shim, $v, $nv, true, [$($rows),*])
    };
    (@ $shim:ident, $v:ty, $nv:tt, $edge:literal, [$($rows:literal),*]) => {
        [$($shim::<$v, { $nv }, $rows, $edge> as TileFn<<$v as Lanes>::Elem>),*]
    };
}
pub(crate) use tiles_by_rows;

/// The one-row kernel of a vector ISA (see [`Kernel::one_row`](super::Kernel::one_row)):
/// `shim::<V, NV, 1>`, a `1 × NV·LANES` tile, with the KC of the full
/// kernel it serves.
macro_rules! one_row_kernel {
    ($isa:expr, $shim:ident::<$v:ty, $nv:tt>, $kc:expr, $nc:expr) => {
        Kernel::new(
            $isa,
            [1, $nv * <$v as Lanes>::LANES],
            [1, $kc, $nc],
            &tiles_by_rows!($shim::<$v, $nv>, [1]),
        )
    };
}
pub(crate) use one_row_kernel;

/// A `ROWS × NV·LANES` tile: `ROWS` broadcast A values against `NV` B
/// vectors per k step, `NV·ROWS` accumulators. Fewer rows than MR serve the
/// last sliver of a block, so no FMA is spent on padding rows. With `EDGE`,
/// only the first `cols` columns of B and C (and of a column bias) are
/// touched, through [`Lanes::load_first`] and [`Lanes::store_first`];
/// otherwise `cols` is the full width.
///
/// # Safety
/// Runs inside a function compiled with `V`'s target features; the pointers
/// satisfy the kernel contract (for `cols` columns with `EDGE`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile_body<V: Lanes, const NV: usize, const ROWS: usize, const EDGE: bool>(
    steps: KSteps<'_>,
    alpha: V::Elem,
    a: *const V::Elem,
    [ars, acs]: [isize; 2],
    b: *const V::Elem,
    bs: isize,
    beta: V::Elem,
    c: *mut V::Elem,
    rsc: isize,
    epilogue: Option<&TileEpilogue<V::Elem>>,
    cols: usize,
) {
    let l = V::LANES;
    debug_assert!(cols <= NV * l && (EDGE || cols == NV * l));
    // Edge tiles only where a vector's first lanes are one masked access.
    debug_assert!(!EDGE || V::MASKED);
    // Lanes of each vector inside the tile's columns (all of them unless EDGE).
    let mut counts = [l; NV];
    for (v, count) in counts.iter_mut().enumerate() {
        *count = cols.saturating_sub(v * l).min(l);
    }
    // SAFETY (whole body): this runs under V's target features and the pointers
    // satisfy the kernel contract: A[i, p] is at a + i·ars + p·acs for
    // i < ROWS, B[p, j] at b + p·bs + j for j < cols, C rows `c + i·rsc` hold
    // `cols` writable values each, and an epilogue bias holds `cols` (or
    // ROWS) values. Vectors past `cols` are addressed with wrapping
    // arithmetic and touch no memory (a zero lane count).
    unsafe {
        let mut ab = [[V::splat(V::Elem::ZERO); NV]; ROWS];
        let mut rows = [a; ROWS];
        for (i, row) in rows.iter_mut().enumerate() {
            *row = a.offset(i as isize * ars);
        }
        // A column multiplied by B lanes where that is one instruction
        // (NEON) and the column is contiguous (a packed sliver).
        if V::FMA_BY_LANE && ars == 1 {
            k_loop::<V, NV, ROWS, true, EDGE>(&mut ab, &rows, acs, steps, b, bs, &counts);
        } else {
            k_loop::<V, NV, ROWS, false, EDGE>(&mut ab, &rows, acs, steps, b, bs, &counts);
        }
        store_tile::<V, NV, ROWS, EDGE>(&ab, alpha, beta, c, rsc, epilogue, &counts);
    }
}

/// Stores a finished tile: `C ← α·ab + β·C`, then the epilogue (bias and
/// activation) if any, on the `counts[v]` lanes of each vector `v` with
/// `EDGE`, on all of them otherwise.
///
/// # Safety
/// As [`tile_body`], for C and the epilogue's bias.
#[inline(always)]
unsafe fn store_tile<V: Lanes, const NV: usize, const ROWS: usize, const EDGE: bool>(
    ab: &[[V; NV]; ROWS],
    alpha: V::Elem,
    beta: V::Elem,
    c: *mut V::Elem,
    rsc: isize,
    epilogue: Option<&TileEpilogue<V::Elem>>,
    counts: &[usize; NV],
) {
    let l = V::LANES;
    // SAFETY: forwarded contract (see `tile_body`).
    unsafe {
        // α = 1 and β ∈ {0, 1} (every product the layers run) skip the
        // multiply: 24 operations per tile, next to 240 FMAs at k = 10.
        // Same bits: 1·x = x, and fma(1, c, x) rounds c + x once.
        let unit_alpha = alpha == V::Elem::ONE;
        let alpha = V::splat(alpha);
        // An edge tile with an epilogue keeps the finished sums in a stack
        // tile for it: re-reading C right after a masked store to it would
        // miss store-to-load forwarding (a stall per vector), while a full
        // store to the stack forwards to the full load that reads it back.
        let staged = EDGE && epilogue.is_some();
        let mut stage = core::mem::MaybeUninit::<[[V; NV]; ROWS]>::uninit();
        let stage = stage.as_mut_ptr().cast::<V>();
        for (i, ab) in ab.iter().enumerate() {
            let row = c.offset(i as isize * rsc);
            for (v, &ab) in ab.iter().enumerate() {
                let p = row.wrapping_add(v * l);
                let ab = if unit_alpha { ab } else { alpha.mul(ab) };
                let out = if beta == V::Elem::ZERO {
                    ab
                } else if beta == V::Elem::ONE {
                    load::<V, EDGE>(p, counts[v]).add(ab)
                } else {
                    V::splat(beta).fmadd(load::<V, EDGE>(p, counts[v]), ab)
                };
                if staged {
                    stage.add(i * NV + v).write(out);
                } else {
                    store::<V, EDGE>(out, p, counts[v]);
                }
            }
        }
        // The epilogue re-reads the tile from L1 rather than working on the
        // accumulators: its activation code is too large to unroll over
        // every register, and a rolled loop over the accumulators would make
        // them a stack array (spilled, and zeroed by memset on every call).
        if let Some(e) = epilogue {
            for i in 0..ROWS {
                let row = c.offset(i as isize * rsc);
                for (v, &count) in counts.iter().enumerate() {
                    let p = row.wrapping_add(v * l);
                    let mut out = match staged {
                        // Written above for every (i, v).
                        true => stage.add(i * NV + v).read(),
                        false => load::<V, EDGE>(p, count),
                    };
                    if !e.bias.is_null() {
                        let bias = if e.bias_per_row {
                            V::broadcast(e.bias.add(i))
                        } else {
                            load::<V, EDGE>(e.bias.wrapping_add(v * l), count)
                        };
                        out = out.add(bias);
                    }
                    store::<V, EDGE>(e.act.apply_lanes(out), p, count);
                }
            }
        }
    }
}

/// A vector of `count` lanes at `p` ([`Lanes::load_first`]) with `EDGE`,
/// of all of them otherwise.
///
/// # Safety
/// Runs under `V`'s features; `p` holds `count` readable values (`LANES`
/// without `EDGE`).
#[inline(always)]
unsafe fn load<V: Lanes, const EDGE: bool>(p: *const V::Elem, count: usize) -> V {
    // SAFETY: forwarded contract.
    unsafe {
        if EDGE {
            V::load_first(p, count)
        } else {
            V::loadu(p)
        }
    }
}

/// Stores `count` lanes of `x` at `p` with `EDGE`, all of them otherwise.
///
/// # Safety
/// As [`load`], for writes.
#[inline(always)]
unsafe fn store<V: Lanes, const EDGE: bool>(x: V, p: *mut V::Elem, count: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        if EDGE {
            x.store_first(p, count)
        } else {
            x.storeu(p)
        }
    }
}

/// Tiles at least this many vectors wide run their k loop two steps per
/// iteration: the AVX-512 4×64 shallow twin and the one-row kernels. Their
/// loops are short (k = 10 in an output layer's input gradient) or their
/// steps few FMAs per row, so the loop's own branch weighs on them, and one
/// step per iteration ran up to 10% slower at k = 10 depending on where
/// the loop landed in the binary. The narrower tiles (12×32, AVX2's 6×16)
/// gained nothing unrolled (`docs/design.md`).
const UNROLL_MIN_VECTORS: usize = 4;

/// The k loop of [`tile_body`]: `ab += A·B` over the listed steps.
///
/// # Safety
/// As [`tile_body`]; with `BY_LANE`, A's rows are contiguous (`ars = 1`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn k_loop<
    V: Lanes,
    const NV: usize,
    const ROWS: usize,
    const BY_LANE: bool,
    const EDGE: bool,
>(
    ab: &mut [[V; NV]; ROWS],
    rows: &[*const V::Elem; ROWS],
    acs: isize,
    steps: KSteps<'_>,
    b: *const V::Elem,
    bs: isize,
    counts: &[usize; NV],
) {
    // SAFETY: forwarded contract.
    unsafe {
        match steps {
            KSteps::All(k) => {
                // B's row is derived from the step index rather than by
                // advancing a pointer: a pointer stepped past the last row
                // would leave B's allocation when B is read in place, and
                // in-bounds `offset` past the end is undefined behaviour.
                let b_row = |p: usize| b.offset(p as isize * bs);
                let a_col = |p: usize| p as isize * acs;
                if NV >= UNROLL_MIN_VECTORS {
                    for p in (0..k / 2).map(|p| 2 * p) {
                        k_step::<V, NV, ROWS, BY_LANE, EDGE>(ab, rows, a_col(p), b_row(p), counts);
                        let q = p + 1;
                        k_step::<V, NV, ROWS, BY_LANE, EDGE>(ab, rows, a_col(q), b_row(q), counts);
                    }
                    if k % 2 == 1 {
                        let p = k - 1;
                        k_step::<V, NV, ROWS, BY_LANE, EDGE>(ab, rows, a_col(p), b_row(p), counts);
                    }
                } else {
                    for p in 0..k {
                        k_step::<V, NV, ROWS, BY_LANE, EDGE>(ab, rows, a_col(p), b_row(p), counts);
                    }
                }
            }
            KSteps::Listed(listed) => {
                let mut at = 0isize;
                for &p in listed {
                    let b = b.offset(p as isize * bs);
                    k_step::<V, NV, ROWS, BY_LANE, EDGE>(ab, rows, at, b, counts);
                    at += acs;
                }
            }
        }
    }
}

/// One k step of [`tile_body`]: `ab += A[.., at] ⊗ B row at `b``. With
/// `BY_LANE`, rows in whole groups of LANES come from one vector load of
/// A's column and [`Lanes::fmadd_lane`]; the others (and every row
/// otherwise) from a broadcast.
///
/// # Safety
/// As [`tile_body`], for this step's A column and B row (`counts[v]` values
/// of vector `v` with `EDGE`); with `BY_LANE`, `rows[i] = rows[0] + i`.
#[inline(always)]
unsafe fn k_step<
    V: Lanes,
    const NV: usize,
    const ROWS: usize,
    const BY_LANE: bool,
    const EDGE: bool,
>(
    ab: &mut [[V; NV]; ROWS],
    rows: &[*const V::Elem; ROWS],
    at: isize,
    b: *const V::Elem,
    counts: &[usize; NV],
) {
    let l = V::LANES;
    // SAFETY: forwarded contract; a lane group `g..g + LANES ≤ ROWS` lies
    // inside the column's ROWS contiguous values.
    unsafe {
        // A plain loop, not `array::from_fn`: at 16 vectors (the one-row
        // kernel) LLVM kept `from_fn` out of line, compiled without the
        // ISA's features, and the loads became calls.
        let mut bv = [V::splat(V::Elem::ZERO); NV];
        for (v, bv) in bv.iter_mut().enumerate() {
            *bv = load::<V, EDGE>(b.wrapping_add(v * l), counts[v]);
        }
        for (i, (ab, row)) in ab.iter_mut().zip(rows).enumerate() {
            let group = i / l * l;
            if BY_LANE && group + l <= ROWS {
                // The same load for every row of the group: loaded once.
                let av = V::loadu(rows[0].offset(at).add(group));
                for (ab, &bv) in ab.iter_mut().zip(&bv) {
                    *ab = bv.fmadd_lane(av, i - group, *ab);
                }
            } else {
                let ai = V::broadcast(row.offset(at));
                for (ab, &bv) in ab.iter_mut().zip(&bv) {
                    *ab = ai.fmadd(bv, *ab);
                }
            }
        }
    }
}

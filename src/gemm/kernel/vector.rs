//! The register-tile body shared by the vector kernels (AVX2, AVX-512,
//! NEON), written once against [`Lanes`] and compiled per ISA by the thin
//! `#[target_feature]` shim that [`vector_tile_fn!`] declares in each ISA's
//! kernel file.

use super::{KSteps, TileEpilogue};
use crate::isa::{Element, Lanes, prefetch_l1};

/// Declares `tile::<V, NV, ROWS>`, the [`TileFn`](super::TileFn): a
/// `ROWS × NV·LANES` tile whose body is [`tile_body`], compiled with the
/// target features `$features` (those of lane type `V`'s ISA).
macro_rules! vector_tile_fn {
    ($features:literal) => {
        /// A `ROWS × NV·LANES` tile: [`tile_body`](super::vector::tile_body)
        /// compiled for this file's ISA.
        ///
        /// # Safety
        /// The CPU supports this file's ISA, `V` is one of its lane types,
        /// and the pointers satisfy the kernel contract.
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn tile<V: Lanes, const NV: usize, const ROWS: usize>(
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
        ) {
            // SAFETY: the ISA's features are enabled here; the pointer
            // contract is forwarded.
            unsafe {
                super::vector::tile_body::<V, NV, ROWS>(
                    steps, alpha, a, a_strides, b, bs, beta, c, rsc, epilogue,
                )
            }
        }
    };
}
pub(crate) use vector_tile_fn;

/// The tile functions `shim::<V, NV, r>` for each listed row count `r`, in
/// order: entry `r − 1` computes an `r`-row tile `NV` vectors wide.
macro_rules! tiles_by_rows {
    ($shim:ident::<$v:ty, $nv:tt>, [$($rows:literal),*]) => {
        [$($shim::<$v, { $nv }, $rows> as TileFn<<$v as Lanes>::Elem>),*]
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
/// last sliver of a block, so no FMA is spent on padding rows.
///
/// # Safety
/// Runs inside a function compiled with `V`'s target features; the pointers
/// satisfy the kernel contract.
#[inline(always)]
pub(crate) unsafe fn tile_body<V: Lanes, const NV: usize, const ROWS: usize>(
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
) {
    let l = V::LANES;
    let nr = NV * l;
    // SAFETY (whole body): this runs under V's target features and the pointers
    // satisfy the kernel contract: A[i, p] is at a + i·ars + p·acs for
    // i < ROWS, B[p, j] at b + p·bs + j for j < NR, C rows `c + i·rsc` hold NR
    // writable values each, and an epilogue bias holds NR (or ROWS) values.
    unsafe {
        // C is touched only after the k loop: start pulling its rows in now.
        for i in 0..ROWS {
            let row = c.offset(i as isize * rsc) as *const u8;
            prefetch_l1(row);
            prefetch_l1(row.wrapping_add(nr * size_of::<V::Elem>() - 1));
        }
        let mut ab = [[V::splat(V::Elem::ZERO); NV]; ROWS];
        let mut rows = [a; ROWS];
        for (i, row) in rows.iter_mut().enumerate() {
            *row = a.offset(i as isize * ars);
        }
        // A column multiplied by B lanes where that is one instruction
        // (NEON) and the column is contiguous (a packed sliver).
        if V::FMA_BY_LANE && ars == 1 {
            k_loop::<V, NV, ROWS, true>(&mut ab, &rows, acs, steps, b, bs);
        } else {
            k_loop::<V, NV, ROWS, false>(&mut ab, &rows, acs, steps, b, bs);
        }
        // α = 1 and β ∈ {0, 1} (every product the layers run) skip the
        // multiply: 24 operations per tile, next to 240 FMAs at k = 10.
        // Same bits: 1·x = x, and fma(1, c, x) rounds c + x once.
        let unit_alpha = alpha == V::Elem::ONE;
        let alpha = V::splat(alpha);
        for (i, ab) in ab.iter().enumerate() {
            let row = c.offset(i as isize * rsc);
            for (v, &ab) in ab.iter().enumerate() {
                let p = row.add(v * l);
                let ab = if unit_alpha { ab } else { alpha.mul(ab) };
                let out = if beta == V::Elem::ZERO {
                    ab
                } else if beta == V::Elem::ONE {
                    V::loadu(p).add(ab)
                } else {
                    V::splat(beta).fmadd(V::loadu(p), ab)
                };
                out.storeu(p);
            }
        }
        // The epilogue re-reads the tile from L1 rather than working on the
        // accumulators: its activation code is too large to unroll over
        // every register, and a rolled loop over the accumulators would make
        // them a stack array (spilled, and zeroed by memset on every call).
        if let Some(e) = epilogue {
            for i in 0..ROWS {
                let row = c.offset(i as isize * rsc);
                for v in 0..NV {
                    let p = row.add(v * l);
                    let mut out = V::loadu(p);
                    if !e.bias.is_null() {
                        let bias = if e.bias_per_row {
                            V::broadcast(e.bias.add(i))
                        } else {
                            V::loadu(e.bias.add(v * l))
                        };
                        out = out.add(bias);
                    }
                    e.act.apply_lanes(out).storeu(p);
                }
            }
        }
    }
}

/// The k loop of [`tile_body`]: `ab += A·B` over the listed steps.
///
/// # Safety
/// As [`tile_body`]; with `BY_LANE`, A's rows are contiguous (`ars = 1`).
#[inline(always)]
unsafe fn k_loop<V: Lanes, const NV: usize, const ROWS: usize, const BY_LANE: bool>(
    ab: &mut [[V; NV]; ROWS],
    rows: &[*const V::Elem; ROWS],
    acs: isize,
    steps: KSteps<'_>,
    b: *const V::Elem,
    bs: isize,
) {
    let mut at = 0isize;
    // SAFETY: forwarded contract.
    unsafe {
        match steps {
            KSteps::All(k) => {
                // B's row is derived from the step index rather than by
                // advancing a pointer: a pointer stepped past the last row
                // would leave B's allocation when B is read in place, and
                // in-bounds `offset` past the end is undefined behaviour.
                for p in 0..k {
                    k_step::<V, NV, ROWS, BY_LANE>(ab, rows, at, b.offset(p as isize * bs));
                    at += acs;
                }
            }
            KSteps::Listed(listed) => {
                for &p in listed {
                    k_step::<V, NV, ROWS, BY_LANE>(ab, rows, at, b.offset(p as isize * bs));
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
/// As [`tile_body`], for this step's A column and B row; with `BY_LANE`,
/// `rows[i] = rows[0] + i`.
#[inline(always)]
unsafe fn k_step<V: Lanes, const NV: usize, const ROWS: usize, const BY_LANE: bool>(
    ab: &mut [[V; NV]; ROWS],
    rows: &[*const V::Elem; ROWS],
    at: isize,
    b: *const V::Elem,
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
            *bv = V::loadu(b.add(v * l));
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

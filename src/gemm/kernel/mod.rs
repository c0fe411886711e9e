//! Microkernels: one contract, one implementation per instruction set.
//!
//! # The contract
//!
//! A microkernel computes one `ROWS × NR` tile of C (`ROWS ≤ MR`; each
//! kernel comes in every row count, so the short last sliver of a block
//! costs no padding FMAs):
//!
//! ```text
//! C[0..ROWS, 0..NR] := β·C + α·A·B
//! ```
//!
//! * `A[i, p]` is at `a + i·ars + p·acs`: usually a packed sliver, `k`
//!   columns of `MR` values each (`ars = 1`, `acs = MR`, see
//!   [`pack_a_sliver`](super::pack::pack_a_sliver)); or, when packing would not
//!   pay for itself, MR rows of A read in place (`acs = 1`).
//! * The k steps are [`KSteps::All`]`(k)`, or [`KSteps::Listed`] when a packed
//!   A sliver had all-zero columns dropped (see
//!   [`drop_zero_columns`](super::pack::drop_zero_columns)): step `t` then
//!   multiplies A column `t` by B row `steps[t]`.
//! * `B[p, j]` is at `b + p·bs + j`: usually a packed sliver, `k` rows of
//!   `NR` values each (`bs = NR`, see [`pack_b_panel`](super::pack::pack_b_panel));
//!   or, when packing would not pay, NR columns of B read in place (`bs` = B's row stride).
//! * C has unit column stride and row stride `rsc` (any sign).
//! * `β = 0` never reads C, so NaN or garbage in C is overwritten.
//!
//! Tiles narrower than NR (at the right edge) or whose C has a non-unit
//! column stride go through [`Kernel::run_tile`]. Where the ISA loads and
//! stores a vector's first lanes in one masked instruction (AVX-512), a
//! narrow tile with unit column stride runs in place on the kernel's edge
//! twin (see [`Kernel::with_edge_tiles`]), which touches only the tile's
//! `cols` columns of B and C, so B's last sliver is read in place, never
//! packed. Otherwise the kernel runs on a temporary tile and the valid part
//! is copied in and out. Either way no kernel touches memory outside C.

pub(crate) mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod vector;

use crate::activation::Activation;
use crate::isa::{Element, Isa};

/// The largest `MR · NR` of any kernel (AVX-512 f32: 12 × 32): the size of
/// the temporary edge tile.
pub(crate) const MAX_TILE: usize = 384;

/// The temporary tile of [`Kernel::run_tile`], zeroed on first use only:
/// most tasks never meet an edge, and zeroing 1.5 KiB per task (hundreds per
/// training step) showed up in profiles.
pub(crate) struct EdgeTile<T>(Option<[T; MAX_TILE]>);

impl<T: Element> EdgeTile<T> {
    /// No tile yet.
    pub(crate) fn new() -> Self {
        EdgeTile(None)
    }

    fn get(&mut self) -> &mut [T; MAX_TILE] {
        self.0.get_or_insert([T::ZERO; MAX_TILE])
    }
}

/// The k steps of one tile (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) enum KSteps<'a> {
    /// Steps `0..k`: A column `p` against B row `p`.
    All(usize),
    /// A column `t` against B row `rows[t]` (A's all-zero columns dropped).
    Listed(&'a [u16]),
}

/// Signature shared by every microkernel; see the module docs for the contract.
pub(crate) type TileFn<T> = unsafe fn(
    steps: KSteps<'_>,
    alpha: T,
    a: *const T,
    a_strides: [isize; 2],
    b: *const T,
    b_row_stride: isize,
    beta: T,
    c: *mut T,
    rsc: isize,
    epilogue: Option<&TileEpilogue<T>>,
    cols: usize,
);

/// The largest NR of any full kernel (AVX-512 f32's shallow twin: 4 × 64):
/// the size of a padded bias for an edge tile.
pub(crate) const MAX_NR: usize = 64;

/// What a kernel does to a finished tile before storing it (only on the last
/// k panel): `C ← act(C + bias)`, on the register tile.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TileEpilogue<T> {
    /// The tile's bias values, NR of them (one per column) or ROWS (one per
    /// row, when the driver computes Cᵀ); null for no bias.
    pub(crate) bias: *const T,
    /// Whether `bias` runs along the tile's rows.
    pub(crate) bias_per_row: bool,
    /// The activation applied after the bias.
    pub(crate) act: Activation,
}

/// A microkernel together with the blocking it was tuned for.
///
/// Holding a `&Kernel` proves its ISA was detected on this CPU: values are
/// only handed out by [`lookup`], after the run-time check.
#[derive(Debug)]
pub struct Kernel<T: 'static> {
    isa: Isa,
    /// Rows of the register tile (rows of C per kernel call).
    pub(crate) mr: usize,
    /// Columns of the register tile (columns of C per kernel call).
    pub(crate) nr: usize,
    /// Rows of A packed per block; the `MC × KC` block stays in L2.
    pub(crate) mc: usize,
    /// Depth of a packed panel (see each kernel for how it was chosen).
    pub(crate) kc: usize,
    /// Columns of B packed per panel; the `KC × NC` panel stays in L3.
    pub(crate) nc: usize,
    /// `tiles[r - 1]` computes an `r × NR` tile, for `r` in `1 ..= MR`.
    tiles: &'static [TileFn<T>],
    /// `edge_tiles[r - 1]` computes the first columns of an `r × NR` tile
    /// in place, where the ISA has masked loads and stores (see
    /// [`Kernel::with_edge_tiles`]).
    edge_tiles: Option<&'static [TileFn<T>]>,
    /// A narrower kernel of the same ISA, for products with few columns.
    narrow: Option<&'static Kernel<T>>,
    /// A kernel of the same ISA and KC with fewer rows and wider tiles, and
    /// the deepest product it is offered for (see [`Kernel::with_shallow`]).
    shallow: Option<(&'static Kernel<T>, usize)>,
    /// A one-row kernel of the same ISA and KC, for products of one row
    /// (see [`Kernel::one_row`]).
    one_row: Option<&'static Kernel<T>>,
    /// Products with at most this many rows read a row-contiguous B in
    /// place rather than packing it (see [`Kernel::reading_b_in_place_up_to`]).
    pub(crate) b_in_place_max_rows: usize,
    /// The same limit for a B whose rows are a multiple of 4 KiB apart: all
    /// its rows share a few L1 sets, so every tile streams its B sliver
    /// from L2 again (none by default).
    pub(crate) aliased_b_in_place_max_rows: usize,
}

/// Default for [`Kernel::b_in_place_max_rows`]: with few rows of A to share
/// it, a packed B value feeds too few tiles to repay the copy, while for
/// more rows the AVX2 tile (12 FMAs per 8 loads) wants B contiguous in L1.
const B_IN_PLACE_MAX_ROWS: usize = 64;

impl<T: Element> Kernel<T> {
    /// # Safety
    /// Every tile function must be sound to call (given valid pointers) on
    /// any CPU where `isa.is_available()`, and the value must only be handed
    /// out after that check.
    pub(crate) const unsafe fn new(
        isa: Isa,
        [mr, nr]: [usize; 2],
        [mc, kc, nc]: [usize; 3],
        tiles: &'static [TileFn<T>],
    ) -> Self {
        assert!(mr * nr <= MAX_TILE && mc % mr == 0 && nc % nr == 0 && tiles.len() == mr);
        Kernel {
            isa,
            mr,
            nr,
            mc,
            kc,
            nc,
            tiles,
            edge_tiles: None,
            narrow: None,
            shallow: None,
            one_row: None,
            b_in_place_max_rows: B_IN_PLACE_MAX_ROWS,
            aliased_b_in_place_max_rows: 0,
        }
    }

    /// This kernel, reading a row-contiguous B in place for products of up
    /// to `rows` rows (`aliased_rows` when B's rows are a multiple of 4 KiB
    /// apart): right for kernels whose FMAs per B load are high enough to
    /// hide strided B rows streaming from L2.
    #[cfg_attr(not(target_arch = "x86_64"), expect(dead_code))]
    pub(crate) const fn reading_b_in_place_up_to(self, rows: usize, aliased_rows: usize) -> Self {
        Kernel {
            b_in_place_max_rows: rows,
            aliased_b_in_place_max_rows: aliased_rows,
            ..self
        }
    }

    /// This kernel, computing tiles narrower than NR (C's last columns) in
    /// place with `edge_tiles` instead of through a temporary tile: no copy
    /// in and out, and B's last sliver read where it is, never packed.
    #[cfg_attr(not(target_arch = "x86_64"), expect(dead_code))]
    pub(crate) const fn with_edge_tiles(self, edge_tiles: &'static [TileFn<T>]) -> Self {
        assert!(edge_tiles.len() == self.mr);
        Kernel {
            edge_tiles: Some(edge_tiles),
            ..self
        }
    }

    /// Whether tiles narrower than NR are computed in place, reading only
    /// their columns of B (see [`Kernel::with_edge_tiles`]).
    pub(crate) fn has_edge_tiles(&self) -> bool {
        self.edge_tiles.is_some()
    }

    /// This kernel, with `narrow` offered to the driver for products whose
    /// columns would waste most of this kernel's tile.
    #[cfg_attr(not(target_arch = "x86_64"), expect(dead_code))]
    pub(crate) const fn with_narrow(self, narrow: &'static Kernel<T>) -> Self {
        assert!(narrow.nr < self.nr && narrow.narrow.is_none());
        Kernel {
            narrow: Some(narrow),
            ..self
        }
    }

    /// This kernel, with `one_row` (MR = 1, wider than this kernel, of the
    /// same ISA and KC) offered to the driver for products of one row. The
    /// shared KC makes the driver split k into the same panels whichever it
    /// runs, so a row of C gets the same bits alone as in a batch.
    pub(crate) const fn with_one_row(self, one_row: &'static Kernel<T>) -> Self {
        assert!(
            one_row.kc == self.kc
                && one_row.mr == 1
                && one_row.nr > self.nr
                && one_row.one_row.is_none()
                && one_row.narrow.is_none()
        );
        Kernel {
            one_row: Some(one_row),
            ..self
        }
    }

    /// The kernel for products of one row: one row of the full tile has
    /// too few independent accumulators to hide the FMA latency (two on
    /// AVX-512), this one has enough.
    pub(crate) fn one_row(&self) -> Option<&'static Kernel<T>> {
        self.one_row
    }

    /// This kernel, with `shallow` (of the same ISA and KC, wider and with
    /// fewer rows) offered to the driver ahead of it for products at most
    /// `max_depth` deep: at small k a tile's fixed costs (its C stores, the
    /// start and end of its k loop) weigh on every FMA, and they weigh less
    /// on a tile of few rows (see the kernel's file). The same KC keeps a
    /// product's bits whichever of the two runs it.
    #[cfg_attr(not(target_arch = "x86_64"), expect(dead_code))]
    pub(crate) const fn with_shallow(self, shallow: &'static Kernel<T>, max_depth: usize) -> Self {
        assert!(
            shallow.kc == self.kc
                && shallow.mr < self.mr
                && shallow.narrow.is_none()
                && shallow.shallow.is_none()
                && max_depth <= self.kc
        );
        Kernel {
            shallow: Some((shallow, max_depth)),
            ..self
        }
    }

    /// The candidates the driver's cost model chooses from for a product
    /// `k` deep, in order of preference on equal cost: the shallow twin
    /// (if any, and `k` is small enough for it), this kernel, the narrow
    /// twin (if any). All are of the same ISA, so holding them is equally a
    /// proof that the ISA is present.
    pub(crate) fn variants(&'static self, k: usize) -> impl Iterator<Item = &'static Kernel<T>> {
        let shallow = self.shallow.filter(|&(_, max_depth)| k <= max_depth);
        shallow
            .map(|(kernel, _)| kernel)
            .into_iter()
            .chain(core::iter::once(self))
            .chain(self.narrow)
    }

    /// The instruction set this kernel runs on.
    pub(crate) fn isa(&self) -> Isa {
        self.isa
    }

    /// The tile functions that compute a tile `cols` wide straight into a C
    /// of column stride `csc` (entry `rows − 1` for `rows` rows, called
    /// with `cols`): the full tiles when `cols = NR`, the edge twins for
    /// fewer columns where the ISA has them, and `None` where the tile goes
    /// through [`run_tile`](Self::run_tile)'s temporary tile (a strided C,
    /// or a narrow tile without edge twins). A driver that takes these once
    /// per B sliver calls the tiles of its column directly.
    #[inline(always)]
    pub(crate) fn in_place_tiles(&self, cols: usize, csc: isize) -> Option<&'static [TileFn<T>]> {
        match self.edge_tiles {
            _ if csc != 1 => None,
            _ if cols == self.nr => Some(self.tiles),
            edge_tiles => edge_tiles,
        }
    }

    /// `C[0..rows, 0..cols] := β·C + α·A·B` for `rows ≤ MR`, `cols ≤ NR`, any C strides.
    ///
    /// `scratch` is the temporary tile for edges; its contents on entry do not
    /// matter (stale entries only ever meet rows or columns that are discarded).
    ///
    /// # Safety
    /// `A[i, p]` must be readable at `a + i·ars + p·acs` for `i < MR`,
    /// `p < k` (or `p <` the listed steps); `B[p, j]` must be readable at
    /// `b + p·bs + j` for `j < NR` (`j < cols` if the kernel
    /// [`has_edge_tiles`](Self::has_edge_tiles)) and every step's B row; `c` must be
    /// valid for reads (unless `β = 0`) and writes at `c + i·rsc + j·csc`
    /// for `i < rows`, `j < cols`; an epilogue's bias must be readable for
    /// `cols` values (per column) or `rows` values (per row).
    // Always inlined: called once per tile from two drivers, and a call per
    // tile shows in a training step.
    #[inline(always)]
    pub(crate) unsafe fn run_tile(
        &self,
        steps: KSteps<'_>,
        alpha: T,
        (a, a_strides): (*const T, [isize; 2]),
        (b, b_row_stride): (*const T, isize),
        beta: T,
        c: *mut T,
        [rsc, csc]: [isize; 2],
        [rows, cols]: [usize; 2],
        scratch: &mut EdgeTile<T>,
        epilogue: Option<&TileEpilogue<T>>,
    ) {
        debug_assert!((1..=self.mr).contains(&rows) && cols <= self.nr);
        // The in-place tile returns straight after its own call: folding the
        // two calls below into one, with the destination picked by a branch,
        // made small products measurably slower (`docs/design.md`).
        if let Some(tiles) = self.in_place_tiles(cols, csc) {
            // SAFETY: exactly the kernel's contract for `cols` columns with
            // unit column stride; the caller vouches for the pointers, and
            // holding `self` proves the ISA is present.
            unsafe {
                tiles[rows - 1](
                    steps,
                    alpha,
                    a,
                    a_strides,
                    b,
                    b_row_stride,
                    beta,
                    c,
                    rsc,
                    epilogue,
                    cols,
                )
            };
            return;
        }
        // The tile function and the columns it computes: an edge tile just
        // `cols` (reading only those of B), a full tile all NR.
        let (tile, width) = match self.edge_tiles {
            Some(edge_tiles) if cols < self.nr => (edge_tiles[rows - 1], cols),
            _ => (self.tiles[rows - 1], self.nr),
        };
        // A column bias of a narrow tile is padded, so the kernel may read NR
        // values (the one-row kernels, wider than MAX_NR, never come here
        // with one: see `driver::one_row`).
        let mut padded_bias = [T::ZERO; MAX_NR];
        let padded = epilogue.map(|e| {
            if !e.bias.is_null() && !e.bias_per_row {
                assert!(
                    self.nr <= MAX_NR,
                    "an edge tile's column bias is padded to MAX_NR"
                );
                for (j, slot) in padded_bias.iter_mut().enumerate().take(cols) {
                    // SAFETY: the caller vouches for `cols` bias values.
                    *slot = unsafe { *e.bias.add(j) };
                }
                TileEpilogue {
                    bias: padded_bias.as_ptr(),
                    ..*e
                }
            } else {
                *e
            }
        });
        // Edge or strided tile: compute on a temporary tile, copy the valid part.
        let nr = self.nr;
        let tmp = scratch.get();
        let at = |i: usize, j: usize| i as isize * rsc + j as isize * csc;
        if beta != T::ZERO {
            for i in 0..rows {
                for j in 0..cols {
                    // SAFETY: (i, j) is inside the valid region the caller vouched for.
                    tmp[i * nr + j] = unsafe { *c.offset(at(i, j)) };
                }
            }
        }
        // SAFETY: `tmp` holds `rows` full rows with row stride NR and unit
        // column stride; an edge tile reads only the `cols` columns of B the
        // caller vouches for (so B's last sliver may be read in place).
        unsafe {
            tile(
                steps,
                alpha,
                a,
                a_strides,
                b,
                b_row_stride,
                beta,
                tmp.as_mut_ptr(),
                nr as isize,
                padded.as_ref(),
                width,
            )
        };
        for i in 0..rows {
            for j in 0..cols {
                // SAFETY: as above, only the valid region is written.
                unsafe { *c.offset(at(i, j)) = tmp[i * nr + j] };
            }
        }
    }
}

/// Every ISA's kernels: one entry per ISA with the f32 and f64 kernel.
/// Adding an ISA is a kernel file plus one line here.
static KERNELS: &[(Isa, &Kernel<f32>, &Kernel<f64>)] = &[
    (Isa::Scalar, &scalar::F32, &scalar::F64),
    #[cfg(target_arch = "x86_64")]
    (Isa::Avx2Fma, &avx2::F32, &avx2::F64),
    #[cfg(target_arch = "x86_64")]
    (Isa::Avx512, &avx512::F32, &avx512::F64),
    #[cfg(target_arch = "aarch64")]
    (Isa::Neon, &neon::F32, &neon::F64),
];

/// The `T` kernel for `isa`, if this CPU has it (and the crate has one for
/// it on this architecture). The only way to get a [`Kernel`].
pub(crate) fn lookup<T: Element>(isa: Isa) -> Option<&'static Kernel<T>> {
    if !isa.is_available() {
        return None;
    }
    let &(_, f32_kernel, f64_kernel) = KERNELS.iter().find(|entry| entry.0 == isa)?;
    crate::isa::note_run(isa);
    let any: &dyn core::any::Any = if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>()
    {
        f32_kernel
    } else {
        f64_kernel
    };
    any.downcast_ref::<Kernel<T>>()
}

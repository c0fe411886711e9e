//! The blocked GEMM driver: five loops around the microkernel.
//!
//! ```text
//! jc: NC columns of B and C          ─┐ B panel  KC × NC  (packed, L3)
//!  pc: KC of the shared k dimension  ─┘
//!   ic: MC rows of A and C           ── A block  MC × KC  (packed, L2)
//!    jr: NR columns (a B sliver)     ── B sliver KC × NR  (L1)
//!     ir: MR rows (an A sliver)      ── microkernel: MR × NR tile of C in registers
//! ```
//!
//! Packing is skipped where it cannot pay for itself: A contiguous along k
//! is read in place (the kernel broadcasts from its rows) or, when its rows
//! would collide in L1, copied row by row to a padded stride; B with
//! contiguous rows is read in place when there are few rows of A to share
//! the copy; see [`a_layout`] and [`reads_b_in_place`]. When there are
//! fewer A blocks than the threads need tasks, several tasks share each
//! packed block: its slivers are then packed once, by all threads, before
//! the tasks start (the 784→256 forward pass at batch 128 on two threads
//! packed each block three times before, and took 15% longer).
//!
//! # Threads and determinism
//!
//! Work is split only over tiles of C (the `ic` blocks and groups of `jr`
//! slivers), never over k, and the block sizes come from the kernel, never
//! from the thread count. Every element of C therefore sees the same
//! sequence of floating-point operations whatever the number of threads:
//! results are bitwise identical for 1, 2, 3 or more threads. The same holds
//! for the choice of orientation (computing `Cᵀ = BᵀAᵀ` for skinny shapes),
//! which depends on the shape and strides alone, and for a single row,
//! which runs on a one-row kernel with the same panels ([`one_row`]): a row
//! of C does not depend on the other rows computed with it.

mod one_row;

use rayon::prelude::*;

use super::kernel::{EdgeTile, KSteps, Kernel, TileEpilogue};
use super::pack::{PackBuf, SharedPtr, pack_a_rows, pack_a_sliver, pack_b_panel, sliver_rows};
use crate::activation::Activation;
use crate::isa::Element;
use crate::isa::Isa;

use crate::par::min_parallel_work;

/// B panels smaller than this many elements are packed by the calling thread:
/// a fork-join costs more than copying them (≈ 64 K elements is a few µs).
const PAR_PACK_MIN_ELEMENTS: usize = 1 << 16;

/// Extra cost charged to an orientation whose C tiles cannot be stored with
/// vector stores (non-unit column stride), relative to its multiply work.
const STRIDED_STORE_PENALTY: f64 = 1.15;

/// Cycles per C element of such an orientation for going through the
/// temporary tile (see [`Kernel::run_tile`]): its copy out is one scalar
/// store per element, whatever k is. With k = 10 (a last layer's input
/// gradient) that copy, not the multiply, is most of the time, which the
/// penalty above, proportional to k, misses: 32×10×256 with column-major
/// B ran transposed at a quarter of its row-major speed.
const STRIDED_TILE_COPY_CYCLES: f64 = 2.0;

/// Packing cost model, in cycles per element: copying contiguous runs, and
/// transposing (gathering each sliver row from `w` strided lines).
const PACK_COPY_CYCLES: f64 = 0.25;
/// See [`PACK_COPY_CYCLES`].
const PACK_TRANSPOSE_CYCLES: f64 = 1.0;

/// A packed A panel up to this size is shared by all tasks (packed once, up
/// front) and split into column bands (see [`blocked`]): half of a 1 MiB
/// L2, which leaves room for the band's B slivers. Covers an MNIST batch of
/// 128 in both `x·wᵀ` and `xᵀ·dz`.
const SHARED_A_MAX_BYTES: usize = 512 << 10;

/// Panels at least this deep with an A panel of at most [`BANDS_MAX_A_BYTES`]
/// are split into column bands too (see [`blocked`]). Two threads here,
/// interleaved: 256×1024×1024, 512×784×256 and 256×784×1024 ran 8–20%
/// faster in bands than sharing one packed B panel; shallower ones
/// (k = 32 or 256: 784×32×256, 128×256×784, 512×256×784) 7–12% slower,
/// and 1024³ (a 4 MiB A panel) 2–4% slower.
const BANDS_MIN_DEPTH: usize = 512;

/// See [`BANDS_MIN_DEPTH`].
const BANDS_MAX_A_BYTES: usize = 2 << 20;

/// A panel with at most this many B slivers reads A in place (when A is
/// contiguous along k) instead of packing it: a packed A block would be
/// reused too few times to repay the copy.
const A_IN_PLACE_MAX_SLIVERS: usize = 4;

/// Row strides that are a multiple of this many bytes map the rows an
/// in-place sliver reads to the same few L1 sets; such operands are packed.
const L1_ALIASING_STRIDE: usize = 4096;

/// A row stride for a new buffer of `cols`-wide rows that the kernels can
/// read in place: `cols`, plus one cache line where `cols` values would be a
/// multiple of [`L1_ALIASING_STRIDE`] bytes (a 1024-wide `f32` layer).
pub(crate) fn unaliased_row_stride<T>(cols: usize) -> usize {
    let bytes = cols * size_of::<T>();
    if cols > 0 && bytes.is_multiple_of(L1_ALIASING_STRIDE) {
        cols + 64 / size_of::<T>()
    } else {
        cols
    }
}

/// Whether `kernel` reads B in place for a product with `m` rows: contiguous
/// along its columns, and few enough rows that a pack would not pay for
/// itself on this kernel (see [`Kernel::b_in_place_max_rows`]; a tighter
/// limit, [`Kernel::aliased_b_in_place_max_rows`], where B's rows are a
/// multiple of 4 KiB apart and so map every k step to the same L1 sets).
fn reads_b_in_place<T: Element, P>(kernel: &Kernel<T>, b: &Operand<P>, m: usize) -> bool {
    let aliasing = (b.rs.unsigned_abs() * size_of::<T>()).is_multiple_of(L1_ALIASING_STRIDE);
    let max_rows = if aliasing {
        kernel.aliased_b_in_place_max_rows
    } else {
        kernel.b_in_place_max_rows
    };
    b.cs == 1 && m <= max_rows
}

/// How the kernel reads the blocks of A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ALayout {
    /// Straight from A, which is contiguous along k: the kernel broadcasts
    /// from MR rows (`acs = 1`); no copy at all.
    InPlace,
    /// Contiguous along k but with rows a multiple of 4 KiB apart, which
    /// would all compete for the same few L1 sets: each block's rows are
    /// copied to a padded stride (a plain copy, no transpose) and read as in place.
    Rows,
    /// Packed into k-major slivers (see [`pack_a_sliver`]): any other layout.
    Slivers,
}

/// How the A blocks of a panel with `slivers` B slivers are read.
///
/// A narrow panel reuses each A block too few times for a copy to pay off,
/// so A contiguous along k is read in place there even when aliasing.
fn a_layout<T, P>(a: &Operand<P>, slivers: usize) -> ALayout {
    let aliasing = (a.rs.unsigned_abs() * size_of::<T>()).is_multiple_of(L1_ALIASING_STRIDE);
    match a.cs == 1 {
        true if slivers <= A_IN_PLACE_MAX_SLIVERS || !aliasing => ALayout::InPlace,
        true => ALayout::Rows,
        false => ALayout::Slivers,
    }
}

/// The row stride, in elements, of A rows copied `kc` deep ([`ALayout::Rows`]):
/// `kc` rounded up to a cache line, plus one, so consecutive rows start in
/// consecutive L1 sets.
fn padded_row_stride<T>(kc: usize) -> usize {
    let line = 64 / size_of::<T>();
    kc.next_multiple_of(line) + line
}

/// Bytes of B operand the vector kernels multiply-add per cycle: two 256-bit
/// FMA pipes (Haswell to Zen 4; a 512-bit FMA occupies both on Zen 4).
const VECTOR_FMA_BYTES_PER_CYCLE: usize = 64;

/// A rough cycle count for computing `C = A·B` in this orientation on this
/// kernel: the multiply work on padded tiles, plus packing. Only used to
/// compare orientations and kernels of one ISA for one product.
fn cost<T: Element, P, Q>(
    kernel: &Kernel<T>,
    [m, k, n]: [usize; 3],
    a: Operand<P>,
    b: Operand<P>,
    c: Operand<Q>,
    b_prepacked: bool,
) -> f64 {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let store = if c.cs == 1 {
        1.0
    } else {
        STRIDED_STORE_PENALTY
    };
    // The scalar kernel retires about one tile row (NR values) per cycle.
    let bytes_per_cycle = match kernel.isa() {
        Isa::Scalar => nr * size_of::<T>(),
        _ => VECTOR_FMA_BYTES_PER_CYCLE,
    };
    let tile_elements = m.div_ceil(mr) * mr * n.div_ceil(nr) * nr;
    let padded = tile_elements * k * size_of::<T>();
    let multiply = padded as f64 / bytes_per_cycle as f64 * store;
    let copy_out = match c.cs {
        1 => 0.0,
        _ => tile_elements as f64 * STRIDED_TILE_COPY_CYCLES,
    };
    let pack = |elements: usize, contiguous: bool| {
        let per = if contiguous {
            PACK_COPY_CYCLES
        } else {
            PACK_TRANSPOSE_CYCLES
        };
        elements as f64 * per
    };
    let panel_slivers = n.min(kernel.nc).div_ceil(nr);
    let pack_a = match a_layout::<T, _>(&a, panel_slivers) {
        ALayout::InPlace => 0.0,
        ALayout::Rows => pack(m * k, true),
        ALayout::Slivers => pack(m * k, a.rs == 1),
    };
    let pack_b = if b_prepacked || reads_b_in_place(kernel, &b, m) {
        0.0
    } else {
        pack(k * n, b.cs == 1)
    };
    multiply + copy_out + pack_a + pack_b
}

/// A strided matrix operand: element `(i, j)` is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Operand<P> {
    pub(crate) ptr: P,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

impl<P: Copy> Operand<P> {
    fn t(self) -> Self {
        Operand {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
    fn strides(self) -> [isize; 2] {
        [self.rs, self.cs]
    }
}

/// A mutable pointer to C shared by the tasks of one GEMM.
#[derive(Clone, Copy)]
struct SharedMutPtr<T>(*mut T);

impl<T> SharedMutPtr<T> {
    #[inline(always)]
    fn get(self) -> *mut T {
        self.0
    }
}

// SAFETY: tasks write disjoint tiles of C (each (ic, jr) tile belongs to one
// task), and the raw entry points' callers promise C is not aliased.
unsafe impl<T: Send> Send for SharedMutPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMutPtr<T> {}

/// What a caller knows about a product's operands beyond their shapes and strides.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hints {
    /// Drop the all-zero columns of A's packed slivers (see [`gemm`]).
    pub(crate) drop_zero_a: bool,
    /// B is pre-packed for repeated products: unit column stride, rows
    /// padded with readable columns up to this count (at least `n`). It is
    /// then read in place at any number of rows, edge tiles included, and
    /// the product is never computed transposed: nothing of B is copied.
    pub(crate) b_padded_cols: Option<usize>,
}

impl Hints {
    /// Only [`Hints::drop_zero_a`] set, as given.
    pub(crate) fn dropping_zeros(drop_zero_a: bool) -> Self {
        Hints {
            drop_zero_a,
            b_padded_cols: None,
        }
    }
}

/// `C ← α·A·B + β·C` for an `m × k` A and a `k × n` B on `kernel`, using up to
/// `max_threads` threads of the current rayon pool (1: no rayon calls at all).
///
/// With `hints.drop_zero_a`, A is always packed and each packed sliver's all-zero
/// columns are dropped ([`drop_zero_columns`](super::pack::drop_zero_columns)): the product of a sparse A
/// (a batch of images) skips those k steps. Exact zeros of A
/// then contribute nothing even against ∞ or NaN in B (as in sparse
/// BLAS). Which columns are dropped depends on A's values and the fixed
/// blocking alone, so results stay bitwise identical for any thread count.
///
/// # Safety
/// Every element `A[i, p]`, `B[p, j]`, `C[i, j]` in range must be valid
/// (C for reads unless `β = 0`, and for writes); distinct `(i, j)` must
/// address distinct elements of C, which must not overlap A or B.
pub(crate) unsafe fn gemm<T: Element>(
    kernel: &'static Kernel<T>,
    max_threads: usize,
    [m, k, n]: [usize; 3],
    alpha: T,
    a: Operand<*const T>,
    b: Operand<*const T>,
    beta: T,
    c: Operand<*mut T>,
    epilogue: Option<Epilogue<T>>,
    hints: Hints,
) {
    let drop_zero_a = hints.drop_zero_a;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == T::ZERO {
        // A and B are never read: C ← β·C (β = 0 writes zeros without reading C).
        // SAFETY: forwarded caller contract for C (and the epilogue's bias).
        unsafe { scale(m, n, beta, c, epilogue) };
        return;
    }
    // A single row (or column) runs on the one-row kernel, with B (or Aᵀ)
    // read in place; the same bits as the blocked loops (see `one_row`).
    if let Some(one_row) = kernel.one_row() {
        if m == 1 && b.cs == 1 {
            let b_cols = hints.b_padded_cols.unwrap_or(n).max(n);
            let epilogue = epilogue.map(|e| (e, false));
            // SAFETY: forwarded caller contract; B has unit column stride and
            // `b_cols` readable columns (the hint's promise).
            unsafe {
                one_row::gemm(
                    kernel,
                    one_row,
                    max_threads,
                    [k, n],
                    alpha,
                    a,
                    b,
                    beta,
                    c,
                    epilogue,
                    drop_zero_a,
                    b_cols,
                )
            };
            return;
        }
        if n == 1 && a.rs == 1 && !drop_zero_a && hints.b_padded_cols.is_none() {
            // Cᵀ = Bᵀ·Aᵀ, whose B operand Aᵀ has unit column stride; the bias
            // runs along the rows of Cᵀ.
            let epilogue = epilogue.map(|e| (e, true));
            // SAFETY: as above, transposed.
            unsafe {
                one_row::gemm(
                    kernel,
                    one_row,
                    max_threads,
                    [k, m],
                    alpha,
                    b.t(),
                    a.t(),
                    beta,
                    c.t(),
                    epilogue,
                    false,
                    m,
                )
            };
            return;
        }
    }
    // Skinny shapes can be cheaper computed transposed, Cᵀ = Bᵀ·Aᵀ (less
    // tile padding, or less packing), or on a narrower kernel. Decided from
    // shape and strides alone; ties keep the first candidate. Dropping A's
    // zero columns needs A to stay A, and a pre-packed B stays B.
    let orientations: &[bool] = if drop_zero_a || hints.b_padded_cols.is_some() {
        &[false]
    } else {
        &[false, true]
    };
    let (kernel, transposed) = kernel
        .variants()
        .flat_map(|kernel| orientations.iter().map(move |&t| (kernel, t)))
        .map(|(kernel, transposed)| {
            let cycles = if transposed {
                cost(kernel, [n, k, m], b.t(), a.t(), c.t(), false)
            } else {
                cost(kernel, [m, k, n], a, b, c, hints.b_padded_cols.is_some())
            };
            ((kernel, transposed), cycles)
        })
        .reduce(|best, next| if next.1 < best.1 { next } else { best })
        .expect("a kernel has at least one variant")
        .0;
    let (m, n, a, b, c) = if transposed {
        (n, m, b.t(), a.t(), c.t())
    } else {
        (m, n, a, b, c)
    };
    // The bias runs along C's columns, so along the rows of Cᵀ.
    let epilogue = epilogue.map(|e| (e, transposed));
    let threads = if m.saturating_mul(n).saturating_mul(k) < min_parallel_work() {
        1
    } else {
        max_threads.max(1)
    };
    let operands = Operands {
        a,
        b,
        c,
        drop_zero_a,
        b_padded_cols: hints.b_padded_cols.filter(|_| !transposed),
    };
    // SAFETY: forwarded caller contract.
    unsafe { blocked(kernel, threads, [m, k, n], alpha, operands, beta, epilogue) }
}

/// The operands of one product in the orientation being computed.
#[derive(Clone, Copy)]
struct Operands<T> {
    a: Operand<*const T>,
    b: Operand<*const T>,
    c: Operand<*mut T>,
    /// Drop the all-zero columns of A's packed slivers (see [`gemm`]).
    drop_zero_a: bool,
    /// B is pre-packed (see [`Hints::b_padded_cols`]).
    b_padded_cols: Option<usize>,
}

/// The five loops (see the module docs).
///
/// # Safety
/// As [`gemm`], with `k ≥ 1`.
unsafe fn blocked<T: Element>(
    kernel: &Kernel<T>,
    threads: usize,
    [m, k, n]: [usize; 3],
    alpha: T,
    Operands {
        a,
        b,
        c,
        drop_zero_a,
        b_padded_cols,
    }: Operands<T>,
    beta: T,
    epilogue: Option<(Epilogue<T>, bool)>,
) {
    let Kernel { mr, nr, .. } = *kernel;
    // Split each dimension into equal blocks no larger than the kernel's, so a
    // 784-deep product runs as 4 × 196 rather than 3 × 256 + 16 (a whole pass
    // over C for 2% of the work). Depends on the shape alone: deterministic.
    let kc_blk = balanced(k, kernel.kc, 1);
    let mc_blk = balanced(m, kernel.mc, mr);
    let nc_blk = balanced(n, kernel.nc, nr);
    // Plain copies of the pointers and strides, so the parallel task captures only Sync values.
    let (c_ptr, c_strides) = (SharedMutPtr(c.ptr), c.strides());
    let (a_ptr, a_strides) = (SharedPtr(a.ptr), a.strides());
    let mut b_buf = PackBuf::for_b();

    // jc: a column panel of B and the matching columns of C.
    for jc in (0..n).step_by(nc_blk) {
        let nc = nc_blk.min(n - jc);
        let slivers = nc.div_ceil(nr);

        // pc: a KC-deep slice of k: columns of A, rows of the B panel.
        for pc in (0..k).step_by(kc_blk) {
            let kc = kc_blk.min(k - pc);
            // Later k panels accumulate onto what the first one wrote.
            let beta = if pc == 0 { beta } else { T::ONE };

            let a_layout = if drop_zero_a {
                ALayout::Slivers
            } else {
                a_layout::<T, _>(&a, slivers)
            };
            // ic × jr groups: the units of parallel work. With few A blocks
            // for the threads, or a packed A small enough to share from L2,
            // each block is shared by several groups; its slivers are then
            // packed once, up front, for all of them. Otherwise each task
            // packs its own A block.
            let blocks = m.div_ceil(mc_blk);
            let groups_per_block = if threads > 1 {
                (4 * threads).div_ceil(blocks).clamp(1, slivers)
            } else {
                1
            };
            let a_bytes = m.div_ceil(mr) * mr * kc * size_of::<T>();
            let share_a = threads > 1
                && a_layout == ALayout::Slivers
                && (groups_per_block > 1 || a_bytes <= SHARED_A_MAX_BYTES);
            // Column bands: each task takes a band of B slivers (packing them
            // itself) through every A block, so a thread's B slivers and the
            // columns of C it writes stay in its own cache, and packing and
            // multiplying share one fork-join. For one A block, a small shared
            // A, or a deep panel (its B slivers are costly to share) with an
            // A panel small enough to be read again by every band; never
            // with too few slivers to give every thread two bands.
            let deep = kc >= BANDS_MIN_DEPTH && a_bytes <= BANDS_MAX_A_BYTES;
            let bands = threads > 1
                && slivers >= 2 * threads
                && (blocks == 1 || (share_a && a_bytes <= SHARED_A_MAX_BYTES) || deep);
            let groups = match () {
                _ if bands => (4 * threads).clamp(1, slivers),
                // A shared block costs nothing per group: one B sliver per
                // task balances the threads best.
                _ if share_a => slivers,
                _ => groups_per_block,
            };
            let per_group = slivers.div_ceil(groups);
            let groups = slivers.div_ceil(per_group);

            let b_origin = SharedPtr(
                // SAFETY: B[pc, jc] is in range (caller contract).
                unsafe { b.ptr.offset(pc as isize * b.rs + jc as isize * b.cs) },
            );
            let b_strides = b.strides();
            // Packs B slivers s0.. into `out` (the whole panel when s0 = 0).
            let pack_b = |s0: usize, out: &mut [T], parallel: bool| {
                let j0 = s0 * nr;
                let cols = (out.len() / (nr * kc) * nr).min(nc - j0);
                // SAFETY: B[pc..pc+kc, jc+j0..jc+j0+cols] is in range (caller contract).
                unsafe {
                    let origin = b_origin.get().offset(j0 as isize * b_strides[1]);
                    pack_b_panel(nr, cols, origin, b_strides, out, parallel);
                }
            };
            // Read in place, only a partial last B sliver is packed (kernels
            // always read NR columns), unless B is padded that far;
            // otherwise the panel is packed. A pre-packed B is read in place.
            let b_in_place = b_padded_cols.is_some() || reads_b_in_place(kernel, &b, m);
            let readable = b_padded_cols.unwrap_or(n);
            let full_slivers = if jc + slivers * nr <= readable {
                slivers
            } else {
                nc / nr
            };
            let b_packed = if b_in_place {
                let tail = b_buf.slice::<T>((slivers - full_slivers) * nr * kc);
                if full_slivers < slivers {
                    pack_b(full_slivers, tail, false);
                }
                tail
            } else {
                b_buf.slice::<T>(slivers * nr * kc)
            };
            let a_row_stride = padded_row_stride::<T>(kc);
            // Packed A slivers are `mr·kc` values; each has `kc + 1` step
            // slots (the count kept, then their k indices) when zero columns
            // are dropped.
            let (sliver_len, steps_len) = (mr * kc, if drop_zero_a { kc + 1 } else { 0 });
            let block_slivers = mc_blk.div_ceil(mr);
            // Packs sliver `s` of A block `block` (and drops its zero columns).
            let pack_a_sliver_at = |block: usize, s: usize, out: &mut [T], steps: &mut [u16]| {
                let (ic, mc) = (block * mc_blk, mc_blk.min(m - block * mc_blk));
                // SAFETY: A[ic..ic+mc, pc..pc+kc] is in range (caller contract).
                unsafe {
                    let a_block = a_ptr
                        .get()
                        .offset(ic as isize * a_strides[0] + pc as isize * a_strides[1]);
                    match steps.split_first_mut() {
                        Some((kept, list)) => {
                            let list = Some(list);
                            *kept = pack_a_sliver(mr, mc, s, a_block, a_strides, out, list) as u16;
                        }
                        None => {
                            pack_a_sliver(mr, mc, s, a_block, a_strides, out, None);
                        }
                    }
                }
            };
            let mut a_shared_buf = share_a.then(PackBuf::for_a);
            let mut steps_shared_buf = share_a.then(PackBuf::for_steps);
            let a_shared: &mut [T] = match &mut a_shared_buf {
                Some(buf) => buf.slice(blocks * block_slivers * sliver_len),
                None => &mut [],
            };
            // One slot even without step lists, so the slivers zip with them.
            let step_slots = steps_len.max(1);
            let steps_shared: &mut [u16] = match &mut steps_shared_buf {
                Some(buf) => buf.slice(blocks * block_slivers * step_slots),
                None => &mut [],
            };
            // Band tasks pack their own B slivers; otherwise a packed B panel
            // is packed up front for all tasks.
            let b_shared = !b_in_place && !bands;
            // What the tasks share is packed before any of them starts, by all
            // threads together: the A slivers, the B panel, or both at once.
            let pack_a_shared = |a_shared: &mut [T], steps_shared: &mut [u16]| {
                a_shared
                    .par_chunks_mut(sliver_len)
                    .zip(steps_shared.par_chunks_mut(step_slots))
                    .enumerate()
                    .for_each(|(g, (sliver, slots))| {
                        let (block, s) = (g / block_slivers, g % block_slivers);
                        if s < mc_blk.min(m - block * mc_blk).div_ceil(mr) {
                            pack_a_sliver_at(block, s, sliver, &mut slots[..steps_len]);
                        }
                    })
            };
            let parallel_b = threads > 1 && kc * nc >= PAR_PACK_MIN_ELEMENTS;
            match (share_a, b_shared) {
                (true, true) => {
                    rayon::join(
                        || pack_a_shared(a_shared, steps_shared),
                        || pack_b(0, b_packed, parallel_b),
                    );
                }
                (true, false) => pack_a_shared(a_shared, steps_shared),
                (false, true) => pack_b(0, b_packed, parallel_b),
                (false, false) => {}
            }
            // One task: the A block `block` times the B slivers of `group`,
            // found through `b_slivers`.
            let last_panel = pc + kc == k;
            let (a_shared, steps_shared) = (&*a_shared, &*steps_shared);
            let task = |block: usize, group: usize, b_slivers: BSlivers<'_, T>| {
                let ic = block * mc_blk;
                let mc = mc_blk.min(m - ic);
                let a_slivers = mc.div_ceil(mr);
                let mut scratch = EdgeTile::new();
                // SAFETY: A[ic.., pc..] is the origin of an in-range block (caller contract).
                let a_block = unsafe {
                    a_ptr
                        .get()
                        .offset(ic as isize * a_strides[0] + pc as isize * a_strides[1])
                };
                // Read in place, A needs no copy at all (kernels read exactly
                // the rows of their sliver); shared, it is packed already;
                // otherwise this task copies the block.
                let mut a_buf = PackBuf::for_a();
                let mut steps_buf = PackBuf::for_steps();
                let (a_packed, steps): (&[T], &[u16]) = if share_a {
                    let first = block * block_slivers;
                    (
                        &a_shared[first * sliver_len..][..a_slivers * sliver_len],
                        &steps_shared[first * step_slots..][..a_slivers * step_slots],
                    )
                } else {
                    let a_packed = a_buf.slice::<T>(match a_layout {
                        ALayout::InPlace => 0,
                        ALayout::Rows => mc * a_row_stride,
                        ALayout::Slivers => a_slivers * sliver_len,
                    });
                    let steps = steps_buf.slice::<u16>(a_slivers * step_slots);
                    match a_layout {
                        ALayout::InPlace => {}
                        // SAFETY: A[ic..ic+mc, pc..pc+kc] is in range (caller contract).
                        ALayout::Rows => unsafe {
                            pack_a_rows(kc, a_block, a_strides[0], a_row_stride, a_packed)
                        },
                        ALayout::Slivers => {
                            for s in 0..a_slivers {
                                let sliver = &mut a_packed[s * sliver_len..][..sliver_len];
                                let list = &mut steps[s * step_slots..][..steps_len];
                                pack_a_sliver_at(block, s, sliver, list);
                            }
                        }
                    }
                    (a_packed, steps)
                };
                let k_steps = |r: usize| -> KSteps<'_> {
                    if !drop_zero_a {
                        return KSteps::All(kc);
                    }
                    let list = &steps[r * step_slots..][..steps_len];
                    match usize::from(list[0]) {
                        kept if kept == kc => KSteps::All(kc),
                        kept => KSteps::Listed(&list[1..=kept]),
                    }
                };
                let a_sliver = |r: usize, first_row: usize| -> (*const T, [isize; 2]) {
                    match a_layout {
                        ALayout::InPlace => {
                            // SAFETY: the sliver's rows are inside the block (sliver_rows).
                            let rows = unsafe { a_block.offset(first_row as isize * a_strides[0]) };
                            (rows, [a_strides[0], 1])
                        }
                        ALayout::Rows => (
                            a_packed[first_row * a_row_stride..].as_ptr(),
                            [a_row_stride as isize, 1],
                        ),
                        ALayout::Slivers => (a_packed[r * sliver_len..].as_ptr(), [1, mr as isize]),
                    }
                };
                // jr: one NR-wide sliver of the B panel, NR columns of C.
                for s in group * per_group..((group + 1) * per_group).min(slivers) {
                    let j = jc + s * nr;
                    let b_sliver = match b_slivers {
                        BSlivers::Packed { chunk, first } => {
                            (chunk[(s - first) * nr * kc..].as_ptr(), nr as isize)
                        }
                        BSlivers::InPlace { origin, rs, .. } if s < full_slivers => {
                            // SAFETY: full sliver s has NR in-range columns from jc + s·NR.
                            (unsafe { origin.get().add(s * nr) }, rs)
                        }
                        BSlivers::InPlace { tail, .. } => (tail.as_ptr(), nr as isize),
                    };
                    let cols = nr.min(n - j);
                    // ir: one sliver of the A block (≤ MR rows), those rows of C.
                    for r in 0..mc.div_ceil(mr) {
                        let (first_row, rows) = sliver_rows(mc, mr, r);
                        let i = ic + first_row;
                        // SAFETY: the tile C[i..i+rows, j..j+cols] is in range and
                        // written by this task alone; the slivers are kc deep.
                        unsafe {
                            let tile = c_ptr
                                .get()
                                .offset(i as isize * c_strides[0] + j as isize * c_strides[1]);
                            kernel.run_tile(
                                k_steps(r),
                                alpha,
                                a_sliver(r, first_row),
                                b_sliver,
                                beta,
                                tile,
                                c_strides,
                                [rows, cols],
                                &mut scratch,
                                tile_epilogue(epilogue.filter(|_| last_panel), i, j).as_ref(),
                            );
                        }
                    }
                }
            };
            let group_len = per_group * nr * kc;
            // A band task: group `group`'s B slivers through every A block.
            let band = |group: usize, b_slivers: BSlivers<'_, T>| {
                (0..blocks).for_each(|block| task(block, group, b_slivers));
            };
            let b_in_place_slivers = BSlivers::InPlace {
                origin: b_origin,
                rs: b_strides[0],
                tail: b_packed,
            };
            match (bands, b_in_place) {
                (true, true) => (0..groups)
                    .into_par_iter()
                    .for_each(|group| band(group, b_in_place_slivers)),
                (true, false) => {
                    b_packed
                        .par_chunks_mut(group_len)
                        .enumerate()
                        .for_each(|(group, chunk)| {
                            let first = group * per_group;
                            pack_b(first, chunk, false);
                            band(group, BSlivers::Packed { chunk, first });
                        })
                }
                (false, b_in_place) => {
                    let b_slivers = if b_in_place {
                        b_in_place_slivers
                    } else {
                        BSlivers::Packed {
                            chunk: b_packed,
                            first: 0,
                        }
                    };
                    // Every (block, group) task, on the pool or on this thread.
                    if threads > 1 {
                        (0..blocks * groups)
                            .into_par_iter()
                            .for_each(|t| task(t / groups, t % groups, b_slivers));
                    } else {
                        band(0, b_slivers);
                    }
                }
            }
        }
    }
}

/// Bias and activation applied to `C = α·A·B + β·C` as it is stored:
/// `C ← act(C + bias)`, with `bias` one value per column of C.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue<T> {
    /// `n` values, one per column of C; `None` for no bias.
    pub(crate) bias: Option<SharedPtr<T>>,
    /// Applied after the bias.
    pub(crate) act: Activation,
}

/// The epilogue of the tile at `(i, j)` (in the orientation being computed;
/// `per_row` when that is Cᵀ).
fn tile_epilogue<T>(
    epilogue: Option<(Epilogue<T>, bool)>,
    i: usize,
    j: usize,
) -> Option<TileEpilogue<T>> {
    epilogue.map(|(e, per_row)| TileEpilogue {
        bias: e.bias.map_or(core::ptr::null(), |b| {
            b.get().wrapping_add(if per_row { i } else { j })
        }),
        bias_per_row: per_row,
        act: e.act,
    })
}

/// Where a task finds its B slivers.
#[derive(Clone, Copy)]
enum BSlivers<'a, T> {
    /// Packed, sliver `s` at `chunk[(s − first)·NR·kc..]`.
    Packed { chunk: &'a [T], first: usize },
    /// Full slivers read in place (`B[p, j]` at `origin + p·rs + j`), the
    /// partial last one packed in `tail`.
    InPlace {
        origin: SharedPtr<T>,
        rs: isize,
        tail: &'a [T],
    },
}

/// The block size for `len` that keeps every block at most `max` long with
/// as few blocks as possible, all (but possibly the last) of equal size,
/// rounded up to a multiple of `unit`.
fn balanced(len: usize, max: usize, unit: usize) -> usize {
    let blocks = len.div_ceil(max).max(1);
    len.div_ceil(blocks).next_multiple_of(unit).min(max)
}

/// `C ← β·C` (writing zeros without reading C when `β = 0`), then the epilogue.
///
/// # Safety
/// `C[i, j]` valid for writes (and reads unless `β = 0`) for `i < m`, `j < n`;
/// an epilogue bias holds `n` values.
unsafe fn scale<T: Element>(
    m: usize,
    n: usize,
    beta: T,
    c: Operand<*mut T>,
    epilogue: Option<Epilogue<T>>,
) {
    for i in 0..m {
        for j in 0..n {
            // SAFETY: (i, j) is in range, and so is bias[j] (caller contract).
            unsafe {
                let p = c.ptr.offset(i as isize * c.rs + j as isize * c.cs);
                let mut v = if beta == T::ZERO { T::ZERO } else { beta * *p };
                if let Some(e) = epilogue {
                    if let Some(bias) = e.bias {
                        v = v + *bias.get().add(j);
                    }
                    v = e.act.apply_one(v);
                }
                *p = v;
            }
        }
    }
}

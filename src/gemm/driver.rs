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
//! the tasks start, instead of once per task.
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

use super::Shared;
use super::kernel::{EdgeTile, KSteps, Kernel, MAX_NR, TileEpilogue};
use super::pack::{PackBuf, SliverSplit, pack_a_rows, pack_a_sliver, pack_b_panel};
use crate::activation::Activation;
use crate::isa::Isa;
use crate::isa::{Element, prefetch_l1};

use crate::par::{Share, min_parallel_work};

/// B panels smaller than this many elements are packed by the calling thread:
/// a fork-join costs more than copying them.
const PAR_PACK_MIN_ELEMENTS: usize = 1 << 16;

/// Extra cost charged to an orientation whose C tiles cannot be stored with
/// vector stores (non-unit column stride), relative to its multiply work.
const STRIDED_STORE_PENALTY: f64 = 1.15;

/// Cycles per C element of such an orientation for going through the
/// temporary tile (see [`Kernel::run_tile`]): its copy out is one scalar
/// store per element, whatever k is. With k = 10 (a last layer's input
/// gradient) that copy, not the multiply, is most of the time, which the
/// penalty above, proportional to k, misses.
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
/// are split into column bands too (see [`PanelPlan`]): deep B slivers are
/// costly to share between threads, while a shallow panel's are cheap and
/// a large A panel is costly to read again in every band
/// (`docs/design.md`).
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
/// kernel: the multiply work on its tiles (padded to NR columns, which an
/// edge tile computes whole; not to MR rows, since a kernel has a tile for
/// every row count), plus packing. Only used to
/// compare orientations and kernels of one ISA for one product.
fn cost<T: Element, P, Q>(
    kernel: &Kernel<T>,
    [m, k, n]: [usize; 3],
    a: Operand<P>,
    b: Operand<P>,
    c: Operand<Q>,
    b_prepacked: bool,
) -> f64 {
    let nr = kernel.nr;
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
    let tile_elements = m * n.div_ceil(nr) * nr;
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

/// Products at least this deep prefetch C (see [`prefetches_c`]).
const PREFETCH_C_MIN_DEPTH: usize = 256;

/// Products whose C is larger than this prefetch C whatever their depth:
/// a C larger than a core's L2 (1 MiB on Zen 4 and 5, 1.25–2 MiB on recent
/// Intel cores) is read from L3 or memory, whose latency a tile's stores
/// would otherwise wait out.
const PREFETCH_C_MIN_BYTES: usize = 1 << 20;

/// Whether each tile's rows of C are prefetched before its k loop: only
/// where the fetch has time to land and is slow enough to matter. For a
/// shallow product with a cache-resident C (an output layer's `k = 10`
/// input gradient) the prefetches only take issue slots from the FMAs.
fn prefetches_c<T>([m, k, n]: [usize; 3]) -> bool {
    k >= PREFETCH_C_MIN_DEPTH
        || m.saturating_mul(n).saturating_mul(size_of::<T>()) > PREFETCH_C_MIN_BYTES
}

/// A strided matrix operand: element `(i, j)` is at `ptr + i·rs + j·cs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// The strides alone, for a plan.
    fn layout(self) -> Operand<()> {
        Operand {
            ptr: (),
            rs: self.rs,
            cs: self.cs,
        }
    }
}

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

/// `C ← α·A·B + β·C` for an `m × k` A and a `k × n` B on `kernel`: for
/// `Share::Whole(n)` all of it, using up to `n` threads of the current
/// rayon pool (1: no rayon calls at all); for `Share::Part`, one part of it
/// on this thread alone (see [`part_of`]).
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
    share: Share,
    [m, k, n]: [usize; 3],
    alpha: T,
    a: Operand<*const T>,
    b: Operand<*const T>,
    beta: T,
    c: Operand<*mut T>,
    epilogue: Option<Epilogue<T>>,
    hints: Hints,
) {
    let max_threads = match share {
        Share::Whole(threads) => threads,
        Share::Part { index, parts } => {
            let part = part_of(
                kernel,
                [index, parts],
                [m, k, n],
                [a, b],
                c,
                epilogue,
                hints,
            );
            if let Some((shape, [a, b], c, epilogue, hints)) = part {
                // SAFETY: forwarded caller contract; the part is a
                // sub-product of the caller's, inside its operands.
                unsafe {
                    gemm(
                        kernel,
                        Share::Whole(1),
                        shape,
                        alpha,
                        a,
                        b,
                        beta,
                        c,
                        epilogue,
                        hints,
                    )
                }
            }
            return;
        }
    };
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
    // SAFETY: forwarded caller contract.
    if unsafe {
        one_row_gemm(
            kernel,
            max_threads,
            [m, k, n],
            alpha,
            a,
            b,
            beta,
            c,
            epilogue,
            hints,
        )
    } {
        return;
    }
    let threads = if m.saturating_mul(n).saturating_mul(k) < min_parallel_work() {
        1
    } else {
        max_threads.max(1)
    };
    Plan::with_cached(kernel, threads, [m, k, n], [a, b], c, hints, |plan| {
        let kernel = kernel
            .variants(k)
            .nth(plan.variant)
            .expect("a plan picks one of the kernel's variants");
        let (m, n, a, b, c) = if plan.transposed {
            (n, m, b.t(), a.t(), c.t())
        } else {
            (m, n, a, b, c)
        };
        // The bias runs along C's columns, so along the rows of Cᵀ.
        let epilogue = epilogue.map(|e| (e, plan.transposed));
        let operands = Operands {
            a,
            b,
            c,
            drop_zero_a,
        };
        // SAFETY: forwarded caller contract.
        unsafe { blocked(kernel, plan, [m, k, n], alpha, operands, beta, epilogue) }
    })
}

/// Everything decided about a product before any of it is computed, from
/// its shape, strides, hints and thread count alone (never from pointers or
/// values): the kernel variant and orientation, the block sizes, and the
/// plan of the first panel (the only one of most products).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    /// Index of the kernel variant in [`Kernel::variants`].
    variant: usize,
    /// Computed as `Cᵀ = Bᵀ·Aᵀ`.
    transposed: bool,
    threads: usize,
    blocks: Blocks,
    /// The operands' strides and promises in the computed orientation.
    layout: Layout,
    /// The panel at `jc = 0`, `pc = 0`, in the computed orientation.
    first_panel: PanelPlan,
    /// Each tile's rows of C are prefetched before its k loop (see
    /// [`prefetches_c`]).
    prefetch_c: bool,
}

/// What a [`Plan`] is made from: the arguments of [`Plan::new`], with the
/// kernel by address (its identity) and the operands by strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PlanKey {
    kernel: usize,
    threads: usize,
    shape: [usize; 3],
    strides: [[isize; 2]; 3],
    drop_zero_a: bool,
    b_padded_cols: Option<usize>,
}

/// Plans kept per thread (see [`Plan::with_cached`]): enough for every product
/// of a training step (forward, weight and input gradients of a few layers).
const CACHED_PLANS: usize = 8;

/// The latest plans made on one thread, replaced round-robin.
struct PlanCache {
    entries: [Option<(PlanKey, Plan)>; CACHED_PLANS],
    /// The entry the next new plan replaces.
    next: usize,
}

impl PlanCache {
    fn get(&self, key: &PlanKey) -> Option<&Plan> {
        let mut entries = self.entries.iter().flatten();
        entries.find(|(k, _)| k == key).map(|(_, plan)| plan)
    }

    fn insert(&mut self, key: PlanKey, plan: Plan) {
        self.entries[self.next] = Some((key, plan));
        self.next = (self.next + 1) % CACHED_PLANS;
    }
}

thread_local! {
    static PLANS: core::cell::RefCell<PlanCache> = const {
        core::cell::RefCell::new(PlanCache {
            entries: [None; CACHED_PLANS],
            next: 0,
        })
    };
}

impl Plan {
    /// Runs `f` with the plan of this product: planning weighs four kernel
    /// and orientation candidates and divides every dimension into blocks
    /// and slivers, which is a noticeable part of a small product (an
    /// output layer's `k = 10` input gradient), while training repeats a few
    /// shapes; so the latest plans are kept per thread and reused. A plan
    /// depends on its key alone, so a reused one is the one [`Plan::new`]
    /// would make: same bits.
    ///
    /// `f` reads a cached plan where it lies: copied out, the plan (a few
    /// hundred bytes, just written field by field) costs a memcpy whose
    /// wide loads miss store forwarding, a fifth of a small call's fixed
    /// cost. A product started on this thread while `f` runs (rayon may
    /// hand it one while it waits for a join) still reads the cache; only
    /// its new plans go uncached.
    fn with_cached<T: Element, R>(
        kernel: &'static Kernel<T>,
        threads: usize,
        shape: [usize; 3],
        [a, b]: [Operand<*const T>; 2],
        c: Operand<*mut T>,
        hints: Hints,
        f: impl FnOnce(&Plan) -> R,
    ) -> R {
        let key = PlanKey {
            kernel: core::ptr::from_ref(kernel).addr(),
            threads,
            shape,
            strides: [a.strides(), b.strides(), c.strides()],
            drop_zero_a: hints.drop_zero_a,
            b_padded_cols: hints.b_padded_cols,
        };
        PLANS.with(|plans| {
            if let Ok(plans) = plans.try_borrow()
                && let Some(plan) = plans.get(&key)
            {
                return f(plan);
            }
            let plan = Plan::new(kernel, threads, shape, [a, b], c, hints);
            if let Ok(mut plans) = plans.try_borrow_mut() {
                plans.insert(key, plan);
            }
            f(&plan)
        })
    }

    /// Plans the product from scratch (see [`orientation`], [`Blocks`],
    /// [`PanelPlan`]).
    fn new<T: Element>(
        kernel: &'static Kernel<T>,
        threads: usize,
        [m, k, n]: [usize; 3],
        [a, b]: [Operand<*const T>; 2],
        c: Operand<*mut T>,
        hints: Hints,
    ) -> Plan {
        let (chosen, transposed) = orientation(kernel, [m, k, n], a, b, c, hints);
        let variant = kernel
            .variants(k)
            .position(|v| core::ptr::eq(v, chosen))
            .expect("the orientation picks one of the kernel's variants");
        let (m, n, a, b) = if transposed {
            (n, m, b.t(), a.t())
        } else {
            (m, n, a, b)
        };
        let blocks = Blocks::new(chosen, [m, k, n]);
        let layout = Layout {
            a: a.layout(),
            b: b.layout(),
            drop_zero_a: hints.drop_zero_a,
            b_padded_cols: hints.b_padded_cols.filter(|_| !transposed),
        };
        let kc = blocks.kc.min(k);
        Plan {
            variant,
            transposed,
            threads,
            blocks,
            layout,
            first_panel: PanelPlan::new(chosen, threads, [m, n], blocks, [0, kc], layout),
            prefetch_c: prefetches_c::<T>([m, k, n]),
        }
    }
}

/// Products from outside any pool of fewer multiply-adds than this run in
/// parts, one per thread, the caller computing the first (see
/// [`Par::run_in_parts`](crate::par::Par::run_in_parts) and [`part_of`]).
/// Larger ones move whole onto the pool, whose plans share packed operands
/// between the threads: each row part would pack a packed B anew, which
/// costs more than the caller's wake-up saves once a call takes a
/// millisecond or more.
pub(crate) const PARTS_MAX_WORK: usize = 1 << 27;

/// One part of a product cut as [`Share::Part`] asks: a band of C's rows
/// (of its columns when it is wider than tall), a multiple of the kernel's
/// MR rows (of [`MAX_NR`] columns) long, so that parts seldom end inside a
/// tile; the shape and operands of that sub-product, or `None` if the part
/// is empty. Each element of C is computed in the part as in the whole
/// product (the same k panels, each a sequential chain of FMAs), so the
/// bits do not depend on the cut.
#[allow(clippy::type_complexity)]
fn part_of<T: Element>(
    kernel: &Kernel<T>,
    [index, parts]: [usize; 2],
    [m, k, n]: [usize; 3],
    [a, b]: [Operand<*const T>; 2],
    c: Operand<*mut T>,
    epilogue: Option<Epilogue<T>>,
    hints: Hints,
) -> Option<(
    [usize; 3],
    [Operand<*const T>; 2],
    Operand<*mut T>,
    Option<Epilogue<T>>,
    Hints,
)> {
    let by_rows = m >= n;
    let (len, unit) = if by_rows { (m, kernel.mr) } else { (n, MAX_NR) };
    let per_part = len.div_ceil(parts).next_multiple_of(unit);
    let start = (index * per_part).min(len);
    let part = per_part.min(len - start);
    let shift = |ptr: *const T, stride: isize| ptr.wrapping_offset(start as isize * stride);
    let c_at = |stride: isize| Operand {
        ptr: c.ptr.wrapping_offset(start as isize * stride),
        ..c
    };
    match (part, by_rows) {
        (0, _) => None,
        (_, true) => Some((
            [part, k, n],
            [
                Operand {
                    ptr: shift(a.ptr, a.rs),
                    ..a
                },
                b,
            ],
            c_at(c.rs),
            epilogue,
            hints,
        )),
        (_, false) => Some((
            [m, k, part],
            [
                a,
                Operand {
                    ptr: shift(b.ptr, b.cs),
                    ..b
                },
            ],
            c_at(c.cs),
            epilogue.map(|e| Epilogue {
                bias: e.bias.map(|bias| Shared(bias.get().wrapping_add(start))),
                ..e
            }),
            Hints {
                b_padded_cols: hints.b_padded_cols.map(|cols| cols - start),
                ..hints
            },
        )),
    }
}

/// Runs a product of one row (or one column, as `Cᵀ = Bᵀ·Aᵀ`) on the
/// kernel's one-row twin, if it has one and the operand it reads in place
/// has unit column stride; returns whether it did.
///
/// # Safety
/// As [`gemm`].
unsafe fn one_row_gemm<T: Element>(
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
) -> bool {
    let drop_zero_a = hints.drop_zero_a;
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
            return true;
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
            return true;
        }
    }
    false
}

/// The kernel variant and orientation to compute the product in: skinny
/// shapes can be cheaper computed transposed, `Cᵀ = Bᵀ·Aᵀ` (less tile
/// padding, or less packing), or on a narrower kernel. Decided from shape
/// and strides alone; ties keep the first candidate. Dropping A's zero
/// columns needs A to stay A, and a pre-packed B stays B.
fn orientation<T: Element>(
    kernel: &'static Kernel<T>,
    [m, k, n]: [usize; 3],
    a: Operand<*const T>,
    b: Operand<*const T>,
    c: Operand<*mut T>,
    hints: Hints,
) -> (&'static Kernel<T>, bool) {
    let orientations: &[bool] = if hints.drop_zero_a || hints.b_padded_cols.is_some() {
        &[false]
    } else {
        &[false, true]
    };
    kernel
        .variants(k)
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
        .0
}

/// The operands of one product in the orientation being computed.
#[derive(Clone, Copy)]
struct Operands<T> {
    a: Operand<*const T>,
    b: Operand<*const T>,
    c: Operand<*mut T>,
    /// Drop the all-zero columns of A's packed slivers (see [`gemm`]).
    drop_zero_a: bool,
}

/// An A this small is one block whatever the kernel's MC: it stays in L1
/// beside a B sliver, and more blocks would only take every B sliver
/// through the tiles once per block (128×10×256 ran 2% faster as one).
const SINGLE_A_BLOCK_MAX_BYTES: usize = 32 << 10;

/// Block sizes of one product: each dimension split into equal blocks no
/// larger than the kernel's (A in one block when it is tiny, see
/// [`SINGLE_A_BLOCK_MAX_BYTES`]), so a 784-deep product runs as 4 × 196 rather
/// than 3 × 256 + 16 (a whole pass over C for 2% of the work). They depend
/// on the shape alone, never on the thread count: deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Blocks {
    /// Rows of A per block (MC).
    mc: usize,
    /// Depth of a panel (KC).
    kc: usize,
    /// Columns of B per panel (NC).
    nc: usize,
}

impl Blocks {
    fn new<T>(kernel: &Kernel<T>, [m, k, n]: [usize; 3]) -> Self {
        Blocks {
            mc: if m * k * size_of::<T>() <= SINGLE_A_BLOCK_MAX_BYTES {
                m.next_multiple_of(kernel.mr)
            } else {
                balanced(m, kernel.mc, kernel.mr)
            },
            kc: balanced(k, kernel.kc, 1),
            nc: balanced(n, kernel.nc, kernel.nr),
        }
    }
}

/// The strides and promises of a product's operands: what a plan reads
/// (no pointers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    a: Operand<()>,
    b: Operand<()>,
    /// See [`Hints::drop_zero_a`].
    drop_zero_a: bool,
    /// See [`Hints::b_padded_cols`].
    b_padded_cols: Option<usize>,
}

/// How one panel (`nc` columns of B, `kc` of k) is computed, decided from
/// the shape, the strides and the thread count alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PanelPlan {
    /// NR-wide slivers of B in the panel.
    slivers: usize,
    /// A blocks of [`Blocks::mc`] rows.
    blocks: usize,
    /// How the kernel reads A.
    a_layout: ALayout,
    /// The packed A slivers are packed once, up front, and shared by all tasks.
    share_a: bool,
    /// Column bands: each task packs its own B slivers and takes them
    /// through every A block.
    bands: bool,
    /// B is read in place; only a partial last sliver is packed (none
    /// where the kernel has edge tiles).
    b_in_place: bool,
    /// Slivers with NR readable columns (the others go through the tail
    /// when B is read in place).
    full_slivers: usize,
    /// Groups of B slivers: a task is one A block times one group.
    groups: usize,
    /// Slivers per group (the last may have fewer).
    per_group: usize,
}

impl PanelPlan {
    /// The plan of the panel at column `jc`, `kc` deep, of an `m × n` C.
    fn new<T: Element>(
        kernel: &Kernel<T>,
        threads: usize,
        [m, n]: [usize; 2],
        blocks: Blocks,
        [jc, kc]: [usize; 2],
        layout: Layout,
    ) -> Self {
        let (mr, nr) = (kernel.mr, kernel.nr);
        let nc = blocks.nc.min(n - jc);
        let slivers = nc.div_ceil(nr);
        let a_layout = if layout.drop_zero_a {
            ALayout::Slivers
        } else {
            a_layout::<T, _>(&layout.a, slivers)
        };
        // ic × jr groups are the units of parallel work. With few A blocks
        // for the threads, a packed A small enough to share from L2, or a
        // deep panel (whose bands each take every A block: packed per task,
        // A would be packed once per band), each block is packed (or its
        // rows copied) once and shared by several groups; otherwise each
        // task packs its own.
        let a_blocks = m.div_ceil(blocks.mc);
        // At least four tasks a thread, and as many for every thread when
        // there are few (11 blocks on two threads left one idle for a
        // twelfth of a 512×1024×1024 product).
        let groups_per_block = match threads {
            1 => 1,
            _ => (1..)
                .map(|g| g * (4 * threads).div_ceil(a_blocks))
                .find(|g| (a_blocks * g).is_multiple_of(threads) || a_blocks * g >= 16 * threads)
                .expect("some multiple balances the threads")
                .clamp(1, slivers),
        };
        let a_bytes = m.div_ceil(mr) * mr * kc * size_of::<T>();
        let deep = kc >= BANDS_MIN_DEPTH && a_bytes <= BANDS_MAX_A_BYTES;
        let share_a = threads > 1
            && a_layout != ALayout::InPlace
            && (groups_per_block > 1 || a_bytes <= SHARED_A_MAX_BYTES || deep);
        // Bands keep a thread's B slivers and the columns of C it writes in
        // its own cache, and packing and multiplying share one fork-join:
        // for one A block, a small shared A, or a deep panel (its B slivers
        // are costly to share) with an A panel small enough to be read again
        // by every band; never with too few slivers for two bands a thread.
        let bands = threads > 1
            && slivers >= 2 * threads
            && (a_blocks == 1 || (share_a && a_bytes <= SHARED_A_MAX_BYTES) || deep);
        let groups = match () {
            _ if bands => (4 * threads).clamp(1, slivers),
            // A shared block costs nothing per group: one B sliver per task
            // balances the threads best.
            _ if share_a => slivers,
            _ => groups_per_block,
        };
        let per_group = slivers.div_ceil(groups);
        // Kernels read NR columns of B, except edge tiles (where the ISA
        // has them): without, a partial last sliver is packed unless B is
        // padded that far.
        let readable = layout.b_padded_cols.unwrap_or(n);
        let full_slivers = if jc + slivers * nr <= readable || kernel.has_edge_tiles() {
            slivers
        } else {
            nc / nr
        };
        PanelPlan {
            slivers,
            blocks: a_blocks,
            a_layout,
            share_a,
            bands,
            b_in_place: layout.b_padded_cols.is_some() || reads_b_in_place(kernel, &layout.b, m),
            full_slivers,
            groups: slivers.div_ceil(per_group),
            per_group,
        }
    }

    /// B slivers packed into the B buffer: the whole panel, or only the
    /// partial tail when B is read in place.
    fn packed_b_slivers(&self) -> usize {
        if self.b_in_place {
            self.slivers - self.full_slivers
        } else {
            self.slivers
        }
    }
}

/// The five loops (see the module docs).
///
/// # Safety
/// As [`gemm`], with `k ≥ 1`.
unsafe fn blocked<T: Element>(
    kernel: &Kernel<T>,
    plan: &Plan,
    [m, k, n]: [usize; 3],
    alpha: T,
    ops: Operands<T>,
    beta: T,
    epilogue: Option<(Epilogue<T>, bool)>,
) {
    let (blocks, threads, prefetch_c) = (plan.blocks, plan.threads, plan.prefetch_c);
    let layout = plan.layout;
    // Taken only for a panel that packs B (a small product reads B in place).
    let mut b_buf = None;

    // jc: a column panel of B and the matching columns of C.
    for jc in (0..n).step_by(blocks.nc) {
        // pc: a KC-deep slice of k: columns of A, rows of the B panel.
        for pc in (0..k).step_by(blocks.kc) {
            let kc = blocks.kc.min(k - pc);
            let plan = match (jc, pc) {
                (0, 0) => plan.first_panel,
                _ => PanelPlan::new(kernel, threads, [m, n], blocks, [jc, kc], layout),
            };
            let panel = Panel {
                kernel,
                plan,
                threads,
                m,
                n,
                mc_blk: blocks.mc,
                jc,
                nc: blocks.nc.min(n - jc),
                pc,
                kc,
                alpha,
                // Later k panels accumulate onto what the first one wrote.
                beta: if pc == 0 { beta } else { T::ONE },
                a: Shared(ops.a),
                b: Shared(ops.b),
                c: Shared(ops.c),
                drop_zero_a: ops.drop_zero_a,
                epilogue: epilogue.filter(|_| pc + kc == k),
                prefetch_c,
            };
            let b_packed = match plan.packed_b_slivers() * kernel.nr * kc {
                0 => &mut [][..],
                len => b_buf.get_or_insert_with(PackBuf::for_b).slice::<T>(len),
            };
            // SAFETY: forwarded caller contract.
            unsafe { panel.run(b_packed) };
        }
    }
}

/// One panel of the product under its plan: everything its steps need.
struct Panel<'k, T: 'static> {
    kernel: &'k Kernel<T>,
    plan: PanelPlan,
    threads: usize,
    m: usize,
    n: usize,
    mc_blk: usize,
    jc: usize,
    nc: usize,
    pc: usize,
    kc: usize,
    alpha: T,
    beta: T,
    a: Shared<Operand<*const T>>,
    b: Shared<Operand<*const T>>,
    c: Shared<Operand<*mut T>>,
    drop_zero_a: bool,
    /// Only on the last k panel.
    epilogue: Option<(Epilogue<T>, bool)>,
    /// See [`Plan::prefetch_c`].
    prefetch_c: bool,
}

/// A packed A block: slivers (or padded rows) and, when zero columns are
/// dropped, each sliver's kept k steps.
#[derive(Clone, Copy)]
struct PackedA<'a, T> {
    values: &'a [T],
    steps: &'a [u16],
}

impl<T: Element> Panel<'_, T> {
    /// Values in one packed A sliver (`mr·kc`).
    fn sliver_len(&self) -> usize {
        self.kernel.mr * self.kc
    }

    /// Step slots per packed A sliver: the kept count, then their k indices,
    /// when zero columns are dropped; one (unused) otherwise, so slivers zip
    /// with their slots.
    fn step_slots(&self) -> usize {
        if self.drop_zero_a { self.kc + 1 } else { 1 }
    }

    /// A slivers per full A block.
    fn block_slivers(&self) -> usize {
        self.mc_blk.div_ceil(self.kernel.mr)
    }

    /// Values of one full A block in a shared packed A: its slivers, or its
    /// rows at the padded stride.
    fn shared_block_len(&self) -> usize {
        match self.plan.a_layout {
            ALayout::Rows => self.mc_blk * padded_row_stride::<T>(self.kc),
            _ => self.block_slivers() * self.sliver_len(),
        }
    }

    /// `(first row, rows)` of A block `block`.
    fn block_rows(&self, block: usize) -> (usize, usize) {
        let ic = block * self.mc_blk;
        (ic, self.mc_blk.min(self.m - ic))
    }

    /// A[ic, pc]: the origin of A block `block` in this panel.
    fn a_block(&self, block: usize) -> *const T {
        let a = self.a.get();
        let ic = self.block_rows(block).0;
        // SAFETY: A[ic, pc] is in range (caller contract); `offset` only forms the address.
        unsafe { a.ptr.offset(ic as isize * a.rs + self.pc as isize * a.cs) }
    }

    /// B[pc, jc]: the origin of this panel of B.
    fn b_origin(&self) -> *const T {
        let b = self.b.get();
        // SAFETY: B[pc, jc] is in range (caller contract).
        unsafe {
            b.ptr
                .offset(self.pc as isize * b.rs + self.jc as isize * b.cs)
        }
    }

    /// Packs B slivers `s0..` into `out` (as many as fit, up to the panel's end).
    fn pack_b_slivers(&self, s0: usize, out: &mut [T], parallel: bool) {
        let (nr, kc) = (self.kernel.nr, self.kc);
        let j0 = s0 * nr;
        let cols = (out.len() / (nr * kc) * nr).min(self.nc - j0);
        let b = self.b.get();
        // SAFETY: B[pc..pc+kc, jc+j0..jc+j0+cols] is in range (caller contract).
        unsafe {
            let origin = self.b_origin().offset(j0 as isize * b.cs);
            pack_b_panel(nr, cols, origin, [b.rs, b.cs], out, parallel);
        }
    }

    /// Packs sliver `s` of A block `block` into `out`, and lists its kept k
    /// steps in `steps` when zero columns are dropped (`steps` is empty otherwise).
    fn pack_a_sliver_at(&self, block: usize, s: usize, out: &mut [T], steps: &mut [u16]) {
        let (mr, mc) = (self.kernel.mr, self.block_rows(block).1);
        let a = self.a.get();
        let a_block = self.a_block(block);
        // SAFETY: A[ic..ic+mc, pc..pc+kc] is in range (caller contract).
        unsafe {
            match steps.split_first_mut() {
                Some((kept, list)) => {
                    let list = Some(list);
                    *kept = pack_a_sliver(mr, mc, s, a_block, [a.rs, a.cs], out, list) as u16;
                }
                None => {
                    pack_a_sliver(mr, mc, s, a_block, [a.rs, a.cs], out, None);
                }
            }
        }
    }

    /// Runs the panel, with `b_packed` sized by [`PanelPlan::packed_b_slivers`].
    ///
    /// # Safety
    /// As [`gemm`], for this panel.
    unsafe fn run(&self, b_packed: &mut [T]) {
        let plan = self.plan;
        let (nr, kc) = (self.kernel.nr, self.kc);
        if plan.b_in_place && plan.full_slivers < plan.slivers {
            self.pack_b_slivers(plan.full_slivers, b_packed, false);
        }
        let mut a_buf = plan.share_a.then(PackBuf::for_a);
        let mut steps_buf = plan.share_a.then(PackBuf::for_steps);
        let a_shared = match (&mut a_buf, &mut steps_buf) {
            (Some(values), Some(steps)) => {
                let slivers = plan.blocks * self.block_slivers();
                let values = values.slice::<T>(plan.blocks * self.shared_block_len());
                let steps = steps.slice::<u16>(slivers * self.step_slots());
                // Band tasks pack their own B slivers; otherwise a packed B
                // panel is packed now too, beside the shared A.
                match plan.bands || plan.b_in_place {
                    true => self.pack_shared_a(values, steps),
                    false => {
                        rayon::join(
                            || self.pack_shared_a(values, steps),
                            || self.pack_b_slivers(0, b_packed, self.parallel_pack_b()),
                        );
                    }
                }
                Some(PackedA {
                    values: &*values,
                    steps: &*steps,
                })
            }
            _ => {
                if !plan.bands && !plan.b_in_place {
                    self.pack_b_slivers(0, b_packed, self.parallel_pack_b());
                }
                None
            }
        };
        let b_origin = Shared(self.b_origin());
        let b_rs = self.b.get().rs;
        match (plan.bands, plan.b_in_place) {
            (true, false) => b_packed
                .par_chunks_mut(plan.per_group * nr * kc)
                .enumerate()
                .for_each(|(group, chunk)| {
                    let first = group * plan.per_group;
                    self.pack_b_slivers(first, chunk, false);
                    self.band(group, a_shared, BSlivers::Packed { chunk, first });
                }),
            (bands, in_place) => {
                let b_slivers = match in_place {
                    true => BSlivers::InPlace {
                        origin: b_origin,
                        rs: b_rs,
                        tail: &*b_packed,
                    },
                    false => BSlivers::Packed {
                        chunk: &*b_packed,
                        first: 0,
                    },
                };
                if bands {
                    (0..plan.groups)
                        .into_par_iter()
                        .for_each(|group| self.band(group, a_shared, b_slivers));
                } else if self.parallel() {
                    (0..plan.blocks * plan.groups)
                        .into_par_iter()
                        .for_each(|t| {
                            let (block, group) = (t / plan.groups, t % plan.groups);
                            self.task(block, group, a_shared, b_slivers)
                        });
                } else {
                    self.band(0, a_shared, b_slivers);
                }
            }
        }
    }

    /// Whether this panel's tasks run on the pool (a plan for more than one thread).
    fn parallel(&self) -> bool {
        self.threads > 1
    }

    /// Whether the up-front B pack is split over the pool.
    fn parallel_pack_b(&self) -> bool {
        self.parallel() && self.kc * self.nc >= PAR_PACK_MIN_ELEMENTS
    }

    /// Packs the shared A of every block (its slivers, or its rows copied
    /// to the padded stride), by all threads together.
    fn pack_shared_a(&self, values: &mut [T], steps: &mut [u16]) {
        if self.plan.a_layout == ALayout::Rows {
            let stride = padded_row_stride::<T>(self.kc);
            let rs = self.a.get().rs;
            values
                .par_chunks_mut(self.shared_block_len())
                .enumerate()
                .for_each(|(block, rows)| {
                    let used = self.block_rows(block).1 * stride;
                    // SAFETY: A[ic..ic+mc, pc..pc+kc] is in range (caller contract).
                    unsafe {
                        pack_a_rows(self.kc, self.a_block(block), rs, stride, &mut rows[..used])
                    }
                });
            return;
        }
        let (block_slivers, mr) = (self.block_slivers(), self.kernel.mr);
        let used_slots = if self.drop_zero_a { self.kc + 1 } else { 0 };
        values
            .par_chunks_mut(self.sliver_len())
            .zip(steps.par_chunks_mut(self.step_slots()))
            .enumerate()
            .for_each(|(g, (sliver, slots))| {
                let (block, s) = (g / block_slivers, g % block_slivers);
                if s < self.block_rows(block).1.div_ceil(mr) {
                    self.pack_a_sliver_at(block, s, sliver, &mut slots[..used_slots]);
                }
            })
    }

    /// A band task: group `group`'s B slivers through every A block.
    fn band(&self, group: usize, a_shared: Option<PackedA<'_, T>>, b: BSlivers<'_, T>) {
        (0..self.plan.blocks).for_each(|block| self.task(block, group, a_shared, b));
    }

    /// One task: A block `block` (packed by this task unless shared) times
    /// the B slivers of `group`.
    fn task(
        &self,
        block: usize,
        group: usize,
        a_shared: Option<PackedA<'_, T>>,
        b: BSlivers<'_, T>,
    ) {
        let a_slivers = self.block_rows(block).1.div_ceil(self.kernel.mr);
        let mut bufs = None;
        let packed = match a_shared {
            Some(shared) => {
                let first = block * self.block_slivers();
                PackedA {
                    values: &shared.values[block * self.shared_block_len()..]
                        [..self.shared_block_len()],
                    steps: &shared.steps[first * self.step_slots()..]
                        [..a_slivers * self.step_slots()],
                }
            }
            // Nothing to copy: the kernels read A's rows where they are.
            None if self.plan.a_layout == ALayout::InPlace => PackedA {
                values: &[],
                steps: &[],
            },
            None => {
                let (values, steps) = bufs.insert((PackBuf::for_a(), PackBuf::for_steps()));
                self.pack_a_block(block, values, steps)
            }
        };
        self.multiply_block(block, group, packed, b);
    }

    /// Copies A block `block` as the plan's layout wants it (nothing when
    /// read in place: the kernels read exactly the rows of their sliver).
    fn pack_a_block<'b>(
        &self,
        block: usize,
        values_buf: &'b mut PackBuf,
        steps_buf: &'b mut PackBuf,
    ) -> PackedA<'b, T> {
        let (mr, kc) = (self.kernel.mr, self.kc);
        let mc = self.block_rows(block).1;
        let a_slivers = mc.div_ceil(mr);
        let values = values_buf.slice::<T>(match self.plan.a_layout {
            ALayout::InPlace => 0,
            ALayout::Rows => mc * padded_row_stride::<T>(kc),
            ALayout::Slivers => a_slivers * self.sliver_len(),
        });
        let steps = steps_buf.slice::<u16>(a_slivers * self.step_slots());
        match self.plan.a_layout {
            ALayout::InPlace => {}
            // SAFETY: A[ic..ic+mc, pc..pc+kc] is in range (caller contract).
            ALayout::Rows => unsafe {
                let rs = self.a.get().rs;
                pack_a_rows(
                    kc,
                    self.a_block(block),
                    rs,
                    padded_row_stride::<T>(kc),
                    values,
                )
            },
            ALayout::Slivers => {
                let used_slots = if self.drop_zero_a { kc + 1 } else { 0 };
                for s in 0..a_slivers {
                    let sliver = &mut values[s * self.sliver_len()..][..self.sliver_len()];
                    let list = &mut steps[s * self.step_slots()..][..used_slots];
                    self.pack_a_sliver_at(block, s, sliver, list);
                }
            }
        }
        PackedA { values, steps }
    }

    /// The jr and ir loops of one task: every tile of A block `block` and
    /// the B slivers of `group`.
    fn multiply_block(&self, block: usize, group: usize, a: PackedA<'_, T>, b: BSlivers<'_, T>) {
        let (mr, nr, kc) = (self.kernel.mr, self.kernel.nr, self.kc);
        let (ic, mc) = self.block_rows(block);
        let c = self.c.get();
        let (alpha, beta, prefetch_c) = (self.alpha, self.beta, self.prefetch_c);
        let mut scratch = EdgeTile::new();
        // Everything a tile needs that does not change along the loops is
        // read here once: the loops run once per tile, and at k = 10 a
        // tile is about 160 cycles, so a dozen reloads and branches per
        // tile show (see `docs/design.md`).
        let step_slots = self.step_slots();
        let k_steps = |r: usize| -> KSteps<'_> {
            if !self.drop_zero_a {
                return KSteps::All(kc);
            }
            let list = &a.steps[r * step_slots..][..kc + 1];
            match usize::from(list[0]) {
                kept if kept == kc => KSteps::All(kc),
                kept => KSteps::Listed(&list[1..=kept]),
            }
        };
        // Sliver r of A, from its first row: the origin of row 0 and the
        // distance between slivers' origins (per row, or per sliver).
        let (a_origin, a_strides, per_row, per_sliver) = match self.plan.a_layout {
            ALayout::InPlace => {
                let a_rs = self.a.get().rs;
                (self.a_block(block), [a_rs, 1], a_rs, 0)
            }
            ALayout::Rows => {
                let stride = padded_row_stride::<T>(kc) as isize;
                (a.values.as_ptr(), [stride, 1], stride, 0)
            }
            ALayout::Slivers => (
                a.values.as_ptr(),
                [1, mr as isize],
                0,
                self.sliver_len() as isize,
            ),
        };
        let per_group = self.plan.per_group;
        let split = SliverSplit::new(mc, mr);
        // jr: one NR-wide sliver of the B panel, NR columns of C.
        for s in group * per_group..((group + 1) * per_group).min(self.plan.slivers) {
            let j = self.jc + s * nr;
            let b_sliver = match b {
                BSlivers::Packed { chunk, first } => {
                    (chunk[(s - first) * nr * kc..].as_ptr(), nr as isize)
                }
                BSlivers::InPlace { origin, rs, .. } if s < self.plan.full_slivers => {
                    // SAFETY: full sliver s has NR in-range columns from jc + s·NR.
                    (unsafe { origin.get().add(s * nr) }, rs)
                }
                BSlivers::InPlace { tail, .. } => (tail.as_ptr(), nr as isize),
            };
            let cols = nr.min(self.n - j);
            // Tiles that write C in place, taken once per sliver: the ir
            // loop then calls them directly (at k = 10 a tile is about 160
            // cycles, and `run_tile`'s choices per tile cost several percent).
            let in_place = self.kernel.in_place_tiles(cols, c.cs);
            // ir: one sliver of the A block (≤ MR rows), those rows of C.
            for r in 0..mc.div_ceil(mr) {
                let (first_row, rows) = split.rows(r);
                let i = ic + first_row;
                let tile = c.ptr.wrapping_offset(i as isize * c.rs + j as isize * c.cs);
                if prefetch_c {
                    prefetch_tile(tile, [c.rs, c.cs], [rows, cols]);
                }
                let a_sliver = a_origin
                    .wrapping_offset(first_row as isize * per_row + r as isize * per_sliver);
                let epilogue = tile_epilogue(self.epilogue, i, j);
                // SAFETY: the tile C[i..i+rows, j..j+cols] is in range and
                // written by this task alone; the slivers are kc deep, and
                // A's sliver r lies inside the block (SliverSplit) or its
                // packed copy; an in-place tile is called with its columns
                // and C's unit column stride, as `in_place_tiles` requires.
                unsafe {
                    match in_place {
                        Some(tiles) => tiles[rows - 1](
                            k_steps(r),
                            alpha,
                            a_sliver,
                            a_strides,
                            b_sliver.0,
                            b_sliver.1,
                            beta,
                            tile,
                            c.rs,
                            epilogue.as_ref(),
                            cols,
                        ),
                        None => self.kernel.run_tile(
                            k_steps(r),
                            alpha,
                            (a_sliver, a_strides),
                            b_sliver,
                            beta,
                            tile,
                            [c.rs, c.cs],
                            [rows, cols],
                            &mut scratch,
                            epilogue.as_ref(),
                        ),
                    }
                }
            }
        }
    }
}

/// Starts pulling the first and last element of each row of a `rows × cols`
/// tile of C at `tile` into L1: the kernel touches C only after its k loop.
fn prefetch_tile<T>(tile: *mut T, [rs, cs]: [isize; 2], [rows, cols]: [usize; 2]) {
    for i in 0..rows as isize {
        let row = tile.wrapping_offset(i * rs).cast_const();
        prefetch_l1(row);
        prefetch_l1(row.wrapping_offset((cols as isize - 1) * cs));
    }
}

/// Bias and activation applied to `C = α·A·B + β·C` as it is stored:
/// `C ← act(C + bias)`, with `bias` one value per column of C.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue<T> {
    /// `n` values, one per column of C; `None` for no bias.
    pub(crate) bias: Option<Shared<*const T>>,
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
        origin: Shared<*const T>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar() -> &'static Kernel<f32> {
        super::super::kernel::lookup::<f32>(Isa::Scalar).expect("the scalar kernel always exists")
    }

    /// Strides of an `m × k` A and `k × n` B, row- or column-major.
    fn layout([m, k, n]: [usize; 3], a_col: bool, b_col: bool) -> Layout {
        let op = |rows: usize, cols: usize, col_major: bool| {
            let (rs, cs) = if col_major { (1, rows) } else { (cols, 1) };
            Operand {
                ptr: (),
                rs: rs as isize,
                cs: cs as isize,
            }
        };
        Layout {
            a: op(m, k, a_col),
            b: op(k, n, b_col),
            drop_zero_a: false,
            b_padded_cols: None,
        }
    }

    fn first_panel(threads: usize, shape: [usize; 3], layout: Layout) -> PanelPlan {
        let kernel = scalar();
        let blocks = Blocks::new(kernel, shape);
        let kc = blocks.kc.min(shape[1]);
        PanelPlan::new(
            kernel,
            threads,
            [shape[0], shape[2]],
            blocks,
            [0, kc],
            layout,
        )
    }

    #[test]
    fn blocks_are_equal_and_no_larger_than_the_kernels() {
        let kernel = scalar();
        // 784 deep on a 256-deep kernel: 4 panels of 196, not 3 × 256 + 16.
        assert_eq!(Blocks::new(kernel, [100, 784, 50]).kc, 196);
        // A tiny A is one block, whatever MC is.
        let tiny = Blocks::new(kernel, [300, 10, 50]);
        assert!(300 * 10 * 4 <= SINGLE_A_BLOCK_MAX_BYTES && 300 > kernel.mc);
        assert_eq!(tiny.mc, 300usize.next_multiple_of(kernel.mr));
        for len in [1, 3, 63, 64, 65, 255, 256, 257, 784, 4097] {
            let b = Blocks::new(kernel, [len, len, len]);
            let max_mc = match len * len * 4 <= SINGLE_A_BLOCK_MAX_BYTES {
                true => len.next_multiple_of(kernel.mr),
                false => kernel.mc,
            };
            for (block, max, unit) in [
                (b.mc, max_mc, kernel.mr),
                (b.kc, kernel.kc, 1),
                (b.nc, kernel.nc, kernel.nr),
            ] {
                assert!(block <= max && block % unit == 0, "{len}: block {block}");
                // As few blocks as the kernel's size allows.
                assert_eq!(
                    len.div_ceil(block),
                    len.div_ceil(max),
                    "{len}: block {block}"
                );
            }
        }
    }

    #[test]
    fn one_thread_never_shares_or_bands() {
        for shape in [
            [784, 128, 256],
            [32, 10, 256],
            [1024, 1024, 1024],
            [7, 3, 5],
        ] {
            for (a_col, b_col) in [(false, false), (true, false), (false, true)] {
                let plan = first_panel(1, shape, layout(shape, a_col, b_col));
                assert!(!plan.share_a && !plan.bands, "{shape:?}: {plan:?}");
                assert_eq!(plan.groups, 1, "{shape:?}: {plan:?}");
                assert_eq!(plan.per_group, plan.slivers);
            }
        }
    }

    #[test]
    fn groups_cover_every_sliver_once() {
        for threads in 1..=4 {
            for m in [1, 5, 64, 200, 784] {
                for n in [1, 4, 10, 33, 256, 1000] {
                    let shape = [m, 96, n];
                    let plan = first_panel(threads, shape, layout(shape, m % 2 == 1, false));
                    assert_eq!(plan.slivers, n.div_ceil(scalar().nr));
                    assert!(plan.groups * plan.per_group >= plan.slivers, "{plan:?}");
                    assert!(
                        (plan.groups - 1) * plan.per_group < plan.slivers,
                        "{plan:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_layout_follows_the_strides() {
        // Row-major A: read in place.
        let shape = [64, 128, 256];
        assert_eq!(
            first_panel(1, shape, layout(shape, false, false)).a_layout,
            ALayout::InPlace
        );
        // Column-major A (a weight gradient's dzᵀ): packed into slivers.
        assert_eq!(
            first_panel(1, shape, layout(shape, true, false)).a_layout,
            ALayout::Slivers
        );
        // Rows 4 KiB apart (1024 f32) meet many B slivers: copied to a padded stride.
        let aliased = [64, 1024, 256];
        assert_eq!(
            first_panel(1, aliased, layout(aliased, false, false)).a_layout,
            ALayout::Rows
        );
        // ... but not for a narrow panel, which reuses them too little.
        let narrow = [64, 1024, 8];
        assert_eq!(
            first_panel(1, narrow, layout(narrow, false, false)).a_layout,
            ALayout::InPlace
        );
        // Dropping zero columns always packs.
        let drop = Layout {
            drop_zero_a: true,
            ..layout(shape, false, false)
        };
        assert_eq!(first_panel(1, shape, drop).a_layout, ALayout::Slivers);
    }

    #[test]
    fn a_weight_gradient_shares_its_packed_a_in_bands_on_two_threads() {
        // dw = dzᵀ·x at batch 128: A column-major, 784 × 128 (401 KiB packed).
        let shape = [784, 128, 256];
        let plan = first_panel(2, shape, layout(shape, true, false));
        assert!(plan.share_a && plan.bands, "{plan:?}");
        assert_eq!(plan.groups, 8);
    }

    #[test]
    fn few_tasks_divide_evenly_among_the_threads() {
        // 11 blocks of A read in place: two tasks per block, 22 in all.
        let shape = [11 * scalar().mc, 96, 16];
        let plan = first_panel(2, shape, layout(shape, false, false));
        assert_eq!(
            (plan.a_layout, plan.share_a, plan.bands),
            (ALayout::InPlace, false, false)
        );
        assert_eq!(plan.blocks * plan.groups, 22, "{plan:?}");
        // Three threads would want 66; a block has only 4 slivers to split.
        let plan = first_panel(3, shape, layout(shape, false, false));
        assert_eq!(plan.groups, plan.slivers, "{plan:?}");
    }

    #[test]
    fn rows_copied_to_a_padded_stride_are_shared_by_the_tasks() {
        // Rows 4 KiB apart, three blocks, several groups each: copied once.
        let shape = [3 * scalar().mc, 1024, 256];
        let plan = first_panel(2, shape, layout(shape, false, false));
        assert_eq!(plan.a_layout, ALayout::Rows);
        assert!(plan.share_a, "{plan:?}");
        assert!(!first_panel(1, shape, layout(shape, false, false)).share_a);
    }

    #[test]
    fn a_deep_packed_a_panel_is_packed_once_for_all_bands() {
        // A column-major A 512 deep (a weight gradient at batch 512): bands
        // take every A block, so a pack per task would pack A once per band.
        let kernel = scalar();
        let plan = |m: usize| {
            let shape = [m, 512, 256];
            let blocks = Blocks::new(kernel, shape);
            let layout = layout(shape, true, false);
            PanelPlan::new(kernel, 2, [m, 256], blocks, [0, 512], layout)
        };
        let deep = plan(784);
        const { assert!(784 * 512 * 4 > SHARED_A_MAX_BYTES && 784 * 512 * 4 <= BANDS_MAX_A_BYTES) };
        assert_eq!(deep.a_layout, ALayout::Slivers);
        assert!(deep.bands && deep.share_a, "{deep:?}");
        // Too large to read again in every band: tasks of one A block each,
        // each packing its own block once.
        let large = plan(1100);
        assert!(!large.bands && !large.share_a, "{large:?}");
        assert_eq!(large.groups, 1);
    }

    #[test]
    fn a_cached_plan_is_the_plan_of_its_own_product() {
        // Products that differ in one thing each (shape, a stride, the
        // hints, the thread count) and whose plans differ: a key missing
        // any of them would hand one product another's plan. More products
        // than the cache holds, visited twice, so entries are replaced too.
        let kernel = scalar();
        let op = |rs: isize, cs: isize| Operand {
            ptr: core::ptr::null::<f32>(),
            rs,
            cs,
        };
        let c = |rs: isize, cs: isize| Operand {
            ptr: core::ptr::null_mut::<f32>(),
            rs,
            cs,
        };
        let plain = Hints::default();
        // A weight gradient's shape, dw = dzᵀ·x at batch 128.
        let dw = [784, 128, 256];
        let dropping = Hints::dropping_zeros(true);
        let padded = Hints {
            drop_zero_a: false,
            b_padded_cols: Some(16),
        };
        let products = [
            (1, [64, 96, 10], [op(96, 1), op(16, 1)], c(10, 1), plain),
            (1, [64, 96, 10], [op(1, 64), op(16, 1)], c(10, 1), plain),
            (1, [64, 96, 10], [op(96, 1), op(1, 96)], c(10, 1), plain),
            (1, [64, 96, 10], [op(96, 1), op(16, 1)], c(10, 1), dropping),
            (1, [64, 96, 10], [op(96, 1), op(16, 1)], c(10, 1), padded),
            (1, [32, 96, 10], [op(96, 1), op(16, 1)], c(10, 1), plain),
            (2, [64, 96, 10], [op(96, 1), op(16, 1)], c(10, 1), plain),
            (1, [8, 8, 32], [op(8, 1), op(32, 1)], c(32, 1), plain),
            (1, [8, 8, 32], [op(8, 1), op(32, 1)], c(1, 8), plain),
            (2, dw, [op(1, 784), op(256, 1)], c(256, 1), plain),
            (1, dw, [op(1, 784), op(256, 1)], c(256, 1), plain),
            (2, dw, [op(128, 1), op(256, 1)], c(256, 1), plain),
        ];
        let mut plans = Vec::new();
        for _ in 0..2 {
            for &(threads, shape, ab, c, hints) in &products {
                let plan = Plan::with_cached(kernel, threads, shape, ab, c, hints, |p| *p);
                assert_eq!(plan, Plan::new(kernel, threads, shape, ab, c, hints));
                plans.push(plan);
            }
        }
        // Each change above does change the plan: against the first of its
        // group (the first, the eighth, the tenth product).
        for (i, j) in [
            (1, 0),
            (2, 0),
            (3, 0),
            (4, 0),
            (5, 0),
            (6, 0),
            (8, 7),
            (10, 9),
            (11, 9),
        ] {
            assert_ne!(plans[i], plans[j], "products {i} and {j}");
        }
    }

    #[test]
    fn b_in_place_packs_only_a_partial_last_sliver() {
        // The scalar kernel reads row-major B in place for few rows of A.
        let shape = [8, 64, 10];
        let plan = first_panel(1, shape, layout(shape, false, false));
        assert!(plan.b_in_place, "{plan:?}");
        assert_eq!(
            (plan.slivers, plan.full_slivers, plan.packed_b_slivers()),
            (3, 2, 1)
        );
        // Padded far enough, nothing is packed.
        let padded = Layout {
            b_padded_cols: Some(12),
            ..layout(shape, false, false)
        };
        assert_eq!(first_panel(1, shape, padded).packed_b_slivers(), 0);
        // Column-major B is packed whole.
        let plan = first_panel(1, shape, layout(shape, false, true));
        assert!(!plan.b_in_place);
        assert_eq!(plan.packed_b_slivers(), 3);
    }
}

//! Products of one row (a single sample's forward pass): a vector times a
//! matrix, on the ISA's one-row kernel.
//!
//! The blocked driver tiles C in `MR × NR` blocks, so a single row gets a
//! `1 × NR` tile: two accumulators on AVX-512, each a chain of k dependent
//! FMAs, and the tile waits on their latency; and its B slivers, half a
//! row of a 256-wide B each, stream from L2 slower than whole rows. Here
//! the row runs on the one-row kernel (1 × 256 f32 on AVX-512), whose
//! sixteen accumulators cover the latency, and B is read in place, row
//! after row, with no packing: one pass over B at the bandwidth of the
//! cache that holds it. Only the nonzero values of A are multiplied when
//! its zeros are dropped (an image: about a fifth of the k steps). Columns
//! left over go to the full and narrow kernels, and only a last partial
//! tile of B (narrower than the narrowest kernel) is copied, unless B is
//! padded so that it can be read in place too.
//!
//! # Same bits as the blocked driver
//! k is split into the same panels as there ([`balanced`] with the full
//! kernel's KC, which the one-row kernel shares), and every kernel computes
//! a C element as one sequence of FMAs over the panel's k steps in order,
//! starting from zero, then the same `β·C + α·AB` store and the same
//! epilogue. A row of C is therefore bitwise the same computed alone or in
//! a batch of 1000 through [`blocked`](super::blocked), on any number of
//! threads. Where A's zeros are dropped, the set of skipped steps differs
//! between a lone row and a 12-row sliver, but skipping an
//! exact zero only changes a result whose true value is a signed zero, or
//! one that meets ∞ or NaN in B (a skipped `0·∞` is not NaN).

use rayon::prelude::*;

use super::{Epilogue, Operand, balanced, tile_epilogue};
use crate::gemm::Shared;
use crate::gemm::kernel::{EdgeTile, KSteps, Kernel};
use crate::gemm::pack::{PackBuf, pack_b_panel};
use crate::isa::{Element, prefetch_l1};
use crate::par::min_parallel_work;

/// Copies the nonzero values of the `values.len()` values at `a + p·step`
/// into `values`, their indices `p` into `steps`, and returns how many.
/// Branch-free: an image row's zeros fall in no pattern a branch predictor
/// could learn.
///
/// # Safety
/// `a + p·step` readable for `p < values.len() ≤ steps.len()`.
unsafe fn nonzeros<T: Element>(
    a: *const T,
    step: isize,
    values: &mut [T],
    steps: &mut [u16],
) -> usize {
    let mut kept = 0;
    for p in 0..values.len() {
        // SAFETY: in range (caller contract).
        let v = unsafe { *a.offset(p as isize * step) };
        values[kept] = v;
        steps[kept] = p as u16;
        kept += usize::from(v != T::ZERO);
    }
    kept
}

/// The column tiles of the row: as many tiles of the widest kernel as
/// fit, then of the next, and one partial tile of the narrowest for what is
/// left.
#[derive(Clone, Copy)]
struct ColumnPlan<'k, T: 'static> {
    /// The kernels, widest first, and how many full tiles each gets.
    widths: [(&'k Kernel<T>, usize); 3],
    /// Columns left for a partial tile of the narrowest kernel (`< its NR`).
    rest: usize,
}

impl<'k, T: Element> ColumnPlan<'k, T> {
    fn new(kernels: [&'k Kernel<T>; 3], n: usize) -> Self {
        let mut left = n;
        let widths = kernels.map(|k| {
            let full = left / k.nr;
            left -= full * k.nr;
            (k, full)
        });
        ColumnPlan { widths, rest: left }
    }

    fn tiles(&self) -> usize {
        self.widths.iter().map(|w| w.1).sum::<usize>() + usize::from(self.rest > 0)
    }

    /// Tile `t`: its kernel, first column, and width.
    fn tile(&self, mut t: usize) -> (&'k Kernel<T>, usize, usize) {
        let mut j = 0;
        for &(kernel, full) in &self.widths {
            if t < full {
                return (kernel, j + t * kernel.nr, kernel.nr);
            }
            t -= full;
            j += full * kernel.nr;
        }
        (self.widths[2].0, j, self.rest)
    }
}

/// `C ← α·A·B + β·C` for one row of A and C, on `one_row` (the ISA's
/// one-row kernel), B with unit column stride read in place; `kernel` is
/// the full kernel of the ISA (it sets the panels and takes the leftover
/// columns). `b_cols` columns of B are readable (at least `n`; more when B
/// is padded).
///
/// # Safety
/// As [`super::gemm`] with `m = 1`, `k ≥ 1`, `b.cs = 1` and `B[p, j]`
/// readable for `j < b_cols`.
// Out of line: inlined, it grows the blocked driver's entry, which the
// smallest products pay for.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm<T: Element>(
    kernel: &'static Kernel<T>,
    one_row: &'static Kernel<T>,
    max_threads: usize,
    [k, n]: [usize; 2],
    alpha: T,
    a: Operand<*const T>,
    b: Operand<*const T>,
    beta: T,
    c: Operand<*mut T>,
    epilogue: Option<(Epilogue<T>, bool)>,
    drop_zero_a: bool,
    b_cols: usize,
) {
    debug_assert!(one_row.mr == 1 && b.cs == 1 && k >= 1 && b_cols >= n);
    let narrowest = kernel
        .variants(k)
        .last()
        .expect("a kernel has itself as a variant");
    // The one-row kernel writes C with vector stores; a C with strided
    // columns would put its tiles through the temporary edge tile, whose
    // bias padding only fits the full kernels' NR.
    let widest = if c.cs == 1 { one_row } else { kernel };
    let plan = ColumnPlan::new([widest, kernel, narrowest], n);
    let threads = if n.saturating_mul(k) < min_parallel_work() {
        1
    } else {
        max_threads.max(1)
    };
    let kc_blk = balanced(k, kernel.kc, 1);
    let (mut a_buf, mut steps_buf, mut tail_buf) =
        (PackBuf::for_a(), PackBuf::for_steps(), PackBuf::for_b());
    let (c_ptr, c_strides) = (Shared(c.ptr), c.strides());
    let (b_ptr, rsb) = (Shared(b.ptr), b.rs);

    // pc: a KC-deep slice of k, as in the blocked driver.
    for pc in (0..k).step_by(kc_blk) {
        let kc = kc_blk.min(k - pc);
        let beta = if pc == 0 { beta } else { T::ONE };
        let last_panel = pc + kc == k;

        // SAFETY: forwarded caller contract.
        let (k_steps, a_sliver) =
            unsafe { a_row_panel(a, [pc, kc], drop_zero_a, &mut a_buf, &mut steps_buf) };
        // SAFETY: forwarded caller contract.
        let tail = unsafe { pack_tail(&plan, b, [pc, kc], b_cols, &mut tail_buf) };

        // One column tile of the row.
        let run = |t: usize, scratch: &mut EdgeTile<T>| {
            let (tile_kernel, j, cols) = plan.tile(t);
            let b_sliver = match tail {
                Some(tail) if t + 1 == plan.tiles() => (tail.as_ptr(), tile_kernel.nr as isize),
                // SAFETY: B[pc.., j..j+NR] is readable (a full tile, or padding).
                _ => (
                    unsafe { b_ptr.get().offset(pc as isize * rsb + j as isize) },
                    rsb,
                ),
            };
            // SAFETY: C[0..m, j..j+cols] is in range and written by this tile
            // alone; the A sliver and B rows are kc deep.
            unsafe {
                let c_tile = c_ptr.get().offset(j as isize * c_strides[1]);
                tile_kernel.run_tile(
                    k_steps,
                    alpha,
                    (a_sliver.0.get(), a_sliver.1),
                    b_sliver,
                    beta,
                    c_tile,
                    c_strides,
                    [1, cols],
                    scratch,
                    tile_epilogue(epilogue.filter(|_| last_panel), 0, j).as_ref(),
                );
            }
        };
        if threads > 1 {
            (0..plan.tiles())
                .into_par_iter()
                .for_each_init(EdgeTile::new, |scratch, t| run(t, scratch));
        } else {
            let mut scratch = EdgeTile::new();
            (0..plan.tiles()).for_each(|t| run(t, &mut scratch));
        }
    }
}

/// The A row of the panel `pc..pc + kc`: read in place, or with its zeros
/// dropped, its nonzero values copied out with their k indices. Returns the
/// k steps and the sliver (pointer and strides) for the tiles.
///
/// # Safety
/// `A[0, pc..pc + kc]` readable.
unsafe fn a_row_panel<'b, T: Element>(
    a: Operand<*const T>,
    [pc, kc]: [usize; 2],
    drop_zero_a: bool,
    a_buf: &'b mut PackBuf,
    steps_buf: &'b mut PackBuf,
) -> (KSteps<'b>, (Shared<*const T>, [isize; 2])) {
    let a_row = a.ptr.wrapping_offset(pc as isize * a.cs);
    if drop_zero_a {
        let (values, steps) = (a_buf.slice::<T>(kc), steps_buf.slice::<u16>(kc));
        // SAFETY: A[0, pc..pc+kc] is in range (caller contract).
        let kept = unsafe { nonzeros(a_row, a.cs, values, steps) };
        let values: &[T] = values;
        let steps = match kept {
            _ if kept == kc => KSteps::All(kc),
            _ => KSteps::Listed(&steps[..kept]),
        };
        (steps, (Shared(values.as_ptr()), [0, 1]))
    } else {
        // A new input row often comes from memory (a request, the next
        // sample of a large set): ask for all of it now rather than a line
        // at a time as the k loop reaches it.
        if a.cs == 1 {
            for offset in (0..kc * size_of::<T>()).step_by(64) {
                prefetch_l1(a_row.cast::<u8>().wrapping_add(offset));
            }
        }
        (KSteps::All(kc), (Shared(a_row), a.strides()))
    }
}

/// The partial last tile's B sliver for the panel `pc..pc + kc`: `None`
/// when there is none or B is padded far enough to be read in place;
/// otherwise its columns copied into a zero-padded sliver in `tail_buf`.
///
/// # Safety
/// `B[pc..pc + kc, j]` readable for the plan's columns (`b.cs = 1`).
unsafe fn pack_tail<'b, T: Element>(
    plan: &ColumnPlan<'_, T>,
    b: Operand<*const T>,
    [pc, kc]: [usize; 2],
    b_cols: usize,
    tail_buf: &'b mut PackBuf,
) -> Option<&'b [T]> {
    let cols = plan.rest;
    if cols == 0 {
        return None;
    }
    let (narrow, j, _) = plan.tile(plan.tiles() - 1);
    (j + narrow.nr > b_cols).then(|| {
        let out = tail_buf.slice::<T>(kc * narrow.nr);
        // SAFETY: B[pc..pc+kc, j..j+cols] is in range (caller contract).
        unsafe {
            let origin = b.ptr.offset(pc as isize * b.rs + j as isize);
            pack_b_panel(narrow.nr, cols, origin, b.strides(), out, false);
        }
        &*out
    })
}

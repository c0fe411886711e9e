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
//! # Threads and determinism
//!
//! Work is split only over tiles of C (the `ic` blocks and groups of `jr`
//! slivers), never over k, and the block sizes come from the kernel, never
//! from the thread count. Every element of C therefore sees the same
//! sequence of floating-point operations whatever the number of threads:
//! results are bitwise identical for 1, 2, 3 or more threads. The same holds
//! for the choice of orientation (computing `Cᵀ = BᵀAᵀ` for skinny shapes),
//! which depends on the shape and strides alone.

use rayon::prelude::*;

use super::element::Element;
use super::kernel::Kernel;
use super::pack::{PackBuf, SharedPtr, pack_a_block, pack_b_panel};

/// Below this many multiply-adds (`m·n·k`) a GEMM runs on the calling thread:
/// waking the pool costs more than it saves (~2^20 is ≈ 20 µs on one core).
const PAR_MIN_WORK: usize = 1 << 20;

/// Extra cost charged to an orientation whose C tiles cannot be stored with
/// vector stores (non-unit column stride), relative to padded tile area.
const STRIDED_STORE_PENALTY: f64 = 1.15;

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

/// `C ← α·A·B + β·C` for an `m × k` A and a `k × n` B on `kernel`, using up to
/// `max_threads` threads of the current rayon pool (1: no rayon calls at all).
///
/// # Safety
/// Every element `A[i, p]`, `B[p, j]`, `C[i, j]` in range must be valid
/// (C for reads unless `β = 0`, and for writes); distinct `(i, j)` must
/// address distinct elements of C, which must not overlap A or B.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm<T: Element>(
    kernel: &Kernel<T>,
    max_threads: usize,
    [m, k, n]: [usize; 3],
    alpha: T,
    a: Operand<*const T>,
    b: Operand<*const T>,
    beta: T,
    c: Operand<*mut T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || alpha == T::ZERO {
        // A and B are never read: C ← β·C (β = 0 writes zeros without reading C).
        // SAFETY: forwarded caller contract for C.
        unsafe { scale(m, n, beta, c) };
        return;
    }
    // Skinny shapes waste less of each tile computed transposed: Cᵀ = Bᵀ·Aᵀ.
    let cost = |rows: usize, cols: usize, unit_store: bool| {
        let area = rows.div_ceil(kernel.mr) * kernel.mr * cols.div_ceil(kernel.nr) * kernel.nr;
        area as f64
            * if unit_store {
                1.0
            } else {
                STRIDED_STORE_PENALTY
            }
    };
    let (m, n, a, b, c) = if cost(n, m, c.rs == 1) < cost(m, n, c.cs == 1) {
        (n, m, b.t(), a.t(), c.t())
    } else {
        (m, n, a, b, c)
    };
    let threads = if m.saturating_mul(n).saturating_mul(k) < PAR_MIN_WORK {
        1
    } else {
        max_threads.max(1)
    };
    // SAFETY: forwarded caller contract.
    unsafe { blocked(kernel, threads, [m, k, n], alpha, a, b, beta, c) }
}

/// The five loops (see the module docs).
///
/// # Safety
/// As [`gemm`], with `k ≥ 1`.
#[allow(clippy::too_many_arguments)]
unsafe fn blocked<T: Element>(
    kernel: &Kernel<T>,
    threads: usize,
    [m, k, n]: [usize; 3],
    alpha: T,
    a: Operand<*const T>,
    b: Operand<*const T>,
    beta: T,
    c: Operand<*mut T>,
) {
    let Kernel { mr, nr, .. } = *kernel;
    // Plain copies of the pointers and strides, so the parallel task captures only Sync values.
    let (c_ptr, c_strides) = (SharedMutPtr(c.ptr), c.strides());
    let (a_ptr, a_strides) = (SharedPtr(a.ptr), a.strides());
    let mut b_buf = PackBuf::for_b();

    // jc: a column panel of B and the matching columns of C.
    for jc in (0..n).step_by(kernel.nc) {
        let nc = kernel.nc.min(n - jc);
        let slivers = nc.div_ceil(nr);

        // pc: a KC-deep slice of k: columns of A, rows of the B panel.
        for pc in (0..k).step_by(kernel.kc) {
            let kc = kernel.kc.min(k - pc);
            // Later k panels accumulate onto what the first one wrote.
            let beta = if pc == 0 { beta } else { T::ONE };

            let b_packed = b_buf.slice::<T>(slivers * nr * kc);
            // SAFETY: B[pc..pc+kc, jc..jc+nc] is in range (caller contract).
            unsafe {
                let origin = b.ptr.offset(pc as isize * b.rs + jc as isize * b.cs);
                pack_b_panel(nr, nc, origin, b.strides(), b_packed, threads > 1);
            }
            let b_packed = &*b_packed;

            // ic × jr groups: the units of parallel work. Each task packs its
            // own A block, so a block split over jr groups is packed once per
            // group, a cost of 1/(NC/groups) of its multiply work.
            let blocks = m.div_ceil(kernel.mc);
            let groups = if threads > 1 {
                (4 * threads).div_ceil(blocks).clamp(1, slivers)
            } else {
                1
            };
            let task = |t: usize| {
                let (block, group) = (t / groups, t % groups);
                let ic = block * kernel.mc;
                let mc = kernel.mc.min(m - ic);
                let mut a_buf = PackBuf::for_a();
                let a_packed = a_buf.slice::<T>(mc.div_ceil(mr) * mr * kc);
                // SAFETY: A[ic..ic+mc, pc..pc+kc] is in range (caller contract).
                unsafe {
                    let origin = a_ptr
                        .get()
                        .offset(ic as isize * a_strides[0] + pc as isize * a_strides[1]);
                    pack_a_block(mr, mc, origin, a_strides, a_packed);
                }
                let (s0, s1) = (group * slivers / groups, (group + 1) * slivers / groups);

                // jr: one NR-wide sliver of the packed B panel, NR columns of C.
                for (s, b_sliver) in b_packed.chunks_exact(nr * kc).enumerate().take(s1).skip(s0) {
                    let j = jc + s * nr;
                    let cols = nr.min(n - j);
                    // ir: one MR-tall sliver of the packed A block, MR rows of C.
                    for (r, a_sliver) in a_packed.chunks_exact(mr * kc).enumerate() {
                        let i = ic + r * mr;
                        let rows = mr.min(m - i);
                        // SAFETY: the tile C[i..i+rows, j..j+cols] is in range and
                        // written by this task alone; the slivers are kc deep.
                        unsafe {
                            let tile = c_ptr
                                .get()
                                .offset(i as isize * c_strides[0] + j as isize * c_strides[1]);
                            kernel.run_tile(
                                kc,
                                alpha,
                                a_sliver.as_ptr(),
                                b_sliver.as_ptr(),
                                beta,
                                tile,
                                c_strides,
                                [rows, cols],
                            );
                        }
                    }
                }
            };
            if threads > 1 {
                (0..blocks * groups).into_par_iter().for_each(task);
            } else {
                (0..blocks).for_each(task);
            }
        }
    }
}

/// `C ← β·C`, writing zeros without reading C when `β = 0`.
///
/// # Safety
/// `C[i, j]` valid for writes (and reads unless `β = 0`) for `i < m`, `j < n`.
unsafe fn scale<T: Element>(m: usize, n: usize, beta: T, c: Operand<*mut T>) {
    for i in 0..m {
        for j in 0..n {
            // SAFETY: (i, j) is in range (caller contract).
            unsafe {
                let p = c.ptr.offset(i as isize * c.rs + j as isize * c.cs);
                *p = if beta == T::ZERO { T::ZERO } else { beta * *p };
            }
        }
    }
}

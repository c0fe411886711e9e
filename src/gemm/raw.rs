//! Raw entry points with `matrixmultiply`'s exact signature and semantics.
//!
//! A crate using `matrixmultiply::sgemm` switches by changing the path to
//! `densekit::sgemm`; arguments and meaning are the same.

use super::Shared;
use super::driver::{self, Operand};
use crate::isa::Element;
use crate::isa::Isa;
use crate::par::Par;

/// Shared body of [`sgemm`] and [`dgemm`].
///
/// # Safety
/// As [`sgemm`].
unsafe fn gemm_raw<T: Element>(
    [m, k, n]: [usize; 3],
    alpha: T,
    a: Operand<*const T>,
    b: Operand<*const T>,
    beta: T,
    c: Operand<*mut T>,
) {
    let kernel = super::kernel::lookup::<T>(Isa::selected())
        .expect("the selected ISA was detected at startup");
    let (a, b, c) = (Shared(a), Shared(b), Shared(c));
    let work = m.saturating_mul(n).saturating_mul(k);
    // The current rayon pool sets the threads (`Par::Auto`).
    Par::Auto.run_in_parts(work, driver::PARTS_MAX_WORK, move |share| {
        // SAFETY: forwarded caller contract.
        unsafe {
            driver::gemm(
                kernel,
                share,
                [m, k, n],
                alpha,
                a.get(),
                b.get(),
                beta,
                c.get(),
                None,
                driver::Hints::default(),
            )
        }
    })
}

macro_rules! raw_gemm {
    ($(#[$doc:meta])* $name:ident, $t:ty) => {
        $(#[$doc])*
        ///
        /// `C ← α·A·B + β·C`, where A is `m × k`, B is `k × n` and C is `m × n`.
        /// Element `(i, j)` of A is at `a + i·rsa + j·csa`, and likewise for B
        /// and C. Strides may be any value for A and B (negative, or zero to
        /// broadcast a row or column); C's strides must address each element once.
        ///
        /// * `β = 0`: C is never read, so it may hold NaN or garbage.
        /// * `α = 0` or `k = 0`: A and B are never read; `C ← β·C`.
        /// * `m = 0` or `n = 0`: nothing is read or written.
        ///
        /// Runs on the rayon pool it is called from (wrap the call in
        /// `pool.install` to choose the threads; from outside any pool, the
        /// global pool, with the calling thread computing a share); small
        /// products stay on the calling thread. The result is bitwise
        /// identical for any number of threads. The kernel is chosen once
        /// per process: see [`Isa::selected`].
        ///
        /// # Safety
        /// For every in-range `(i, p)`, `(p, j)` and `(i, j)`: the A and B
        /// elements must be valid for reads and the C elements for writes (and
        /// for reads unless `β = 0`); distinct `(i, j)` must not alias in C,
        /// and C must not overlap A or B. For the safe equivalent see
        /// [`gemm`](crate::gemm::gemm).
        ///
        /// # Examples
        /// ```
        #[doc = concat!("let a: [", stringify!($t), "; 6] = [1., 2., 3., 4., 5., 6.]; // 2 × 3, row-major")]
        #[doc = concat!("let b: [", stringify!($t), "; 3] = [1., 0., -1.];           // 3 × 1")]
        #[doc = concat!("let mut c = [", stringify!($t), "::NAN; 2];                  // β = 0: never read")]
        /// // SAFETY: every index in range of the slices above.
        /// unsafe {
        #[doc = concat!("    densekit::", stringify!($name), "(2, 3, 1, 1.0, a.as_ptr(), 3, 1, b.as_ptr(), 1, 1,")]
        ///         0.0, c.as_mut_ptr(), 1, 1);
        /// }
        /// assert_eq!(c, [-2.0, -2.0]);
        /// ```
        pub unsafe fn $name(
            m: usize,
            k: usize,
            n: usize,
            alpha: $t,
            a: *const $t,
            rsa: isize,
            csa: isize,
            b: *const $t,
            rsb: isize,
            csb: isize,
            beta: $t,
            c: *mut $t,
            rsc: isize,
            csc: isize,
        ) {
            let op = |ptr, rs, cs| Operand { ptr, rs, cs };
            // SAFETY: forwarded caller contract.
            unsafe {
                gemm_raw(
                    [m, k, n],
                    alpha,
                    op(a, rsa, csa),
                    op(b, rsb, csb),
                    beta,
                    Operand { ptr: c, rs: rsc, cs: csc },
                )
            }
        }
    };
}

raw_gemm!(
    /// Single-precision general matrix multiplication.
    sgemm,
    f32
);
raw_gemm!(
    /// Double-precision general matrix multiplication.
    dgemm,
    f64
);

//! General matrix multiplication: `C ← α·A·B + β·C`.
//!
//! * [`gemm`] is the safe API over [`MatRef`] / [`MatMut`] views.
//! * [`sgemm`](crate::sgemm) / [`dgemm`](crate::dgemm) are raw entry points with
//!   `matrixmultiply`'s signature.
//! * [`reference`](mod@reference) holds the naive triple loop that tests and benchmarks
//!   check against.
//!
//! The implementation follows BLIS: A and B are packed into cache-sized
//! panels (`pack`), and five loops (`driver`) walk them around a
//! register-tiled microkernel (`kernel`), chosen at run time for the CPU
//! ([`Isa`]).

mod driver;
pub(crate) mod kernel;
#[cfg(feature = "ndarray")]
pub mod ndarray;
mod pack;
pub(crate) mod raw;
pub mod reference;
mod view;

pub use crate::isa::{Element, ISA_ENV_VAR, Isa, IsaUnavailable};
pub use crate::par::Par;
pub use view::{MatMut, MatRef};

use crate::activation::Activation;
pub(crate) use driver::Hints;
pub(crate) use driver::unaliased_row_stride;
use driver::{Epilogue, Operand};
pub(crate) use pack::transpose_padded;

/// Rows of A in one packed sliver of the f32 kernel for `isa` (its MR): the
/// rows whose all-zero columns a zero-skipping product drops together.
pub(crate) fn f32_sliver_rows(isa: Isa) -> usize {
    kernel::lookup::<f32>(isa).map_or(1, |k| k.mr)
}

/// What happens to the previous contents of C.
///
/// ```
/// use densekit::gemm::{gemm, Accum, MatMut, MatRef, Par};
/// let (a, b) = ([2.0f32], [3.0f32]);
/// let mut c = [1.0f32];
/// let (av, bv) = (MatRef::from_row_major(&a, 1, 1), MatRef::from_row_major(&b, 1, 1));
/// gemm(MatMut::from_row_major(&mut c, 1, 1), Accum::Add, av, bv, 1.0, Par::Seq);
/// assert_eq!(c, [7.0]); // 1 + 2·3
/// gemm(MatMut::from_row_major(&mut c, 1, 1), Accum::Scaled(0.5), av, bv, 1.0, Par::Seq);
/// assert_eq!(c, [9.5]); // 0.5·7 + 6
/// gemm(MatMut::from_row_major(&mut c, 1, 1), Accum::Replace, av, bv, 1.0, Par::Seq);
/// assert_eq!(c, [6.0]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accum<T> {
    /// `C ← α·A·B`. C is never read, so it may hold NaN or garbage.
    Replace,
    /// `C ← C + α·A·B`.
    Add,
    /// `C ← β·C + α·A·B` (BLAS's β; `Scaled(0)` behaves as `Replace`).
    Scaled(T),
}

impl<T: Element> Accum<T> {
    /// The BLAS β this corresponds to.
    ///
    /// ```
    /// use densekit::gemm::Accum;
    /// assert_eq!(Accum::<f32>::Add.beta(), 1.0);
    /// assert_eq!(Accum::Scaled(0.5f32).beta(), 0.5);
    /// ```
    pub fn beta(self) -> T {
        match self {
            Accum::Replace => T::ZERO,
            Accum::Add => T::ONE,
            Accum::Scaled(beta) => beta,
        }
    }
}

/// `C ← α·A·B + β·C` on matrix views, with β given by `accum`.
///
/// A is `m × k`, B is `k × n`, C is `m × n`; each may have any strides
/// (transposed views from `.t()` included). Uses the kernel of
/// [`Isa::selected`] and the threads `par` allows; the result is bitwise
/// identical for every `par`, and batch-invariant: a row of C gets the same
/// bits computed alone (`m = 1`, which runs on a one-row kernel) as inside
/// a product of any number of rows.
///
/// # Panics
/// * If `A.ncols() != B.nrows()` (names both shapes).
/// * If `C` is not `A.nrows() × B.ncols()` (names both shapes).
/// * On `Par::Threads(0)`, or if the threads of a `Par::Threads` pool
///   cannot be started (check with [`Par::ready`] first to get an error).
///
/// # Examples
/// ```
/// use densekit::gemm::{gemm, Accum, MatMut, MatRef, Par};
/// // A layer's pre-activation z = x·wᵀ with x (batch = 2, in = 3), w (out = 2, in = 3).
/// let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let w = [1.0f32, 0.0, 0.0, 0.0, 1.0, 1.0];
/// let mut z = [f32::NAN; 4];
/// gemm(
///     MatMut::from_row_major(&mut z, 2, 2),
///     Accum::Replace,
///     MatRef::from_row_major(&x, 2, 3),
///     MatRef::from_row_major(&w, 2, 3).t(),
///     1.0,
///     Par::Seq,
/// );
/// assert_eq!(z, [1.0, 5.0, 4.0, 11.0]);
/// ```
#[track_caller]
pub fn gemm<T: Element>(
    c: MatMut<'_, T>,
    accum: Accum<T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    alpha: T,
    par: Par,
) {
    gemm_with_isa(Isa::selected(), c, accum, a, b, alpha, par)
        .expect("the selected ISA is always available");
}

/// [`gemm`] on the kernel of a given instruction set, for tests and
/// benchmarks that compare paths. Never falls back to another ISA.
///
/// # Errors
/// [`IsaUnavailable`] if this CPU lacks `isa`; nothing is computed then.
///
/// # Panics
/// As [`gemm`].
///
/// ```
/// use densekit::gemm::{gemm_with_isa, Accum, Isa, MatMut, MatRef, Par};
/// let a = [2.0f64];
/// let mut c = [1.0f64];
/// gemm_with_isa(Isa::Scalar, MatMut::from_row_major(&mut c, 1, 1), Accum::Add,
///     MatRef::from_row_major(&a, 1, 1), MatRef::from_row_major(&a, 1, 1), 1.0, Par::Seq)
///     .unwrap();
/// assert_eq!(c, [5.0]);
/// ```
#[track_caller]
pub fn gemm_with_isa<T: Element>(
    isa: Isa,
    c: MatMut<'_, T>,
    accum: Accum<T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    alpha: T,
    par: Par,
) -> Result<(), IsaUnavailable> {
    gemm_fused(isa, c, accum, a, b, alpha, None, Hints::default(), par)
}

/// Bias and activation fused into a GEMM's store: `C ← act(α·A·B + β·C + bias)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fused<'a, T> {
    /// One value per column of C.
    pub(crate) bias: Option<&'a [T]>,
    pub(crate) act: Activation,
}

/// The GEMM behind every safe entry point, with an optional fused epilogue.
///
/// # Panics
/// As [`gemm`], and if a bias does not have one value per column of C.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_fused<T: Element>(
    isa: Isa,
    mut c: MatMut<'_, T>,
    accum: Accum<T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    alpha: T,
    fused: Option<Fused<'_, T>>,
    hints: Hints,
    par: Par,
) -> Result<(), IsaUnavailable> {
    let (m, k) = a.shape();
    let (kb, n) = b.shape();
    assert!(
        k == kb,
        "gemm: A is {m}×{k} and B is {kb}×{n}: A's columns must equal B's rows"
    );
    assert!(
        c.shape() == (m, n),
        "gemm: C is {}×{} but A·B is {m}×{n} (A is {m}×{k}, B is {kb}×{n})",
        c.nrows(),
        c.ncols()
    );
    if let Some(Fused {
        bias: Some(bias), ..
    }) = fused
    {
        assert!(
            bias.len() == n,
            "gemm: the bias has {} values but C is {m}×{n} (one per column)",
            bias.len()
        );
    }
    // A padded B is only read as far as its slice reaches.
    let hints = Hints {
        b_padded_cols: hints
            .b_padded_cols
            .map(|cols| cols.min(b.readable_cols()))
            .filter(|&cols| cols >= n),
        ..hints
    };
    let kernel = kernel::lookup::<T>(isa).ok_or(IsaUnavailable(isa))?;
    debug_assert_eq!(
        kernel.isa(),
        isa,
        "a kernel must never stand in for another ISA"
    );
    let a_op = Operand {
        ptr: a.as_ptr(),
        rs: a.row_stride(),
        cs: a.col_stride(),
    };
    let b_op = Operand {
        ptr: b.as_ptr(),
        rs: b.row_stride(),
        cs: b.col_stride(),
    };
    let (rsc, csc) = (c.row_stride(), c.col_stride());
    let c_op = Operand {
        ptr: c.as_mut_ptr(),
        rs: rsc,
        cs: csc,
    };
    let epilogue = fused.map(|f| Epilogue {
        bias: f.bias.map(|b| Shared(b.as_ptr())),
        act: f.act,
    });
    let beta = accum.beta();
    let (a_op, b_op, c_op) = (Shared(a_op), Shared(b_op), Shared(c_op));
    let work = m.saturating_mul(n).saturating_mul(k);
    // Skipping zero columns depends on which rows share a sliver, so a
    // product that does is never cut into parts (see `PARTS_MAX_WORK`).
    let parts_below = match hints.drop_zero_a {
        true => 0,
        false => driver::PARTS_MAX_WORK,
    };
    par.run_in_parts(work, parts_below, move |share| {
        // SAFETY: the views were bounds-checked at construction, so every
        // in-range element is inside its slice; C's layout was checked not to
        // alias itself, and the borrow checker keeps it apart from A, B and
        // the bias, which has one value per column of C (checked above).
        unsafe {
            driver::gemm(
                kernel,
                share,
                [m, k, n],
                alpha,
                a_op.get(),
                b_op.get(),
                beta,
                c_op.get(),
                epilogue,
                hints,
            )
        }
    });
    Ok(())
}

/// A pointer, or an operand of pointers, handed to the threads of one
/// GEMM call: the one `Send` wrapper of the driver and packing code.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shared<P>(pub(crate) P);

impl<P: Copy> Shared<P> {
    // A method (not field access) so closures capture the whole wrapper.
    #[inline(always)]
    pub(crate) fn get(self) -> P {
        self.0
    }
}

// SAFETY: a `Shared` only ever holds pointers into the operands of a GEMM
// call that blocks until every thread is done with them. A and B (and the
// bias) are only read during the call; each element of C is written by the
// one task that owns its tile; the raw entry points' callers promise the
// operands stay valid and unaliased for the whole call.
unsafe impl<P> Send for Shared<P> {}
// SAFETY: as above.
unsafe impl<P> Sync for Shared<P> {}

//! The naive reference GEMM: the oracle that tests, fuzz targets and
//! benchmarks compare the optimized kernels against.
//!
//! Plain loops over views, no blocking, no SIMD, no threads. Products are
//! accumulated in `f64`, so for `f32` inputs the reference is more accurate
//! than any f32 kernel and is a sound yardstick for error bounds.

use super::{Accum, Element, MatMut, MatRef};

/// `C ← α·A·B + β·C` by the textbook triple loop, accumulating in `f64`.
///
/// Follows the same rules as [`gemm`](super::gemm): `Accum::Replace` never
/// reads C, and `α = 0` never reads A or B.
///
/// # Panics
/// On mismatched shapes, naming both.
///
/// ```
/// use densekit::gemm::{reference, Accum, MatMut, MatRef};
/// let a = [1.0f32, 2.0, 3.0, 4.0];
/// let mut c = [0.0f32; 4];
/// reference::gemm(MatMut::from_row_major(&mut c, 2, 2), Accum::Replace,
///     MatRef::from_row_major(&a, 2, 2), MatRef::from_row_major(&a, 2, 2), 1.0);
/// assert_eq!(c, [7.0, 10.0, 15.0, 22.0]);
/// ```
#[track_caller]
pub fn gemm<T: Element>(
    mut c: MatMut<'_, T>,
    accum: Accum<T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    alpha: T,
) {
    let ((m, k), (kb, n)) = (a.shape(), b.shape());
    assert!(
        k == kb,
        "reference::gemm: A is {m}×{k} and B is {kb}×{n}: A's columns must equal B's rows"
    );
    assert!(
        c.shape() == (m, n),
        "reference::gemm: C is {}×{} but A·B is {m}×{n}",
        c.nrows(),
        c.ncols()
    );
    let beta = accum.beta();
    for i in 0..m {
        for j in 0..n {
            let ab = if alpha == T::ZERO {
                0.0
            } else {
                (0..k)
                    .map(|p| a.get(i, p).to_f64() * b.get(p, j).to_f64())
                    .sum::<f64>()
            };
            let prior = if beta == T::ZERO {
                0.0
            } else {
                beta.to_f64() * c.get(i, j).to_f64()
            };
            c.set(i, j, T::from_f64(alpha.to_f64() * ab + prior));
        }
    }
}

/// The forward error bound a correct GEMM meets, element by element:
/// `γ·(k + 2)·(ε·(|α|·Σₚ|A[i,p]|·|B[p,j]| + |β|·|C₀[i,j]|) + η)` with
/// `γ = 2` and `η` the smallest subnormal.
///
/// This is the standard bound for a recursively summed dot product (k
/// roundings, plus the α and β scalings), with a safety factor, plus the
/// absolute error of roundings in the subnormal range (where the relative
/// model fails: found by fuzzing). Returns an `m × n` row-major vector of
/// per-element bounds.
///
/// ```
/// use densekit::gemm::{reference, MatRef};
/// let a = [1.0f32, -1.0];
/// let bound = reference::error_bound(MatRef::from_row_major(&a, 1, 2),
///     MatRef::from_row_major(&a, 2, 1), 1.0, 0.0, None);
/// assert!(bound[0] > 0.0 && bound[0] < 1e-5);
/// ```
pub fn error_bound<T: Element>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    alpha: T,
    beta: T,
    c0: Option<MatRef<'_, T>>,
) -> Vec<f64> {
    const GAMMA: f64 = 2.0;
    let ((m, k), (_, n)) = (a.shape(), b.shape());
    let (eps, eta) = (T::EPSILON.to_f64(), T::DENORM_MIN.to_f64());
    let mut out = Vec::with_capacity(m * n);
    for i in 0..m {
        for j in 0..n {
            let mag: f64 = (0..k)
                .map(|p| (a.get(i, p).to_f64() * b.get(p, j).to_f64()).abs())
                .sum();
            let c_mag = c0.map_or(0.0, |c0| c0.get(i, j).to_f64().abs());
            let scale = alpha.to_f64().abs() * mag + beta.to_f64().abs() * c_mag;
            out.push(GAMMA * (k as f64 + 2.0) * (eps * scale + eta));
        }
    }
    out
}

//! Algebraic properties of the kernels on random shapes, strides and values
//! (proptest): transposition, linearity in α and β, identity, associativity,
//! and fused = unfused.

use densekit::activation::Activation;
use densekit::dense;
use densekit::gemm::{Accum, MatMut, MatRef, Par, gemm, reference};
use proptest::prelude::*;

/// A matrix in one of four layouts: (buffer, rows, cols, row stride, col stride).
#[derive(Clone, Debug)]
struct Mat {
    buf: Vec<f64>,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl Mat {
    fn view(&self) -> MatRef<'_, f64> {
        MatRef::from_strides(&self.buf, self.rows, self.cols, self.rs, self.cs)
    }
}

fn mat(rows: usize, cols: usize) -> impl Strategy<Value = Mat> {
    (
        0..4u8,
        proptest::collection::vec(-2.0f64..2.0, rows * (cols + 2)),
    )
        .prop_map(move |(layout, buf)| {
            let (r, c) = (rows as isize, cols as isize);
            let (rs, cs) = match layout {
                0 => (c, 1),
                1 => (1, r),
                2 => (c + 2, 1),
                _ => (-(c + 2), 1),
            };
            Mat {
                buf,
                rows,
                cols,
                rs,
                cs,
            }
        })
}

fn dims() -> impl Strategy<Value = (usize, usize, usize)> {
    (0..30usize, 0..30usize, 0..30usize)
}

fn product(
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    alpha: f64,
    c0: Option<(&[f64], f64)>,
) -> Vec<f64> {
    let (m, n) = (a.nrows(), b.ncols());
    let (mut c, accum) = match c0 {
        Some((c0, beta)) => (c0.to_vec(), Accum::Scaled(beta)),
        None => (vec![f64::NAN; m * n], Accum::Replace),
    };
    gemm(
        MatMut::from_row_major(&mut c, m, n),
        accum,
        a,
        b,
        alpha,
        Par::Auto,
    );
    c
}

/// |x − y| within the GEMM bound for products of magnitude ≤ 4·k.
fn close(x: f64, y: f64, k: usize) -> bool {
    (x - y).abs() <= 16.0 * (k as f64 + 2.0) * f64::EPSILON * (4.0 * k as f64 + x.abs() + 1.0)
}

fn pair() -> impl Strategy<Value = (Mat, Mat)> {
    dims().prop_flat_map(|(m, k, n)| (mat(m, k), mat(k, n)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn transpose_of_product((a, b) in pair()) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let ab = product(a.view(), b.view(), 1.0, None);
        let bt_at = product(b.view().t(), a.view().t(), 1.0, None);
        for i in 0..m {
            for j in 0..n {
                prop_assert!(close(ab[i * n + j], bt_at[j * m + i], k));
            }
        }
    }

    #[test]
    fn linear_in_alpha_and_beta((a, b) in pair(), alpha in -3.0f64..3.0, beta in -3.0f64..3.0) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let c0: Vec<f64> = (0..m * n).map(|i| (i as f64 * 0.37).sin()).collect();
        let ab = product(a.view(), b.view(), 1.0, None);
        let scaled = product(a.view(), b.view(), alpha, Some((&c0, beta)));
        for idx in 0..m * n {
            prop_assert!(close(scaled[idx], alpha * ab[idx] + beta * c0[idx], k));
        }
    }

    #[test]
    fn identity_is_exact((a, _) in pair()) {
        let (m, k) = (a.rows, a.cols);
        let eye: Vec<f64> = (0..k * k).map(|i| if i / k == i % k { 1.0 } else { 0.0 }).collect();
        let ai = product(a.view(), MatRef::from_row_major(&eye, k, k), 1.0, None);
        for i in 0..m {
            for j in 0..k {
                prop_assert_eq!(ai[i * k + j], a.view().get(i, j));
            }
        }
    }

    #[test]
    fn associative_within_bounds((a, b, c) in (dims(), 0..20usize).prop_flat_map(|((m, k, n), p)| (mat(m, k), mat(k, n), mat(n, p)))) {
        let (m, k, n, p) = (a.rows, a.cols, b.cols, c.cols);
        let ab = product(a.view(), b.view(), 1.0, None);
        let ab_c = product(MatRef::from_row_major(&ab, m, n), c.view(), 1.0, None);
        let bc = product(b.view(), c.view(), 1.0, None);
        let a_bc = product(a.view(), MatRef::from_row_major(&bc, k, p), 1.0, None);
        let tol = 64.0 * ((k + n) as f64 + 2.0) * f64::EPSILON * (4.0 * (k * n) as f64 + 1.0);
        for idx in 0..m * p {
            prop_assert!((ab_c[idx] - a_bc[idx]).abs() <= tol);
        }
    }

    /// The fused epilogue does exactly what a GEMM followed by a bias and
    /// activation pass does, bit for bit.
    #[test]
    fn fused_forward_equals_unfused(
        x in (1..40usize, 1..40usize).prop_flat_map(|(batch, inputs)| mat(batch, inputs)),
        outputs in 1..40usize,
        act in 0..6usize,
        seed in 0..1000u32,
    ) {
        let act = [Activation::Identity, Activation::Relu, Activation::LeakyRelu(0.1), Activation::PRelu(0.3), Activation::Sigmoid, Activation::Tanh][act];
        let (batch, inputs) = (x.rows, x.cols);
        let w: Vec<f32> = (0..outputs * inputs).map(|i| ((i as f32 + seed as f32) * 0.61).sin()).collect();
        let b: Vec<f32> = (0..outputs).map(|o| (o as f32 * 0.3).cos()).collect();
        let xf: Vec<f32> = (0..batch * inputs).map(|i| x.view().get(i / inputs, i % inputs) as f32).collect();
        let (xv, wv) = (MatRef::from_row_major(&xf, batch, inputs), MatRef::from_row_major(&w, outputs, inputs));
        let mut fused = vec![0.0f32; batch * outputs];
        dense::forward(MatMut::from_row_major(&mut fused, batch, outputs), Accum::Replace, xv, wv, Some(&b), act, Par::Auto);
        let mut unfused = vec![0.0f32; batch * outputs];
        gemm(MatMut::from_row_major(&mut unfused, batch, outputs), Accum::Replace, xv, wv.t(), 1.0, Par::Auto);
        for row in unfused.chunks_exact_mut(outputs) {
            for (v, &bias) in row.iter_mut().zip(&b) {
                *v += bias;
            }
        }
        act.apply(&mut unfused);
        prop_assert_eq!(fused.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), unfused.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }
}

#[test]
fn reference_agrees_with_kernel_on_a_fixed_case() {
    let a = [1.0, 2.0, 3.0, 4.0];
    let mut want = [0.0; 4];
    reference::gemm(
        MatMut::from_row_major(&mut want, 2, 2),
        Accum::Replace,
        MatRef::from_row_major(&a, 2, 2),
        MatRef::from_row_major(&a, 2, 2),
        1.0,
    );
    assert_eq!(
        product(
            MatRef::from_row_major(&a, 2, 2),
            MatRef::from_row_major(&a, 2, 2),
            1.0,
            None
        ),
        want
    );
}

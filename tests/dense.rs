//! Fused dense kernels against their unfused naive twins, finite-difference
//! gradient checks, and the lecture's XOR.

use densekit::activation::Activation;
use densekit::dense::{self, BackwardOptions, Grads, Workspace, reference};
use densekit::gemm::{Accum, Element, MatMut, MatRef, Par};
use densekit::loss::{mse, softmax_cross_entropy};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec<T: Element>(&mut self, len: usize, scale: f64) -> Vec<T> {
        (0..len).map(|_| T::from_f64(self.next() * scale)).collect()
    }
}

const ACTIVATIONS: [Activation; 6] = [
    Activation::Identity,
    Activation::Relu,
    Activation::LeakyRelu(0.1),
    Activation::PRelu(0.25),
    Activation::Sigmoid,
    Activation::Tanh,
];

/// (batch, in, out): MNIST layers, odd sizes, non-square everywhere.
const SHAPES: [(usize, usize, usize); 12] = [
    (1, 1, 1),
    (1, 784, 256),
    (32, 784, 256),
    (63, 256, 10),
    (128, 256, 10),
    (7, 3, 5),
    (13, 37, 29),
    (300, 17, 2),
    (2, 300, 33),
    (33, 2, 300),
    (64, 65, 66),
    (5, 1, 17),
];

/// How the operands are laid out: row-major, or through transposed or
/// padded views (the API takes views, so all must work).
#[derive(Clone, Copy, Debug)]
enum Views {
    RowMajor,
    /// x and w stored transposed (column-major), viewed through `.t()`.
    Transposed,
    /// x and y with padded rows (NaN in the gaps).
    Padded,
}

/// A matrix stored with a layout, viewable as (rows, cols).
struct Stored<T> {
    buf: Vec<T>,
    rows: usize,
    cols: usize,
    views: Views,
}

impl<T: Element> Stored<T> {
    fn new(values: &[T], rows: usize, cols: usize, views: Views) -> Self {
        let nan = T::from_f64(f64::NAN);
        let buf = match views {
            Views::RowMajor => values.to_vec(),
            Views::Transposed => (0..rows * cols)
                .map(|idx| values[(idx % rows) * cols + idx / rows])
                .collect(),
            Views::Padded => {
                let mut buf = vec![nan; rows * (cols + 2)];
                for r in 0..rows {
                    buf[r * (cols + 2)..][..cols].copy_from_slice(&values[r * cols..][..cols]);
                }
                buf
            }
        };
        Stored {
            buf,
            rows,
            cols,
            views,
        }
    }
    fn view(&self) -> MatRef<'_, T> {
        match self.views {
            Views::RowMajor => MatRef::from_row_major(&self.buf, self.rows, self.cols),
            Views::Transposed => MatRef::from_row_major(&self.buf, self.cols, self.rows).t(),
            Views::Padded => {
                MatRef::from_strides(&self.buf, self.rows, self.cols, self.cols as isize + 2, 1)
            }
        }
    }
    fn view_mut(&mut self) -> MatMut<'_, T> {
        match self.views {
            Views::RowMajor => MatMut::from_row_major(&mut self.buf, self.rows, self.cols),
            Views::Transposed => MatMut::from_row_major(&mut self.buf, self.cols, self.rows).t(),
            Views::Padded => MatMut::from_strides(
                &mut self.buf,
                self.rows,
                self.cols,
                self.cols as isize + 2,
                1,
            ),
        }
    }
    fn to_row_major(&self) -> Vec<f64> {
        let v = self.view();
        (0..self.rows * self.cols)
            .map(|i| v.get(i / self.cols, i % self.cols).to_f64())
            .collect()
    }
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: impl Fn(usize) -> f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let t = tol(i);
        assert!(
            (g - w).abs() <= t || (g.is_nan() && w.is_nan()),
            "{what}[{i}]: got {g}, want {w} (|diff| {} > tol {t})",
            (g - w).abs()
        );
    }
}

/// Forward: fused = act(reference z), within the GEMM bound through a 1-Lipschitz
/// (or slope-Lipschitz) activation plus a few ulp for the activation itself.
fn check_forward<T: Element>(
    act: Activation,
    (batch, inputs, outputs): (usize, usize, usize),
    views: Views,
    seed: u64,
    image_like: bool,
) {
    let mut rng = Rng(seed);
    let (mut xv, wv, bv) = (
        rng.vec::<T>(batch * inputs, 1.0),
        rng.vec::<T>(outputs * inputs, 0.5),
        rng.vec::<T>(outputs, 0.5),
    );
    if image_like {
        make_image_like(&mut xv, batch, inputs);
    }
    let x = Stored::new(&xv, batch, inputs, views);
    let w = Stored::new(&wv, outputs, inputs, views);
    let mut y = Stored::new(
        &vec![T::from_f64(f64::NAN); batch * outputs],
        batch,
        outputs,
        views,
    );
    dense::forward(
        y.view_mut(),
        Accum::Replace,
        x.view(),
        w.view(),
        Some(&bv),
        act,
        Par::Auto,
    );

    let mut want = vec![T::ZERO; batch * outputs];
    reference::forward(
        MatMut::from_row_major(&mut want, batch, outputs),
        Accum::Replace,
        MatRef::from_row_major(&xv, batch, inputs),
        MatRef::from_row_major(&wv, outputs, inputs),
        Some(&bv),
        act,
    );
    let eps = T::EPSILON.to_f64();
    let mag: Vec<f64> = (0..batch * outputs)
        .map(|idx| {
            let (r, o) = (idx / outputs, idx % outputs);
            (0..inputs)
                .map(|i| (xv[r * inputs + i] * wv[o * inputs + i]).to_f64().abs())
                .sum::<f64>()
                + bv[o].to_f64().abs()
        })
        .collect();
    let want: Vec<f64> = want.iter().map(|v| v.to_f64()).collect();
    assert_close(
        &format!(
            "forward {act:?} {batch}×{inputs}→{outputs} {views:?} {}",
            std::any::type_name::<T>()
        ),
        &y.to_row_major(),
        &want,
        |i| 2.0 * (inputs as f64 + 2.0) * eps * mag[i] + 8.0 * eps * want[i].abs() + 1e-30,
    );
    // Padding between rows must be untouched.
    if let Views::Padded = views {
        for r in 0..batch {
            for pad in 0..2 {
                assert!(
                    y.buf[r * (outputs + 2) + outputs + pad].to_f64().is_nan(),
                    "padding written"
                );
            }
        }
    }
}

#[test]
fn fused_forward_matches_unfused_reference() {
    let mut seed = 1;
    for act in ACTIVATIONS {
        for &shape in &SHAPES {
            for views in [Views::RowMajor, Views::Transposed, Views::Padded] {
                seed += 1;
                check_forward::<f32>(act, shape, views, seed, false);
            }
            check_forward::<f64>(act, shape, Views::RowMajor, seed, false);
        }
    }
}

#[test]
fn forward_accumulates_with_beta() {
    let (x, w, b) = ([1.0f32, 2.0], [1.0f32], [0.5f32]);
    let mut y = [10.0f32, -10.0];
    // y ← relu(x·wᵀ + b + y): rows are (1 + 0.5 + 10) and (2 + 0.5 − 10).
    dense::forward(
        MatMut::from_row_major(&mut y, 2, 1),
        Accum::Add,
        MatRef::from_row_major(&x, 2, 1),
        MatRef::from_row_major(&w, 1, 1),
        Some(&b),
        Activation::Relu,
        Par::Seq,
    );
    assert_eq!(y, [11.5, 0.0]);
}

/// Backward: fused gradients = unfused reference from the same y.
fn check_backward(
    act: Activation,
    (batch, inputs, outputs): (usize, usize, usize),
    views: Views,
    seed: u64,
    l2: Option<f32>,
    image_like: bool,
) {
    let mut rng = Rng(seed);
    let (mut xv, wv, bv) = (
        rng.vec::<f32>(batch * inputs, 1.0),
        rng.vec::<f32>(outputs * inputs, 0.5),
        rng.vec::<f32>(outputs, 0.5),
    );
    if image_like {
        make_image_like(&mut xv, batch, inputs);
    }
    let dyv = rng.vec::<f32>(batch * outputs, 1.0);
    let mut yv = vec![0.0f32; batch * outputs];
    dense::forward(
        MatMut::from_row_major(&mut yv, batch, outputs),
        Accum::Replace,
        MatRef::from_row_major(&xv, batch, inputs),
        MatRef::from_row_major(&wv, outputs, inputs),
        Some(&bv),
        act,
        Par::Auto,
    );
    let x = Stored::new(&xv, batch, inputs, views);
    let w = Stored::new(&wv, outputs, inputs, views);
    let y = Stored::new(&yv, batch, outputs, views);
    let dy = Stored::new(&dyv, batch, outputs, views);
    let nan = f32::NAN;
    let mut dw = Stored::new(&vec![nan; outputs * inputs], outputs, inputs, views);
    let mut dx = Stored::new(&vec![nan; batch * inputs], batch, inputs, views);
    let mut db = vec![nan; outputs];
    let slope = dense::backward(
        Grads {
            dw: dw.view_mut(),
            db: Some(&mut db),
            dx: Some(dx.view_mut()),
        },
        x.view(),
        w.view(),
        y.view(),
        dy.view(),
        act,
        BackwardOptions {
            accum: Accum::Replace,
            l2,
            par: Par::Auto,
        },
        &mut Workspace::new(),
    );
    let want = reference::backward(
        MatRef::from_row_major(&xv, batch, inputs),
        MatRef::from_row_major(&wv, outputs, inputs),
        MatRef::from_row_major(&yv, batch, outputs),
        MatRef::from_row_major(&dyv, batch, outputs),
        act,
        l2.map(f64::from),
    );
    let eps = f32::EPSILON as f64;
    let ctx = format!("{act:?} {batch}×{inputs}→{outputs} {views:?} l2={l2:?}");
    // Magnitude bounds: |dz| ≤ |dy|·max|act'| ≤ |dy| (slope ≤ 1), sums of |products|.
    let dz_mag = |r: usize, o: usize| dyv[r * outputs + o].abs() as f64;
    let tol_dw = |idx: usize| {
        let (o, i) = (idx / inputs, idx % inputs);
        let mag: f64 = (0..batch)
            .map(|r| dz_mag(r, o) * xv[r * inputs + i].abs() as f64)
            .sum();
        4.0 * (batch as f64 + 4.0) * eps * (mag + wv[idx].abs() as f64) + 1e-30
    };
    let tol_dx = |idx: usize| {
        let (r, i) = (idx / inputs, idx % inputs);
        let mag: f64 = (0..outputs)
            .map(|o| dz_mag(r, o) * wv[o * inputs + i].abs() as f64)
            .sum();
        4.0 * (outputs as f64 + 4.0) * eps * mag + 1e-30
    };
    let tol_db = |o: usize| {
        let mag: f64 = (0..batch).map(|r| dz_mag(r, o)).sum();
        4.0 * (batch as f64 + 4.0) * eps * mag + 1e-30
    };
    assert_close(&format!("dw {ctx}"), &dw.to_row_major(), &want.dw, tol_dw);
    assert_close(&format!("dx {ctx}"), &dx.to_row_major(), &want.dx, tol_dx);
    let db: Vec<f64> = db.iter().map(|&v| v as f64).collect();
    assert_close(&format!("db {ctx}"), &db, &want.db, tol_db);
    match act {
        Activation::PRelu(_) => {
            let got = slope.expect("PReLU returns its slope gradient") as f64;
            let mag: f64 = (0..batch * outputs)
                .map(|i| (dyv[i] * yv[i] / 0.25).abs() as f64)
                .sum();
            assert!(
                (got - want.slope).abs() <= 8.0 * (batch * outputs) as f64 * eps * mag + 1e-30,
                "slope {ctx}: {got} vs {}",
                want.slope
            );
        }
        _ => assert!(slope.is_none(), "{ctx}: only PReLU has a slope gradient"),
    }
}

#[test]
fn fused_backward_matches_unfused_reference() {
    let mut seed = 100;
    for act in ACTIVATIONS {
        for &shape in &SHAPES {
            for views in [Views::RowMajor, Views::Transposed, Views::Padded] {
                seed += 1;
                check_backward(act, shape, views, seed, None, false);
            }
        }
        check_backward(act, (17, 33, 9), Views::RowMajor, seed, Some(0.01), false);
    }
}

/// Zeroes most of `x` the way images are zero: whole columns (black
/// borders) in a pattern every 12-row sliver shares, scattered pixels, and
/// rows 12..24 entirely, so the layer GEMMs drop zero columns of x's
/// slivers (an empty sliver included) rather than multiplying them.
fn make_image_like<T: Element>(x: &mut [T], batch: usize, inputs: usize) {
    for r in 0..batch {
        for j in 0..inputs {
            let border = (j * 7) % 10 < 6;
            // Sparse speckles elsewhere (one value in six), so that many
            // zero-skipping columns hold a single nonzero, in every position.
            let mut h = (r * 1_000_003 + j) as u64;
            h = (h ^ (h >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h ^= h >> 29;
            let speckle = h.is_multiple_of(6);
            if border || !speckle || (12..24).contains(&r) {
                x[r * inputs + j] = T::ZERO;
            }
        }
    }
}

/// Image-like inputs (mostly zero) take the path that skips their zero
/// blocks; it must agree with the reference like the dense path, including
/// an all-zero sliver of rows, strided views, L2, and Replace/Add.
#[test]
fn image_like_inputs_match_the_reference() {
    let mut seed = 500;
    for act in ACTIVATIONS {
        for shape in [(1, 784, 64), (13, 100, 300), (40, 784, 256), (63, 50, 70)] {
            for views in [Views::RowMajor, Views::Transposed, Views::Padded] {
                seed += 1;
                check_forward::<f32>(act, shape, views, seed, true);
                check_backward(act, shape, views, seed, None, true);
            }
            check_forward::<f64>(act, shape, Views::RowMajor, seed, true);
        }
        // Column-major w and dw (Mlp's storage) take the direct dwᵀ path.
        for views in [Views::RowMajor, Views::Transposed] {
            check_backward(act, (30, 200, 70), views, seed, Some(0.01), true);
        }
    }
    check_replace_and_add((30, 200, 70), true);
}

#[test]
fn backward_replace_ignores_and_add_accumulates() {
    check_replace_and_add((9, 11, 7), false);
}

fn check_replace_and_add((batch, inputs, outputs): (usize, usize, usize), image_like: bool) {
    let mut rng = Rng(5);
    let (mut x, w, dy) = (
        rng.vec::<f32>(batch * inputs, 1.0),
        rng.vec::<f32>(outputs * inputs, 1.0),
        rng.vec::<f32>(batch * outputs, 1.0),
    );
    if image_like {
        make_image_like(&mut x, batch, inputs);
    }
    let y = vec![0.5f32; batch * outputs];
    // dw stored row-major, and column-major (the direct dwᵀ path when x is sparse).
    for dw_col_major in [false, true] {
        let run = |dw: &mut [f32], db: &mut [f32], accum| {
            dense::backward(
                Grads {
                    dw: if dw_col_major {
                        MatMut::from_col_major(dw, outputs, inputs)
                    } else {
                        MatMut::from_row_major(dw, outputs, inputs)
                    },
                    db: Some(db),
                    dx: None,
                },
                MatRef::from_row_major(&x, batch, inputs),
                MatRef::from_row_major(&w, outputs, inputs),
                MatRef::from_row_major(&y, batch, outputs),
                MatRef::from_row_major(&dy, batch, outputs),
                Activation::Sigmoid,
                BackwardOptions {
                    accum,
                    l2: Some(0.5),
                    par: Par::Seq,
                },
                &mut Workspace::new(),
            );
        };
        let (mut dw1, mut db1) = (vec![f32::NAN; outputs * inputs], vec![f32::NAN; outputs]);
        run(&mut dw1, &mut db1, Accum::Replace);
        assert!(
            dw1.iter().chain(&db1).all(|v| v.is_finite()),
            "Replace read the NaN it should overwrite"
        );
        let (mut dw2, mut db2) = (dw1.clone(), db1.clone());
        run(&mut dw2, &mut db2, Accum::Add);
        for (two, one) in dw2.iter().zip(&dw1).chain(db2.iter().zip(&db1)) {
            assert!(
                (two - 2.0 * one).abs() <= 1e-5 * one.abs().max(1.0),
                "Add: {two} vs 2×{one}"
            );
        }
    }
}

/// The loss of a one-layer network in f64, for finite differences.
fn layer_loss(
    act: Activation,
    x: &[f64],
    w: &[f64],
    b: &[f64],
    labels: &[usize],
    [batch, inputs, outputs]: [usize; 3],
    l2: f64,
    use_mse: bool,
) -> f64 {
    let mut y = vec![0.0; batch * outputs];
    dense::forward(
        MatMut::from_row_major(&mut y, batch, outputs),
        Accum::Replace,
        MatRef::from_row_major(x, batch, inputs),
        MatRef::from_row_major(w, outputs, inputs),
        Some(b),
        act,
        Par::Seq,
    );
    let mut dy = vec![0.0; batch * outputs];
    let loss = if use_mse {
        let target: Vec<f64> = (0..batch * outputs).map(|i| (i % 3) as f64 * 0.3).collect();
        mse(
            MatRef::from_row_major(&y, batch, outputs),
            MatRef::from_row_major(&target, batch, outputs),
            MatMut::from_row_major(&mut dy, batch, outputs),
        )
    } else {
        softmax_cross_entropy(
            MatRef::from_row_major(&y, batch, outputs),
            labels,
            MatMut::from_row_major(&mut dy, batch, outputs),
        )
    };
    loss + 0.5 * l2 * w.iter().map(|v| v * v).sum::<f64>()
}

/// Analytic gradients from the fused kernels vs central differences, in f64,
/// for every activation, both losses, the L2 term and PReLU's slope.
#[test]
fn gradients_match_finite_differences() {
    let dims = [4, 5, 3];
    let [batch, inputs, outputs] = dims;
    let labels = [0, 2, 1, 2];
    for act in ACTIVATIONS {
        for use_mse in [false, true] {
            let l2 = 0.1;
            let mut rng = Rng(77);
            let x: Vec<f64> = rng.vec(batch * inputs, 1.0);
            let w: Vec<f64> = rng.vec(outputs * inputs, 0.7);
            let b: Vec<f64> = (0..outputs).map(|o| 0.3 + 0.1 * o as f64).collect();
            // Analytic: forward, loss gradient, fused backward.
            let mut y = vec![0.0; batch * outputs];
            dense::forward(
                MatMut::from_row_major(&mut y, batch, outputs),
                Accum::Replace,
                MatRef::from_row_major(&x, batch, inputs),
                MatRef::from_row_major(&w, outputs, inputs),
                Some(&b),
                act,
                Par::Seq,
            );
            let mut dy = vec![0.0; batch * outputs];
            if use_mse {
                let target: Vec<f64> = (0..batch * outputs).map(|i| (i % 3) as f64 * 0.3).collect();
                mse(
                    MatRef::from_row_major(&y, batch, outputs),
                    MatRef::from_row_major(&target, batch, outputs),
                    MatMut::from_row_major(&mut dy, batch, outputs),
                );
            } else {
                softmax_cross_entropy(
                    MatRef::from_row_major(&y, batch, outputs),
                    &labels,
                    MatMut::from_row_major(&mut dy, batch, outputs),
                );
            }
            let (mut dw, mut db, mut dx) = (
                vec![0.0; outputs * inputs],
                vec![0.0; outputs],
                vec![0.0; batch * inputs],
            );
            let slope = dense::backward(
                Grads {
                    dw: MatMut::from_row_major(&mut dw, outputs, inputs),
                    db: Some(&mut db),
                    dx: Some(MatMut::from_row_major(&mut dx, batch, inputs)),
                },
                MatRef::from_row_major(&x, batch, inputs),
                MatRef::from_row_major(&w, outputs, inputs),
                MatRef::from_row_major(&y, batch, outputs),
                MatRef::from_row_major(&dy, batch, outputs),
                act,
                BackwardOptions {
                    accum: Accum::Replace,
                    l2: Some(l2),
                    par: Par::Seq,
                },
                &mut Workspace::new(),
            );
            let h = 1e-6;
            let loss = |x: &[f64], w: &[f64], b: &[f64], act: Activation| {
                layer_loss(act, x, w, b, &labels, dims, l2, use_mse)
            };
            let numeric = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
            let ctx = format!("{act:?} {}", if use_mse { "mse" } else { "cross-entropy" });
            let check = |name: &str, analytic: f64, numeric: f64| {
                assert!(
                    (analytic - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                    "{ctx} {name}: analytic {analytic}, numeric {numeric}"
                );
            };
            for idx in 0..w.len() {
                let n = numeric(&|d| {
                    let mut w2 = w.clone();
                    w2[idx] += d;
                    loss(&x, &w2, &b, act)
                });
                check(&format!("dw[{idx}]"), dw[idx], n);
            }
            for idx in 0..b.len() {
                let n = numeric(&|d| {
                    let mut b2 = b.clone();
                    b2[idx] += d;
                    loss(&x, &w, &b2, act)
                });
                check(&format!("db[{idx}]"), db[idx], n);
            }
            for idx in 0..x.len() {
                let n = numeric(&|d| {
                    let mut x2 = x.clone();
                    x2[idx] += d;
                    loss(&x2, &w, &b, act)
                });
                check(&format!("dx[{idx}]"), dx[idx], n);
            }
            if let Activation::PRelu(a) = act {
                // The slope is an f32 parameter: divide by the step it really took.
                let (up, down) = ((a as f64 + h) as f32, (a as f64 - h) as f32);
                let numeric = (loss(&x, &w, &b, Activation::PRelu(up))
                    - loss(&x, &w, &b, Activation::PRelu(down)))
                    / (up as f64 - down as f64);
                check(
                    "slope",
                    slope.expect("PReLU returns its slope gradient"),
                    numeric,
                );
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // Called from outside any pool, products this size run in parts: bands
    // of rows for the first shape's forward pass, of columns (the bias
    // sliced with them) for the second's.
    for (batch, inputs, outputs) in [(256, 300, 200), (64, 300, 700)] {
        thread_count_invariant(batch, inputs, outputs);
    }
}

fn thread_count_invariant(batch: usize, inputs: usize, outputs: usize) {
    // Dense inputs, and image-like ones (whose zero blocks are skipped).
    for image_like in [false, true] {
        let mut rng = Rng(9);
        let (mut x, w, b, dy) = (
            rng.vec::<f32>(batch * inputs, 1.0),
            rng.vec::<f32>(outputs * inputs, 0.2),
            rng.vec::<f32>(outputs, 0.2),
            rng.vec::<f32>(batch * outputs, 1.0),
        );
        if image_like {
            make_image_like(&mut x, batch, inputs);
        }
        let run = |par: Par| {
            let mut y = vec![0.0f32; batch * outputs];
            dense::forward(
                MatMut::from_row_major(&mut y, batch, outputs),
                Accum::Replace,
                MatRef::from_row_major(&x, batch, inputs),
                MatRef::from_row_major(&w, outputs, inputs),
                Some(&b),
                Activation::Tanh,
                par,
            );
            let (mut dw, mut db, mut dx) = (
                vec![0.0f32; outputs * inputs],
                vec![0.0f32; outputs],
                vec![0.0f32; batch * inputs],
            );
            dense::backward(
                Grads {
                    dw: MatMut::from_row_major(&mut dw, outputs, inputs),
                    db: Some(&mut db),
                    dx: Some(MatMut::from_row_major(&mut dx, batch, inputs)),
                },
                MatRef::from_row_major(&x, batch, inputs),
                MatRef::from_row_major(&w, outputs, inputs),
                MatRef::from_row_major(&y, batch, outputs),
                MatRef::from_row_major(&dy, batch, outputs),
                Activation::Tanh,
                BackwardOptions {
                    accum: Accum::Replace,
                    l2: None,
                    par,
                },
                &mut Workspace::new(),
            );
            [y, dw, db, dx].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
        };
        let one = run(Par::Seq);
        for threads in [2, 3, 4] {
            assert!(
                one == run(Par::Threads(threads)),
                "{batch}×{inputs}→{outputs}: {threads} threads differ from 1 (image-like x: {image_like})"
            );
        }
    }
}

/// The lecture's XOR: not linearly separable, learned by a 2-4-1 network
/// (tanh hidden layer, sigmoid output, squared loss) with plain SGD on the
/// four points, all through the fused kernels.
#[test]
fn two_layer_network_learns_xor() {
    let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let t = [0.0f32, 1.0, 1.0, 0.0];
    let mut rng = Rng(2024);
    let mut w1 = rng.vec::<f32>(4 * 2, 1.0);
    let mut b1 = vec![0.0f32; 4];
    let mut w2 = rng.vec::<f32>(4, 1.0);
    let mut b2 = vec![0.0f32; 1];
    let (mut h, mut y) = (vec![0.0f32; 4 * 4], vec![0.0f32; 4]);
    let mut ws = Workspace::new();
    let lr = 2.0;
    let mut loss = f64::INFINITY;
    for _ in 0..3000 {
        dense::forward(
            MatMut::from_row_major(&mut h, 4, 4),
            Accum::Replace,
            MatRef::from_row_major(&x, 4, 2),
            MatRef::from_row_major(&w1, 4, 2),
            Some(&b1),
            Activation::Tanh,
            Par::Seq,
        );
        dense::forward(
            MatMut::from_row_major(&mut y, 4, 1),
            Accum::Replace,
            MatRef::from_row_major(&h, 4, 4),
            MatRef::from_row_major(&w2, 1, 4),
            Some(&b2),
            Activation::Sigmoid,
            Par::Seq,
        );
        let mut dy = [0.0f32; 4];
        loss = mse(
            MatRef::from_row_major(&y, 4, 1),
            MatRef::from_row_major(&t, 4, 1),
            MatMut::from_row_major(&mut dy, 4, 1),
        );
        let (mut dw2, mut db2, mut dh) = ([0.0f32; 4], [0.0f32; 1], [0.0f32; 16]);
        dense::backward(
            Grads {
                dw: MatMut::from_row_major(&mut dw2, 1, 4),
                db: Some(&mut db2),
                dx: Some(MatMut::from_row_major(&mut dh, 4, 4)),
            },
            MatRef::from_row_major(&h, 4, 4),
            MatRef::from_row_major(&w2, 1, 4),
            MatRef::from_row_major(&y, 4, 1),
            MatRef::from_row_major(&dy, 4, 1),
            Activation::Sigmoid,
            BackwardOptions::default(),
            &mut ws,
        );
        let (mut dw1, mut db1) = ([0.0f32; 8], [0.0f32; 4]);
        dense::backward(
            Grads {
                dw: MatMut::from_row_major(&mut dw1, 4, 2),
                db: Some(&mut db1),
                dx: None,
            },
            MatRef::from_row_major(&x, 4, 2),
            MatRef::from_row_major(&w1, 4, 2),
            MatRef::from_row_major(&h, 4, 4),
            MatRef::from_row_major(&dh, 4, 4),
            Activation::Tanh,
            BackwardOptions::default(),
            &mut ws,
        );
        for (p, g) in w1
            .iter_mut()
            .zip(dw1)
            .chain(b1.iter_mut().zip(db1))
            .chain(w2.iter_mut().zip(dw2))
            .chain(b2.iter_mut().zip(db2))
        {
            *p -= lr * g;
        }
    }
    let predicted: Vec<f32> = y.iter().map(|v| v.round()).collect();
    assert_eq!(predicted, t, "XOR not learned: outputs {y:?}, loss {loss}");
    assert!(loss < 0.01, "loss {loss}");
}

#[test]
#[should_panic(expected = "x is 4×3 (batch × in) but w is 2×5 (out × in)")]
fn forward_shape_mismatch_names_both_shapes() {
    let mut y = [0.0f32; 8];
    dense::forward(
        MatMut::from_row_major(&mut y, 4, 2),
        Accum::Replace,
        MatRef::from_row_major(&[0.0; 12], 4, 3),
        MatRef::from_row_major(&[0.0; 10], 2, 5),
        None,
        Activation::Relu,
        Par::Seq,
    );
}

#[test]
#[should_panic(expected = "the bias has 3 values but w is 2×3")]
fn bias_length_mismatch_is_named() {
    let mut y = [0.0f32; 8];
    dense::forward(
        MatMut::from_row_major(&mut y, 4, 2),
        Accum::Replace,
        MatRef::from_row_major(&[0.0; 12], 4, 3),
        MatRef::from_row_major(&[0.0; 6], 2, 3),
        Some(&[0.0; 3]),
        Activation::Relu,
        Par::Seq,
    );
}

#[test]
#[should_panic(expected = "dw is 3×2 but must be 2×3")]
fn backward_gradient_shape_mismatch_is_named() {
    let (x, w, y) = ([0.0f32; 12], [0.0f32; 6], [0.0f32; 8]);
    let mut dw = [0.0f32; 6];
    dense::backward(
        Grads {
            dw: MatMut::from_row_major(&mut dw, 3, 2),
            db: None,
            dx: None,
        },
        MatRef::from_row_major(&x, 4, 3),
        MatRef::from_row_major(&w, 2, 3),
        MatRef::from_row_major(&y, 4, 2),
        MatRef::from_row_major(&y, 4, 2),
        Activation::Relu,
        BackwardOptions::default(),
        &mut Workspace::new(),
    );
}

#[test]
fn softmax_cross_entropy_matches_naive_and_is_stable() {
    let logits = [1.0f64, 2.0, 3.0, -1.0, 0.0, 1000.0];
    let mut grad = [0.0f64; 6];
    let loss = softmax_cross_entropy(
        MatRef::from_row_major(&logits, 2, 3),
        &[2, 0],
        MatMut::from_row_major(&mut grad, 2, 3),
    );
    let row0 = -(3.0f64.exp() / (1.0f64.exp() + 2.0f64.exp() + 3.0f64.exp())).ln();
    let row1 = 1001.0; // −log softmax(z)[0] with z = (−1, 0, 1000): 1000 + log(1 + …) + 1
    assert!((loss - (row0 + row1) / 2.0).abs() < 1e-9, "loss {loss}");
    assert!(grad.iter().all(|g| g.is_finite()));
    let rows: Vec<f64> = grad.chunks(3).map(|r| r.iter().sum()).collect();
    assert!(
        rows.iter().all(|s| s.abs() < 1e-12),
        "each gradient row sums to 0: {rows:?}"
    );
}

/// Strided logits and gradients (rows not contiguous) give the same bits as
/// row-major ones.
#[test]
fn softmax_cross_entropy_is_the_same_for_any_layout() {
    let (batch, classes) = (5, 7);
    let logits: Vec<f32> = Rng(3).vec(batch * classes, 4.0);
    let labels = [6, 0, 3, 3, 1];
    let transposed: Vec<f32> = (0..batch * classes)
        .map(|i| logits[(i % batch) * classes + i / batch])
        .collect();
    let mut expect = vec![0.0f32; batch * classes];
    let loss = softmax_cross_entropy(
        MatRef::from_row_major(&logits, batch, classes),
        &labels,
        MatMut::from_row_major(&mut expect, batch, classes),
    );
    for input_col_major in [false, true] {
        let input = if input_col_major {
            MatRef::from_col_major(&transposed, batch, classes)
        } else {
            MatRef::from_row_major(&logits, batch, classes)
        };
        let mut grad = vec![f32::NAN; batch * classes];
        let got = softmax_cross_entropy(
            input,
            &labels,
            MatMut::from_col_major(&mut grad, batch, classes),
        );
        assert_eq!(got.to_bits(), loss.to_bits());
        for r in 0..batch {
            for c in 0..classes {
                assert_eq!(
                    grad[c * batch + r].to_bits(),
                    expect[r * classes + c].to_bits()
                );
            }
        }
    }
}

#[test]
#[should_panic(expected = "label 3 of sample 1 is out of range for 3 classes")]
fn out_of_range_label_is_rejected() {
    let mut grad = [0.0f32; 6];
    softmax_cross_entropy(
        MatRef::from_row_major(&[0.0f32; 6], 2, 3),
        &[0, 3],
        MatMut::from_row_major(&mut grad, 2, 3),
    );
}

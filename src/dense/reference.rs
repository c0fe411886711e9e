//! Unfused naive twins of the dense kernels: plain loops in `f64`, the
//! activation computed from `z` with libm. The oracle for tests and fuzzing.

use crate::activation::Activation;
use crate::gemm::{Accum, Element, MatMut, MatRef};

/// `act(z)` in f64, computed from `z` the textbook way.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::reference;
/// assert_eq!(reference::activate(Activation::LeakyRelu(0.5), -2.0), -1.0);
/// ```
pub fn activate(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Identity => z,
        Activation::Relu => {
            if z > 0.0 || z.is_nan() {
                z
            } else {
                0.0
            }
        }
        Activation::LeakyRelu(a) | Activation::PRelu(a) => {
            if z > 0.0 {
                z
            } else {
                a as f64 * z
            }
        }
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Tanh => z.tanh(),
    }
}

/// `act'(z)` in f64, written as a function of the output `y = act(z)`
/// (the form backward passes use), computed in separate unfused steps.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::reference;
/// // Sigmoid's derivative from its output y: y·(1 − y).
/// assert_eq!(reference::derivative_from_output(Activation::Sigmoid, 0.5), 0.25);
/// ```
pub fn derivative_from_output(act: Activation, y: f64) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => f64::from(y > 0.0),
        Activation::LeakyRelu(a) | Activation::PRelu(a) => {
            if y > 0.0 {
                1.0
            } else {
                a as f64
            }
        }
        Activation::Sigmoid => y * (1.0 - y),
        Activation::Tanh => 1.0 - y * y,
    }
}

/// `act'(z)` in f64, from `z`.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::reference;
/// assert_eq!(reference::derivative(Activation::Tanh, 0.0), 1.0);
/// ```
pub fn derivative(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => f64::from(z > 0.0),
        Activation::LeakyRelu(a) | Activation::PRelu(a) => {
            if z > 0.0 {
                1.0
            } else {
                a as f64
            }
        }
        Activation::Sigmoid => {
            let s = activate(act, z);
            s * (1.0 - s)
        }
        Activation::Tanh => 1.0 - z.tanh().powi(2),
    }
}

/// `z = x·wᵀ + b` in f64, row-major (batch × out).
///
/// ```
/// use densekit::dense::reference;
/// use densekit::gemm::MatRef;
/// let (x, w) = ([1.0f32, 2.0], [3.0f32, 4.0]); // one sample, one output
/// let z = reference::pre_activation(MatRef::from_row_major(&x, 1, 2), MatRef::from_row_major(&w, 1, 2), Some(&[0.5]));
/// assert_eq!(z, [11.5]);
/// ```
pub fn pre_activation<T: Element>(x: MatRef<'_, T>, w: MatRef<'_, T>, b: Option<&[T]>) -> Vec<f64> {
    let ((batch, inputs), outputs) = (x.shape(), w.nrows());
    let mut z = Vec::with_capacity(batch * outputs);
    for r in 0..batch {
        for o in 0..outputs {
            let dot: f64 = (0..inputs)
                .map(|i| x.get(r, i).to_f64() * w.get(o, i).to_f64())
                .sum();
            z.push(dot + b.map_or(0.0, |b| b[o].to_f64()));
        }
    }
    z
}

/// Unfused forward: `y ← act(x·wᵀ + b + β·y)`.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::reference;
/// use densekit::gemm::{Accum, MatMut, MatRef};
/// let (x, w) = ([1.0f32, -2.0], [1.0f32, 1.0]);
/// let mut y = [0.0f32];
/// reference::forward(MatMut::from_row_major(&mut y, 1, 1), Accum::Replace,
///     MatRef::from_row_major(&x, 1, 2), MatRef::from_row_major(&w, 1, 2), None, Activation::Relu);
/// assert_eq!(y, [0.0]); // relu(1 − 2)
/// ```
pub fn forward<T: Element>(
    mut y: MatMut<'_, T>,
    accum: Accum<T>,
    x: MatRef<'_, T>,
    w: MatRef<'_, T>,
    b: Option<&[T]>,
    act: Activation,
) {
    let z = pre_activation(x, w, b);
    let (batch, outputs) = (x.nrows(), w.nrows());
    let beta = accum.beta().to_f64();
    for r in 0..batch {
        for o in 0..outputs {
            let prior = if beta == 0.0 {
                0.0
            } else {
                beta * y.get(r, o).to_f64()
            };
            y.set(r, o, T::from_f64(activate(act, z[r * outputs + o] + prior)));
        }
    }
}

/// Gradients in f64, all row-major.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::reference::{self, ReferenceGrads};
/// use densekit::gemm::MatRef;
/// let (x, w, y, dy) = ([2.0f64], [3.0f64], [6.0f64], [1.0f64]); // y = x·wᵀ
/// let ReferenceGrads { dw, db, dx, slope } = reference::backward(
///     MatRef::from_row_major(&x, 1, 1), MatRef::from_row_major(&w, 1, 1),
///     MatRef::from_row_major(&y, 1, 1), MatRef::from_row_major(&dy, 1, 1), Activation::Identity, None);
/// assert_eq!((dw, db, dx, slope), (vec![2.0], vec![1.0], vec![3.0], 0.0));
/// ```
pub struct ReferenceGrads {
    /// `(out, in)`.
    pub dw: Vec<f64>,
    /// `out`.
    pub db: Vec<f64>,
    /// `(batch, in)`.
    pub dx: Vec<f64>,
    /// PReLU's slope gradient `Σ dy·z` over `z ≤ 0`, with `z = y/α` (0 for
    /// other activations).
    pub slope: f64,
}

/// Unfused backward from the layer's output `y`, as separate passes:
/// `dz = dy ⊙ act'(y)`, then `db = Σ dz`, `dw = dzᵀ·x + λ·w`, `dx = dz·w`.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::reference;
/// use densekit::gemm::MatRef;
/// let (x, w) = ([1.0f32, 2.0], [0.5f32, 0.5]);
/// let (y, dy) = ([1.5f32], [1.0f32]); // relu(x·wᵀ) = 1.5, upstream gradient 1
/// fn m(v: &[f32], r: usize, c: usize) -> MatRef<'_, f32> { MatRef::from_row_major(v, r, c) }
/// let g = reference::backward(m(&x, 1, 2), m(&w, 1, 2), m(&y, 1, 1), m(&dy, 1, 1), Activation::Relu, None);
/// assert_eq!((g.dw, g.db, g.dx), (vec![1.0, 2.0], vec![1.0], vec![0.5, 0.5]));
/// ```
pub fn backward<T: Element>(
    x: MatRef<'_, T>,
    w: MatRef<'_, T>,
    y: MatRef<'_, T>,
    dy: MatRef<'_, T>,
    act: Activation,
    l2: Option<f64>,
) -> ReferenceGrads {
    let ((batch, inputs), outputs) = (x.shape(), w.nrows());
    let at = |m: MatRef<'_, T>, idx: usize| m.get(idx / outputs, idx % outputs).to_f64();
    let dz: Vec<f64> = (0..batch * outputs)
        .map(|idx| at(dy, idx) * derivative_from_output(act, at(y, idx)))
        .collect();
    let slope = match act {
        Activation::PRelu(a) => (0..batch * outputs)
            .filter(|&idx| at(y, idx) <= 0.0)
            .map(|idx| at(dy, idx) * at(y, idx) / a as f64)
            .sum(),
        _ => 0.0,
    };
    let db = (0..outputs)
        .map(|o| (0..batch).map(|r| dz[r * outputs + o]).sum())
        .collect();
    let mut dw = vec![0.0; outputs * inputs];
    for o in 0..outputs {
        for i in 0..inputs {
            let g: f64 = (0..batch)
                .map(|r| dz[r * outputs + o] * x.get(r, i).to_f64())
                .sum();
            dw[o * inputs + i] = g + l2.map_or(0.0, |l| l * w.get(o, i).to_f64());
        }
    }
    let mut dx = vec![0.0; batch * inputs];
    for r in 0..batch {
        for i in 0..inputs {
            dx[r * inputs + i] = (0..outputs)
                .map(|o| dz[r * outputs + o] * w.get(o, i).to_f64())
                .sum();
        }
    }
    ReferenceGrads { dw, db, dx, slope }
}

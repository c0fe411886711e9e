//! Fused dense-layer kernels: `y = act(x·wᵀ + b)` and its backward pass.
//!
//! # Layout
//! Weights are `(out, in)` and the bias has `out` values, PyTorch's layout,
//! so weights interchange with PyTorch or candle state dicts:
//!
//! ```text
//! x: (batch, in)   w: (out, in)   b: (out)   z = x·wᵀ + b   y = act(z): (batch, out)
//! ```
//!
//! (The lecture writes `y = x·W + b` with `W = wᵀ`.)
//!
//! `w` and `dw` are views, so they may also be stored column-major, i.e. as
//! `wᵀ` `(in, out)` row-major, as [`Mlp`](crate::mlp::Mlp) stores them: the
//! forward GEMM then reads `wᵀ` in place as its B operand instead of packing
//! a transpose, and the sparse-input gradient `dwᵀ = xᵀ·dz` (below) lands in
//! `dw` directly instead of going through a transpose.
//!
//! # Fusion
//! * [`forward`]: the bias and the activation are applied by the GEMM
//!   microkernel to each register tile before it is stored: `y` is written
//!   once and never re-read.
//! * [`backward`]: one pass over `dy` and `y` computes `dz = dy ⊙ act'(y)`
//!   (the derivative from the output), the bias gradient `db = Σ_batch dz`
//!   and, for PReLU, the slope gradient, writing `dz` in the row-major layout
//!   both GEMMs consume: `dx = dz·w` reads it in place (no packing) and
//!   `dw = dzᵀ·x` copy-packs it.
//!
//! # Sparse inputs
//! When `x` is mostly exact zeros (judged from its first rows: a batch of
//! images, MNIST being 81% black) and the layer is at least 64 wide, the
//! GEMMs multiplying by `x` (`x·wᵀ`, and `dw` computed as `dwᵀ = xᵀ·dz`)
//! skip every k step whose packed values of `x` (one sliver: 12 rows on
//! AVX-512, 6 on AVX2) are all zero, about half of them for MNIST. Those zeros then contribute nothing even against `∞` or
//! NaN in `w` or `dz`, where IEEE arithmetic would give `0·∞ = NaN` (the
//! convention of sparse BLAS; a weight is only non-finite after training
//! has diverged). The same holds for `dx = dz·w` when `dz` is mostly zero.
//!
//! Results are bitwise identical for any thread count: the GEMMs split only
//! output tiles, the reductions run in a fixed order, and which steps are
//! skipped depends on the values and the fixed blocking alone.
//!
//! [`reference`](mod@reference) holds the unfused naive twins the tests compare against.

pub mod reference;

use rayon::prelude::*;

use crate::activation::{Activation, backward_row};
use crate::gemm::{
    Accum, Element, Hints, Isa, MatMut, MatRef, Par, gemm_fused, transpose_padded,
    unaliased_row_stride,
};

/// Reusable scratch memory for [`backward`] (the `dz` matrix), so a
/// training loop does not allocate per step.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::{backward, BackwardOptions, Grads, Workspace};
/// use densekit::gemm::{MatMut, MatRef};
/// // One workspace for every step of a training loop: no allocation after the first.
/// let mut ws = Workspace::new();
/// let (x, w, y) = ([1.0f32, 2.0], [3.0f32, 4.0], [11.0f32]);
/// for step in 0..3 {
///     let dy = [step as f32];
///     let mut dw = [0.0f32; 2];
///     backward(Grads { dw: MatMut::from_row_major(&mut dw, 1, 2), db: None, dx: None },
///         MatRef::from_row_major(&x, 1, 2), MatRef::from_row_major(&w, 1, 2),
///         MatRef::from_row_major(&y, 1, 1), MatRef::from_row_major(&dy, 1, 1),
///         Activation::Identity, BackwardOptions::default(), &mut ws);
///     assert_eq!(dw, [step as f32, 2.0 * step as f32]);
/// }
/// ```
#[derive(Debug, Default)]
pub struct Workspace<T> {
    dz: Vec<T>,
    db: Vec<T>,
    /// `dwᵀ` (in, out), when a sparse `x` makes that product the cheaper one.
    dwt: Vec<T>,
}

impl<T: Element> Workspace<T> {
    /// An empty workspace; it grows on first use.
    ///
    /// ```
    /// use densekit::dense::Workspace;
    /// let ws = Workspace::<f32>::new(); // buffers grow on the first call that needs them
    /// # drop(ws);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

/// `y ← act(x·wᵀ + b + β·y)`, with bias and activation fused into the GEMM.
///
/// The output comes first, as in [`gemm`](crate::gemm::gemm); `accum`
/// gives β (`Accum::Replace` never reads `y`). The activation is applied
/// last, to the full sum.
///
/// # Panics
/// If the shapes disagree (`x` is (batch, in), `w` (out, in), `b` (out),
/// `y` (batch, out)); the message names the shapes. If the activation's
/// parameters are invalid (see [`Activation::validate`]).
///
/// # Examples
/// The lecture's logic gates as single neurons, `a = step(⟨w,x⟩ − w0)`, here with
/// a steep sigmoid standing in for the step:
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::forward;
/// use densekit::gemm::{Accum, MatMut, MatRef, Par};
/// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]; // the 4 inputs, (4, 2)
/// // AND: x1 + x2 − 3/2, OR: x1 + x2 − 1/2 (scaled by 20 to sharpen the sigmoid).
/// let w = [20.0f32, 20.0, 20.0, 20.0]; // (out = 2, in = 2)
/// let b = [-30.0f32, -10.0];
/// let mut y = [0.0f32; 8];
/// forward(MatMut::from_row_major(&mut y, 4, 2), Accum::Replace, MatRef::from_row_major(&x, 4, 2),
///     MatRef::from_row_major(&w, 2, 2), Some(&b), Activation::Sigmoid, Par::Seq);
/// let gates: Vec<u8> = y.iter().map(|&v| (v > 0.5) as u8).collect();
/// assert_eq!(gates, [0, 0,  0, 1,  0, 1,  1, 1]); // (AND, OR) per input
/// // NOT x1 is the single neuron −x1 + 1/2:
/// let mut not = [0.0f32; 2];
/// forward(MatMut::from_row_major(&mut not, 2, 1), Accum::Replace,
///     MatRef::from_row_major(&[0.0, 1.0], 2, 1), MatRef::from_row_major(&[-20.0], 1, 1),
///     Some(&[10.0]), Activation::Sigmoid, Par::Seq);
/// assert!(not[0] > 0.5 && not[1] < 0.5);
/// ```
#[track_caller]
pub fn forward<T: Element>(
    y: MatMut<'_, T>,
    accum: Accum<T>,
    x: MatRef<'_, T>,
    w: MatRef<'_, T>,
    b: Option<&[T]>,
    act: Activation,
    par: Par,
) {
    check_forward_shapes(x, w, b, y.shape());
    if let Err(e) = act.validate() {
        panic!("dense::forward: {e}");
    }
    // x is (batch, in), wᵀ is (in, out): y (batch, out) = x·wᵀ.
    gemm_fused(
        Isa::selected(),
        y,
        accum,
        x,
        w.t(),
        T::ONE,
        Some(crate::gemm::Fused { bias: b, act }),
        Hints::dropping_zeros(skips_zeros(x, w.nrows())),
        par,
    )
    .expect("the selected ISA is always available");
}

/// Where [`backward`] writes its gradients.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::{backward, BackwardOptions, Grads, Workspace};
/// use densekit::gemm::{MatMut, MatRef};
/// // A first layer: no input gradient wanted (dx: None skips that GEMM).
/// let (x, w, y, dy) = ([1.0f32, 2.0], [3.0f32, 4.0], [11.0f32], [0.5f32]);
/// let (mut dw, mut db) = ([0.0f32; 2], [0.0f32]);
/// backward(Grads { dw: MatMut::from_row_major(&mut dw, 1, 2), db: Some(&mut db), dx: None },
///     MatRef::from_row_major(&x, 1, 2), MatRef::from_row_major(&w, 1, 2),
///     MatRef::from_row_major(&y, 1, 1), MatRef::from_row_major(&dy, 1, 1),
///     Activation::Relu, BackwardOptions::default(), &mut Workspace::new());
/// assert_eq!((dw, db), ([0.5, 1.0], [0.5]));
/// ```
pub struct Grads<'a, T> {
    /// Weight gradient, `(out, in)`.
    pub dw: MatMut<'a, T>,
    /// Bias gradient, `out` values; `None` for a layer without bias.
    pub db: Option<&'a mut [T]>,
    /// Input gradient, `(batch, in)`; `None` for the first layer (skips a GEMM).
    pub dx: Option<MatMut<'a, T>>,
}

/// Options of [`backward`].
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::{backward, BackwardOptions, Grads, Workspace};
/// use densekit::gemm::{Accum, MatMut, MatRef, Par};
/// // L2 of 0.1 adds 0.1·w to dw; Accum::Add adds onto what dw held.
/// let (x, w, y, dy) = ([1.0f32], [2.0f32], [2.0f32], [1.0f32]);
/// let mut dw = [10.0f32];
/// let options = BackwardOptions { accum: Accum::Add, l2: Some(0.1), par: Par::Seq };
/// backward(Grads { dw: MatMut::from_row_major(&mut dw, 1, 1), db: None, dx: None },
///     MatRef::from_row_major(&x, 1, 1), MatRef::from_row_major(&w, 1, 1),
///     MatRef::from_row_major(&y, 1, 1), MatRef::from_row_major(&dy, 1, 1),
///     Activation::Identity, options, &mut Workspace::new());
/// assert!((dw[0] - 11.2).abs() < 1e-6); // 10 + dy·x + 0.1·w
/// ```
#[derive(Clone, Copy, Debug)]
pub struct BackwardOptions<T> {
    /// `Replace` overwrites `dw` and `db` (never reading them); `Add`
    /// accumulates into them (gradient accumulation over micro-batches).
    /// `dx` is always replaced.
    pub accum: Accum<T>,
    /// L2 regularization: adds `λ·w` to `dw`, the gradient of `(λ/2)·‖w‖²`
    /// (the lecture's `R(W, b)`). The bias is not regularized.
    pub l2: Option<T>,
    /// Threads for the two GEMMs.
    pub par: Par,
}

impl<T: Element> Default for BackwardOptions<T> {
    fn default() -> Self {
        BackwardOptions {
            accum: Accum::Replace,
            l2: None,
            par: Par::Auto,
        }
    }
}

/// Backward pass of [`forward`]: from `dy = ∂L/∂y`, computes
/// `dz = dy ⊙ act'(y)`, `db = Σ_batch dz`, `dw = dzᵀ·x (+ λ·w)` and
/// `dx = dz·w`, touching `dy` and `y` once. The outputs (`grads`) come
/// first, as in [`forward`] and [`gemm`](crate::gemm::gemm).
///
/// Returns the gradient of PReLU's slope, `Σ dz·z` over `z < 0` (recovered
/// from the output as `z = y/α`), or `None` for other activations.
///
/// # Panics
/// If any shape disagrees with `x` (batch, in) and `w` (out, in); the
/// message names the shapes. If the activation's parameters are invalid.
///
/// # Examples
/// ```
/// use densekit::activation::Activation;
/// use densekit::dense::{backward, BackwardOptions, Grads, Workspace};
/// use densekit::gemm::{MatMut, MatRef};
/// // One sample, identity activation: dw = dyᵀ·x, db = dy, dx = dy·w.
/// let (x, w, y, dy) = ([1.0f32, 2.0], [3.0f32, 4.0], [0.0f32], [0.5f32]);
/// let (mut dw, mut db, mut dx) = ([0.0f32; 2], [0.0f32], [0.0f32; 2]);
/// backward(
///     Grads { dw: MatMut::from_row_major(&mut dw, 1, 2), db: Some(&mut db),
///             dx: Some(MatMut::from_row_major(&mut dx, 1, 2)) },
///     MatRef::from_row_major(&x, 1, 2), MatRef::from_row_major(&w, 1, 2),
///     MatRef::from_row_major(&y, 1, 1), MatRef::from_row_major(&dy, 1, 1), Activation::Identity,
///     BackwardOptions::default(), &mut Workspace::new());
/// assert_eq!((dw, db, dx), ([0.5, 1.0], [0.5], [1.5, 2.0]));
/// ```
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Element>(
    grads: Grads<'_, T>,
    x: MatRef<'_, T>,
    w: MatRef<'_, T>,
    y: MatRef<'_, T>,
    dy: MatRef<'_, T>,
    act: Activation,
    options: BackwardOptions<T>,
    workspace: &mut Workspace<T>,
) -> Option<T> {
    let Grads { mut dw, db, dx } = grads;
    let ((batch, inputs), outputs) = (x.shape(), w.nrows());
    check_backward_shapes(x, w, y, dy, &dw, db.as_deref(), dx.as_ref());
    if let Err(e) = act.validate() {
        panic!("dense::backward: {e}");
    }

    // One pass over dy and y: dz (row-major, batch × out), Σ_batch dz and PReLU's slope gradient.
    let Workspace {
        dz,
        db: db_sum,
        dwt,
    } = workspace;
    // Every dz entry is written by the pass: only grow, never clear or
    // shrink (layers of different widths share the workspace; refilling it
    // with zeros for each showed in profiles). Rows at a stride the GEMMs
    // read in place (not a multiple of 4 KiB); the padding is never read.
    let stride = unaliased_row_stride::<T>(outputs).max(1);
    let dz = grown_to(dz, batch * stride);
    db_sum.clear();
    db_sum.resize(outputs, T::ZERO);
    let slope_grad = derivative_pass(act, y, dy, dz, stride, db_sum);
    if let Some(db) = db {
        let beta = options.accum.beta();
        for (db, &sum) in db.iter_mut().zip(db_sum.iter()) {
            *db = if beta == T::ZERO {
                sum
            } else {
                beta * *db + sum
            };
        }
    }
    let dz_view = MatRef::from_strides(dz, batch, outputs, stride as isize, 1);

    // dw (out, in) = dzᵀ (out, batch) · x (batch, in), plus λ·w. A sparse x
    // (image pixels) is computed the other way round, dwᵀ = xᵀ·dz, where x is
    // the GEMM's A and its zero blocks are skipped: straight into dw when dw
    // is column-major (dwᵀ row-major, as `Mlp` stores its weights), otherwise
    // into the workspace and then transposed into dw.
    let skip = skips_zeros(x, outputs);
    if skip && dw.row_stride() != 1 {
        // dwᵀ rows at an unaliased stride too: its C tiles are stored row by row.
        let dwt_stride = unaliased_row_stride::<T>(outputs).max(1);
        let dwt = grown_to(dwt, inputs * dwt_stride);
        let dwt_out = MatMut::from_strides(dwt, inputs, outputs, dwt_stride as isize, 1);
        gemm_fused(
            Isa::selected(),
            dwt_out,
            Accum::Replace,
            x.t(),
            dz_view,
            T::ONE,
            None,
            Hints::dropping_zeros(true),
            options.par,
        )
        .expect("the selected ISA is always available");
        let dwt_view = MatRef::from_strides(&dwt[..], inputs, outputs, dwt_stride as isize, 1);
        let beta = options.accum.beta();
        match dw.as_row_major_mut() {
            Some(dw) if beta == T::ZERO && options.l2.is_none() => {
                transpose_into(dwt_view, dw, options.par);
            }
            _ => {
                for o in 0..outputs {
                    for i in 0..inputs {
                        let mut v = dwt_view.get(i, o);
                        if let Some(lambda) = options.l2 {
                            v = v + lambda * w.get(o, i);
                        }
                        if beta != T::ZERO {
                            v = v + beta * dw.get(o, i);
                        }
                        dw.set(o, i, v);
                    }
                }
            }
        }
    } else {
        let mut accum = options.accum;
        if let Some(lambda) = options.l2 {
            let beta = accum.beta();
            for o in 0..outputs {
                for i in 0..inputs {
                    let prior = if beta == T::ZERO {
                        T::ZERO
                    } else {
                        beta * dw.get(o, i)
                    };
                    dw.set(o, i, prior + lambda * w.get(o, i));
                }
            }
            accum = Accum::Add;
        }
        let (c, a, b) = if skip {
            (dw.t(), x.t(), dz_view)
        } else {
            (dw, dz_view.t(), x)
        };
        gemm_fused(
            Isa::selected(),
            c,
            accum,
            a,
            b,
            T::ONE,
            None,
            Hints::dropping_zeros(skip),
            options.par,
        )
        .expect("the selected ISA is always available");
    }

    dx_product(dx, dz_view, w, options.par);
    slope_grad
}

/// The first `len` values of `buf`, grown (with zeros) if it is shorter; never shrunk.
fn grown_to<T: Element>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::ZERO);
    }
    &mut buf[..len]
}

/// `dst (cols × rows, row-major) = srcᵀ` for a `rows × cols` `src` with
/// unit column stride, in bands of `dst` rows over the threads `par` allows
/// (a pure copy: the result cannot depend on them).
fn transpose_into<T: Element>(src: MatRef<'_, T>, dst: &mut [T], par: Par) {
    /// A transposed element costs about as much as this many multiply-adds
    /// (`Par`'s unit of work).
    const MULTIPLY_ADDS_PER_ELEMENT: usize = 16;
    let (rows, cols) = src.shape();
    let band = |first: usize, dst: &mut [T]| {
        let width = dst.len() / rows.max(1);
        transpose_padded(src.columns(first, width), rows, dst);
    };
    par.run(rows * cols * MULTIPLY_ADDS_PER_ELEMENT, |threads| {
        if threads <= 1 || rows == 0 {
            band(0, dst);
        } else {
            let per = cols.div_ceil(threads);
            dst.par_chunks_mut(per * rows)
                .enumerate()
                .for_each(|(t, chunk)| band(t * per, chunk));
        }
    });
}

/// `dx (batch, in) = dz (batch, out) · w (out, in)`, if asked for.
fn dx_product<T: Element>(
    dx: Option<MatMut<'_, T>>,
    dz: MatRef<'_, T>,
    w: MatRef<'_, T>,
    par: Par,
) {
    if let Some(dx) = dx {
        gemm_fused(
            Isa::selected(),
            dx,
            Accum::Replace,
            dz,
            w,
            T::ONE,
            None,
            Hints::dropping_zeros(skips_zeros(dz, w.ncols())),
            par,
        )
        .expect("the selected ISA is always available");
    }
}

/// Layers narrower than this never skip zeros: they lose more to the fixed
/// orientation than they skip.
pub(crate) const SKIPS_ZEROS_MIN_WIDTH: usize = 64;

/// Whether a layer GEMM whose A operand is `a` (or its transpose) and whose
/// other operand is `width` wide should drop A's all-zero columns: when `a`
/// is mostly exact zeros, judged from its first rows, and `width` is large
/// enough for the skipped work to repay the fixed orientation and the scan.
///
/// A batch of images qualifies (MNIST is 81% black): about half the columns
/// of its packed slivers are dropped, in both `x·wᵀ` and `xᵀ·dz`. ReLU
/// outputs (about half zero, scattered) do not: their slivers rarely have
/// an all-zero column. A narrow layer (the lecture's 784→10) loses: its
/// fixed orientation costs more than the skipped work saves
/// ([`SKIPS_ZEROS_MIN_WIDTH`]; figures in `docs/design.md`).
pub(crate) fn skips_zeros<T: Element>(a: MatRef<'_, T>, width: usize) -> bool {
    /// Rows probed: one 12-row sliver of the widest kernel.
    const PROBE_ROWS: usize = 12;
    /// Elementwise zero fraction from which dropping pays for its scan.
    const MIN_ZERO_FRACTION: f64 = 0.6;
    if width < SKIPS_ZEROS_MIN_WIDTH {
        return false;
    }
    let rows = a.nrows().min(PROBE_ROWS);
    let probed = rows * a.ncols();
    if probed == 0 {
        return false;
    }
    // Nonzeros allowed before the answer is known to be no. Counted in
    // chunks with u32 sums, which vectorize, and left at the first chunk
    // past the allowance: an element-by-element count showed in a single
    // dense sample's forward pass.
    let allowed = probed - (MIN_ZERO_FRACTION * probed as f64).ceil() as usize;
    let mut nonzeros = 0;
    for i in 0..rows {
        let Some(row) = a.row(i) else {
            return false;
        };
        for chunk in row.chunks(64) {
            nonzeros += chunk.iter().map(|&v| u32::from(v != T::ZERO)).sum::<u32>() as usize;
            if nonzeros > allowed {
                return false;
            }
        }
    }
    true
}

/// `dz = dy ⊙ act'(y)` into `dz` (row-major), `Σ_batch dz` into `db_sum`
/// (summed in batch order), returning PReLU's slope gradient.
fn derivative_pass<T: Element>(
    act: Activation,
    y: MatRef<'_, T>,
    dy: MatRef<'_, T>,
    dz: &mut [T],
    stride: usize,
    db_sum: &mut [T],
) -> Option<T> {
    let outputs = db_sum.len();
    let mut slope_grad = T::ZERO;
    let (mut y_row, mut dy_row) = (vec![], vec![]);
    for (b, dz_row) in dz.chunks_exact_mut(stride).enumerate() {
        let dz_row = &mut dz_row[..outputs];
        // Rows with unit stride are used as they are; others are gathered once.
        let (y_row, dy_row) = match (y.row(b), dy.row(b)) {
            (Some(y), Some(dy)) => (y, dy),
            _ => {
                y_row.clear();
                y_row.extend((0..outputs).map(|o| y.get(b, o)));
                dy_row.clear();
                dy_row.extend((0..outputs).map(|o| dy.get(b, o)));
                (&y_row[..], &dy_row[..])
            }
        };
        slope_grad = slope_grad + backward_row(act, y_row, dy_row, dz_row, db_sum);
    }
    matches!(act, Activation::PRelu(_)).then_some(slope_grad)
}

#[track_caller]
fn check_forward_shapes<T>(x: MatRef<'_, T>, w: MatRef<'_, T>, b: Option<&[T]>, y: (usize, usize)) {
    let ((batch, inputs), (outputs, w_in)) = (x.shape(), w.shape());
    assert!(
        inputs == w_in,
        "dense: x is {batch}×{inputs} (batch × in) but w is {outputs}×{w_in} (out × in): the `in` sizes differ"
    );
    assert!(
        y == (batch, outputs),
        "dense: y is {}×{} but x is {batch}×{inputs} and w is {outputs}×{w_in}, so y must be {batch}×{outputs}",
        y.0,
        y.1
    );
    if let Some(b) = b {
        assert!(
            b.len() == outputs,
            "dense: the bias has {} values but w is {outputs}×{w_in} (one per output)",
            b.len()
        );
    }
}

#[track_caller]
fn check_backward_shapes<T>(
    x: MatRef<'_, T>,
    w: MatRef<'_, T>,
    y: MatRef<'_, T>,
    dy: MatRef<'_, T>,
    dw: &MatMut<'_, T>,
    db: Option<&[T]>,
    dx: Option<&MatMut<'_, T>>,
) {
    check_forward_shapes(x, w, db, y.shape());
    let named = [("dy", dy.shape(), y.shape()), ("dw", dw.shape(), w.shape())];
    for (name, got, want) in named {
        assert!(
            got == want,
            "dense::backward: {name} is {}×{} but must be {}×{} (x is {}×{}, w is {}×{})",
            got.0,
            got.1,
            want.0,
            want.1,
            x.nrows(),
            x.ncols(),
            w.nrows(),
            w.ncols()
        );
    }
    if let Some(dx) = dx {
        assert!(
            dx.shape() == x.shape(),
            "dense::backward: dx is {}×{} but x is {}×{}",
            dx.nrows(),
            dx.ncols(),
            x.nrows(),
            x.ncols()
        );
    }
}

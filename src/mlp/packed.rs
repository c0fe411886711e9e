//! A trained network frozen for inference: every weight stored once in the
//! layout the kernels read in place.
//!
//! [`Mlp`] keeps its weights in the orders training wants (a first layer's
//! `wᵀ`, the others `(out, in)`), so a forward pass through a deeper layer
//! reads `w` through a transposed view and the GEMM copies it, or computes
//! the product transposed. [`PackedMlp`] stores every layer as `wᵀ`
//! `(in, out)`, rows padded with zeros to a multiple of 32 columns,
//! 64-byte aligned, and at a row stride that is not a multiple of 4 KiB:
//! the microkernels then read each weight where it lies at every batch
//! size, edge tiles included, and a forward pass copies no weight
//! (anchors: MKL's `cblas_sgemm_pack`, XNNPACK's packed fully connected
//! operator).
//!
//! The outputs are bitwise those of [`Mlp::forward`], at any batch size and
//! thread count (see [`PackedMlp::forward`]).

use bytemuck::{Pod, Zeroable};

use super::{Mlp, MlpWorkspace, output_stride};
use crate::activation::Activation;
use crate::dense::skips_zeros;
use crate::gemm::{
    Accum, Fused, Hints, Isa, MatMut, MatRef, Par, gemm_fused, unaliased_row_stride,
};

/// Columns a packed weight's rows are padded to a multiple of: the NR of
/// the full AVX-512 f32 kernel (12 × 32), so every tile reads B in place
/// (the 4 × 64 shallow twin's last sliver through its masked edge tiles).
const PADDED_COLS: usize = 32;

/// One cache line of weights: the storage unit, so packed rows start aligned.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// One layer: `wᵀ` `(in, out)` at row stride `stride` (≥ `out` rounded up
/// to [`PADDED_COLS`], the padding zero), the bias, the activation.
#[derive(Clone)]
struct PackedLayer {
    wt: Vec<Line>,
    inputs: usize,
    outputs: usize,
    stride: usize,
    bias: Vec<f32>,
    act: Activation,
}

impl PackedLayer {
    fn weights(&self) -> &[f32] {
        &bytemuck::cast_slice(&self.wt)[..self.inputs * self.stride]
    }
}

/// An [`Mlp`] frozen for repeated inference (see the module docs). Built
/// with [`Mlp::packed`]; the network it came from can go on training
/// without affecting it.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::gemm::{MatRef, Par};
/// use densekit::mlp::{Mlp, MlpWorkspace};
/// let net = Mlp::new(&[4, 8, 3], Activation::Relu, 1);
/// let packed = net.packed();
/// let x = [0.5f32, -1.0, 0.25, 2.0];
/// let (mut ws, mut ws_packed) = (MlpWorkspace::new(), MlpWorkspace::new());
/// let x = MatRef::from_row_major(&x, 1, 4);
/// let logits = net.forward(x, &mut ws, Par::Seq);
/// assert_eq!(packed.forward(x, &mut ws_packed, Par::Seq), logits);
/// ```
#[derive(Clone)]
pub struct PackedMlp {
    sizes: Vec<usize>,
    layers: Vec<PackedLayer>,
}

impl std::fmt::Debug for PackedMlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMlp")
            .field("sizes", &self.sizes)
            .finish_non_exhaustive()
    }
}

impl Mlp {
    /// This network frozen for inference: [`PackedMlp::forward`] gives the
    /// same bits as [`Mlp::forward`] without copying any weight per call.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::gemm::{MatRef, Par};
    /// use densekit::mlp::{Mlp, MlpWorkspace};
    /// let net = Mlp::new(&[4, 8, 3], Activation::Relu, 1);
    /// let x: Vec<f32> = (0..3 * 4).map(|i| i as f32 / 12.0).collect();
    /// let x = MatRef::from_row_major(&x, 3, 4);
    /// let mut ws = MlpWorkspace::new();
    /// let plain = net.forward(x, &mut ws, Par::Seq).to_vec();
    /// let packed = net.packed();
    /// assert_eq!(packed.forward(x, &mut ws, Par::Seq), &plain[..]); // the same bits
    /// ```
    pub fn packed(&self) -> PackedMlp {
        let layers = (0..self.layers())
            .map(|layer| {
                let (inputs, outputs) = (self.sizes[layer], self.sizes[layer + 1]);
                let stride = unaliased_row_stride::<f32>(outputs.next_multiple_of(PADDED_COLS));
                let mut wt = vec![Line([0.0; 16]); (inputs * stride).div_ceil(16)];
                let w = self.weight(layer);
                let values: &mut [f32] = bytemuck::cast_slice_mut(&mut wt);
                for i in 0..inputs {
                    for o in 0..outputs {
                        values[i * stride + o] = w.get(o, i);
                    }
                }
                PackedLayer {
                    wt,
                    inputs,
                    outputs,
                    stride,
                    bias: self.bias(layer).to_vec(),
                    act: self.activation(layer),
                }
            })
            .collect();
        PackedMlp {
            sizes: self.sizes.clone(),
            layers,
        }
    }
}

/// A network that maps a batch of inputs to logits: [`Mlp`] and
/// [`PackedMlp`], so evaluation code (such as
/// [`train::evaluate`](crate::train::evaluate)) takes either.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::gemm::{MatRef, Par};
/// use densekit::mlp::{Infer, Mlp, MlpWorkspace};
/// // Predicted classes of a batch, by any network form.
/// fn predict(net: &impl Infer, x: &[f32]) -> Vec<usize> {
///     let (inputs, classes) = (net.sizes()[0], *net.sizes().last().unwrap());
///     let mut ws = MlpWorkspace::new();
///     let logits = net.infer(MatRef::from_row_major(x, x.len() / inputs, inputs), &mut ws, Par::Seq);
///     densekit::mlp::argmax_rows(logits, classes).collect()
/// }
/// let net = Mlp::new(&[2, 8, 3], Activation::Relu, 1);
/// let x = [0.5f32, -1.0, 2.0, 0.25];
/// assert_eq!(predict(&net, &x), predict(&net.packed(), &x)); // the same bits
/// ```
pub trait Infer {
    /// Layer sizes, input first.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::{Infer, Mlp};
    /// let net = Mlp::new(&[784, 64, 10], Activation::Relu, 1);
    /// assert_eq!(Infer::sizes(&net.packed()), [784, 64, 10]);
    /// ```
    fn sizes(&self) -> &[usize];

    /// The logits (batch × classes, row-major) of `x` (batch × inputs).
    ///
    /// # Panics
    /// If `x` does not have `sizes()[0]` columns.
    ///
    /// # Examples
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::gemm::{MatRef, Par};
    /// use densekit::mlp::{Infer, Mlp, MlpWorkspace};
    /// let net = Mlp::new(&[2, 3], Activation::Relu, 1);
    /// let mut ws = MlpWorkspace::new();
    /// let logits = net.infer(MatRef::from_row_major(&[1.0, 0.0], 1, 2), &mut ws, Par::Seq);
    /// assert_eq!(logits.len(), 3);
    /// ```
    fn infer<'w>(&self, x: MatRef<'_, f32>, ws: &'w mut MlpWorkspace, par: Par) -> &'w [f32];
}

impl Infer for Mlp {
    fn sizes(&self) -> &[usize] {
        Mlp::sizes(self)
    }
    #[track_caller]
    fn infer<'w>(&self, x: MatRef<'_, f32>, ws: &'w mut MlpWorkspace, par: Par) -> &'w [f32] {
        self.forward(x, ws, par)
    }
}

impl Infer for PackedMlp {
    fn sizes(&self) -> &[usize] {
        PackedMlp::sizes(self)
    }
    #[track_caller]
    fn infer<'w>(&self, x: MatRef<'_, f32>, ws: &'w mut MlpWorkspace, par: Par) -> &'w [f32] {
        self.forward(x, ws, par)
    }
}

impl PackedMlp {
    /// Layer sizes, input first.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// assert_eq!(Mlp::new(&[4, 3, 2], Activation::Relu, 1).packed().sizes(), [4, 3, 2]);
    /// ```
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Runs the network on `x` (batch × inputs), returning the logits
    /// (batch × classes, row-major) held in the workspace.
    ///
    /// Bitwise the same as [`Mlp::forward`] of the network it was packed
    /// from, and a row's logits do not depend on the batch around it: the
    /// same for a row alone, in a batch of 7 or of 1000, on any thread
    /// count. (The one exception, as for every product that skips the zero
    /// inputs of an image batch: a logit whose exact value is zero may
    /// differ in its sign, and a zero input times an infinite weight counts
    /// as zero only where it is skipped.) Once the workspace has grown to
    /// the largest batch, a call allocates nothing (inside a
    /// [`Par::install`] region on a busy machine, bringing back the helper
    /// threads that left a contended core boxes one small job).
    ///
    /// # Panics
    /// If `x` does not have `sizes[0]` columns.
    ///
    /// # Examples
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::gemm::{MatRef, Par};
    /// use densekit::mlp::{Mlp, MlpWorkspace};
    /// let net = Mlp::new(&[3, 16, 4], Activation::Relu, 2);
    /// let packed = net.packed();
    /// let x = [0.1f32, 0.7, 0.0, 0.0, 0.2, 0.9];
    /// let mut ws = MlpWorkspace::new();
    /// let from_packed = packed.forward(MatRef::from_row_major(&x, 2, 3), &mut ws, Par::Seq).to_vec();
    /// assert_eq!(from_packed, net.forward(MatRef::from_row_major(&x, 2, 3), &mut ws, Par::Seq));
    /// // A row alone gets the same logits as inside the batch.
    /// assert_eq!(packed.forward(MatRef::from_row_major(&x[3..], 1, 3), &mut ws, Par::Seq), &from_packed[4..]);
    /// ```
    #[track_caller]
    pub fn forward<'w>(&self, x: MatRef<'_, f32>, ws: &'w mut MlpWorkspace, par: Par) -> &'w [f32] {
        assert!(
            x.ncols() == self.sizes[0],
            "PackedMlp::forward: x is {}×{} but the network takes {} inputs",
            x.nrows(),
            x.ncols(),
            self.sizes[0]
        );
        let batch = x.nrows();
        let layers = self.layers.len();
        ws.outputs.resize_with(layers, Vec::new);
        for (l, layer) in self.layers.iter().enumerate() {
            let (done, rest) = ws.outputs.split_at_mut(l);
            let y = &mut rest[0];
            // Outputs at the strides `Mlp` uses, so each layer reads its
            // input the same way; the logits dense.
            let stride = output_stride(&self.sizes, l);
            y.resize(batch * stride, 0.0);
            let input = match l {
                0 => x,
                _ => {
                    let (prev, prev_stride) =
                        (&self.layers[l - 1], output_stride(&self.sizes, l - 1));
                    MatRef::from_strides(&done[l - 1], batch, prev.outputs, prev_stride as isize, 1)
                }
            };
            let wt = MatRef::from_strides(
                layer.weights(),
                layer.inputs,
                layer.outputs,
                layer.stride as isize,
                1,
            );
            let hints = Hints {
                drop_zero_a: skips_zeros(input, layer.outputs),
                b_padded_cols: Some(layer.stride),
            };
            gemm_fused(
                Isa::selected(),
                MatMut::from_strides(y, batch, layer.outputs, stride as isize, 1),
                Accum::Replace,
                input,
                wt,
                1.0,
                Some(Fused {
                    bias: Some(&layer.bias),
                    act: layer.act,
                }),
                hints,
                par,
            )
            .expect("the selected ISA is always available");
        }
        &ws.outputs[layers - 1]
    }
}

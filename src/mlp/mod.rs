//! A multilayer perceptron on the fused dense kernels.
//!
//! Layers are `(out, in)` weight matrices plus biases, stored back to back in
//! one flat parameter buffer (`w₀ᵀ, b₀, w₁, b₁, w₂, b₂, …`); gradients use
//! the same layout, so an optimizer updates the whole network in one loop.
//! Hidden layers share one activation; the output layer is linear: logits
//! for softmax cross-entropy, or the predicted values for mean squared error
//! (see [`Mlp::gradients`]).
//!
//! # Storage order of the weights
//! A first layer at least 64 wide (wide enough to skip zero inputs, see
//! [`dense`](mod@crate::dense)) stores its weight as its transpose, `(in, out)`
//! row-major (the `(out, in)` matrix column-major); every other layer
//! row-major `(out, in)`. Each layer gets the order its GEMMs read without
//! copying:
//! * The first layer never computes `dx`. Stored as `wᵀ`, its forward GEMM
//!   `x·wᵀ` reads `wᵀ` in place instead of packing a transpose of it, and
//!   the weight gradient of a sparse input (images), computed as
//!   `dwᵀ = xᵀ·dz`, lands in the gradient buffer directly instead of going
//!   through a transpose; the same bits, faster (`docs/design.md`).
//! * Deeper layers compute `dx = dz·w`, which reads a row-major `w` in
//!   place; stored as `wᵀ`, every step would pack a transpose of it.
//! * A narrow first layer (the lecture's 784→10) computes `dw = dzᵀ·x`
//!   with full-width tiles; stored as `wᵀ`, its 10-wide tiles would all be
//!   edge tiles (0.047 → 0.058 s per lecture epoch).
//!
//! [`Mlp::weight`] gives the `(out, in)` view of either; saved files hold
//! PyTorch's `(out, in)` order.

mod dropout;
mod file;
mod init;
mod packed;
pub(crate) mod tensor_file;

pub use dropout::Dropout;
pub(crate) use file::architecture;
pub use file::{ModelError, NORMALIZATION};
pub use init::Init;
pub use packed::{Infer, PackedMlp};

use std::ops::Range;

use crate::activation::Activation;
use crate::dense::{self, BackwardOptions, Grads, SKIPS_ZEROS_MIN_WIDTH, Workspace};
use crate::gemm::{Accum, MatMut, MatRef, Par, unaliased_row_stride};
use crate::loss::{Targets, mse, softmax_cross_entropy};

/// A multilayer perceptron: `sizes[0]` inputs, `sizes[last]` outputs (class
/// logits, or regression values).
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::gemm::{MatRef, Par};
/// use densekit::mlp::{Mlp, MlpWorkspace};
/// // The lecture's XOR: two inputs, a hidden layer, two classes.
/// let net = Mlp::new(&[2, 4, 2], Activation::Tanh, 1);
/// let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
/// let mut ws = MlpWorkspace::new();
/// let logits = net.forward(MatRef::from_row_major(&x, 4, 2), &mut ws, Par::Seq);
/// assert_eq!(logits.len(), 4 * 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    sizes: Vec<usize>,
    hidden: Activation,
    params: Vec<f32>,
}

/// Buffers reused across steps (activations, their gradients, kernel scratch).
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::gemm::{MatRef, Par};
/// use densekit::mlp::{Mlp, MlpWorkspace};
/// let net = Mlp::new(&[3, 5, 2], Activation::Relu, 1);
/// let mut ws = MlpWorkspace::new(); // reused by every call below
/// for batch in [1, 4, 2] {
///     let x = vec![0.5f32; batch * 3];
///     assert_eq!(net.forward(MatRef::from_row_major(&x, batch, 3), &mut ws, Par::Seq).len(), batch * 2);
/// }
/// ```
#[derive(Debug, Default)]
pub struct MlpWorkspace {
    /// Output of each layer, `batch × size`, row-major; the last holds logits.
    outputs: Vec<Vec<f32>>,
    /// Gradient of the loss w.r.t. each layer's output.
    output_grads: Vec<Vec<f32>>,
    dense: Workspace<f32>,
}

impl MlpWorkspace {
    /// An empty workspace; buffers grow on first use.
    ///
    /// ```
    /// use densekit::mlp::MlpWorkspace;
    /// let ws = MlpWorkspace::new(); // or MlpWorkspace::default()
    /// # drop(ws);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }
}

/// Loss and correct predictions of one batch.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::gemm::{MatRef, Par};
/// use densekit::loss::Targets;
/// use densekit::mlp::{Mlp, MlpWorkspace};
/// let net = Mlp::new(&[2, 3], Activation::Relu, 1);
/// let mut grads = vec![0.0; net.params().len()];
/// let stats = net.gradients(MatRef::from_row_major(&[1.0, 0.0, 0.0, 1.0], 2, 2), Targets::Classes(&[0, 2]),
///     &mut grads, &mut MlpWorkspace::new(), Par::Seq);
/// assert!(stats.loss > 0.0 && stats.correct <= 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchStats {
    /// The batch's mean loss (cross-entropy, or squared error per output).
    pub loss: f64,
    /// How many samples the argmax of the logits got right (0 for
    /// regression targets).
    pub correct: usize,
}

impl Mlp {
    /// A network with the given layer sizes (e.g. `[784, 256, 10]`), hidden
    /// activation, and weights drawn from `seed`: He-uniform for the ReLU
    /// family, Glorot-uniform for sigmoid, tanh, identity and the output
    /// layer (Keras's default, [`Init::ByActivation`]); biases start at zero.
    /// A [`PRelu`](Activation::PRelu) hidden activation learns its slope,
    /// one per hidden layer, starting from the value given.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let net = Mlp::new(&[784, 256, 10], Activation::Relu, 7);
    /// assert_eq!(net.params().len(), 784 * 256 + 256 + 256 * 10 + 10);
    /// assert_eq!(net, Mlp::new(&[784, 256, 10], Activation::Relu, 7)); // seeded
    /// let prelu = Mlp::new(&[784, 256, 10], Activation::PRelu(0.25), 7);
    /// assert_eq!(prelu.prelu_slopes(), [0.25]); // one learned slope per hidden layer
    /// ```
    ///
    /// # Panics
    /// With fewer than two sizes, a zero size, sizes whose parameter count
    /// overflows `usize`, or an invalid activation.
    #[track_caller]
    pub fn new(sizes: &[usize], hidden: Activation, seed: u64) -> Mlp {
        Mlp::with_init(sizes, hidden, Init::ByActivation, seed)
    }

    /// [`new`](Self::new) with the weights drawn under `init`.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::{Init, Mlp};
    /// let net = Mlp::with_init(&[4, 3, 2], Activation::Tanh, Init::Zeros, 1);
    /// assert!(net.params().iter().all(|&p| p == 0.0));
    /// ```
    ///
    /// # Panics
    /// As [`new`](Self::new).
    #[track_caller]
    pub fn with_init(sizes: &[usize], hidden: Activation, init: Init, seed: u64) -> Mlp {
        assert!(
            sizes.len() >= 2 && sizes.iter().all(|&s| s > 0),
            "Mlp::new: need at least an input and an output size, all positive; got {sizes:?}"
        );
        if let Err(e) = hidden.validate() {
            panic!("Mlp::new: {e}");
        }
        let Some(count) = total_param_count(sizes, hidden) else {
            panic!("Mlp::new: the parameter count of sizes {sizes:?} overflows usize");
        };
        let mut net = Mlp {
            sizes: sizes.to_vec(),
            hidden,
            params: vec![0.0; count],
        };
        if let Activation::PRelu(a) = hidden {
            net.params[counted(sizes)..].fill(a);
        }
        init::initialize(&mut net, init, seed);
        net
    }

    /// Builds a network from existing parameters in the layout of
    /// [`params`](Self::params) (a first weight at least 64 wide stored
    /// `(in, out)`, the others `(out, in)`; then, for a PReLU network, one
    /// slope per hidden layer).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// // 3 → 2 → 1: w₀ = [[1, 2, 3], [4, 5, 6]], b₀ = [0, 0], w₁ = [[7, 8]], b₁ = [9].
    /// let params = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 7.0, 8.0, 9.0];
    /// let net = Mlp::from_parts(&[3, 2, 1], Activation::Relu, params).unwrap();
    /// assert_eq!(net.weight(0).get(1, 0), 4.0);
    /// assert_eq!(net.weight(1).get(0, 1), 8.0);
    /// // A 64-wide first layer stores w₀ᵀ: w₀[o][i] = o + 100·i.
    /// let mut params: Vec<f32> = (0..3).flat_map(|i| (0..64).map(move |o| (o + 100 * i) as f32)).collect();
    /// params.extend([0.0; 64 + 64 + 1]);
    /// let net = Mlp::from_parts(&[3, 64, 1], Activation::Relu, params).unwrap();
    /// assert_eq!(net.weight(0).get(5, 2), 205.0);
    /// ```
    ///
    /// # Errors
    /// A message if the sizes are invalid (fewer than two, a zero, or a
    /// parameter count that overflows `usize`) or `params` does not have the
    /// length they imply.
    pub fn from_parts(
        sizes: &[usize],
        hidden: Activation,
        params: Vec<f32>,
    ) -> Result<Mlp, String> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(format!("invalid layer sizes {sizes:?}"));
        }
        hidden.validate()?;
        let want = total_param_count(sizes, hidden)
            .ok_or_else(|| format!("layer sizes {sizes:?}: the parameter count overflows usize"))?;
        if params.len() != want {
            return Err(format!(
                "{} parameters given but sizes {sizes:?} need {want}",
                params.len()
            ));
        }
        Ok(Mlp {
            sizes: sizes.to_vec(),
            hidden,
            params,
        })
    }

    /// Layer sizes, input first.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// assert_eq!(Mlp::new(&[784, 256, 10], Activation::Relu, 1).sizes(), [784, 256, 10]);
    /// ```
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Number of dense layers.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// assert_eq!(Mlp::new(&[784, 256, 10], Activation::Relu, 1).layers(), 2);
    /// ```
    pub fn layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// The hidden layers' activation (for PReLU, with the slope it was
    /// created with; [`activation`](Self::activation) gives the learned one).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let net = Mlp::new(&[4, 3, 2], Activation::PRelu(0.25), 1);
    /// assert_eq!(net.hidden_activation(), Activation::PRelu(0.25));
    /// ```
    pub fn hidden_activation(&self) -> Activation {
        self.hidden
    }

    /// The activation of `layer`: identity for the output layer (it emits
    /// logits or regression values), else the hidden activation, a PReLU
    /// with this layer's learned slope.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let net = Mlp::new(&[4, 3, 2], Activation::Sigmoid, 1);
    /// assert_eq!((net.activation(0), net.activation(1)), (Activation::Sigmoid, Activation::Identity));
    /// ```
    pub fn activation(&self, layer: usize) -> Activation {
        if layer + 1 == self.layers() {
            Activation::Identity
        } else if let Activation::PRelu(_) = self.hidden {
            Activation::PRelu(self.prelu_slopes()[layer])
        } else {
            self.hidden
        }
    }

    /// The learned PReLU slopes, one per hidden layer (empty for other
    /// activations); they sit at the end of [`params`](Self::params).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let net = Mlp::new(&[4, 3, 3, 2], Activation::PRelu(0.1), 1);
    /// assert_eq!(net.prelu_slopes(), [0.1, 0.1]);
    /// assert!(Mlp::new(&[4, 3, 2], Activation::Relu, 1).prelu_slopes().is_empty());
    /// ```
    pub fn prelu_slopes(&self) -> &[f32] {
        &self.params[counted(&self.sizes)..]
    }

    /// Keeps the parameters within the constraints of training, after an
    /// update: PReLU slopes stay at or above [`MIN_PRELU_SLOPE`] (the
    /// derivative is computed from the output, which tells the two sides of
    /// zero apart only for a positive slope; PyTorch leaves the slope free),
    /// and with `max_norm` each unit's incoming weight vector (a row of the
    /// `(out, in)` weight) is scaled down to that Euclidean norm if longer
    /// (Srivastava et al. 2014's max-norm), in the hidden layers.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::{Init, Mlp};
    /// let mut net = Mlp::with_init(&[2, 2, 1], Activation::Relu, Init::HeUniform, 1);
    /// net.params_mut()[..4].copy_from_slice(&[3.0, 4.0, 0.3, 0.4]); // rows of norm 5 and 0.5
    /// net.constrain(Some(1.0));
    /// assert_eq!(&net.params()[..4], &[0.6, 0.8, 0.3, 0.4]);
    /// ```
    pub fn constrain(&mut self, max_norm: Option<f32>) {
        let start = counted(&self.sizes);
        for slope in &mut self.params[start..] {
            // NaN stays NaN: a diverged run must show as one.
            if *slope < MIN_PRELU_SLOPE {
                *slope = MIN_PRELU_SLOPE;
            }
        }
        let Some(limit) = max_norm else { return };
        for layer in 0..self.layers() - 1 {
            let (inputs, outputs) = (self.sizes[layer], self.sizes[layer + 1]);
            let (w, _) = self.layer_ranges(layer);
            let w = &mut self.params[w];
            // Walked in storage order: a transposed first layer holds each
            // unit's weights as a column.
            let transposed = stores_transposed(layer, outputs);
            let unit = move |at: usize| {
                if transposed {
                    at % outputs
                } else {
                    at / inputs
                }
            };
            let mut squares = vec![0.0f64; outputs];
            for (at, &v) in w.iter().enumerate() {
                squares[unit(at)] += f64::from(v) * f64::from(v);
            }
            let scales: Vec<f32> = squares
                .iter()
                .map(|&s| match s.sqrt() {
                    norm if norm > f64::from(limit) => (f64::from(limit) / norm) as f32,
                    _ => 1.0,
                })
                .collect();
            if scales.iter().any(|&s| s != 1.0) {
                for (at, v) in w.iter_mut().enumerate() {
                    *v *= scales[unit(at)];
                }
            }
        }
    }

    /// All parameters, `w₀ᵀ, b₀, w₁, b₁, …`: a first weight at least 64 wide
    /// stored as its transpose, row-major `(in, out)`, the others row-major
    /// `(out, in)` (see the module docs).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::{Init, Mlp};
    /// let net = Mlp::with_init(&[2, 3, 1], Activation::Relu, Init::Zeros, 1);
    /// assert_eq!(net.params().len(), 2 * 3 + 3 + 3 * 1 + 1);
    /// ```
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// All parameters, mutably (for optimizers).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let mut net = Mlp::new(&[2, 1], Activation::Relu, 1);
    /// let (_, bias) = net.layer_ranges(0);
    /// net.params_mut()[bias].fill(0.5);
    /// assert_eq!(net.bias(0), [0.5]);
    /// ```
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Where layer `layer`'s weight and bias live in the flat buffer.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let net = Mlp::new(&[3, 4, 2], Activation::Relu, 1);
    /// assert_eq!(net.layer_ranges(0), (0..12, 12..16));
    /// assert_eq!(net.layer_ranges(1), (16..24, 24..26));
    /// ```
    pub fn layer_ranges(&self, layer: usize) -> (Range<usize>, Range<usize>) {
        let start = counted(&self.sizes[..=layer]);
        let (inputs, outputs) = (self.sizes[layer], self.sizes[layer + 1]);
        let w = start..start + inputs * outputs;
        (w.clone(), w.end..w.end + outputs)
    }

    /// Layer `layer`'s weight `(out, in)`, a view of its storage (column-major
    /// for a wide first layer, see the module docs).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let net = Mlp::new(&[784, 256, 10], Activation::Relu, 7);
    /// assert_eq!(net.weight(1).shape(), (10, 256));
    /// ```
    pub fn weight(&self, layer: usize) -> MatRef<'_, f32> {
        let (w, _) = self.layer_ranges(layer);
        let shape = (self.sizes[layer + 1], self.sizes[layer]);
        weight_view(&self.params[w], layer, shape)
    }

    /// Layer `layer`'s weight `(out, in)`, mutably.
    pub(crate) fn weight_mut(&mut self, layer: usize) -> MatMut<'_, f32> {
        let (w, _) = self.layer_ranges(layer);
        let shape = (self.sizes[layer + 1], self.sizes[layer]);
        weight_view_mut(&mut self.params[w], layer, shape)
    }

    /// Reorders the network's inputs: afterwards input `j` is what input
    /// `order[j]` was, so the network gives the same outputs on data
    /// reordered by [`Dataset::with_feature_order`](crate::data::Dataset::with_feature_order)
    /// (up to rounding: sums run in the new order).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let mut net = Mlp::new(&[3, 4, 2], Activation::Relu, 1);
    /// let before = net.weight(0).get(1, 2);
    /// net.reorder_inputs(&[2, 0, 1]);
    /// assert_eq!(net.weight(0).get(1, 0), before);
    /// ```
    ///
    /// # Panics
    /// If `order` is not a permutation of `0..sizes[0]`.
    #[track_caller]
    pub fn reorder_inputs(&mut self, order: &[usize]) {
        let inputs = self.sizes[0];
        assert!(
            crate::data::is_permutation(order, inputs),
            "Mlp::reorder_inputs: the order must be a permutation of 0..{inputs}"
        );
        let outputs = self.sizes[1];
        let w = self.weight(0);
        let old: Vec<f32> = (0..outputs)
            .flat_map(|o| (0..inputs).map(move |i| w.get(o, i)))
            .collect();
        let mut w = self.weight_mut(0);
        for (j, &from) in order.iter().enumerate() {
            for o in 0..outputs {
                w.set(o, j, old[o * inputs + from]);
            }
        }
    }

    /// Layer `layer`'s bias.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// let net = Mlp::new(&[3, 4, 2], Activation::Relu, 1);
    /// assert_eq!(net.bias(1), [0.0, 0.0]); // biases start at zero
    /// ```
    pub fn bias(&self, layer: usize) -> &[f32] {
        let (_, b) = self.layer_ranges(layer);
        &self.params[b]
    }

    /// Multiply-adds of one forward pass per sample (the sum of `in·out`).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::mlp::Mlp;
    /// assert_eq!(Mlp::new(&[784, 256, 10], Activation::Relu, 1).macs_per_sample(), 784 * 256 + 256 * 10);
    /// ```
    pub fn macs_per_sample(&self) -> usize {
        self.sizes.windows(2).map(|w| w[0] * w[1]).sum()
    }

    /// Runs the network on `x` (batch × inputs), returning the logits
    /// (batch × classes, row-major) held in the workspace.
    ///
    /// A row's logits are bitwise the same computed alone or in a batch of
    /// any size, on any thread count (up to the sign of an exact zero, and
    /// a zero input against an infinite weight, see [`PackedMlp::forward`]).
    /// For repeated inference, [`Mlp::packed`] gives the same bits without
    /// copying any weight per call.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::gemm::{MatRef, Par};
    /// use densekit::mlp::{Mlp, MlpWorkspace};
    /// let net = Mlp::new(&[4, 8, 3], Activation::Relu, 1);
    /// let x = [0.5f32; 2 * 4]; // a batch of 2
    /// let mut ws = MlpWorkspace::new();
    /// let logits = net.forward(MatRef::from_row_major(&x, 2, 4), &mut ws, Par::Seq).to_vec();
    /// assert_eq!(logits.len(), 2 * 3);
    /// assert_eq!(logits[..3], logits[3..]); // equal rows, equal logits
    /// ```
    ///
    /// # Panics
    /// If `x` does not have `sizes[0]` columns.
    #[track_caller]
    pub fn forward<'w>(&self, x: MatRef<'_, f32>, ws: &'w mut MlpWorkspace, par: Par) -> &'w [f32] {
        self.forward_with(x, None, ws, par)
    }

    /// [`forward`](Self::forward), with `dropout` applied to the hidden
    /// layers' outputs (training).
    #[track_caller]
    fn forward_with<'w>(
        &self,
        x: MatRef<'_, f32>,
        dropout: Option<&Dropout<'_>>,
        ws: &'w mut MlpWorkspace,
        par: Par,
    ) -> &'w [f32] {
        assert!(
            x.ncols() == self.sizes[0],
            "Mlp::forward: x is {}×{} but the network takes {} inputs",
            x.nrows(),
            x.ncols(),
            self.sizes[0]
        );
        let batch = x.nrows();
        ws.outputs.resize_with(self.layers(), Vec::new);
        for layer in 0..self.layers() {
            let outputs = self.sizes[layer + 1];
            let (done, rest) = ws.outputs.split_at_mut(layer);
            let y = &mut rest[0];
            let stride = self.output_stride(layer);
            y.resize(batch * stride, 0.0);
            let input = match layer {
                0 => x,
                _ => self.output_view(&done[layer - 1], layer - 1, batch),
            };
            dense::forward(
                MatMut::from_strides(y, batch, outputs, stride as isize, 1),
                Accum::Replace,
                input,
                self.weight(layer),
                Some(self.bias(layer)),
                self.activation(layer),
                par,
            );
            if let Some(dropout) = dropout
                && layer + 1 < self.layers()
            {
                let keep = 1.0 - dropout.rate(layer);
                dropout.apply(layer, y, outputs, stride, 1.0 / keep, par);
            }
        }
        &ws.outputs[self.layers() - 1]
    }

    /// One forward and backward pass: writes the gradient of the batch's
    /// mean loss into `grads` (laid out like [`params`](Self::params)) and
    /// returns the loss and, for class labels, how many the network got
    /// right. The targets choose the loss: [`Targets::Classes`] softmax
    /// cross-entropy, [`Targets::Values`] mean squared error against the
    /// outputs.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::gemm::{MatRef, Par};
    /// use densekit::loss::Targets;
    /// use densekit::mlp::{Mlp, MlpWorkspace};
    /// let net = Mlp::new(&[2, 4, 1], Activation::Tanh, 3);
    /// let (x, y) = ([0.5f32, -1.0, 2.0, 0.0], [1.0f32, -1.0]);
    /// let mut grads = vec![0.0; net.params().len()];
    /// let stats = net.gradients(MatRef::from_row_major(&x, 2, 2), Targets::Values(&y),
    ///     &mut grads, &mut MlpWorkspace::new(), Par::Seq);
    /// assert!(stats.loss > 0.0 && grads.iter().any(|&g| g != 0.0));
    /// ```
    ///
    /// # Panics
    /// On mismatched shapes (names them), or labels out of range.
    #[track_caller]
    pub fn gradients(
        &self,
        x: MatRef<'_, f32>,
        targets: Targets<'_>,
        grads: &mut [f32],
        ws: &mut MlpWorkspace,
        par: Par,
    ) -> BatchStats {
        self.gradients_with(x, targets, None, grads, ws, par)
    }

    /// [`gradients`](Self::gradients) with `dropout` on the hidden layers
    /// (the loss and accuracy are those of the thinned network). A PReLU
    /// network's slope gradients land at the end of `grads`, as its slopes
    /// sit at the end of [`params`](Self::params).
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// use densekit::gemm::{MatRef, Par};
    /// use densekit::loss::Targets;
    /// use densekit::mlp::{Dropout, Mlp, MlpWorkspace};
    /// let net = Mlp::new(&[3, 8, 2], Activation::Relu, 1);
    /// let x = [0.1f32, 0.5, -0.3, 0.9, -0.2, 0.4];
    /// let mut grads = vec![0.0; net.params().len()];
    /// let dropout = Dropout { rates: &[0.5], seed: 3, step: 1 };
    /// let stats = net.gradients_with(MatRef::from_row_major(&x, 2, 3), Targets::Classes(&[0, 1]),
    ///     Some(&dropout), &mut grads, &mut MlpWorkspace::new(), Par::Seq);
    /// assert!(stats.loss.is_finite());
    /// ```
    ///
    /// # Panics
    /// As [`gradients`](Self::gradients).
    #[track_caller]
    pub fn gradients_with(
        &self,
        x: MatRef<'_, f32>,
        targets: Targets<'_>,
        dropout: Option<&Dropout<'_>>,
        grads: &mut [f32],
        ws: &mut MlpWorkspace,
        par: Par,
    ) -> BatchStats {
        assert!(
            grads.len() == self.params.len(),
            "Mlp::gradients: {} gradient slots for {} parameters",
            grads.len(),
            self.params.len()
        );
        let batch = x.nrows();
        let outputs = *self.sizes.last().expect("at least two sizes");
        if let Targets::Values(values) = targets {
            assert!(
                values.len() == batch * outputs,
                "Mlp::gradients: {} target values for a {batch}×{outputs} output",
                values.len()
            );
        }
        self.forward_with(x, dropout, ws, par);
        let layers = self.layers();
        ws.output_grads.resize_with(layers, Vec::new);
        let out = MatRef::from_row_major(&ws.outputs[layers - 1], batch, outputs);
        let dout = &mut ws.output_grads[layers - 1];
        dout.resize(batch * outputs, 0.0);
        let dout = MatMut::from_row_major(dout, batch, outputs);
        let (loss, correct) = match targets {
            Targets::Classes(labels) => (
                softmax_cross_entropy(out, labels, dout),
                count_correct(&ws.outputs[layers - 1], labels, outputs),
            ),
            Targets::Values(values) => (
                mse(out, MatRef::from_row_major(values, batch, outputs), dout),
                0,
            ),
        };
        let slopes_start = counted(&self.sizes);
        for layer in (0..layers).rev() {
            let (inputs, outputs) = (self.sizes[layer], self.sizes[layer + 1]);
            // A dropped-out hidden layer: the gradient reaches only the kept
            // units (scaled as they were), and the activations are brought
            // back to their values before the mask, which the derivative
            // reads (the next layer already used the masked ones).
            if let Some(dropout) = dropout
                && layer + 1 < layers
                && dropout.rate(layer) > 0.0
            {
                let keep = 1.0 - dropout.rate(layer);
                let stride = self.output_stride(layer);
                let dy = &mut ws.output_grads[layer];
                dropout.apply(layer, dy, outputs, outputs, 1.0 / keep, par);
                dropout.apply(layer, &mut ws.outputs[layer], outputs, stride, keep, par);
            }
            let (w_range, b_range) = self.layer_ranges(layer);
            let (before, after) = grads.split_at_mut(b_range.start);
            let dw = &mut before[w_range];
            let db = &mut after[..outputs];
            let (lower, upper) = ws.output_grads.split_at_mut(layer);
            let dy = &upper[0];
            let input = match layer {
                0 => x,
                _ => self.output_view(&ws.outputs[layer - 1], layer - 1, batch),
            };
            let dx = match layer {
                0 => None,
                _ => {
                    let dx = &mut lower[layer - 1];
                    dx.resize(batch * inputs, 0.0);
                    Some(MatMut::from_row_major(dx, batch, inputs))
                }
            };
            let slope_grad = dense::backward(
                Grads {
                    dw: weight_view_mut(dw, layer, (outputs, inputs)),
                    db: Some(db),
                    dx,
                },
                input,
                self.weight(layer),
                self.output_view(&ws.outputs[layer], layer, batch),
                MatRef::from_row_major(dy, batch, outputs),
                self.activation(layer),
                BackwardOptions {
                    accum: Accum::Replace,
                    l2: None,
                    par,
                },
                &mut ws.dense,
            );
            if let Some(g) = slope_grad {
                grads[slopes_start + layer] = g;
            }
        }
        BatchStats { loss, correct }
    }

    /// The row stride of layer `layer`'s output buffer: hidden layers avoid
    /// 4 KiB-multiple strides (so the next layer's GEMMs read them in place
    /// instead of copying them); the logits stay dense, as
    /// [`forward`](Self::forward) returns them.
    fn output_stride(&self, layer: usize) -> usize {
        output_stride(&self.sizes, layer)
    }

    /// Layer `layer`'s output buffer as a `batch × size` view.
    fn output_view<'a>(&self, buffer: &'a [f32], layer: usize, batch: usize) -> MatRef<'a, f32> {
        let stride = self.output_stride(layer) as isize;
        MatRef::from_strides(buffer, batch, self.sizes[layer + 1], stride, 1)
    }
}

/// The row stride of layer `layer`'s output buffer in a network of these
/// sizes (see [`Mlp::output_stride`]); [`PackedMlp`] lays its buffers out alike.
fn output_stride(sizes: &[usize], layer: usize) -> usize {
    let outputs = sizes[layer + 1];
    if layer + 2 == sizes.len() {
        outputs
    } else {
        unaliased_row_stride::<f32>(outputs)
    }
}

/// Whether layer `layer`, `outputs` wide, stores its weight transposed,
/// `(in, out)` row-major (see the module docs): only a first layer (it never
/// computes `dx`) wide enough to skip zero inputs.
fn stores_transposed(layer: usize, outputs: usize) -> bool {
    layer == 0 && outputs >= SKIPS_ZEROS_MIN_WIDTH
}

/// The `(out, in)` view of a weight (or its gradient) stored in `buf`.
fn weight_view(buf: &[f32], layer: usize, (outputs, inputs): (usize, usize)) -> MatRef<'_, f32> {
    if stores_transposed(layer, outputs) {
        MatRef::from_col_major(buf, outputs, inputs)
    } else {
        MatRef::from_row_major(buf, outputs, inputs)
    }
}

/// [`weight_view`], mutably.
fn weight_view_mut(
    buf: &mut [f32],
    layer: usize,
    (outputs, inputs): (usize, usize),
) -> MatMut<'_, f32> {
    if stores_transposed(layer, outputs) {
        MatMut::from_col_major(buf, outputs, inputs)
    } else {
        MatMut::from_row_major(buf, outputs, inputs)
    }
}

/// The smallest slope [`Mlp::constrain`] leaves a learned PReLU.
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::mlp::{Mlp, MIN_PRELU_SLOPE};
/// let mut net = Mlp::new(&[2, 2, 1], Activation::PRelu(0.25), 1);
/// let last = net.params().len() - 1;
/// net.params_mut()[last] = -0.5; // a slope an update drove negative
/// net.constrain(None);
/// assert_eq!(net.prelu_slopes(), [MIN_PRELU_SLOPE]);
/// ```
pub const MIN_PRELU_SLOPE: f32 = 1e-3;

/// All parameters of a network with these sizes and hidden activation:
/// [`param_count`], plus one slope per hidden layer for PReLU.
pub(crate) fn total_param_count(sizes: &[usize], hidden: Activation) -> Option<usize> {
    let slopes = match hidden {
        Activation::PRelu(_) => sizes.len().saturating_sub(2),
        _ => 0,
    };
    param_count(sizes)?.checked_add(slopes)
}

/// Weights and biases of a network with these sizes, or `None` if the count
/// overflows `usize`.
///
/// ```
/// use densekit::mlp::param_count;
/// assert_eq!(param_count(&[784, 256, 10]), Some(784 * 256 + 256 + 256 * 10 + 10));
/// assert_eq!(param_count(&[784, usize::MAX / 512, 10]), None);
/// ```
pub fn param_count(sizes: &[usize]) -> Option<usize> {
    sizes.windows(2).try_fold(0usize, |sum, w| {
        w[0].checked_mul(w[1])?.checked_add(w[1])?.checked_add(sum)
    })
}

/// [`param_count`] of sizes an `Mlp` was built from: checked then.
fn counted(sizes: &[usize]) -> usize {
    param_count(sizes).expect("sizes are checked when a network is built")
}

/// The index of the largest logit of each row (the first on ties).
///
/// ```
/// use densekit::mlp::argmax_rows;
/// let logits = [0.1f32, 2.0, 0.3, /* row 2 */ 5.0, 5.0, -1.0];
/// assert_eq!(argmax_rows(&logits, 3).collect::<Vec<_>>(), [1, 0]);
/// ```
pub fn argmax_rows(logits: &[f32], classes: usize) -> impl Iterator<Item = usize> + '_ {
    logits.chunks_exact(classes).map(|row| {
        row.iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0
    })
}

fn count_correct(logits: &[f32], labels: &[usize], classes: usize) -> usize {
    argmax_rows(logits, classes)
        .zip(labels)
        .filter(|(p, l)| p == *l)
        .count()
}

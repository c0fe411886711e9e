//! Optimizers over a flat parameter buffer, with PyTorch's update rules and
//! defaults, and learning-rate schedules.
//!
//! ```
//! use densekit::optim::{Optimizer, Sgd};
//! let opt = Optimizer::Sgd(Sgd { lr: 0.1, ..Sgd::default() });
//! let mut params = [1.0f32, -2.0];
//! let mut state = opt.state(params.len());
//! opt.update(&mut state, &mut params, &[0.5, -1.0], opt.lr(), densekit::gemm::Par::Seq);
//! assert_eq!(params, [0.95, -1.9]);
//! ```

use rayon::prelude::*;

use crate::gemm::Par;
use crate::isa::{Simd, SimdFn, dispatch};

/// How weight decay enters the update.
///
/// ```
/// use densekit::optim::{Optimizer, Sgd, WeightDecay};
/// // Coupled L2 on plain SGD: p ← p − lr·(g + λ·p).
/// let opt = Optimizer::Sgd(Sgd { lr: 0.5, weight_decay: WeightDecay::Coupled(0.1), ..Sgd::default() });
/// let mut params = [2.0f32];
/// opt.update(&mut opt.state(1), &mut params, &[0.0], opt.lr(), densekit::gemm::Par::Seq);
/// assert!((params[0] - 1.9).abs() < 1e-6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightDecay {
    /// L2 regularization as in the lecture: `λ·p` is added to the gradient
    /// (PyTorch's `weight_decay` for SGD, Adam and RMSprop).
    Coupled(f32),
    /// Decoupled (AdamW): `p ← p − lr·λ·p`, apart from the adaptive step.
    Decoupled(f32),
}

impl Default for WeightDecay {
    fn default() -> Self {
        WeightDecay::Coupled(0.0)
    }
}

/// Stochastic gradient descent with optional (Nesterov) momentum, as `torch.optim.SGD`.
///
/// ```
/// use densekit::optim::{Optimizer, Sgd};
/// let nesterov = Optimizer::Sgd(Sgd { lr: 0.05, momentum: 0.9, nesterov: true, ..Sgd::default() });
/// assert_eq!(nesterov.lr(), 0.05);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate (default 0.01, Keras's; PyTorch requires one).
    pub lr: f32,
    /// Momentum factor (default 0: plain SGD).
    pub momentum: f32,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
    /// Weight decay (default none).
    pub weight_decay: WeightDecay,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            weight_decay: WeightDecay::default(),
        }
    }
}

/// Adam (or AdamW with [`WeightDecay::Decoupled`]), as `torch.optim.Adam`.
///
/// ```
/// use densekit::optim::{Adam, Optimizer, WeightDecay};
/// // PyTorch's defaults, or AdamW with decoupled decay.
/// let adamw = Optimizer::Adam(Adam { weight_decay: WeightDecay::Decoupled(0.01), ..Adam::default() });
/// let mut params = [1.0f32];
/// let mut state = adamw.state(1);
/// adamw.update(&mut state, &mut params, &[0.5], adamw.lr(), densekit::gemm::Par::Seq);
/// assert!(params[0] < 1.0 && state.step == 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate (default 1e-3).
    pub lr: f32,
    /// Decay rates of the first and second moment estimates (default 0.9, 0.999).
    pub betas: (f32, f32),
    /// Added to the denominator (default 1e-8).
    pub eps: f32,
    /// Weight decay (default none).
    pub weight_decay: WeightDecay,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: WeightDecay::default(),
        }
    }
}

/// RMSprop, as `torch.optim.RMSprop` (non-centered).
///
/// ```
/// use densekit::optim::{Optimizer, RmsProp};
/// let opt = Optimizer::RmsProp(RmsProp { lr: 0.001, ..RmsProp::default() });
/// let mut params = [1.0f32, -1.0];
/// opt.update(&mut opt.state(2), &mut params, &[1.0, -1.0], opt.lr(), densekit::gemm::Par::Seq);
/// assert!(params[0] < 1.0 && params[1] > -1.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsProp {
    /// Learning rate (default 0.01).
    pub lr: f32,
    /// Smoothing constant of the squared-gradient average (default 0.99).
    pub alpha: f32,
    /// Added to the denominator (default 1e-8).
    pub eps: f32,
    /// Momentum factor (default 0).
    pub momentum: f32,
    /// Weight decay (default none).
    pub weight_decay: WeightDecay,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: WeightDecay::default(),
        }
    }
}

/// An optimizer and its state (moment buffers, step count).
///
/// ```
/// use densekit::optim::{Adam, Optimizer};
/// // Minimize (p − 3)² from p = 0.
/// let opt = Optimizer::Adam(Adam { lr: 0.1, ..Adam::default() });
/// let (mut p, mut state) = ([0.0f32], opt.state(1));
/// for _ in 0..200 {
///     let grad = [2.0 * (p[0] - 3.0)];
///     opt.update(&mut state, &mut p, &grad, opt.lr(), densekit::gemm::Par::Seq);
/// }
/// assert!((p[0] - 3.0).abs() < 0.1);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    /// See [`Sgd`].
    Sgd(Sgd),
    /// See [`Adam`].
    Adam(Adam),
    /// See [`RmsProp`].
    RmsProp(RmsProp),
}

impl Optimizer {
    /// The configured base learning rate.
    ///
    /// ```
    /// use densekit::optim::{Adam, Optimizer};
    /// assert_eq!(Optimizer::Adam(Adam::default()).lr(), 1e-3);
    /// ```
    pub fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.lr,
            Optimizer::Adam(o) => o.lr,
            Optimizer::RmsProp(o) => o.lr,
        }
    }

    /// A fresh state for `params` parameters.
    ///
    /// ```
    /// use densekit::optim::{Optimizer, Sgd};
    /// let state = Optimizer::Sgd(Sgd::default()).state(3);
    /// assert_eq!((state.step, state.buffers().0.len()), (0, 3));
    /// ```
    pub fn state(&self, params: usize) -> OptimizerState {
        // Both moment buffers always exist (unused ones stay zero), so every
        // optimizer splits into chunks the same way.
        OptimizerState {
            step: 0,
            first: vec![0.0; params],
            second: vec![0.0; params],
        }
    }

    /// One update of `params` from `grads` at learning rate `lr` (the
    /// schedule's value for this step; the configured `lr` is the base).
    ///
    /// The update is elementwise, so it runs in chunks on the threads `par`
    /// allows with bitwise-identical results.
    ///
    /// # Panics
    /// If the lengths of `params`, `grads` and the state differ.
    ///
    /// # Examples
    /// ```
    /// use densekit::gemm::Par;
    /// use densekit::optim::{Optimizer, Schedule, Sgd};
    /// // One SGD step at the rate a cosine schedule gives halfway through.
    /// let opt = Optimizer::Sgd(Sgd { lr: 1.0, ..Sgd::default() });
    /// let lr = Schedule::Cosine { epochs: 2, min_lr: 0.0 }.lr(opt.lr(), 1.0);
    /// let (mut params, mut state) = ([1.0f32], opt.state(1));
    /// opt.update(&mut state, &mut params, &[1.0], lr, Par::Seq);
    /// assert!((params[0] - 0.5).abs() < 1e-6);
    /// ```
    #[track_caller]
    pub fn update(
        &self,
        state: &mut OptimizerState,
        params: &mut [f32],
        grads: &[f32],
        lr: f32,
        par: Par,
    ) {
        assert!(
            params.len() == grads.len() && grads.len() == state.first.len(),
            "Optimizer::update: {} parameters, {} gradients, state for {}",
            params.len(),
            grads.len(),
            state.first.len()
        );
        state.step += 1;
        let t = state.step as i32;
        let (first, second) = (&mut state.first[..], &mut state.second[..]);
        // ~10 operations per parameter.
        par.run(params.len() * 10, |threads| {
            if threads > 1 {
                params
                    .par_chunks_mut(CHUNK)
                    .zip(grads.par_chunks(CHUNK))
                    .zip(
                        first
                            .par_chunks_mut(CHUNK)
                            .zip(second.par_chunks_mut(CHUNK)),
                    )
                    .for_each(|((params, grads), (first, second))| {
                        self.update_chunk(
                            t,
                            lr,
                            Chunk {
                                params,
                                grads,
                                first,
                                second,
                            },
                        )
                    });
            } else {
                self.update_chunk(
                    t,
                    lr,
                    Chunk {
                        params,
                        grads,
                        first,
                        second,
                    },
                );
            }
        });
    }

    /// The update rule on one chunk (`first`/`second`: the moment buffers),
    /// compiled for the selected ISA so its plain loops vectorize at that
    /// width. Only exactly rounded operations are used (no fused
    /// multiply-add), so every width gives the same bits.
    fn update_chunk(&self, t: i32, lr: f32, chunk: Chunk<'_>) {
        dispatch(UpdateChunk {
            optimizer: self,
            t,
            lr,
            chunk,
        });
    }

    #[inline(always)]
    fn update_chunk_body(&self, t: i32, lr: f32, chunk: Chunk<'_>) {
        let Chunk {
            params,
            grads,
            first,
            second,
        } = chunk;
        let coupled = |wd: WeightDecay| match wd {
            WeightDecay::Coupled(l) => l,
            WeightDecay::Decoupled(_) => 0.0,
        };
        let decoupled = |wd: WeightDecay| match wd {
            WeightDecay::Decoupled(l) => l,
            WeightDecay::Coupled(_) => 0.0,
        };
        match *self {
            Optimizer::Sgd(o) => {
                let (wd, mu, dwd) = (
                    coupled(o.weight_decay),
                    o.momentum,
                    decoupled(o.weight_decay),
                );
                if mu == 0.0 {
                    for (p, &g) in params.iter_mut().zip(grads) {
                        *p -= lr * (g + wd * *p) + lr * dwd * *p;
                    }
                } else {
                    let first_step = t == 1;
                    for ((p, &g), buf) in params.iter_mut().zip(grads).zip(first.iter_mut()) {
                        let g = g + wd * *p;
                        *buf = flush_subnormal(if first_step { g } else { mu * *buf + g });
                        let step = if o.nesterov { g + mu * *buf } else { *buf };
                        *p -= lr * step + lr * dwd * *p;
                    }
                }
            }
            Optimizer::Adam(o) => {
                let (b1, b2) = o.betas;
                let (wd, dwd) = (coupled(o.weight_decay), decoupled(o.weight_decay));
                let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                let step_size = lr / c1;
                let inv_sqrt_c2 = 1.0 / c2.sqrt();
                let moments = params
                    .iter_mut()
                    .zip(grads)
                    .zip(first.iter_mut())
                    .zip(second.iter_mut());
                if wd == 0.0 && dwd == 0.0 {
                    // Without weight decay (the default) the decay terms are
                    // exact no-ops on finite weights: skip their arithmetic.
                    for (((p, &g), m), v) in moments {
                        *m = flush_subnormal(b1 * *m + (1.0 - b1) * g);
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *p -= step_size * *m / (v.sqrt() * inv_sqrt_c2 + o.eps);
                    }
                } else {
                    for (((p, &g), m), v) in moments {
                        *p -= lr * dwd * *p;
                        let g = g + wd * *p;
                        *m = flush_subnormal(b1 * *m + (1.0 - b1) * g);
                        *v = b2 * *v + (1.0 - b2) * g * g;
                        *p -= step_size * *m / (v.sqrt() * inv_sqrt_c2 + o.eps);
                    }
                }
            }
            Optimizer::RmsProp(o) => {
                let (wd, dwd, mu) = (
                    coupled(o.weight_decay),
                    decoupled(o.weight_decay),
                    o.momentum,
                );
                for (i, (p, &g)) in params.iter_mut().zip(grads).enumerate() {
                    let g = g + wd * *p;
                    let v = &mut first[i];
                    *v = o.alpha * *v + (1.0 - o.alpha) * g * g;
                    let scaled = g / (v.sqrt() + o.eps);
                    let step = if mu == 0.0 {
                        scaled
                    } else {
                        let buf = &mut second[i];
                        *buf = flush_subnormal(mu * *buf + scaled);
                        *buf
                    };
                    *p -= lr * step + lr * dwd * *p;
                }
            }
        }
    }
}

/// `x`, or zero if `x` is subnormal: applied to the buffers whose value is
/// a step (momentum, Adam's first moment).
///
/// Why: once a parameter's gradient stops (a dead unit, an always-black
/// pixel), these buffers decay geometrically and would spend about 150
/// steps as subnormals, where every operation on them costs x86 CPUs a
/// microcode assist (the Adam update nearly doubled in time; see
/// `docs/design.md`). A subnormal buffer moves its
/// weight by at most `lr · 1.2e-38` (momentum) or about `1e-29 · lr` (Adam
/// at its default `eps`), below the precision of any normal weight, so
/// flushing it leaves the weights as they would be.
#[inline(always)]
fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// One chunk of an update: parameters, gradients and both moment buffers.
struct Chunk<'a> {
    params: &'a mut [f32],
    grads: &'a [f32],
    first: &'a mut [f32],
    second: &'a mut [f32],
}

/// [`Optimizer::update_chunk`]'s body, run by [`dispatch`] under the
/// selected ISA's features (the loops are plain Rust; the lanes go unused).
struct UpdateChunk<'a> {
    optimizer: &'a Optimizer,
    t: i32,
    lr: f32,
    chunk: Chunk<'a>,
}

impl SimdFn for UpdateChunk<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn call<S: Simd>(self) {
        self.optimizer
            .update_chunk_body(self.t, self.lr, self.chunk);
    }
}

/// Parameters per chunk when an update runs on several threads.
const CHUNK: usize = 1 << 14;

/// Moment buffers and the step count of an [`Optimizer`].
///
/// ```
/// use densekit::gemm::Par;
/// use densekit::optim::{Optimizer, Sgd};
/// let opt = Optimizer::Sgd(Sgd::default());
/// let (mut params, mut state) = ([0.0f32; 2], opt.state(2));
/// for _ in 0..3 {
///     opt.update(&mut state, &mut params, &[1.0, 1.0], opt.lr(), Par::Seq);
/// }
/// assert_eq!(state.step, 3);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// Updates applied so far.
    pub step: u64,
    first: Vec<f32>,
    second: Vec<f32>,
}

impl OptimizerState {
    /// The two per-parameter buffers: SGD's momentum and an unused one;
    /// Adam's first and second moments; RMSprop's squared-gradient average
    /// and momentum. Buffers that act as steps are kept free of subnormals
    /// (see the update).
    ///
    /// ```
    /// use densekit::optim::{Optimizer, Sgd};
    /// let opt = Optimizer::Sgd(Sgd { lr: 0.1, momentum: 0.9, ..Sgd::default() });
    /// let (mut params, mut state) = ([1.0f32], opt.state(1));
    /// opt.update(&mut state, &mut params, &[2.0], opt.lr(), densekit::gemm::Par::Seq);
    /// assert_eq!(state.buffers().0, [2.0]);
    /// ```
    pub fn buffers(&self) -> (&[f32], &[f32]) {
        (&self.first, &self.second)
    }

    /// A state from its parts, as [`buffers`](Self::buffers) and
    /// [`step`](Self::step) give them (a training checkpoint restores one).
    ///
    /// ```
    /// use densekit::optim::OptimizerState;
    /// let state = OptimizerState::from_parts(3, vec![0.5; 2], vec![0.25; 2]).unwrap();
    /// assert_eq!(state.buffers(), (&[0.5, 0.5][..], &[0.25, 0.25][..]));
    /// assert!(OptimizerState::from_parts(3, vec![0.5; 2], vec![]).is_err());
    /// ```
    ///
    /// # Errors
    /// If the two buffers differ in length.
    pub fn from_parts(step: u64, first: Vec<f32>, second: Vec<f32>) -> Result<Self, String> {
        if first.len() != second.len() {
            return Err(format!(
                "optimizer buffers of {} and {} values: they must have one per parameter",
                first.len(),
                second.len()
            ));
        }
        Ok(OptimizerState {
            step,
            first,
            second,
        })
    }
}

/// How the learning rate changes over epochs.
///
/// ```
/// use densekit::optim::Schedule;
/// let step = Schedule::Step { every: 10, gamma: 0.5 };
/// assert_eq!((step.lr(0.1, 5.0), step.lr(0.1, 10.0)), (0.1, 0.05));
/// assert_eq!(Schedule::default(), Schedule::Constant);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` epochs (`torch.optim.lr_scheduler.StepLR`).
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor per decay.
        gamma: f32,
    },
    /// Cosine decay from the base rate to `min_lr` over `epochs` epochs
    /// (`CosineAnnealingLR`), evaluated per step for a smooth curve.
    Cosine {
        /// Length of the decay, in epochs.
        epochs: usize,
        /// Final learning rate.
        min_lr: f32,
    },
}

impl Schedule {
    /// The learning rate at fractional epoch `progress` (0 at the start).
    ///
    /// ```
    /// use densekit::optim::Schedule;
    /// let cosine = Schedule::Cosine { epochs: 10, min_lr: 0.0 };
    /// assert_eq!(cosine.lr(1.0, 0.0), 1.0);
    /// assert!((cosine.lr(1.0, 5.0) - 0.5).abs() < 1e-6);
    /// assert_eq!(Schedule::Step { every: 2, gamma: 0.1 }.lr(1.0, 2.5), 0.1);
    /// ```
    pub fn lr(&self, base: f32, progress: f64) -> f32 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => {
                base * gamma.powi((progress as usize / every.max(1)) as i32)
            }
            Schedule::Cosine { epochs, min_lr } => {
                let t = (progress / epochs.max(1) as f64).min(1.0);
                min_lr + (base - min_lr) * (0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
        }
    }
}

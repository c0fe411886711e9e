//! Activation functions, with derivatives computed from the output.
//!
//! A dense layer computes `y = act(z)`; backpropagation needs `act'(z)`. For
//! every activation here the derivative is a function of `y` alone (ReLU:
//! `y > 0`; sigmoid: `y(1 − y)`; tanh: `1 − y²`), so a fused forward pass never
//! has to keep `z` (oneDNN's "use dst for backward").
//!
//! # NaN
//! NaN propagates through every activation (`relu(NaN) = NaN`, unlike
//! cuBLASLt's ReLU epilogue, which maps NaN to 0), so a diverging network
//! shows up in the loss instead of being hidden.
//!
//! # Accuracy
//! Sigmoid and tanh are vectorized (one polynomial `exp` per lane, no libm
//! call). Measured against an f64 reference over a dense sweep of inputs,
//! f32 results are within [`SIGMOID_MAX_ULP`] and [`TANH_MAX_ULP`] units in
//! the last place for outputs of magnitude ≥ `f32::MIN_POSITIVE` (sigmoid of
//! inputs below −87.3 flushes its subnormal result to 0).

use crate::gemm::Element;
use crate::isa::{Lanes, MAX_LANES, Simd, SimdFn, VectorOf, dispatch};
use crate::simd::{self, map_lanes};

/// Largest error of [`Activation::Sigmoid`] in f32 ulps (see the module docs).
///
/// ```
/// use densekit::activation::{Activation, SIGMOID_MAX_ULP};
/// // The fused sigmoid stays within this many ulps of the exact value.
/// let mut y = [0.5f32];
/// Activation::Sigmoid.apply(&mut y);
/// let exact = 1.0 / (1.0 + (-0.5f64).exp());
/// assert!((f64::from(y[0]) - exact).abs() <= f64::from(SIGMOID_MAX_ULP) * f64::from(f32::EPSILON));
/// ```
pub const SIGMOID_MAX_ULP: u32 = 2;
/// Largest error of [`Activation::Tanh`] in f32 ulps (see the module docs).
///
/// ```
/// use densekit::activation::{Activation, TANH_MAX_ULP};
/// let mut y = [0.5f32];
/// Activation::Tanh.apply(&mut y);
/// assert!((f64::from(y[0]) - 0.5f64.tanh()).abs() <= f64::from(TANH_MAX_ULP) * f64::from(f32::EPSILON));
/// ```
pub const TANH_MAX_ULP: u32 = 2;

/// An elementwise activation, carrying its parameters.
///
/// ```
/// use densekit::activation::Activation;
/// let mut y = [-2.0f32, 0.0, 3.0];
/// Activation::LeakyRelu(0.1).apply(&mut y);
/// assert_eq!(y, [-0.2, 0.0, 3.0]);
/// // Derivatives come from the output y, never from z.
/// assert_eq!(Activation::Relu.derivative_from_output(3.0f32), 1.0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    /// `y = z`.
    #[default]
    Identity,
    /// `y = max(z, 0)`.
    Relu,
    /// `y = z` for `z > 0`, else `α·z`, with a fixed slope `α ≥ 0` (the
    /// lecture's PReLU with a constant slope).
    LeakyRelu(f32),
    /// PReLU: like `LeakyRelu`, but the slope is a learned parameter of the
    /// layer; the backward pass also returns its gradient. The slope must be
    /// positive: the gradient is recovered from the output as `z = y / α`.
    PRelu(f32),
    /// `y = 1 / (1 + e^(−z))`.
    Sigmoid,
    /// `y = tanh(z)`.
    Tanh,
}

/// The slope `leaky-relu` parses to when none is given (PyTorch's
/// `nn.LeakyReLU` default).
///
/// ```
/// use densekit::activation::{Activation, DEFAULT_LEAKY_SLOPE};
/// assert_eq!("leaky-relu".parse::<Activation>(), Ok(Activation::LeakyRelu(DEFAULT_LEAKY_SLOPE)));
/// ```
pub const DEFAULT_LEAKY_SLOPE: f32 = 0.01;
/// The initial slope `prelu` parses to when none is given (PyTorch's
/// `nn.PReLU` default).
///
/// ```
/// use densekit::activation::{Activation, DEFAULT_PRELU_SLOPE};
/// assert_eq!("prelu".parse::<Activation>(), Ok(Activation::PRelu(DEFAULT_PRELU_SLOPE)));
/// ```
pub const DEFAULT_PRELU_SLOPE: f32 = 0.25;

/// The names the model file, checkpoints and `train_mnist --activation`
/// use: `identity`, `relu`, `leaky-relu:SLOPE`, `prelu:SLOPE`, `sigmoid`,
/// `tanh`.
///
/// ```
/// use densekit::activation::Activation;
/// assert_eq!(Activation::LeakyRelu(0.1).to_string(), "leaky-relu:0.1");
/// assert_eq!("leaky-relu:0.1".parse::<Activation>(), Ok(Activation::LeakyRelu(0.1)));
/// ```
impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Activation::Identity => f.write_str("identity"),
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu(a) => write!(f, "leaky-relu:{a}"),
            Activation::PRelu(a) => write!(f, "prelu:{a}"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::Tanh => f.write_str("tanh"),
        }
    }
}

/// Why a text is not an [`Activation`].
///
/// ```
/// use densekit::activation::Activation;
/// let err = "swish".parse::<Activation>().unwrap_err();
/// assert!(err.to_string().contains("swish"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseActivationError(String);

impl std::fmt::Display for ParseActivationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseActivationError {}

/// Parses what [`Display`](std::fmt::Display) writes; a slope may be left
/// out (`leaky-relu` is [`DEFAULT_LEAKY_SLOPE`], `prelu`
/// [`DEFAULT_PRELU_SLOPE`]) and is checked as [`Activation::validate`] does.
///
/// ```
/// use densekit::activation::Activation;
/// assert_eq!("prelu".parse::<Activation>(), Ok(Activation::PRelu(0.25)));
/// assert!("prelu:-1".parse::<Activation>().is_err());
/// assert!("swish".parse::<Activation>().is_err());
/// ```
impl std::str::FromStr for Activation {
    type Err = ParseActivationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, slope) = match text.split_once(':') {
            Some((name, slope)) => (name, Some(slope)),
            None => (text, None),
        };
        let slope_or = |default: f32| match slope {
            None => Ok(default),
            Some(s) => s.parse::<f32>().map_err(|_| {
                ParseActivationError(format!("`{s}` in `{text}` is not a slope (a number)"))
            }),
        };
        let act = match name {
            "identity" => Activation::Identity,
            "relu" => Activation::Relu,
            "leaky-relu" => Activation::LeakyRelu(slope_or(DEFAULT_LEAKY_SLOPE)?),
            "prelu" => Activation::PRelu(slope_or(DEFAULT_PRELU_SLOPE)?),
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            _ => {
                return Err(ParseActivationError(format!(
                    "`{text}` is not an activation: use identity, relu, leaky-relu[:SLOPE], prelu[:SLOPE], sigmoid or tanh"
                )));
            }
        };
        match (slope, act) {
            (
                Some(_),
                Activation::Identity | Activation::Relu | Activation::Sigmoid | Activation::Tanh,
            ) => Err(ParseActivationError(format!(
                "`{name}` takes no slope (in `{text}`)"
            ))),
            _ => act.validate().map(|()| act).map_err(ParseActivationError),
        }
    }
}

impl Activation {
    /// Checks the parameters: slopes must be finite and non-negative
    /// (positive for PReLU).
    ///
    /// # Errors
    /// A message naming the bad parameter.
    ///
    /// # Examples
    /// ```
    /// use densekit::activation::Activation;
    /// assert!(Activation::LeakyRelu(0.01).validate().is_ok());
    /// assert!(Activation::LeakyRelu(f32::NAN).validate().is_err());
    /// assert!(Activation::PRelu(0.0).validate().is_err()); // PReLU's slope must be positive
    /// ```
    pub fn validate(self) -> Result<(), String> {
        match self {
            Activation::LeakyRelu(a) if !(a.is_finite() && a >= 0.0) => {
                Err(format!("LeakyRelu slope must be finite and ≥ 0, got {a}"))
            }
            Activation::PRelu(a) if !(a.is_finite() && a > 0.0) => {
                Err(format!("PRelu slope must be finite and > 0, got {a}"))
            }
            _ => Ok(()),
        }
    }

    /// `act(z)` on lanes; the form every kernel path shares.
    ///
    /// # Safety
    /// As [`Lanes`]: runs under the implementation's target features.
    #[inline(always)]
    pub(crate) unsafe fn apply_lanes<V: Lanes>(self, z: V) -> V {
        let e = |v: f64| V::Elem::from_f64(v);
        // SAFETY: forwarded trait contract.
        unsafe {
            let zero = V::splat(V::Elem::ZERO);
            let one = V::splat(V::Elem::ONE);
            match self {
                Activation::Identity => z,
                // `0.max(z)` returns z when z is NaN: NaN propagates.
                Activation::Relu => zero.max(z),
                Activation::LeakyRelu(a) | Activation::PRelu(a) => {
                    z.gt_select(zero, z, z.mul(V::splat(e(a as f64))))
                }
                Activation::Sigmoid => one.div(one.add(simd::exp(zero.sub(z)))),
                Activation::Tanh => tanh(z),
            }
        }
    }

    /// `dz = dy · act'(z)`, with `act'` computed from the output `y`.
    ///
    /// # Safety
    /// As [`Lanes`].
    #[inline(always)]
    pub(crate) unsafe fn backward_lanes<V: Lanes>(self, y: V, dy: V) -> V {
        let e = |v: f64| V::Elem::from_f64(v);
        // SAFETY: forwarded trait contract.
        unsafe {
            let zero = V::splat(V::Elem::ZERO);
            let one = V::splat(V::Elem::ONE);
            match self {
                Activation::Identity => dy,
                Activation::Relu => y.gt_select(zero, dy, zero),
                Activation::LeakyRelu(a) | Activation::PRelu(a) => {
                    y.gt_select(zero, dy, dy.mul(V::splat(e(a as f64))))
                }
                Activation::Sigmoid => dy.mul(y.mul(one.sub(y))),
                Activation::Tanh => dy.mul(one.sub(y.mul(y))),
            }
        }
    }

    /// Applies the activation in place, vectorized for the selected ISA.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// let mut y = [0.0f32, 100.0, -100.0, f32::NAN];
    /// Activation::Sigmoid.apply(&mut y);
    /// assert_eq!(&y[..3], &[0.5, 1.0, 0.0]);
    /// assert!(y[3].is_nan());
    /// ```
    pub fn apply<T: Element>(self, values: &mut [T]) {
        lanes_dispatch(values, self);
    }

    /// `act(z)` for one value, bit-identical to what [`apply`](Self::apply)
    /// produces for that value on the same ISA.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// assert_eq!(Activation::Relu.apply_one(-1.5f32), 0.0);
    /// ```
    pub fn apply_one<T: Element>(self, z: T) -> T {
        let mut out = [z];
        lanes_dispatch(&mut out, self);
        out[0]
    }

    /// `act'` expressed through the output: `act'(z)` where `y = act(z)`.
    ///
    /// ```
    /// use densekit::activation::Activation;
    /// assert_eq!(Activation::Sigmoid.derivative_from_output(0.5f64), 0.25);
    /// assert_eq!(Activation::Tanh.derivative_from_output(0.0f64), 1.0);
    /// ```
    pub fn derivative_from_output<T: Element>(self, y: T) -> T {
        // SAFETY: the scalar Lanes implementation runs on every CPU.
        unsafe { self.backward_lanes(y, T::ONE) }
    }
}

/// Below this `|z|`, tanh uses the cancellation-free expm1 form (ln2/2).
const SMALL_TANH: f64 = 0.346_573_590_279_972_6;

/// `tanh` lane-wise. For `|z| < ln2/2`: `e/(e + 2)` with `e = expm1(2z)`,
/// computed from `expm1(z)` by one doubling `e ← e·(e + 2)`, so nothing
/// cancels near 0. Elsewhere (`|tanh| > 1/3`): `1 − 2/(e^(2|z|) + 1)` with
/// the sign restored.
///
/// # Safety
/// As [`Lanes`].
#[inline(always)]
unsafe fn tanh<V: Lanes>(z: V) -> V {
    let e = |v: f64| V::Elem::from_f64(v);
    // SAFETY: forwarded trait contract.
    unsafe {
        let one = V::splat(V::Elem::ONE);
        let two = V::splat(e(2.0));
        let a = z.abs();
        let big = one
            .sub(two.div(simd::exp(a.add(a)).add(one)))
            .with_sign_of(z);
        // |z| < ln2/2: inside expm1_reduced's range; one doubling gives expm1(2z).
        let mut m = simd::expm1_reduced(z);
        m = m.mul(m.add(two));
        // tanh is odd: taking the sign from z keeps tanh(−0) = −0.
        let small = m.div(m.add(two)).abs().with_sign_of(z);
        // NaN fails the comparison and takes `big`, which is NaN too.
        V::splat(e(SMALL_TANH)).gt_select(a, small, big)
    }
}

/// Runs `act` over `values` on the selected ISA. Every element, tail
/// included, goes through the same vector code, so results do not depend on
/// where a slice starts or ends.
fn lanes_dispatch<T: Element>(values: &mut [T], act: Activation) {
    dispatch(ApplyRow { act, values });
}

/// The body of [`lanes_dispatch`], generic over the ISA.
struct ApplyRow<'a, T> {
    act: Activation,
    values: &'a mut [T],
}

impl<T: Element> SimdFn for ApplyRow<'_, T> {
    type Output = ();
    #[inline(always)]
    unsafe fn call<S: Simd>(self) {
        let act = self.act;
        // SAFETY: `call` runs under S's target features (trait contract).
        unsafe {
            map_lanes::<VectorOf<T, S>>(
                self.values,
                #[inline(always)]
                |v| act.apply_lanes(v),
            )
        }
    }
}

/// One row of a dense layer's backward pass: `dz = dy ⊙ act'(y)`,
/// `db_sum += dz`, returning this row's PReLU slope-gradient contribution
/// `Σ dy·y/α` over `y ≤ 0` (zero for other activations). All four slices
/// have the row's length.
pub(crate) fn backward_row<T: Element>(
    act: Activation,
    y: &[T],
    dy: &[T],
    dz: &mut [T],
    db_sum: &mut [T],
) -> T {
    debug_assert!(y.len() == dy.len() && dy.len() == dz.len() && dz.len() == db_sum.len());
    dispatch(BackwardRow {
        act,
        y,
        dy,
        dz,
        db_sum,
    })
}

/// The body of [`backward_row`], generic over the ISA.
struct BackwardRow<'a, T> {
    act: Activation,
    y: &'a [T],
    dy: &'a [T],
    dz: &'a mut [T],
    db_sum: &'a mut [T],
}

impl<T: Element> SimdFn for BackwardRow<'_, T> {
    type Output = T;
    #[inline(always)]
    unsafe fn call<S: Simd>(self) -> T {
        let BackwardRow {
            act,
            y,
            dy,
            dz,
            db_sum,
        } = self;
        // SAFETY: `call` runs under S's target features (trait contract).
        unsafe { backward_row_body::<VectorOf<T, S>>(act, y, dy, dz, db_sum) }
    }
}

/// One vector of [`backward_row`]. A function, not a closure: closures are
/// compiled without the caller's target features, so their intrinsics would
/// not inline.
///
/// # Safety
/// As [`Lanes`]; each pointer addresses LANES valid elements.
#[inline(always)]
unsafe fn backward_step<V: Lanes>(
    act: Activation,
    inv_slope: Option<V::Elem>,
    [y, dy]: [*const V::Elem; 2],
    [dz, db]: [*mut V::Elem; 2],
    slope: &mut V,
) {
    // SAFETY: forwarded contract.
    unsafe {
        let (yv, dyv) = (V::loadu(y), V::loadu(dy));
        let g = act.backward_lanes(yv, dyv);
        g.storeu(dz);
        V::loadu(db).add(g).storeu(db);
        if let Some(inv) = inv_slope {
            let zero = V::splat(V::Elem::ZERO);
            let contribution = dyv.mul(yv).mul(V::splat(inv));
            *slope = slope.add(yv.gt_select(zero, zero, contribution));
        }
    }
}

/// The body of [`backward_row`] for any lane type: whole vectors, then the
/// tail through padded vectors (so every element sees the same instructions).
///
/// # Safety
/// As [`Lanes`].
#[inline(always)]
unsafe fn backward_row_body<V: Lanes>(
    act: Activation,
    y: &[V::Elem],
    dy: &[V::Elem],
    dz: &mut [V::Elem],
    db_sum: &mut [V::Elem],
) -> V::Elem {
    let l = V::LANES;
    let inv_slope = match act {
        Activation::PRelu(a) => Some(V::Elem::ONE / V::Elem::from_f64(a as f64)),
        _ => None,
    };
    // SAFETY (whole body): every pointer below addresses LANES elements
    // inside a slice of the row's length, or inside a MAX_LANES-element pad.
    unsafe {
        let mut slope = V::splat(V::Elem::ZERO);
        let whole = y.len() / l * l;
        for i in (0..whole).step_by(l) {
            let (yp, dyp) = (y.as_ptr().add(i), dy.as_ptr().add(i));
            let (dzp, dbp) = (dz.as_mut_ptr().add(i), db_sum.as_mut_ptr().add(i));
            backward_step::<V>(act, inv_slope, [yp, dyp], [dzp, dbp], &mut slope);
        }
        let rest = y.len() - whole;
        if rest > 0 {
            let mut pads = [[V::Elem::ZERO; MAX_LANES]; 4];
            pads[0][..rest].copy_from_slice(&y[whole..]);
            pads[1][..rest].copy_from_slice(&dy[whole..]);
            pads[3][..rest].copy_from_slice(&db_sum[whole..]);
            let [py, pdy, pdz, pdb] = &mut pads;
            backward_step::<V>(
                act,
                inv_slope,
                [py.as_ptr(), pdy.as_ptr()],
                [pdz.as_mut_ptr(), pdb.as_mut_ptr()],
                &mut slope,
            );
            dz[whole..].copy_from_slice(&pdz[..rest]);
            db_sum[whole..].copy_from_slice(&pdb[..rest]);
        }
        let mut lanes = [V::Elem::ZERO; MAX_LANES];
        slope.storeu(lanes.as_mut_ptr());
        lanes[..l].iter().fold(V::Elem::ZERO, |s, &v| s + v)
    }
}

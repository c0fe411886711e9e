//! How a new network's weights are drawn: the schemes of PyTorch's
//! `torch.nn.init` and Keras's initializers, by name.

use rand::Rng;
use rand::rngs::StdRng;

use crate::activation::Activation;

/// A weight initialization scheme. `fan_in` and `fan_out` are a layer's
/// input and output counts. Biases start at zero except under
/// [`PyTorchLinear`](Self::PyTorchLinear).
///
/// ```
/// use densekit::activation::Activation;
/// use densekit::mlp::{Init, Mlp};
/// let net = Mlp::with_init(&[100, 50, 10], Activation::Relu, Init::HeNormal, 1);
/// let w = net.weight(0);
/// let mean_square = (0..50).flat_map(|o| (0..100).map(move |i| (o, i)))
///     .map(|(o, i)| f64::from(w.get(o, i)).powi(2)).sum::<f64>() / 5000.0;
/// assert!((mean_square - 2.0 / 100.0).abs() < 0.002); // Var = 2 / fan_in
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Init {
    /// He-uniform for hidden layers of the ReLU family, Glorot-uniform for
    /// other hidden activations and the output layer (Keras's default); what
    /// [`Mlp::new`](super::Mlp::new) draws.
    #[default]
    ByActivation,
    /// Glorot/Xavier uniform: `U(±√(6 / (fan_in + fan_out)))`
    /// (`xavier_uniform_`, Keras `glorot_uniform`).
    GlorotUniform,
    /// Glorot/Xavier normal: `N(0, 2 / (fan_in + fan_out))`
    /// (`xavier_normal_`).
    GlorotNormal,
    /// He/Kaiming uniform: `U(±√(6 / fan_in))` (`kaiming_uniform_`,
    /// `a = 0`; Keras `he_uniform`).
    HeUniform,
    /// He/Kaiming normal: `N(0, 2 / fan_in)` (`kaiming_normal_`).
    HeNormal,
    /// LeCun normal: `N(0, 1 / fan_in)`.
    LecunNormal,
    /// PyTorch's `nn.Linear` default: weights `kaiming_uniform_` with
    /// `a = √5`, that is `U(±1/√fan_in)`, and biases `U(±1/√fan_in)`.
    PyTorchLinear,
    /// All zeros (every unit alike: a network that cannot break symmetry;
    /// for tests and for the lecture's single softmax layer).
    Zeros,
}

impl Init {
    /// The names `--init` takes: `by-activation`, `glorot-uniform`,
    /// `glorot-normal`, `he-uniform`, `he-normal`, `lecun-normal`,
    /// `pytorch`, `zeros`.
    pub const NAMES: [&'static str; 8] = [
        "by-activation",
        "glorot-uniform",
        "glorot-normal",
        "he-uniform",
        "he-normal",
        "lecun-normal",
        "pytorch",
        "zeros",
    ];

    const ALL: [Init; 8] = [
        Init::ByActivation,
        Init::GlorotUniform,
        Init::GlorotNormal,
        Init::HeUniform,
        Init::HeNormal,
        Init::LecunNormal,
        Init::PyTorchLinear,
        Init::Zeros,
    ];

    /// This scheme's name in [`NAMES`](Self::NAMES).
    ///
    /// ```
    /// use densekit::mlp::Init;
    /// assert_eq!(Init::HeNormal.name(), "he-normal");
    /// ```
    pub fn name(self) -> &'static str {
        let at = Init::ALL
            .iter()
            .position(|&i| i == self)
            .expect("every scheme is listed");
        Init::NAMES[at]
    }

    /// The scheme of a [`NAMES`](Self::NAMES) entry.
    ///
    /// ```
    /// use densekit::mlp::Init;
    /// assert_eq!(Init::from_name("he-normal"), Some(Init::HeNormal));
    /// assert_eq!(Init::HeNormal.name(), "he-normal");
    /// ```
    pub fn from_name(name: &str) -> Option<Init> {
        let at = Init::NAMES.iter().position(|&n| n == name)?;
        Some(Init::ALL[at])
    }

    /// The distributions of one layer's weights and biases under this
    /// scheme, for a layer whose own activation is `act`.
    fn layer(self, act: Activation, fan_in: usize, fan_out: usize) -> (Draw, Draw) {
        let (fan_in, fan_sum) = (fan_in as f64, (fan_in + fan_out) as f64);
        let relu_family = matches!(
            act,
            Activation::Relu | Activation::LeakyRelu(_) | Activation::PRelu(_)
        );
        match self {
            Init::ByActivation if relu_family => {
                (Draw::Uniform((6.0 / fan_in).sqrt() as f32), Draw::Zero)
            }
            Init::ByActivation | Init::GlorotUniform => {
                (Draw::Uniform((6.0 / fan_sum).sqrt() as f32), Draw::Zero)
            }
            Init::GlorotNormal => (Draw::Normal((2.0 / fan_sum).sqrt()), Draw::Zero),
            Init::HeUniform => (Draw::Uniform((6.0 / fan_in).sqrt() as f32), Draw::Zero),
            Init::HeNormal => (Draw::Normal((2.0 / fan_in).sqrt()), Draw::Zero),
            Init::LecunNormal => (Draw::Normal((1.0 / fan_in).sqrt()), Draw::Zero),
            Init::PyTorchLinear => {
                let bound = (1.0 / fan_in.sqrt()) as f32;
                (Draw::Uniform(bound), Draw::Uniform(bound))
            }
            Init::Zeros => (Draw::Zero, Draw::Zero),
        }
    }
}

/// One distribution of initial values.
#[derive(Clone, Copy, Debug)]
enum Draw {
    Zero,
    /// `U(−limit, limit)`, drawn in f32.
    Uniform(f32),
    /// `N(0, std²)`.
    Normal(f64),
}

impl Draw {
    fn sample(self, rng: &mut StdRng) -> f32 {
        match self {
            Draw::Zero => 0.0,
            Draw::Uniform(limit) => rng.random_range(-limit..limit),
            Draw::Normal(std) => {
                // Box–Muller; 1 − u keeps the logarithm's argument in (0, 1].
                let (u, v): (f64, f64) = (rng.random(), rng.random());
                (std * (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            }
        }
    }
}

/// Draws `net`'s weights and biases from `seed` under `init`: each layer's
/// weights in `(out, in)` order, whatever the storage order, then its biases.
pub(super) fn initialize(net: &mut super::Mlp, init: Init, seed: u64) {
    use rand::SeedableRng;
    let mut rng = StdRng::seed_from_u64(seed);
    for layer in 0..net.layers() {
        let (inputs, outputs) = (net.sizes()[layer], net.sizes()[layer + 1]);
        let (weights, biases) = init.layer(net.activation(layer), inputs, outputs);
        let mut w = net.weight_mut(layer);
        for o in 0..outputs {
            for i in 0..inputs {
                w.set(o, i, weights.sample(&mut rng));
            }
        }
        if !matches!(biases, Draw::Zero) {
            let (_, b) = net.layer_ranges(layer);
            for slot in &mut net.params_mut()[b] {
                *slot = biases.sample(&mut rng);
            }
        }
    }
}

//! Activations: accuracy against an f64 reference, NaN propagation,
//! derivatives from the output against finite differences.

use densekit::activation::{Activation, SIGMOID_MAX_ULP, TANH_MAX_ULP};

/// Distance in units in the last place between two finite f32 values.
fn ulps(a: f32, b: f32) -> u32 {
    let key = |x: f32| {
        let bits = x.to_bits() as i32;
        if bits < 0 { i32::MIN - bits } else { bits }
    };
    key(a).abs_diff(key(b))
}

/// Largest ulp error of `act` over a dense sweep of [-90, 90], skipping
/// outputs below f32::MIN_POSITIVE (documented as flushed).
fn max_ulp_error(act: Activation, reference: impl Fn(f64) -> f64) -> (u32, f32) {
    let xs: Vec<f32> = (-900_000..=900_000).map(|i| i as f32 * 1e-4).collect();
    let mut ys = xs.clone();
    act.apply(&mut ys);
    let mut worst = (0, 0.0);
    for (&x, &y) in xs.iter().zip(&ys) {
        let want = reference(x as f64) as f32;
        if want.abs() < f32::MIN_POSITIVE {
            continue;
        }
        let e = ulps(y, want);
        if e > worst.0 {
            worst = (e, x);
        }
    }
    worst
}

#[test]
fn sigmoid_is_within_its_documented_ulp_bound() {
    let (err, at) = max_ulp_error(Activation::Sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
    eprintln!("sigmoid max {err} ulp at {at}");
    assert!(err <= SIGMOID_MAX_ULP, "sigmoid: {err} ulp at x = {at}");
}

#[test]
fn tanh_is_within_its_documented_ulp_bound() {
    let (err, at) = max_ulp_error(Activation::Tanh, f64::tanh);
    eprintln!("tanh max {err} ulp at {at}");
    assert!(err <= TANH_MAX_ULP, "tanh: {err} ulp at x = {at}");
}

#[test]
fn f64_sigmoid_and_tanh_are_accurate() {
    let xs: Vec<f64> = (-7000..=7000).map(|i| i as f64 * 1e-2).collect();
    for (act, reference) in [
        (
            Activation::Sigmoid,
            (|x: f64| 1.0 / (1.0 + (-x).exp())) as fn(f64) -> f64,
        ),
        (Activation::Tanh, f64::tanh),
    ] {
        let mut ys = xs.clone();
        act.apply(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = reference(x);
            assert!(
                (y - want).abs() <= 8.0 * f64::EPSILON * want.abs(),
                "{act:?}({x}) = {y}, want {want}"
            );
        }
    }
}

#[test]
fn saturation_and_extremes() {
    let mut ys = [
        -1e30f32,
        -200.0,
        200.0,
        1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    Activation::Sigmoid.apply(&mut ys);
    assert_eq!(ys, [0.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
    let mut ys = [
        -1e30f32,
        -20.0,
        20.0,
        1e30,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
    ];
    Activation::Tanh.apply(&mut ys);
    assert_eq!(ys, [-1.0, -1.0, 1.0, 1.0, 1.0, -1.0, 0.0, 0.0]);
    assert!(ys[7].is_sign_negative(), "tanh(-0) keeps its sign");
}

const ALL: [Activation; 6] = [
    Activation::Identity,
    Activation::Relu,
    Activation::LeakyRelu(0.01),
    Activation::PRelu(0.25),
    Activation::Sigmoid,
    Activation::Tanh,
];

#[test]
fn nan_propagates_through_every_activation() {
    for act in ALL {
        let mut ys = [
            1.0f32,
            f32::NAN,
            -1.0,
            f32::NAN,
            0.5,
            2.0,
            -3.0,
            4.0,
            f32::NAN,
        ];
        act.apply(&mut ys);
        for i in [1, 3, 8] {
            assert!(ys[i].is_nan(), "{act:?} turned NaN into {}", ys[i]);
        }
        assert!(act.apply_one(f64::NAN).is_nan(), "{act:?} (f64)");
    }
}

#[test]
fn piecewise_linear_values_are_exact() {
    let xs = [-2.0f32, -0.5, 0.0, 0.5, 3.0];
    for (act, want) in [
        (Activation::Identity, [-2.0, -0.5, 0.0, 0.5, 3.0]),
        (Activation::Relu, [0.0, 0.0, 0.0, 0.5, 3.0]),
        (Activation::LeakyRelu(0.1), [-0.2, -0.05, 0.0, 0.5, 3.0]),
        (Activation::PRelu(0.25), [-0.5, -0.125, 0.0, 0.5, 3.0]),
    ] {
        let mut ys = xs;
        act.apply(&mut ys);
        assert_eq!(ys, want, "{act:?}");
    }
}

/// Every element goes through the same instructions whatever its position:
/// slices of any length agree with `apply_one` bit for bit.
#[test]
fn slice_tails_match_single_values() {
    for act in ALL {
        for len in 0..20 {
            let xs: Vec<f32> = (0..len).map(|i| (i as f32 - 9.5) * 0.37).collect();
            let mut ys = xs.clone();
            act.apply(&mut ys);
            for (&x, &y) in xs.iter().zip(&ys) {
                assert_eq!(
                    y.to_bits(),
                    act.apply_one(x).to_bits(),
                    "{act:?} at {x}, len {len}"
                );
            }
        }
    }
}

/// `act'(z)`, computed from y = act(z), matches a central difference in f64.
#[test]
fn derivatives_from_output_match_finite_differences() {
    for act in ALL {
        for i in -40..=40 {
            let z = i as f64 * 0.1 + 0.05; // avoid the kink at 0
            let h = 1e-6;
            let numeric = (act.apply_one(z + h) - act.apply_one(z - h)) / (2.0 * h);
            let analytic = act.derivative_from_output(act.apply_one(z));
            assert!(
                (numeric - analytic).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{act:?} at z = {z}: finite difference {numeric}, from output {analytic}"
            );
        }
    }
}

#[test]
fn parameters_are_validated() {
    assert!(Activation::LeakyRelu(0.01).validate().is_ok());
    assert!(
        Activation::LeakyRelu(-0.1)
            .validate()
            .unwrap_err()
            .contains("LeakyRelu")
    );
    assert!(Activation::LeakyRelu(f32::NAN).validate().is_err());
    assert!(
        Activation::PRelu(0.0)
            .validate()
            .unwrap_err()
            .contains("PRelu")
    );
    assert!(Activation::Sigmoid.validate().is_ok());
}

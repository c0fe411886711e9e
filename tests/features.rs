//! The training features of the lecture's second half: dropout, learned
//! PReLU slopes, initialization schemes and image augmentation.

use densekit::Par;
use densekit::activation::Activation;
use densekit::data::{Augment, Augmenter, Dataset};
use densekit::gemm::MatRef;
use densekit::loss::Targets;
use densekit::mlp::{Dropout, Init, Mlp, MlpWorkspace};
use densekit::optim::{Adam, Optimizer};
use densekit::train::{TrainConfig, TrainData, evaluate, train};

/// Small seeded inputs in [-1, 1).
fn inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

#[test]
fn dropout_keeps_its_fraction_scales_the_kept_and_is_absent_at_evaluation() {
    for rate in [0.1f32, 0.3, 0.5, 0.8] {
        let dropout = Dropout {
            rates: &[rate],
            seed: 9,
            step: 4,
        };
        let (rows, width) = (256, 300);
        let mut v = vec![2.0f32; rows * width];
        dropout.apply(0, &mut v, width, width, 1.0 / (1.0 - rate), Par::Threads(2));
        let kept = v.iter().filter(|&&x| x != 0.0).count();
        let fraction = kept as f64 / v.len() as f64;
        // 76,800 draws: the kept fraction is within 4 standard deviations.
        let sd = (f64::from(rate) * f64::from(1.0 - rate) / v.len() as f64).sqrt();
        assert!(
            (fraction - f64::from(1.0 - rate)).abs() < 4.0 * sd,
            "rate {rate}: kept {fraction}"
        );
        assert!(
            v.iter().all(|&x| x == 0.0 || x == 2.0 / (1.0 - rate)),
            "inverted scaling"
        );
        // Another step, another mask; another layer, another mask.
        let next = Dropout { step: 5, ..dropout };
        assert!((0..1000).any(|e| dropout.keeps(0, e) != next.keeps(0, e)));
        assert!((0..1000).any(|e| dropout.keeps(0, e) != dropout.keeps(1, e)));
    }
    // Training sees the mask (another loss); evaluation does not: it is the
    // unmasked network's loss, and a zero rate is no dropout at all.
    let net = Mlp::new(&[6, 32, 3], Activation::Relu, 2);
    let x = inputs(40 * 6, 1);
    let labels: Vec<usize> = (0..40).map(|i| i % 3).collect();
    let data = Dataset::classification(
        x.clone(),
        6,
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
    )
    .unwrap();
    let mut grads = vec![0.0; net.params().len()];
    let mut ws = MlpWorkspace::new();
    let batch = MatRef::from_row_major(&x, 40, 6);
    let plain = net.gradients(
        batch,
        Targets::Classes(&labels),
        &mut grads,
        &mut ws,
        Par::Seq,
    );
    let plain_grads = grads.clone();
    let zero = Dropout {
        rates: &[0.0],
        seed: 1,
        step: 1,
    };
    let same = net.gradients_with(
        batch,
        Targets::Classes(&labels),
        Some(&zero),
        &mut grads,
        &mut ws,
        Par::Seq,
    );
    assert_eq!((same, &grads), (plain, &plain_grads));
    let half = Dropout {
        rates: &[0.5],
        seed: 1,
        step: 1,
    };
    let dropped = net.gradients_with(
        batch,
        Targets::Classes(&labels),
        Some(&half),
        &mut grads,
        &mut ws,
        Par::Seq,
    );
    assert_ne!(dropped.loss, plain.loss);
    let score = evaluate(&net, &data, Par::Seq, &mut ws, None);
    assert!(
        (score.loss - plain.loss).abs() < 1e-6,
        "{} vs {}",
        score.loss,
        plain.loss
    );
}

/// The loss of `net` with its parameters `params` under a fixed dropout
/// mask, and its gradient.
fn loss_and_grads(
    net: &Mlp,
    params: &[f32],
    x: &[f32],
    labels: &[usize],
    dropout: Option<&Dropout>,
) -> (f64, Vec<f32>) {
    let net = Mlp::from_parts(net.sizes(), net.hidden_activation(), params.to_vec()).unwrap();
    let mut grads = vec![0.0; params.len()];
    let rows = labels.len();
    let batch = MatRef::from_row_major(x, rows, x.len() / rows);
    let stats = net.gradients_with(
        batch,
        Targets::Classes(labels),
        dropout,
        &mut grads,
        &mut MlpWorkspace::new(),
        Par::Seq,
    );
    (stats.loss, grads)
}

/// Central differences of the loss against the analytic gradient, for
/// every parameter of a small network (f32 sums: a loose but telling
/// tolerance; a wrong mask in backward or a wrong slope gradient is off by
/// far more).
fn check_gradients(net: &Mlp, dropout: Option<&Dropout>, only: Option<std::ops::Range<usize>>) {
    let x = inputs(8 * net.sizes()[0], 3);
    let labels: Vec<usize> = (0..8).map(|i| i % net.sizes().last().unwrap()).collect();
    let params = net.params().to_vec();
    let (_, grads) = loss_and_grads(net, &params, &x, &labels, dropout);
    let eps = 1e-2f32;
    for i in only.unwrap_or(0..params.len()) {
        let mut p = params.clone();
        p[i] += eps;
        let (up, _) = loss_and_grads(net, &p, &x, &labels, dropout);
        p[i] -= 2.0 * eps;
        let (down, _) = loss_and_grads(net, &p, &x, &labels, dropout);
        let numeric = (up - down) / (2.0 * f64::from(eps));
        let analytic = f64::from(grads[i]);
        assert!(
            (numeric - analytic).abs() <= 2e-3 + 0.02 * analytic.abs(),
            "parameter {i}: finite differences {numeric}, gradient {analytic}"
        );
    }
}

#[test]
fn dropout_gradients_match_finite_differences_under_their_mask() {
    let net = Mlp::new(&[5, 7, 6, 3], Activation::Tanh, 4);
    let dropout = Dropout {
        rates: &[0.3, 0.5],
        seed: 2,
        step: 11,
    };
    check_gradients(&net, Some(&dropout), None);
}

#[test]
fn prelu_slope_gradients_match_finite_differences() {
    // Biases pushed negative so both sides of zero are populated.
    let mut net = Mlp::new(&[5, 7, 6, 3], Activation::PRelu(0.3), 5);
    assert_eq!(net.prelu_slopes(), [0.3, 0.3]);
    let n = net.params().len();
    let (_, b0) = net.layer_ranges(0);
    for v in &mut net.params_mut()[b0] {
        *v = -0.2;
    }
    check_gradients(&net, None, Some(n - 2..n));
    check_gradients(
        &net,
        Some(&Dropout {
            rates: &[0.25],
            seed: 1,
            step: 3,
        }),
        Some(n - 2..n),
    );
    // The whole network too: weights, biases and slopes.
    check_gradients(&net, None, None);
}

#[test]
fn prelu_slopes_train_and_round_trip_through_a_file() {
    let x = inputs(200 * 4, 7);
    let labels: Vec<u32> = x
        .chunks_exact(4)
        .map(|p| u32::from(p[0] + p[1] > 0.0))
        .collect();
    let data = Dataset::classification(&x[..], 4, labels).unwrap();
    let mut net = Mlp::new(&[4, 16, 16, 2], Activation::PRelu(0.25), 1);
    let config = TrainConfig {
        epochs: 5,
        batch_size: 16,
        ..TrainConfig::default()
    };
    let opt = Optimizer::Adam(Adam {
        lr: 0.01,
        ..Adam::default()
    });
    train(&mut net, &opt, TrainData::new(&data), &config, |_| {}).unwrap();
    assert!(
        net.prelu_slopes().iter().all(|&a| a != 0.25 && a >= 1e-3),
        "{:?}",
        net.prelu_slopes()
    );
    let path =
        std::env::temp_dir().join(format!("densekit-prelu-{}.safetensors", std::process::id()));
    net.save(&path).unwrap();
    let loaded = Mlp::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded, net);
    assert_eq!(
        loaded.activation(1),
        Activation::PRelu(net.prelu_slopes()[1])
    );
}

/// A PReLU model written by densekit and evaluated by numpy from the file
/// alone (`benches/peers/numpy_forward.py`): the same logits.
#[test]
fn prelu_model_evaluates_as_numpy_does() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let net = Mlp::load(format!("{dir}/prelu_mlp.safetensors")).unwrap();
    assert!(matches!(net.hidden_activation(), Activation::PRelu(_)));
    let text = std::fs::read_to_string(format!("{dir}/prelu_mlp.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |key: &str| -> Vec<f32> {
        fixture[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    let (x, want) = (floats("inputs"), floats("logits"));
    let inputs = net.sizes()[0];
    let mut ws = MlpWorkspace::new();
    let got = net.forward(
        MatRef::from_row_major(&x, x.len() / inputs, inputs),
        &mut ws,
        Par::Seq,
    );
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs numpy {w}");
    }
    assert_eq!(got.len(), want.len());
}

#[test]
fn init_schemes_match_their_mean_and_variance() {
    let (fan_in, fan_out) = (800, 600);
    let var_uniform = |limit: f64| limit * limit / 3.0;
    let cases = [
        (Init::GlorotUniform, var_uniform((6.0 / 1400.0f64).sqrt())),
        (Init::GlorotNormal, 2.0 / 1400.0),
        (Init::HeUniform, var_uniform((6.0 / 800.0f64).sqrt())),
        (Init::HeNormal, 2.0 / 800.0),
        (Init::LecunNormal, 1.0 / 800.0),
        (Init::PyTorchLinear, var_uniform(1.0 / 800.0f64.sqrt())),
        (Init::ByActivation, var_uniform((6.0 / 800.0f64).sqrt())),
    ];
    for (init, variance) in cases {
        let net = Mlp::with_init(&[fan_in, fan_out, 10], Activation::Relu, init, 3);
        let w = net.weight(0);
        let values: Vec<f64> = (0..fan_out)
            .flat_map(|o| (0..fan_in).map(move |i| (o, i)))
            .map(|(o, i)| f64::from(w.get(o, i)))
            .collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!(
            mean.abs() < 5.0 * (variance / n).sqrt(),
            "{init:?}: mean {mean}"
        );
        assert!(
            (var / variance - 1.0).abs() < 0.01,
            "{init:?}: variance {var}, want {variance}"
        );
        let bias = net.bias(0);
        match init {
            Init::PyTorchLinear => {
                let bound = 1.0 / (fan_in as f32).sqrt();
                assert!(bias.iter().all(|b| b.abs() <= bound) && bias.iter().any(|&b| b != 0.0));
            }
            _ => assert!(
                bias.iter().all(|&b| b == 0.0),
                "{init:?}: biases start at zero"
            ),
        }
    }
    let zeros = Mlp::with_init(&[5, 4, 3], Activation::Tanh, Init::Zeros, 1);
    assert!(zeros.params().iter().all(|&p| p == 0.0));
    // The default of Mlp::new is ByActivation: the same bits.
    assert_eq!(
        Mlp::new(&[30, 20, 4], Activation::Sigmoid, 8),
        Mlp::with_init(&[30, 20, 4], Activation::Sigmoid, Init::ByActivation, 8)
    );
}

#[test]
fn a_shift_moves_pixels_exactly_and_any_thread_count_gives_the_same_bits() {
    let (rows, cols) = (9, 8);
    // One image per pixel position of the inner 5×4 block, each a single
    // distinct bright pixel (value 5 + index).
    let spots: Vec<(usize, usize)> = (2..7).flat_map(|r| (2..6).map(move |c| (r, c))).collect();
    let mut pixels = vec![0u8; spots.len() * rows * cols];
    for (i, &(r, c)) in spots.iter().enumerate() {
        pixels[i * rows * cols + r * cols + c] = 5 + i as u8;
    }
    let labels: Vec<u32> = (0..spots.len() as u32).collect();
    let data = Dataset::images(pixels, (rows, cols), labels.clone()).unwrap();
    let augmenter = Augmenter::new(Augment::Shift(2), &data, None).unwrap();
    let all: Vec<usize> = (0..spots.len()).collect();
    let mut seen = std::collections::HashSet::new();
    let mut x = vec![0.0f32; all.len() * rows * cols];
    for epoch in 0..40 {
        augmenter.gather(&data, &all, &mut x, 3, epoch, Par::Seq);
        for (i, image) in x.chunks_exact(rows * cols).enumerate() {
            let lit: Vec<usize> = (0..image.len()).filter(|&p| image[p] != 0.0).collect();
            assert_eq!(
                lit.len(),
                1,
                "a shift of at most 2 keeps an inner pixel inside"
            );
            assert_eq!(
                image[lit[0]],
                f32::from(5 + i as u8) / 255.0,
                "the value moves unchanged"
            );
            let (r, c) = (lit[0] / cols, lit[0] % cols);
            let (dy, dx) = (r as i64 - spots[i].0 as i64, c as i64 - spots[i].1 as i64);
            assert!(dy.abs() <= 2 && dx.abs() <= 2);
            seen.insert((dy, dx));
        }
    }
    assert_eq!(seen.len(), 25, "every shift in ±2 × ±2 occurs");
    // The labels are the data set's, untouched.
    assert_eq!(data.labels().unwrap(), &labels[..]);
    // A large batch on 1 and 2 threads, in a reordered layout too.
    let big: Vec<usize> = (0..2000).map(|i| i % spots.len()).collect();
    let order: Vec<usize> = (0..rows * cols).rev().collect();
    for order in [None, Some(&order[..])] {
        for augment in [Augment::Shift(2), Augment::AFFINE] {
            let augmenter = Augmenter::new(augment, &data, order).unwrap();
            let mut one = vec![0.0f32; big.len() * rows * cols];
            let mut two = one.clone();
            augmenter.gather(&data, &big, &mut one, 1, 2, Par::Seq);
            augmenter.gather(&data, &big, &mut two, 1, 2, Par::Threads(2));
            assert_eq!(one, two, "{augment} differs between 1 and 2 threads");
        }
    }
    // An affine map of size zero is the identity.
    let still = Augment::Affine {
        degrees: 0.0,
        scale: 0.0,
        shear: 0.0,
        shift: 0.0,
    };
    let augmenter = Augmenter::new(still, &data, None).unwrap();
    augmenter.gather(&data, &all, &mut x, 1, 1, Par::Seq);
    let mut plain = Vec::new();
    data.gather(&all, &mut plain);
    assert_eq!(x, plain);
    // Augmentation needs images.
    let flat = Dataset::classification(vec![0.0; 4], 2, vec![0, 1]).unwrap();
    assert!(
        Augmenter::new(Augment::Shift(1), &flat, None)
            .unwrap_err()
            .contains("needs images")
    );
}

/// Dropout, max-norm, PReLU and augmentation together: the same bits on
/// one and two threads.
#[test]
fn regularized_training_is_thread_count_independent() {
    let (rows, cols) = (8, 8);
    let n = 300;
    let mut s = 5u64;
    let mut pixels = vec![0u8; n * rows * cols];
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 4).collect();
    for (image, &class) in pixels.chunks_exact_mut(rows * cols).zip(&labels) {
        for r in 2..6 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            image[r * cols + 2 + class as usize] = 128 + (s >> 58) as u8;
        }
    }
    let data = Dataset::images(pixels, (rows, cols), labels).unwrap();
    let (train_set, val_set) = (data.rows(0..240), data.rows(240..n));
    let run = |par| {
        let mut net = Mlp::new(&[64, 64, 32, 4], Activation::PRelu(0.2), 3);
        let config = TrainConfig {
            epochs: 3,
            batch_size: 16,
            seed: 7,
            par,
            dropout: vec![0.2, 0.4],
            max_norm: Some(2.0),
            augment: Augment::Shift(1),
            ..TrainConfig::default()
        };
        let opt = Optimizer::Adam(Adam {
            lr: 0.01,
            ..Adam::default()
        });
        let history = train(
            &mut net,
            &opt,
            TrainData::new(&train_set).with_val(&val_set),
            &config,
            |_| {},
        )
        .unwrap();
        let scores: Vec<_> = history
            .iter()
            .map(|m| (m.train, m.val, m.running_loss))
            .collect();
        (net, scores)
    };
    let (one, two) = (run(Par::Seq), run(Par::Threads(2)));
    assert_eq!(one, two);
    // Max-norm holds after training.
    let w = one.0.weight(1);
    for o in 0..32 {
        let norm: f32 = (0..64).map(|i| w.get(o, i).powi(2)).sum::<f32>().sqrt();
        assert!(norm <= 2.0 * (1.0 + 1e-5), "unit {o}: norm {norm}");
    }
}

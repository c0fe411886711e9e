//! Optimizers against hand-computed steps, model files, and the trainer on a
//! small synthetic problem.

use densekit::activation::Activation;
use densekit::data::Dataset;
use densekit::gemm::Par;
use densekit::mlp::Mlp;
use densekit::optim::{Adam, Optimizer, RmsProp, Schedule, Sgd, WeightDecay};
use densekit::train::{TrainConfig, TrainData, TrainError, train};

fn steps(opt: Optimizer, p0: f32, grads: &[f32]) -> Vec<f32> {
    let mut p = [p0];
    let mut state = opt.state(1);
    grads
        .iter()
        .map(|&g| {
            opt.update(&mut state, &mut p, &[g], opt.lr(), Par::Seq);
            p[0]
        })
        .collect()
}

fn close(got: &[f32], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "got {got:?}, want {want:?}");
    }
}

#[test]
fn sgd_momentum_nesterov_and_weight_decay_match_hand_computation() {
    // Plain: p ← p − 0.1·g.
    close(
        &steps(
            Optimizer::Sgd(Sgd {
                lr: 0.1,
                ..Sgd::default()
            }),
            1.0,
            &[0.5, 0.5],
        ),
        &[0.95, 0.9],
    );
    // Momentum 0.9: buf = g, then 0.9·buf + g = 0.95; p = 1 − 0.05 − 0.095.
    close(
        &steps(
            Optimizer::Sgd(Sgd {
                lr: 0.1,
                momentum: 0.9,
                ..Sgd::default()
            }),
            1.0,
            &[0.5, 0.5],
        ),
        &[0.95, 0.855],
    );
    // Nesterov: step = g + 0.9·buf: 0.5 + 0.45 = 0.95, then 0.5 + 0.9·0.95 = 1.355.
    close(
        &steps(
            Optimizer::Sgd(Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: true,
                ..Sgd::default()
            }),
            1.0,
            &[0.5, 0.5],
        ),
        &[0.905, 0.7695],
    );
    // Coupled L2: g + 0.1·p = 0.5 + 0.1 = 0.6.
    close(
        &steps(
            Optimizer::Sgd(Sgd {
                lr: 0.1,
                weight_decay: WeightDecay::Coupled(0.1),
                ..Sgd::default()
            }),
            1.0,
            &[0.5],
        ),
        &[0.94],
    );
}

#[test]
fn adam_and_adamw_match_hand_computation() {
    // First Adam step: m̂ = g, v̂ = g², so p moves by lr·g/(|g| + ε) ≈ lr·sign(g).
    close(
        &steps(
            Optimizer::Adam(Adam {
                lr: 0.1,
                ..Adam::default()
            }),
            1.0,
            &[0.5],
        ),
        &[0.9],
    );
    // Second step with g = 0.5, then 0.25: m = 0.05·.9+0.025 = 0.07, m̂ = 0.07/0.19;
    // v = 0.00025·.999+0.0000625 = 0.00031225, v̂ = v/0.001999.
    let m_hat = 0.07 / (1.0 - 0.81);
    let v_hat = 0.000_312_25_f64 / (1.0 - 0.998_001);
    close(
        &steps(
            Optimizer::Adam(Adam {
                lr: 0.1,
                ..Adam::default()
            }),
            1.0,
            &[0.5, 0.25],
        ),
        &[0.9, 0.9 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8)],
    );
    // AdamW: p ← p − lr·λ·p first (1 − 0.1·0.5 = 0.95), then the Adam step.
    close(
        &steps(
            Optimizer::Adam(Adam {
                lr: 0.1,
                weight_decay: WeightDecay::Decoupled(0.5),
                ..Adam::default()
            }),
            1.0,
            &[0.5],
        ),
        &[0.85],
    );
}

#[test]
fn rmsprop_matches_hand_computation() {
    // v = 0.01·g² = 0.0025, step = g/√v = 10: p = 1 − 0.01·10.
    close(
        &steps(
            Optimizer::RmsProp(RmsProp {
                lr: 0.01,
                ..RmsProp::default()
            }),
            1.0,
            &[0.5],
        ),
        &[0.9],
    );
}

#[test]
fn schedules_follow_their_formulas() {
    assert_eq!(Schedule::Constant.lr(0.5, 7.3), 0.5);
    assert_eq!(
        Schedule::Step {
            every: 3,
            gamma: 0.5
        }
        .lr(1.0, 6.0),
        0.25
    );
    let cos = Schedule::Cosine {
        epochs: 4,
        min_lr: 0.1,
    };
    assert!((cos.lr(1.1, 4.0) - 0.1).abs() < 1e-6 && (cos.lr(1.1, 0.0) - 1.1).abs() < 1e-6);
}

/// Four Gaussian-ish blobs in 6 dimensions, labelled by blob.
fn blobs(n: usize, seed: u64) -> Dataset<'static> {
    let mut pixels = Vec::with_capacity(n * 6);
    let mut labels = Vec::with_capacity(n);
    let mut s = seed;
    for i in 0..n {
        let class = (i % 4) as u32;
        for d in 0..6 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((s >> 33) % 61) as i32 - 30;
            let center = if d % 4 == class as usize { 200 } else { 60 };
            pixels.push((center + noise).clamp(0, 255) as u8);
        }
        labels.push(class);
    }
    Dataset::from_pixels(pixels, 6, labels).unwrap()
}

/// Small sparse "images": a 2-pixel-wide bar at a class-dependent column
/// of a 7 × 6 image, with a little noise, the rest black.
fn bars(n: usize, seed: u64) -> Dataset<'static> {
    let (rows, cols) = (7, 6);
    let mut s = seed;
    let mut pixels = vec![0u8; n * rows * cols];
    let labels: Vec<u32> = (0..n).map(|i| (i % 4) as u32).collect();
    for (image, &class) in pixels.chunks_exact_mut(rows * cols).zip(&labels) {
        for r in 1..rows - 1 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let c = class as usize + (s >> 62) as usize % 2;
            image[r * cols + c] = 150 + (s >> 40) as u8 % 100;
        }
    }
    Dataset::images(pixels, (rows, cols), labels).unwrap()
}

/// Images train with their pixels rearranged into tiles (and the network's
/// inputs with them); the network comes back in the data's own order: the
/// same network, up to rounding, as training on the data declared not to be
/// images. Scrambled inputs would show as weights far apart.
#[test]
fn image_training_hands_back_weights_in_the_data_order() {
    let (train_images, test_images) = (bars(300, 1), bars(100, 2));
    let plain = |d: &Dataset| {
        Dataset::from_pixels(
            d.pixels().unwrap().to_vec(),
            d.feature_count(),
            d.labels().unwrap().to_vec(),
        )
        .unwrap()
    };
    let (train_plain, test_plain) = (plain(&train_images), plain(&test_images));
    let run = |train_set: &Dataset, test_set: &Dataset| {
        let mut net = Mlp::new(&[42, 64, 10], Activation::Relu, 3);
        let config = TrainConfig {
            epochs: 2,
            batch_size: 16,
            par: Par::Threads(2),
            ..TrainConfig::default()
        };
        let sgd = Optimizer::Sgd(Sgd {
            lr: 0.05,
            ..Sgd::default()
        });
        let history = train(
            &mut net,
            &sgd,
            TrainData::new(train_set).with_test(test_set),
            &config,
            |_| {},
        )
        .unwrap();
        (
            net,
            history.last().unwrap().test.unwrap().accuracy().unwrap(),
        )
    };
    let (tiled, tiled_accuracy) = run(&train_images, &test_images);
    let (natural, natural_accuracy) = run(&train_plain, &test_plain);
    let gap = tiled
        .params()
        .iter()
        .zip(natural.params())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(gap < 1e-4, "weights differ by {gap}");
    assert!(tiled_accuracy > 0.9 && tiled_accuracy == natural_accuracy);
}

#[test]
fn trainer_learns_a_synthetic_problem_deterministically() {
    let (train_set, test_set) = (blobs(403, 1), blobs(100, 2));
    let run = |par: Par| {
        let mut net = Mlp::new(&[6, 16, 10], Activation::Tanh, 3);
        let config = TrainConfig {
            epochs: 15,
            batch_size: 32,
            seed: 5,
            par,
            ..TrainConfig::default()
        };
        let history = train(
            &mut net,
            &Optimizer::Adam(Adam {
                lr: 0.01,
                ..Adam::default()
            }),
            TrainData::new(&train_set).with_test(&test_set),
            &config,
            |_| {},
        )
        .unwrap();
        (net, history)
    };
    let (net, history) = run(Par::Seq);
    let last = history.last().unwrap();
    assert!(last.test.unwrap().accuracy().unwrap() > 0.95, "{last:?}");
    assert!(last.train.loss < history[0].train.loss);
    assert_eq!(history.len(), 15);
    // The last partial batch (403 = 12·32 + 19) is used: every sample counts in train accuracy.
    assert!(
        (last.train.accuracy().unwrap() * 403.0 - (last.train.accuracy().unwrap() * 403.0).round())
            .abs()
            < 1e-9
    );
    let (net2, history2) = run(Par::Threads(2));
    assert_eq!(
        net.params(),
        net2.params(),
        "weights differ between 1 and 2 threads"
    );
    let strip = |h: &[densekit::train::EpochMetrics]| {
        h.iter()
            .map(|m| {
                (
                    m.train.loss,
                    m.running_loss,
                    m.test.unwrap().loss,
                    m.test.unwrap().accuracy().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&history), strip(&history2));
}

#[test]
fn divergence_stops_with_a_clear_error() {
    let (train_set, test_set) = (blobs(64, 1), blobs(16, 2));
    let mut net = Mlp::new(&[6, 8, 10], Activation::Relu, 1);
    let config = TrainConfig {
        epochs: 50,
        batch_size: 16,
        ..TrainConfig::default()
    };
    let err = train(
        &mut net,
        &Optimizer::Sgd(Sgd {
            lr: 1e30,
            ..Sgd::default()
        }),
        TrainData::new(&train_set).with_test(&test_set),
        &config,
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Diverged { .. }));
    assert!(err.to_string().contains("lower learning rate"), "{err}");
}

/// Bad data is an error from `train`, naming what is wrong, before any
/// step: never a panic inside a batch.
#[test]
fn bad_labels_features_and_empty_sets_are_errors_not_panics() {
    let config = TrainConfig {
        epochs: 1,
        batch_size: 16,
        ..TrainConfig::default()
    };
    let run = |train_set: &Dataset, test_set: &Dataset, sizes: &[usize]| {
        let mut net = Mlp::new(sizes, Activation::Relu, 1);
        let before = net.params().to_vec();
        let result = train(
            &mut net,
            &Optimizer::Sgd(Sgd::default()),
            TrainData::new(train_set).with_test(test_set),
            &config,
            |_| {},
        );
        assert_eq!(net.params(), &before[..], "a refused run must not train");
        match result {
            Err(TrainError::Mismatch(message)) => message,
            other => panic!("expected a mismatch error, got {other:?}"),
        }
    };
    // A label past the output count: in the training set (label 4 of a
    // 4-class net at sample 37) and in the test set.
    let relabel = |set: Dataset, i: usize, label: u32| {
        let mut labels = set.labels().unwrap().to_vec();
        labels[i] = label;
        Dataset::from_pixels(set.pixels().unwrap().to_vec(), 6, labels).unwrap()
    };
    let bad = relabel(blobs(64, 1), 37, 4);
    let message = run(&bad, &blobs(16, 2), &[6, 8, 4]);
    assert!(
        message.contains("training sample 37 has label 4") && message.contains("4 outputs"),
        "{message}"
    );
    let bad_test = relabel(blobs(16, 2), 3, 200);
    let message = run(&blobs(64, 1), &bad_test, &[6, 8, 4]);
    assert!(message.contains("test sample 3 has label 200"), "{message}");
    // The same labels are fine for a net with enough outputs.
    let ok = relabel(blobs(64, 1), 37, 4);
    let mut net = Mlp::new(&[6, 8, 5], Activation::Relu, 1);
    train(
        &mut net,
        &Optimizer::Sgd(Sgd::default()),
        TrainData::new(&ok).with_test(&blobs(16, 2)),
        &config,
        |_| {},
    )
    .expect("labels 0..5 fit 5 outputs");
    // A feature count other than the network's inputs.
    let message = run(&blobs(64, 1), &blobs(16, 2), &[7, 8, 4]);
    assert!(
        message.contains("takes 7 inputs") && message.contains("training set has 6 features"),
        "{message}"
    );
    // Pixels that do not fill len × feature_count: refused when built.
    let short = blobs(64, 1);
    let err = Dataset::from_pixels(&short.pixels().unwrap()[..100], 6, short.labels().unwrap())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("64 samples of 6 features need 384 values, got 100"),
        "{err}"
    );
    // An empty training set, or an empty test set.
    let empty = Dataset::from_pixels(vec![], 6, vec![]).unwrap();
    let message = run(&empty, &blobs(16, 2), &[6, 8, 4]);
    assert!(message.contains("the training set is empty"), "{message}");
    let message = run(&blobs(64, 1), &empty, &[6, 8, 4]);
    assert!(message.contains("the test set is empty"), "{message}");
    // Real targets where the training set has labels.
    let x: Vec<f32> = (0..16 * 6).map(|i| i as f32).collect();
    let regression = Dataset::regression(&x[..], 6, vec![0.5; 16 * 4], 4).unwrap();
    let message = run(&blobs(64, 1), &regression, &[6, 8, 4]);
    assert!(
        message.contains("the test set has real targets but the training set class labels"),
        "{message}"
    );
    // A regression target count other than the outputs.
    let message = run(&regression, &regression, &[6, 8, 3]);
    assert!(
        message.contains("4 targets per sample but the network 3 outputs"),
        "{message}"
    );
}

#[test]
fn safetensors_round_trip_and_mismatches() {
    let dir = std::env::temp_dir().join(format!("densekit-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let net = Mlp::new(&[5, 7, 3], Activation::LeakyRelu(0.05), 9);
    net.save(&path).unwrap();
    assert_eq!(Mlp::load(&path).unwrap(), net);
    // A file whose tensor shapes disagree with its metadata.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(5)
        .position(|w| w == b"5,7,3")
        .expect("sizes in the metadata");
    bytes[at + 2] = b'8';
    let err = Mlp::from_safetensors(&bytes).unwrap_err();
    assert!(
        err.contains("layers.0.weight") && err.contains("shape"),
        "{err}"
    );
    // The file holds PyTorch's (out, in) order, whatever the storage order
    // (a 64-wide first layer is stored transposed).
    for sizes in [[5, 7, 3], [5, 64, 3]] {
        let net = Mlp::new(&sizes, Activation::Relu, 4);
        net.save(&path).unwrap();
        assert_eq!(Mlp::load(&path).unwrap(), net);
        let bytes = std::fs::read(&path).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for layer in 0..net.layers() {
            let file = tensors.tensor(&format!("layers.{layer}.weight")).unwrap();
            let w = net.weight(layer);
            assert_eq!(file.shape(), [w.nrows(), w.ncols()]);
            let in_file: Vec<f32> = file
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let want: Vec<f32> = (0..w.nrows())
                .flat_map(|o| (0..w.ncols()).map(move |i| w.get(o, i)))
                .collect();
            assert_eq!(in_file, want, "{sizes:?} layer {layer}");
        }
    }
    // Not a safetensors file at all.
    std::fs::write(&path, b"hello").unwrap();
    let err = Mlp::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("not a safetensors file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The update runs vectorized at the selected ISA's width; with only exactly
/// rounded operations it must give the bits of a plain scalar loop.
#[test]
fn vectorized_adam_matches_a_scalar_loop_bit_for_bit() {
    let n = 1000;
    let grads: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect();
    let start: Vec<f32> = (0..n)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0)
        .collect();
    let adam = Adam {
        lr: 0.01,
        weight_decay: WeightDecay::Coupled(0.1),
        ..Adam::default()
    };
    let opt = Optimizer::Adam(adam);
    let mut params = start.clone();
    let mut state = opt.state(n);
    let (mut p2, mut m, mut v) = (start.clone(), vec![0.0f32; n], vec![0.0f32; n]);
    for t in 1..=3 {
        opt.update(&mut state, &mut params, &grads, adam.lr, Par::Seq);
        let (b1, b2) = adam.betas;
        // `powi` at run time, as in the optimizer: folded at compile time
        // (the loop unrolled) it can round differently (0.999³ does).
        let t = std::hint::black_box(t);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let (step_size, inv_sqrt_c2) = (adam.lr / c1, 1.0 / c2.sqrt());
        for i in 0..n {
            let g = grads[i] + 0.1 * p2[i];
            m[i] = b1 * m[i] + (1.0 - b1) * g;
            v[i] = b2 * v[i] + (1.0 - b2) * g * g;
            p2[i] -= step_size * m[i] / (v[i].sqrt() * inv_sqrt_c2 + adam.eps);
        }
    }
    let first_difference = params
        .iter()
        .zip(&p2)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(
        first_difference.map(|i| (i, params[i], p2[i])),
        None,
        "(index, vectorized, scalar loop)"
    );
}

/// A momentum buffer whose gradient stopped decays through the subnormal
/// range; it is flushed to zero there (subnormal arithmetic is slow) and the
/// weights stay bit for bit those of the unflushed rule.
#[test]
fn decaying_momentum_is_flushed_not_subnormal() {
    for opt in [
        Optimizer::Sgd(Sgd {
            lr: 0.1,
            momentum: 0.9,
            ..Sgd::default()
        }),
        Optimizer::Adam(Adam::default()),
    ] {
        let mut params = [1.0f32, 0.5];
        let mut state = opt.state(2);
        let (mut reference, mut buf) = ([1.0f32, 0.5], [0.0f32; 2]);
        for step in 0..900 {
            let grads = if step == 0 { [1.0, -0.25] } else { [0.0, 0.0] };
            opt.update(&mut state, &mut params, &grads, opt.lr(), Par::Seq);
            if let Optimizer::Sgd(_) = opt {
                for i in 0..2 {
                    buf[i] = if step == 0 {
                        grads[i]
                    } else {
                        0.9 * buf[i] + grads[i]
                    };
                    reference[i] -= 0.1 * buf[i];
                }
            }
        }
        let (first, _) = state.buffers();
        // Unflushed, 0.9^899 would leave subnormals here (about 1e-41).
        assert_eq!(first, [0.0, 0.0], "{opt:?}");
        if let Optimizer::Sgd(_) = opt {
            assert_eq!(params.map(f32::to_bits), reference.map(f32::to_bits));
        }
    }
}

/// Metadata claiming a huge network over small tensors is an error naming
/// the mismatch, found before anything of the claimed size is allocated.
#[test]
fn huge_sizes_in_metadata_are_rejected_without_allocating() {
    use safetensors::tensor::{Dtype, TensorView};
    let w = vec![0u8; 4 * 2 * 3];
    let b = vec![0u8; 4 * 2];
    let tensors = [
        (
            "layers.0.weight",
            TensorView::new(Dtype::F32, vec![2, 3], &w).unwrap(),
        ),
        (
            "layers.0.bias",
            TensorView::new(Dtype::F32, vec![2], &b).unwrap(),
        ),
    ];
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "densekit-mlp".to_string()),
        (
            "sizes".to_string(),
            "4000000000000,4000000000000".to_string(),
        ),
        ("hidden_activation".to_string(), "relu".to_string()),
        ("normalization".to_string(), "pixel/255".to_string()),
    ]);
    let bytes = safetensors::serialize(tensors, Some(metadata)).unwrap();
    let err = Mlp::from_safetensors(&bytes).unwrap_err();
    assert!(
        err.contains("layers.0.weight") && err.contains("shape"),
        "{err}"
    );
}

/// Sizes whose parameter count wraps around `usize` (to exactly 1000 here,
/// so a length check alone would pass) are an error in every build profile.
#[test]
fn overflowing_sizes_are_an_error_not_a_wrapped_count() {
    let sizes = [784, 13225967449074772858, 10];
    let wrapped = 784usize
        .wrapping_mul(sizes[1])
        .wrapping_add(sizes[1])
        .wrapping_add(sizes[1].wrapping_mul(10))
        .wrapping_add(10);
    assert_eq!(wrapped, 1000);
    let err = Mlp::from_parts(&sizes, Activation::Relu, vec![0.0; 1000]).unwrap_err();
    assert!(err.contains("overflows"), "{err}");
    assert_eq!(densekit::mlp::param_count(&sizes), None);
    let caught = std::panic::catch_unwind(|| Mlp::new(&sizes, Activation::Relu, 1));
    assert!(caught.is_err(), "Mlp::new must refuse overflowing sizes");
}

/// A model file saved from `params` (all 1.0 unless changed by `edit`).
fn model_bytes(sizes: &[usize], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let count = densekit::mlp::param_count(sizes).unwrap();
    let net = Mlp::from_parts(sizes, Activation::Relu, vec![1.0; count]).unwrap();
    let path = std::env::temp_dir().join(format!(
        "densekit-model-bytes-{}-{}.safetensors",
        std::process::id(),
        sizes.len()
    ));
    net.save(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    edit(&mut bytes);
    bytes
}

#[test]
fn loader_checks_lengths_before_reading_and_rejects_non_finite_weights() {
    let good = model_bytes(&[3, 2, 2], |_| {});
    assert!(Mlp::from_safetensors(&good).is_ok());
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "shorter than the 8-byte header length"),
        (good[..5].to_vec(), "shorter than the 8-byte header length"),
        (vec![0; 4096], "not a safetensors file"),
        (
            model_bytes(&[3, 2, 2], |b| {
                b[..8].copy_from_slice(&(1u64 << 62).to_le_bytes())
            }),
            "100000000-byte limit",
        ),
        (
            model_bytes(&[3, 2, 2], |b| {
                b[..8].copy_from_slice(&(header_len + 10_000).to_le_bytes())
            }),
            "bytes that follow it",
        ),
        (good[..good.len() - 4].to_vec(), "corrupt safetensors data"),
        (
            model_bytes(&[3, 2, 2], |b| b.extend([0; 4])),
            "corrupt safetensors data",
        ),
        (
            model_bytes(&[3, 2, 2], |b| {
                let last = b.len() - 4;
                b[last..].copy_from_slice(&f32::NAN.to_le_bytes());
            }),
            "holds NaN or infinite values",
        ),
        (
            model_bytes(&[3, 2, 2], |b| {
                let first = 8 + header_len as usize;
                b[first..first + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
            }),
            "holds NaN or infinite values",
        ),
    ];
    for (bytes, needle) in cases {
        let err = Mlp::from_safetensors(&bytes).unwrap_err();
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
}

#[test]
fn load_rejects_sparse_and_endless_files() {
    let dir = std::env::temp_dir().join(format!("densekit-sparse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 8 TiB of zeros, sparse (3 GiB where the file system allows no more):
    // a loader that read the file before checking it would fail to
    // allocate and abort here.
    let sparse = dir.join("sparse.safetensors");
    let file = std::fs::File::create(&sparse).unwrap();
    file.set_len(1 << 43)
        .or_else(|_| file.set_len(3 << 30))
        .unwrap();
    let err = Mlp::load(&sparse).unwrap_err().to_string();
    assert!(err.contains("not a safetensors file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    if std::path::Path::new("/dev/zero").exists() {
        let err = Mlp::load(std::path::Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}

#[test]
fn save_refuses_non_finite_weights_and_removes_stale_temporaries() {
    let dir = std::env::temp_dir().join(format!("densekit-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    std::fs::write(&path, b"the previous model").unwrap();
    let mut params = vec![0.5; densekit::mlp::param_count(&[3, 2]).unwrap()];
    params[4] = f32::NAN;
    let err = Mlp::from_parts(&[3, 2], Activation::Relu, params)
        .unwrap()
        .save(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parameter 4 is NaN") && err.contains("diverged"),
        "{err}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"the previous model");
    // A temporary file of a process that is gone is removed by the next
    // save; one of a live process (this one's parent chain: pid 1) stays.
    let stale = dir.join(".m.safetensors.tmp-4294967295");
    let live = dir.join(".m.safetensors.tmp-1");
    let unrelated = dir.join(".other.safetensors.tmp-4294967295");
    for f in [&stale, &live, &unrelated] {
        std::fs::write(f, b"partial").unwrap();
    }
    let net = Mlp::new(&[3, 2], Activation::Relu, 1);
    net.save(&path).unwrap();
    assert_eq!(Mlp::load(&path).unwrap(), net);
    assert!(!stale.exists(), "stale temporary file left behind");
    assert!(unrelated.exists(), "another file's temporary was removed");
    if std::path::Path::new("/proc/self").exists() {
        assert!(live.exists(), "a live process's temporary was removed");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// One full-batch step whose update makes the weights non-finite: the
/// batch's loss (computed before the update) is finite, so only the check
/// after the epoch can see it.
#[test]
fn divergence_on_the_last_update_is_an_error() {
    let (train_set, test_set) = (blobs(64, 1), blobs(16, 2));
    let mut net = Mlp::new(&[6, 8, 4], Activation::Relu, 1);
    let config = TrainConfig {
        epochs: 1,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let err = train(
        &mut net,
        &Optimizer::Adam(Adam {
            lr: 1e38,
            ..Adam::default()
        }),
        TrainData::new(&train_set).with_test(&test_set),
        &config,
        |_| {},
    )
    .unwrap_err();
    assert_eq!(
        err,
        TrainError::Diverged {
            epoch: 1,
            step: 1,
            lr: 1e38
        }
    );
}

/// The metrics without their timings (which a resumed run cannot repeat).
fn without_timings(history: &[densekit::train::EpochMetrics]) -> Vec<[u64; 7]> {
    history
        .iter()
        .map(|m| {
            [
                m.epoch as u64,
                m.train.loss.to_bits(),
                m.running_loss.to_bits(),
                m.train.accuracy().unwrap().to_bits(),
                m.test.unwrap().loss.to_bits(),
                m.test.unwrap().accuracy().unwrap().to_bits(),
                u64::from(m.lr.to_bits()),
            ]
        })
        .collect()
}

/// Stopped anywhere (mid-epoch, at an epoch's last step, after an epoch),
/// saved to a file and resumed, a run ends with the bits of the run never
/// stopped: weights and metrics. Images exercise the reordered inputs (and
/// optimizer buffers), Adam both of its buffers.
#[test]
fn stopped_and_resumed_runs_match_the_uninterrupted_run() {
    use densekit::train::{Checkpoint, Flow, Progress, train_with};
    let (train_set, test_set) = (bars(200, 1), bars(60, 2));
    let config = TrainConfig {
        epochs: 3,
        batch_size: 16,
        seed: 9,
        schedule: Schedule::Cosine {
            epochs: 3,
            min_lr: 0.0,
        },
        par: Par::Threads(2),
        ..TrainConfig::default()
    };
    let adam = Optimizer::Adam(Adam {
        lr: 0.01,
        ..Adam::default()
    });
    let fresh = Mlp::new(&[42, 64, 10], Activation::Relu, 3);
    let mut whole = fresh.clone();
    let want = train(
        &mut whole,
        &adam,
        TrainData::new(&train_set).with_test(&test_set),
        &config,
        |_| {},
    )
    .unwrap();
    let steps = 200usize.div_ceil(16);
    let path = std::env::temp_dir().join(format!("densekit-resume-{}.ckpt", std::process::id()));
    for (stop_epoch, stop_step) in [(1, 3), (2, steps), (2, 0), (3, 1)] {
        let mut net = fresh.clone();
        let stopped = train_with(
            &mut net,
            &adam,
            TrainData::new(&train_set).with_test(&test_set),
            &config,
            None,
            |p| match p {
                Progress::Step { epoch, step, .. } if (epoch, step) == (stop_epoch, stop_step) => {
                    Flow::Stop
                }
                Progress::Epoch(m) if stop_step == 0 && m.epoch == stop_epoch => Flow::Stop,
                _ => Flow::Continue,
            },
        );
        let Err(TrainError::Interrupted(checkpoint)) = stopped else {
            panic!("({stop_epoch}, {stop_step}) did not stop: {stopped:?}");
        };
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap();
        assert_eq!(loaded, *checkpoint, "the file restores the checkpoint");
        // A fresh network of the same shape: the checkpoint brings the weights.
        let mut resumed = Mlp::new(&[42, 64, 10], Activation::Relu, 77);
        let got = train_with(
            &mut resumed,
            &adam,
            TrainData::new(&train_set).with_test(&test_set),
            &config,
            Some(&loaded),
            |_| Flow::Continue,
        )
        .unwrap();
        assert_eq!(
            resumed, whole,
            "weights after stopping at ({stop_epoch}, {stop_step})"
        );
        assert_eq!(without_timings(&got), without_timings(&want));
    }
    // Other settings or another network: refused, not silently mixed.
    let mut net = fresh.clone();
    let Err(TrainError::Interrupted(checkpoint)) = train_with(
        &mut net,
        &adam,
        TrainData::new(&train_set).with_test(&test_set),
        &config,
        None,
        |_| Flow::Stop,
    ) else {
        panic!("did not stop");
    };
    let other = TrainConfig {
        seed: 10,
        ..config.clone()
    };
    let err = train_with(
        &mut net,
        &adam,
        TrainData::new(&train_set).with_test(&test_set),
        &other,
        Some(&checkpoint),
        |_| Flow::Continue,
    )
    .unwrap_err();
    assert!(err.to_string().contains("other settings"), "{err}");
    let mut wider = Mlp::new(&[42, 65, 10], Activation::Relu, 3);
    let err = train_with(
        &mut wider,
        &adam,
        TrainData::new(&train_set).with_test(&test_set),
        &config,
        Some(&checkpoint),
        |_| Flow::Continue,
    )
    .unwrap_err();
    assert!(err.to_string().contains("network"), "{err}");
    // A checkpoint is not a model, and a model is not a checkpoint.
    let err = Mlp::load(&path).unwrap_err().to_string();
    assert!(err.contains("densekit-checkpoint"), "{err}");
    whole.save(&path).unwrap();
    assert!(
        Checkpoint::load(&path)
            .unwrap_err()
            .contains("densekit-mlp")
    );
    std::fs::remove_file(&path).unwrap();
}

/// Training on 1, 2, 3 and 8 threads (2 cores here: the counts above are
/// capped) next to a thread that keeps a core busy: it finishes, with the
/// same bits on every count (the helpers' spin, park and contention paths
/// must neither hang nor change a result).
#[test]
fn training_beside_a_busy_thread_on_any_thread_count() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let busy = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut x = 1u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    };
    let (train_set, test_set) = (bars(300, 1), bars(60, 2));
    let run = |par: Par| {
        let mut net = Mlp::new(&[42, 64, 10], Activation::Relu, 3);
        let config = TrainConfig {
            epochs: 2,
            batch_size: 8,
            par,
            ..TrainConfig::default()
        };
        let sgd = Optimizer::Sgd(Sgd {
            lr: 0.05,
            ..Sgd::default()
        });
        let history = train(
            &mut net,
            &sgd,
            TrainData::new(&train_set).with_test(&test_set),
            &config,
            |_| {},
        )
        .unwrap();
        (net, without_timings(&history))
    };
    let want = run(Par::Threads(2));
    for threads in [1, 3, 8, 2] {
        assert_eq!(run(Par::Threads(threads)), want, "{threads} threads");
    }
    assert_eq!(run(Par::Auto), want);
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    assert_eq!(Par::Threads(1000).threads(), Par::available_cores());
    assert!(Par::Threads(0).ready().is_err());
}

/// `f32` features with real targets: `train` fits them by mean squared
/// error (RMSE reported for every set), the same bits on 1 and 2 threads,
/// and a run stopped mid-epoch, saved and resumed ends where the whole run
/// does, RMSE scores included.
#[test]
fn regression_trains_resumes_and_is_thread_independent() {
    use densekit::train::{Checkpoint, Flow, Metric, Progress, train_with};
    // Two targets per sample: y₀ = x₀·x₁, y₁ = x₀ − 2·x₂ (three features).
    let n = 600;
    let x: Vec<f32> = (0..3 * n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let y: Vec<f32> = x
        .chunks_exact(3)
        .flat_map(|p| [p[0] * p[1], p[0] - 2.0 * p[2]])
        .collect();
    let all = Dataset::regression(&x[..], 3, &y[..], 2).unwrap();
    let (train_set, val_set, test_set) = (all.rows(0..400), all.rows(400..500), all.rows(500..n));
    let data = TrainData::new(&train_set)
        .with_val(&val_set)
        .with_test(&test_set);
    let adam = Optimizer::Adam(Adam {
        lr: 0.01,
        ..Adam::default()
    });
    let config = |par| TrainConfig {
        epochs: 40,
        batch_size: 16,
        seed: 4,
        par,
        ..TrainConfig::default()
    };
    let fresh = Mlp::new(&[3, 32, 2], Activation::Tanh, 5);
    let run = |par| {
        let mut net = fresh.clone();
        let history = train(&mut net, &adam, data, &config(par), |_| {}).unwrap();
        (net, history)
    };
    let (net, history) = run(Par::Seq);
    let (first, last) = (history[0], *history.last().unwrap());
    // Always predicting the mean scores an RMSE of about 0.7 here.
    let rmse = |s: Option<densekit::train::Score>| s.unwrap().rmse().unwrap();
    assert!(rmse(last.test) < 0.1 && rmse(last.val) < 0.1, "{last:?}");
    assert!(rmse(last.test) < rmse(first.test));
    assert_eq!(last.train.metric, Metric::Rmse(last.train.loss.sqrt()));
    let (net2, history2) = run(Par::Threads(2));
    assert_eq!(net, net2, "weights differ between 1 and 2 threads");
    let strip = |h: &[densekit::train::EpochMetrics]| {
        h.iter()
            .map(|m| (m.train, m.val, m.test, m.running_loss))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&history), strip(&history2));
    // Stopped in epoch 3, through a file, resumed.
    let mut stopped_net = fresh.clone();
    let stopped = train_with(
        &mut stopped_net,
        &adam,
        data,
        &config(Par::Seq),
        None,
        |p| match p {
            Progress::Step {
                epoch: 3, step: 7, ..
            } => Flow::Stop,
            _ => Flow::Continue,
        },
    );
    let Err(TrainError::Interrupted(checkpoint)) = stopped else {
        panic!("did not stop: {stopped:?}");
    };
    let path = std::env::temp_dir().join(format!("densekit-regress-{}.ckpt", std::process::id()));
    checkpoint.save(&path).unwrap();
    let loaded = Checkpoint::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded, *checkpoint);
    let mut resumed = fresh.clone();
    let rest = train_with(
        &mut resumed,
        &adam,
        data,
        &config(Par::Seq),
        Some(&loaded),
        |_| Flow::Continue,
    )
    .unwrap();
    assert_eq!(resumed, net);
    assert_eq!(strip(&rest), strip(&history));
}

/// A model file says how its inputs were normalized only when the caller
/// says so: `save` writes the architecture alone.
#[test]
fn model_notes_only_where_the_caller_gives_them() {
    let dir = std::env::temp_dir().join(format!("densekit-notes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    let net = Mlp::new(&[3, 4, 2], Activation::Relu, 1);
    net.save(&path).unwrap();
    let plain = Mlp::metadata(&path).unwrap();
    assert!(!plain.contains_key("normalization"), "{plain:?}");
    assert_eq!(plain["sizes"], "3,4,2");
    net.save_with_metadata(&path, &[("normalization", "z-score"), ("task", "demo")])
        .unwrap();
    let noted = Mlp::metadata(&path).unwrap();
    assert_eq!(
        (noted["normalization"].as_str(), noted["task"].as_str()),
        ("z-score", "demo")
    );
    assert_eq!(
        Mlp::load(&path).unwrap(),
        net,
        "notes do not change the model"
    );
    let err = net
        .save_with_metadata(&path, &[("format", "other")])
        .unwrap_err();
    assert!(
        err.to_string().contains("`format` belongs to the format"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

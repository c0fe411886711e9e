//! Every vectorized path runs the selected ISA, and nothing else: the GEMM
//! kernels, the transposing pack, the activation passes and backward rows,
//! the optimizer updates and the vectorized `exp` of softmax.
//!
//! This file holds one test so that nothing else in its process runs code
//! of another ISA (the other suites call `gemm_with_isa` for every ISA).
//! `.ci/run` runs it once more with `DENSEKIT_ISA=scalar`, where it checks
//! that the forced portable path governed every one of those paths.

use densekit::activation::Activation;
use densekit::data::Dataset;
use densekit::gemm::{Accum, ISA_ENV_VAR, Isa, MatMut, MatRef, Par, gemm, reference};
use densekit::mlp::Mlp;
use densekit::optim::{Adam, Optimizer};
use densekit::train::{TrainConfig, TrainData, train};

#[test]
fn only_the_selected_isa_runs() {
    let selected = Isa::selected();
    if let Ok(name) = std::env::var(ISA_ENV_VAR) {
        let forced = Isa::from_name(&name).expect("DENSEKIT_ISA names a known ISA");
        assert_eq!(selected, forced, "{ISA_ENV_VAR}={name} was not honoured");
    }
    assert!(
        Isa::ALL.iter().all(|isa| !isa.has_run()),
        "nothing has run yet"
    );

    // A product large enough to pack, with B column-major: B slivers go
    // through the transposing pack.
    let (m, k, n) = (96, 80, 72);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 - 6.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut c = vec![f32::NAN; m * n];
    let mut want = vec![0.0f32; m * n];
    let a_view = MatRef::from_row_major(&a, m, k);
    let b_view = MatRef::from_row_major(&b, n, k).t();
    gemm(
        MatMut::from_row_major(&mut c, m, n),
        Accum::Replace,
        a_view,
        b_view,
        1.0,
        Par::Seq,
    );
    reference::gemm(
        MatMut::from_row_major(&mut want, m, n),
        Accum::Replace,
        a_view,
        b_view,
        1.0,
    );
    assert_eq!(c, want, "integer-valued products are exact");

    // Training: activation passes (sigmoid, tanh), backward rows, softmax
    // with its exp, Adam updates.
    let data = Dataset::from_pixels(
        (0..256 * 16)
            .map(|i| (i * 37 % 256) as u8)
            .collect::<Vec<u8>>(),
        16,
        (0..256).map(|i| i % 3).collect::<Vec<u32>>(),
    )
    .unwrap();
    for act in [Activation::Sigmoid, Activation::Tanh] {
        let mut net = Mlp::new(&[16, 24, 3], act, 7);
        let config = TrainConfig {
            epochs: 1,
            batch_size: 32,
            ..TrainConfig::default()
        };
        let history = train(
            &mut net,
            &Optimizer::Adam(Adam::default()),
            TrainData::new(&data).with_test(&data),
            &config,
            |_| {},
        )
        .expect("training runs");
        assert!(history[0].train.loss.is_finite());
    }

    let ran: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.has_run()).collect();
    assert_eq!(
        ran,
        [selected],
        "code of an ISA other than the selected {selected} ran"
    );
}

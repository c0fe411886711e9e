//! PyTorch interchange: a plain `state_dict` saved with safetensors
//! (tests/fixtures, written by benches/peers/pytorch_fixture.py) loads with
//! `Mlp::load_pytorch` and gives numpy's logits; files that are not an
//! `nn.Sequential` of Linear layers are errors naming the tensor.

use std::path::PathBuf;

use densekit::activation::Activation;
use densekit::gemm::{MatRef, Par};
use densekit::mlp::{Mlp, MlpWorkspace};
use safetensors::tensor::{Dtype, TensorView};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn pytorch_state_dict_gives_numpys_logits() {
    let net = Mlp::load_pytorch(fixture("pytorch_mlp.safetensors"), Activation::Relu).unwrap();
    assert_eq!(net.sizes(), &[6, 5, 3]);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("pytorch_mlp.json")).unwrap())
            .unwrap();
    let rows = |key: &str| -> Vec<Vec<f64>> {
        expected[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    let (inputs, logits) = (rows("inputs"), rows("logits"));
    let x: Vec<f32> = inputs.iter().flatten().map(|&v| v as f32).collect();
    let mut ws = MlpWorkspace::new();
    let got = net.forward(
        MatRef::from_row_major(&x, inputs.len(), 6),
        &mut ws,
        Par::Seq,
    );
    for (g, want) in got.iter().zip(logits.iter().flatten()) {
        assert!(
            (f64::from(*g) - want).abs() <= 1e-6,
            "{got:?} vs {logits:?}"
        );
    }
    // The densekit loader names the other entry point.
    let err = Mlp::load(fixture("pytorch_mlp.safetensors")).unwrap_err();
    assert!(err.to_string().contains("Mlp::load_pytorch"), "{err}");
}

/// Tensor names and shapes of a test file.
type Tensors<'a> = &'a [(&'a str, &'a [usize])];

/// A safetensors file of f32 tensors with these names and shapes (zeros).
fn write(name: &str, tensors: Tensors<'_>) -> PathBuf {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape)| {
            0.25f32
                .to_le_bytes()
                .repeat(shape.iter().product::<usize>())
        })
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, shape), d)| (*n, TensorView::new(Dtype::F32, shape.to_vec(), d).unwrap()))
        .collect();
    let path = std::env::temp_dir().join(format!(
        "densekit-pytorch-{name}-{}.safetensors",
        std::process::id()
    ));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

#[test]
fn files_that_are_not_linear_stacks_are_errors_naming_the_tensor() {
    let cases: [(&str, Tensors<'_>, &str); 6] = [
        (
            "batchnorm",
            &[
                ("0.weight", &[4, 3]),
                ("0.bias", &[4]),
                ("1.running_mean", &[4]),
                ("2.weight", &[2, 4]),
                ("2.bias", &[2]),
            ],
            "tensor `1.running_mean` [4] is not a Linear layer's weight or bias",
        ),
        (
            "prelu",
            &[
                ("0.weight", &[4, 3]),
                ("0.bias", &[4]),
                ("1.weight", &[1]),
                ("2.weight", &[2, 4]),
                ("2.bias", &[2]),
            ],
            "tensor `1.weight` [1] is a PReLU slope: load with Activation::PRelu",
        ),
        (
            "chain",
            &[
                ("0.weight", &[4, 3]),
                ("0.bias", &[4]),
                ("2.weight", &[2, 5]),
                ("2.bias", &[2]),
            ],
            "layer `2.weight` takes 5 inputs but the layer before it has 4 outputs",
        ),
        (
            "nobias",
            &[("0.weight", &[4, 3])],
            "a Linear layer without a bias does not load",
        ),
        ("empty", &[("scale", &[3])], "no `nn.Linear` weights"),
        (
            "two",
            &[
                ("a.0.weight", &[4, 3]),
                ("a.0.bias", &[4]),
                ("b.1.weight", &[2, 4]),
                ("b.1.bias", &[2]),
            ],
            "two module names",
        ),
    ];
    for (name, tensors, needle) in cases {
        let path = write(name, tensors);
        let err = Mlp::load_pytorch(&path, Activation::Relu).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains(needle), "{name}: {err}");
    }
    // An nn.PReLU() between the layers loads as the learned slope.
    let path = write(
        "prelu-ok",
        &[
            ("0.weight", &[4, 3]),
            ("0.bias", &[4]),
            ("1.weight", &[1]),
            ("2.weight", &[2, 4]),
            ("2.bias", &[2]),
        ],
    );
    let net = Mlp::load_pytorch(&path, Activation::PRelu(0.25)).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(net.sizes(), &[3, 4, 2]);
    assert_eq!(net.prelu_slopes(), [0.25]);
    // Prefixed names (a module holding `self.layers = nn.Sequential(…)`) load.
    let path = write(
        "layers",
        &[
            ("layers.0.weight", &[4, 3]),
            ("layers.0.bias", &[4]),
            ("layers.2.weight", &[2, 4]),
            ("layers.2.bias", &[2]),
        ],
    );
    let net = Mlp::load_pytorch(&path, Activation::Tanh).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        (net.sizes(), net.hidden_activation()),
        (&[3, 4, 2][..], Activation::Tanh)
    );
}

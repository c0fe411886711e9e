//! A classifier on your own data: rows of `f32` features and an integer
//! class, here read from CSV text (`x,y,class` per line), with no test set.
//! Three interleaved spirals in the plane, 300 points each, learned by a
//! 2-64-64-3 ReLU network to ≥ 97% training accuracy, then used to
//! classify new points.
//!
//! ```text
//! cargo run --release --example own_data
//! ```
//!
//! `cargo test` runs it too (and fails if the accuracy is not reached).
//! Data in an ndarray `Array2<f32>` works the same way: pass
//! `array.as_slice().unwrap()` (a standard-layout array is row-major) as
//! the features.

use densekit::activation::Activation;
use densekit::data::Dataset;
use densekit::gemm::{MatRef, Par};
use densekit::mlp::{Mlp, MlpWorkspace, argmax_rows};
use densekit::optim::{Adam, Optimizer};
use densekit::train::{TrainConfig, TrainData, train};

/// The training accuracy the example promises.
const TARGET_ACCURACY: f64 = 0.97;

fn main() {
    let accuracy = fit();
    assert!(
        accuracy >= TARGET_ACCURACY,
        "training accuracy {accuracy:.4}"
    );
}

/// Parses `x,y,class` lines into row-major features and labels; the error
/// names the line.
fn parse_csv(text: &str) -> Result<(Vec<f32>, Vec<u32>), String> {
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [x, y, class] = fields[..] else {
            return Err(format!(
                "line {}: expected 3 fields, got {}",
                n + 1,
                fields.len()
            ));
        };
        let number = |s: &str| {
            s.parse::<f32>()
                .map_err(|e| format!("line {}: `{s}`: {e}", n + 1))
        };
        features.extend([number(x)?, number(y)?]);
        labels.push(
            class
                .parse()
                .map_err(|e| format!("line {}: class `{class}`: {e}", n + 1))?,
        );
    }
    Ok((features, labels))
}

/// Trains on the spirals and returns the final training accuracy.
fn fit() -> f64 {
    let csv = spirals_csv(300);
    let (features, labels) = parse_csv(&csv).expect("well-formed CSV");
    // Shapes are checked here, once: a ragged file is an error, not a panic later.
    let data = Dataset::classification(features, 2, labels).expect("2 features per label");

    let mut net = Mlp::new(&[2, 64, 64, 3], Activation::Relu, 3);
    let optimizer = Optimizer::Adam(Adam {
        lr: 0.01,
        ..Adam::default()
    });
    let config = TrainConfig {
        epochs: 150,
        batch_size: 32,
        seed: 2,
        ..TrainConfig::default()
    };
    // No test set, no validation set: the training metrics are all there is.
    let history =
        train(&mut net, &optimizer, TrainData::new(&data), &config, |_| {}).expect("training runs");
    let last = history.last().expect("epochs ran");
    let accuracy = last.train.accuracy().expect("class labels");
    println!(
        "after {} epochs: training loss {:.4}, training accuracy {:.2}%",
        last.epoch,
        last.train.loss,
        100.0 * accuracy
    );

    // The trained network on new points: the argmax of its outputs is the class.
    let points = [0.0f32, 0.0, 0.5, 0.5, -0.7, 0.2];
    let mut ws = MlpWorkspace::new();
    let logits = net.forward(MatRef::from_row_major(&points, 3, 2), &mut ws, Par::Seq);
    for (p, class) in points.chunks_exact(2).zip(argmax_rows(logits, 3)) {
        println!("({:>4}, {:>4}) → class {class}", p[0], p[1]);
    }
    accuracy
}

/// `per_class` points on each of three spiral arms, with a little seeded
/// jitter, as CSV text.
fn spirals_csv(per_class: usize) -> String {
    let mut seed = 9u64;
    let mut jitter = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    let mut csv = String::new();
    for class in 0..3 {
        for i in 0..per_class {
            let r = i as f32 / per_class as f32;
            let angle = 4.0 * r + class as f32 * std::f32::consts::TAU / 3.0 + jitter();
            csv.push_str(&format!(
                "{},{},{class}\n",
                r * angle.cos(),
                r * angle.sin()
            ));
        }
    }
    csv
}

#[cfg(test)]
mod tests {
    #[test]
    fn reaches_the_stated_accuracy() {
        assert!(super::fit() >= super::TARGET_ACCURACY);
    }

    #[test]
    fn bad_csv_names_the_line() {
        let err = super::parse_csv("0.1,0.2,1\n0.3,oops,0\n").unwrap_err();
        assert!(err.starts_with("line 2: `oops`"), "{err}");
    }
}

//! Regression on your own `f32` data: an MLP learns a smooth function of
//! two inputs, `y = sin(3·x₀)·cos(2·x₁)` plus a little noise, by mean
//! squared error, with the last fifth of the samples held out for
//! validation. Reaches a validation RMSE below 0.05 (the noise alone is
//! 0.006 RMS; the target's standard deviation is 0.46, the RMSE of always
//! predicting its mean).
//!
//! ```text
//! cargo run --release --example regression
//! ```
//!
//! `cargo test` runs it too (and fails if the RMSE is not reached).

use densekit::activation::Activation;
use densekit::data::Dataset;
use densekit::mlp::Mlp;
use densekit::optim::{Adam, Optimizer, Schedule};
use densekit::train::{Progress, TrainConfig, TrainData, train};

/// The validation RMSE the example promises.
const TARGET_RMSE: f64 = 0.05;

fn main() {
    let rmse = fit();
    assert!(
        rmse < TARGET_RMSE,
        "validation RMSE {rmse:.4}, expected below {TARGET_RMSE}"
    );
    println!("validation RMSE {rmse:.4} (below {TARGET_RMSE})");
}

/// Trains the network and returns its final validation RMSE.
fn fit() -> f64 {
    let samples = 5000;
    // Any row-major f32 matrix works: here inputs in [-1, 1]², from a seeded
    // generator so every run sees the same data.
    let mut rng = Lcg(42);
    let x: Vec<f32> = (0..2 * samples)
        .map(|_| 2.0 * rng.uniform() - 1.0)
        .collect();
    let y: Vec<f32> = x
        .chunks_exact(2)
        .map(|p| (3.0 * p[0]).sin() * (2.0 * p[1]).cos() + 0.01 * (2.0 * rng.uniform() - 1.0))
        .collect();
    // Borrowed, not copied: `&x[..]` and `&y[..]` stay the caller's.
    let all =
        Dataset::regression(&x[..], 2, &y[..], 1).expect("2 features and 1 target per sample");
    let split = samples * 4 / 5;
    let (train_set, val_set) = (all.rows(0..split), all.rows(split..samples));

    // 2 → 64 → 64 → 1, tanh hidden layers, a linear output (the regression value).
    let mut net = Mlp::new(&[2, 64, 64, 1], Activation::Tanh, 7);
    let optimizer = Optimizer::Adam(Adam {
        lr: 0.01,
        ..Adam::default()
    });
    let epochs = 60;
    let config = TrainConfig {
        epochs,
        batch_size: 32,
        seed: 1,
        schedule: Schedule::Cosine {
            epochs,
            min_lr: 0.0,
        },
        ..TrainConfig::default()
    };
    let data = TrainData::new(&train_set).with_val(&val_set);
    let history = train(&mut net, &optimizer, data, &config, |p| {
        if let Progress::Epoch(m) = p
            && m.epoch % 10 == 0
        {
            let val = m.val.expect("a validation set");
            println!(
                "epoch {:>3}: train MSE {:.5}, validation MSE {:.5}, RMSE {:.4}",
                m.epoch,
                m.train.loss,
                val.loss,
                val.rmse().expect("real targets")
            );
        }
    })
    .expect("training runs");
    let last = history.last().expect("epochs ran");
    last.val.and_then(|s| s.rmse()).expect("a regression score")
}

/// A small seeded generator (Knuth's MMIX LCG), so the example needs no
/// random-number crate.
struct Lcg(u64);

impl Lcg {
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reaches_the_stated_rmse() {
        let rmse = super::fit();
        assert!(rmse < super::TARGET_RMSE, "validation RMSE {rmse:.4}");
    }
}

//! The lecture's XOR: not linearly separable, so one neuron cannot learn it,
//! but a network with one hidden layer can. Trains 2-4-1 (tanh hidden layer,
//! sigmoid output, squared loss) with plain SGD on the four points through
//! densekit's fused dense kernels, then prints the truth table.
//!
//! ```text
//! cargo run --release --example xor
//! ```

use densekit::activation::Activation;
use densekit::dense::{self, BackwardOptions, Grads, Workspace};
use densekit::gemm::{Accum, MatMut, MatRef, Par};
use densekit::loss::mse;

fn main() {
    let x = [0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]; // (4 samples, 2 inputs)
    let targets = [0.0f32, 1.0, 1.0, 0.0];
    // Small fixed starting weights (out, in); any non-symmetric start works.
    let mut w1 = [0.5f32, -0.4, -0.3, 0.6, 0.8, 0.7, -0.6, -0.5];
    let mut b1 = [0.0f32; 4];
    let mut w2 = [0.3f32, -0.2, 0.4, -0.5];
    let mut b2 = [0.0f32];
    let (mut h, mut y) = ([0.0f32; 16], [0.0f32; 4]);
    let mut ws = Workspace::new();
    let lr = 2.0;
    for epoch in 0..=3000 {
        // Forward: h = tanh(x·w1ᵀ + b1), y = sigmoid(h·w2ᵀ + b2).
        dense::forward(
            MatMut::from_row_major(&mut h, 4, 4),
            Accum::Replace,
            MatRef::from_row_major(&x, 4, 2),
            MatRef::from_row_major(&w1, 4, 2),
            Some(&b1),
            Activation::Tanh,
            Par::Seq,
        );
        dense::forward(
            MatMut::from_row_major(&mut y, 4, 1),
            Accum::Replace,
            MatRef::from_row_major(&h, 4, 4),
            MatRef::from_row_major(&w2, 1, 4),
            Some(&b2),
            Activation::Sigmoid,
            Par::Seq,
        );
        let mut dy = [0.0f32; 4];
        let loss = mse(
            MatRef::from_row_major(&y, 4, 1),
            MatRef::from_row_major(&targets, 4, 1),
            MatMut::from_row_major(&mut dy, 4, 1),
        );
        if epoch % 500 == 0 {
            println!("epoch {epoch:>4}: loss {loss:.5}");
        }
        // Backward through both layers, then one SGD step.
        let (mut dw2, mut db2, mut dh) = ([0.0f32; 4], [0.0f32; 1], [0.0f32; 16]);
        dense::backward(
            Grads {
                dw: MatMut::from_row_major(&mut dw2, 1, 4),
                db: Some(&mut db2),
                dx: Some(MatMut::from_row_major(&mut dh, 4, 4)),
            },
            MatRef::from_row_major(&h, 4, 4),
            MatRef::from_row_major(&w2, 1, 4),
            MatRef::from_row_major(&y, 4, 1),
            MatRef::from_row_major(&dy, 4, 1),
            Activation::Sigmoid,
            BackwardOptions::default(),
            &mut ws,
        );
        let (mut dw1, mut db1) = ([0.0f32; 8], [0.0f32; 4]);
        dense::backward(
            Grads {
                dw: MatMut::from_row_major(&mut dw1, 4, 2),
                db: Some(&mut db1),
                dx: None,
            },
            MatRef::from_row_major(&x, 4, 2),
            MatRef::from_row_major(&w1, 4, 2),
            MatRef::from_row_major(&h, 4, 4),
            MatRef::from_row_major(&dh, 4, 4),
            Activation::Tanh,
            BackwardOptions::default(),
            &mut ws,
        );
        let params = w1.iter_mut().chain(&mut b1).chain(&mut w2).chain(&mut b2);
        let grads = dw1.iter().chain(&db1).chain(&dw2).chain(&db2);
        for (p, g) in params.zip(grads) {
            *p -= lr * g;
        }
    }
    println!("\n x1 x2 | XOR | network");
    for (i, (&t, &out)) in targets.iter().zip(&y).enumerate() {
        println!(
            "  {}  {} |  {}  | {out:.3} → {}",
            x[2 * i],
            x[2 * i + 1],
            t,
            out.round()
        );
    }
}

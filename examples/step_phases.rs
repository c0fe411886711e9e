//! Times the phases of one training step of 784-256-10 (Adam, batch 128)
//! on real MNIST batches: gathering the pixels, the forward pass, the whole
//! forward-and-backward pass, and the optimizer update. Medians and 10th
//! percentiles over 1500 steps, so a noisy machine still shows each phase.
//!
//! ```text
//! cargo run --release --example step_phases -- 2   # threads (default 2)
//! ```

use std::path::Path;
use std::time::Instant;

use densekit::Par;
use densekit::activation::Activation;
use densekit::data::load_mnist;
use densekit::gemm::MatRef;
use densekit::loss::Targets;
use densekit::mlp::{Mlp, MlpWorkspace};
use densekit::optim::{Adam, Optimizer};
use densekit::train::pixel_order;

const BATCH: usize = 128;
const STEPS: usize = 1500;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 2,
    };
    let par = Par::Threads(threads);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let mnist = load_mnist(&dir)?;
    let features = mnist.train.feature_count();
    let mut net = Mlp::new(&[features, 256, 10], Activation::Relu, 1);
    // As the trainer arranges the data: pixels in tiles, batches grouped by class.
    let train = match pixel_order(&net, &mnist.train) {
        Some(order) => {
            net.reorder_inputs(&order);
            mnist.train.with_feature_order(&order)
        }
        None => mnist.train.clone(),
    };
    let optimizer = Optimizer::Adam(Adam::default());
    // Batch `step`: BATCH rows spread over the training set.
    let rows = |step: usize| -> Vec<usize> {
        let mut rows: Vec<usize> = (0..BATCH)
            .map(|i| (step * 7919 + i * 104_729) % train.len())
            .collect();
        rows.sort_by_key(|&r| train.labels().expect("MNIST has labels")[r]);
        rows
    };
    let phases = ["gather", "forward", "forward+backward", "update"];
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(STEPS); phases.len()];
    par.install(|| {
        let mut state = optimizer.state(net.params().len());
        let mut grads = vec![0.0f32; net.params().len()];
        let mut ws = MlpWorkspace::new();
        let mut x = vec![0.0f32; BATCH * features];
        for step in 0..STEPS {
            let batch = rows(step);
            let labels: Vec<usize> = batch
                .iter()
                .map(|&r| train.labels().expect("MNIST has labels")[r] as usize)
                .collect();
            // As the trainer does: the next batch's rows load while this one trains.
            train.prefetch_rows(&rows(step + 1));
            let t0 = Instant::now();
            train.gather_into(&batch, &mut x, par);
            let t1 = Instant::now();
            let input = MatRef::from_row_major(&x, BATCH, features);
            net.forward(input, &mut ws, par);
            let t2 = Instant::now();
            net.gradients(input, Targets::Classes(&labels), &mut grads, &mut ws, par);
            let t3 = Instant::now();
            optimizer.update(&mut state, net.params_mut(), &grads, 1e-3, par);
            let t4 = Instant::now();
            for (phase, (start, end)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4)]
                .into_iter()
                .enumerate()
            {
                times[phase].push((end - start).as_secs_f64() * 1e6);
            }
        }
    });
    println!("784-256-10, Adam, batch {BATCH}, {threads} thread(s), {STEPS} steps:");
    for (name, mut t) in phases.iter().zip(times) {
        t.sort_by(f64::total_cmp);
        println!(
            "  {name:17} median {:6.1} µs   p10 {:6.1} µs",
            t[t.len() / 2],
            t[t.len() / 10]
        );
    }
    Ok(())
}

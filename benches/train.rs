//! One training step (forward, backward, Adam update) of the MNIST models,
//! in samples/s; effective GFLOP/s = samples/s × 6·params / 1e9. Each model
//! runs on synthetic inputs without zeros and (`_mnist`) on real MNIST
//! batches, whose zero pixels the first layer skips, with the pixels in the
//! tiled order the trainer uses (`densekit::train::pixel_order`). The steps
//! run inside `Par::install`, as the trainer's loop does.
//!
//! ```text
//! cargo bench --bench train
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use densekit::activation::Activation;
use densekit::data::load_mnist;
use densekit::gemm::{MatRef, Par};
use densekit::loss::Targets;
use densekit::mlp::{Mlp, MlpWorkspace};
use densekit::optim::{Adam, Optimizer};
use densekit::train::pixel_order;

fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    // Synthetic inputs have no zeros; MNIST's pixels are 81% zero, which
    // the first layer's GEMMs skip in blocks (see `densekit::dense`).
    let mnist = load_mnist(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
        .expect("the repository's data/mnist");
    let cases: [(&[usize], usize, bool); 6] = [
        (&[784, 256, 10], 32, false),
        (&[784, 256, 10], 128, false),
        (&[784, 256, 10], 512, false),
        (&[784, 1024, 1024, 10], 256, false),
        (&[784, 256, 10], 128, true),
        (&[784, 1024, 1024, 10], 256, true),
    ];
    for (threads, par) in [(1, Par::Seq), (2, Par::Threads(2))] {
        for &(sizes, batch, real) in &cases {
            let mut net = Mlp::new(sizes, Activation::Relu, 1);
            let optimizer = Optimizer::Adam(Adam::default());
            let mut state = optimizer.state(net.params().len());
            let mut grads = vec![0.0f32; net.params().len()];
            let mut ws = MlpWorkspace::new();
            let (x, labels): (Vec<f32>, Vec<usize>) = if real {
                // As the trainer arranges a batch: pixels tiled, samples
                // grouped by class.
                let data = match pixel_order(&net, &mnist.train) {
                    Some(order) => {
                        net.reorder_inputs(&order);
                        mnist.train.with_feature_order(&order)
                    }
                    None => mnist.train.clone(),
                };
                let mut rows: Vec<usize> = (0..batch).collect();
                rows.sort_by_key(|&r| data.labels().expect("labelled")[r]);
                let mut x = vec![0.0; batch * 784];
                data.gather_into(&rows, &mut x, Par::Seq);
                let labels = rows
                    .iter()
                    .map(|&r| data.labels().expect("labelled")[r] as usize);
                (x, labels.collect())
            } else {
                let x = (0..batch * 784).map(|i| (i % 251) as f32 / 251.0);
                (x.collect(), (0..batch).map(|i| i % 10).collect())
            };
            let arch = sizes
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("-");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(
                BenchmarkId::new(
                    format!("{arch}{}_{threads}t", if real { "_mnist" } else { "" }),
                    batch,
                ),
                |bench| {
                    // As in the trainer, the steps run on a pool thread while
                    // the other threads stand ready (`Par::install`).
                    bench.iter_custom(|iters| {
                        par.install(|| {
                            let start = Instant::now();
                            for _ in 0..iters {
                                net.gradients(
                                    MatRef::from_row_major(&x, batch, 784),
                                    Targets::Classes(&labels),
                                    &mut grads,
                                    &mut ws,
                                    par,
                                );
                                optimizer.update(&mut state, net.params_mut(), &grads, 1e-3, par);
                            }
                            start.elapsed()
                        })
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = step
}
criterion_main!(benches);

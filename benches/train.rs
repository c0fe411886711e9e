//! One training step (forward, backward, Adam update) of the MNIST models,
//! in samples/s; effective GFLOP/s = samples/s × 6·params / 1e9.
//!
//! ```text
//! cargo bench --bench train
//! ```

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use densekit::activation::Activation;
use densekit::gemm::{MatRef, Par};
use densekit::mlp::{Mlp, MlpWorkspace};
use densekit::optim::{Adam, Optimizer};

fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step");
    let cases: [(&[usize], usize); 4] = [
        (&[784, 256, 10], 32),
        (&[784, 256, 10], 128),
        (&[784, 256, 10], 512),
        (&[784, 1024, 1024, 10], 256),
    ];
    for (threads, par) in [(1, Par::Seq), (2, Par::Threads(2))] {
        for &(sizes, batch) in &cases {
            let mut net = Mlp::new(sizes, Activation::Relu, 1);
            let optimizer = Optimizer::Adam(Adam::default());
            let mut state = optimizer.state(net.params().len());
            let mut grads = vec![0.0f32; net.params().len()];
            let mut ws = MlpWorkspace::new();
            let x: Vec<f32> = (0..batch * 784).map(|i| (i % 251) as f32 / 251.0).collect();
            let labels: Vec<usize> = (0..batch).map(|i| i % 10).collect();
            let arch = sizes
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("-");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(
                BenchmarkId::new(format!("{arch}_{threads}t"), batch),
                |bench| {
                    bench.iter(|| {
                        net.gradients(
                            MatRef::from_row_major(&x, batch, 784),
                            &labels,
                            &mut grads,
                            &mut ws,
                            par,
                        );
                        optimizer.update(&mut state, net.params_mut(), &grads, 1e-3, par);
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

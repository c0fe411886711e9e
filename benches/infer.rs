//! Inference: `Mlp::forward` on 784-256-10 at batch 1, 8, 32, 256 and
//! 1000, one and two threads, on the real MNIST test images (whose zero
//! pixels the first layer skips) and on dense synthetic inputs without
//! zeros.
//!
//! ```text
//! cargo bench --bench infer
//! python3 benches/summarize.py infer
//! ```
//!
//! Each runs plain (`Mlp::forward`) and pre-packed (`PackedMlp::forward`,
//! label suffix `_packed`). Labels are `<inputs>_<threads>t[_packed]/<batch>`; criterion's throughput is in
//! images/s (`elem/s`), and `summarize.py` adds µs per call and GFLOP/s
//! (2 · 203,264 flops per image). Each call takes the next `batch` images
//! of the test set, so a batch-1 figure is an average over real digits.
//! The calls run inside `Par::install`, as a serving loop on a pool would.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use densekit::activation::Activation;
use densekit::data::load_mnist;
use densekit::gemm::{MatRef, Par};
use densekit::mlp::{Mlp, MlpWorkspace, PackedMlp};

const SIZES: [usize; 3] = [784, 256, 10];
const BATCHES: [usize; 5] = [1, 8, 32, 256, 1000];

fn infer(c: &mut Criterion) {
    let mnist = load_mnist(Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))
        .expect("the repository's data/mnist");
    let images = mnist.test.len();
    let mut real = Vec::new();
    mnist.test.gather_range(0..images, &mut real);
    // Dense inputs: no zero to skip.
    let dense: Vec<f32> = (0..images * SIZES[0])
        .map(|i| ((i * 37) % 251) as f32 / 251.0 + 0.01)
        .collect();
    let net = Mlp::new(&SIZES, Activation::Relu, 1);
    let packed = net.packed();
    let mut group = c.benchmark_group("infer");
    for (threads, par) in [(1, Par::Seq), (2, Par::Threads(2))] {
        for (inputs, x) in [("mnist", &real), ("dense", &dense)] {
            for (form, packed) in [("", None), ("_packed", Some(&packed))] {
                for batch in BATCHES {
                    let mut ws = MlpWorkspace::new();
                    group.throughput(Throughput::Elements(batch as u64));
                    let id = BenchmarkId::new(format!("{inputs}_{threads}t{form}"), batch);
                    let mut next = 0;
                    group.bench_function(id, |bench| {
                        bench.iter_custom(|iters| {
                            par.install(|| {
                                let start = Instant::now();
                                for _ in 0..iters {
                                    if next + batch > images {
                                        next = 0;
                                    }
                                    let rows = &x[next * SIZES[0]..(next + batch) * SIZES[0]];
                                    let x = MatRef::from_row_major(rows, batch, SIZES[0]);
                                    std::hint::black_box(forward(&net, packed, x, &mut ws, par));
                                    next += batch;
                                }
                                start.elapsed()
                            })
                        })
                    });
                }
            }
        }
    }
    group.finish();
}

fn forward<'w>(
    net: &Mlp,
    packed: Option<&PackedMlp>,
    x: MatRef<'_, f32>,
    ws: &'w mut MlpWorkspace,
    par: Par,
) -> &'w [f32] {
    match packed {
        Some(packed) => packed.forward(x, ws, par),
        None => net.forward(x, ws, par),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(15).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = infer
}
criterion_main!(benches);

//! Fused dense-layer kernels vs bare GEMMs vs unfused sequences.
//!
//! ```text
//! cargo bench --bench dense
//! python3 benches/summarize.py dense_forward dense_backward
//! ```
//!
//! Shapes are labelled `batch x in x out`; throughput counts the GEMM flops
//! (forward 2·batch·in·out, backward 4·batch·in·out), so fused and unfused
//! read as "GEMM GFLOP/s achieved" and their ratio is the time ratio.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use densekit::activation::Activation;
use densekit::dense::{self, BackwardOptions, Grads, Workspace};
use densekit::gemm::{Accum, MatMut, MatRef, Par, gemm};

const LAYERS: [(usize, usize); 3] = [(784, 256), (256, 10), (1024, 1024)];
const BATCHES: [usize; 3] = [32, 128, 512];
const PAR: Par = Par::Seq;

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + seed) % 23) as f32 / 23.0 - 0.5)
        .collect()
}

fn label(batch: usize, inputs: usize, outputs: usize) -> String {
    format!("{batch}x{inputs}x{outputs}")
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

/// The unfused epilogue: a second pass over y adding the bias and applying the activation.
fn bias_activation_pass(y: &mut [f32], b: &[f32], act: Activation) {
    for row in y.chunks_exact_mut(b.len()) {
        for (v, &bias) in row.iter_mut().zip(b) {
            *v += bias;
        }
    }
    act.apply(y);
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_forward");
    for &(inputs, outputs) in &LAYERS {
        for &batch in &BATCHES {
            let (x, w, b) = (
                fill(batch * inputs, 1),
                fill(outputs * inputs, 2),
                fill(outputs, 3),
            );
            let mut y = vec![0.0f32; batch * outputs];
            group.throughput(Throughput::Elements((2 * batch * inputs * outputs) as u64));
            let shape = label(batch, inputs, outputs);
            let xv = MatRef::from_row_major(&x, batch, inputs);
            let wv = MatRef::from_row_major(&w, outputs, inputs);
            group.bench_function(BenchmarkId::new("bare_gemm", &shape), |bench| {
                bench.iter(|| {
                    gemm(
                        MatMut::from_row_major(&mut y, batch, outputs),
                        Accum::Replace,
                        xv,
                        wv.t(),
                        1.0,
                        PAR,
                    )
                })
            });
            for (name, act) in [
                ("relu", Activation::Relu),
                ("sigmoid", Activation::Sigmoid),
                ("tanh", Activation::Tanh),
            ] {
                group.bench_function(BenchmarkId::new(format!("fused_{name}"), &shape), |bench| {
                    bench.iter(|| {
                        dense::forward(
                            MatMut::from_row_major(&mut y, batch, outputs),
                            Accum::Replace,
                            xv,
                            wv,
                            Some(&b),
                            act,
                            PAR,
                        )
                    })
                });
                group.bench_function(
                    BenchmarkId::new(format!("unfused_{name}"), &shape),
                    |bench| {
                        bench.iter(|| {
                            gemm(
                                MatMut::from_row_major(&mut y, batch, outputs),
                                Accum::Replace,
                                xv,
                                wv.t(),
                                1.0,
                                PAR,
                            );
                            bias_activation_pass(black_box(&mut y), &b, act);
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

fn backward(c: &mut Criterion) {
    let mut group = c.benchmark_group("dense_backward");
    let act = Activation::Relu;
    for &(inputs, outputs) in &LAYERS {
        for &batch in &BATCHES {
            let (x, w, dy) = (
                fill(batch * inputs, 1),
                fill(outputs * inputs, 2),
                fill(batch * outputs, 4),
            );
            let y: Vec<f32> = fill(batch * outputs, 5)
                .iter()
                .map(|v| v.max(0.0))
                .collect();
            let (mut dw, mut db, mut dx) = (
                vec![0.0f32; outputs * inputs],
                vec![0.0f32; outputs],
                vec![0.0f32; batch * inputs],
            );
            let mut dz = vec![0.0f32; batch * outputs];
            let mut ws = Workspace::new();
            group.throughput(Throughput::Elements((4 * batch * inputs * outputs) as u64));
            let shape = label(batch, inputs, outputs);
            let (xv, wv) = (
                MatRef::from_row_major(&x, batch, inputs),
                MatRef::from_row_major(&w, outputs, inputs),
            );
            let (yv, dyv) = (
                MatRef::from_row_major(&y, batch, outputs),
                MatRef::from_row_major(&dy, batch, outputs),
            );
            group.bench_function(BenchmarkId::new("fused_relu", &shape), |bench| {
                bench.iter(|| {
                    dense::backward(
                        Grads {
                            dw: MatMut::from_row_major(&mut dw, outputs, inputs),
                            db: Some(&mut db),
                            dx: Some(MatMut::from_row_major(&mut dx, batch, inputs)),
                        },
                        xv,
                        wv,
                        yv,
                        dyv,
                        act,
                        BackwardOptions {
                            accum: Accum::Replace,
                            l2: None,
                            par: PAR,
                        },
                        &mut ws,
                    )
                })
            });
            let two_gemms = |dz: &[f32], dw: &mut [f32], dx: &mut [f32]| {
                let dzv = MatRef::from_row_major(dz, batch, outputs);
                gemm(
                    MatMut::from_row_major(dw, outputs, inputs),
                    Accum::Replace,
                    dzv.t(),
                    xv,
                    1.0,
                    PAR,
                );
                gemm(
                    MatMut::from_row_major(dx, batch, inputs),
                    Accum::Replace,
                    dzv,
                    wv,
                    1.0,
                    PAR,
                );
            };
            group.bench_function(BenchmarkId::new("bare_gemms", &shape), |bench| {
                bench.iter(|| two_gemms(black_box(&dy), &mut dw, &mut dx))
            });
            group.bench_function(BenchmarkId::new("unfused_relu", &shape), |bench| {
                bench.iter(|| {
                    // Separate derivative pass, separate bias reduction, then the two GEMMs.
                    for ((dz, &y), &dy) in dz.iter_mut().zip(&y).zip(&dy) {
                        *dz = dy * act.derivative_from_output(y);
                    }
                    db.fill(0.0);
                    for row in dz.chunks_exact(outputs) {
                        for (db, &g) in db.iter_mut().zip(row) {
                            *db += g;
                        }
                    }
                    two_gemms(black_box(&dz), &mut dw, &mut dx);
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = forward, backward
}
criterion_main!(benches);

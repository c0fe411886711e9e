//! GEMM throughput: densekit vs matrixmultiply (and the naive loop at small
//! sizes) and, with the `openblas` feature, OpenBLAS; one thread and two,
//! for square shapes and the MLP's shapes, some with column-major operands.
//!
//! ```text
//! cargo bench --bench gemm                      # everything (~5 minutes)
//! cargo bench --bench gemm -- 'sgemm_1t'        # one group
//! cargo bench --bench gemm --features openblas  # OpenBLAS too (apt-get install libopenblas-dev)
//! python3 benches/summarize.py                  # table with GFLOP/s and ratios
//! ```
//!
//! Throughput is reported in elements = flops (2·m·n·k per product), so
//! criterion's "Gelem/s" reads as GFLOP/s. Shapes are written m×k×n, with
//! `-acol` / `-bcol` where A / B is column-major (the weight gradient
//! `dw = dzᵀ·x` reads A column-major; a layer stored `(in, out)` gives B
//! column-major).
//!
//! On two threads densekit runs as `gemm(…, Par::Threads(2))` and as the raw
//! `sgemm` called from the main thread on the global rayon pool
//! (`densekit_raw`, as a drop-in caller would); OpenBLAS on its own two
//! threads.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use densekit::gemm::{Accum, MatMut, Par, reference};

#[path = "common/gemm_cases.rs"]
mod gemm_cases;
use gemm_cases::*;

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

fn sgemm_one_thread(c: &mut Criterion) {
    #[cfg(feature = "openblas")]
    {
        openblas::threads(1);
        println!("OpenBLAS kernel: {}", openblas::describe());
    }
    let mut group = c.benchmark_group("sgemm_1t");
    for case in cases() {
        let mut o = operands::<f32>(&case);
        let label = case.label();
        group.throughput(Throughput::Elements(case.flops()));
        group.bench_function(BenchmarkId::new("densekit", &label), |bench| {
            bench.iter(|| densekit_run(black_box(&mut o), &case, Par::Seq))
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", &label), |bench| {
            bench.iter(|| raw_run(matrixmultiply::sgemm, black_box(&mut o), &case))
        });
        #[cfg(feature = "openblas")]
        group.bench_function(BenchmarkId::new("openblas", &label), |bench| {
            bench.iter(|| openblas::sgemm(black_box(&mut o), &case))
        });
        if case.m * case.n * case.k <= 128 * 128 * 128 {
            group.bench_function(BenchmarkId::new("naive", &label), |bench| {
                bench.iter(|| {
                    let (a, b) = views(&o.a, &o.b, &case);
                    reference::gemm(
                        MatMut::from_row_major(&mut o.c, case.m, case.n),
                        Accum::Replace,
                        a,
                        b,
                        1.0,
                    )
                })
            });
        }
    }
    group.finish();
}

fn sgemm_two_threads(c: &mut Criterion) {
    #[cfg(feature = "openblas")]
    openblas::threads(2);
    let mut group = c.benchmark_group("sgemm_2t");
    for case in cases() {
        let mut o = operands::<f32>(&case);
        let label = case.label();
        group.throughput(Throughput::Elements(case.flops()));
        group.bench_function(BenchmarkId::new("densekit", &label), |bench| {
            bench.iter(|| densekit_run(black_box(&mut o), &case, Par::Threads(2)))
        });
        if rayon::current_num_threads() == 2 {
            group.bench_function(BenchmarkId::new("densekit_raw", &label), |bench| {
                bench.iter(|| raw_run(densekit::sgemm, black_box(&mut o), &case))
            });
        }
        #[cfg(feature = "openblas")]
        group.bench_function(BenchmarkId::new("openblas", &label), |bench| {
            bench.iter(|| openblas::sgemm(black_box(&mut o), &case))
        });
    }
    group.finish();
}

fn dgemm_one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("dgemm_1t");
    for s in [256, 512, 1024] {
        let case = Case::new((s, s, s));
        let mut o = operands::<f64>(&case);
        group.throughput(Throughput::Elements(case.flops()));
        group.bench_function(BenchmarkId::new("densekit", case.label()), |bench| {
            bench.iter(|| densekit_run(black_box(&mut o), &case, Par::Seq))
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", case.label()), |bench| {
            bench.iter(|| {
                // SAFETY: row-major buffers of exactly the product's shapes.
                unsafe {
                    matrixmultiply::dgemm(
                        s,
                        s,
                        s,
                        1.0,
                        o.a.as_ptr(),
                        s as isize,
                        1,
                        o.b.as_ptr(),
                        s as isize,
                        1,
                        0.0,
                        o.c.as_mut_ptr(),
                        s as isize,
                        1,
                    )
                }
            })
        });
    }
    group.finish();
}

/// Subnormal-heavy inputs against normal ones at the same shape: whether the
/// FMA units slow down on subnormals (no flush-to-zero is set).
fn sgemm_subnormal(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm_subnormal");
    let case = Case::new((256, 256, 256));
    group.throughput(Throughput::Elements(case.flops()));
    for (name, scale) in [("normal", 1.0f32), ("subnormal", 1e-38)] {
        let mut o = operands::<f32>(&case);
        for v in &mut o.a {
            *v *= scale;
        }
        assert!(scale == 1.0 || o.a.iter().any(|v| v.is_subnormal()));
        group.bench_function(BenchmarkId::new(name, case.label()), |bench| {
            bench.iter(|| densekit_run(black_box(&mut o), &case, Par::Seq))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = sgemm_one_thread, sgemm_two_threads, dgemm_one_thread, sgemm_subnormal
}
criterion_main!(benches);

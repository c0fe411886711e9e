//! GEMM throughput: densekit vs matrixmultiply (and the naive loop at small
//! sizes), one thread and two, for square shapes and the MLP's shapes.
//!
//! ```text
//! cargo bench --bench gemm                 # everything (~4 minutes)
//! cargo bench --bench gemm -- 'sgemm_1t'   # one group
//! python3 benches/summarize.py             # table with GFLOP/s and ratios
//! ```
//!
//! Throughput is reported in elements = flops (2·m·n·k per product), so
//! criterion's "Gelem/s" reads as GFLOP/s. Shapes are written m×k×n.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use densekit::gemm::{Accum, Element, MatMut, MatRef, Par, gemm, reference};

/// The MLP shapes for batch size `b` (784-256-10 net, plus a 1024-wide layer):
/// forward, output layer, weight gradient, input gradient, wide layer, and
/// the output layer's input gradient.
fn mlp_shapes(b: usize) -> [(usize, usize, usize); 6] {
    [
        (b, 784, 256),
        (b, 256, 10),
        (784, b, 256),
        (b, 256, 784),
        (b, 1024, 1024),
        (b, 10, 256),
    ]
}

fn shapes() -> Vec<(usize, usize, usize)> {
    let mut shapes: Vec<_> = [64, 128, 256, 512, 1024, 2048].map(|s| (s, s, s)).to_vec();
    for b in [32, 128, 512] {
        shapes.extend(mlp_shapes(b));
    }
    shapes
}

struct Operands<T> {
    a: Vec<T>,
    b: Vec<T>,
    c: Vec<T>,
}

fn operands<T: Element>((m, k, n): (usize, usize, usize)) -> Operands<T> {
    let fill = |len: usize, seed: usize| -> Vec<T> {
        (0..len)
            .map(|i| T::from_f64(((i * 7 + seed) % 23) as f64 / 23.0 - 0.5))
            .collect()
    };
    Operands {
        a: fill(m * k, 1),
        b: fill(k * n, 2),
        c: vec![T::ZERO; m * n],
    }
}

fn densekit_run<T: Element>(o: &mut Operands<T>, (m, k, n): (usize, usize, usize), par: Par) {
    gemm(
        MatMut::from_row_major(&mut o.c, m, n),
        Accum::Replace,
        MatRef::from_row_major(&o.a, m, k),
        MatRef::from_row_major(&o.b, k, n),
        T::ONE,
        par,
    );
}

fn label((m, k, n): (usize, usize, usize)) -> String {
    format!("{m}x{k}x{n}")
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

fn sgemm_one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm_1t");
    for shape in shapes() {
        let (m, k, n) = shape;
        let mut o = operands::<f32>(shape);
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::new("densekit", label(shape)), |bench| {
            bench.iter(|| densekit_run(black_box(&mut o), shape, Par::Seq))
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", label(shape)), |bench| {
            bench.iter(|| {
                // SAFETY: row-major buffers of exactly the product's shapes.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        o.a.as_ptr(),
                        k as isize,
                        1,
                        o.b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        o.c.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            })
        });
        if m * n * k <= 128 * 128 * 128 {
            group.bench_function(BenchmarkId::new("naive", label(shape)), |bench| {
                bench.iter(|| {
                    reference::gemm(
                        MatMut::from_row_major(&mut o.c, m, n),
                        Accum::Replace,
                        MatRef::from_row_major(&o.a, m, k),
                        MatRef::from_row_major(&o.b, k, n),
                        1.0,
                    )
                })
            });
        }
    }
    group.finish();
}

fn sgemm_two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm_2t");
    for shape in shapes() {
        let (m, k, n) = shape;
        let mut o = operands::<f32>(shape);
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::new("densekit", label(shape)), |bench| {
            bench.iter(|| densekit_run(black_box(&mut o), shape, Par::Threads(2)))
        });
    }
    group.finish();
}

fn dgemm_one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("dgemm_1t");
    for s in [256, 512, 1024] {
        let shape = (s, s, s);
        let mut o = operands::<f64>(shape);
        group.throughput(Throughput::Elements((2 * s * s * s) as u64));
        group.bench_function(BenchmarkId::new("densekit", label(shape)), |bench| {
            bench.iter(|| densekit_run(black_box(&mut o), shape, Par::Seq))
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", label(shape)), |bench| {
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
    let shape = (256, 256, 256);
    group.throughput(Throughput::Elements(2 * 256 * 256 * 256));
    for (name, scale) in [("normal", 1.0f32), ("subnormal", 1e-38)] {
        let mut o = operands::<f32>(shape);
        for v in &mut o.a {
            *v *= scale;
        }
        assert!(scale == 1.0 || o.a.iter().any(|v| v.is_subnormal()));
        group.bench_function(BenchmarkId::new(name, label(shape)), |bench| {
            bench.iter(|| densekit_run(black_box(&mut o), shape, Par::Seq))
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

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
use densekit::gemm::{Accum, Element, MatMut, MatRef, Par, gemm, reference};

/// OpenBLAS through its C interface (the system library, linked only into
/// this bench when the `openblas` feature is on).
#[cfg(feature = "openblas")]
mod openblas {
    use std::ffi::{CStr, c_char, c_int};

    const ROW_MAJOR: c_int = 101;
    const NO_TRANS: c_int = 111;
    const TRANS: c_int = 112;

    #[link(name = "openblas")]
    unsafe extern "C" {
        fn cblas_sgemm(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        fn openblas_set_num_threads(threads: c_int);
        fn openblas_get_corename() -> *const c_char;
        fn openblas_get_config() -> *const c_char;
    }

    /// Sets OpenBLAS's thread count.
    pub fn threads(n: usize) {
        // SAFETY: a plain setter of the library's thread count.
        unsafe { openblas_set_num_threads(n as c_int) }
    }

    /// The kernel OpenBLAS picked for this CPU and its build.
    pub fn describe() -> String {
        // SAFETY: both return static NUL-terminated strings.
        unsafe {
            format!(
                "{} ({})",
                CStr::from_ptr(openblas_get_corename()).to_string_lossy(),
                CStr::from_ptr(openblas_get_config()).to_string_lossy()
            )
        }
    }

    /// `C = A·B`, all dense; A (B) column-major when `a_col` (`b_col`).
    pub fn sgemm(o: &mut super::Operands<f32>, case: &super::Case) {
        let super::Case {
            m,
            k,
            n,
            a_col,
            b_col,
        } = *case;
        let (ta, lda) = if a_col { (TRANS, m) } else { (NO_TRANS, k) };
        let (tb, ldb) = if b_col { (TRANS, k) } else { (NO_TRANS, n) };
        // SAFETY: the buffers hold exactly the operands of this shape.
        unsafe {
            cblas_sgemm(
                ROW_MAJOR,
                ta,
                tb,
                m as c_int,
                n as c_int,
                k as c_int,
                1.0,
                o.a.as_ptr(),
                lda as c_int,
                o.b.as_ptr(),
                ldb as c_int,
                0.0,
                o.c.as_mut_ptr(),
                n as c_int,
            )
        }
    }
}

/// One product: `m×k` A times `k×n` B, each row- or column-major.
#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    a_col: bool,
    b_col: bool,
}

impl Case {
    fn new((m, k, n): (usize, usize, usize)) -> Case {
        Case {
            m,
            k,
            n,
            a_col: false,
            b_col: false,
        }
    }

    fn label(&self) -> String {
        let Case {
            m,
            k,
            n,
            a_col,
            b_col,
        } = *self;
        let layout = match (a_col, b_col) {
            (false, false) => "",
            (true, false) => "-acol",
            (false, true) => "-bcol",
            (true, true) => "-acol-bcol",
        };
        format!("{m}x{k}x{n}{layout}")
    }

    fn flops(&self) -> u64 {
        (2 * self.m * self.n * self.k) as u64
    }

    /// Strides of A and B, as the raw entry points take them.
    fn strides(&self) -> [isize; 4] {
        let Case {
            m,
            k,
            n,
            a_col,
            b_col,
        } = *self;
        let (rsa, csa) = if a_col { (1, m) } else { (k, 1) };
        let (rsb, csb) = if b_col { (1, k) } else { (n, 1) };
        [rsa as isize, csa as isize, rsb as isize, csb as isize]
    }
}

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

/// Squares, the MLP shapes at batch 32, 128 and 512, and the weight
/// gradient (A column-major) and output-layer input gradient (B
/// column-major) in the layouts training meets them in.
fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = [64, 128, 256, 512, 1024, 2048]
        .map(|s| Case::new((s, s, s)))
        .to_vec();
    for b in [32, 128, 512] {
        cases.extend(mlp_shapes(b).map(Case::new));
    }
    for b in [32, 128, 512] {
        cases.push(Case {
            a_col: true,
            ..Case::new((784, b, 256))
        });
        cases.push(Case {
            b_col: true,
            ..Case::new((b, 10, 256))
        });
    }
    cases
}

struct Operands<T> {
    a: Vec<T>,
    b: Vec<T>,
    c: Vec<T>,
}

fn operands<T: Element>(case: &Case) -> Operands<T> {
    let Case { m, k, n, .. } = *case;
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

fn views<'a, T: Element>(a: &'a [T], b: &'a [T], case: &Case) -> (MatRef<'a, T>, MatRef<'a, T>) {
    let Case { m, k, n, .. } = *case;
    let [rsa, csa, rsb, csb] = case.strides();
    (
        MatRef::from_strides(a, m, k, rsa, csa),
        MatRef::from_strides(b, k, n, rsb, csb),
    )
}

fn densekit_run<T: Element>(o: &mut Operands<T>, case: &Case, par: Par) {
    let (a, b) = views(&o.a, &o.b, case);
    gemm(
        MatMut::from_row_major(&mut o.c, case.m, case.n),
        Accum::Replace,
        a,
        b,
        T::ONE,
        par,
    );
}

/// The signature `matrixmultiply::sgemm` and densekit's raw `sgemm` share.
type RawSgemm = unsafe fn(
    usize,
    usize,
    usize,
    f32,
    *const f32,
    isize,
    isize,
    *const f32,
    isize,
    isize,
    f32,
    *mut f32,
    isize,
    isize,
);

/// `C = A·B` through a raw entry point (densekit's runs on the rayon pool
/// of the calling thread).
fn raw_run(sgemm: RawSgemm, o: &mut Operands<f32>, case: &Case) {
    let Case { m, k, n, .. } = *case;
    let [rsa, csa, rsb, csb] = case.strides();
    // SAFETY: the buffers hold exactly the operands of this shape and strides.
    unsafe {
        sgemm(
            m,
            k,
            n,
            1.0,
            o.a.as_ptr(),
            rsa,
            csa,
            o.b.as_ptr(),
            rsb,
            csb,
            0.0,
            o.c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

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

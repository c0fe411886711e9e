//! Runs one GEMM shape in a loop, for a profiler to look at:
//! `cargo run --release --example gemm_loop -- M K N [acol|bcol] [seconds] [threads]`.
use densekit::gemm::{Accum, MatMut, MatRef, Par, gemm};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dim = |i: usize| -> usize {
        args.get(i)
            .and_then(|s| s.parse().ok())
            .expect("usage: M K N [acol|bcol|row] [seconds] [threads]")
    };
    let (m, k, n) = (dim(0), dim(1), dim(2));
    let layout = args.get(3).map_or("row", String::as_str);
    let seconds: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7 + 1) % 23) as f32 / 23.0 - 0.5)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 7 + 2) % 23) as f32 / 23.0 - 0.5)
        .collect();
    let mut c = vec![0.0f32; m * n];
    let av = if layout == "acol" {
        MatRef::from_strides(&a, m, k, 1, m as isize)
    } else {
        MatRef::from_row_major(&a, m, k)
    };
    let bv = if layout == "bcol" {
        MatRef::from_strides(&b, k, n, 1, k as isize)
    } else {
        MatRef::from_row_major(&b, k, n)
    };
    let par = if threads == 1 {
        Par::Seq
    } else {
        Par::Threads(threads)
    };
    let start = Instant::now();
    let mut reps = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for _ in 0..100 {
            gemm(
                MatMut::from_row_major(&mut c, m, n),
                Accum::Replace,
                av,
                bv,
                1.0,
                par,
            );
        }
        reps += 100;
    }
    let secs = start.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{m}x{k}x{n} {layout}: {:.2} µs, {:.1} GFLOP/s",
        secs * 1e6,
        2.0 * (m * k * n) as f64 / secs / 1e9
    );
}

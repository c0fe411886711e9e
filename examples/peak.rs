//! Measures this CPU's FMA peak in GFLOP/s, on one core and on every core:
//! the yardstick PERF.md divides GEMM throughput by.
//!
//! ```text
//! cargo run --release --example peak
//! ```
//!
//! Each thread runs 12 independent chains of 8-lane f32 FMAs (enough to hide
//! the FMA latency on two pipes) and counts 2 flops per lane per FMA.

#[cfg(target_arch = "x86_64")]
use std::time::Instant;

#[cfg(target_arch = "x86_64")]
const CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.5); CHAINS];
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    for _ in 0..iters {
        for x in &mut acc {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut lanes = [0.0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
    // SAFETY: `lanes` holds exactly 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}

/// GFLOP/s of `threads` threads each running the FMA loop for `iters` rounds.
#[cfg(target_arch = "x86_64")]
fn measure(threads: usize, iters: u64) -> f64 {
    let start = Instant::now();
    let sink: f32 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                // SAFETY: `main` checked AVX2 and FMA before calling `measure`.
                s.spawn(move || unsafe { fma_chains(iters) })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    (threads as u64 * iters * CHAINS as u64 * 8 * 2) as f64 / secs / 1e9
}

#[cfg(target_arch = "x86_64")]
fn main() {
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        eprintln!("peak: this CPU has no AVX2+FMA; nothing to measure");
        std::process::exit(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let iters = 200_000_000;
    measure(1, iters / 10); // warm up clocks
    for threads in [1, cores] {
        let mut runs: Vec<f64> = (0..5).map(|_| measure(threads, iters)).collect();
        runs.sort_by(f64::total_cmp);
        println!(
            "f32 FMA peak, {threads} thread(s): median {:.1} GFLOP/s (min {:.1}, max {:.1})",
            runs[2], runs[0], runs[4]
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("peak: only the x86-64 AVX2+FMA peak is measured so far");
}

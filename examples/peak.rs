//! Measures this CPU's FMA peak in GFLOP/s, on one core and on every core:
//! the yardstick PERF.md divides GEMM throughput by.
//!
//! ```text
//! cargo run --release --example peak
//! ```
//!
//! Each thread runs 12 independent chains of f32 FMAs (enough to hide the
//! FMA latency on two pipes) and counts 2 flops per lane per FMA: 8-lane
//! AVX2 chains, and 16-lane AVX-512 chains where the CPU has AVX-512F
//! (Zen 4 splits those into two 256-bit halves, Intel server cores may run
//! them at twice the rate). The peak is the faster of the two.

#[path = "../benches/common/peak.rs"]
mod peak;

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let runs = peak::peak_runs(threads, 1.0);
        if runs.is_empty() {
            eprintln!("peak: this CPU has no AVX2+FMA (or is not x86-64); nothing to measure");
            std::process::exit(1);
        }
        for r in &runs {
            println!(
                "f32 FMA, {}, {threads} thread(s): median {:.1} GFLOP/s (min {:.1}, max {:.1})",
                r.kind, r.median, r.min, r.max
            );
        }
        let best = runs.iter().map(|r| r.median).fold(0.0, f64::max);
        println!("f32 FMA peak, {threads} thread(s): {best:.1} GFLOP/s");
    }
}

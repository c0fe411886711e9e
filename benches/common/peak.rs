//! This CPU's f32 FMA peak: each thread runs 12 independent chains of FMAs
//! (enough to hide the FMA latency on two pipes) and counts 2 flops per lane
//! per FMA; 8-lane AVX2 chains, and 16-lane AVX-512 chains where the CPU has
//! AVX-512F (Zen 4 splits those into two 256-bit halves, Zen 5 and Intel
//! server cores may run them at twice the rate). The peak is the faster.
#![allow(dead_code)]

#[cfg(target_arch = "x86_64")]
use std::time::Instant;

#[cfg(target_arch = "x86_64")]
const CHAINS: usize = 12;

/// `fma_chains_*`: run the FMA chains `iters` rounds; returns a value that
/// depends on every chain so nothing is optimized away.
#[cfg(target_arch = "x86_64")]
macro_rules! fma_chains {
    ($name:ident, $feature:literal, $set1:ident, $fmadd:ident, $add:ident, $store:ident, $lanes:expr) => {
        #[target_feature(enable = $feature)]
        fn $name(iters: u64) -> f32 {
            use std::arch::x86_64::*;
            let mut acc = [$set1(0.5); CHAINS];
            let (a, b) = ($set1(0.999_999), $set1(1e-7));
            for _ in 0..iters {
                for x in &mut acc {
                    *x = $fmadd(*x, a, b);
                }
            }
            let mut lanes = [0.0f32; $lanes];
            let sum = acc.iter().fold($set1(0.0), |s, &x| $add(s, x));
            // SAFETY: `lanes` holds exactly one vector of f32.
            unsafe { $store(lanes.as_mut_ptr(), sum) };
            lanes.iter().sum()
        }
    };
}

#[cfg(target_arch = "x86_64")]
fma_chains!(
    fma_chains_avx2,
    "avx2,fma",
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_storeu_ps,
    8
);
#[cfg(target_arch = "x86_64")]
fma_chains!(
    fma_chains_avx512,
    "avx512f",
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_storeu_ps,
    16
);

/// One FMA loop: `iters` rounds of the chains (unsafe: needs its target features).
#[cfg(target_arch = "x86_64")]
type Chains = unsafe fn(u64) -> f32;

/// GFLOP/s of `threads` threads each running `chains` (with `lanes` lanes) for `iters` rounds.
#[cfg(target_arch = "x86_64")]
fn measure(chains: Chains, lanes: u64, threads: usize, iters: u64) -> f64 {
    let start = Instant::now();
    let sink: f32 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            // SAFETY: `kinds` checked the chains' target features before handing them out.
            .map(|_| s.spawn(move || unsafe { chains(iters) }))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(sink);
    (threads as u64 * iters * CHAINS as u64 * lanes * 2) as f64 / secs / 1e9
}

/// The FMA loops this CPU can run: name, loop, lanes.
#[cfg(target_arch = "x86_64")]
fn kinds() -> Vec<(&'static str, Chains, u64)> {
    let mut kinds: Vec<(&str, Chains, u64)> = Vec::new();
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        kinds.push(("AVX2 8-lane", fma_chains_avx2, 8));
    }
    if is_x86_feature_detected!("avx512f") {
        kinds.push(("AVX-512 16-lane", fma_chains_avx512, 16));
    }
    kinds
}

/// One measured FMA loop: its median and spread over 5 runs.
pub struct PeakRun {
    pub kind: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Every FMA loop on `threads` threads; `scale` = 1.0 runs each for about
/// a second on a 4 GHz core. Empty without AVX2+FMA (or off x86-64).
pub fn peak_runs(threads: usize, scale: f64) -> Vec<PeakRun> {
    #[cfg(target_arch = "x86_64")]
    {
        let iters = (200_000_000.0 * scale) as u64;
        let kinds = kinds();
        if let Some(&(_, chains, lanes)) = kinds.first() {
            measure(chains, lanes, 1, iters / 10); // warm up clocks
        }
        kinds
            .into_iter()
            .map(|(kind, chains, lanes)| {
                let rounds = iters * 8 / lanes;
                let mut runs: Vec<f64> = (0..5)
                    .map(|_| measure(chains, lanes, threads, rounds))
                    .collect();
                runs.sort_by(f64::total_cmp);
                PeakRun {
                    kind,
                    median: runs[2],
                    min: runs[0],
                    max: runs[4],
                }
            })
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (threads, scale);
        Vec::new()
    }
}

/// The f32 FMA peak on `threads` threads (the faster loop's median), if
/// this CPU has AVX2+FMA.
pub fn fma_peak(threads: usize, scale: f64) -> Option<f64> {
    peak_runs(threads, scale)
        .iter()
        .map(|r| r.median)
        .max_by(f64::total_cmp)
}

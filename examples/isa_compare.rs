//! Interleaved single-thread GFLOP/s of every available GEMM kernel and
//! matrixmultiply, for quick tuning on a noisy machine (criterion's
//! `benches/gemm.rs` is the reference measurement).
//!
//! ```text
//! cargo run --release --example isa_compare -- 1024x1024x1024 128x784x256
//! REPS=15 BEST=1 cargo run --release --example isa_compare -- 784x32x256
//! ```
//!
//! Shapes are m×k×n, row-major. Each round runs every contender once, so
//! drifts of the shared host hit them alike; `REPS` rounds (default 7), the
//! median of each (or the best, with `BEST` set, which filters out rounds
//! where the host stole the core).

use std::time::Instant;

use densekit::gemm::{Accum, Isa, MatMut, MatRef, Par, gemm_with_isa};

fn main() {
    let shapes: Vec<[usize; 3]> = std::env::args()
        .skip(1)
        .map(|s| {
            let dims: Vec<usize> = s
                .split('x')
                .map(|d| d.parse().expect("shape like 128x784x256"))
                .collect();
            dims.try_into().expect("shape like 128x784x256")
        })
        .collect();
    let reps: usize = std::env::var("REPS").map_or(7, |r| r.parse().expect("REPS is a number"));
    let best = std::env::var("BEST").is_ok();
    let isas: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|&isa| isa != Isa::Scalar)
        .collect();
    for [m, k, n] in shapes {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 + 1) % 23) as f32 / 23.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7 + 2) % 23) as f32 / 23.0 - 0.5)
            .collect();
        let mut c = vec![0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let iters = ((2e9 / flops) as usize).max(1);
        let mut rates = vec![Vec::new(); isas.len() + 1];
        for _ in 0..reps {
            for (slot, rate) in rates.iter_mut().enumerate() {
                let start = Instant::now();
                for _ in 0..iters {
                    if let Some(&isa) = isas.get(slot) {
                        gemm_with_isa(
                            isa,
                            MatMut::from_row_major(&mut c, m, n),
                            Accum::Replace,
                            MatRef::from_row_major(&a, m, k),
                            MatRef::from_row_major(&b, k, n),
                            1.0,
                            Par::Seq,
                        )
                        .expect("available ISA");
                    } else {
                        // SAFETY: the slices hold m×k, k×n and m×n row-major values.
                        unsafe {
                            matrixmultiply::sgemm(
                                m,
                                k,
                                n,
                                1.0,
                                a.as_ptr(),
                                k as isize,
                                1,
                                b.as_ptr(),
                                n as isize,
                                1,
                                0.0,
                                c.as_mut_ptr(),
                                n as isize,
                                1,
                            )
                        };
                    }
                }
                rate.push(flops * iters as f64 / start.elapsed().as_secs_f64() / 1e9);
            }
        }
        let pick = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            if best { v[v.len() - 1] } else { v[v.len() / 2] }
        };
        let rates: Vec<f64> = rates.into_iter().map(pick).collect();
        let mm = rates[isas.len()];
        let cols: Vec<String> = isas
            .iter()
            .zip(&rates)
            .map(|(isa, r)| format!("{isa} {r:6.1} ({:.2}×)", r / mm))
            .collect();
        println!(
            "{m}×{k}×{n}: {}  matrixmultiply {mm:6.1} GFLOP/s",
            cols.join("  ")
        );
    }
}

//! What a fork-join costs on this machine after the calling thread has
//! worked alone for a while (a serial gap), with the pool's other thread
//! asleep (rayon's default) and with it spinning, as inside
//! [`Par::install`](densekit::Par::install). On a virtual machine a sleeping
//! thread can take tens of microseconds to wake, which is why the trainer's
//! loop runs inside `Par::install`.
//!
//! ```text
//! cargo run --release --example fork_join
//! ```

use std::time::Instant;

use densekit::Par;
use rayon::prelude::*;

/// Busy-waits `us` microseconds (work, as far as the scheduler can tell).
fn spin(us: f64) {
    let start = Instant::now();
    while start.elapsed().as_secs_f64() * 1e6 < us {}
}

/// Median and 90th percentile of the fork-join overhead after each serial gap.
fn measure() {
    const WORK_US: f64 = 30.0;
    for gap in [0.0, 5.0, 20.0, 50.0, 200.0] {
        let mut overhead: Vec<f64> = (0..2000)
            .map(|_| {
                spin(gap);
                let start = Instant::now();
                (0..2).into_par_iter().for_each(|_| spin(WORK_US));
                start.elapsed().as_secs_f64() * 1e6 - WORK_US
            })
            .collect();
        overhead.sort_by(f64::total_cmp);
        println!(
            "  after {gap:5.0} µs alone: median {:5.1} µs, p90 {:5.1} µs",
            overhead[overhead.len() / 2],
            overhead[overhead.len() * 9 / 10]
        );
    }
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a pool");
    println!("fork-join of two 30 µs tasks on 2 threads, other thread asleep when idle:");
    pool.install(measure);
    println!("the same inside Par::install (the other thread spins for work):");
    Par::Threads(2).install(measure);
}

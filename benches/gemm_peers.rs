//! densekit against matrixmultiply and (with the `openblas` feature)
//! OpenBLAS on the 27 shapes of the OpenBLAS comparison, one thread and
//! two, every peer interleaved sample by sample in one process, so that a
//! noisy host slows them alike. Prints Markdown tables with the CPU, its
//! measured FMA peak, the date and the command: PERF.md's GEMM tables are
//! this output.
//!
//! ```text
//! cargo bench --bench gemm_peers --features openblas            # both tables (~3 minutes)
//! cargo bench --bench gemm_peers --features openblas -- 1t 784x  # filters: thread count, shape prefix
//! ```
//!
//! Each sample runs one peer long enough to take at least 5 ms; 11 rounds
//! (set `PEERS_ROUNDS`) visit every peer once each, in a rotating order;
//! the table gives medians. On two threads densekit is its raw `sgemm`
//! called from the main thread, outside any rayon pool, as a drop-in caller
//! would call it; OpenBLAS runs on its own two threads. Each sample starts
//! with an untimed call; two-thread samples are 3 ms apart, and OpenBLAS's
//! idle workers spin for about a millisecond after a call instead of 75 ms
//! (`OPENBLAS_THREAD_TIMEOUT=22`, set by the bench), so that no peer's
//! waiting threads take a core from the next peer's sample.

use std::hint::black_box;
use std::time::Instant;

use densekit::gemm::Par;

#[path = "common/gemm_cases.rs"]
mod gemm_cases;
#[path = "common/peak.rs"]
mod peak;
use gemm_cases::*;

/// How a contender computes `C = A·B` for a case.
type Run = Box<dyn Fn(&mut Operands<f32>, &Case)>;

/// One contender: a name and its run.
struct Peer {
    name: &'static str,
    run: Run,
}

fn peers(threads: usize) -> Vec<Peer> {
    let mut peers = vec![Peer {
        name: "densekit",
        run: if threads == 1 {
            Box::new(|o, c| densekit_run(o, c, Par::Seq))
        } else {
            Box::new(|o, c| raw_run(densekit::sgemm, o, c))
        },
    }];
    peers.push(Peer {
        name: "matrixmultiply",
        run: Box::new(|o, c| raw_run(matrixmultiply::sgemm, o, c)),
    });
    #[cfg(feature = "openblas")]
    peers.push(Peer {
        name: "OpenBLAS",
        run: Box::new(openblas::sgemm),
    });
    peers
}

/// Repetitions that make one sample of `run` last at least 5 ms.
fn calibrate(run: &dyn Fn(&mut Operands<f32>, &Case), o: &mut Operands<f32>, case: &Case) -> u32 {
    let mut reps = 1u32;
    loop {
        let start = Instant::now();
        for _ in 0..reps {
            run(black_box(o), case);
        }
        if start.elapsed().as_secs_f64() >= 5e-3 || reps >= 1 << 20 {
            return reps;
        }
        reps *= 2;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// OpenBLAS's idle workers wait for the next call spinning for 2^n cycles,
/// n = 28 by default (about 75 ms): long enough to take a core from the
/// peer sampled after it, which then runs on one core while it measures
/// two. Two-thread samples set n = 22 (about a millisecond: still far
/// longer than the gap between the calls of one sample, so OpenBLAS keeps
/// its threads awake within a sample) and leave [`SETTLE`] between samples.
#[cfg(feature = "openblas")]
const OPENBLAS_THREAD_TIMEOUT: &str = "22";

/// The pause between two-thread samples: every peer's idle threads have
/// gone to sleep by its end.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(3);

/// Median GFLOP/s of every peer on one case, sampled round-robin; each
/// sample starts with an untimed call, so its threads are awake as they
/// are in a loop of calls.
fn measure(peers: &[Peer], case: &Case, rounds: usize, threads: usize) -> Vec<f64> {
    let mut o = operands::<f32>(case);
    let reps: Vec<u32> = peers
        .iter()
        .map(|p| calibrate(&*p.run, &mut o, case))
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); peers.len()];
    for round in 0..rounds {
        for i in 0..peers.len() {
            let p = (i + round) % peers.len();
            if threads > 1 {
                std::thread::sleep(SETTLE);
            }
            (peers[p].run)(black_box(&mut o), case);
            let start = Instant::now();
            for _ in 0..reps[p] {
                (peers[p].run)(black_box(&mut o), case);
            }
            let secs = start.elapsed().as_secs_f64() / reps[p] as f64;
            samples[p].push(case.flops() as f64 / secs / 1e9);
        }
    }
    samples.into_iter().map(median).collect()
}

fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn table(threads: usize, filters: &[String], rounds: usize) {
    #[cfg(feature = "openblas")]
    openblas::threads(threads);
    let peers = peers(threads);
    let peak = peak::fma_peak(threads, 0.5);
    let cases: Vec<Case> = peer_cases()
        .into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.label().starts_with(f.as_str())))
        .collect();
    if cases.is_empty() {
        return;
    }
    println!(
        "\n### {threads} thread{}: {}, FMA peak {} GFLOP/s, {}\n",
        if threads == 1 { "" } else { "s" },
        cpu_model(),
        peak.map_or("unmeasured".into(), |p| format!("{p:.0}")),
        today()
    );
    let names: Vec<&str> = peers.iter().map(|p| p.name).collect();
    print!("| shape m×k×n | {} GFLOP/s | % of peak |", names[0]);
    for name in &names[1..] {
        print!(" {name} | densekit ÷ {name} |");
    }
    println!();
    println!("|---|---:|---:|{}", "---:|---:|".repeat(names.len() - 1));
    let mut ratios = vec![Vec::new(); names.len()];
    for case in &cases {
        let g = measure(&peers, case, rounds, threads);
        let pct = peak.map_or(String::from("–"), |p| format!("{:.0}%", 100.0 * g[0] / p));
        print!("| {} | {:.0} | {pct} |", case.label(), g[0]);
        for (i, gi) in g.iter().enumerate().skip(1) {
            ratios[i].push(g[0] / gi);
            print!(" {gi:.0} | {:.2} |", g[0] / gi);
        }
        println!();
    }
    print!("| geomean ({} shapes) | | |", cases.len());
    for r in &ratios[1..] {
        print!(" | **{:.2}** |", geomean(r));
    }
    println!();
    print!("| lowest | | |");
    for r in &ratios[1..] {
        print!(
            " | {:.2} |",
            r.iter().copied().fold(f64::INFINITY, f64::min)
        );
    }
    println!();
}

fn main() {
    // OpenBLAS reads its spin time once, as it loads: run again with it set.
    #[cfg(feature = "openblas")]
    if std::env::var_os("OPENBLAS_THREAD_TIMEOUT").is_none() {
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(std::env::args_os().skip(1))
            .env("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
            .status()
            .expect("the bench runs itself again");
        std::process::exit(status.code().unwrap_or(1));
    }
    // cargo passes `--bench`; everything else is a filter.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (threads, shapes): (Vec<String>, Vec<String>) =
        args.into_iter().partition(|a| a == "1t" || a == "2t");
    let rounds = std::env::var("PEERS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(11);
    println!(
        "Command: `cargo bench --bench gemm_peers --features openblas`, median of {rounds} interleaved rounds."
    );
    #[cfg(feature = "openblas")]
    println!("OpenBLAS kernel: {}", openblas::describe());
    #[cfg(not(feature = "openblas"))]
    println!("OpenBLAS: not measured (build with `--features openblas`).");
    println!(
        "densekit kernel: {}",
        densekit::gemm::Isa::selected().name()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for t in [1, 2.min(cores)] {
        if threads.is_empty() || threads.contains(&format!("{t}t")) {
            table(t, &shapes, rounds);
        }
    }
}

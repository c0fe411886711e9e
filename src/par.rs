//! Per-call thread control.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// How many threads a kernel call may use.
///
/// Whatever the choice, results are bitwise identical: work is split over
/// output tiles only, never over a reduction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Par {
    /// Run on the calling thread only; no rayon calls are made.
    Seq,
    /// Run on a rayon pool of exactly this many threads (created on first
    /// use and cached for the life of the process). `Threads(1)` is `Seq`.
    Threads(usize),
    /// Run on the rayon pool the call is made from (the global pool, or the
    /// one whose `install` encloses the call), using all its threads when the
    /// problem is large enough to profit.
    #[default]
    Auto,
}

/// Below this many multiply-adds a call runs on the calling thread whatever
/// `Par` says: waking a pool costs more than it saves (2^20 is ≈ 10 µs on one core).
pub(crate) const PAR_MIN_WORK: usize = 1 << 20;

impl Par {
    /// Runs `f` with the thread budget this choice gives, inside the right
    /// pool; calls of fewer than [`PAR_MIN_WORK`] multiply-adds (`work`) stay
    /// on the calling thread with a budget of 1.
    ///
    /// # Panics
    /// On `Par::Threads(0)`.
    #[track_caller]
    pub(crate) fn run<R: Send>(self, work: usize, f: impl FnOnce(usize) -> R + Send) -> R {
        match self {
            Par::Threads(0) => panic!("Par::Threads(0): a call needs at least one thread"),
            _ if work < PAR_MIN_WORK => f(1),
            Par::Seq | Par::Threads(1) => f(1),
            Par::Threads(n) => pool(n).install(|| f(n)),
            Par::Auto => f(rayon::current_num_threads()),
        }
    }
}

impl Par {
    /// Runs `f` on a thread of the pool this choice uses (the global pool
    /// for `Auto`), so the kernel calls inside it start their parallel work
    /// where they are instead of handing it to the pool and waiting for it
    /// each time; `Seq` and `Threads(1)` run `f` on the calling thread.
    /// Worth it around a loop of many small kernel calls, such as training
    /// steps ([`train`](crate::train::train) does it).
    ///
    /// ```
    /// use densekit::gemm::{gemm, Accum, MatMut, MatRef, Par};
    /// let (a, b) = (vec![1.0f32; 64 * 64], vec![0.5f32; 64 * 64]);
    /// let mut c = vec![0.0f32; 64 * 64];
    /// let par = Par::Threads(2);
    /// par.install(|| {
    ///     for _ in 0..3 {
    ///         let (a, b) = (MatRef::from_row_major(&a, 64, 64), MatRef::from_row_major(&b, 64, 64));
    ///         gemm(MatMut::from_row_major(&mut c, 64, 64), Accum::Add, a, b, 1.0, par);
    ///     }
    /// });
    /// assert_eq!(c[0], 3.0 * 64.0 * 0.5);
    /// ```
    ///
    /// # Panics
    /// On `Par::Threads(0)`.
    #[track_caller]
    pub fn install<R: Send>(self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Par::Threads(0) => panic!("Par::Threads(0): a call needs at least one thread"),
            Par::Seq | Par::Threads(1) => f(),
            Par::Threads(n) => pool(n).install(|| with_ready_helpers(f)),
            Par::Auto => rayon::scope(|_| with_ready_helpers(f)),
        }
    }
}

/// Runs `f` on this pool thread while the pool's other threads wait for its
/// parallel work by spinning instead of sleeping (OpenMP's active wait
/// policy). A sleeping thread takes 20–40 µs to wake on a virtual machine,
/// about as long as a 784→256 forward pass at batch 32; a spinning one picks
/// the work up in about a microsecond.
fn with_ready_helpers<R>(f: impl FnOnce() -> R) -> R {
    /// Sets the flag when `f` returns or unwinds, so the helpers always stop.
    struct Finish(Arc<AtomicBool>);
    impl Drop for Finish {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let Some(caller) = rayon::current_thread_index() else {
        return f();
    };
    if rayon::current_num_threads() < 2 {
        return f();
    }
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    // One helper per other thread; the caller's own copy returns at once, so
    // the caller never ends up spinning underneath `f`'s pending work.
    rayon::spawn_broadcast(move |ctx| {
        if ctx.index() != caller {
            while !flag.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
        }
    });
    let _finish = Finish(done);
    f()
}

/// Pools created for `Par::Threads(n)`, by thread count.
type PoolCache = Mutex<Vec<(usize, Arc<ThreadPool>)>>;

/// The cached pool with `n` threads.
fn pool(n: usize) -> Arc<ThreadPool> {
    static POOLS: OnceLock<PoolCache> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(threads, _)| *threads == n) {
        return Arc::clone(pool);
    }
    let pool = Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(move |i| format!("densekit-{n}t-{i}"))
            .build()
            .unwrap_or_else(|e| panic!("could not start a pool of {n} threads: {e}")),
    );
    pools.push((n, Arc::clone(&pool)));
    pool
}

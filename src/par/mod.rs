//! Per-call thread control.

mod helpers;
mod parts;

use std::sync::{Arc, Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use helpers::{wake_helpers, with_ready_helpers};
use parts::in_parts;

/// How many threads a kernel call may use.
///
/// Whatever the choice, results are bitwise identical: work is split over
/// output tiles only, never over a reduction.
///
/// ```
/// use densekit::gemm::{gemm, Accum, MatMut, MatRef, Par};
/// let a = vec![0.5f32; 64 * 64];
/// let (mut seq, mut two) = (vec![0.0f32; 64 * 64], vec![0.0f32; 64 * 64]);
/// for (c, par) in [(&mut seq, Par::Seq), (&mut two, Par::Threads(2))] {
///     gemm(MatMut::from_row_major(c, 64, 64), Accum::Replace,
///         MatRef::from_row_major(&a, 64, 64), MatRef::from_row_major(&a, 64, 64), 1.0, par);
/// }
/// assert_eq!(seq, two); // bitwise, whatever the thread count
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Par {
    /// Run on the calling thread only; no rayon calls are made.
    Seq,
    /// Run on a rayon pool of this many threads, at most as many as the
    /// process may use at once ([`Par::available_cores`]: more threads than
    /// cores only take turns on them, and every fork-join then waits for a
    /// descheduled thread), created on first use and cached for the life of
    /// the process. `Threads(1)` is `Seq`.
    Threads(usize),
    /// Run on the rayon pool the call is made from (the global pool, or the
    /// one whose `install` encloses the call), using all its threads when the
    /// problem is large enough to profit.
    #[default]
    Auto,
}

/// Below this many multiply-adds a call runs on the calling thread whatever
/// `Par` says, inside a [`Par::install`] region whose helpers wait ready:
/// handing work over costs more than it saves (2^20 is about 10 µs of one
/// core's work).
const PAR_MIN_WORK: usize = 1 << 20;

/// The same outside such a region, where the pool's threads may be asleep:
/// waking them, and the caller after, takes tens of µs on a VM, about as
/// long as 2^22 multiply-adds on one core (`docs/design.md`).
const PAR_MIN_WORK_COLD: usize = 1 << 22;

/// The same for a call from outside any pool that follows another call of
/// at least this size within [`WARM_WINDOW`]: a caller running such calls
/// back to back (a raw `sgemm` in a loop) finds the pool's threads still
/// awake after the first, and a 128³ product is then worth splitting.
/// Handing the call to the pool and waking the caller after still cost
/// several µs a call, hence more than [`PAR_MIN_WORK`].
const PAR_MIN_WORK_WARM: usize = 1 << 21;

/// How long after a call the pool's threads are taken to be awake: rayon's
/// threads look for work for a few tens of µs before they sleep (a
/// fork-join after 20 µs alone cost 1.3 µs here, after 50 µs 40 µs: see
/// `examples/fork_join.rs`).
const WARM_WINDOW: std::time::Duration = std::time::Duration::from_micros(20);

/// When the last call from outside any pool of at least
/// [`PAR_MIN_WORK_WARM`] multiply-adds ended, in ns after [`epoch`].
static LAST_OUTSIDE_CALL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The process's time origin for [`LAST_OUTSIDE_CALL`].
fn epoch() -> std::time::Instant {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// Runs `f`, a call from outside any pool of `work` multiply-adds: `f(true)`
/// to split it over the pool, `f(false)` to run it on this thread. Split
/// from [`PAR_MIN_WORK_COLD`] on, or from [`PAR_MIN_WORK_WARM`] when the
/// previous such call ended within [`WARM_WINDOW`].
fn outside_call<R>(work: usize, f: impl FnOnce(bool) -> R) -> R {
    let clock = || epoch().elapsed().as_nanos() as u64;
    split_after(&LAST_OUTSIDE_CALL, clock, work, f)
}

/// [`outside_call`], with its record of the last call (ns on `clock`; 0 for
/// none) given.
fn split_after<R>(
    last_call: &std::sync::atomic::AtomicU64,
    clock: impl Fn() -> u64,
    work: usize,
    f: impl FnOnce(bool) -> R,
) -> R {
    use std::sync::atomic::Ordering;
    if work < PAR_MIN_WORK_WARM {
        return f(false);
    }
    let last = last_call.load(Ordering::Relaxed);
    let warm = last != 0 && clock().saturating_sub(last) < WARM_WINDOW.as_nanos() as u64;
    let out = f(warm || work >= PAR_MIN_WORK_COLD);
    last_call.store(clock().max(1), Ordering::Relaxed);
    out
}

/// The multiply-adds a call needs before it is split over threads on this
/// thread now: [`PAR_MIN_WORK`] inside a ready region,
/// [`PAR_MIN_WORK_WARM`] inside a call from outside any pool that
/// [`outside_call`] split, else [`PAR_MIN_WORK_COLD`].
pub(crate) fn min_parallel_work() -> usize {
    if helpers::in_region() {
        PAR_MIN_WORK
    } else if SPLIT_FROM_OUTSIDE.get() {
        PAR_MIN_WORK_WARM
    } else {
        PAR_MIN_WORK_COLD
    }
}

thread_local! {
    /// Set on the pool thread running a call that [`outside_call`] split:
    /// the kernels it calls split at its threshold too.
    static SPLIT_FROM_OUTSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on this pool thread as a call split from outside the pool.
fn as_split_from_outside<R>(f: impl FnOnce() -> R) -> R {
    /// Clears the flag when `f` returns or unwinds.
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SPLIT_FROM_OUTSIDE.set(self.0);
        }
    }
    let _reset = Reset(SPLIT_FROM_OUTSIDE.replace(true));
    f()
}

/// How much of a call one thread computes (see [`Par::run_in_parts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Share {
    /// All of it, with a budget of this many threads of the current pool.
    Whole(usize),
    /// Part `index` of `parts`, on this thread alone.
    Part { index: usize, parts: usize },
}

/// Runs `f`, split from outside any pool, on a thread of `pool` (the global
/// pool for `None`): its fork-joins then start where they are instead of
/// each one waking the pool and blocking the caller until the pool is done.
fn on_pool<R: Send>(pool: Option<&ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(pool) => pool.install(|| as_split_from_outside(f)),
        None => rayon::scope(|_| as_split_from_outside(f)),
    }
}

impl Par {
    /// Runs `f` with the thread budget this choice gives, inside the right
    /// pool; calls of fewer than [`min_parallel_work`] multiply-adds
    /// (`work`) stay on the calling thread with a budget of 1 (from outside
    /// any pool, see [`outside_call`]).
    ///
    /// # Panics
    /// On `Par::Threads(0)`.
    #[track_caller]
    pub(crate) fn run<R: Send>(self, work: usize, f: impl FnOnce(usize) -> R + Send) -> R {
        self.run_with(work, f, |pool, threads, f| on_pool(pool, || f(threads)))
    }

    /// [`Par::run`] for a call made of independent parts: `f(Share::Whole(n))`
    /// runs it with a budget of `n` threads of the current pool, and
    /// `f(Share::Part { index, parts })` computes part `index` of `parts` on
    /// its thread alone. A call from outside any pool that is split, and
    /// does less than `parts_below` multiply-adds, runs as one part per
    /// thread, the first on the calling thread (see [`in_parts`]); every
    /// other call as [`Par::run`] would run it.
    ///
    /// # Panics
    /// On `Par::Threads(0)`, and if a part panics.
    #[track_caller]
    pub(crate) fn run_in_parts(self, work: usize, parts_below: usize, f: impl Fn(Share) + Sync) {
        let whole = |threads| f(Share::Whole(threads));
        self.run_with(work, whole, |pool, threads, whole| {
            match work < parts_below {
                true => in_parts(pool, threads, &f),
                false => on_pool(pool, || whole(threads)),
            }
        })
    }

    /// The routing of [`Par::run`]: `f` gets the thread budget, except for
    /// a call from outside any pool that is split over `n` threads, which
    /// `outside(pool, n, f)` runs (`pool`: `None` for the global pool).
    #[track_caller]
    fn run_with<R: Send, F: FnOnce(usize) -> R + Send>(
        self,
        work: usize,
        f: F,
        outside: impl FnOnce(Option<&ThreadPool>, usize, F) -> R,
    ) -> R {
        let is_outside = rayon::current_thread_index().is_none();
        match self {
            Par::Threads(0) => panic!("Par::Threads(0): a call needs at least one thread"),
            // Calls from outside any pool decide in `outside_call`.
            _ if work < min_parallel_work() && !(is_outside && work >= PAR_MIN_WORK_WARM) => f(1),
            Par::Seq | Par::Threads(1) => f(1),
            Par::Threads(n) => match capped(n) {
                1 => f(1),
                n if is_outside => outside_call(work, |split| match split {
                    true => outside(Some(&started_pool(n)), n, f),
                    false => f(1),
                }),
                n => started_pool(n).install(|| match wake_helpers() {
                    true => f(n),
                    false => f(1),
                }),
            },
            Par::Auto if is_outside => match rayon::current_num_threads() {
                1 => f(1),
                n => outside_call(work, |split| match split {
                    true => outside(None, n, f),
                    false => f(1),
                }),
            },
            Par::Auto => match wake_helpers() {
                true => f(rayon::current_num_threads()),
                false => f(1),
            },
        }
    }

    /// The threads this choice runs on: `Seq` 1, `Threads(n)` `n` capped at
    /// [`Par::available_cores`], `Auto` the size of the current rayon pool.
    ///
    /// ```
    /// use densekit::Par;
    /// assert_eq!(Par::Seq.threads(), 1);
    /// assert_eq!(Par::Threads(1_000_000).threads(), Par::available_cores());
    /// ```
    pub fn threads(self) -> usize {
        match self {
            Par::Seq => 1,
            Par::Threads(n) => capped(n.max(1)),
            Par::Auto => rayon::current_num_threads(),
        }
    }

    /// How many threads this process can run at once: the CPUs its
    /// affinity mask and cgroup quota allow (`std::thread::available_parallelism`),
    /// read once.
    ///
    /// ```
    /// use densekit::Par;
    /// assert!(Par::available_cores() >= 1);
    /// ```
    pub fn available_cores() -> usize {
        static CORES: OnceLock<usize> = OnceLock::new();
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Starts the pool this choice runs on, so that a failure to start its
    /// threads (the OS refusing them) is an error here rather than a panic
    /// in the first kernel call. For `Auto` that is rayon's global pool,
    /// started with its defaults if it is not running yet (as its first use
    /// would start it: configure it before, with
    /// `rayon::ThreadPoolBuilder::build_global`, to have other settings).
    ///
    /// ```
    /// use densekit::Par;
    /// assert!(Par::Threads(2).ready().is_ok());
    /// assert!(Par::Threads(0).ready().is_err());
    /// ```
    ///
    /// # Errors
    /// A [`PoolError`] for `Threads(0)` or if the threads cannot be started.
    pub fn ready(self) -> Result<(), PoolError> {
        match self {
            Par::Threads(0) => Err(PoolError {
                threads: 0,
                message: "a call needs at least one thread".into(),
            }),
            Par::Threads(n) if capped(n) > 1 => pool(capped(n)).map(drop),
            Par::Auto => global_pool_ready(),
            _ => Ok(()),
        }
    }
}

/// A thread pool that could not be started (see [`Par::ready`]).
///
/// ```
/// use densekit::Par;
/// let err = Par::Threads(0).ready().unwrap_err();
/// assert_eq!(err.threads, 0);
/// assert!(err.to_string().starts_with("could not start a pool of 0 threads"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolError {
    /// The threads asked for.
    pub threads: usize,
    /// Why they could not be had.
    pub message: String,
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "could not start a pool of {} threads: {}",
            self.threads, self.message
        )
    }
}

impl std::error::Error for PoolError {}

/// Starts rayon's global pool if it is not running yet; the outcome of the
/// first attempt is kept (rayon tries only once).
fn global_pool_ready() -> Result<(), PoolError> {
    static READY: OnceLock<Result<(), PoolError>> = OnceLock::new();
    READY
        .get_or_init(|| match ThreadPoolBuilder::new().build_global() {
            // An error with an I/O source is threads that could not be
            // started; without, the pool was running already.
            Err(e) if std::error::Error::source(&e).is_some() => Err(PoolError {
                threads: Par::available_cores(),
                message: e.to_string(),
            }),
            _ => Ok(()),
        })
        .clone()
}

/// `n` threads, capped at the cores this process can use.
fn capped(n: usize) -> usize {
    n.min(Par::available_cores())
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
    /// On `Par::Threads(0)`, or if the pool's threads cannot be started
    /// (call [`Par::ready`] first to get that as an error).
    #[track_caller]
    pub fn install<R: Send>(self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Par::Threads(0) => panic!("Par::Threads(0): a call needs at least one thread"),
            Par::Seq | Par::Threads(1) => f(),
            Par::Threads(n) => match capped(n) {
                1 => f(),
                n => started_pool(n).install(|| with_ready_helpers(f)),
            },
            Par::Auto => rayon::scope(|_| with_ready_helpers(f)),
        }
    }
}

/// Pools created for `Par::Threads(n)`, by thread count.
type PoolCache = Mutex<Vec<(usize, Arc<ThreadPool>)>>;

/// The cached pool with `n` threads, started on first use.
fn pool(n: usize) -> Result<Arc<ThreadPool>, PoolError> {
    static POOLS: OnceLock<PoolCache> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, pool)) = pools.iter().find(|(threads, _)| *threads == n) {
        return Ok(Arc::clone(pool));
    }
    let pool = ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(move |i| format!("densekit-{n}t-{i}"))
        .build()
        .map_err(|e| PoolError {
            threads: n,
            message: e.to_string(),
        })?;
    let pool = Arc::new(pool);
    pools.push((n, Arc::clone(&pool)));
    Ok(pool)
}

/// [`pool`], for the kernel calls, which have no error path: panics naming
/// the failure ([`Par::ready`] reports it as an error instead).
#[track_caller]
fn started_pool(n: usize) -> Arc<ThreadPool> {
    pool(n).unwrap_or_else(|e| panic!("{e}"))
}

/// How many times the spinning helpers of a [`Par::install`] region were
/// started (again after leaving a contended core, too): for the allocation
/// test, which allows the small job each start boxes. Not part of the API.
#[doc(hidden)]
pub fn helper_starts() -> usize {
    helpers::starts()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_call_from_outside_splits_when_it_follows_another_closely() {
        let last = AtomicU64::new(0);
        let now = Cell::new(1_000_000u64);
        let split = |work: usize| split_after(&last, || now.get(), work, |split| split);
        let window = WARM_WINDOW.as_nanos() as u64;
        // Nothing ran before: the pool may be asleep.
        assert!(!split(PAR_MIN_WORK_WARM));
        now.set(now.get() + window / 2);
        assert!(split(PAR_MIN_WORK_WARM));
        // Too small to split either way, and not counted as a call.
        assert!(!split(PAR_MIN_WORK_WARM - 1));
        now.set(now.get() + window + 1);
        assert!(!split(PAR_MIN_WORK_WARM), "the pool has gone back to sleep");
        // Large enough to pay for waking the pool.
        now.set(now.get() + 10 * window);
        assert!(split(PAR_MIN_WORK_COLD));
    }
}

//! Per-call thread control.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// How many threads a kernel call may use.
///
/// Whatever the choice, results are bitwise identical: work is split over
/// output tiles only, never over a reduction.
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
            Par::Threads(n) => {
                let n = capped(n);
                match n {
                    1 => f(1),
                    _ => started_pool(n).install(|| {
                        wake_helpers();
                        f(n)
                    }),
                }
            }
            Par::Auto => {
                wake_helpers();
                f(rayon::current_num_threads())
            }
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
    pub fn available_cores() -> usize {
        static CORES: OnceLock<usize> = OnceLock::new();
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Starts the pool this choice runs on, if it has one, so that a
    /// failure to start its threads (the OS refusing them) is an error here
    /// rather than a panic in the first kernel call.
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
            _ => Ok(()),
        }
    }
}

/// A thread pool that could not be started (see [`Par::ready`]).
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

/// How long a helper spins without finding work before it parks: longer
/// than the gaps between the kernel calls of a training step (so helpers
/// stay ready through a step), short enough that an idle phase (evaluation
/// on one thread, I/O) soon gives the cores back. OpenMP's default spin
/// before sleeping is of the same order.
const SPIN_IDLE: Duration = Duration::from_millis(1);

/// A gap this long between two turns of a helper's spin loop means the OS
/// took its core for another thread: the cores are contended (another
/// process, or more threads than cores), and a spinning helper would only
/// steal time from threads with work, so it parks at once.
const PREEMPTED: Duration = Duration::from_micros(200);

/// After a preemption, helpers leave the region and the pool's threads wait
/// for work the ordinary rayon way (sleeping, woken when work is pushed) for
/// at least this long; the next kernel call after it starts them again (the
/// other process may have finished). While contention persists the pause
/// doubles, up to [`MAX_CONTENDED_FOR`].
const CONTENDED_FOR: Duration = Duration::from_millis(100);

/// The longest pause of helpers on contended cores.
const MAX_CONTENDED_FOR: Duration = Duration::from_secs(2);

/// When helpers may start again after leaving on contention.
#[derive(Clone, Copy, Debug)]
struct Pause {
    /// Not before this.
    until: Instant,
    /// The pause the next contention gets.
    next: Duration,
    /// When helpers were last started.
    started: Instant,
}

impl Pause {
    /// Contention seen at `now`: pause, longer if the last start was recent
    /// (contention has persisted), back to the shortest otherwise.
    fn contended(&mut self, now: Instant) {
        if now - self.started > 4 * self.next {
            self.next = CONTENDED_FOR;
        }
        self.until = now + self.next;
        self.next = (2 * self.next).min(MAX_CONTENDED_FOR);
    }
}

/// The helpers of one [`with_ready_helpers`] region.
struct Helpers {
    /// Set when the region ends: every helper returns to the pool.
    done: AtomicBool,
    /// Bumped by [`wake_helpers`]; a parked helper waits for it to change.
    wakes: AtomicUsize,
    /// Helpers parked now (so a wake with none parked costs one load).
    parked: AtomicUsize,
    /// Helpers in the region now (spinning, working or parked).
    active: AtomicUsize,
    /// The helpers' threads, to unpark.
    threads: Mutex<Vec<std::thread::Thread>>,
    /// The pool index of the thread running the region, which never helps.
    caller: usize,
    /// Helpers the region wants: the pool's other threads.
    wanted: usize,
    /// When helpers that left after a preemption may be started again.
    pause: Mutex<Pause>,
    /// Set when the region's own thread waits for a core (see
    /// [`waits_for_cores`]): every helper leaves, until `restart_at`.
    contended: AtomicBool,
}

thread_local! {
    /// The helpers of the region this thread runs, if any.
    static REGION: std::cell::RefCell<Option<Arc<Helpers>>> = const { std::cell::RefCell::new(None) };
    /// Whether this thread is a helper now (a queued start must not nest).
    static HELPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// The last sample of this thread's run-queue wait (see [`waits_for_cores`]).
    static WAIT_SAMPLE: std::cell::Cell<Option<(Instant, u64)>> = const { std::cell::Cell::new(None) };
}

/// How often the region's own thread checks whether it waits for a core.
const CONTENTION_CHECK_EVERY: Duration = Duration::from_millis(10);

/// Whether this thread spent more than a quarter of the time since the last
/// check waiting for a core while runnable (Linux's
/// `/proc/thread-self/schedstat`; never where that is missing). Then the
/// cores are contended and a spinning helper holds a core the thread with
/// the work needs: the helper itself may never be preempted, when the other
/// process shares the core of the region's thread instead.
fn waits_for_cores(now: Instant) -> bool {
    let last = WAIT_SAMPLE.get();
    if last.is_some_and(|(at, _)| now - at < CONTENTION_CHECK_EVERY) {
        return false;
    }
    let Some(waited) = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
    else {
        return false;
    };
    WAIT_SAMPLE.set(Some((now, waited)));
    last.is_some_and(|(at, before)| {
        let elapsed = (now - at).as_nanos() as u64;
        waited.saturating_sub(before) > elapsed / 4
    })
}

impl Helpers {
    fn pause(&self) -> std::sync::MutexGuard<'_, Pause> {
        self.pause.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unparks every helper thread (each re-checks why it parked).
    fn unpark_all(&self) {
        for thread in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            thread.unpark();
        }
    }

    /// Starts a helper on every pool thread but the caller (those already
    /// helping return at once).
    fn start(self: &Arc<Self>) {
        let helpers = Arc::clone(self);
        rayon::spawn_broadcast(move |ctx| {
            if ctx.index() != helpers.caller {
                help(&helpers);
            }
        });
    }
}

/// Called before a kernel call's parallel work ([`Par::run`]): wakes the
/// parked helpers of the region this thread runs, if any, so they pick the
/// work up, and starts again helpers that left after a preemption once
/// [`CONTENDED_FOR`] has passed. The work never waits for them: rayon runs
/// a task on the calling thread when no other thread has taken it.
fn wake_helpers() {
    REGION.with(|region| {
        let region = region.borrow();
        let Some(helpers) = region.as_ref() else {
            return;
        };
        let now = Instant::now();
        if helpers.active.load(Ordering::Acquire) > 0 && waits_for_cores(now) {
            helpers.pause().contended(now);
            helpers.contended.store(true, Ordering::Release);
        }
        if helpers.parked.load(Ordering::Acquire) > 0 {
            helpers.wakes.fetch_add(1, Ordering::AcqRel);
            helpers.unpark_all();
        }
        if helpers.active.load(Ordering::Acquire) < helpers.wanted {
            let mut pause = helpers.pause();
            if now >= pause.until {
                // Not again before the helpers have had a chance to start.
                pause.until = now + CONTENDED_FOR;
                pause.started = now;
                drop(pause);
                helpers.contended.store(false, Ordering::Release);
                helpers.start();
            }
        }
    });
}

/// Runs `f` on this pool thread while the pool's other threads wait for its
/// parallel work by spinning instead of sleeping (OpenMP's active wait
/// policy). A sleeping thread takes 20–40 µs to wake on a virtual machine,
/// about as long as a 784→256 forward pass at batch 32; a spinning one picks
/// the work up in about a microsecond.
///
/// Spinning is bounded: a helper parks after [`SPIN_IDLE`] without work
/// (the next kernel call wakes it), and leaves the region when it finds its
/// core taken by another thread ([`PREEMPTED`]: another process wants the
/// core, so spinning would only slow the threads with work). On a pool
/// with more threads than cores, helpers never start.
fn with_ready_helpers<R>(f: impl FnOnce() -> R) -> R {
    /// Ends the region when `f` returns or unwinds, so the helpers always stop.
    struct Finish(Arc<Helpers>, Option<Arc<Helpers>>);
    impl Drop for Finish {
        fn drop(&mut self) {
            self.0.done.store(true, Ordering::Release);
            self.0.wakes.fetch_add(1, Ordering::AcqRel);
            self.0.unpark_all();
            let outer = self.1.take();
            REGION.with(|region| *region.borrow_mut() = outer);
        }
    }
    let Some(caller) = rayon::current_thread_index() else {
        return f();
    };
    let threads = rayon::current_num_threads();
    if threads < 2 || threads > Par::available_cores() {
        return f();
    }
    let helpers = Arc::new(Helpers {
        done: AtomicBool::new(false),
        wakes: AtomicUsize::new(0),
        parked: AtomicUsize::new(0),
        active: AtomicUsize::new(0),
        threads: Mutex::new(Vec::with_capacity(threads - 1)),
        caller,
        wanted: threads - 1,
        pause: Mutex::new(Pause {
            until: Instant::now() + CONTENDED_FOR,
            next: CONTENDED_FOR,
            started: Instant::now(),
        }),
        contended: AtomicBool::new(false),
    });
    helpers.start();
    let outer = REGION.with(|region| region.borrow_mut().replace(Arc::clone(&helpers)));
    let _finish = Finish(helpers, outer);
    f()
}

/// A helper's loop: run the region's parallel work as it appears, spinning
/// while work is frequent and the core is ours, parked while work is rare;
/// back to the pool when the region ends or the core is contended.
fn help(helpers: &Helpers) {
    if HELPING.get() || helpers.done.load(Ordering::Acquire) {
        return;
    }
    HELPING.set(true);
    helpers.active.fetch_add(1, Ordering::AcqRel);
    {
        let me = std::thread::current();
        let mut threads = helpers.threads.lock().unwrap_or_else(|p| p.into_inner());
        if threads.iter().all(|t| t.id() != me.id()) {
            threads.push(me);
        }
    }
    let mut last_work = Instant::now();
    let mut last_turn = last_work;
    while !helpers.done.load(Ordering::Acquire) && !helpers.contended.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            last_work = Instant::now();
            last_turn = last_work;
            continue;
        }
        let now = Instant::now();
        if now - last_turn > PREEMPTED {
            helpers.pause().contended(now);
            break;
        }
        last_turn = now;
        if now - last_work < SPIN_IDLE {
            std::hint::spin_loop();
            continue;
        }
        // Park until the next kernel call (or the end of the region). The
        // wake count is read before `parked` is raised, so a wake between
        // the two is not lost (and `unpark` before `park` returns at once).
        let seen = helpers.wakes.load(Ordering::Acquire);
        helpers.parked.fetch_add(1, Ordering::AcqRel);
        while helpers.wakes.load(Ordering::Acquire) == seen
            && !helpers.done.load(Ordering::Acquire)
            && !helpers.contended.load(Ordering::Acquire)
        {
            std::thread::park();
        }
        helpers.parked.fetch_sub(1, Ordering::AcqRel);
        last_work = Instant::now();
        last_turn = last_work;
    }
    helpers.active.fetch_sub(1, Ordering::AcqRel);
    HELPING.set(false);
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

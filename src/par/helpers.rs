//! Ready helpers: while a loop of many small kernel calls runs inside
//! [`Par::install`](super::Par::install), the pool's other threads wait for
//! its parallel work by spinning, within bounds (they park when work is
//! rare and step aside when the cores are contended).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Par;

/// How long a helper spins without finding work before it parks: longer
/// than the gaps between the kernel calls of a training step (so helpers
/// stay ready through a step), short enough that an idle phase (evaluation
/// on one thread, I/O) soon gives the cores back. OpenMP's default spin
/// before sleeping is of the same order.
const SPIN_IDLE: Duration = Duration::from_millis(1);

/// A gap this long between two turns of a helper's spin loop means the OS
/// took its core for another thread: the cores are contended (another
/// process, or more threads than cores), and a spinning helper would only
/// steal time from threads with work, so it leaves the region at once.
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
    /// [`waits_for_cores`]): every helper leaves, until the pause ends.
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
    let Some(waited) = schedstat_wait_ns() else {
        return false;
    };
    WAIT_SAMPLE.set(Some((now, waited)));
    last.is_some_and(|(at, before)| {
        let elapsed = (now - at).as_nanos() as u64;
        waited.saturating_sub(before) > elapsed / 4
    })
}

/// This thread's time spent runnable but waiting for a core, in ns (the
/// second field of `/proc/thread-self/schedstat`). Read into a stack buffer:
/// kernel calls run this, and must not allocate.
fn schedstat_wait_ns() -> Option<u64> {
    use std::io::Read;
    let mut buf = [0u8; 96];
    let mut file = std::fs::File::open("/proc/thread-self/schedstat").ok()?;
    let len = file.read(&mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
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
        STARTS.fetch_add(1, Ordering::Relaxed);
        let helpers = Arc::clone(self);
        rayon::spawn_broadcast(move |ctx| {
            if ctx.index() != helpers.caller {
                help(&helpers);
            }
        });
    }
}

/// Times helpers were started, by a region or again after they left a
/// contended core (see [`starts`]).
static STARTS: AtomicUsize = AtomicUsize::new(0);

/// How many times this process started a region's helpers: once per
/// region, and again each time they come back after leaving a core another
/// process wanted. Each start hands rayon a small boxed job, the one
/// allocation a warmed-up kernel call can make, so the allocation test
/// tells the two apart.
pub(super) fn starts() -> usize {
    STARTS.load(Ordering::Relaxed)
}

/// Whether this thread runs a ready-helpers region now.
pub(super) fn in_region() -> bool {
    REGION.with(|region| region.borrow().is_some())
}

/// Called before a kernel call's parallel work ([`Par::run`]): wakes the
/// parked helpers of the region this thread runs, if any, so they pick the
/// work up, and starts again helpers that left after a preemption once
/// [`CONTENDED_FOR`] has passed. The work never waits for them: rayon runs
/// a task on the calling thread when no other thread has taken it.
///
/// Returns whether the call should use more than this thread: not while
/// the region's helpers are away on contended cores, when a fork-join would
/// wait for halves whose threads the OS has descheduled (on 2 cores beside
/// a busy process, one thread trains faster than two).
pub(super) fn wake_helpers() -> bool {
    REGION.with(|region| {
        let region = region.borrow();
        let Some(helpers) = region.as_ref() else {
            return true;
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
        !helpers.contended.load(Ordering::Acquire)
            && helpers.active.load(Ordering::Acquire) == helpers.wanted
    })
}

/// Runs `f` on this pool thread while the pool's other threads wait for its
/// parallel work by spinning instead of sleeping (OpenMP's active wait
/// policy). A sleeping thread takes tens of µs to wake on a virtual machine,
/// as long as a small layer's forward pass; a spinning one picks the work
/// up at once.
///
/// Spinning is bounded: a helper parks after [`SPIN_IDLE`] without work
/// (the next kernel call wakes it), and leaves the region when it finds its
/// core taken by another thread ([`PREEMPTED`]: another process wants the
/// core, so spinning would only slow the threads with work). On a pool
/// with more threads than cores, helpers never start.
pub(super) fn with_ready_helpers<R>(f: impl FnOnce() -> R) -> R {
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

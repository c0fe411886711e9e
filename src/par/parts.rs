//! Calls from outside any pool run as parts, the caller computing one.
//!
//! Moving a whole call onto the pool leaves the caller asleep while the
//! pool works, and waking it after costs tens of µs on a VM, a sixth of a
//! 256³ product on two cores. With the caller computing the first part
//! and waiting for the others awake (they end at about the same time), a
//! raw `sgemm` in a loop runs as fast as inside `Par::install` (figures
//! in `docs/design.md`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rayon::ThreadPool;

use super::Share;

/// How long the caller waits for the other parts once its own is done,
/// yielding its core between looks, before it sleeps until they are: long
/// enough to cover a part that started late because its thread was
/// waking. Yielding rather than spinning matters when another process
/// holds one of the cores and a part's thread shares the caller's: a
/// spinning caller took the core from the part it waited for, and two
/// threads ran slower than one (`docs/design.md`).
const WAIT_FOR_PARTS: Duration = Duration::from_micros(200);

/// Runs `f(Share::Part { index, parts })` for every `index < parts`: the
/// first on the calling thread, the others on `pool` (the global pool for
/// `None`), handed out before the caller starts its own so their threads
/// wake while it works; then waits for them (see [`WAIT_FOR_PARTS`]).
/// Returns when all are done; a part's panic is resumed here once every
/// part has ended.
pub(super) fn in_parts(pool: Option<&ThreadPool>, parts: usize, f: &(impl Fn(Share) + Sync)) {
    let ended = AtomicUsize::new(0);
    match pool {
        Some(pool) => pool.in_place_scope(|s| run_parts(s, parts, f, &ended)),
        None => rayon::in_place_scope(|s| run_parts(s, parts, f, &ended)),
    }
}

/// The body of [`in_parts`] in its scope `s`; `ended` counts the parts
/// that the pool has finished.
fn run_parts<'scope>(
    s: &rayon::Scope<'scope>,
    parts: usize,
    f: &'scope (impl Fn(Share) + Sync),
    ended: &'scope AtomicUsize,
) {
    for index in 1..parts {
        s.spawn(move |_| {
            f(Share::Part { index, parts });
            ended.fetch_add(1, Ordering::Release);
        });
    }
    f(Share::Part { index: 0, parts });
    let start = Instant::now();
    while ended.load(Ordering::Acquire) + 1 < parts && start.elapsed() < WAIT_FOR_PARTS {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_part_runs_once_and_the_first_on_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for parts in 1..=4 {
            let seen = Mutex::new(Vec::new());
            in_parts(Some(&pool), parts, &|share| {
                let here = rayon::current_thread_index();
                seen.lock().unwrap().push((share, here));
            });
            let mut seen = seen.into_inner().unwrap();
            seen.sort_by_key(|(share, _)| match share {
                Share::Part { index, .. } => *index,
                Share::Whole(_) => usize::MAX,
            });
            let indices: Vec<_> = seen.iter().map(|(share, _)| *share).collect();
            let expected: Vec<_> = (0..parts)
                .map(|index| Share::Part { index, parts })
                .collect();
            assert_eq!(indices, expected);
            // The caller (this test's thread, outside any pool) ran part 0;
            // the others ran on the pool.
            assert_eq!(seen[0].1, None);
            assert!(seen[1..].iter().all(|(_, here)| here.is_some()), "{seen:?}");
        }
    }

    #[test]
    fn a_panicking_part_reaches_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            in_parts(Some(&pool), 2, &|share| {
                assert_ne!(share, Share::Part { index: 1, parts: 2 }, "part 1 fails");
            })
        }));
        assert!(result.is_err());
    }
}

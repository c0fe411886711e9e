//! A pre-packed network's forward pass allocates nothing once its workspace
//! has grown (a counting global allocator; this file holds one test so no
//! other test allocates meanwhile).
//!
//! Warm-up also grows each pool thread's packing buffers, the first time
//! that thread packs a block of images (which one does depends on
//! scheduling): it ends after three rounds in a row that allocate nothing.
//!
//! On two threads, helpers that left a core another process wanted are
//! started again later, and each start boxes a small rayon job: the one
//! allocation allowed after warm-up, at most two per start (counted by
//! `densekit::helper_starts`). A call that allocated would show dozens per
//! measured window.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use densekit::activation::Activation;
use densekit::gemm::{MatRef, Par};
use densekit::mlp::{Mlp, MlpWorkspace};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn packed_forward_allocates_nothing_after_warm_up() {
    let net = Mlp::new(&[784, 256, 10], Activation::Relu, 3);
    let packed = net.packed();
    // Images (mostly zeros, so the zero-skipping path runs) and dense rows.
    let images: Vec<f32> = (0..1000 * 784)
        .map(|i| {
            if i % 5 == 0 {
                (i % 255) as f32 / 255.0
            } else {
                0.0
            }
        })
        .collect();
    let dense: Vec<f32> = (0..1000 * 784)
        .map(|i| (i % 97) as f32 / 97.0 + 0.01)
        .collect();
    let batches = [1, 7, 32, 1000, 3, 1];
    for par in [Par::Seq, Par::Threads(2)] {
        par.install(|| {
            let mut ws = MlpWorkspace::new();
            let run = |ws: &mut MlpWorkspace| {
                for x in [&images, &dense] {
                    for batch in batches {
                        let x = MatRef::from_row_major(&x[..batch * 784], batch, 784);
                        std::hint::black_box(packed.forward(x, ws, par));
                    }
                }
            };
            let mut quiet_rounds = 0;
            for _ in 0..100 {
                let before = ALLOCATIONS.load(Ordering::Relaxed);
                run(&mut ws);
                quiet_rounds = match ALLOCATIONS.load(Ordering::Relaxed) == before {
                    true => quiet_rounds + 1,
                    false => 0,
                };
                if quiet_rounds == 3 {
                    break;
                }
            }
            assert_eq!(quiet_rounds, 3, "{par:?}: every round of 100 allocated");
            let (before, starts) = (
                ALLOCATIONS.load(Ordering::Relaxed),
                densekit::helper_starts(),
            );
            for _ in 0..10 {
                run(&mut ws);
            }
            let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
            let restarts = densekit::helper_starts() - starts;
            assert!(
                allocated <= 2 * restarts,
                "{par:?}: {allocated} allocations after warm-up ({restarts} helper restarts)"
            );
        });
    }
}

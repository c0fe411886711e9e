//! Hostile inputs through the public API: misaligned views, empty
//! dimensions, huge k, subnormals, and concurrent use of shared weights.

use densekit::activation::Activation;
use densekit::dense::{self, BackwardOptions, Grads, Workspace};
use densekit::gemm::{Accum, Isa, MatMut, MatRef, Par, gemm, gemm_with_isa, reference};
use densekit::loss::softmax_cross_entropy;

fn fill(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

fn check_against_reference(isa: Isa, a: MatRef<'_, f32>, b: MatRef<'_, f32>) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let mut got = vec![f32::NAN; m * n];
    gemm_with_isa(
        isa,
        MatMut::from_row_major(&mut got, m, n),
        Accum::Replace,
        a,
        b,
        1.0,
        Par::Auto,
    )
    .unwrap();
    let mut want = vec![0.0f32; m * n];
    reference::gemm(
        MatMut::from_row_major(&mut want, m, n),
        Accum::Replace,
        a,
        b,
        1.0,
    );
    let bound = reference::error_bound(a, b, 1.0, 0.0, None);
    for i in 0..m * n {
        assert!(
            (got[i] - want[i]).abs() as f64 <= bound[i] + want[i].abs() as f64 * 1e-7,
            "{isa} m={m} k={k} n={n}: [{i}] {} vs {}",
            got[i],
            want[i]
        );
    }
}

/// Views starting 1…7 floats into their buffers (never 32-byte aligned).
#[test]
fn misaligned_base_pointers() {
    for isa in Isa::available() {
        for offset in 1..8 {
            let (m, k, n) = (19, 37, 29);
            let a = fill(offset + m * k, 1);
            let b = fill(offset + k * n, 2);
            check_against_reference(
                isa,
                MatRef::from_row_major(&a[offset..], m, k),
                MatRef::from_row_major(&b[offset..], k, n),
            );
            let mut c = vec![0.0f32; offset + m * n];
            gemm(
                MatMut::from_row_major(&mut c[offset..], m, n),
                Accum::Replace,
                MatRef::from_row_major(&a[offset..], m, k),
                MatRef::from_row_major(&b[offset..], k, n),
                1.0,
                Par::Seq,
            );
            assert!(
                c[..offset].iter().all(|&v| v == 0.0),
                "wrote before the view"
            );
        }
    }
}

#[test]
fn zero_sized_dimensions_everywhere() {
    for (m, k, n) in [
        (0, 0, 0),
        (0, 5, 3),
        (4, 0, 3),
        (4, 5, 0),
        (0, 0, 3),
        (4, 0, 0),
    ] {
        let (a, b) = (fill(m * k, 1), fill(k * n, 2));
        let mut c = vec![7.0f32; m * n];
        gemm(
            MatMut::from_row_major(&mut c, m, n),
            Accum::Add,
            MatRef::from_row_major(&a, m, k),
            MatRef::from_row_major(&b, k, n),
            1.0,
            Par::Auto,
        );
        assert!(
            c.iter().all(|&v| v == 7.0),
            "k = 0 with Add leaves C as it was"
        );
        // SAFETY: empty or in-range buffers with matching strides.
        unsafe {
            densekit::sgemm(
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
            );
        }
        assert!(c.iter().all(|&v| v == 0.0), "β = 0 and k = 0 give zeros");
    }
    // Dense layers with an empty batch, and a layer with no inputs (y = act(b)).
    let w = fill(0, 1);
    let mut y = vec![f32::NAN; 3 * 2];
    dense::forward(
        MatMut::from_row_major(&mut y, 3, 2),
        Accum::Replace,
        MatRef::from_row_major(&[], 3, 0),
        MatRef::from_row_major(&w, 2, 0),
        Some(&[0.5, -1.0]),
        Activation::Relu,
        Par::Auto,
    );
    assert_eq!(y, [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]);
    let w = fill(2 * 3, 1);
    let mut y: Vec<f32> = vec![];
    dense::forward(
        MatMut::from_row_major(&mut y, 0, 2),
        Accum::Replace,
        MatRef::from_row_major(&[], 0, 3),
        MatRef::from_row_major(&w, 2, 3),
        None,
        Activation::Tanh,
        Par::Auto,
    );
    let (mut dw, mut db) = (vec![f32::NAN; 6], vec![f32::NAN; 2]);
    dense::backward(
        Grads {
            dw: MatMut::from_row_major(&mut dw, 2, 3),
            db: Some(&mut db),
            dx: None,
        },
        MatRef::from_row_major(&[], 0, 3),
        MatRef::from_row_major(&w, 2, 3),
        MatRef::from_row_major(&[], 0, 2),
        MatRef::from_row_major(&[], 0, 2),
        Activation::Tanh,
        BackwardOptions::default(),
        &mut Workspace::new(),
    );
    assert!(
        dw.iter().chain(&db).all(|&v| v == 0.0),
        "an empty batch has zero gradient"
    );
    let mut g: Vec<f32> = vec![];
    assert_eq!(
        softmax_cross_entropy(
            MatRef::from_row_major(&[], 0, 10),
            &[],
            MatMut::from_row_major(&mut g, 0, 10)
        ),
        0.0
    );
}

#[test]
fn huge_k_with_small_m_and_n() {
    let (m, k, n) = (3, 120_000, 5);
    let (a, b) = (fill(m * k, 3), fill(k * n, 4));
    for isa in Isa::available() {
        check_against_reference(
            isa,
            MatRef::from_row_major(&a, m, k),
            MatRef::from_row_major(&b, k, n),
        );
    }
}

/// Subnormal inputs and products give correct results on every path. (No
/// flush-to-zero is set: results stay IEEE-exact, and on the AMD and Intel
/// cores we target FMA on subnormals runs at full speed; see docs/design.md.)
#[test]
fn subnormal_heavy_inputs() {
    let (m, k, n) = (13, 300, 17);
    let a: Vec<f32> = fill(m * k, 5).iter().map(|v| v * 1e-36).collect();
    let b: Vec<f32> = fill(k * n, 6).iter().map(|v| v * 1e-5).collect();
    assert!(
        a.iter()
            .any(|v| v.is_subnormal() || v.abs() < f32::MIN_POSITIVE * 100.0)
    );
    for isa in Isa::available() {
        check_against_reference(
            isa,
            MatRef::from_row_major(&a, m, k),
            MatRef::from_row_major(&b, k, n),
        );
    }
}

/// Many threads share the same read-only weights, from plain threads and
/// from inside rayon pools, and all get the single-threaded answer.
#[test]
fn concurrent_calls_share_read_only_weights() {
    let (batch, inputs, outputs) = (96, 300, 130);
    let w = fill(outputs * inputs, 7);
    let b = fill(outputs, 8);
    let x = fill(batch * inputs, 9);
    let forward = |par: Par| {
        let mut y = vec![0.0f32; batch * outputs];
        dense::forward(
            MatMut::from_row_major(&mut y, batch, outputs),
            Accum::Replace,
            MatRef::from_row_major(&x, batch, inputs),
            MatRef::from_row_major(&w, outputs, inputs),
            Some(&b),
            Activation::Sigmoid,
            par,
        );
        y
    };
    let want = forward(Par::Seq);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let forward = &forward;
                s.spawn(move || {
                    forward(if t % 2 == 0 {
                        Par::Auto
                    } else {
                        Par::Threads(1 + t % 3)
                    })
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), want);
        }
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let results: Vec<Vec<f32>> = pool.install(|| {
        use rayon::prelude::*;
        (0..8).into_par_iter().map(|_| forward(Par::Auto)).collect()
    });
    assert!(results.iter().all(|y| *y == want));
}

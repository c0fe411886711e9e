//! A reduced suite for Miri: the safe API, packing, every edge-tile path and
//! the raw entry points on small shapes, checked for undefined behaviour.
//!
//! ```text
//! cargo +nightly miri test --test miri
//! RUSTFLAGS="-C target-feature=+avx2,+fma" cargo +nightly miri test --test miri
//! RUSTFLAGS="-C target-feature=+avx2,+fma,+avx512f" cargo +nightly miri test --test miri -- --skip dense
//! ```
//!
//! Under Miri a SIMD path runs only where its target features are enabled at
//! compile time (then `Isa::available` reports it), so `.ci/run` runs this
//! suite three times: portable, with AVX2 + FMA, and with AVX-512F. Miri
//! lacks some AVX-512 intrinsics the activation epilogue uses (`vmaxps` on
//! zmm), so the AVX-512 run covers the GEMM tests; the dense kernels' tile
//! body is the same generic code as on AVX2. Outside Miri these run as
//! ordinary (fast) tests.

use densekit::activation::Activation;
use densekit::dense::{self, BackwardOptions, Grads, Workspace};
use densekit::gemm::{Accum, Isa, MatMut, MatRef, Par, gemm_with_isa, reference};

/// The SIMD paths compiled in by `RUSTFLAGS` must really run (Miri detects
/// a feature only when it is enabled at compile time): otherwise a run meant
/// for AVX2 would silently test the portable kernel again.
#[test]
fn simd_paths_enabled_at_compile_time_are_available() {
    let avx2 = cfg!(all(target_feature = "avx2", target_feature = "fma"));
    let avx512 = avx2 && cfg!(target_feature = "avx512f");
    // NEON is part of the aarch64 baseline: always compiled in there.
    assert_eq!(Isa::Neon.is_available(), cfg!(target_arch = "aarch64"));
    if cfg!(miri) {
        assert_eq!(Isa::Avx2Fma.is_available(), avx2);
        assert_eq!(Isa::Avx512.is_available(), avx512);
    } else {
        assert!(!avx2 || Isa::Avx2Fma.is_available());
        assert!(!avx512 || Isa::Avx512.is_available());
    }
}

fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7 + seed * 13) % 17) as f32 - 8.0)
        .collect()
}

/// Small integer-valued products are exact, so results must equal the reference.
fn check(m: usize, k: usize, n: usize, strides: [(isize, isize); 3], par: Par) {
    let pad = 3;
    let a = values((m + pad) * (k + pad), 1);
    let b = values((k + pad) * (n + pad), 2);
    let c = vec![f32::NAN; (m + pad) * (n + pad)];
    let [(rsa, csa), (rsb, csb), (rsc, csc)] = strides;
    let av = MatRef::from_strides(&a, m, k, rsa, csa);
    let bv = MatRef::from_strides(&b, k, n, rsb, csb);
    let mut want = c.clone();
    reference::gemm(
        MatMut::from_strides(&mut want, m, n, rsc, csc),
        Accum::Replace,
        av,
        bv,
        1.0,
    );
    for isa in Isa::available() {
        let mut got = c.clone();
        gemm_with_isa(
            isa,
            MatMut::from_strides(&mut got, m, n, rsc, csc),
            Accum::Replace,
            av,
            bv,
            1.0,
            par,
        )
        .unwrap();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{isa} m={m} k={k} n={n} strides={strides:?}"
        );
    }
}

#[test]
fn gemm_small_shapes_all_layouts() {
    for (m, k, n) in [
        (1, 1, 1),
        (5, 3, 7),
        (7, 5, 17),
        (13, 9, 3),
        (0, 3, 2),
        (3, 0, 2),
    ] {
        let row = |cols: usize| (cols as isize + 3, 1);
        let col = |rows: usize| (1, rows as isize + 3);
        let neg = |cols: usize| (-(cols as isize + 3), 1);
        check(m, k, n, [row(k), row(n), row(n)], Par::Seq);
        check(m, k, n, [col(m), col(k), col(m)], Par::Seq);
        check(m, k, n, [neg(k), row(n), neg(n)], Par::Seq);
    }
}

/// B read in place (few rows, unit column stride) with its buffer ending
/// right after its last row: a kernel that advanced its B pointer past the
/// last k step would leave the allocation (undefined behaviour that only
/// Miri sees, so this test's teeth are the Miri runs with SIMD enabled).
#[test]
fn b_read_in_place_ends_at_its_allocation() {
    // One row (the one-row kernel, its leftover columns and a partial last
    // tile copied out of B) too.
    for (m, k, n) in [
        (3, 4, 16),
        (2, 3, 32),
        (5, 1, 64),
        (13, 2, 16),
        (1, 3, 300),
        (1, 2, 10),
    ] {
        let a = values(m * k, 9);
        let b = values(k * n, 10);
        let (av, bv) = (
            MatRef::from_row_major(&a, m, k),
            MatRef::from_row_major(&b, k, n),
        );
        let mut want = vec![0.0f32; m * n];
        reference::gemm(
            MatMut::from_row_major(&mut want, m, n),
            Accum::Replace,
            av,
            bv,
            1.0,
        );
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; m * n];
            gemm_with_isa(
                isa,
                MatMut::from_row_major(&mut got, m, n),
                Accum::Replace,
                av,
                bv,
                1.0,
                Par::Seq,
            )
            .unwrap();
            assert_eq!(got, want, "{isa} m={m} k={k} n={n}");
        }
    }
}

#[test]
fn gemm_with_two_threads() {
    // Large enough to take the threaded path (≥ 2^20 multiply-adds would be too slow
    // under Miri, so this exercises Par::Threads' pool and the sequential fallback).
    check(9, 4, 20, [(4, 1), (20, 1), (20, 1)], Par::Threads(2));
}

#[test]
fn raw_entry_point_with_negative_and_zero_strides() {
    let a = values(12, 3); // 3×4
    let b = values(8, 4); // 4×2
    let mut c = [f32::NAN; 6];
    // SAFETY: A read with reversed rows from its last row, B's first row
    // broadcast (row stride 0); every index is inside the buffers.
    unsafe {
        densekit::sgemm(
            3,
            4,
            2,
            1.0,
            a.as_ptr().add(8),
            -4,
            1,
            b.as_ptr(),
            0,
            1,
            0.0,
            c.as_mut_ptr(),
            2,
            1,
        );
    }
    for i in 0..3 {
        for j in 0..2 {
            let want: f32 = (0..4).map(|p| a[(2 - i) * 4 + p] * b[j]).sum();
            assert_eq!(c[i * 2 + j], want);
        }
    }
}

#[test]
fn dense_forward_and_backward_small() {
    dense_case((3, 5, 4), false);
    // Mostly zero and 64 wide: the GEMMs drop x's zero columns (KSteps::Listed).
    dense_case((13, 20, 64), true);
}

fn dense_case((batch, inputs, outputs): (usize, usize, usize), image_like: bool) {
    let (mut x, w, b) = (
        values(batch * inputs, 5),
        values(outputs * inputs, 6),
        values(outputs, 7),
    );
    if image_like {
        for (i, v) in x.iter_mut().enumerate() {
            if (i % inputs) % 5 != 0 {
                *v = 0.0;
            }
        }
    }
    let mut y = vec![0.0f32; batch * outputs];
    dense::forward(
        MatMut::from_row_major(&mut y, batch, outputs),
        Accum::Replace,
        MatRef::from_row_major(&x, batch, inputs),
        MatRef::from_row_major(&w, outputs, inputs),
        Some(&b),
        Activation::Relu,
        Par::Seq,
    );
    let dy = values(batch * outputs, 8);
    let (mut dw, mut db, mut dx) = (
        vec![0.0f32; w.len()],
        vec![0.0f32; outputs],
        vec![0.0f32; x.len()],
    );
    dense::backward(
        Grads {
            dw: MatMut::from_row_major(&mut dw, outputs, inputs),
            db: Some(&mut db),
            dx: Some(MatMut::from_row_major(&mut dx, batch, inputs)),
        },
        MatRef::from_row_major(&x, batch, inputs),
        MatRef::from_row_major(&w, outputs, inputs),
        MatRef::from_row_major(&y, batch, outputs),
        MatRef::from_row_major(&dy, batch, outputs),
        Activation::Relu,
        BackwardOptions {
            accum: Accum::Replace,
            l2: Some(0.5),
            par: Par::Seq,
        },
        &mut Workspace::new(),
    );
    let want = dense::reference::backward(
        MatRef::from_row_major(&x, batch, inputs),
        MatRef::from_row_major(&w, outputs, inputs),
        MatRef::from_row_major(&y, batch, outputs),
        MatRef::from_row_major(&dy, batch, outputs),
        Activation::Relu,
        Some(0.5),
    );
    assert_eq!(dw.iter().map(|&v| v as f64).collect::<Vec<_>>(), want.dw);
    assert_eq!(dx.iter().map(|&v| v as f64).collect::<Vec<_>>(), want.dx);
}

#[test]
fn pack_buffers_are_reused_across_calls_and_types() {
    // Alternating element types and sizes exercises the cast of the pooled buffer.
    for round in 0..3 {
        check(7 + round, 6, 18, [(6, 1), (18, 1), (18, 1)], Par::Seq);
        let a = [1.0f64, 2.0, 3.0];
        let mut c = [0.0f64; 9];
        gemm_with_isa(
            Isa::Scalar,
            MatMut::from_row_major(&mut c, 3, 3),
            Accum::Replace,
            MatRef::from_row_major(&a, 3, 1),
            MatRef::from_row_major(&a, 1, 3),
            1.0,
            Par::Seq,
        )
        .unwrap();
        assert_eq!(c[8], 9.0);
    }
}

/// A pre-packed network reads its padded weights in place, edge tiles
/// included; one image and a small batch, with zero inputs skipped.
#[test]
fn packed_forward_reads_inside_its_weights() {
    use densekit::activation::Activation;
    use densekit::mlp::{Mlp, MlpWorkspace};
    // Identity hidden layers: Miri has no AVX-512 max (ReLU).
    let net = Mlp::new(&[70, 40, 5], Activation::Identity, 1);
    let packed = net.packed();
    let x: Vec<f32> = (0..3 * 70)
        .map(|i| if i % 4 == 0 { 0.5 } else { 0.0 })
        .collect();
    for batch in [1, 3] {
        let x = MatRef::from_row_major(&x[..batch * 70], batch, 70);
        let (mut ws, mut packed_ws) = (MlpWorkspace::new(), MlpWorkspace::new());
        let want = net.forward(x, &mut ws, Par::Seq).to_vec();
        assert_eq!(packed.forward(x, &mut packed_ws, Par::Seq), &want[..]);
    }
}

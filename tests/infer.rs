//! Batch invariance: a row's result is bitwise the same computed alone, in
//! a batch of any size, on any thread count, through `gemm`,
//! `dense::forward`, `Mlp::forward` and `PackedMlp::forward`.

use densekit::activation::Activation;
use densekit::dense;
use densekit::gemm::{Accum, Isa, MatMut, MatRef, Par, gemm_with_isa};
use densekit::mlp::{Mlp, MlpWorkspace};

/// xorshift64*: deterministic values in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
    }
}

/// `rows × cols` values; with `sparse`, about 80% exact zeros and the rest
/// in [0, 1], like the pixels of a digit.
fn inputs(rows: usize, cols: usize, sparse: bool, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    (0..rows * cols)
        .map(|_| {
            let v = rng.next();
            match sparse {
                true if v < 0.6 => 0.0,
                true => v.abs(),
                false => v,
            }
        })
        .collect()
}

const BATCHES: [usize; 5] = [1, 2, 7, 13, 1000];
const PARS: [Par; 3] = [Par::Seq, Par::Threads(2), Par::Threads(3)];

fn assert_rows_equal(what: &str, batch: usize, par: Par, got: &[f32], alone: &[Vec<f32>]) {
    let width = alone[0].len();
    for (r, (row, want)) in got.chunks_exact(width).zip(alone).enumerate() {
        let (g, w): (Vec<u32>, Vec<u32>) = (
            row.iter().map(|v| v.to_bits()).collect(),
            want.iter().map(|v| v.to_bits()).collect(),
        );
        assert!(
            g == w,
            "{what}: row {r} of a batch of {batch} ({par:?}) differs from the row alone: {row:?} vs {want:?}"
        );
    }
}

#[test]
fn gemm_rows_do_not_depend_on_the_batch_or_threads() {
    // k crosses the AVX2 panel depth (256) and the AVX-512 one (1024); n
    // covers the one-row kernel's widths and leftover columns.
    for isa in Isa::available() {
        for [k, n] in [[784, 256], [256, 10], [1100, 300], [33, 97]] {
            let a = inputs(1000, k, false, 1);
            let b = inputs(k, n, false, 2);
            // B row-major (read in place) and column-major (a weight (n, k) seen as wᵀ).
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            for b_view in [
                MatRef::from_row_major(&b, k, n),
                MatRef::from_col_major(&bt, k, n),
            ] {
                let product = |rows: usize, from: usize, par: Par| {
                    let mut c = vec![f32::NAN; rows * n];
                    let a_rows = MatRef::from_row_major(&a[from * k..(from + rows) * k], rows, k);
                    gemm_with_isa(
                        isa,
                        MatMut::from_row_major(&mut c, rows, n),
                        Accum::Replace,
                        a_rows,
                        b_view,
                        1.0,
                        par,
                    )
                    .unwrap();
                    c
                };
                let alone: Vec<Vec<f32>> = (0..1000).map(|r| product(1, r, Par::Seq)).collect();
                for batch in BATCHES {
                    for par in PARS {
                        let what = format!(
                            "{isa} gemm 1000×{k}×{n}, B strides {:?}",
                            (b_view.row_stride(), b_view.col_stride())
                        );
                        assert_rows_equal(&what, batch, par, &product(batch, 0, par), &alone);
                    }
                }
            }
        }
    }
}

#[test]
fn dense_forward_rows_do_not_depend_on_the_batch_or_threads() {
    // PyTorch's layout, w (out, in) row-major, on images and dense inputs.
    let (inputs_n, outputs) = (784, 256);
    let w = inputs(outputs, inputs_n, false, 3);
    let bias = inputs(1, outputs, false, 4);
    for sparse in [true, false] {
        let x = inputs(1000, inputs_n, sparse, 5);
        let forward = |rows: usize, from: usize, par: Par| {
            let mut y = vec![f32::NAN; rows * outputs];
            dense::forward(
                MatMut::from_row_major(&mut y, rows, outputs),
                Accum::Replace,
                MatRef::from_row_major(
                    &x[from * inputs_n..(from + rows) * inputs_n],
                    rows,
                    inputs_n,
                ),
                MatRef::from_row_major(&w, outputs, inputs_n),
                Some(&bias),
                Activation::Relu,
                par,
            );
            y
        };
        let alone: Vec<Vec<f32>> = (0..1000).map(|r| forward(1, r, Par::Seq)).collect();
        for batch in BATCHES {
            for par in PARS {
                let what = format!("dense::forward (sparse inputs: {sparse})");
                assert_rows_equal(&what, batch, par, &forward(batch, 0, par), &alone);
            }
        }
    }
}

#[test]
fn mlp_and_packed_rows_do_not_depend_on_the_batch_or_threads() {
    for sizes in [&[784, 256, 10][..], &[784, 100, 33, 10], &[20, 1024, 3]] {
        let net = Mlp::new(sizes, Activation::Relu, 7);
        let packed = net.packed();
        let cols = sizes[0];
        for sparse in [true, false] {
            let x = inputs(1000, cols, sparse, 11);
            let rows_of = |from: usize, rows: usize| {
                MatRef::from_row_major(&x[from * cols..(from + rows) * cols], rows, cols)
            };
            let mut ws = MlpWorkspace::new();
            let alone: Vec<Vec<f32>> = (0..1000)
                .map(|r| net.forward(rows_of(r, 1), &mut ws, Par::Seq).to_vec())
                .collect();
            for batch in BATCHES {
                for par in PARS {
                    let what = format!("{sizes:?} (sparse inputs: {sparse})");
                    let plain = net.forward(rows_of(0, batch), &mut ws, par).to_vec();
                    assert_rows_equal(&format!("Mlp::forward {what}"), batch, par, &plain, &alone);
                    let mut packed_ws = MlpWorkspace::new();
                    let got = packed.forward(rows_of(0, batch), &mut packed_ws, par);
                    assert_rows_equal(
                        &format!("PackedMlp::forward {what}"),
                        batch,
                        par,
                        got,
                        &alone,
                    );
                }
            }
        }
    }
}

#[test]
fn packed_network_is_a_frozen_copy() {
    let mut net = Mlp::new(&[5, 64, 3], Activation::Tanh, 2);
    let packed = net.packed();
    let x = inputs(4, 5, false, 9);
    let x = MatRef::from_row_major(&x, 4, 5);
    let (mut ws, mut packed_ws) = (MlpWorkspace::new(), MlpWorkspace::new());
    let before = net.forward(x, &mut ws, Par::Seq).to_vec();
    net.params_mut().iter_mut().for_each(|p| *p *= 2.0);
    assert_ne!(net.forward(x, &mut ws, Par::Seq), &before[..]);
    assert_eq!(packed.forward(x, &mut packed_ws, Par::Seq), &before[..]);
    assert_eq!(packed.sizes(), &[5, 64, 3]);
}

#[test]
#[should_panic(expected = "x is 2×4 but the network takes 5 inputs")]
fn packed_forward_names_the_shapes() {
    let packed = Mlp::new(&[5, 8, 3], Activation::Relu, 2).packed();
    packed.forward(
        MatRef::from_row_major(&[0.0; 8], 2, 4),
        &mut MlpWorkspace::new(),
        Par::Seq,
    );
}

#[test]
fn one_row_forward_with_bias_into_strided_output() {
    // A single sample through wᵀ stored (in, out): the one-row path, here
    // with a bias and an output whose columns are 2 apart (NaN between).
    for outputs in [10, 33, 256, 300] {
        let (inputs_n, sparse) = (70, true);
        let x = inputs(1, inputs_n, sparse, 21);
        let wt = inputs(inputs_n, outputs, false, 22);
        let w = MatRef::from_col_major(&wt, outputs, inputs_n);
        let bias = inputs(1, outputs, false, 23);
        let x = MatRef::from_row_major(&x, 1, inputs_n);
        let mut got = vec![f32::NAN; 2 * outputs];
        let mut want = vec![0.0f32; outputs];
        dense::forward(
            MatMut::from_strides(&mut got, 1, outputs, 2 * outputs as isize, 2),
            Accum::Replace,
            x,
            w,
            Some(&bias),
            Activation::Sigmoid,
            Par::Seq,
        );
        dense::reference::forward(
            MatMut::from_row_major(&mut want, 1, outputs),
            Accum::Replace,
            x,
            w,
            Some(&bias),
            Activation::Sigmoid,
        );
        for o in 0..outputs {
            assert!(
                (got[2 * o] - want[o]).abs() <= 1e-5,
                "out {outputs}, column {o}: {} vs {}",
                got[2 * o],
                want[o]
            );
            assert!(
                got[2 * o + 1].is_nan(),
                "out {outputs}: the gap after column {o} was written"
            );
        }
    }
}

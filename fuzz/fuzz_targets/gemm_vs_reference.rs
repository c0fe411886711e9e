//! sgemm and dgemm on fuzzer-chosen shapes, strides, α, β and raw bit
//! patterns, on every ISA path, against the f64 reference; stride gaps must
//! stay untouched.
#![no_main]

use densekit::gemm::{Accum, Element, Isa, MatMut, MatRef, Par, gemm_with_isa, reference};
use libfuzzer_sys::fuzz_target;

/// Reads fuzzer bytes as a stream of small choices.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn bits32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
}

#[derive(Clone, Copy, Debug)]
enum Layout {
    Row,
    Col,
    PaddedRow,
    NegRow,
}

/// Builds a NaN-filled buffer and the strides of a `rows × cols` view into it.
fn layout(kind: u8, rows: usize, cols: usize) -> (Layout, usize, isize, isize) {
    let (r, c) = (rows as isize, cols as isize);
    match kind % 4 {
        0 => (Layout::Row, rows * cols, c, 1),
        1 => (Layout::Col, rows * cols, 1, r),
        2 => (Layout::PaddedRow, rows * (cols + 2), c + 2, 1),
        _ => (Layout::NegRow, rows * (cols + 1), -(c + 1), 1),
    }
}

fn value<T: Element>(input: &mut Input, raw: bool) -> T {
    if raw {
        // Arbitrary bit patterns: NaN, ±Inf, −0.0, subnormals.
        T::from_f64(f32::from_bits(input.bits32()) as f64)
    } else {
        T::from_f64((input.byte() as f64 - 128.0) / 32.0)
    }
}

fn run<T: Element>(input: &mut Input, isa: Isa) {
    let (m, k, n) = ((input.byte() % 65) as usize, (input.byte() % 65) as usize, (input.byte() % 65) as usize);
    let (la, lb, lc) = (input.byte(), input.byte(), input.byte());
    let scalars = [0.0, 1.0, -0.5, 2.25];
    let (alpha, beta) = (scalars[(input.byte() % 4) as usize], scalars[(input.byte() % 4) as usize]);
    let raw = input.byte() % 8 == 0;
    let nan = T::from_f64(f64::NAN);
    let make = |kind, rows: usize, cols: usize, fill: &mut dyn FnMut() -> T| {
        let (_, len, rs, cs) = layout(kind, rows, cols);
        let mut buf = vec![nan; if rows * cols == 0 { 0 } else { len }];
        {
            let mut v = MatMut::from_strides(&mut buf, rows, cols, rs, cs);
            for i in 0..rows {
                for j in 0..cols {
                    v.set(i, j, fill());
                }
            }
        }
        (buf, rs, cs)
    };
    let mut next = || value::<T>(input, raw);
    // α = 0 must not read A or B: fill them with NaN then.
    let mut poison = || nan;
    let (a, rsa, csa) = if alpha == 0.0 { make(la, m, k, &mut poison) } else { make(la, m, k, &mut next) };
    let (b, rsb, csb) = if alpha == 0.0 { make(lb, k, n, &mut poison) } else { make(lb, k, n, &mut next) };
    let (mut c, rsc, csc) = if beta == 0.0 { make(lc, m, n, &mut poison) } else { make(lc, m, n, &mut next) };
    let c0 = c.clone();
    let (av, bv) = (MatRef::from_strides(&a, m, k, rsa, csa), MatRef::from_strides(&b, k, n, rsb, csb));
    let mut want = c.clone();
    reference::gemm(MatMut::from_strides(&mut want, m, n, rsc, csc), Accum::Scaled(T::from_f64(beta)), av, bv, T::from_f64(alpha));
    gemm_with_isa(isa, MatMut::from_strides(&mut c, m, n, rsc, csc), Accum::Scaled(T::from_f64(beta)), av, bv, T::from_f64(alpha), Par::Seq)
        .expect("available ISA");
    let c0v = MatRef::from_strides(&c0, m, n, rsc, csc);
    let bound = reference::error_bound(av, bv, T::from_f64(alpha), T::from_f64(beta), (beta != 0.0).then_some(c0v));
    let (got, exp) = (MatRef::from_strides(&c, m, n, rsc, csc), MatRef::from_strides(&want, m, n, rsc, csc));
    let mut covered = vec![false; c.len()];
    {
        let mut probe = vec![0u8; c.len()];
        let mut pv = MatMut::from_strides(&mut probe, m, n, rsc, csc);
        for i in 0..m {
            for j in 0..n {
                pv.set(i, j, 1);
            }
        }
        for (cv, p) in covered.iter_mut().zip(probe) {
            *cv = p == 1;
        }
    }
    for i in 0..m {
        for j in 0..n {
            let (g, w) = (got.get(i, j).to_f64(), exp.get(i, j).to_f64());
            if g == w {
                continue;
            }
            if w.is_nan() || bound[i * n + j].is_nan() || bound[i * n + j].is_infinite() {
                // NaN or infinite inputs: summation order may legally change which
                // non-finite value comes out; nothing to compare.
                continue;
            }
            if g.is_infinite() || w.is_infinite() {
                // Overflow: the other value must sit at the edge of the range
                // (rounding in f32 vs in f64 can land either side of it).
                let largest = if T::EPSILON.to_f64() > 1e-10 { f32::MAX as f64 } else { f64::MAX };
                let finite = if g.is_infinite() { w } else { g };
                assert!(finite.abs() >= largest * 0.5, "{isa}: C[{i},{j}] = {g}, want {w} (m={m} k={k} n={n})");
                continue;
            }
            let tol = bound[i * n + j] + w.abs() * T::EPSILON.to_f64();
            assert!((g - w).abs() <= tol, "{isa}: C[{i},{j}] = {g}, want {w} (m={m} k={k} n={n} α={alpha} β={beta})");
        }
    }
    for (idx, covered) in covered.iter().enumerate() {
        if !covered {
            assert_eq!(c[idx].to_f64().to_bits(), c0[idx].to_f64().to_bits(), "gap {idx} written");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for isa in Isa::available() {
        run::<f32>(&mut Input(data), isa);
        run::<f64>(&mut Input(data), isa);
    }
});

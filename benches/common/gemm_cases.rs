//! What the GEMM benches share: the product shapes, their operands, the raw
//! entry-point signature and, with the `openblas` feature, OpenBLAS.
#![allow(dead_code)]

use densekit::gemm::{Accum, Element, MatMut, MatRef, Par, gemm};

/// OpenBLAS through its C interface (the system library, linked only into
/// this bench when the `openblas` feature is on).
#[cfg(feature = "openblas")]
pub mod openblas {
    use std::ffi::{CStr, c_char, c_int};

    const ROW_MAJOR: c_int = 101;
    const NO_TRANS: c_int = 111;
    const TRANS: c_int = 112;

    #[link(name = "openblas")]
    unsafe extern "C" {
        fn cblas_sgemm(
            layout: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        fn openblas_set_num_threads(threads: c_int);
        fn openblas_get_corename() -> *const c_char;
        fn openblas_get_config() -> *const c_char;
    }

    /// Sets OpenBLAS's thread count.
    pub fn threads(n: usize) {
        // SAFETY: a plain setter of the library's thread count.
        unsafe { openblas_set_num_threads(n as c_int) }
    }

    /// The kernel OpenBLAS picked for this CPU and its build.
    pub fn describe() -> String {
        // SAFETY: both return static NUL-terminated strings.
        unsafe {
            format!(
                "{} ({})",
                CStr::from_ptr(openblas_get_corename()).to_string_lossy(),
                CStr::from_ptr(openblas_get_config()).to_string_lossy()
            )
        }
    }

    /// `C = A·B`, all dense; A (B) column-major when `a_col` (`b_col`).
    pub fn sgemm(o: &mut super::Operands<f32>, case: &super::Case) {
        let super::Case {
            m,
            k,
            n,
            a_col,
            b_col,
        } = *case;
        let (ta, lda) = if a_col { (TRANS, m) } else { (NO_TRANS, k) };
        let (tb, ldb) = if b_col { (TRANS, k) } else { (NO_TRANS, n) };
        // SAFETY: the buffers hold exactly the operands of this shape.
        unsafe {
            cblas_sgemm(
                ROW_MAJOR,
                ta,
                tb,
                m as c_int,
                n as c_int,
                k as c_int,
                1.0,
                o.a.as_ptr(),
                lda as c_int,
                o.b.as_ptr(),
                ldb as c_int,
                0.0,
                o.c.as_mut_ptr(),
                n as c_int,
            )
        }
    }
}

/// One product: `m×k` A times `k×n` B, each row- or column-major.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a_col: bool,
    pub b_col: bool,
}

impl Case {
    pub fn new((m, k, n): (usize, usize, usize)) -> Case {
        Case {
            m,
            k,
            n,
            a_col: false,
            b_col: false,
        }
    }

    pub fn label(&self) -> String {
        let Case {
            m,
            k,
            n,
            a_col,
            b_col,
        } = *self;
        let layout = match (a_col, b_col) {
            (false, false) => "",
            (true, false) => "-acol",
            (false, true) => "-bcol",
            (true, true) => "-acol-bcol",
        };
        format!("{m}x{k}x{n}{layout}")
    }

    pub fn flops(&self) -> u64 {
        (2 * self.m * self.n * self.k) as u64
    }

    /// Strides of A and B, as the raw entry points take them.
    pub fn strides(&self) -> [isize; 4] {
        let Case {
            m,
            k,
            n,
            a_col,
            b_col,
        } = *self;
        let (rsa, csa) = if a_col { (1, m) } else { (k, 1) };
        let (rsb, csb) = if b_col { (1, k) } else { (n, 1) };
        [rsa as isize, csa as isize, rsb as isize, csb as isize]
    }
}

/// The MLP shapes for batch size `b` (784-256-10 net, plus a 1024-wide layer):
/// forward, output layer, weight gradient, input gradient, wide layer, and
/// the output layer's input gradient.
pub fn mlp_shapes(b: usize) -> [(usize, usize, usize); 6] {
    [
        (b, 784, 256),
        (b, 256, 10),
        (784, b, 256),
        (b, 256, 784),
        (b, 1024, 1024),
        (b, 10, 256),
    ]
}

/// Squares, the MLP shapes at batch 32, 128 and 512, and the weight
/// gradient (A column-major) and output-layer input gradient (B
/// column-major) in the layouts training meets them in.
pub fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = [64, 128, 256, 512, 1024, 2048]
        .map(|s| Case::new((s, s, s)))
        .to_vec();
    for b in [32, 128, 512] {
        cases.extend(mlp_shapes(b).map(Case::new));
    }
    for b in [32, 128, 512] {
        cases.push(Case {
            a_col: true,
            ..Case::new((784, b, 256))
        });
        cases.push(Case {
            b_col: true,
            ..Case::new((b, 10, 256))
        });
    }
    cases
}

/// The 27 shapes the OpenBLAS comparison is judged on: the squares; for
/// batch B = 32, 128, 512 the forward (B×784×256), output layer (B×256×10),
/// weight gradient (784×B×256, row-major and with A column-major), output
/// input gradient (B×10×256, row-major and with B column-major) and the wide
/// layer (B×1024×1024).
pub fn peer_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = [64, 128, 256, 512, 1024, 2048]
        .map(|s| Case::new((s, s, s)))
        .to_vec();
    for b in [32, 128, 512] {
        let [forward, output, weight_grad, _, wide, output_input_grad] = mlp_shapes(b);
        cases.extend([forward, output, weight_grad, wide, output_input_grad].map(Case::new));
        cases.push(Case {
            a_col: true,
            ..Case::new(weight_grad)
        });
        cases.push(Case {
            b_col: true,
            ..Case::new(output_input_grad)
        });
    }
    cases
}

/// Densely stored operands of one case, filled with small exact values.
pub struct Operands<T> {
    pub a: Vec<T>,
    pub b: Vec<T>,
    pub c: Vec<T>,
}

pub fn operands<T: Element>(case: &Case) -> Operands<T> {
    let Case { m, k, n, .. } = *case;
    let fill = |len: usize, seed: usize| -> Vec<T> {
        (0..len)
            .map(|i| T::from_f64(((i * 7 + seed) % 23) as f64 / 23.0 - 0.5))
            .collect()
    };
    Operands {
        a: fill(m * k, 1),
        b: fill(k * n, 2),
        c: vec![T::ZERO; m * n],
    }
}

pub fn views<'a, T: Element>(
    a: &'a [T],
    b: &'a [T],
    case: &Case,
) -> (MatRef<'a, T>, MatRef<'a, T>) {
    let Case { m, k, n, .. } = *case;
    let [rsa, csa, rsb, csb] = case.strides();
    (
        MatRef::from_strides(a, m, k, rsa, csa),
        MatRef::from_strides(b, k, n, rsb, csb),
    )
}

pub fn densekit_run<T: Element>(o: &mut Operands<T>, case: &Case, par: Par) {
    let (a, b) = views(&o.a, &o.b, case);
    gemm(
        MatMut::from_row_major(&mut o.c, case.m, case.n),
        Accum::Replace,
        a,
        b,
        T::ONE,
        par,
    );
}

/// The signature `matrixmultiply::sgemm` and densekit's raw `sgemm` share.
pub type RawSgemm = unsafe fn(
    usize,
    usize,
    usize,
    f32,
    *const f32,
    isize,
    isize,
    *const f32,
    isize,
    isize,
    f32,
    *mut f32,
    isize,
    isize,
);

/// `C = A·B` through a raw entry point (densekit's runs on the rayon pool
/// of the calling thread).
pub fn raw_run(sgemm: RawSgemm, o: &mut Operands<f32>, case: &Case) {
    let Case { m, k, n, .. } = *case;
    let [rsa, csa, rsb, csb] = case.strides();
    // SAFETY: the buffers hold exactly the operands of this shape and strides.
    unsafe {
        sgemm(
            m,
            k,
            n,
            1.0,
            o.a.as_ptr(),
            rsa,
            csa,
            o.b.as_ptr(),
            rsb,
            csb,
            0.0,
            o.c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

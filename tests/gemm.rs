//! GEMM equivalence against the f64 reference, on every kernel path.
//!
//! Every check fills whole buffers with NaN first and writes the in-range
//! elements afterwards, so a kernel that reads outside the view, reads C
//! when β = 0, reads A or B when α = 0, or writes into stride gaps fails.

use densekit::gemm::{Accum, Element, Isa, MatMut, MatRef, Par, gemm, gemm_with_isa, reference};
use rayon::prelude::*;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        bits as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// How a test matrix is laid out in its buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    RowMajor,
    ColMajor,
    /// A row-major matrix of the transposed shape, viewed through `.t()`.
    Transposed,
    /// Row-major with 3 unused (NaN) elements after each row.
    PaddedRows,
    /// Column-major with 2 unused (NaN) elements after each column.
    PaddedCols,
    /// Rows in reverse order (negative row stride), padded.
    NegativeRows,
    /// Both strides negative.
    NegativeBoth,
    /// Every row is the same memory (row stride 0); inputs only.
    BroadcastRows,
}

const INPUT_LAYOUTS: [Layout; 8] = [
    Layout::RowMajor,
    Layout::ColMajor,
    Layout::Transposed,
    Layout::PaddedRows,
    Layout::PaddedCols,
    Layout::NegativeRows,
    Layout::NegativeBoth,
    Layout::BroadcastRows,
];
const OUTPUT_LAYOUTS: [Layout; 7] = [
    Layout::RowMajor,
    Layout::ColMajor,
    Layout::Transposed,
    Layout::PaddedRows,
    Layout::PaddedCols,
    Layout::NegativeRows,
    Layout::NegativeBoth,
];
const ALPHAS_BETAS: [f64; 4] = [0.0, 1.0, -0.5, 2.25];

/// A buffer plus the strides of a `rows × cols` view into it.
struct Strided<T> {
    buf: Vec<T>,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
    transposed: bool,
}

impl<T: Element> Strided<T> {
    fn new(layout: Layout, rows: usize, cols: usize) -> Self {
        let (r, c) = (rows as isize, cols as isize);
        let (len, rs, cs, transposed) = match layout {
            Layout::RowMajor => (rows * cols, c, 1, false),
            Layout::ColMajor => (rows * cols, 1, r, false),
            Layout::Transposed => (rows * cols, c, 1, true),
            Layout::PaddedRows => (rows * (cols + 3), c + 3, 1, false),
            Layout::PaddedCols => (cols * (rows + 2), 1, r + 2, false),
            Layout::NegativeRows => (rows * (cols + 3), -(c + 3), 1, false),
            Layout::NegativeBoth => (rows * (cols + 1), -(c + 1), -1, false),
            Layout::BroadcastRows => (cols, 0, 1, false),
        };
        let len = if rows == 0 || cols == 0 { 0 } else { len };
        Strided {
            buf: vec![T::from_f64(f64::NAN); len],
            rows,
            cols,
            rs,
            cs,
            transposed,
        }
    }

    fn view(&self) -> MatRef<'_, T> {
        if self.transposed {
            MatRef::from_row_major(&self.buf, self.cols, self.rows).t()
        } else {
            MatRef::from_strides(&self.buf, self.rows, self.cols, self.rs, self.cs)
        }
    }

    fn view_mut(&mut self) -> MatMut<'_, T> {
        if self.transposed {
            MatMut::from_row_major(&mut self.buf, self.cols, self.rows).t()
        } else {
            MatMut::from_strides(&mut self.buf, self.rows, self.cols, self.rs, self.cs)
        }
    }

    /// Writes every in-range element with `f(i, j)`; gaps keep their NaN.
    fn fill(&mut self, mut f: impl FnMut(usize, usize) -> f64) {
        let (rows, cols) = (self.rows, self.cols);
        if self.rs == 0 && rows > 0 {
            // Broadcast rows share memory: write one row (every row reads it).
            let mut row = MatMut::from_row_major(&mut self.buf, 1, cols);
            for j in 0..cols {
                row.set(0, j, T::from_f64(f(0, j)));
            }
            return;
        }
        let mut v = self.view_mut();
        for i in 0..rows {
            for j in 0..cols {
                v.set(i, j, T::from_f64(f(i, j)));
            }
        }
    }

    /// Which buffer positions the view covers.
    fn covered(&self) -> Vec<bool> {
        let mut probe = Strided::<f64> {
            buf: vec![0.0; self.buf.len()],
            rows: self.rows,
            cols: self.cols,
            rs: self.rs,
            cs: self.cs,
            transposed: self.transposed,
        };
        probe.fill(|_, _| 1.0);
        probe.buf.iter().map(|&x| x == 1.0).collect()
    }
}

fn bits<T: Element>(x: T) -> u64 {
    x.to_f64().to_bits()
}

#[derive(Clone, Copy)]
struct Case {
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    beta: f64,
    layouts: [Layout; 3],
    seed: u64,
}

/// Runs one product on `isa` and checks it element by element against the
/// reference, and that no byte outside C's view changed.
fn check<T: Element>(isa: Isa, case: &Case, par: Par) {
    let Case {
        m,
        k,
        n,
        alpha,
        beta,
        layouts: [la, lb, lc],
        seed,
    } = *case;
    let mut rng = Rng(seed | 1);
    let mut a = Strided::<T>::new(la, m, k);
    let mut b = Strided::<T>::new(lb, k, n);
    let mut c = Strided::<T>::new(lc, m, n);
    // α = 0: A and B must not be read, so make reading them poison the result.
    let nan_inputs = alpha == 0.0;
    a.fill(|_, _| if nan_inputs { f64::NAN } else { rng.next() });
    b.fill(|_, _| if nan_inputs { f64::NAN } else { rng.next() });
    // β = 0: C must not be read.
    c.fill(|_, _| if beta == 0.0 { f64::NAN } else { rng.next() });

    let accum = Accum::Scaled(T::from_f64(beta));
    let (alpha_t, beta_t) = (T::from_f64(alpha), T::from_f64(beta));
    let c0 = c.buf.clone();
    let mut expected = Strided::<T>::new(lc, m, n);
    expected.buf.clone_from(&c0);
    reference::gemm(expected.view_mut(), accum, a.view(), b.view(), alpha_t);
    let bound = if nan_inputs {
        vec![0.0; m * n]
    } else {
        let c0_view = Strided {
            buf: c0.clone(),
            ..Strided::<T>::new(lc, m, n)
        };
        let c0_ref = (beta != 0.0).then(|| c0_view.view());
        reference::error_bound(a.view(), b.view(), alpha_t, beta_t, c0_ref)
    };

    gemm_with_isa(isa, c.view_mut(), accum, a.view(), b.view(), alpha_t, par)
        .unwrap_or_else(|e| panic!("{e}"));

    let ctx = || {
        format!(
            "{isa} {}: m={m} k={k} n={n} α={alpha} β={beta} A {la:?} B {lb:?} C {lc:?}",
            std::any::type_name::<T>()
        )
    };
    let (got, want) = (c.view(), expected.view());
    for i in 0..m {
        for j in 0..n {
            let (g, w) = (got.get(i, j).to_f64(), want.get(i, j).to_f64());
            let tol = bound[i * n + j] + w.abs() * T::EPSILON.to_f64();
            assert!(
                (g - w).abs() <= tol,
                "{}: C[{i},{j}] = {g}, reference {w}, error {} > bound {tol}",
                ctx(),
                (g - w).abs()
            );
        }
    }
    for (idx, covered) in c.covered().into_iter().enumerate() {
        if !covered {
            assert_eq!(
                bits(c.buf[idx]),
                bits(c0[idx]),
                "{}: buffer position {idx} outside C's view was written",
                ctx()
            );
        }
    }
}

/// Runs `f` for every ISA this CPU has, and both element types.
fn for_each_path(mut f: impl FnMut(Isa, &dyn Fn(&Case, Isa))) {
    for isa in Isa::available() {
        f(isa, &|case, isa| {
            check::<f32>(isa, case, Par::Seq);
            check::<f64>(isa, case, Par::Seq);
        });
    }
}

#[test]
fn every_small_shape_on_every_path() {
    // Covers m, n in 0..=2·MR+1 and 0..=2·NR+1 for every kernel (MR ≤ 12,
    // NR ≤ 32), cycling layouts and α/β so each combination appears often.
    let ks = [0, 1, 2, 7, 8, 9];
    for_each_path(|isa, run| {
        let mut index = 0usize;
        for m in 0..=25 {
            for n in 0..=65 {
                for &k in &ks {
                    index += 1;
                    let case = Case {
                        m,
                        k,
                        n,
                        alpha: ALPHAS_BETAS[index % 4],
                        beta: ALPHAS_BETAS[(index / 4) % 4],
                        layouts: [
                            INPUT_LAYOUTS[index % 8],
                            INPUT_LAYOUTS[(index / 3) % 8],
                            OUTPUT_LAYOUTS[(index / 5) % 7],
                        ],
                        seed: index as u64,
                    };
                    run(&case, isa);
                }
            }
        }
    });
}

#[test]
fn every_alpha_beta_and_layout_pair() {
    for_each_path(|isa, run| {
        let mut seed = 0;
        for &alpha in &ALPHAS_BETAS {
            for &beta in &ALPHAS_BETAS {
                for &la in &INPUT_LAYOUTS {
                    for &lb in &INPUT_LAYOUTS {
                        for &lc in &OUTPUT_LAYOUTS {
                            seed += 1;
                            let case = Case {
                                m: 13,
                                k: 9,
                                n: 35,
                                alpha,
                                beta,
                                layouts: [la, lb, lc],
                                seed,
                            };
                            run(&case, isa);
                        }
                    }
                }
            }
        }
    });
}

/// Shapes at the blocking boundaries: k around KC, m around MC, n around NC,
/// primes, a larger odd shape, and B rows a multiple of 4 KiB apart.
#[test]
fn blocking_boundaries_and_primes() {
    let shapes: &[(usize, usize, usize)] = &[
        (13, 255, 33),
        (7, 256, 17),
        (13, 257, 33),
        (6, 511, 16),
        (11, 513, 19),
        (71, 5, 9),
        (72, 5, 9),
        (73, 5, 9),
        (143, 3, 17),
        (144, 3, 17),
        (145, 3, 17),
        (289, 2, 5),
        (5, 2, 4079),
        (3, 2, 4080),
        (4, 3, 4081),
        (2, 2, 8161),
        (47, 3, 31),
        (48, 2, 33),
        (49, 3, 65),
        (5, 1023, 33),
        (13, 1024, 31),
        (25, 1025, 35),
        (3, 2, 4063),
        (5, 2, 4064),
        (4, 3, 4065),
        (2, 2, 8129),
        (97, 89, 101),
        (31, 37, 41),
        (266, 267, 265),
        // Row-major B rows 4 KiB apart (f32 at n = 1024, f64 at 512): read
        // in place for few rows of A on some kernels, packed for more.
        (29, 33, 1024),
        (131, 9, 1024),
        (29, 33, 512),
    ];
    let layouts = [
        [Layout::RowMajor, Layout::RowMajor, Layout::RowMajor],
        [Layout::ColMajor, Layout::Transposed, Layout::ColMajor],
        [Layout::PaddedRows, Layout::PaddedCols, Layout::PaddedRows],
        [
            Layout::NegativeRows,
            Layout::NegativeBoth,
            Layout::NegativeRows,
        ],
        [Layout::Transposed, Layout::RowMajor, Layout::PaddedCols],
    ];
    for_each_path(|isa, run| {
        for (s, &(m, k, n)) in shapes.iter().enumerate() {
            for (l, &layouts) in layouts.iter().enumerate() {
                let (alpha, beta) = (ALPHAS_BETAS[(s + l) % 4], ALPHAS_BETAS[(s + 2 * l + 1) % 4]);
                let case = Case {
                    m,
                    k,
                    n,
                    alpha,
                    beta,
                    layouts,
                    seed: (s * 16 + l) as u64,
                };
                run(&case, isa);
            }
        }
    });
}

#[test]
fn threaded_runs_match_the_reference() {
    for isa in Isa::available() {
        for threads in [2, 3] {
            let case = Case {
                m: 300,
                k: 530,
                n: 290,
                alpha: -0.5,
                beta: 2.25,
                layouts: [Layout::RowMajor, Layout::Transposed, Layout::PaddedRows],
                seed: 7,
            };
            check::<f32>(isa, &case, Par::Threads(threads));
            check::<f64>(isa, &case, Par::Threads(threads));
            // Few rows of a column-major A: its packed blocks are shared by
            // several tasks (packed once, by all threads, before they start).
            let shared_a = Case {
                m: 100,
                layouts: [Layout::Transposed, Layout::RowMajor, Layout::RowMajor],
                ..case
            };
            check::<f32>(isa, &shared_a, Par::Threads(threads));
            check::<f64>(isa, &shared_a, Par::Threads(threads));
            // Rows of A 4 KiB apart (k = 1024), copied to a padded stride
            // once and shared; inside a pool, so the driver's own two-thread
            // plan runs (from outside, a product this size runs in parts).
            let aliased = Case {
                m: 200,
                k: 1024,
                n: 130,
                layouts: [Layout::RowMajor, Layout::RowMajor, Layout::RowMajor],
                ..case
            };
            Par::Threads(threads).install(|| {
                check::<f32>(isa, &aliased, Par::Auto);
                check::<f64>(isa, &aliased, Par::Auto);
            });
        }
    }
}

/// Results must not depend on the number of threads, bit for bit.
fn assert_thread_count_invariant<T: Element>(isa: Isa, [m, k, n]: [usize; 3]) {
    let mut rng = Rng(99);
    let a: Vec<T> = (0..m * k).map(|_| T::from_f64(rng.next())).collect();
    let b: Vec<T> = (0..k * n).map(|_| T::from_f64(rng.next())).collect();
    let c0: Vec<T> = (0..m * n).map(|_| T::from_f64(rng.next())).collect();
    let run = |par: Par| {
        let mut c = c0.clone();
        gemm_with_isa(
            isa,
            MatMut::from_row_major(&mut c, m, n),
            Accum::Scaled(T::from_f64(0.75)),
            MatRef::from_row_major(&a, m, k),
            MatRef::from_row_major(&b, k, n),
            T::from_f64(1.25),
            par,
        )
        .unwrap();
        c
    };
    let single = run(Par::Seq);
    for threads in [1, 2, 3, 4] {
        let multi = run(Par::Threads(threads));
        let differing = single
            .iter()
            .zip(&multi)
            .filter(|(x, y)| bits(**x) != bits(**y))
            .count();
        assert_eq!(
            differing,
            0,
            "{isa} {}: {m}×{k}×{n} with {threads} threads differs from 1 thread in {differing} elements",
            std::any::type_name::<T>()
        );
    }
}

#[test]
fn bitwise_identical_for_any_thread_count() {
    for isa in Isa::available() {
        assert_thread_count_invariant::<f32>(isa, [1024, 1030, 1000]);
        assert_thread_count_invariant::<f64>(isa, [515, 700, 333]);
        // Skinny, transposed-orientation shape.
        assert_thread_count_invariant::<f32>(isa, [3000, 256, 10]);
    }
}

#[test]
fn raw_entry_points_use_the_calling_pool_deterministically() {
    let (m, k, n) = (400, 600, 500);
    let mut rng = Rng(5);
    let a: Vec<f32> = (0..m * k).map(|_| rng.next() as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.next() as f32).collect();
    let run = |threads: usize| {
        let mut c = vec![f32::NAN; m * n];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            // SAFETY: every index is in range of the buffers above.
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
                    1,
                    k as isize,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                )
            }
        });
        c
    };
    let one = run(1);
    for threads in [2, 3] {
        assert!(
            one.iter()
                .zip(run(threads))
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
    }
}

/// Our raw entry points are drop-in replacements: same arguments, results
/// within the error bound of matrixmultiply's, including negative and zero strides.
#[test]
fn raw_entry_points_agree_with_matrixmultiply() {
    let (m, k, n) = (37, 300, 29);
    let mut rng = Rng(11);
    let a: Vec<f64> = (0..m * k).map(|_| rng.next()).collect();
    let b: Vec<f64> = (0..k * n).map(|_| rng.next()).collect();
    let c0: Vec<f64> = (0..m * n).map(|_| rng.next()).collect();
    // (rsa, csa, a offset) variants: row-major, col-major, reversed rows, broadcast row.
    let a_layouts: [(isize, isize, usize); 4] = [
        (k as isize, 1, 0),
        (1, m as isize, 0),
        (-(k as isize), 1, (m - 1) * k),
        (0, 1, 0),
    ];
    for (rsa, csa, off) in a_layouts {
        for beta in [0.0, -0.5] {
            let mut ours = c0.clone();
            let mut theirs = c0.clone();
            // SAFETY: each layout addresses only elements inside `a`, `b`, `c`.
            unsafe {
                let a_ptr = a.as_ptr().add(off);
                densekit::dgemm(
                    m,
                    k,
                    n,
                    2.25,
                    a_ptr,
                    rsa,
                    csa,
                    b.as_ptr(),
                    n as isize,
                    1,
                    beta,
                    ours.as_mut_ptr(),
                    1,
                    m as isize,
                );
                matrixmultiply::dgemm(
                    m,
                    k,
                    n,
                    2.25,
                    a_ptr,
                    rsa,
                    csa,
                    b.as_ptr(),
                    n as isize,
                    1,
                    beta,
                    theirs.as_mut_ptr(),
                    1,
                    m as isize,
                );
            }
            for (x, y) in ours.iter().zip(&theirs) {
                assert!(
                    (x - y).abs() <= 1e-12 * (1.0 + y.abs()) * k as f64,
                    "{x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn alpha_zero_and_k_zero_never_read_inputs() {
    let nan = [f32::NAN; 12];
    for isa in Isa::available() {
        let mut c = [1.0f32; 6];
        gemm_with_isa(
            isa,
            MatMut::from_row_major(&mut c, 2, 3),
            Accum::Scaled(-0.5),
            MatRef::from_row_major(&nan[..8], 2, 4),
            MatRef::from_row_major(&nan, 4, 3),
            0.0,
            Par::Seq,
        )
        .unwrap();
        assert_eq!(c, [-0.5; 6]);
        let mut c = [f32::NAN; 6];
        gemm_with_isa(
            isa,
            MatMut::from_row_major(&mut c, 2, 3),
            Accum::Replace,
            MatRef::from_row_major(&[], 2, 0),
            MatRef::from_row_major(&[], 0, 3),
            1.0,
            Par::Seq,
        )
        .unwrap();
        assert_eq!(c, [0.0; 6]);
    }
}

/// Set `DENSEKIT_REQUIRE_ISA=avx2` (as `.ci/run` does on x86-64; `neon` in
/// its emulated aarch64 run) to make the suite fail when that kernel path
/// cannot run here, instead of silently testing only the portable one.
#[test]
fn required_isa_paths_are_present_and_selected() {
    if let Ok(names) = std::env::var("DENSEKIT_REQUIRE_ISA") {
        for name in names.split(',').filter(|s| !s.trim().is_empty()) {
            let isa = Isa::from_name(name).unwrap_or_else(|| panic!("unknown ISA `{name}`"));
            assert!(
                isa.is_available(),
                "required ISA {isa} is not available on this CPU"
            );
            // The forced path really runs that kernel: it must not report unavailable.
            let mut c = [0.0f32];
            gemm_with_isa(
                isa,
                MatMut::from_row_major(&mut c, 1, 1),
                Accum::Replace,
                MatRef::from_row_major(&[3.0], 1, 1),
                MatRef::from_row_major(&[2.0], 1, 1),
                1.0,
                Par::Seq,
            )
            .unwrap();
            assert_eq!(c, [6.0]);
            assert!(isa.has_run(), "required ISA {isa}: its kernel did not run");
        }
    }
    if let Ok(name) = std::env::var(densekit::gemm::ISA_ENV_VAR) {
        let forced = Isa::from_name(&name).expect("DENSEKIT_ISA names a known ISA");
        assert_eq!(
            Isa::selected(),
            forced,
            "DENSEKIT_ISA={name} was not honoured"
        );
    } else {
        assert_eq!(Isa::selected(), Isa::best(), "unforced, the best ISA runs");
    }
    println!("selected ISA: {}", Isa::selected());
}

#[test]
fn unavailable_isa_is_an_error_not_a_fallback() {
    for isa in Isa::ALL {
        let mut c = [0.0f64];
        let result = gemm_with_isa(
            isa,
            MatMut::from_row_major(&mut c, 1, 1),
            Accum::Replace,
            MatRef::from_row_major(&[1.0], 1, 1),
            MatRef::from_row_major(&[1.0], 1, 1),
            1.0,
            Par::Seq,
        );
        assert_eq!(result.is_ok(), isa.is_available());
        assert_eq!(c[0], if isa.is_available() { 1.0 } else { 0.0 });
    }
}

#[test]
#[should_panic(expected = "A is 2×3 and B is 4×2")]
fn inner_dimension_mismatch_names_both_shapes() {
    let mut c = [0.0f32; 4];
    gemm(
        MatMut::from_row_major(&mut c, 2, 2),
        Accum::Replace,
        MatRef::from_row_major(&[0.0; 6], 2, 3),
        MatRef::from_row_major(&[0.0; 8], 4, 2),
        1.0,
        Par::Auto,
    );
}

#[test]
#[should_panic(expected = "C is 3×2 but A·B is 2×2")]
fn output_shape_mismatch_names_both_shapes() {
    let mut c = [0.0f32; 6];
    gemm(
        MatMut::from_row_major(&mut c, 3, 2),
        Accum::Replace,
        MatRef::from_row_major(&[0.0; 6], 2, 3),
        MatRef::from_row_major(&[0.0; 6], 3, 2),
        1.0,
        Par::Auto,
    );
}

#[test]
#[should_panic(expected = "needs 12 elements but the slice has 11")]
fn short_slice_is_rejected_before_any_work() {
    MatRef::from_strides(&[0.0f32; 11], 3, 4, 4, 1);
}

#[test]
#[should_panic(expected = "alias")]
fn self_aliasing_output_is_rejected() {
    let mut buf = [0.0f32; 8];
    MatMut::from_strides(&mut buf, 3, 3, 2, 1);
}

#[test]
#[should_panic(expected = "Par::Threads(0)")]
fn zero_threads_is_rejected() {
    let mut c = [0.0f32];
    gemm(
        MatMut::from_row_major(&mut c, 1, 1),
        Accum::Replace,
        MatRef::from_row_major(&[1.0], 1, 1),
        MatRef::from_row_major(&[1.0], 1, 1),
        1.0,
        Par::Threads(0),
    );
}

/// `Par::install` keeps its pool's other threads spinning while `f` runs;
/// they must stop when `f` panics and when installs nest, never hanging, and
/// the kernel calls inside stay deterministic.
#[test]
fn install_survives_panics_and_nesting() {
    let (a, b) = (vec![0.5f32; 112 * 112], vec![0.25f32; 112 * 112]);
    let product = |par: Par| {
        let mut c = vec![0.0f32; 112 * 112];
        let (av, bv) = (
            MatRef::from_row_major(&a, 112, 112),
            MatRef::from_row_major(&b, 112, 112),
        );
        gemm(
            MatMut::from_row_major(&mut c, 112, 112),
            Accum::Replace,
            av,
            bv,
            1.0,
            par,
        );
        c
    };
    let expect = product(Par::Seq);
    for par in [Par::Threads(2), Par::Threads(3), Par::Auto] {
        let caught = std::panic::catch_unwind(|| par.install(|| panic!("inside install")));
        assert!(caught.is_err());
        let nested = par.install(|| par.install(|| product(par)));
        assert_eq!(nested, expect);
        // Installs started from the pool's own threads, several at once.
        let results: Vec<Vec<f32>> = par.install(|| {
            (0..4)
                .into_par_iter()
                .map(|_| par.install(|| product(par)))
                .collect()
        });
        assert!(results.iter().all(|c| *c == expect));
    }
}

/// Regression (fuzzing, `gemm_vs_reference`): with k = 0 the result is β·C,
/// overflowing to ±∞ exactly where β·C does, on every path.
#[test]
fn k_zero_beta_scaling_overflows_like_the_reference() {
    for isa in Isa::available() {
        let mut c = [-f32::MAX, f32::MAX, 1.0, -0.0];
        gemm_with_isa(
            isa,
            MatMut::from_row_major(&mut c, 2, 2),
            Accum::Scaled(2.25),
            MatRef::from_row_major(&[], 2, 0),
            MatRef::from_row_major(&[], 0, 2),
            2.25,
            Par::Seq,
        )
        .unwrap();
        assert_eq!(c, [f32::NEG_INFINITY, f32::INFINITY, 2.25, -0.0], "{isa}");
    }
}

/// Regression (fuzzing, `gemm_vs_reference`): results in the subnormal range
/// carry absolute, not relative, rounding error; the reference bound covers it.
#[test]
fn subnormal_results_are_within_the_bound() {
    let tiny = f32::from_bits(0x0000_4d2f); // ≈ 2.76e-41, subnormal
    let a = [-tiny, tiny * 3.0];
    let b = [1.234_567_9f32];
    let c0 = [tiny * 0.7, -tiny * 1.1];
    for isa in Isa::available() {
        let mut c = c0;
        let (av, bv) = (
            MatRef::from_row_major(&a, 2, 1),
            MatRef::from_row_major(&b, 1, 1),
        );
        gemm_with_isa(
            isa,
            MatMut::from_row_major(&mut c, 2, 1),
            Accum::Scaled(1.0),
            av,
            bv,
            2.25,
            Par::Seq,
        )
        .unwrap();
        let mut want = c0;
        reference::gemm(
            MatMut::from_row_major(&mut want, 2, 1),
            Accum::Scaled(1.0),
            av,
            bv,
            2.25,
        );
        let bound =
            reference::error_bound(av, bv, 2.25, 1.0, Some(MatRef::from_row_major(&c0, 2, 1)));
        for i in 0..2 {
            assert!(
                c[i].is_subnormal() || c[i] == 0.0,
                "{isa}: test needs subnormal results, got {}",
                c[i]
            );
            assert!(
                ((c[i] - want[i]).abs() as f64)
                    <= bound[i] + (want[i].abs() as f64) * f32::EPSILON as f64,
                "{isa}: {} vs {}",
                c[i],
                want[i]
            );
        }
    }
}

#[test]
fn one_row_and_one_column_products_on_every_path() {
    // A single row of C runs on the one-row kernel across the widths its
    // leftover columns fall to (256, 32 and 16 wide on AVX-512), a single
    // column on it transposed; k crosses the panel depths (256, 1024).
    let widths = [
        1, 2, 10, 15, 16, 17, 31, 33, 95, 96, 97, 128, 255, 256, 257, 300, 513,
    ];
    let ks = [0, 1, 5, 256, 257, 1025];
    for_each_path(|isa, run| {
        let mut index = 0usize;
        for &wide in &widths {
            for &k in &ks {
                for [m, n] in [[1, wide], [wide, 1]] {
                    index += 1;
                    let case = Case {
                        m,
                        k,
                        n,
                        alpha: ALPHAS_BETAS[(index + 1) % 4],
                        beta: ALPHAS_BETAS[(index / 4) % 4],
                        layouts: [
                            INPUT_LAYOUTS[index % 8],
                            INPUT_LAYOUTS[(index / 2) % 8],
                            OUTPUT_LAYOUTS[(index / 3) % 7],
                        ],
                        seed: index as u64,
                    };
                    run(&case, isa);
                }
            }
        }
    });
}

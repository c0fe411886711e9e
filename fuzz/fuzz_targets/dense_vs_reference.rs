//! Fused dense forward and backward for every activation against the unfused
//! f64 reference, on fuzzer-chosen shapes and values; optionally with an
//! image-like (mostly zero) x and a layer wide enough for the GEMMs to skip
//! x's zero blocks.
#![no_main]

use densekit::activation::Activation;
use densekit::dense::{self, BackwardOptions, Grads, Workspace, reference};
use densekit::gemm::{Accum, MatMut, MatRef, Par};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let (batch, inputs, outputs) = ((next() % 40) as usize + 1, (next() % 40) as usize + 1, (next() % 40) as usize + 1);
    let acts = [
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::PRelu(0.25),
        Activation::Sigmoid,
        Activation::Tanh,
    ];
    let act = acts[(next() % 6) as usize];
    let mode = next();
    let outputs = outputs + if mode & 1 != 0 { 64 } else { 0 };
    let mut v = |len: usize| -> Vec<f64> { (0..len).map(|_| (next() as f64 - 128.0) / 64.0).collect() };
    let (mut x, w, b, dy) = (v(batch * inputs), v(outputs * inputs), v(outputs), v(batch * outputs));
    if mode & 2 != 0 {
        // Image-like: three columns in four zero in every row (a shared
        // black border), so packed slivers of x have all-zero columns.
        for (i, value) in x.iter_mut().enumerate() {
            if (i % inputs) % 4 != 0 {
                *value = 0.0;
            }
        }
    }
    let (xv, wv) = (MatRef::from_row_major(&x, batch, inputs), MatRef::from_row_major(&w, outputs, inputs));
    let mut y = vec![f64::NAN; batch * outputs];
    dense::forward(MatMut::from_row_major(&mut y, batch, outputs), Accum::Replace, xv, wv, Some(&b), act, Par::Seq);
    let z = reference::pre_activation(xv, wv, Some(&b));
    let eps = f64::EPSILON;
    for (idx, (&got, &z)) in y.iter().zip(&z).enumerate() {
        let (r, o) = (idx / outputs, idx % outputs);
        // GEMM bound on z (every activation here is at most 1-Lipschitz), plus the activation's own ulps.
        let mag: f64 = (0..inputs).map(|i| (x[r * inputs + i] * w[o * inputs + i]).abs()).sum::<f64>() + b[o].abs();
        let want = reference::activate(act, z);
        let tol = 4.0 * (inputs as f64 + 2.0) * eps * mag + 16.0 * eps * want.abs() + 1e-300;
        assert!((got - want).abs() <= tol, "y[{idx}] = {got}, want {want} ({act:?})");
    }
    let (mut dw, mut db, mut dx) = (vec![f64::NAN; w.len()], vec![f64::NAN; b.len()], vec![f64::NAN; x.len()]);
    dense::backward(Grads { dw: MatMut::from_row_major(&mut dw, outputs, inputs), db: Some(&mut db), dx: Some(MatMut::from_row_major(&mut dx, batch, inputs)) }, xv, wv, MatRef::from_row_major(&y, batch, outputs), MatRef::from_row_major(&dy, batch, outputs), act, BackwardOptions { accum: Accum::Replace, l2: None, par: Par::Seq }, &mut Workspace::new());
    let want = reference::backward(xv, wv, MatRef::from_row_major(&y, batch, outputs), MatRef::from_row_major(&dy, batch, outputs), act, None);
    // |dz| ≤ |dy| (every derivative here is at most 1 in magnitude).
    let dw_mag = |o: usize, i: usize| (0..batch).map(|r| (dy[r * outputs + o] * x[r * inputs + i]).abs()).sum::<f64>();
    let dx_mag = |r: usize, i: usize| (0..outputs).map(|o| (dy[r * outputs + o] * w[o * inputs + i]).abs()).sum::<f64>();
    let db_mag = |o: usize| (0..batch).map(|r| dy[r * outputs + o].abs()).sum::<f64>();
    let check = |name: &str, got: &[f64], want: &[f64], k: usize, mag: &dyn Fn(usize) -> f64| {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let tol = 8.0 * (k as f64 + 4.0) * eps * mag(i) + 1e-300;
            assert!((g - w).abs() <= tol, "{name}[{i}] = {g}, want {w} ({act:?})");
        }
    };
    check("dw", &dw, &want.dw, batch, &|i| dw_mag(i / inputs, i % inputs));
    check("db", &db, &want.db, batch, &|o| db_mag(o));
    check("dx", &dx, &want.dx, outputs, &|i| dx_mag(i / inputs, i % inputs));
});

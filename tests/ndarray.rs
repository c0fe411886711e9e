//! `ndarray` views through densekit's GEMM and back (the `ndarray` feature):
//! `cargo test --release --features ndarray --test ndarray`.
#![cfg(feature = "ndarray")]

use densekit::gemm::ndarray::NotContiguous;
use densekit::gemm::{Accum, MatMut, MatRef, Par, gemm};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

fn filled(rows: usize, cols: usize, seed: usize) -> Array2<f64> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 31 + j * 17 + seed) % 13) as f64 - 6.0
    })
}

/// Every layout of a contiguous 5 × 4 view: row- and column-major, each
/// axis forward or reversed.
fn layouts(a: &Array2<f64>) -> Vec<ArrayView2<'_, f64>> {
    let t = a.t();
    vec![
        a.view(),
        a.slice(s![..;-1, ..]),
        a.slice(s![.., ..;-1]),
        a.slice(s![..;-1, ..;-1]),
        t,
        t.slice_move(s![..;-1, ..]),
    ]
}

#[test]
fn views_keep_their_elements_both_ways() {
    let a = filled(5, 4, 1);
    for v in layouts(&a) {
        let m = MatRef::try_from(v).unwrap();
        assert_eq!(m.shape(), v.dim());
        assert_eq!(
            (m.row_stride(), m.col_stride()),
            (v.strides()[0], v.strides()[1])
        );
        for ((i, j), x) in v.indexed_iter() {
            assert_eq!(m.get(i, j), *x, "({i}, {j}) of strides {:?}", v.strides());
        }
        let back: ArrayView2<f64> = m.into();
        assert_eq!(back, v);
        assert_eq!(back.strides(), v.strides());
    }
}

#[test]
fn gemm_on_negative_and_transposed_views_matches_ndarray() {
    let (a, b) = (filled(5, 4, 1), filled(4, 6, 2));
    let b_rev = filled(6, 4, 3);
    for av in layouts(&a) {
        // B: 4 × 6 forward, or the reversed-column transpose of a 6 × 4.
        for bv in [b.view(), b_rev.t().slice_move(s![.., ..;-1])] {
            if av.ncols() != bv.nrows() {
                continue;
            }
            let expected = av.dot(&bv);
            // C written through a reversed, transposed ndarray view.
            let mut c = Array2::<f64>::from_elem((bv.ncols(), av.nrows()), f64::NAN);
            let mut cv: ArrayViewMut2<f64> = c.view_mut().reversed_axes();
            cv.invert_axis(ndarray::Axis(0));
            let cm = MatMut::try_from(cv).unwrap();
            gemm(
                cm,
                Accum::Replace,
                MatRef::try_from(av).unwrap(),
                MatRef::try_from(bv).unwrap(),
                1.0,
                Par::Seq,
            );
            let mut got = c.view().reversed_axes();
            got.invert_axis(ndarray::Axis(0));
            assert_eq!(
                got,
                expected,
                "A strides {:?}, B strides {:?}",
                av.strides(),
                bv.strides()
            );
        }
    }
}

#[test]
fn mutable_views_write_in_place_and_convert_back() {
    let mut c = Array2::<f32>::zeros((3, 4));
    {
        let mut v = c.slice_mut(s![..;-1, ..]);
        let mut m = MatMut::try_from(v.view_mut()).unwrap();
        m.set(0, 1, 7.0); // row 0 of the reversed view is row 2
        let mut back: ArrayViewMut2<f32> = m.into();
        back[[1, 3]] = 5.0;
    }
    assert_eq!((c[[2, 1]], c[[1, 3]]), (7.0, 5.0));
}

#[test]
fn views_with_gaps_are_refused_by_name() {
    let a = filled(6, 6, 4);
    let every_other = a.slice(s![.., ..;2]);
    let err: NotContiguous = MatRef::try_from(every_other).unwrap_err();
    assert_eq!((err.shape, err.strides), ((6, 3), (6, 2)));
    assert!(err.to_string().contains("gaps"), "{err}");
    // A window into a wider array has gaps between its rows.
    assert!(MatRef::try_from(a.slice(s![1..3, 1..3])).is_err());
    let mut b = a.clone();
    assert!(MatMut::try_from(b.slice_mut(s![..;2, ..])).is_err());
    // A piece of one row is contiguous and converts; a piece of a column
    // has the rest of each row between its elements.
    let row = MatRef::try_from(a.slice(s![2..3, 1..4])).unwrap();
    assert_eq!(row.get(0, 2), a[[2, 3]]);
    assert!(MatRef::try_from(a.slice(s![1..4, 2..3])).is_err());
    // A column of a column-major array is contiguous.
    let f = a.t().as_standard_layout().into_owned().reversed_axes();
    let col = MatRef::try_from(f.slice(s![1..4, 2..3])).unwrap();
    assert_eq!(col.get(2, 0), a[[3, 2]]);
    // Broadcasting (stride 0) repeats elements: refused too.
    let row = a.row(0);
    let broadcast = row.broadcast((3, 6)).unwrap();
    assert!(MatRef::try_from(broadcast).is_err());
}

#[test]
fn empty_views_convert() {
    let a = Array2::<f32>::zeros((0, 3));
    let m = MatRef::try_from(a.view()).unwrap();
    assert_eq!(m.shape(), (0, 3));
    let back: ArrayView2<f32> = m.into();
    assert_eq!(back.dim(), (0, 3));
}

//! Conversions between `ndarray`'s 2-D views and densekit's (the `ndarray`
//! feature), zero-copy and with any strides, negative ones included.
//!
//! densekit's views borrow the slice that spans their elements, so an
//! `ndarray` view converts when its elements fill that span exactly: any
//! contiguous layout, row- or column-major (a transposed view), with either
//! axis reversed. A view with gaps between its elements (every other
//! column, a window into a wider array) would lend densekit memory that is
//! not its own, which another view may be writing: that conversion fails
//! with [`NotContiguous`]; `.as_standard_layout()` gives a copy that
//! converts, and the raw [`sgemm`](crate::sgemm) takes any strides.
//!
//! ```
//! use densekit::gemm::{gemm, Accum, MatMut, MatRef, Par};
//! use ndarray::{array, s, Array2};
//!
//! let a = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
//! let b = array![[1.0f32, 0.0], [0.0, 1.0]];
//! let mut c = Array2::<f32>::zeros((2, 3));
//! // A with its rows reversed, transposed: 2 × 3, negative strides, no copy.
//! let at = MatRef::try_from(a.slice(s![..;-1, ..]).reversed_axes()).unwrap();
//! gemm(MatMut::try_from(c.view_mut()).unwrap(), Accum::Replace,
//!      MatRef::try_from(b.view()).unwrap(), at, 1.0, Par::Seq);
//! assert_eq!(c, array![[5.0, 3.0, 1.0], [6.0, 4.0, 2.0]]);
//! // And back, without a copy.
//! let back: ndarray::ArrayView2<f32> = at.into();
//! assert_eq!(back, a.slice(s![..;-1, ..]).reversed_axes());
//! ```

use core::fmt;

use ndarray::{ArrayView2, ArrayViewMut2, Axis, ShapeBuilder};

use super::{MatMut, MatRef};

/// An `ndarray` view whose elements do not fill the memory they span (see
/// the [module docs](self)).
///
/// ```
/// use densekit::gemm::MatRef;
/// use ndarray::{s, Array2};
/// let a = Array2::<f32>::zeros((4, 4));
/// // Every other column: gaps between the elements, refused without a copy.
/// assert!(MatRef::try_from(a.slice(s![.., ..;2])).is_err());
/// let copy = a.slice(s![.., ..;2]).as_standard_layout().into_owned();
/// assert_eq!(MatRef::try_from(copy.view()).unwrap().shape(), (4, 2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotContiguous {
    /// The view's shape.
    pub shape: (usize, usize),
    /// Its strides, in elements.
    pub strides: (isize, isize),
}

impl fmt::Display for NotContiguous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ((r, c), (rs, cs)) = (self.shape, self.strides);
        write!(
            f,
            "a {r}×{c} ndarray view with strides ({rs}, {cs}) has gaps between its elements; \
             densekit views borrow the memory they span (use .as_standard_layout(), or the raw sgemm)"
        )
    }
}

impl std::error::Error for NotContiguous {}

/// Offset from element `(0, 0)` to the lowest element, when the layout
/// fills its span exactly (each element once, no gaps).
fn contiguous_span(
    shape: (usize, usize),
    strides: (isize, isize),
) -> Result<(usize, isize), NotContiguous> {
    let ((r, c), (rs, cs)) = (shape, strides);
    let len = r * c;
    if len == 0 {
        return Ok((0, 0));
    }
    // Axes of one element take no part; the rest must step by 1 and by the
    // length of the other.
    let fills = match (r > 1, c > 1) {
        (false, false) => true,
        (true, false) => rs.unsigned_abs() == 1,
        (false, true) => cs.unsigned_abs() == 1,
        (true, true) => {
            (rs.unsigned_abs() == 1 && cs.unsigned_abs() == r)
                || (cs.unsigned_abs() == 1 && rs.unsigned_abs() == c)
        }
    };
    if !fills {
        return Err(NotContiguous { shape, strides });
    }
    let low = |dim: usize, stride: isize| {
        if stride < 0 {
            (dim as isize - 1) * stride
        } else {
            0
        }
    };
    Ok((len, low(r, rs) + low(c, cs)))
}

impl<'a, T> TryFrom<ArrayView2<'a, T>> for MatRef<'a, T> {
    type Error = NotContiguous;

    /// # Errors
    /// [`NotContiguous`] when the view has gaps between its elements.
    fn try_from(view: ArrayView2<'a, T>) -> Result<Self, NotContiguous> {
        let (shape, [rs, cs]) = (view.dim(), [view.strides()[0], view.strides()[1]]);
        let (len, low) = contiguous_span(shape, (rs, cs))?;
        let data: &'a [T] = if len == 0 {
            &[]
        } else {
            // SAFETY: the view's elements fill exactly the `len` elements
            // from its lowest one (checked above), all borrowed by the view
            // for 'a and initialized; `low` steps from element (0, 0) to the
            // lowest within the same allocation.
            unsafe { core::slice::from_raw_parts(view.as_ptr().offset(low), len) }
        };
        Ok(MatRef::from_strides(data, shape.0, shape.1, rs, cs))
    }
}

impl<'a, T> TryFrom<ArrayViewMut2<'a, T>> for MatMut<'a, T> {
    type Error = NotContiguous;

    /// # Errors
    /// [`NotContiguous`] when the view has gaps between its elements.
    fn try_from(mut view: ArrayViewMut2<'a, T>) -> Result<Self, NotContiguous> {
        let (shape, [rs, cs]) = (view.dim(), [view.strides()[0], view.strides()[1]]);
        let (len, low) = contiguous_span(shape, (rs, cs))?;
        let data: &'a mut [T] = if len == 0 {
            &mut []
        } else {
            // SAFETY: as for `MatRef`, and the view borrows its elements
            // mutably and uniquely for 'a: they are exactly this span.
            unsafe { core::slice::from_raw_parts_mut(view.as_mut_ptr().offset(low), len) }
        };
        Ok(MatMut::from_strides(data, shape.0, shape.1, rs, cs))
    }
}

/// ndarray's view of the same elements: built from the lowest element with
/// the strides' magnitudes, then reversed along the axes with negative ones.
fn to_ndarray<T>(data: &[T], shape: (usize, usize), [rs, cs]: [isize; 2]) -> ArrayView2<'_, T> {
    let abs = (rs.unsigned_abs(), cs.unsigned_abs());
    let mut view = ArrayView2::from_shape(shape.strides(abs), data)
        .expect("a densekit view's elements lie inside its slice");
    for (axis, stride) in [(Axis(0), rs), (Axis(1), cs)] {
        if stride < 0 {
            view.invert_axis(axis);
        }
    }
    view
}

impl<'a, T> From<MatRef<'a, T>> for ArrayView2<'a, T> {
    fn from(m: MatRef<'a, T>) -> Self {
        to_ndarray(
            m.span_from_lowest(),
            m.shape(),
            [m.row_stride(), m.col_stride()],
        )
    }
}

impl<'a, T> From<MatMut<'a, T>> for ArrayViewMut2<'a, T> {
    fn from(m: MatMut<'a, T>) -> Self {
        let (shape, [rs, cs]) = (m.shape(), [m.row_stride(), m.col_stride()]);
        let abs = (rs.unsigned_abs(), cs.unsigned_abs());
        let mut view = ArrayViewMut2::from_shape(shape.strides(abs), m.into_span_from_lowest())
            .expect("a densekit view's elements lie inside its slice and never alias");
        for (axis, stride) in [(Axis(0), rs), (Axis(1), cs)] {
            if stride < 0 {
                view.invert_axis(axis);
            }
        }
        view
    }
}

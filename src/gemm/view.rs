//! Matrix views: a slice plus a shape and strides, checked once at construction.

use core::fmt;

/// Where a view's elements live in its slice: element `(i, j)` is at
/// `origin + i·rs + j·cs`, and every in-range index is inside the slice.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Layout {
    origin: usize,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

impl Layout {
    /// Places `(0, 0)` so the lowest address touched is slice index 0, and
    /// checks that the highest is below `len`.
    #[track_caller]
    fn new(what: &str, len: usize, rows: usize, cols: usize, rs: isize, cs: isize) -> Layout {
        if rows == 0 || cols == 0 {
            return Layout {
                origin: 0,
                rows,
                cols,
                rs,
                cs,
            };
        }
        let span = |dim: usize, stride: isize| -> (usize, usize) {
            // (distance below the origin, distance above it) covered along one axis.
            let reach = (dim - 1)
                .checked_mul(stride.unsigned_abs())
                .unwrap_or_else(|| {
                    panic!("{what}: a {rows}×{cols} view with strides ({rs}, {cs}) overflows usize")
                });
            if stride < 0 { (reach, 0) } else { (0, reach) }
        };
        let ((rb, ra), (cb, ca)) = (span(rows, rs), span(cols, cs));
        let origin = rb.checked_add(cb);
        let needed = origin.and_then(|o| o.checked_add(ra)?.checked_add(ca)?.checked_add(1));
        match (origin, needed) {
            (Some(origin), Some(needed)) if needed <= len => Layout {
                origin,
                rows,
                cols,
                rs,
                cs,
            },
            _ => panic!(
                "{what}: a {rows}×{cols} view with strides ({rs}, {cs}) needs {} elements \
                 but the slice has {len}",
                needed.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string()),
            ),
        }
    }

    #[track_caller]
    fn contiguous(what: &str, len: usize, rows: usize, cols: usize, row_major: bool) -> Layout {
        let needed = rows.checked_mul(cols);
        if needed != Some(len) {
            panic!(
                "{what}: a {rows}×{cols} matrix needs {} elements but the slice has {len}",
                needed.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string()),
            );
        }
        let (rs, cs) = if row_major { (cols, 1) } else { (1, rows) };
        // `len` fits in isize (slices never exceed isize::MAX bytes).
        Layout::new(what, len, rows, cols, rs as isize, cs as isize)
    }

    /// Panics unless distinct `(i, j)` address distinct elements.
    #[track_caller]
    fn assert_no_self_alias(&self, what: &str) {
        let Layout {
            rows, cols, rs, cs, ..
        } = *self;
        let mut axes = [(rows, rs.unsigned_abs()), (cols, cs.unsigned_abs())];
        axes.sort_by_key(|&(_, stride)| stride);
        let ok = match axes {
            _ if rows == 0 || cols == 0 || (rows == 1 && cols == 1) => true,
            [(1, _), (_, s)] | [(_, s), (1, _)] => s != 0,
            // Both axes longer than 1: the short-stride axis must fit between steps of the other.
            [(d0, s0), (_, s1)] => s0 != 0 && (d0 - 1).checked_mul(s0).is_some_and(|r| r < s1),
        };
        assert!(
            ok,
            "{what}: strides ({rs}, {cs}) make elements of the {rows}×{cols} output alias"
        );
    }

    /// Slice index of the lowest element (0 for an empty view).
    #[cfg(feature = "ndarray")]
    fn lowest(&self) -> usize {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        let below = |dim: usize, stride: isize| {
            if stride < 0 {
                (dim - 1) * stride.unsigned_abs()
            } else {
                0
            }
        };
        self.origin - below(self.rows, self.rs) - below(self.cols, self.cs)
    }

    fn t(self) -> Layout {
        Layout {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Where row `i` lies in the data, if its elements are contiguous (unit
    /// column stride, or a single column).
    #[track_caller]
    fn row_span(&self, i: usize) -> Option<core::ops::Range<usize>> {
        assert!(i < self.rows, "row {i} out of range for {} rows", self.rows);
        if self.cols == 0 {
            return Some(0..0);
        }
        let start = self.index(i, 0);
        (self.cs == 1 || self.cols == 1).then(|| start..start + self.cols)
    }

    #[track_caller]
    fn index(&self, i: usize, j: usize) -> usize {
        assert!(
            i < self.rows && j < self.cols,
            "index ({i}, {j}) out of range for a {}×{} matrix",
            self.rows,
            self.cols
        );
        (self.origin as isize + i as isize * self.rs + j as isize * self.cs) as usize
    }
}

macro_rules! common_view_methods {
    ($view:ident, $data:literal) => {
        /// Number of rows.
        ///
        /// ```
        #[doc = concat!("use densekit::gemm::", stringify!($view), ";")]
        #[doc = concat!("let mut data = [0.0f32; 6];")]
        #[doc = concat!("let m = ", stringify!($view), "::from_row_major(", $data, ", 2, 3);")]
        /// assert_eq!((m.nrows(), m.ncols(), m.shape()), (2, 3, (2, 3)));
        /// ```
        pub fn nrows(&self) -> usize {
            self.layout.rows
        }
        /// Number of columns (see [`nrows`](Self::nrows)).
        ///
        /// ```
        #[doc = concat!("use densekit::gemm::", stringify!($view), ";")]
        #[doc = concat!("let mut data = [0.0f32; 6];")]
        #[doc = concat!("let m = ", stringify!($view), "::from_row_major(", $data, ", 3, 2);")]
        /// assert_eq!(m.ncols(), 2);
        /// ```
        pub fn ncols(&self) -> usize {
            self.layout.cols
        }
        /// `(rows, cols)` (see [`nrows`](Self::nrows)).
        ///
        /// ```
        #[doc = concat!("use densekit::gemm::", stringify!($view), ";")]
        #[doc = concat!("let mut data = [0.0f32; 6];")]
        #[doc = concat!("let m = ", stringify!($view), "::from_row_major(", $data, ", 3, 2);")]
        /// assert_eq!(m.shape(), (3, 2));
        /// ```
        pub fn shape(&self) -> (usize, usize) {
            (self.layout.rows, self.layout.cols)
        }
        /// Distance in elements between `(i, j)` and `(i + 1, j)`.
        ///
        /// ```
        #[doc = concat!("use densekit::gemm::", stringify!($view), ";")]
        #[doc = concat!("let mut data = [0.0f32; 6];")]
        #[doc = concat!("let m = ", stringify!($view), "::from_col_major(", $data, ", 2, 3);")]
        /// assert_eq!((m.row_stride(), m.col_stride()), (1, 2));
        /// ```
        pub fn row_stride(&self) -> isize {
            self.layout.rs
        }
        /// Distance in elements between `(i, j)` and `(i, j + 1)` (see
        /// [`row_stride`](Self::row_stride)).
        ///
        /// ```
        #[doc = concat!("use densekit::gemm::", stringify!($view), ";")]
        #[doc = concat!("let mut data = [0.0f32; 6];")]
        #[doc = concat!("let m = ", stringify!($view), "::from_row_major(", $data, ", 3, 2);")]
        /// assert_eq!(m.col_stride(), 1);
        /// ```
        pub fn col_stride(&self) -> isize {
            self.layout.cs
        }
        /// Element `(i, j)`.
        ///
        /// ```
        #[doc = concat!("use densekit::gemm::", stringify!($view), ";")]
        #[doc = concat!("let mut data = [1.0f32, 2.0, 3.0, 4.0];")]
        #[doc = concat!("let m = ", stringify!($view), "::from_row_major(", $data, ", 2, 2);")]
        /// assert_eq!(m.get(1, 0), 3.0);
        /// ```
        ///
        /// # Panics
        /// If `i ≥ nrows()` or `j ≥ ncols()`.
        #[track_caller]
        pub fn get(&self, i: usize, j: usize) -> T
        where
            T: Copy,
        {
            self.data[self.layout.index(i, j)]
        }
    };
}

/// A read-only `rows × cols` view of a slice with arbitrary strides.
///
/// Element `(i, j)` lives at `i·row_stride + j·col_stride` from the view's
/// origin. Strides may be negative (the origin is then placed so that the
/// lowest element touched is the slice's first) or zero (broadcasting a row or
/// column). Constructors check that every element lies inside the slice.
///
/// ```
/// use densekit::gemm::MatRef;
/// let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
/// let a = MatRef::from_row_major(&data, 2, 3);
/// assert_eq!(a.get(1, 0), 4.0);
/// assert_eq!(a.t().get(0, 1), 4.0); // transposed view, no copy
/// ```
pub struct MatRef<'a, T> {
    data: &'a [T],
    layout: Layout,
}

// By hand: a view is a shared borrow, copyable whatever `T` is.
impl<T> Clone for MatRef<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MatRef<'_, T> {}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows × cols` view (`row_stride = cols`).
    ///
    /// # Panics
    /// If `data.len() != rows · cols`.
    ///
    /// # Examples
    /// ```
    /// use densekit::gemm::MatRef;
    /// let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let m = MatRef::from_row_major(&data, 2, 3);
    /// assert_eq!((m.get(1, 0), m.row_stride(), m.col_stride()), (4.0, 3, 1));
    /// ```
    #[track_caller]
    pub fn from_row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        let layout = Layout::contiguous("MatRef::from_row_major", data.len(), rows, cols, true);
        MatRef { data, layout }
    }

    /// A column-major `rows × cols` view (`col_stride = rows`).
    ///
    /// # Panics
    /// If `data.len() != rows · cols`.
    ///
    /// # Examples
    /// ```
    /// use densekit::gemm::MatRef;
    /// let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let m = MatRef::from_col_major(&data, 2, 3);
    /// assert_eq!((m.get(1, 0), m.get(0, 1)), (2.0, 3.0));
    /// ```
    #[track_caller]
    pub fn from_col_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        let layout = Layout::contiguous("MatRef::from_col_major", data.len(), rows, cols, false);
        MatRef { data, layout }
    }

    /// A view with explicit strides (in elements, any sign, zero allowed).
    ///
    /// ```
    /// use densekit::gemm::MatRef;
    /// // Rows 0 and 2 of a 3×2 row-major matrix, in reverse order.
    /// let data = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let v = MatRef::from_strides(&data, 2, 2, -4, 1);
    /// assert_eq!((v.get(0, 0), v.get(1, 0)), (5.0, 1.0));
    /// ```
    ///
    /// # Panics
    /// If some element would fall outside `data`.
    #[track_caller]
    pub fn from_strides(data: &'a [T], rows: usize, cols: usize, rs: isize, cs: isize) -> Self {
        let layout = Layout::new("MatRef::from_strides", data.len(), rows, cols, rs, cs);
        MatRef { data, layout }
    }

    /// The transposed view (`cols × rows`), without copying.
    ///
    /// ```
    /// use densekit::gemm::MatRef;
    /// let data = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let m = MatRef::from_row_major(&data, 2, 3).t();
    /// assert_eq!((m.shape(), m.get(2, 1)), ((3, 2), 6.0));
    /// ```
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            layout: self.layout.t(),
        }
    }

    /// Row `i` as a slice, when the columns are contiguous (unit column
    /// stride, or a single column); `None` otherwise.
    ///
    /// ```
    /// use densekit::gemm::MatRef;
    /// let data = [1.0f32, 2.0, 3.0, 4.0];
    /// assert_eq!(MatRef::from_row_major(&data, 2, 2).row(1), Some(&[3.0, 4.0][..]));
    /// assert_eq!(MatRef::from_col_major(&data, 2, 2).row(1), None);
    /// ```
    ///
    /// # Panics
    /// If `i ≥ nrows()`.
    #[track_caller]
    pub fn row(&self, i: usize) -> Option<&'a [T]> {
        self.layout.row_span(i).map(|span| &self.data[span])
    }

    common_view_methods!(MatRef, "&data");

    /// Columns `first..first + count` as a view of the same elements.
    ///
    /// # Panics
    /// If `first + count > ncols()`.
    #[track_caller]
    pub(crate) fn columns(self, first: usize, count: usize) -> Self {
        let Layout { rows, cols, .. } = self.layout;
        assert!(
            first.checked_add(count).is_some_and(|end| end <= cols),
            "columns {first}..{first}+{count} out of range for {cols} columns"
        );
        let origin = if rows == 0 || count == 0 {
            self.layout.origin
        } else {
            self.layout.index(0, first)
        };
        MatRef {
            data: self.data,
            layout: Layout {
                origin,
                cols: count,
                ..self.layout
            },
        }
    }

    /// The data from the lowest element on.
    #[cfg(feature = "ndarray")]
    pub(crate) fn span_from_lowest(&self) -> &'a [T] {
        &self.data[self.layout.lowest()..]
    }

    /// Pointer to element `(0, 0)`; with the strides it addresses every element.
    ///
    /// Derived from the whole slice, not from `data[origin..]`: with negative
    /// strides elements lie before the origin, and a pointer from the
    /// subslice would have no right to read them (Miri flags it).
    pub(crate) fn as_ptr(&self) -> *const T {
        self.data.as_ptr().wrapping_add(self.layout.origin)
    }

    /// How many columns from the start of each row lie inside the slice, for
    /// a view with unit column stride and a non-negative row stride (0
    /// otherwise): at least `ncols()`, more where the rows are padded.
    pub(crate) fn readable_cols(&self) -> usize {
        let Layout {
            origin,
            rows,
            rs,
            cs,
            ..
        } = self.layout;
        if cs != 1 || rs < 0 || rows == 0 {
            return 0;
        }
        let last_row = origin + (rows - 1) * rs as usize;
        self.data.len().saturating_sub(last_row)
    }
}

/// A mutable `rows × cols` view of a slice with arbitrary strides.
///
/// Like [`MatRef`], but distinct `(i, j)` must address distinct elements
/// (no zero or overlapping strides), which the constructors check.
///
/// ```
/// use densekit::gemm::MatMut;
/// let mut data = [0.0f32; 6];
/// let mut c = MatMut::from_col_major(&mut data, 2, 3);
/// c.set(1, 2, 7.0);
/// assert_eq!(data[5], 7.0);
/// ```
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    layout: Layout,
}

impl<'a, T> MatMut<'a, T> {
    /// A row-major `rows × cols` view (`row_stride = cols`).
    ///
    /// # Panics
    /// If `data.len() != rows · cols`.
    ///
    /// # Examples
    /// ```
    /// use densekit::gemm::MatMut;
    /// let mut data = [0.0f32; 6];
    /// let mut m = MatMut::from_row_major(&mut data, 2, 3);
    /// m.set(1, 0, 4.0);
    /// assert_eq!(data, [0.0, 0.0, 0.0, 4.0, 0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn from_row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        let layout = Layout::contiguous("MatMut::from_row_major", data.len(), rows, cols, true);
        MatMut { data, layout }
    }

    /// A column-major `rows × cols` view (`col_stride = rows`).
    ///
    /// # Panics
    /// If `data.len() != rows · cols`.
    ///
    /// # Examples
    /// ```
    /// use densekit::gemm::MatMut;
    /// let mut data = [0.0f32; 6];
    /// let mut m = MatMut::from_col_major(&mut data, 2, 3);
    /// m.set(1, 0, 4.0);
    /// assert_eq!(data, [0.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn from_col_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        let layout = Layout::contiguous("MatMut::from_col_major", data.len(), rows, cols, false);
        MatMut { data, layout }
    }

    /// A view with explicit strides (in elements, any sign).
    ///
    /// ```
    /// use densekit::gemm::MatMut;
    /// // A 2×2 window with row stride 3 into a buffer with padding.
    /// let mut data = [0.0f32; 6];
    /// let mut c = MatMut::from_strides(&mut data, 2, 2, 3, 1);
    /// c.set(1, 1, 1.0);
    /// assert_eq!(data, [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
    /// ```
    ///
    /// # Panics
    /// If some element would fall outside `data`, or if two elements would
    /// share a memory location (zero or overlapping strides).
    #[track_caller]
    pub fn from_strides(data: &'a mut [T], rows: usize, cols: usize, rs: isize, cs: isize) -> Self {
        let what = "MatMut::from_strides";
        let layout = Layout::new(what, data.len(), rows, cols, rs, cs);
        layout.assert_no_self_alias(what);
        MatMut { data, layout }
    }

    /// The transposed view (`cols × rows`), without copying.
    ///
    /// ```
    /// use densekit::gemm::MatMut;
    /// let mut data = [0.0f32; 6];
    /// let mut m = MatMut::from_row_major(&mut data, 2, 3).t(); // 3×2
    /// m.set(2, 1, 1.0);
    /// assert_eq!(data, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    /// ```
    pub fn t(self) -> Self {
        MatMut {
            data: self.data,
            layout: self.layout.t(),
        }
    }

    /// A read-only view of the same elements.
    ///
    /// ```
    /// use densekit::gemm::MatMut;
    /// let mut data = [1.0f32, 2.0];
    /// let m = MatMut::from_row_major(&mut data, 1, 2);
    /// assert_eq!(m.as_ref().get(0, 1), 2.0);
    /// ```
    pub fn as_ref(&self) -> MatRef<'_, T> {
        MatRef {
            data: self.data,
            layout: self.layout,
        }
    }

    /// Reborrows the view, so it can be passed on and used again afterwards.
    ///
    /// ```
    /// use densekit::gemm::{gemm, Accum, MatMut, MatRef, Par};
    /// let one = [1.0f32];
    /// let mut data = [0.0f32];
    /// let mut c = MatMut::from_row_major(&mut data, 1, 1);
    /// // `gemm` takes the view by value: lend it twice with rb_mut.
    /// for _ in 0..2 {
    ///     gemm(c.rb_mut(), Accum::Add, MatRef::from_row_major(&one, 1, 1),
    ///         MatRef::from_row_major(&one, 1, 1), 1.0, Par::Seq);
    /// }
    /// assert_eq!(c.as_ref().get(0, 0), 2.0);
    /// ```
    pub fn rb_mut(&mut self) -> MatMut<'_, T> {
        MatMut {
            data: self.data,
            layout: self.layout,
        }
    }

    common_view_methods!(MatMut, "&mut data");

    /// Sets element `(i, j)`.
    ///
    /// # Panics
    /// If `i ≥ nrows()` or `j ≥ ncols()`.
    ///
    /// # Examples
    /// ```
    /// use densekit::gemm::MatMut;
    /// let mut data = [0.0f64; 4];
    /// let mut m = MatMut::from_row_major(&mut data, 2, 2);
    /// m.set(0, 1, 5.0);
    /// assert_eq!(m.as_ref().get(0, 1), 5.0);
    /// ```
    #[track_caller]
    pub fn set(&mut self, i: usize, j: usize, value: T) {
        let at = self.layout.index(i, j);
        self.data[at] = value;
    }

    /// Row `i` as a mutable slice, if its elements are contiguous (unit column
    /// stride, or a single column); `None` otherwise.
    ///
    /// ```
    /// use densekit::gemm::MatMut;
    /// let mut data = [0.0f32; 4];
    /// MatMut::from_row_major(&mut data, 2, 2).row_mut(1).unwrap()[0] = 5.0;
    /// assert_eq!(data, [0.0, 0.0, 5.0, 0.0]);
    /// assert!(MatMut::from_col_major(&mut data, 2, 2).row_mut(1).is_none());
    /// ```
    ///
    /// # Panics
    /// If `i ≥ nrows()`.
    #[track_caller]
    pub fn row_mut(&mut self, i: usize) -> Option<&mut [T]> {
        self.layout.row_span(i).map(|span| &mut self.data[span])
    }

    /// All elements as one row-major slice, if the view is dense row-major
    /// (unit column stride, row stride = columns); `None` otherwise.
    pub(crate) fn as_row_major_mut(&mut self) -> Option<&mut [T]> {
        let Layout {
            origin,
            rows,
            cols,
            rs,
            cs,
        } = self.layout;
        let dense = (cs == 1 || cols <= 1) && (rs == cols as isize || rows <= 1);
        dense.then(|| &mut self.data[origin..origin + rows * cols])
    }

    /// Pointer to element `(0, 0)`, derived from the whole slice (see
    /// [`MatRef::as_ptr`]).
    /// The data from the lowest element on, for the view's whole borrow.
    #[cfg(feature = "ndarray")]
    pub(crate) fn into_span_from_lowest(self) -> &'a mut [T] {
        let lowest = self.layout.lowest();
        &mut self.data[lowest..]
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut T {
        self.data.as_mut_ptr().wrapping_add(self.layout.origin)
    }
}

impl<T: fmt::Debug + Copy> fmt::Debug for MatRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows = (0..self.nrows()).map(|i| (0..self.ncols()).map(move |j| self.get(i, j)));
        f.debug_list()
            .entries(rows.map(|r| r.collect::<Vec<_>>()))
            .finish()
    }
}

impl<T: fmt::Debug + Copy> fmt::Debug for MatMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

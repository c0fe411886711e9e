//! The scalar types the kernels work on (`f32` and `f64`).

use core::fmt::Debug;
use core::ops::{Add, Div, Mul, Neg, Sub};

use super::{Lanes, Simd};

mod sealed {
    /// Links each element type to its lane types; not nameable outside the crate.
    pub trait Sealed: super::Lanes<Elem = Self> {
        /// This element type's lanes on ISA `S`.
        type Vector<S: super::Simd>: super::Lanes<Elem = Self>;
    }
    impl Sealed for f32 {
        type Vector<S: super::Simd> = S::F32;
    }
    impl Sealed for f64 {
        type Vector<S: super::Simd> = S::F64;
    }
}

pub(crate) use sealed::Sealed;

/// A floating-point element type with GEMM kernels: `f32` or `f64`.
///
/// The trait is sealed: the kernels, packing and blocking are tuned per type,
/// so only the types the crate ships kernels for implement it.
///
/// ```
/// use densekit::gemm::{gemm, Accum, Element, MatMut, MatRef, Par};
/// // Code generic over f32 and f64: a dot product of two vectors as a 1×1 GEMM.
/// fn dot<T: Element>(x: &[T], y: &[T]) -> T {
///     let mut c = [T::ZERO];
///     gemm(MatMut::from_row_major(&mut c, 1, 1), Accum::Replace,
///         MatRef::from_row_major(x, 1, x.len()), MatRef::from_row_major(y, y.len(), 1), T::ONE, Par::Seq);
///     c[0]
/// }
/// assert_eq!(dot(&[1.0f32, 2.0], &[3.0, 4.0]), 11.0);
/// assert_eq!(dot(&[1.0f64, 2.0], &[3.0, 4.0]), 11.0);
/// ```
pub trait Element:
    sealed::Sealed
    + bytemuck::Pod
    + Copy
    + Default
    + Debug
    + PartialEq
    + PartialOrd
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Machine epsilon (distance from 1.0 to the next larger value).
    const EPSILON: Self;
    /// The smallest positive subnormal value: the absolute rounding error
    /// of one operation whose result underflows is at most half of it.
    const DENORM_MIN: Self;

    /// Widens to `f64` (exact for both types).
    ///
    /// ```
    /// use densekit::gemm::Element;
    /// assert_eq!(0.1f32.to_f64(), f64::from(0.1f32));
    /// ```
    fn to_f64(self) -> f64;
    /// Rounds an `f64` to this type.
    ///
    /// ```
    /// use densekit::gemm::Element;
    /// assert_eq!(f32::from_f64(0.1), 0.1f32);
    /// ```
    fn from_f64(x: f64) -> Self;
}

/// This element type's lanes on ISA `S` (`F32x8` for `f32` on AVX2, …).
pub(crate) type VectorOf<T, S> = <T as Sealed>::Vector<S>;

macro_rules! impl_element {
    ($t:ty) => {
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const EPSILON: Self = <$t>::EPSILON;
            const DENORM_MIN: Self = <$t>::from_bits(1);

            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
        }
    };
}

impl_element!(f32);
impl_element!(f64);

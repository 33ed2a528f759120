//! The element types the optimizer updates: f32 and f64, as burn's `DType::F32` and `F64`.

use burn::tensor::DType;
use recadam_simd::SimdElement;

use crate::optimizer::Moments;

/// f32 or f64: a float type of both burn and recadam's kernels.
pub trait Element: SimdElement + burn::tensor::Element + sealed::Sealed {
    /// burn's name for it.
    const DTYPE: DType;
    /// The state's buffers when they are of this type.
    #[doc(hidden)]
    fn moments(m: &mut Moments) -> Option<&mut crate::optimizer::Buffers<Self>>;
    /// The state's buffers when they are of this type.
    #[doc(hidden)]
    fn moments_ref(m: &Moments) -> Option<&crate::optimizer::Buffers<Self>>;
    /// Wraps buffers of this type as state.
    #[doc(hidden)]
    fn wrap(b: crate::optimizer::Buffers<Self>) -> Moments;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn moments(m: &mut Moments) -> Option<&mut crate::optimizer::Buffers<f32>> {
        match m {
            Moments::F32(b) => Some(b),
            Moments::F64(_) => None,
        }
    }
    fn moments_ref(m: &Moments) -> Option<&crate::optimizer::Buffers<f32>> {
        match m {
            Moments::F32(b) => Some(b),
            Moments::F64(_) => None,
        }
    }
    fn wrap(b: crate::optimizer::Buffers<f32>) -> Moments {
        Moments::F32(b)
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn moments(m: &mut Moments) -> Option<&mut crate::optimizer::Buffers<f64>> {
        match m {
            Moments::F64(b) => Some(b),
            Moments::F32(_) => None,
        }
    }
    fn moments_ref(m: &Moments) -> Option<&crate::optimizer::Buffers<f64>> {
        match m {
            Moments::F64(b) => Some(b),
            Moments::F32(_) => None,
        }
    }
    fn wrap(b: crate::optimizer::Buffers<f64>) -> Moments {
        Moments::F64(b)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

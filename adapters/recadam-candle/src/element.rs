//! The float types the adapter updates, and their values inside candle's CPU storage.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, WithDType};
use recadam_simd::SimdElement;

/// `f32` or `f64`: an element type both candle and the update kernel have.
pub trait Element: SimdElement + WithDType {
    /// The values of a contiguous tensor of this type in `storage`.
    fn values<'s>(storage: &'s CpuStorage, layout: &Layout) -> candle_core::Result<&'s [Self]>;
    /// The same, writable.
    fn values_mut<'s>(
        storage: &'s mut CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<&'s mut [Self]>;
}

fn range(layout: &Layout) -> candle_core::Result<std::ops::Range<usize>> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("recadam: a tensor is not contiguous"))?;
    Ok(start..end)
}

fn wrong_type(storage: &CpuStorage, want: candle_core::DType) -> candle_core::Error {
    candle_core::Error::UnexpectedDType {
        msg: "recadam: a tensor of another element type",
        expected: want,
        got: storage.dtype(),
    }
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            fn values<'s>(
                storage: &'s CpuStorage,
                layout: &Layout,
            ) -> candle_core::Result<&'s [Self]> {
                match storage {
                    CpuStorage::$variant(v) => v.get(range(layout)?).ok_or_else(|| {
                        candle_core::Error::msg("recadam: a layout past its storage")
                    }),
                    other => Err(wrong_type(other, Self::DTYPE)),
                }
            }
            fn values_mut<'s>(
                storage: &'s mut CpuStorage,
                layout: &Layout,
            ) -> candle_core::Result<&'s mut [Self]> {
                let range = range(layout)?;
                match storage {
                    CpuStorage::$variant(v) => v.get_mut(range).ok_or_else(|| {
                        candle_core::Error::msg("recadam: a layout past its storage")
                    }),
                    other => Err(wrong_type(other, Self::DTYPE)),
                }
            }
        }
    };
}

element!(f32, F32);
element!(f64, F64);

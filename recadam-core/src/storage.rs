//! How an f32 value is kept in memory in the mixed-precision update: as itself, as bfloat16 or
//! as IEEE half precision (the types of the `half` crate, which candle and burn use too).
//!
//! ## Rounding contract (every narrowing, on every backend)
//! - Widening (`bf16`/`f16` → `f32`) is exact; a bf16 NaN keeps its bits (shifted), an f16 NaN
//!   becomes a quiet NaN with its sign and payload (as `vcvtph2ps` does).
//! - Narrowing rounds to nearest, ties to even.
//! - A NaN stays a quiet NaN of the same sign, with the top bits of its payload:
//!   bf16 `(bits >> 16) | 0x0040`, f16 `sign | 0x7e00 | (mantissa >> 13)`. (PyTorch's CPU
//!   kernels disagree among themselves here: its scalar bf16 path writes `0x7fc0`, its AVX-512 one
//!   `0xffff`; NaN payloads are not part of its contract.)
//! - Overflow gives ±∞: f16 values at or above 65520 in magnitude, bf16 values that round past
//!   the largest finite bf16.
//! - Subnormal results are kept (never flushed to zero): bf16 shares f32's exponent range, and f16
//!   subnormals down to 2⁻²⁴ are produced by the same rounding.
//!
//! These are the conversions of `half` 2 (`bf16::from_f32`, `f16::from_f32`), and of x86's
//! `vcvtps2ph` with round-to-nearest; the SIMD tests compare every backend with them on every
//! rounding tie (normal and subnormal results) and millions of other patterns.

use half::{bf16, f16};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::bf16 {}
    impl Sealed for half::f16 {}
}

/// Which of the storage types a [`Storage`] is: what a run-time-typed interface (a C or Python
/// caller handing over a buffer and its dtype) matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageType {
    /// `f32`.
    F32,
    /// `half::bf16`.
    Bf16,
    /// `half::f16`.
    F16,
}

impl StorageType {
    /// `"f32"`, `"bf16"` or `"f16"`.
    pub fn name(self) -> &'static str {
        match self {
            StorageType::F32 => "f32",
            StorageType::Bf16 => "bf16",
            StorageType::F16 => "f16",
        }
    }
}

/// A type an f32 value of the update can be stored as: `f32`, `half::bf16` or `half::f16`
/// (sealed: exactly these three, each with its own [`StorageType`]).
pub trait Storage:
    Copy + Default + core::fmt::Debug + Send + Sync + 'static + sealed::Sealed
{
    /// `"f32"`, `"bf16"` or `"f16"`.
    const NAME: &'static str;
    /// Which type this is.
    const TYPE: StorageType;
    /// The stored value as an f32 (exact).
    fn widen(self) -> f32;
    /// `x` rounded to this type (see the module's rounding contract).
    fn narrow(x: f32) -> Self;
}

impl Storage for f32 {
    const NAME: &'static str = "f32";
    const TYPE: StorageType = StorageType::F32;

    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }

    #[inline(always)]
    fn narrow(x: f32) -> Self {
        x
    }
}

impl Storage for bf16 {
    const NAME: &'static str = "bf16";
    const TYPE: StorageType = StorageType::Bf16;

    /// The bits shifted into the upper half (as torch's `.float()`): every value, NaNs with
    /// their payload included, exactly.
    #[inline(always)]
    fn widen(self) -> f32 {
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }

    #[inline(always)]
    fn narrow(x: f32) -> Self {
        bf16::from_f32(x)
    }
}

impl Storage for f16 {
    const NAME: &'static str = "f16";
    const TYPE: StorageType = StorageType::F16;

    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }

    #[inline(always)]
    fn narrow(x: f32) -> Self {
        f16::from_f32(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even one (1).
        assert_eq!(bf16::narrow(1.0 + 2f32.powi(-8)).to_bits(), 0x3f80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: ties go up.
        assert_eq!(bf16::narrow(1.0 + 3.0 * 2f32.powi(-8)).to_bits(), 0x3f82);
        // Just above the halfway point rounds up.
        assert_eq!(bf16::narrow(f32::from_bits(0x3f80_8001)).to_bits(), 0x3f81);
    }

    #[test]
    fn narrowing_keeps_nan_quiet_and_signed() {
        let signalling = f32::from_bits(0x7f80_0001);
        assert_eq!(bf16::narrow(signalling).to_bits(), 0x7fc0);
        assert_eq!(bf16::narrow(-f32::NAN).to_bits() & 0xffc0, 0xffc0);
        assert_eq!(f16::narrow(signalling).to_bits(), 0x7e00);
        assert_eq!(f16::narrow(f32::from_bits(0xffc0_2000)).to_bits(), 0xfe01);
    }

    #[test]
    fn f16_overflows_to_infinity_and_keeps_subnormals() {
        assert_eq!(f16::narrow(65519.0).to_bits(), 0x7bff); // rounds down to 65504
        assert_eq!(f16::narrow(65520.0).to_bits(), 0x7c00); // the tie rounds to even: +∞
        assert_eq!(f16::narrow(-1e6).to_bits(), 0xfc00);
        assert_eq!(f16::narrow(2f32.powi(-24)).to_bits(), 0x0001); // smallest subnormal
        assert_eq!(f16::narrow(2f32.powi(-25)).to_bits(), 0x0000); // tie to even: zero
        assert_eq!(f16::narrow(3.0 * 2f32.powi(-26)).to_bits(), 0x0001);
        assert_eq!(bf16::narrow(f32::from_bits(1)).to_bits(), 0x0000); // below half of 2^-133
        assert_eq!(bf16::narrow(f32::from_bits(0x0001_8000)).to_bits(), 0x0002);
        assert_eq!(bf16::narrow(f32::MAX).to_bits(), 0x7f80); // rounds past the largest bf16
    }

    #[test]
    #[cfg_attr(miri, ignore = "exhaustive; runs natively and under qemu")]
    fn widening_then_narrowing_is_the_identity() {
        for bits in 0..=u16::MAX {
            let (b, h) = (bf16::from_bits(bits), f16::from_bits(bits));
            if !b.is_nan() {
                assert_eq!(bf16::narrow(b.widen()).to_bits(), bits);
            }
            if !h.is_nan() {
                assert_eq!(f16::narrow(h.widen()).to_bits(), bits);
            }
        }
    }
}

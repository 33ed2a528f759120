//! The float types the update runs on, and the three correctly rounded operations it needs.

use core::fmt::{Debug, Display};

/// A float element type of the update (`f32` or `f64`).
///
/// On top of [`num_traits::Float`] it pins down the rounding the update relies on: scalars are
/// computed in `f64` and rounded once to the element type, the fused multiply-add rounds once,
/// and the square root is the IEEE, correctly rounded one. Both are taken from `libm`, which is
/// correctly rounded for these functions on every target (hardware instructions where the CPU has
/// them), so the result does not depend on the machine.
pub trait Element:
    num_traits::Float + Copy + Default + Debug + Display + Send + Sync + PartialOrd + 'static
{
    /// `"f32"` or `"f64"`: the dtype name used in messages and checkpoints.
    const NAME: &'static str;

    /// Rounds an `f64` to this type (round to nearest, ties to even; exact for `f64`).
    fn round_from_f64(x: f64) -> Self;

    /// Widens to `f64` (exact).
    fn widen_to_f64(self) -> f64;

    /// `self * b + c` with one rounding.
    fn fused_mul_add(self, b: Self, c: Self) -> Self;

    /// The correctly rounded square root.
    fn sqrt_ieee(self) -> Self;
}

impl Element for f32 {
    const NAME: &'static str = "f32";

    #[inline(always)]
    fn round_from_f64(x: f64) -> Self {
        x as f32
    }

    #[inline(always)]
    fn widen_to_f64(self) -> f64 {
        self as f64
    }

    #[inline(always)]
    fn fused_mul_add(self, b: Self, c: Self) -> Self {
        #[cfg(not(miri))]
        return libm::fmaf(self, b, c);
        // Miri cannot run libm's inline assembly; std's intrinsic is emulated exactly.
        #[cfg(miri)]
        return std::primitive::f32::mul_add(self, b, c);
    }

    #[inline(always)]
    fn sqrt_ieee(self) -> Self {
        #[cfg(not(miri))]
        return libm::sqrtf(self);
        #[cfg(miri)]
        return std::primitive::f32::sqrt(self);
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";

    #[inline(always)]
    fn round_from_f64(x: f64) -> Self {
        x
    }

    #[inline(always)]
    fn widen_to_f64(self) -> f64 {
        self
    }

    #[inline(always)]
    fn fused_mul_add(self, b: Self, c: Self) -> Self {
        #[cfg(not(miri))]
        return libm::fma(self, b, c);
        #[cfg(miri)]
        return std::primitive::f64::mul_add(self, b, c);
    }

    #[inline(always)]
    fn sqrt_ieee(self) -> Self {
        #[cfg(not(miri))]
        return libm::sqrt(self);
        #[cfg(miri)]
        return std::primitive::f64::sqrt(self);
    }
}

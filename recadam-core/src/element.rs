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
        #[cfg(recadam_arm_fpv4)]
        return arm_fpv4::fma(self, b, c);
        #[cfg(all(not(miri), not(recadam_arm_fpv4)))]
        return libm::fmaf(self, b, c);
        // Miri cannot run libm's inline assembly; std's intrinsic is emulated exactly.
        #[cfg(miri)]
        return std::primitive::f32::mul_add(self, b, c);
    }

    #[inline(always)]
    fn sqrt_ieee(self) -> Self {
        #[cfg(recadam_arm_fpv4)]
        return arm_fpv4::sqrt(self);
        #[cfg(all(not(miri), not(recadam_arm_fpv4)))]
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

/// The single-precision FPU's own fused multiply-add and square root (Cortex-M4F and later):
/// the same results as `fmaf` and `sqrtf` (one rounding; IEEE), where libm's `fmaf` would compute
/// in software doubles on these chips. The operands travel in core registers and the FPU
/// registers used are saved and restored, so the blocks declare no FPU clobbers (rustc's
/// register classes do not know these targets' FPU).
#[cfg(recadam_arm_fpv4)]
#[allow(unsafe_code)]
mod arm_fpv4 {
    #[inline(always)]
    pub(super) fn fma(a: f32, b: f32, c: f32) -> f32 {
        let out: u32;
        // SAFETY: VFMA.F32 and VSQRT.F32 exist on every target `recadam_arm_fpv4` is set for
        // (build.rs); s0-s2 are pushed before use and popped after; no memory but that stack
        // space is touched.
        unsafe {
            core::arch::asm!(
                "vpush {{s0-s2}}",
                "vmov s0, {c}",
                "vmov s1, {a}",
                "vmov s2, {b}",
                "vfma.f32 s0, s1, s2",
                "vmov {out}, s0",
                "vpop {{s0-s2}}",
                a = in(reg) a.to_bits(),
                b = in(reg) b.to_bits(),
                c = in(reg) c.to_bits(),
                out = lateout(reg) out,
                options(pure, nomem, preserves_flags)
            )
        };
        f32::from_bits(out)
    }

    #[inline(always)]
    pub(super) fn sqrt(x: f32) -> f32 {
        let out: u32;
        // SAFETY: as in `fma`.
        unsafe {
            core::arch::asm!(
                "vpush {{s0}}",
                "vmov s0, {x}",
                "vsqrt.f32 s0, s0",
                "vmov {out}, s0",
                "vpop {{s0}}",
                x = in(reg) x.to_bits(),
                out = lateout(reg) out,
                options(pure, nomem, preserves_flags)
            )
        };
        f32::from_bits(out)
    }
}

//! Lanes over `wide`'s vectors on aarch64, where NEON is part of the base target: `wide` then
//! compiles `f32x4`/`f64x2` to NEON registers, its `mul_add` to `fmla` (one rounding) and its
//! `sqrt` to `fsqrt`, so it gives exactly the bits of the scalar reference.

use wide::{f32x4, f64x2, CmpLe, CmpLt};

use recadam_core::half::{bf16, f16};
use recadam_core::Storage;

use crate::lanes::{Lanes, WideLanes};
use crate::stored::{padded, HalfLanes};

macro_rules! wide_lanes {
    ($name:ident, $vec:ty, $elem:ty, $n:expr) => {
        #[derive(Clone, Copy)]
        pub(crate) struct $name($vec);

        impl Lanes for $name {
            type Elem = $elem;
            const N: usize = $n;

            #[inline(always)]
            unsafe fn load(ptr: *const $elem) -> Self {
                // SAFETY: the caller guarantees N readable elements; read_unaligned needs no
                // alignment.
                $name(<$vec>::from(unsafe {
                    ptr.cast::<[$elem; $n]>().read_unaligned()
                }))
            }
            #[inline(always)]
            unsafe fn store(self, ptr: *mut $elem) {
                // SAFETY: the caller guarantees N writable elements; write_unaligned needs no
                // alignment.
                unsafe { ptr.cast::<[$elem; $n]>().write_unaligned(self.0.to_array()) }
            }
            #[inline(always)]
            unsafe fn load_first(ptr: *const $elem, count: usize) -> Self {
                let mut lanes = [0.0; $n];
                // SAFETY: the caller guarantees `count` (< N) readable elements.
                unsafe { core::ptr::copy_nonoverlapping(ptr, lanes.as_mut_ptr(), count) };
                $name(<$vec>::from(lanes))
            }
            #[inline(always)]
            unsafe fn store_first(self, ptr: *mut $elem, count: usize) {
                let lanes = self.0.to_array();
                // SAFETY: the caller guarantees `count` (< N) writable elements.
                unsafe { core::ptr::copy_nonoverlapping(lanes.as_ptr(), ptr, count) };
            }
            #[inline(always)]
            fn splat(x: $elem) -> Self {
                $name(<$vec>::splat(x))
            }
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                $name(self.0 + b.0)
            }
            #[inline(always)]
            fn sub(self, b: Self) -> Self {
                $name(self.0 - b.0)
            }
            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                $name(self.0 * b.0)
            }
            #[inline(always)]
            fn div(self, b: Self) -> Self {
                $name(self.0 / b.0)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                $name(self.0.sqrt())
            }
            #[inline(always)]
            fn mul_add(self, b: Self, c: Self) -> Self {
                $name(self.0.mul_add(b.0, c.0))
            }
            #[inline(always)]
            fn abs(self) -> Self {
                $name(self.0.abs())
            }
            #[inline(always)]
            fn all_le(self, b: Self) -> bool {
                self.0.simd_le(b.0).all()
            }
            #[inline(always)]
            fn all_lt(self, b: Self) -> bool {
                self.0.simd_lt(b.0).all()
            }
        }
    };
}

wide_lanes!(NeonF32, f32x4, f32, 4);
wide_lanes!(NeonF64, f64x2, f64, 2);

impl WideLanes for NeonF64 {
    #[inline(always)]
    unsafe fn load_f32(ptr: *const f32) -> Self {
        // SAFETY: the caller guarantees 2 readable f32.
        let [a, b] = unsafe { ptr.cast::<[f32; 2]>().read_unaligned() };
        NeonF64(f64x2::new([a as f64, b as f64]))
    }
}

/// NEON converts lane by lane through `recadam_core::Storage` (the reference's own conversions):
/// the same bits by construction. Base aarch64 has no bf16 conversion instruction; its f32↔f16
/// conversions (`fcvtn`, `fcvtl`) are base ARMv8, but Rust's intrinsics for them need the `f16`
/// type and the `fp16` target feature.
impl HalfLanes for NeonF32 {
    #[inline(always)]
    unsafe fn load_bf16(ptr: *const u16, count: usize) -> Self {
        // SAFETY: the caller guarantees `count` (≤ 4) readable values.
        let block = unsafe { padded::<4>(ptr, count) };
        NeonF32(f32x4::from(block.map(|b| bf16::from_bits(b).widen())))
    }
    #[inline(always)]
    unsafe fn store_bf16(self, ptr: *mut u16, count: usize) {
        let block = self.0.to_array().map(|x| bf16::narrow(x).to_bits());
        // SAFETY: the caller guarantees `count` (≤ 4) writable values.
        unsafe { core::ptr::copy_nonoverlapping(block.as_ptr(), ptr, count) }
    }
    #[inline(always)]
    unsafe fn load_f16(ptr: *const u16, count: usize) -> Self {
        // SAFETY: the caller guarantees `count` (≤ 4) readable values.
        let block = unsafe { padded::<4>(ptr, count) };
        NeonF32(f32x4::from(block.map(|b| f16::from_bits(b).widen())))
    }
    #[inline(always)]
    unsafe fn store_f16(self, ptr: *mut u16, count: usize) {
        let block = self.0.to_array().map(|x| f16::narrow(x).to_bits());
        // SAFETY: the caller guarantees `count` (≤ 4) writable values.
        unsafe { core::ptr::copy_nonoverlapping(block.as_ptr(), ptr, count) }
    }
}

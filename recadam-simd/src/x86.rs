//! Lanes over raw `core::arch` vectors: AVX-512 (16 × f32, 8 × f64) and AVX2+FMA (8 × f32,
//! 4 × f64).
//!
//! Why not `wide` here: `wide` selects its representation with `cfg(target_feature)` when it is
//! compiled, so in a release build made without `-C target-cpu` its `f32x16` is four SSE vectors
//! and its `mul_add` is a multiply and an add rounded twice, even when called inside a
//! `#[target_feature(enable = "avx512f")]` function. That would be slower and give other bits.

use core::arch::x86_64::*;

use crate::lanes::{Lanes, WideLanes};

macro_rules! x86_lanes {
    (
        $name:ident, $vec:ty, $elem:ty, $n:expr, feature = $feature:literal,
        load = $load:ident, store = $store:ident,
        load_first = |$lp:ident, $lc:ident| $load_first:expr,
        store_first = |$sp:ident, $sc:ident, $sv:ident| $store_first:expr,
        set1 = $set1:ident,
        add = $add:ident, sub = $sub:ident, mul = $mul:ident, div = $div:ident,
        sqrt = $sqrt:ident, fmadd = $fmadd:ident,
        abs = |$a:ident| $abs:expr,
        all_le = |$x:ident, $y:ident| $all_le:expr,
        all_lt = |$x2:ident, $y2:ident| $all_lt:expr $(,)?
    ) => {
        #[doc = concat!("`", stringify!($vec), "` lanes; only created inside `", $feature, "` code.")]
        #[derive(Clone, Copy)]
        pub(crate) struct $name($vec);

        // SAFETY (every `unsafe` block below): the intrinsics need the CPU features named in
        // `$feature`. Values of this type are only created in the kernels of `backend.rs`, which
        // are `#[target_feature]` functions called after those features were detected (or are
        // enabled at compile time), and these methods are inlined into them.
        impl Lanes for $name {
            type Elem = $elem;
            const N: usize = $n;

            #[inline(always)]
            unsafe fn load(ptr: *const $elem) -> Self {
                // SAFETY: the caller guarantees N readable elements; loadu has no alignment need.
                unsafe { $name($load(ptr)) }
            }
            #[inline(always)]
            unsafe fn store(self, ptr: *mut $elem) {
                // SAFETY: the caller guarantees N writable elements; storeu has no alignment need.
                unsafe { $store(ptr, self.0) }
            }
            #[inline(always)]
            unsafe fn load_first($lp: *const $elem, $lc: usize) -> Self {
                // SAFETY: the caller guarantees `count` (< N) readable elements; the masked
                // load reads only those (masked-off lanes are not accessed and cannot fault).
                unsafe { $name($load_first) }
            }
            #[inline(always)]
            unsafe fn store_first(self, $sp: *mut $elem, $sc: usize) {
                let $sv = self.0;
                // SAFETY: the caller guarantees `count` (< N) writable elements; the masked
                // store writes only those.
                unsafe { $store_first }
            }
            #[inline(always)]
            fn splat(x: $elem) -> Self {
                // SAFETY: see the impl comment.
                unsafe { $name($set1(x)) }
            }
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                // SAFETY: see the impl comment.
                unsafe { $name($add(self.0, b.0)) }
            }
            #[inline(always)]
            fn sub(self, b: Self) -> Self {
                // SAFETY: see the impl comment.
                unsafe { $name($sub(self.0, b.0)) }
            }
            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                // SAFETY: see the impl comment.
                unsafe { $name($mul(self.0, b.0)) }
            }
            #[inline(always)]
            fn div(self, b: Self) -> Self {
                // SAFETY: see the impl comment.
                unsafe { $name($div(self.0, b.0)) }
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                // SAFETY: see the impl comment.
                unsafe { $name($sqrt(self.0)) }
            }
            #[inline(always)]
            fn mul_add(self, b: Self, c: Self) -> Self {
                // SAFETY: see the impl comment.
                unsafe { $name($fmadd(self.0, b.0, c.0)) }
            }
            #[inline(always)]
            fn abs(self) -> Self {
                let $a = self.0;
                // SAFETY: see the impl comment.
                unsafe { $name($abs) }
            }
            #[inline(always)]
            fn all_le(self, b: Self) -> bool {
                let ($x, $y) = (self.0, b.0);
                // SAFETY: see the impl comment.
                unsafe { $all_le }
            }
            #[inline(always)]
            fn all_lt(self, b: Self) -> bool {
                let ($x2, $y2) = (self.0, b.0);
                // SAFETY: see the impl comment.
                unsafe { $all_lt }
            }
        }
    };
}

x86_lanes!(
    Avx512F32,
    __m512,
    f32,
    16,
    feature = "avx512f",
    load = _mm512_loadu_ps,
    store = _mm512_storeu_ps,
    load_first = |p, count| _mm512_maskz_loadu_ps(first_lanes_16(count), p),
    store_first = |p, count, v| _mm512_mask_storeu_ps(p, first_lanes_16(count), v),
    set1 = _mm512_set1_ps,
    add = _mm512_add_ps,
    sub = _mm512_sub_ps,
    mul = _mm512_mul_ps,
    div = _mm512_div_ps,
    sqrt = _mm512_sqrt_ps,
    fmadd = _mm512_fmadd_ps,
    abs = |a| _mm512_abs_ps(a),
    all_le = |x, y| _mm512_cmp_ps_mask::<_CMP_LE_OQ>(x, y) == 0xFFFF,
    all_lt = |x, y| _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, y) == 0xFFFF,
);

x86_lanes!(
    Avx512F64,
    __m512d,
    f64,
    8,
    feature = "avx512f",
    load = _mm512_loadu_pd,
    store = _mm512_storeu_pd,
    load_first = |p, count| _mm512_maskz_loadu_pd(first_lanes_8(count), p),
    store_first = |p, count, v| _mm512_mask_storeu_pd(p, first_lanes_8(count), v),
    set1 = _mm512_set1_pd,
    add = _mm512_add_pd,
    sub = _mm512_sub_pd,
    mul = _mm512_mul_pd,
    div = _mm512_div_pd,
    sqrt = _mm512_sqrt_pd,
    fmadd = _mm512_fmadd_pd,
    abs = |a| _mm512_abs_pd(a),
    all_le = |x, y| _mm512_cmp_pd_mask::<_CMP_LE_OQ>(x, y) == 0xFF,
    all_lt = |x, y| _mm512_cmp_pd_mask::<_CMP_LT_OQ>(x, y) == 0xFF,
);

x86_lanes!(
    Avx2F32,
    __m256,
    f32,
    8,
    feature = "avx2,fma",
    load = _mm256_loadu_ps,
    store = _mm256_storeu_ps,
    load_first = |p, count| _mm256_maskload_ps(p, first_lanes_8x32(count)),
    store_first = |p, count, v| _mm256_maskstore_ps(p, first_lanes_8x32(count), v),
    set1 = _mm256_set1_ps,
    add = _mm256_add_ps,
    sub = _mm256_sub_ps,
    mul = _mm256_mul_ps,
    div = _mm256_div_ps,
    sqrt = _mm256_sqrt_ps,
    fmadd = _mm256_fmadd_ps,
    abs = |a| _mm256_andnot_ps(_mm256_set1_ps(-0.0), a),
    all_le = |x, y| _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(x, y)) == 0xFF,
    all_lt = |x, y| _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(x, y)) == 0xFF,
);

x86_lanes!(
    Avx2F64,
    __m256d,
    f64,
    4,
    feature = "avx2,fma",
    load = _mm256_loadu_pd,
    store = _mm256_storeu_pd,
    load_first = |p, count| _mm256_maskload_pd(p, first_lanes_4x64(count)),
    store_first = |p, count, v| _mm256_maskstore_pd(p, first_lanes_4x64(count), v),
    set1 = _mm256_set1_pd,
    add = _mm256_add_pd,
    sub = _mm256_sub_pd,
    mul = _mm256_mul_pd,
    div = _mm256_div_pd,
    sqrt = _mm256_sqrt_pd,
    fmadd = _mm256_fmadd_pd,
    abs = |a| _mm256_andnot_pd(_mm256_set1_pd(-0.0), a),
    all_le = |x, y| _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LE_OQ>(x, y)) == 0xF,
    all_lt = |x, y| _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(x, y)) == 0xF,
);

/// The mask of lanes `0..count` of 16 (`count < 16`).
#[inline(always)]
fn first_lanes_16(count: usize) -> __mmask16 {
    ((1u32 << count) - 1) as __mmask16
}

/// The mask of lanes `0..count` of 8 (`count < 8`).
#[inline(always)]
fn first_lanes_8(count: usize) -> __mmask8 {
    ((1u32 << count) - 1) as __mmask8
}

/// AVX2's mask of lanes `0..count` of 8 × 32 bits: all ones (the sign bit set) in those lanes.
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn first_lanes_8x32(count: usize) -> __m256i {
    // SAFETY: AVX2, as the caller guarantees.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(count as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

/// AVX2's mask of lanes `0..count` of 4 × 64 bits.
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn first_lanes_4x64(count: usize) -> __m256i {
    // SAFETY: AVX2, as the caller guarantees.
    unsafe {
        _mm256_cmpgt_epi64(
            _mm256_set1_epi64x(count as i64),
            _mm256_setr_epi64x(0, 1, 2, 3),
        )
    }
}

impl WideLanes for Avx512F64 {
    #[inline(always)]
    unsafe fn load_f32(ptr: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable f32; AVX-512F as for every method here.
        unsafe { Avx512F64(_mm512_cvtps_pd(_mm256_loadu_ps(ptr))) }
    }
}

impl WideLanes for Avx2F64 {
    #[inline(always)]
    unsafe fn load_f32(ptr: *const f32) -> Self {
        // SAFETY: the caller guarantees 4 readable f32; AVX as for every method here.
        unsafe { Avx2F64(_mm256_cvtps_pd(_mm_loadu_ps(ptr))) }
    }
}

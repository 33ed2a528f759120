//! Lanes over raw `core::arch` vectors: AVX-512 (16 × f32, 8 × f64) and AVX2+FMA (8 × f32,
//! 4 × f64).
//!
//! Why not `wide` here: `wide` selects its representation with `cfg(target_feature)` when it is
//! compiled, so in a release build made without `-C target-cpu` its `f32x16` is four SSE vectors
//! and its `mul_add` is a multiply and an add rounded twice, even when called inside a
//! `#[target_feature(enable = "avx512f")]` function. That would be slower and give other bits.

use core::arch::x86_64::*;

use crate::lanes::{Lanes, WideLanes};
use crate::stored::{padded, HalfLanes};

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

/// bf16 bits of each f32 lane: round to nearest even (add 0x7fff plus the lowest kept bit, then
/// drop 16 bits; a carry rounds up into the exponent, and past the largest finite value to ∞),
/// a NaN as `(bits >> 16) | 0x0040` (quiet, same sign).
///
/// # Safety
/// The CPU must support AVX-512F.
#[inline(always)]
unsafe fn bf16_bits_avx512(x: __m512) -> __m256i {
    // SAFETY: AVX-512F, as the caller guarantees.
    unsafe {
        let bits = _mm512_castps_si512(x);
        let high = _mm512_srli_epi32::<16>(bits);
        let lowest_kept = _mm512_and_si512(high, _mm512_set1_epi32(1));
        let bias = _mm512_add_epi32(lowest_kept, _mm512_set1_epi32(0x7fff));
        let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, bias));
        let quiet = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
        _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, rounded, quiet))
    }
}

/// As [`bf16_bits_avx512`] for 8 lanes.
///
/// # Safety
/// The CPU must support AVX2.
#[inline(always)]
unsafe fn bf16_bits_avx2(x: __m256) -> __m128i {
    // SAFETY: AVX2, as the caller guarantees.
    unsafe {
        let bits = _mm256_castps_si256(x);
        let high = _mm256_srli_epi32::<16>(bits);
        let lowest_kept = _mm256_and_si256(high, _mm256_set1_epi32(1));
        let bias = _mm256_add_epi32(lowest_kept, _mm256_set1_epi32(0x7fff));
        let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(bits, bias));
        let quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
        let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
        let chosen = _mm256_blendv_epi8(rounded, quiet, nan);
        // Every lane is below 2^16, so the saturating pack is exact; it packs within each
        // 128-bit half, and the permute brings the two halves' results together.
        let packed = _mm256_packus_epi32(chosen, chosen);
        _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b00_00_10_00>(packed))
    }
}

/// `vcvtps2ph`'s rounding: to nearest even (it keeps f16 subnormals, turns overflow into ±∞ and a
/// NaN into a quiet NaN of the same sign with the top of its payload).
const F16_ROUNDING: i32 = _MM_FROUND_TO_NEAREST_INT;

/// Writes the first `count` 16-bit values of a vector's worth of them.
///
/// # Safety
/// `ptr..ptr + count` must be writable, `count ≤ N`.
#[inline(always)]
unsafe fn store_first_u16<const N: usize>(block: [u16; N], ptr: *mut u16, count: usize) {
    // SAFETY: as the caller guarantees.
    unsafe { core::ptr::copy_nonoverlapping(block.as_ptr(), ptr, count) }
}

/// Loads `count` (≤ 16) 16-bit values into a 256-bit vector, zero beyond them; a partial vector
/// goes through a padded block, so nothing past the slice is read.
///
/// # Safety
/// `ptr..ptr + count` must be readable; the CPU must support AVX.
#[inline(always)]
unsafe fn load_16x16(ptr: *const u16, count: usize) -> __m256i {
    // SAFETY: as the caller guarantees.
    unsafe {
        if count == 16 {
            _mm256_loadu_si256(ptr.cast())
        } else {
            _mm256_loadu_si256(padded::<16>(ptr, count).as_ptr().cast())
        }
    }
}

/// Stores the first `count` (≤ 16) 16-bit values of `x`, writing nothing beyond them.
///
/// # Safety
/// `ptr..ptr + count` must be writable; the CPU must support AVX.
#[inline(always)]
unsafe fn store_16x16(x: __m256i, ptr: *mut u16, count: usize) {
    // SAFETY: as the caller guarantees.
    unsafe {
        if count == 16 {
            _mm256_storeu_si256(ptr.cast(), x)
        } else {
            let mut block = [0u16; 16];
            _mm256_storeu_si256(block.as_mut_ptr().cast(), x);
            store_first_u16(block, ptr, count)
        }
    }
}

/// As [`load_16x16`] for `count` ≤ 8 values in a 128-bit vector.
///
/// # Safety
/// `ptr..ptr + count` must be readable; the CPU must support SSE2.
#[inline(always)]
unsafe fn load_8x16(ptr: *const u16, count: usize) -> __m128i {
    // SAFETY: as the caller guarantees.
    unsafe {
        if count == 8 {
            _mm_loadu_si128(ptr.cast())
        } else {
            _mm_loadu_si128(padded::<8>(ptr, count).as_ptr().cast())
        }
    }
}

/// As [`store_16x16`] for `count` ≤ 8 values of a 128-bit vector.
///
/// # Safety
/// `ptr..ptr + count` must be writable; the CPU must support SSE2.
#[inline(always)]
unsafe fn store_8x16(x: __m128i, ptr: *mut u16, count: usize) {
    // SAFETY: as the caller guarantees.
    unsafe {
        if count == 8 {
            _mm_storeu_si128(ptr.cast(), x)
        } else {
            let mut block = [0u16; 8];
            _mm_storeu_si128(block.as_mut_ptr().cast(), x);
            store_first_u16(block, ptr, count)
        }
    }
}

// SAFETY (every `unsafe` block below): as for the lanes above, these methods are inlined into
// `#[target_feature]` kernels that have AVX-512F (which implies F16C); the caller guarantees
// `count` (≤ 16) readable or writable values.
impl HalfLanes for Avx512F32 {
    #[inline(always)]
    unsafe fn load_bf16(ptr: *const u16, count: usize) -> Self {
        // SAFETY: see the impl comment.
        unsafe {
            let widened = _mm512_cvtepu16_epi32(load_16x16(ptr, count));
            Avx512F32(_mm512_castsi512_ps(_mm512_slli_epi32::<16>(widened)))
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, ptr: *mut u16, count: usize) {
        // SAFETY: see the impl comment.
        unsafe { store_16x16(bf16_bits_avx512(self.0), ptr, count) }
    }
    #[inline(always)]
    unsafe fn load_f16(ptr: *const u16, count: usize) -> Self {
        // SAFETY: see the impl comment.
        unsafe { Avx512F32(_mm512_cvtph_ps(load_16x16(ptr, count))) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, ptr: *mut u16, count: usize) {
        // SAFETY: see the impl comment.
        unsafe { store_16x16(_mm512_cvtps_ph::<F16_ROUNDING>(self.0), ptr, count) }
    }
}

// SAFETY (every `unsafe` block below): inlined into `#[target_feature(enable = "avx2,fma,f16c")]`
// kernels, called only where the CPU has all three; the caller guarantees `count` (≤ 8)
// readable or writable values.
impl HalfLanes for Avx2F32 {
    #[inline(always)]
    unsafe fn load_bf16(ptr: *const u16, count: usize) -> Self {
        // SAFETY: see the impl comment.
        unsafe {
            let widened = _mm256_cvtepu16_epi32(load_8x16(ptr, count));
            Avx2F32(_mm256_castsi256_ps(_mm256_slli_epi32::<16>(widened)))
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(self, ptr: *mut u16, count: usize) {
        // SAFETY: see the impl comment.
        unsafe { store_8x16(bf16_bits_avx2(self.0), ptr, count) }
    }
    #[inline(always)]
    unsafe fn load_f16(ptr: *const u16, count: usize) -> Self {
        // SAFETY: see the impl comment.
        unsafe { Avx2F32(_mm256_cvtph_ps(load_8x16(ptr, count))) }
    }
    #[inline(always)]
    unsafe fn store_f16(self, ptr: *mut u16, count: usize) {
        // SAFETY: see the impl comment.
        unsafe { store_8x16(_mm256_cvtps_ph::<F16_ROUNDING>(self.0), ptr, count) }
    }
}

#[cfg(all(test, feature = "std", not(miri)))]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use recadam_core::half::{bf16, f16};
    use recadam_core::Storage;

    use super::*;

    /// f32 bit patterns that cover every narrowing case: each bf16 rounding tie and its
    /// neighbours for every upper half; each f16 tie of a normal result and its neighbours for
    /// every upper 19 bits (overflow and NaN ranges included); the ties of subnormal f16 results,
    /// whose rounding bit moves down with the exponent (f32 exponents −26 to −14, every rounding
    /// position, 1024 upper mantissas, both signs); and 4M scattered patterns.
    fn patterns() -> Vec<u32> {
        let mut out = Vec::new();
        for high in 0..=u16::MAX as u32 {
            for low in [0u32, 1, 0x7fff, 0x8000, 0x8001, 0xffff] {
                out.push(high << 16 | low);
            }
        }
        for high in 0..(1u32 << 19) {
            for low in [0x0fffu32, 0x1000, 0x1001] {
                out.push(high << 13 | low);
            }
        }
        for exponent in 101u32..=113 {
            for upper in 0..1u32 << 10 {
                for position in 0..23 {
                    let tie = 1u32 << position;
                    let kept = (upper << 13) & !(2 * tie - 1);
                    for sign in [0, 1u32 << 31] {
                        for low in [tie - 1, tie, tie + 1] {
                            out.push(sign | exponent << 23 | kept | low);
                        }
                    }
                }
            }
        }
        out.extend((0..1u32 << 22).map(|i| i.wrapping_mul(0x9e37_79b1)));
        out
    }

    /// Narrows and widens `patterns` through lanes `L`, in whole and partial vectors, and
    /// compares every result bit for bit with `recadam_core::Storage`.
    ///
    /// # Safety
    /// The CPU must support `L` (and F16C).
    #[inline(always)]
    unsafe fn check<L: HalfLanes>(patterns: &[u32]) {
        let values: Vec<f32> = patterns.iter().map(|&b| f32::from_bits(b)).collect();
        let (mut b, mut h) = ([0u16; 16], [0u16; 16]);
        for (k, chunk) in values.chunks(L::N).enumerate() {
            let count = if k % 5 == 4 {
                chunk.len() - 1
            } else {
                chunk.len()
            };
            // SAFETY: count ≤ chunk.len() ≤ N values readable and writable.
            unsafe {
                let x = L::load_first(chunk.as_ptr(), count.min(L::N - 1));
                let x = if count == L::N {
                    L::load(chunk.as_ptr())
                } else {
                    x
                };
                x.store_bf16(b.as_mut_ptr(), count);
                x.store_f16(h.as_mut_ptr(), count);
            }
            for i in 0..count {
                let want_b = bf16::narrow(chunk[i]).to_bits();
                let want_h = f16::narrow(chunk[i]).to_bits();
                assert_eq!(b[i], want_b, "bf16 of {:#010x}", chunk[i].to_bits());
                assert_eq!(h[i], want_h, "f16 of {:#010x}", chunk[i].to_bits());
            }
        }
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let mut wide = [0f32; 16];
        for chunk in all.chunks(L::N) {
            for count in [chunk.len(), chunk.len() - 1] {
                for (format, widened) in [
                    // SAFETY: count ≤ N readable u16.
                    ("bf16", unsafe { L::load_bf16(chunk.as_ptr(), count) }),
                    // SAFETY: as above.
                    ("f16", unsafe { L::load_f16(chunk.as_ptr(), count) }),
                ] {
                    // SAFETY: wide holds 16 ≥ N writable f32.
                    unsafe { widened.store(wide.as_mut_ptr()) };
                    for i in 0..L::N {
                        let want = match (i < count, format) {
                            (false, _) => 0.0, // lanes past count are zero
                            (true, "bf16") => bf16::from_bits(chunk[i]).widen(),
                            (true, _) => f16::from_bits(chunk[i]).widen(),
                        };
                        assert_eq!(
                            wide[i].to_bits(),
                            want.to_bits(),
                            "{format} {:#06x}",
                            chunk[i.min(count.max(1) - 1)]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn narrowing_and_widening_match_the_reference_on_every_x86_backend() {
        let patterns = patterns();
        let mut ran = 0;
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn run(p: &[u32]) {
                // SAFETY: AVX-512F, as this function enables.
                unsafe { check::<Avx512F32>(p) }
            }
            // SAFETY: detected above.
            unsafe { run(&patterns) };
            ran += 1;
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            #[target_feature(enable = "avx2,fma,f16c")]
            unsafe fn run(p: &[u32]) {
                // SAFETY: AVX2, FMA and F16C, as this function enables.
                unsafe { check::<Avx2F32>(p) }
            }
            // SAFETY: detected above.
            unsafe { run(&patterns) };
            ran += 1;
        }
        std::eprintln!("x86 backends checked: {ran}");
    }
}

//! A vector of float lanes: the few operations the update needs, each with the rounding of the
//! scalar reference (IEEE add, sub, mul, div and sqrt, and a fused multiply-add that rounds once).
//!
//! Implemented for raw `core::arch` vectors on x86_64 (AVX-512, AVX2+FMA) and for `wide`'s
//! vectors on aarch64 (NEON). Implementations are crate-private: a value of an x86 lane type is
//! only ever created inside a `#[target_feature]` function that the dispatcher calls after
//! checking the CPU, which is what makes their safe methods sound. (The AVX2 lanes also run inside
//! the AVX-512 kernels: `avx512f` implies AVX2, FMA and F16C, in rustc and in std's detection.)

use recadam_core::Element;

pub(crate) trait Lanes: Copy {
    type Elem: Element;
    /// Number of lanes.
    const N: usize;

    /// Loads `N` elements from `ptr` (no alignment needed).
    ///
    /// # Safety
    /// `ptr..ptr + N` must be readable.
    unsafe fn load(ptr: *const Self::Elem) -> Self;
    /// Stores `N` elements to `ptr` (no alignment needed).
    ///
    /// # Safety
    /// `ptr..ptr + N` must be writable.
    unsafe fn store(self, ptr: *mut Self::Elem);
    /// Loads the first `count` elements (`count < N`), zero in the other lanes, and reads no
    /// memory beyond them: the vectors at the two ends of a slice.
    ///
    /// # Safety
    /// `ptr..ptr + count` must be readable.
    unsafe fn load_first(ptr: *const Self::Elem, count: usize) -> Self;
    /// Stores lanes `0..count` (`count < N`) and writes no memory beyond them.
    ///
    /// # Safety
    /// `ptr..ptr + count` must be writable.
    unsafe fn store_first(self, ptr: *mut Self::Elem, count: usize);
    fn splat(x: Self::Elem) -> Self;
    fn add(self, b: Self) -> Self;
    fn sub(self, b: Self) -> Self;
    fn mul(self, b: Self) -> Self;
    fn div(self, b: Self) -> Self;
    fn sqrt(self) -> Self;
    /// `self * b + c`, rounded once.
    fn mul_add(self, b: Self, c: Self) -> Self;
    fn abs(self) -> Self;
    /// Whether `self[i] <= b[i]` for every lane (false where either is NaN).
    fn all_le(self, b: Self) -> bool;
    /// Whether `self[i] < b[i]` for every lane (false where either is NaN).
    fn all_lt(self, b: Self) -> bool;
}

/// `f64` lanes that can also load `f32` values, widened (exactly): the gradient statistics of
/// f32 gradients accumulate in f64.
pub(crate) trait WideLanes: Lanes<Elem = f64> {
    /// Loads `N` f32 values from `ptr` and widens them.
    ///
    /// # Safety
    /// `ptr..ptr + N` must be readable.
    unsafe fn load_f32(ptr: *const f32) -> Self;
}

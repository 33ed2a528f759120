//! Sum of squares and finiteness of a gradient slice, in a fixed summation order.
//!
//! Gradient clipping scales every gradient by a factor computed from the global norm, so the
//! norm's last bit reaches the parameters. To keep one result on every backend and thread count,
//! the order is fixed by definition, not by the vector width: element `i` is added to
//! accumulator `i mod 32` (in `f64`), and the 32 accumulators are combined pairwise in a fixed
//! tree. (32 independent sums keep the vector units busy: with 16 the loop waited on the
//! latency of its additions and read gradients at 30 GB/s instead of the memory's 50.)
//!
//! Finiteness comes from the sum itself: a NaN or an infinity makes it non-finite, and only then
//! does a second pass look at the elements (an f64 sum of f32 squares cannot overflow, but f64
//! gradients above ~1e154 can). The same plain code is compiled under each backend's target features, and the compiler
//! never reassociates floating-point additions, so every backend gives the same bits.

use recadam_core::Element;

/// Number of independent accumulators: the summation order of [`GradStats`].
pub const ACCUMULATORS: usize = 32;

/// What the optimizer needs to know about a gradient slice before it steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradStats {
    /// Σ g², in `f64` in the fixed order described in the module docs.
    pub sum_squares: f64,
    /// Whether every element is finite (no NaN, no infinity).
    pub finite: bool,
}

impl GradStats {
    /// The statistics of nothing: zero, finite.
    pub const EMPTY: GradStats = GradStats {
        sum_squares: 0.0,
        finite: true,
    };

    /// The statistics of two consecutive parts (`self` first).
    pub fn then(self, next: GradStats) -> GradStats {
        GradStats {
            sum_squares: self.sum_squares + next.sum_squares,
            finite: self.finite && next.finite,
        }
    }
}

#[inline(always)]
pub(crate) fn grad_stats_body<T: Element>(g: &[T]) -> GradStats {
    let mut acc = [0.0f64; ACCUMULATORS];
    for (i, &x) in g.iter().enumerate() {
        let wide = x.widen_to_f64();
        acc[i % ACCUMULATORS] += wide * wide;
    }
    finish(g, acc)
}

/// Combines the accumulators in the fixed tree, and settles finiteness.
#[inline(always)]
fn finish<T: Element>(g: &[T], acc: [f64; ACCUMULATORS]) -> GradStats {
    let sum_squares = combine(acc);
    GradStats {
        sum_squares,
        finite: sum_squares.is_finite() || g.iter().all(|x| x.is_finite()),
    }
}

/// The fixed pairwise tree over the accumulators.
#[inline(always)]
fn combine(mut acc: [f64; ACCUMULATORS]) -> f64 {
    let mut width = ACCUMULATORS;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            acc[j] += acc[j + width];
        }
    }
    acc[0]
}

/// [`grad_stats_body`] for gradients stored as bf16 or f16, widened exactly: the same order, so
/// the same bits as the statistics of their f32 values. Squares of values in f32's range cannot
/// overflow an f64 sum, so the sum alone says whether every element is finite.
#[inline]
pub(crate) fn stored_stats_body<G: recadam_core::Storage>(g: &[G]) -> GradStats {
    let mut acc = [0.0f64; ACCUMULATORS];
    for (i, &x) in g.iter().enumerate() {
        let wide = f64::from(x.widen());
        acc[i % ACCUMULATORS] += wide * wide;
    }
    let sum_squares = combine(acc);
    GradStats {
        sum_squares,
        finite: sum_squares.is_finite(),
    }
}

/// A gradient element type the vector statistics can load into f64 lanes.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) trait StatsInput: Element {
    /// Loads `L::N` elements as f64 lanes.
    ///
    /// # Safety
    /// `ptr..ptr + L::N` must be readable and the CPU must support `L`.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    unsafe fn load_wide<L: crate::lanes::WideLanes>(ptr: *const Self) -> L;
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl StatsInput for f32 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    unsafe fn load_wide<L: crate::lanes::WideLanes>(ptr: *const f32) -> L {
        // SAFETY: forwarded from the caller.
        unsafe { L::load_f32(ptr) }
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl StatsInput for f64 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    unsafe fn load_wide<L: crate::lanes::WideLanes>(ptr: *const f64) -> L {
        // SAFETY: forwarded from the caller.
        unsafe { L::load(ptr) }
    }
}

/// [`grad_stats_body`] with f64 lanes: accumulator vector `v` holds accumulators
/// `v·N .. (v+1)·N`, so every element lands in accumulator `i mod 32` as in the definition, and
/// the same tree combines them. Same bits as the scalar body.
///
/// # Safety
/// The CPU must support `L`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
pub(crate) unsafe fn grad_stats_lanes<L: crate::lanes::WideLanes, T: StatsInput>(
    g: &[T],
) -> GradStats {
    let vectors = ACCUMULATORS / L::N;
    let mut acc = [L::splat(0.0); ACCUMULATORS];
    let body = g.len() - g.len() % ACCUMULATORS;
    let mut i = 0;
    while i < body {
        for (v, a) in acc.iter_mut().enumerate().take(vectors) {
            // SAFETY: i + ACCUMULATORS ≤ body ≤ len, so every lane read is in bounds.
            let x: L = unsafe { T::load_wide(g.as_ptr().add(i + v * L::N)) };
            *a = a.add(x.mul(x));
        }
        i += ACCUMULATORS;
    }
    let mut lanes = [0.0f64; ACCUMULATORS];
    for (v, a) in acc.iter().enumerate().take(vectors) {
        // SAFETY: v·N + N ≤ ACCUMULATORS: within the array.
        unsafe { a.store(lanes.as_mut_ptr().add(v * L::N)) };
    }
    for (j, &x) in g[body..].iter().enumerate() {
        let wide = x.widen_to_f64();
        lanes[j] += wide * wide;
    }
    finish(g, lanes)
}

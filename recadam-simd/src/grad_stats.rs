//! Sum of squares and finiteness of a gradient slice, in a fixed summation order.
//!
//! Gradient clipping scales every gradient by a factor computed from the global norm, so the
//! norm's last bit reaches the parameters. To keep one result on every backend and thread count,
//! the order is fixed by definition, not by the vector width: element `i` is added to
//! accumulator `i mod 16` (in `f64`), and the 16 accumulators are combined pairwise in a fixed
//! tree. The same plain code is compiled under each backend's target features, and the compiler
//! never reassociates floating-point additions, so every backend gives the same bits.

use recadam_core::Element;

/// Number of independent accumulators: the summation order of [`GradStats`].
pub const ACCUMULATORS: usize = 16;

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
    // The sum of zero_if_finite(x) is 0 exactly when every x is finite, and NaN otherwise.
    let mut not_finite = [T::zero(); ACCUMULATORS];
    let chunks = g.chunks_exact(ACCUMULATORS);
    let rest = chunks.remainder();
    for chunk in chunks {
        for j in 0..ACCUMULATORS {
            let x = chunk[j].widen_to_f64();
            acc[j] += x * x;
            not_finite[j] = not_finite[j] + zero_if_finite(chunk[j]);
        }
    }
    for (j, &x) in rest.iter().enumerate() {
        let wide = x.widen_to_f64();
        acc[j] += wide * wide;
        not_finite[j] = not_finite[j] + zero_if_finite(x);
    }
    let mut width = ACCUMULATORS;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            acc[j] += acc[j + width];
            not_finite[j] = not_finite[j] + not_finite[j + width];
        }
    }
    GradStats {
        sum_squares: acc[0],
        finite: not_finite[0] == T::zero(),
    }
}

/// `x − x`: 0 for a finite `x`, NaN for an infinity or NaN. Branch-free, so it vectorises.
#[inline(always)]
#[allow(clippy::eq_op)]
fn zero_if_finite<T: Element>(x: T) -> T {
    x - x
}

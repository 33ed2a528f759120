//! `β^t` for integer `t`, correctly rounded.
//!
//! The bias corrections need `β^t`, which the official code gets from C `pow` (correctly rounded
//! in glibc for these arguments). libm's `pow` is off by one ulp for about 7% of (β, t) pairs and
//! `powi` (repeated multiplication) is worse; either moves f64 trajectories in the last bits.
//! Binary exponentiation in double-double arithmetic carries about 100 bits, so the final rounding
//! to `f64` is the correct one except within ~2^-97 of a rounding midpoint.

use crate::Element;

/// An unevaluated sum `hi + lo` with `|lo| ≤ ulp(hi)/2`.
#[derive(Clone, Copy)]
struct DoubleDouble {
    hi: f64,
    lo: f64,
}

impl DoubleDouble {
    fn mul(self, other: DoubleDouble) -> DoubleDouble {
        let hi = self.hi * other.hi;
        // The rounding error of hi, exactly (FMA is error-free here).
        let err = self.hi.fused_mul_add(other.hi, -hi);
        let lo = err + (self.hi * other.lo + self.lo * other.hi);
        // Renormalise (Fast2Sum: |hi| ≥ |lo|).
        let sum = hi + lo;
        DoubleDouble {
            hi: sum,
            lo: lo - (sum - hi),
        }
    }
}

/// `base^exp`, correctly rounded for `base` in [0, 1) (the β of Adam), exact for `exp = 0`.
pub(crate) fn powi_correctly_rounded(base: f64, mut exp: u64) -> f64 {
    let mut result = DoubleDouble { hi: 1.0, lo: 0.0 };
    let mut power = DoubleDouble { hi: base, lo: 0.0 };
    while exp > 0 {
        if exp & 1 == 1 {
            result = result.mul(power);
        }
        exp >>= 1;
        if exp > 0 {
            power = power.mul(power);
        }
    }
    result.hi + result.lo
}

#[cfg(test)]
mod tests {
    use super::powi_correctly_rounded;

    #[test]
    fn known_values() {
        // 0.9^4 = 0.65610000000000006475…: the nearest f64 is 0.6561, not 0.6561000000000001.
        assert_eq!(powi_correctly_rounded(0.9, 4), 0.6561);
        assert_eq!(powi_correctly_rounded(0.5, 10), 1.0 / 1024.0);
        assert_eq!(powi_correctly_rounded(0.999, 0), 1.0);
        assert_eq!(powi_correctly_rounded(0.0, 3), 0.0);
        assert_eq!(powi_correctly_rounded(0.9, u64::MAX), 0.0);
        assert_eq!(powi_correctly_rounded(0.999, 1), 0.999);
    }
}

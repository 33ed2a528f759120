//! The one error type of the core: every bad input names what was wrong and its value.

use core::fmt;

/// What went wrong when configuring or running an update. Never a panic: every entry point of
/// the core returns this for bad input.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A hyperparameter is outside its valid range.
    InvalidHyperparameter {
        /// The field, as named in [`crate::RecAdamConfig`] (`"lr"`, `"beta1"`, `"anneal.t0"`, ...).
        field: &'static str,
        /// The value that was given.
        value: f64,
        /// What the field must be.
        expected: &'static str,
    },
    /// The decoupled penalty step `p ← p − c·(p − θ*)` with `c = lr·(w − λ)·γ ≥ 2` moves the
    /// parameters away from θ* further each step: training would diverge (DESIGN 1.3).
    PenaltyDiverges {
        /// The learning rate that was given (the configured one, or the one of this step).
        lr: f64,
        /// The factor `c = lr·(w − λ)·γ` (largest at the first step).
        factor: f64,
        /// The largest stable learning rate, `2 / ((w − λ(1))·γ)` (exclusive).
        max_stable_lr: f64,
    },
    /// The decoupled weight decay `p ← p·(1 − lr·wd)` with `lr·wd ≥ 2` grows the parameters
    /// every step instead of shrinking them.
    WeightDecayDiverges {
        /// The learning rate that was given.
        lr: f64,
        /// The factor `lr·wd`.
        factor: f64,
        /// The largest stable learning rate, `2 / wd` (exclusive).
        max_stable_lr: f64,
    },
    /// A per-step scalar does not fit in the element type (for example lr = 1e39 in f32): the
    /// step would write infinities.
    ScalarOverflow {
        /// Which scalar (`"−s·λ"`, `"λ"`, ...).
        scalar: &'static str,
        /// Its value in f64.
        value: f64,
        /// The element type.
        dtype: &'static str,
    },
    /// Steps count from 1, as in the paper and the official code.
    StepZero,
    /// The slices of one update do not have the same length.
    LengthMismatch {
        /// Which slice (`"grads"`, `"exp_avg"`, `"exp_avg_sq"`, `"pretrained"`, `"params_copy"`).
        slice: &'static str,
        /// Its length.
        len: usize,
        /// The length of `params`.
        expected: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::InvalidHyperparameter {
                field,
                value,
                expected,
            } => write!(
                f,
                "invalid RecAdam hyperparameter `{field}` = {value:e}: it must be {expected}"
            ),
            Error::PenaltyDiverges {
                lr,
                factor,
                max_stable_lr,
            } => write!(
                f,
                "`lr` = {lr:e} makes the decoupled penalty diverge: c = lr·(w − λ)·γ = {factor} ≥ 2 \
                 multiplies the distance to the pretrained weights by |1 − c| > 1 every step; \
                 use lr < {max_stable_lr:e} (c < 1 avoids overshooting θ* as well)"
            ),
            Error::WeightDecayDiverges {
                lr,
                factor,
                max_stable_lr,
            } => write!(
                f,
                "`lr` = {lr:e} with `weight_decay` makes the decay diverge: lr·wd = {factor} ≥ 2 \
                 multiplies the parameters by |1 − lr·wd| > 1 every step; use lr < {max_stable_lr:e}"
            ),
            Error::ScalarOverflow {
                scalar,
                value,
                dtype,
            } => write!(
                f,
                "the step's scalar {scalar} = {value:e} does not fit in {dtype}: the learning rate, \
                 `anneal_w` or `pretrain_cof` is too large for this element type"
            ),
            Error::StepZero => write!(f, "invalid step `t` = 0: steps count from 1"),
            Error::LengthMismatch {
                slice,
                len,
                expected,
            } => write!(
                f,
                "slice `{slice}` has length {len}, but `params` has length {expected}"
            ),
        }
    }
}

impl core::error::Error for Error {}

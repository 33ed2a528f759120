//! The per-step scalars: everything that depends on the step and not on the element, computed
//! once per step in `f64` and rounded once to the element type (the operation order `testdata/golden/README.md` gives).

use crate::powi::powi_correctly_rounded;
use crate::{Element, Error, PenaltyMode, RecAdamConfig};

/// Which per-element rule a penalised parameter follows this step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Adam/AdamW with no penalty: `w = 0`, or a parameter without a pretrained counterpart.
    Plain,
    /// RecAdam: Adam step scaled by λ, then the penalty applied to the updated parameter.
    Decoupled,
    /// Ablation: penalty gradient mixed into the gradient before the moments.
    Coupled,
}

/// The scalars of one optimizer step, in the element type `T`.
///
/// Names follow the operation they feed; signs are folded in as the official code folds them
/// (`p.add_(-lr*wd, p)` multiplies by `f(−lr·wd)`), because the sign of a zero result depends on it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct StepScalars<T> {
    /// The step, counting from 1.
    pub t: u64,
    /// The learning rate of this step.
    pub lr: f64,
    /// λ(t) in `f64` (0 when there is no penalty).
    pub lambda: f64,
    /// The rule for parameters that have a pretrained counterpart.
    pub rule: Rule,
    /// `f(β1)`.
    pub beta1: T,
    /// `f(1 − β1)`, the difference taken in `f64`.
    pub one_minus_beta1: T,
    /// `f(β2)`.
    pub beta2: T,
    /// `f(1 − β2)`, the difference taken in `f64`.
    pub one_minus_beta2: T,
    /// `f(ε)`.
    pub eps: T,
    /// `f(−s)`: the Adam step of parameters without a penalty (s = bias-corrected lr).
    pub neg_step: T,
    /// `f(−s·λ)`: the Adam step of penalised parameters (decoupled rule).
    pub neg_step_lambda: T,
    /// `f(−lr·(w − λ)·γ)`: the decoupled penalty coefficient (−0.0 when λ = w).
    pub neg_penalty: T,
    /// `f(λ)`: the weight of the task gradient (coupled rule).
    pub lambda_t: T,
    /// `f((w − λ)·γ)`: the weight of the penalty gradient (coupled rule).
    pub penalty_grad: T,
    /// `f(−lr·wd)`: the decoupled weight decay coefficient.
    pub neg_weight_decay: T,
    /// Whether weight decay runs at all (`wd > 0`, as the official code tests it).
    pub weight_decay: bool,
    /// `f(scale)`: every gradient is multiplied by it first, `g ← g·scale`, as
    /// `clip_grad_norm_` scales gradients in place before the step. 1 (an exact no-op) unless
    /// set with [`StepScalars::with_grad_scale`].
    pub grad_scale: T,
}

impl<T: Element> StepScalars<T> {
    /// The scalars of step `t` (from 1) at learning rate `lr` (the scheduled rate of this step).
    ///
    /// Validates the configuration and `lr`, including the stability of the penalty at `lr`.
    ///
    /// ```
    /// use recadam_core::{RecAdamConfig, StepScalars};
    /// let config = RecAdamConfig::default();
    /// let s = StepScalars::<f32>::new(&config, 1, 2e-5).unwrap();
    /// assert!(s.lambda < 1e-50); // sigmoid k = 0.5, t0 = 250: λ(1) ≈ 1.7e-54
    /// assert!(StepScalars::<f32>::new(&config, 0, 2e-5).is_err()); // steps count from 1
    /// ```
    pub fn new(config: &RecAdamConfig, t: u64, lr: f64) -> Result<Self, Error> {
        config.validate()?;
        if t == 0 {
            return Err(Error::StepZero);
        }
        if !(lr >= 0.0 && lr.is_finite()) {
            return Err(Error::InvalidHyperparameter {
                field: "lr",
                value: lr,
                expected: "finite and ≥ 0",
            });
        }
        config.check_stable(lr, t)?;
        if T::round_from_f64(config.eps) == T::zero() {
            return Err(Error::InvalidHyperparameter {
                field: "eps",
                value: config.eps,
                expected: "large enough not to round to 0 in the element type",
            });
        }

        // Python float arithmetic, left to right, as the official `step()` evaluates it.
        let mut step_size = lr;
        if config.correct_bias {
            step_size = lr * (1.0 - powi_correctly_rounded(config.beta2, t)).sqrt_ieee()
                / (1.0 - powi_correctly_rounded(config.beta1, t));
        }
        let w = config.anneal_w;
        let lambda = config.lambda(t);
        let rule = match (config.has_penalty(), config.penalty_mode) {
            (false, _) => Rule::Plain,
            (true, PenaltyMode::Decoupled) => Rule::Decoupled,
            (true, PenaltyMode::Coupled) => Rule::Coupled,
        };
        // Every scalar must fit in T, or the step would write infinities.
        let fits = |scalar: &'static str, value: f64| {
            if T::round_from_f64(value).is_finite() {
                Ok(T::round_from_f64(value))
            } else {
                Err(Error::ScalarOverflow {
                    scalar,
                    value,
                    dtype: T::NAME,
                })
            }
        };
        Ok(StepScalars {
            t,
            lr,
            lambda,
            rule,
            beta1: T::round_from_f64(config.beta1),
            one_minus_beta1: T::round_from_f64(1.0 - config.beta1),
            beta2: T::round_from_f64(config.beta2),
            one_minus_beta2: T::round_from_f64(1.0 - config.beta2),
            eps: T::round_from_f64(config.eps),
            neg_step: fits("−s", -step_size)?,
            neg_step_lambda: fits("−s·λ", -step_size * lambda)?,
            neg_penalty: fits("−lr·(w − λ)·γ", -lr * (w - lambda) * config.pretrain_cof)?,
            lambda_t: fits("λ", lambda)?,
            penalty_grad: fits("(w − λ)·γ", (w - lambda) * config.pretrain_cof)?,
            neg_weight_decay: fits("−lr·wd", -lr * config.weight_decay)?,
            weight_decay: config.weight_decay > 0.0,
            grad_scale: T::one(),
        })
    }

    /// The same step with every gradient multiplied by `scale` (rounded to `T`) before use:
    /// gradient clipping without a pass that rewrites the gradients. `scale` must be finite and
    /// ≥ 0.
    pub fn with_grad_scale(mut self, scale: f64) -> Result<Self, Error> {
        if !(scale >= 0.0 && scale.is_finite()) {
            return Err(Error::InvalidHyperparameter {
                field: "grad_scale",
                value: scale,
                expected: "finite and ≥ 0",
            });
        }
        self.grad_scale = T::round_from_f64(scale);
        Ok(self)
    }
}

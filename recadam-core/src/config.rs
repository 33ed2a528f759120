//! The hyperparameters of RecAdam, their defaults and their validation.

use crate::{Annealing, Error};

/// Where the quadratic penalty enters the update: decoupled as the official code, or coupled
/// into the gradient as the paper's ablation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PenaltyMode {
    /// RecAdam proper: the penalty and λ stay out of Adam's moments; the penalty is applied to
    /// the parameters after the Adam step, as the official code does.
    #[default]
    Decoupled,
    /// The paper's ablation baseline (Algorithm 1, line 6): the penalty gradient is mixed into
    /// the gradient before the moments, `g' = λ·g + (w − λ)·γ·(p − θ*)`, then plain Adam.
    Coupled,
}

/// RecAdam's hyperparameters.
///
/// The defaults are the paper's BERT setting with the official script's annealing defaults:
/// lr 2e-5, β = (0.9, 0.999), ε 1e-8, no weight decay, bias correction on, sigmoid annealing
/// with k = 0.5 and t0 = 250, w = 1, γ = 5000. `anneal_w = 0` is plain Adam/AdamW with no
/// penalty at all.
///
/// ```
/// use recadam_core::{Annealing, Error, RecAdamConfig};
/// let config = RecAdamConfig {
///     lr: 5e-5,
///     weight_decay: 0.01,
///     annealing: Annealing::Sigmoid { k: 0.1, t0: 150.0 },
///     ..RecAdamConfig::default()
/// };
/// assert!(config.validate().is_ok());
///
/// // The official constructor defaults (lr 1e-3 with γ 5000) diverge: c ≈ lr·w·γ = 5.
/// let err = RecAdamConfig { lr: 1e-3, ..config }.validate().unwrap_err();
/// assert!(matches!(err, Error::PenaltyDiverges { .. }));
/// assert!(err.to_string().contains("`lr`"));
/// assert!((config.max_stable_lr() - 4e-4).abs() < 1e-9);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecAdamConfig {
    /// Peak learning rate (the caller schedules the rate of each step, up to this one).
    pub lr: f64,
    /// Decay of the first moment, in [0, 1).
    pub beta1: f64,
    /// Decay of the second moment, in [0, 1).
    pub beta2: f64,
    /// Added to `sqrt(v)` (not to the bias-corrected root), > 0.
    pub eps: f64,
    /// Decoupled weight decay, applied last: `p ← p − lr·wd·p`.
    pub weight_decay: f64,
    /// Adam's bias correction of the step size.
    pub correct_bias: bool,
    /// The shape of λ(t).
    pub annealing: Annealing,
    /// The scale w of λ (`anneal_w`); 0 turns the penalty and the annealing off (plain AdamW).
    pub anneal_w: f64,
    /// The penalty coefficient γ (`pretrain_cof`).
    pub pretrain_cof: f64,
    /// Decoupled (RecAdam) or coupled (ablation) penalty.
    pub penalty_mode: PenaltyMode,
}

impl Default for RecAdamConfig {
    fn default() -> Self {
        RecAdamConfig {
            lr: 2e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            correct_bias: true,
            annealing: Annealing::default(),
            anneal_w: 1.0,
            pretrain_cof: 5000.0,
            penalty_mode: PenaltyMode::Decoupled,
        }
    }
}

impl RecAdamConfig {
    /// Plain AdamW (no penalty, no annealing) with the given learning rate and weight decay.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        RecAdamConfig {
            lr,
            weight_decay,
            anneal_w: 0.0,
            ..RecAdamConfig::default()
        }
    }

    /// Whether parameters with a pretrained counterpart are pulled towards it (`w > 0`).
    pub fn has_penalty(&self) -> bool {
        self.anneal_w > 0.0
    }

    /// The factor `c = lr·(w − λ(t))·γ` by which the decoupled penalty of step `t` at rate `lr`
    /// shrinks the distance to θ*: the distance is multiplied by `1 − c`. It is largest at
    /// t = 1, since λ never decreases; 0 when the penalty is off or λ = w (constant annealing).
    pub fn penalty_factor(&self, lr: f64, t: u64) -> f64 {
        if self.has_penalty() {
            lr * (self.anneal_w - self.lambda(t)) * self.pretrain_cof
        } else {
            0.0
        }
    }

    /// The largest learning rate (exclusive) at which the decoupled penalty does not diverge at
    /// any step, `2 / ((w − λ(1))·γ)`; infinite when the penalty never applies.
    pub fn max_stable_lr(&self) -> f64 {
        let per_lr = self.penalty_factor(1.0, 1);
        if per_lr > 0.0 {
            2.0 / per_lr
        } else {
            f64::INFINITY
        }
    }

    /// λ(t) of this configuration (0 when there is no penalty: w = 0).
    pub fn lambda(&self, t: u64) -> f64 {
        if self.has_penalty() {
            self.annealing.lambda(t, self.anneal_w)
        } else {
            0.0
        }
    }

    /// Checks every hyperparameter; the error names the first bad field and its value.
    pub fn validate(&self) -> Result<(), Error> {
        check(
            "lr",
            self.lr,
            self.lr >= 0.0 && self.lr.is_finite(),
            "finite and ≥ 0",
        )?;
        for (field, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            check(field, beta, (0.0..1.0).contains(&beta), "in [0, 1)")?;
        }
        check(
            "eps",
            self.eps,
            self.eps > 0.0 && self.eps.is_finite(),
            "finite and > 0 (with ε = 0 a parameter whose gradients were all zero divides 0 by 0)",
        )?;
        check(
            "weight_decay",
            self.weight_decay,
            self.weight_decay >= 0.0 && self.weight_decay.is_finite(),
            "finite and ≥ 0",
        )?;
        check(
            "anneal_w",
            self.anneal_w,
            self.anneal_w >= 0.0 && self.anneal_w.is_finite(),
            "finite and ≥ 0",
        )?;
        check(
            "pretrain_cof",
            self.pretrain_cof,
            self.pretrain_cof >= 0.0 && self.pretrain_cof.is_finite(),
            "finite and ≥ 0",
        )?;
        match self.annealing {
            Annealing::Sigmoid { k, t0 } => {
                check(
                    "anneal.k",
                    k,
                    k >= 0.0 && k.is_finite(),
                    "finite and ≥ 0 (λ must not decrease)",
                )?;
                check("anneal.t0", t0, t0.is_finite(), "finite")?;
            }
            Annealing::Linear { t0 } => check(
                "anneal.t0",
                t0,
                t0 > 0.0 && t0.is_finite(),
                "finite and > 0 for linear annealing (λ = w·min(1, t/t0))",
            )?,
            Annealing::Constant => {}
        }
        self.check_stable(self.lr, 1)
    }

    /// Refuses a learning rate at which the decoupled penalty of step `t` (c ≥ 2) or the
    /// decoupled weight decay (lr·wd ≥ 2) diverges.
    pub(crate) fn check_stable(&self, lr: f64, t: u64) -> Result<(), Error> {
        let decay = lr * self.weight_decay;
        if decay >= 2.0 {
            return Err(Error::WeightDecayDiverges {
                lr,
                factor: decay,
                max_stable_lr: 2.0 / self.weight_decay,
            });
        }
        let factor = self.penalty_factor(lr, t);
        if self.penalty_mode == PenaltyMode::Decoupled && factor >= 2.0 {
            return Err(Error::PenaltyDiverges {
                lr,
                factor,
                max_stable_lr: self.max_stable_lr(),
            });
        }
        Ok(())
    }
}

fn check(field: &'static str, value: f64, ok: bool, expected: &'static str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            field,
            value,
            expected,
        })
    }
}

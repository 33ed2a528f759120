//! The hyperparameters of a group, as a C struct that can grow.

use recadam_core::{Annealing, PenaltyMode, RecAdamConfig};

use crate::error::{
    entry, non_null, Failure, RECADAM_ERROR_INVALID_ARGUMENT, RECADAM_ERROR_VERSION,
};
use crate::recadam_status;

/// How λ(t) is annealed: `anneal_fun` of the official code.
pub type recadam_anneal = u32;
/// `λ(t) = w / (1 + exp(−k·(t − t0)))`.
pub const RECADAM_ANNEAL_SIGMOID: recadam_anneal = 0;
/// `λ(t) = w·min(1, t/t0)`.
pub const RECADAM_ANNEAL_LINEAR: recadam_anneal = 1;
/// `λ(t) = w` (Adam scaled by w, no penalty).
pub const RECADAM_ANNEAL_CONSTANT: recadam_anneal = 2;

/// Where the quadratic penalty enters.
pub type recadam_penalty = u32;
/// Applied to the parameters after the Adam step, as the official code does.
pub const RECADAM_PENALTY_DECOUPLED: recadam_penalty = 0;
/// Added to the gradient before the moments (the paper's equation, DESIGN 1.1).
pub const RECADAM_PENALTY_COUPLED: recadam_penalty = 1;

/// A group's hyperparameters: the official `RecAdam(...)` arguments. Fill it with
/// [`recadam_config_default`], then change fields.
///
/// `struct_size` is `sizeof(recadam_config)` as the caller's header has it (set by
/// `recadam_config_default`): a later version appends fields and still reads this one.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct recadam_config {
    /// `sizeof(recadam_config)`.
    pub struct_size: u32,
    /// `RECADAM_ANNEAL_*`.
    pub anneal_fun: recadam_anneal,
    /// Learning rate (the base rate; change it between steps with `recadam_set_lr`).
    pub lr: f64,
    /// Adam's β1.
    pub beta1: f64,
    /// Adam's β2.
    pub beta2: f64,
    /// Adam's ε.
    pub eps: f64,
    /// Decoupled weight decay, as AdamW.
    pub weight_decay: f64,
    /// The annealing rate k (sigmoid).
    pub anneal_k: f64,
    /// The annealing midpoint t0, in steps (sigmoid, linear).
    pub anneal_t0: f64,
    /// The weight w of the target task; 0 makes the group plain AdamW with no penalty.
    pub anneal_w: f64,
    /// The penalty coefficient γ (`pretrain_cof`).
    pub pretrain_cof: f64,
    /// 1 to correct the moments' bias (as Adam), 0 not to.
    pub correct_bias: u32,
    /// `RECADAM_PENALTY_*`.
    pub penalty: recadam_penalty,
}

impl From<&RecAdamConfig> for recadam_config {
    fn from(c: &RecAdamConfig) -> recadam_config {
        let (anneal_fun, anneal_k, anneal_t0) = match c.annealing {
            Annealing::Sigmoid { k, t0 } => (RECADAM_ANNEAL_SIGMOID, k, t0),
            Annealing::Linear { t0 } => (RECADAM_ANNEAL_LINEAR, 0.0, t0),
            Annealing::Constant => (RECADAM_ANNEAL_CONSTANT, 0.0, 0.0),
        };
        recadam_config {
            struct_size: size_of::<recadam_config>() as u32,
            anneal_fun,
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            anneal_k,
            anneal_t0,
            anneal_w: c.anneal_w,
            pretrain_cof: c.pretrain_cof,
            correct_bias: u32::from(c.correct_bias),
            penalty: match c.penalty_mode {
                PenaltyMode::Decoupled => RECADAM_PENALTY_DECOUPLED,
                PenaltyMode::Coupled => RECADAM_PENALTY_COUPLED,
            },
        }
    }
}

impl recadam_config {
    /// The configuration in recadam's terms, checked (codes, then the update rule's ranges).
    pub(crate) fn into_config(self) -> Result<RecAdamConfig, Failure> {
        if self.struct_size as usize != size_of::<recadam_config>() {
            return Err(Failure::new(
                RECADAM_ERROR_VERSION,
                format!(
                    "recadam_config.struct_size is {}, this library's recadam_config has {} bytes: fill it with recadam_config_default",
                    self.struct_size,
                    size_of::<recadam_config>()
                ),
            ));
        }
        let invalid = |field: &str, value: u32, expected: &str| {
            Failure::new(
                RECADAM_ERROR_INVALID_ARGUMENT,
                format!("invalid recadam_config.{field} = {value}: expected {expected}"),
            )
        };
        let annealing = match self.anneal_fun {
            RECADAM_ANNEAL_SIGMOID => Annealing::Sigmoid {
                k: self.anneal_k,
                t0: self.anneal_t0,
            },
            RECADAM_ANNEAL_LINEAR => Annealing::Linear { t0: self.anneal_t0 },
            RECADAM_ANNEAL_CONSTANT => Annealing::Constant,
            other => return Err(invalid("anneal_fun", other, "a RECADAM_ANNEAL_* value")),
        };
        let penalty_mode = match self.penalty {
            RECADAM_PENALTY_DECOUPLED => PenaltyMode::Decoupled,
            RECADAM_PENALTY_COUPLED => PenaltyMode::Coupled,
            other => return Err(invalid("penalty", other, "a RECADAM_PENALTY_* value")),
        };
        let correct_bias = match self.correct_bias {
            0 => false,
            1 => true,
            other => return Err(invalid("correct_bias", other, "0 or 1")),
        };
        let config = RecAdamConfig {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            correct_bias,
            annealing,
            anneal_w: self.anneal_w,
            pretrain_cof: self.pretrain_cof,
            penalty_mode,
        };
        config.validate().map_err(recadam_std::Error::from)?;
        Ok(config)
    }

    /// Reads a caller's config.
    ///
    /// # Safety
    /// `ptr` is null or points to a readable `recadam_config`.
    pub(crate) unsafe fn read(ptr: *const recadam_config) -> Result<RecAdamConfig, Failure> {
        non_null(ptr, "config")?;
        // SAFETY: non-null, and the caller's contract makes it a readable recadam_config (every
        // bit pattern of its u32 and f64 fields is a valid value).
        unsafe { ptr.read_unaligned() }.into_config()
    }
}

/// Fills `*config` with the defaults of the official GLUE fine-tuning script (recadam's
/// `RecAdamConfig::default()`): lr 2e-5, β 0.9 and 0.999, ε 1e-8, no weight decay, bias
/// correction, sigmoid annealing with k 0.5 and t0 250, w 1, pretrain_cof 5000, the penalty
/// decoupled as the official code applies it; and sets `struct_size`. (The `RecAdam(...)`
/// constructor's own defaults, lr 1e-3 with k 0, make the penalty diverge: c = lr·(w − λ)·γ =
/// 2.5 > 2, which every step refuses.)
///
/// # Safety
/// `config` is null or points to a writable `recadam_config`.
#[no_mangle]
pub unsafe extern "C" fn recadam_config_default(config: *mut recadam_config) -> recadam_status {
    entry(|| {
        non_null(config, "config")?;
        // SAFETY: non-null; the caller's contract is that it points to a writable
        // recadam_config of this header's layout.
        unsafe { config.write_unaligned(recadam_config::from(&RecAdamConfig::default())) };
        Ok(())
    })
}

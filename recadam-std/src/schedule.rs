//! Learning-rate schedules: a schedule is a value that maps the step (from 1) to a multiplier of
//! the peak learning rate. Add one by implementing [`LrSchedule`].

use std::f64::consts::PI;
use std::fmt::Debug;

/// The learning rate of step `t` is `peak_lr · multiplier(t)`.
pub trait LrSchedule: Debug + Send + Sync {
    /// The multiplier of step `t` (counting from 1), in [0, 1] for the built-in schedules.
    fn multiplier(&self, t: u64) -> f64;
    /// A description that identifies the schedule and its parameters; checkpoints store it and
    /// refuse to resume under a different one.
    fn describe(&self) -> String;
}

/// The same learning rate at every step.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Constant;

impl LrSchedule for Constant {
    fn multiplier(&self, _t: u64) -> f64 {
        1.0
    }
    fn describe(&self) -> String {
        "constant".into()
    }
}

/// Linear warm-up from 0 over `warmup` steps, then linear decay to 0 at `total`: Hugging Face's
/// `get_linear_schedule_with_warmup` under torch's `LambdaLR`, where step t uses `f(t − 1)` with
/// `f(s) = s / max(1, warmup)` for `s < warmup`, else `max(0, (total − s) / max(1, total − warmup))`.
/// Step 1 therefore has learning rate 0, as in the official GLUE script.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearWarmupDecay {
    /// Warm-up steps.
    pub warmup: u64,
    /// Total training steps.
    pub total: u64,
}

impl LrSchedule for LinearWarmupDecay {
    fn multiplier(&self, t: u64) -> f64 {
        let s = t.saturating_sub(1);
        if s < self.warmup {
            s as f64 / self.warmup.max(1) as f64
        } else {
            let left = self.total.saturating_sub(s) as f64;
            (left / self.total.saturating_sub(self.warmup).max(1) as f64).max(0.0)
        }
    }
    fn describe(&self) -> String {
        format!("linear(warmup={}, total={})", self.warmup, self.total)
    }
}

/// Linear warm-up as [`LinearWarmupDecay`], then a half cosine from 1 down to `floor` at `total`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineWarmup {
    /// Warm-up steps.
    pub warmup: u64,
    /// Total training steps.
    pub total: u64,
    /// The multiplier reached at the end (0 for a full decay).
    pub floor: f64,
}

impl LrSchedule for CosineWarmup {
    fn multiplier(&self, t: u64) -> f64 {
        let s = t.saturating_sub(1);
        if s < self.warmup {
            return s as f64 / self.warmup.max(1) as f64;
        }
        let progress = ((s - self.warmup) as f64
            / self.total.saturating_sub(self.warmup).max(1) as f64)
            .min(1.0);
        self.floor + (1.0 - self.floor) * 0.5 * (1.0 + (PI * progress).cos())
    }
    fn describe(&self) -> String {
        format!(
            "cosine(warmup={}, total={}, floor={})",
            self.warmup, self.total, self.floor
        )
    }
}

//! Objective shifting: the weight λ(t) of the target task, annealed over the step count.

/// How λ(t) grows from 0 towards its scale `w` (the paper's "objective shifting").
///
/// λ(t) weighs the target task; `w − λ(t)` weighs the quadratic penalty that simulates the
/// source (pretraining) task. Every shape is computed in `f64` exactly as the official
/// `anneal_function` computes it (up to the last-bit difference between numpy's `exp` and libm's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Annealing {
    /// `λ(t) = w / (1 + exp(−k·(t − t0)))`. k → ∞ is plain fine-tuning, k → 0 multi-task learning.
    Sigmoid {
        /// The shifting rate k (≥ 0). The paper tries 0.05, 0.1, 0.2, 0.5 and 1.
        k: f64,
        /// The midpoint t0, in steps. The paper tries 100, 250, 500 and 1000.
        t0: f64,
    },
    /// `λ(t) = w·min(1, t/t0)`, with t0 > 0.
    Linear {
        /// The step from which λ = w.
        t0: f64,
    },
    /// `λ(t) = w`: Adam scaled by w, and no penalty at all (w − λ = 0).
    Constant,
}

impl Default for Annealing {
    /// The official GLUE script's defaults: sigmoid with k = 0.5 and t0 = 250.
    fn default() -> Self {
        Annealing::Sigmoid { k: 0.5, t0: 250.0 }
    }
}

impl Annealing {
    /// λ(t) for the scale `w`, at step `t` (counting from 1).
    ///
    /// Never NaN for valid parameters: when `k·(t0 − t)` is so large that `exp` overflows, the
    /// result is 0, and when it is very negative the result is exactly `w`.
    ///
    /// ```
    /// use recadam_core::Annealing;
    /// let sigmoid = Annealing::Sigmoid { k: 0.1, t0: 100.0 };
    /// assert_eq!(sigmoid.lambda(100, 1.0), 0.5);
    /// assert_eq!(sigmoid.lambda(1000, 1.0), 1.0);
    /// assert_eq!(sigmoid.lambda(1, 1.0) < 1e-4, true);
    /// assert_eq!(Annealing::Linear { t0: 50.0 }.lambda(25, 2.0), 1.0);
    /// ```
    pub fn lambda(&self, t: u64, w: f64) -> f64 {
        let t = t as f64;
        match *self {
            Annealing::Sigmoid { k, t0 } => 1.0 / (1.0 + libm::exp(-k * (t - t0))) * w,
            Annealing::Linear { t0 } => {
                let ratio = t / t0;
                (if ratio < 1.0 { ratio } else { 1.0 }) * w
            }
            Annealing::Constant => w,
        }
    }

    /// The shape the official code names `anneal_fun` (`"sigmoid"`, `"linear"` or
    /// `"constant"`), with its `anneal_k` and `anneal_t0`; `None` for another name. The inverse
    /// of [`Annealing::name`].
    ///
    /// ```
    /// use recadam_core::Annealing;
    /// let a = Annealing::from_official("sigmoid", 0.1, 250.0);
    /// assert_eq!(a, Some(Annealing::Sigmoid { k: 0.1, t0: 250.0 }));
    /// assert_eq!(a.map(|a| a.name()), Some("sigmoid"));
    /// assert_eq!(Annealing::from_official("cosine", 0.1, 250.0), None);
    /// ```
    pub fn from_official(anneal_fun: &str, anneal_k: f64, anneal_t0: f64) -> Option<Annealing> {
        match anneal_fun {
            "sigmoid" => Some(Annealing::Sigmoid {
                k: anneal_k,
                t0: anneal_t0,
            }),
            "linear" => Some(Annealing::Linear { t0: anneal_t0 }),
            "constant" => Some(Annealing::Constant),
            _ => None,
        }
    }

    /// The name the official code uses for this shape (`anneal_fun`).
    pub fn name(&self) -> &'static str {
        match self {
            Annealing::Sigmoid { .. } => "sigmoid",
            Annealing::Linear { .. } => "linear",
            Annealing::Constant => "constant",
        }
    }
}

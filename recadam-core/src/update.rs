//! The scalar reference update over slices: the rounding contract, element by element.
//!
//! Per element, in the official operation order (`fma` rounds once, every other operation
//! rounds its result; see `testdata/golden/README.md`):
//!
//! ```text
//! g = g·f(scale)                                     1 unless clipping (exact then)
//! m = fma(g, f(1−β1), m·f(β1))                       exp_avg.mul_(β1).add_(1−β1, g)
//! v = fma(f(1−β2)·g, g, v·f(β2))                     exp_avg_sq.mul_(β2).addcmul_(1−β2, g, g)
//! d = sqrt(v) + f(ε)
//! decoupled: p = p + (f(−s·λ)·m) / d                 p.addcdiv_(−s·λ, m, d)      not fused
//!            p = fma(p − θ*, f(−lr·(w−λ)·γ), p)      p.add_(−lr·(w−λ)·γ, p − θ*)
//! plain:     p = p + (f(−s)·m) / d
//! coupled:   g' = fma(p − θ*, f((w−λ)·γ), f(λ)·g), then plain on g'
//! wd > 0:    p = fma(p, f(−lr·wd), p)                p.add_(−lr·wd, p)
//! ```

use crate::{Element, Error, Rule, StepScalars};

/// The slices of one update, checked once to have the same length.
///
/// `pretrained` is θ*; `None` for parameters without a pretrained counterpart (a new task head),
/// which follow the plain Adam/AdamW rule whatever the configuration says.
#[derive(Debug)]
pub struct Slices<'a, T> {
    params: &'a mut [T],
    grads: &'a [T],
    exp_avg: &'a mut [T],
    exp_avg_sq: &'a mut [T],
    pretrained: Option<&'a [T]>,
}

impl<'a, T> Slices<'a, T> {
    /// Groups the slices of one parameter tensor; every slice must be as long as `params`.
    pub fn new(
        params: &'a mut [T],
        grads: &'a [T],
        exp_avg: &'a mut [T],
        exp_avg_sq: &'a mut [T],
        pretrained: Option<&'a [T]>,
    ) -> Result<Self, Error> {
        let expected = params.len();
        let lens = [
            ("grads", grads.len()),
            ("exp_avg", exp_avg.len()),
            ("exp_avg_sq", exp_avg_sq.len()),
            ("pretrained", pretrained.map_or(expected, <[T]>::len)),
        ];
        check_lengths(expected, &lens)?;
        Ok(Slices {
            params,
            grads,
            exp_avg,
            exp_avg_sq,
            pretrained,
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The gradients (read-only: a guard reads them before the update).
    pub fn grads(&self) -> &[T] {
        self.grads
    }

    /// Whether these parameters have a pretrained counterpart θ* (and so can be penalised).
    pub fn has_pretrained(&self) -> bool {
        self.pretrained.is_some()
    }

    /// Splits into `[0, mid)` and `[mid, len)`, or returns `None` when `mid > len`.
    pub fn split_at(self, mid: usize) -> Option<(Slices<'a, T>, Slices<'a, T>)> {
        if mid > self.len() {
            return None;
        }
        Some(self.split_within(mid))
    }

    /// Splits into a body whose length is the largest multiple of `lanes` (a vector kernel's
    /// width; 0 is taken as 1) and the tail after it, which is shorter than `lanes`.
    pub fn split_lanes(self, lanes: usize) -> (Slices<'a, T>, Slices<'a, T>) {
        let n = self.len();
        self.split_within(n - n % lanes.max(1))
    }

    /// [`Slices::split_at`] for a `mid` known to be at most the length.
    fn split_within(self, mid: usize) -> (Slices<'a, T>, Slices<'a, T>) {
        let (p0, p1) = self.params.split_at_mut(mid);
        let (g0, g1) = self.grads.split_at(mid);
        let (m0, m1) = self.exp_avg.split_at_mut(mid);
        let (v0, v1) = self.exp_avg_sq.split_at_mut(mid);
        let (pp0, pp1) = match self.pretrained {
            Some(pp) => {
                let (a, b) = pp.split_at(mid);
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        (
            Slices {
                params: p0,
                grads: g0,
                exp_avg: m0,
                exp_avg_sq: v0,
                pretrained: pp0,
            },
            Slices {
                params: p1,
                grads: g1,
                exp_avg: m1,
                exp_avg_sq: v1,
                pretrained: pp1,
            },
        )
    }

    /// The raw slices `(params, grads, exp_avg, exp_avg_sq, pretrained)`, all of one length.
    #[allow(clippy::type_complexity)]
    pub fn into_parts(
        self,
    ) -> (
        &'a mut [T],
        &'a [T],
        &'a mut [T],
        &'a mut [T],
        Option<&'a [T]>,
    ) {
        (
            self.params,
            self.grads,
            self.exp_avg,
            self.exp_avg_sq,
            self.pretrained,
        )
    }
}

/// `Ok` when every `(slice, len)` has length `expected`, else the first that does not.
pub(crate) fn check_lengths(expected: usize, lens: &[(&'static str, usize)]) -> Result<(), Error> {
    match lens.iter().find(|(_, len)| *len != expected) {
        Some(&(slice, len)) => Err(Error::LengthMismatch {
            slice,
            len,
            expected,
        }),
        None => Ok(()),
    }
}

/// The rule that applies to these slices: a parameter without θ* is never penalised.
pub fn rule_for<T>(scalars: &StepScalars<T>, has_pretrained: bool) -> Rule {
    if has_pretrained {
        scalars.rule
    } else {
        Rule::Plain
    }
}

/// Updates `params`, `exp_avg` and `exp_avg_sq` in place by one RecAdam step.
///
/// This is the scalar reference: every other backend produces exactly its bits.
///
/// ```
/// use recadam_core::{update, Annealing, RecAdamConfig, Slices, StepScalars};
/// let config = RecAdamConfig {
///     lr: 1e-3,
///     pretrain_cof: 100.0,
///     annealing: Annealing::Sigmoid { k: 0.5, t0: 0.0 },
///     ..RecAdamConfig::default()
/// };
/// let pretrained = [0.5f32, -0.25];
/// let (mut p, mut m, mut v) = (pretrained, [0.0; 2], [0.0; 2]);
/// let grads = [0.1f32, -0.2];
/// for t in 1..=10 {
///     let scalars = StepScalars::new(&config, t, config.lr).unwrap();
///     let slices = Slices::new(&mut p, &grads, &mut m, &mut v, Some(&pretrained)).unwrap();
///     update(&scalars, slices);
/// }
/// assert!(p[0] < 0.5 && p[1] > -0.25); // moved against the gradient, held near θ*
/// ```
pub fn update<T: Element>(scalars: &StepScalars<T>, slices: Slices<'_, T>) {
    let rule = rule_for(scalars, slices.has_pretrained());
    let Slices {
        params,
        grads,
        exp_avg,
        exp_avg_sq,
        pretrained,
    } = slices;
    let s = scalars;
    match (rule, pretrained) {
        (Rule::Decoupled, Some(pp)) => {
            for i in 0..params.len() {
                let g = grads[i] * s.grad_scale;
                let (m, d) = moments(s, g, &mut exp_avg[i], &mut exp_avg_sq[i]);
                let p = params[i] + (s.neg_step_lambda * m) / d;
                let p = (p - pp[i]).fused_mul_add(s.neg_penalty, p);
                params[i] = weight_decay(s, p);
            }
        }
        (Rule::Coupled, Some(pp)) => {
            for i in 0..params.len() {
                let g = grads[i] * s.grad_scale;
                let g = (params[i] - pp[i]).fused_mul_add(s.penalty_grad, s.lambda_t * g);
                let (m, d) = moments(s, g, &mut exp_avg[i], &mut exp_avg_sq[i]);
                params[i] = weight_decay(s, params[i] + (s.neg_step * m) / d);
            }
        }
        _ => {
            for i in 0..params.len() {
                let g = grads[i] * s.grad_scale;
                let (m, d) = moments(s, g, &mut exp_avg[i], &mut exp_avg_sq[i]);
                params[i] = weight_decay(s, params[i] + (s.neg_step * m) / d);
            }
        }
    }
}

/// Updates both moments in place and returns `(m, sqrt(v) + ε)`.
#[inline(always)]
fn moments<T: Element>(s: &StepScalars<T>, g: T, m: &mut T, v: &mut T) -> (T, T) {
    let m_new = g.fused_mul_add(s.one_minus_beta1, *m * s.beta1);
    let v_new = (s.one_minus_beta2 * g).fused_mul_add(g, *v * s.beta2);
    *m = m_new;
    *v = v_new;
    (m_new, v_new.sqrt_ieee() + s.eps)
}

#[inline(always)]
fn weight_decay<T: Element>(s: &StepScalars<T>, p: T) -> T {
    if s.weight_decay {
        p.fused_mul_add(s.neg_weight_decay, p)
    } else {
        p
    }
}

/// One step in one call: computes the scalars of step `t` at rate `lr`, checks the slices and
/// updates them. For many tensors per step, compute [`StepScalars`] once and call [`update`].
///
/// ```
/// use recadam_core::{step, RecAdamConfig};
/// let config = RecAdamConfig::default();
/// let (mut p, mut m, mut v) = ([1.0f64; 3], [0.0; 3], [0.0; 3]);
/// step(&config, 1, 2e-5, &mut p, &[0.5; 3], &mut m, &mut v, Some(&[1.0; 3])).unwrap();
/// // Mismatched lengths are an error, not a panic.
/// assert!(step(&config, 2, 2e-5, &mut p, &[0.5; 2], &mut m, &mut v, None).is_err());
/// ```
#[allow(clippy::too_many_arguments)]
pub fn step<T: Element>(
    config: &crate::RecAdamConfig,
    t: u64,
    lr: f64,
    params: &mut [T],
    grads: &[T],
    exp_avg: &mut [T],
    exp_avg_sq: &mut [T],
    pretrained: Option<&[T]>,
) -> Result<(), Error> {
    let scalars = StepScalars::new(config, t, lr)?;
    update(
        &scalars,
        Slices::new(params, grads, exp_avg, exp_avg_sq, pretrained)?,
    );
    Ok(())
}

//! The mixed-precision update: f32 master parameters, with gradients, moments and θ* stored as
//! f32, bf16 or f16, and optionally a narrowed copy of the updated parameters written in the same
//! pass (what an engine that trains in bf16/fp16 copies back to its accelerator).
//!
//! Per element, the arithmetic is the f32 update of [`crate::update`], on widened values:
//!
//! ```text
//! g  = widen(grads[i]) · f(scale)
//! m  = fma(g, f(1−β1), widen(exp_avg[i])·f(β1))      exp_avg[i]    = narrow(m)
//! v  = fma(f(1−β2)·g, g, widen(exp_avg_sq[i])·f(β2)) exp_avg_sq[i] = narrow(v)
//! p  = …the f32 rule with m, v (not their narrowed copies) and θ* = widen(pretrained[i])…
//! params[i] = p                                       params_copy[i] = narrow(p)
//! ```
//!
//! With every array in f32 it is [`crate::update`] bit for bit. Stored moments of bf16 are an
//! option with other numerics: the step uses this step's f32 moments, the next step starts from
//! their rounding (8 bits of mantissa). Widening is exact, so f32 parameters with bf16 or f16
//! gradients or θ* lose nothing beyond what the caller's storage already lost.

use crate::update::check_lengths;
use crate::{rule_for, Element, Error, Rule, StepScalars, Storage};

/// The slices of one mixed-precision update, checked once to have the same length: `G` the
/// gradients' storage, `S` the moments', `A` θ*'s, `C` the parameter copy's (if any).
#[derive(Debug)]
pub struct MixedSlices<'a, G, S, A, C = f32> {
    params: &'a mut [f32],
    grads: &'a [G],
    exp_avg: &'a mut [S],
    exp_avg_sq: &'a mut [S],
    pretrained: Option<&'a [A]>,
    params_copy: Option<&'a mut [C]>,
}

impl<'a, G: Storage, S: Storage, A: Storage> MixedSlices<'a, G, S, A> {
    /// Groups the slices of one parameter tensor; every slice must be as long as `params`.
    ///
    /// ```
    /// use half::bf16;
    /// use recadam_core::{update_mixed, Annealing, MixedSlices, RecAdamConfig, StepScalars};
    ///
    /// let config = RecAdamConfig {
    ///     lr: 1e-3,
    ///     annealing: Annealing::Constant,
    ///     ..RecAdamConfig::default()
    /// };
    /// let pretrained = vec![bf16::from_f32(0.5); 4]; // a bf16 checkpoint
    /// let mut params: Vec<f32> = pretrained.iter().map(|x| x.to_f32()).collect();
    /// let grads = vec![bf16::from_f32(0.1); 4]; // from a bf16 backward pass
    /// let (mut m, mut v) = (vec![0f32; 4], vec![0f32; 4]);
    /// let mut gpu_copy = vec![bf16::ZERO; 4];
    /// let scalars = StepScalars::new(&config, 1, config.lr)?;
    /// let slices = MixedSlices::new(&mut params, &grads, &mut m, &mut v, Some(&pretrained))?
    ///     .with_params_copy(&mut gpu_copy)?;
    /// update_mixed(&scalars, slices);
    /// assert!(params[0] < 0.5);
    /// assert_eq!(gpu_copy[0], bf16::from_f32(params[0]));
    /// # Ok::<(), recadam_core::Error>(())
    /// ```
    pub fn new(
        params: &'a mut [f32],
        grads: &'a [G],
        exp_avg: &'a mut [S],
        exp_avg_sq: &'a mut [S],
        pretrained: Option<&'a [A]>,
    ) -> Result<Self, Error> {
        let expected = params.len();
        let lens = [
            ("grads", grads.len()),
            ("exp_avg", exp_avg.len()),
            ("exp_avg_sq", exp_avg_sq.len()),
            ("pretrained", pretrained.map_or(expected, <[A]>::len)),
        ];
        check_lengths(expected, &lens)?;
        Ok(MixedSlices {
            params,
            grads,
            exp_avg,
            exp_avg_sq,
            pretrained,
            params_copy: None,
        })
    }

    /// The same slices, typed for a copy of type `C` that is not written: where whether there
    /// is a copy is known only at run time (a binding), both cases have one type.
    pub fn without_params_copy<C: Storage>(self) -> MixedSlices<'a, G, S, A, C> {
        MixedSlices {
            params: self.params,
            grads: self.grads,
            exp_avg: self.exp_avg,
            exp_avg_sq: self.exp_avg_sq,
            pretrained: self.pretrained,
            params_copy: None,
        }
    }

    /// Also writes each updated parameter, narrowed to `C`, into `copy` (as long as `params`).
    pub fn with_params_copy<C: Storage>(
        self,
        copy: &'a mut [C],
    ) -> Result<MixedSlices<'a, G, S, A, C>, Error> {
        check_lengths(self.params.len(), &[("params_copy", copy.len())])?;
        Ok(MixedSlices {
            params: self.params,
            grads: self.grads,
            exp_avg: self.exp_avg,
            exp_avg_sq: self.exp_avg_sq,
            pretrained: self.pretrained,
            params_copy: Some(copy),
        })
    }
}

impl<'a, G, S, A, C> MixedSlices<'a, G, S, A, C> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Whether these parameters have θ* (and so can be penalised).
    pub fn has_pretrained(&self) -> bool {
        self.pretrained.is_some()
    }

    /// The gradients (what a guard reads before any write).
    pub fn grads(&self) -> &'a [G] {
        self.grads
    }

    /// Splits every slice at `mid`: `[0, mid)` and `[mid, len)`; `None` when `mid` exceeds the
    /// length. (Threads take parts of one tensor this way.)
    ///
    /// ```
    /// use recadam_core::half::bf16;
    /// use recadam_core::MixedSlices;
    ///
    /// let (mut p, g) = ([0.0f32; 5], [bf16::ZERO; 5]);
    /// let (mut m, mut v) = ([0.0f32; 5], [0.0f32; 5]);
    /// let slices = MixedSlices::<_, _, f32>::new(&mut p, &g, &mut m, &mut v, None)?;
    /// let (a, b) = slices.split_at(2).unwrap();
    /// assert_eq!((a.len(), b.len()), (2, 3));
    /// # Ok::<(), recadam_core::Error>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn split_at(self, mid: usize) -> Option<(Self, Self)> {
        if mid > self.len() {
            return None;
        }
        let (p0, p1) = self.params.split_at_mut(mid);
        let (g0, g1) = self.grads.split_at(mid);
        let (m0, m1) = self.exp_avg.split_at_mut(mid);
        let (v0, v1) = self.exp_avg_sq.split_at_mut(mid);
        let (a0, a1) = match self.pretrained {
            Some(a) => {
                let (x, y) = a.split_at(mid);
                (Some(x), Some(y))
            }
            None => (None, None),
        };
        let (c0, c1) = match self.params_copy {
            Some(c) => {
                let (x, y) = c.split_at_mut(mid);
                (Some(x), Some(y))
            }
            None => (None, None),
        };
        let part = |params, grads, exp_avg, exp_avg_sq, pretrained, params_copy| MixedSlices {
            params,
            grads,
            exp_avg,
            exp_avg_sq,
            pretrained,
            params_copy,
        };
        Some((part(p0, g0, m0, v0, a0, c0), part(p1, g1, m1, v1, a1, c1)))
    }

    /// The raw slices `(params, grads, exp_avg, exp_avg_sq, pretrained, params_copy)`, all of one
    /// length.
    #[allow(clippy::type_complexity)]
    pub fn into_parts(
        self,
    ) -> (
        &'a mut [f32],
        &'a [G],
        &'a mut [S],
        &'a mut [S],
        Option<&'a [A]>,
        Option<&'a mut [C]>,
    ) {
        (
            self.params,
            self.grads,
            self.exp_avg,
            self.exp_avg_sq,
            self.pretrained,
            self.params_copy,
        )
    }
}

/// One mixed-precision RecAdam step over `slices` (module docs): the scalar reference of every
/// storage mode.
pub fn update_mixed<G: Storage, S: Storage, A: Storage, C: Storage>(
    scalars: &StepScalars<f32>,
    slices: MixedSlices<'_, G, S, A, C>,
) {
    let s = scalars;
    let rule = rule_for(s, slices.has_pretrained());
    let (params, grads, exp_avg, exp_avg_sq, pretrained, mut copy) = slices.into_parts();
    for i in 0..params.len() {
        let mut g = grads[i].widen() * s.grad_scale;
        let p_old = params[i];
        let theta = pretrained.map_or(p_old, |pp| pp[i].widen());
        if rule == Rule::Coupled {
            g = (p_old - theta).fused_mul_add(s.penalty_grad, s.lambda_t * g);
        }
        let m = g.fused_mul_add(s.one_minus_beta1, exp_avg[i].widen() * s.beta1);
        let v = (s.one_minus_beta2 * g).fused_mul_add(g, exp_avg_sq[i].widen() * s.beta2);
        exp_avg[i] = S::narrow(m);
        exp_avg_sq[i] = S::narrow(v);
        let d = v.sqrt_ieee() + s.eps;
        let mut p = if rule == Rule::Decoupled {
            let p = p_old + (s.neg_step_lambda * m) / d;
            (p - theta).fused_mul_add(s.neg_penalty, p)
        } else {
            p_old + (s.neg_step * m) / d
        };
        if s.weight_decay {
            p = p.fused_mul_add(s.neg_weight_decay, p);
        }
        params[i] = p;
        if let Some(copy) = copy.as_deref_mut() {
            copy[i] = C::narrow(p);
        }
    }
}

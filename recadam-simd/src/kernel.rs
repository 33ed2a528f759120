//! The update, written once over [`Lanes`]: the vector body mirrors `recadam_core::update`
//! operation for operation, and the tail is `recadam_core::update` itself.
//!
//! ## Steps whose Adam scalar is tiny
//!
//! Early in a sharp sigmoid schedule the Adam-step scalar `f(−s·λ)` can be subnormal (k 0.5,
//! t0 250, lr 5e-5 gives steps 65-97 in f32). Then `scalar·m` and the division are subnormal
//! arithmetic, which x86 cores run through slow microcode assists, and the result is far below
//! half an ulp of `p`, so `p + (scalar·m)/d` rounds back to `p`. The kernel proves that per
//! vector without subnormal arithmetic and then keeps `p` as it is, which is exactly what the
//! full computation rounds to:
//!
//! with x = round(round(scalar·m)/d), d ≥ ε (so v ≥ 0, checked too), u the unit roundoff and h half the subnormal
//! spacing, |x| ≤ (|scalar|·|m|·(1+u)² + h·(1+u))/ε + h. Scaled by 2^S so that every operand is
//! normal, `A·|m| + C` with A, C rounded up bounds |x|·2^S; if it is strictly below |p|·2^-(p+3)·2^S for
//! every lane (p the mantissa bits), then |x| < ulp(p)/4 and round(p + x) = p. The comparison is
//! strict, so an infinite bound never passes even where |p|·2^S overflows. Lanes where the
//! bound fails (p = 0, NaN, infinite m) take the full computation. The bound holds for any scalar;
//! the check only runs when the scalar is below 2^30 times the smallest normal number.

use num_traits::Zero;
use recadam_core::{rule_for, Element, Rule, Slices, StepScalars};

use crate::lanes::Lanes;

const PLAIN: u8 = 0;
const DECOUPLED: u8 = 1;
const COUPLED: u8 = 2;

/// The step's scalars, broadcast to every lane once per call.
struct Splats<L> {
    beta1: L,
    one_minus_beta1: L,
    beta2: L,
    one_minus_beta2: L,
    eps: L,
    adam_step: L,
    neg_penalty: L,
    lambda: L,
    penalty_grad: L,
    neg_weight_decay: L,
    grad_scale: L,
    zero: L,
    tiny: TinyBound<L>,
}

/// `A·|m| + C < |p|·P` proves that the Adam term cannot change `p` (module docs).
struct TinyBound<L> {
    a: L,
    c: L,
    p: L,
}

/// The constants of the tiny-step bound for `scalar`, or `None` when the scalar is not tiny.
fn tiny_bound<T: Element>(scalar: T, eps: T) -> Option<(T, T, T)> {
    let min_normal = T::min_positive_value().widen_to_f64();
    let unit = T::epsilon().widen_to_f64(); // 2u
    let scalar = scalar.abs().widen_to_f64();
    if scalar.is_nan() || scalar >= min_normal * 1073741824.0 {
        return None; // not below 2^30 times the smallest normal number
    }
    let scale = (1.0 / min_normal).sqrt_ieee(); // 2^63 for f32, 2^511 for f64: exact
    let half_subnormal_scaled = min_normal * unit * (scale / 2.0); // h·2^S, exact
    let eps = eps.widen_to_f64();
    let margin = 1.0 + 1.0 / 1048576.0; // 1 + 2^-20 covers (1+u)² and the roundings below
    let round_up = |x: f64| {
        let r = T::round_from_f64(x * margin);
        if x > 0.0 && r < T::min_positive_value() {
            T::min_positive_value()
        } else {
            r
        }
    };
    let a = round_up(scalar * scale / eps);
    let c = round_up(half_subnormal_scaled / eps + half_subnormal_scaled);
    let p = T::round_from_f64(scale * unit / 8.0); // 2^S · 2^-(mantissa + 3), exact
    Some((a, c, p))
}

/// Updates `slices` by one step with lanes `L`; the tail shorter than a vector goes through the
/// scalar reference.
///
/// # Safety
/// The CPU must support `L`'s instructions (the caller is a `#[target_feature]` function reached
/// only through an available backend).
#[inline(always)]
pub(crate) unsafe fn update_body<L: Lanes>(s: &StepScalars<L::Elem>, slices: Slices<'_, L::Elem>) {
    let (head, tail) = slices.split_lanes(L::N);
    let rule = rule_for(s, head.has_pretrained());
    let adam_step = if rule == Rule::Decoupled {
        s.neg_step_lambda
    } else {
        s.neg_step
    };
    let tiny = tiny_bound(adam_step, s.eps);
    let (ta, tc, tp) = tiny.unwrap_or((L::Elem::zero(), L::Elem::zero(), L::Elem::zero()));
    let k = Splats {
        beta1: L::splat(s.beta1),
        one_minus_beta1: L::splat(s.one_minus_beta1),
        beta2: L::splat(s.beta2),
        one_minus_beta2: L::splat(s.one_minus_beta2),
        eps: L::splat(s.eps),
        adam_step: L::splat(adam_step),
        neg_penalty: L::splat(s.neg_penalty),
        lambda: L::splat(s.lambda_t),
        penalty_grad: L::splat(s.penalty_grad),
        neg_weight_decay: L::splat(s.neg_weight_decay),
        grad_scale: L::splat(s.grad_scale),
        zero: L::splat(L::Elem::zero()),
        tiny: TinyBound {
            a: L::splat(ta),
            c: L::splat(tc),
            p: L::splat(tp),
        },
    };
    let (p, g, m, v, pp) = head.into_parts();
    let pp = pp.map_or(core::ptr::null(), <[L::Elem]>::as_ptr);
    let args = (
        p.len(),
        p.as_mut_ptr(),
        g.as_ptr(),
        m.as_mut_ptr(),
        v.as_mut_ptr(),
        pp,
    );
    // SAFETY: all slices have length args.0, a multiple of L::N; pp is only read by rules that
    // have a pretrained slice (rule_for returns Plain without one).
    unsafe {
        match (rule, s.weight_decay, tiny.is_some()) {
            (Rule::Plain, false, false) => vector_loop::<L, PLAIN, false, false>(&k, args),
            (Rule::Plain, false, true) => vector_loop::<L, PLAIN, false, true>(&k, args),
            (Rule::Plain, true, false) => vector_loop::<L, PLAIN, true, false>(&k, args),
            (Rule::Plain, true, true) => vector_loop::<L, PLAIN, true, true>(&k, args),
            (Rule::Decoupled, false, false) => vector_loop::<L, DECOUPLED, false, false>(&k, args),
            (Rule::Decoupled, false, true) => vector_loop::<L, DECOUPLED, false, true>(&k, args),
            (Rule::Decoupled, true, false) => vector_loop::<L, DECOUPLED, true, false>(&k, args),
            (Rule::Decoupled, true, true) => vector_loop::<L, DECOUPLED, true, true>(&k, args),
            (Rule::Coupled, false, false) => vector_loop::<L, COUPLED, false, false>(&k, args),
            (Rule::Coupled, false, true) => vector_loop::<L, COUPLED, false, true>(&k, args),
            (Rule::Coupled, true, false) => vector_loop::<L, COUPLED, true, false>(&k, args),
            (Rule::Coupled, true, true) => vector_loop::<L, COUPLED, true, true>(&k, args),
        }
    }
    recadam_core::update(s, tail);
}

type Pointers<E> = (usize, *mut E, *const E, *mut E, *mut E, *const E);

/// The vector body, specialised on the rule, weight decay and the tiny-step check.
///
/// # Safety
/// `n` is a multiple of `L::N`; `p`, `g`, `m`, `v` (and `pp` unless `RULE == PLAIN`) point to
/// `n` valid elements; the CPU supports `L`.
#[inline(always)]
unsafe fn vector_loop<L: Lanes, const RULE: u8, const WD: bool, const TINY: bool>(
    k: &Splats<L>,
    (n, p, g, m, v, pp): Pointers<L::Elem>,
) {
    let mut i = 0;
    while i < n {
        // SAFETY: i + L::N ≤ n, so every access is within the slices.
        unsafe {
            let p_old = L::load(p.add(i));
            let mut grad = L::load(g.add(i)).mul(k.grad_scale);
            let theta = if RULE == PLAIN {
                p_old
            } else {
                L::load(pp.add(i))
            };
            if RULE == COUPLED {
                grad = p_old.sub(theta).mul_add(k.penalty_grad, k.lambda.mul(grad));
            }
            let m_new = grad.mul_add(k.one_minus_beta1, L::load(m.add(i)).mul(k.beta1));
            let v_new = k
                .one_minus_beta2
                .mul(grad)
                .mul_add(grad, L::load(v.add(i)).mul(k.beta2));
            m_new.store(m.add(i));
            v_new.store(v.add(i));
            // The bound needs d ≥ ε, so v ≥ 0 (not NaN), as in any real run.
            let unchanged = TINY
                && k.tiny
                    .a
                    .mul_add(m_new.abs(), k.tiny.c)
                    .all_lt(p_old.abs().mul(k.tiny.p))
                && k.zero.all_le(v_new);
            let mut p_new = if unchanged {
                p_old
            } else {
                let denom = v_new.sqrt().add(k.eps);
                p_old.add(k.adam_step.mul(m_new).div(denom))
            };
            if RULE == DECOUPLED {
                p_new = p_new.sub(theta).mul_add(k.neg_penalty, p_new);
            }
            if WD {
                p_new = p_new.mul_add(k.neg_weight_decay, p_new);
            }
            p_new.store(p.add(i));
        }
        i += L::N;
    }
}

/// The memory-bandwidth reference of the benchmarks: the update's memory shape (5 streams read,
/// 3 written in place) with trivial arithmetic.
///
/// # Safety
/// As [`update_body`].
#[inline(always)]
pub(crate) unsafe fn stream_body<L: Lanes>(slices: Slices<'_, L::Elem>) {
    let (head, tail) = slices.split_lanes(L::N);
    let body = head.len();
    let (p, g, m, v, pp) = head.into_parts();
    let Some(pp) = pp else { return };
    let (pp_, g_) = (pp.as_ptr(), g.as_ptr());
    let (p_, m_, v_) = (p.as_mut_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
    let mut i = 0;
    while i < body {
        // SAFETY: i + L::N ≤ body, the length of every head slice.
        unsafe {
            let (pv, gv, mv, vv, ppv) = (
                L::load(p_.add(i)),
                L::load(g_.add(i)),
                L::load(m_.add(i)),
                L::load(v_.add(i)),
                L::load(pp_.add(i)),
            );
            mv.add(gv).store(m_.add(i));
            vv.add(gv).store(v_.add(i));
            pv.add(ppv).store(p_.add(i));
        }
        i += L::N;
    }
    crate::backend::scalar_stream(tail);
}

//! The update, written once over [`Lanes`]: every vector mirrors `recadam_core::update`
//! operation for operation. A slice is cut at the first vector-width boundary of its
//! parameters (see [`cut`]): a partial vector before it, whole aligned vectors, a partial vector
//! after them (masked loads and stores on x86, a small block for 16-bit arrays and on NEON), so no
//! lane of a vector is ever special. Each array
//! is loaded and stored through its own `Access` (the lanes' own type, or bf16/f16 widened and
//! narrowed for the mixed-precision update), so one body serves every storage mode.
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
use recadam_core::{rule_for, Element, MixedSlices, Rule, Slices, StepScalars, Storage};

use crate::lanes::Lanes;
use crate::stored::{Access, AsStored, HalfLanes, Native};

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

/// Updates `slices` by one step with lanes `L`.
///
/// # Safety
/// The CPU must support `L`'s instructions (the caller is a `#[target_feature]` function reached
/// only through an available backend).
#[inline(always)]
pub(crate) unsafe fn update_body<L: Lanes>(s: &StepScalars<L::Elem>, slices: Slices<'_, L::Elem>) {
    // SAFETY: the pointers come from live slices of length n, borrowed for this call; the CPU
    // supports L as the caller guarantees.
    unsafe { update_arrays::<L, Native, Native, Native, Native>(s, Arrays::of(slices)) }
}

/// The mixed-precision update of `slices` with f32 lanes `L` (see `recadam_core::update_mixed`).
///
/// # Safety
/// As [`update_body`].
#[inline(always)]
pub(crate) unsafe fn update_mixed_body<L, G, S, A, C>(
    s: &StepScalars<f32>,
    slices: MixedSlices<'_, G, S, A, C>,
) where
    L: HalfLanes,
    G: Storage,
    S: Storage,
    A: Storage,
    C: Storage,
{
    // SAFETY: as in update_body.
    unsafe {
        update_arrays::<L, AsStored<G>, AsStored<S>, AsStored<A>, AsStored<C>>(
            s,
            Arrays::of_mixed(slices),
        )
    }
}

/// [`update_body`] over the arrays of [`Arrays::of`] or [`Arrays::of_mixed`].
///
/// # Safety
/// `args` comes from live slices that are not otherwise accessed during the call; the CPU
/// supports `L`.
#[inline(always)]
pub(crate) unsafe fn update_arrays<L, G, S, A, C>(
    s: &StepScalars<L::Elem>,
    args: ArraysFor<L, G, S, A, C>,
) where
    L: Lanes,
    G: Access<L>,
    S: Access<L>,
    A: Access<L>,
    C: Access<L>,
{
    let rule = rule_for(s, !args.pp.is_null());
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
    // SAFETY: all slices have length args.n; pp is only read by rules that have a pretrained
    // slice (rule_for returns Plain without one).
    unsafe {
        match (rule, s.weight_decay, tiny.is_some()) {
            (Rule::Plain, false, false) => {
                update_loop::<L, G, S, A, C, PLAIN, false, false>(&k, args)
            }
            (Rule::Plain, false, true) => {
                update_loop::<L, G, S, A, C, PLAIN, false, true>(&k, args)
            }
            (Rule::Plain, true, false) => {
                update_loop::<L, G, S, A, C, PLAIN, true, false>(&k, args)
            }
            (Rule::Plain, true, true) => update_loop::<L, G, S, A, C, PLAIN, true, true>(&k, args),
            (Rule::Decoupled, false, false) => {
                update_loop::<L, G, S, A, C, DECOUPLED, false, false>(&k, args)
            }
            (Rule::Decoupled, false, true) => {
                update_loop::<L, G, S, A, C, DECOUPLED, false, true>(&k, args)
            }
            (Rule::Decoupled, true, false) => {
                update_loop::<L, G, S, A, C, DECOUPLED, true, false>(&k, args)
            }
            (Rule::Decoupled, true, true) => {
                update_loop::<L, G, S, A, C, DECOUPLED, true, true>(&k, args)
            }
            (Rule::Coupled, false, false) => {
                update_loop::<L, G, S, A, C, COUPLED, false, false>(&k, args)
            }
            (Rule::Coupled, false, true) => {
                update_loop::<L, G, S, A, C, COUPLED, false, true>(&k, args)
            }
            (Rule::Coupled, true, false) => {
                update_loop::<L, G, S, A, C, COUPLED, true, false>(&k, args)
            }
            (Rule::Coupled, true, true) => {
                update_loop::<L, G, S, A, C, COUPLED, true, true>(&k, args)
            }
        }
    }
}

/// The arrays of one update, `n` elements each: parameters `P`, gradients `G`, moments `S`,
/// θ* `A` (null without) and the parameter copy `C` (null without).
pub(crate) struct Arrays<P, G, S, A, C> {
    n: usize,
    p: *mut P,
    g: *const G,
    m: *mut S,
    v: *mut S,
    pp: *const A,
    copy: *mut C,
}

impl<P, G, S, A, C> Clone for Arrays<P, G, S, A, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P, G, S, A, C> Copy for Arrays<P, G, S, A, C> {}

/// The arrays that lanes `L` access through `G`, `S`, `A`, `C`.
type ArraysFor<L, G, S, A, C> = Arrays<
    <L as Lanes>::Elem,
    <G as Access<L>>::Item,
    <S as Access<L>>::Item,
    <A as Access<L>>::Item,
    <C as Access<L>>::Item,
>;

/// The arrays of the plain update: every one of the element type, no copy.
pub(crate) type Pointers<E> = Arrays<E, E, E, E, E>;

impl<E> Pointers<E> {
    /// The arrays of `slices` (all of one length, as `Slices` guarantees).
    pub(crate) fn of(slices: Slices<'_, E>) -> Pointers<E> {
        let (p, g, m, v, pp) = slices.into_parts();
        Arrays {
            n: p.len(),
            p: p.as_mut_ptr(),
            g: g.as_ptr(),
            m: m.as_mut_ptr(),
            v: v.as_mut_ptr(),
            pp: pp.map_or(core::ptr::null(), <[E]>::as_ptr),
            copy: core::ptr::null_mut(),
        }
    }

    /// Whether every array starts at the same offset modulo `bytes` as `p`, so that aligning
    /// `p` aligns every access of a `bytes`-wide vector.
    pub(crate) fn share_offset(&self, bytes: usize) -> bool {
        let p = self.p as usize;
        let pp = if self.pp.is_null() {
            p
        } else {
            self.pp as usize
        };
        ((p ^ self.g as usize) | (p ^ self.m as usize) | (p ^ self.v as usize) | (p ^ pp))
            .is_multiple_of(bytes)
    }
}

impl<G, S, A, C> Arrays<f32, G, S, A, C> {
    /// The arrays of `slices` (all of one length, as `MixedSlices` guarantees).
    pub(crate) fn of_mixed(slices: MixedSlices<'_, G, S, A, C>) -> Self {
        let (p, g, m, v, pp, copy) = slices.into_parts();
        Arrays {
            n: p.len(),
            p: p.as_mut_ptr(),
            g: g.as_ptr(),
            m: m.as_mut_ptr(),
            v: v.as_mut_ptr(),
            pp: pp.map_or(core::ptr::null(), <[A]>::as_ptr),
            copy: copy.map_or(core::ptr::null_mut(), <[C]>::as_mut_ptr),
        }
    }
}

/// How a slice is cut into vectors: a partial vector up to the first element of `p` on a
/// vector-width boundary, whole aligned vectors, a partial vector for the rest. In cache a
/// 64-byte vector that straddles two cache lines costs two accesses (about 10% of the step at
/// 2^12 parameters on Emerald Rapids with AVX-512); all arrays of one tensor usually share their
/// offset, so aligning `p` aligns them all. Every lane computes the same operations in any
/// cut, so the bits do not depend on it.
#[inline(always)]
fn cut<L: Lanes>(p: *const L::Elem, n: usize) -> (usize, usize) {
    let head = p.align_offset(L::N * core::mem::size_of::<L::Elem>());
    let head = if head < L::N { head.min(n) } else { 0 };
    let body_end = head + (n - head) / L::N * L::N;
    (head, body_end)
}

/// The update over `n` elements: the two partial vectors of [`cut`] and the aligned body.
///
/// # Safety
/// The arrays of `a` hold `n` valid elements (`pp` unless `RULE == PLAIN`, `copy` unless null);
/// the CPU supports `L`.
#[inline(always)]
unsafe fn update_loop<L, G, S, A, C, const RULE: u8, const WD: bool, const TINY: bool>(
    k: &Splats<L>,
    a: ArraysFor<L, G, S, A, C>,
) where
    L: Lanes,
    G: Access<L>,
    S: Access<L>,
    A: Access<L>,
    C: Access<L>,
{
    let (head, body_end) = cut::<L>(a.p, a.n);
    // SAFETY: every call covers elements within 0..n (head ≤ body_end ≤ n).
    unsafe {
        let mut i = head;
        while i < body_end {
            update_vector::<L, G, S, A, C, RULE, WD, TINY>(k, a, i, L::N);
            i += L::N;
        }
        // The two partial vectors share one call site: each variant of the loop then holds two
        // copies of the vector body, not three (compile time: the storage modes instantiate
        // this loop for each combination of storage types).
        for (start, count) in [(0, head), (body_end, a.n - body_end)] {
            if count > 0 {
                update_vector::<L, G, S, A, C, RULE, WD, TINY>(k, a, start, count);
            }
        }
    }
}

/// The update of elements `i..i + count` (`count ≤ L::N`), specialised on the rule, weight
/// decay and the tiny-step check. In a partial vector the lanes past `count` hold zeros; they
/// are computed and never stored (a zero `p` fails the tiny-step bound, so such a vector takes
/// the full computation, which is exact either way). Each array is widened on load and narrowed
/// on store by its own storage type; the arithmetic is in the lanes' type, with this step's
/// moments (not their narrowed copies), as in `recadam_core::update_mixed`.
///
/// # Safety
/// `i + count ≤ n` for the arrays of `a`; the CPU supports `L`.
#[inline(always)]
unsafe fn update_vector<L, G, S, A, C, const RULE: u8, const WD: bool, const TINY: bool>(
    k: &Splats<L>,
    a: ArraysFor<L, G, S, A, C>,
    i: usize,
    count: usize,
) where
    L: Lanes,
    G: Access<L>,
    S: Access<L>,
    A: Access<L>,
    C: Access<L>,
{
    // SAFETY: i + count ≤ n, so every access is within the arrays.
    unsafe {
        let p_old = <Native as Access<L>>::load(a.p.add(i), count);
        let mut grad = G::load(a.g.add(i), count).mul(k.grad_scale);
        let theta = if RULE == PLAIN {
            p_old
        } else {
            A::load(a.pp.add(i), count)
        };
        if RULE == COUPLED {
            grad = p_old.sub(theta).mul_add(k.penalty_grad, k.lambda.mul(grad));
        }
        let m_new = grad.mul_add(k.one_minus_beta1, S::load(a.m.add(i), count).mul(k.beta1));
        let v_new = k
            .one_minus_beta2
            .mul(grad)
            .mul_add(grad, S::load(a.v.add(i), count).mul(k.beta2));
        S::store(m_new, a.m.add(i), count);
        S::store(v_new, a.v.add(i), count);
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
        <Native as Access<L>>::store(p_new, a.p.add(i), count);
        if !a.copy.is_null() {
            C::store(p_new, a.copy.add(i), count);
        }
    }
}

/// The memory-bandwidth reference of the benchmarks: the update's memory shape (5 streams read,
/// 3 written in place) with trivial arithmetic, cut into vectors as the update is.
///
/// # Safety
/// As [`update_body`].
#[inline(always)]
pub(crate) unsafe fn stream_body<L: Lanes>(slices: Slices<'_, L::Elem>) {
    // SAFETY: as for update_body.
    unsafe { stream_arrays::<L>(Pointers::of(slices)) }
}

/// [`stream_body`] over the arrays of [`Pointers::of`]; does nothing without θ*.
///
/// # Safety
/// As [`update_arrays`].
#[inline(always)]
pub(crate) unsafe fn stream_arrays<L: Lanes>(a: Pointers<L::Elem>) {
    // SAFETY: as the caller guarantees.
    unsafe { stream_accessed::<L, Native, Native, Native, Native>(a) }
}

/// The streaming reference of the mixed-precision update: the same loads and stores, in the same
/// storage types (the parameter copy written when there is one), with one addition each.
///
/// # Safety
/// As [`update_body`].
#[inline(always)]
pub(crate) unsafe fn stream_mixed_body<L, G, S, A, C>(slices: MixedSlices<'_, G, S, A, C>)
where
    L: HalfLanes,
    G: Storage,
    S: Storage,
    A: Storage,
    C: Storage,
{
    // SAFETY: as in update_body.
    unsafe {
        stream_accessed::<L, AsStored<G>, AsStored<S>, AsStored<A>, AsStored<C>>(Arrays::of_mixed(
            slices,
        ))
    }
}

/// The stream over arrays accessed through `G`, `S`, `A`, `C`; does nothing without θ*.
///
/// # Safety
/// As [`update_arrays`].
#[inline(always)]
unsafe fn stream_accessed<L, G, S, A, C>(a: ArraysFor<L, G, S, A, C>)
where
    L: Lanes,
    G: Access<L>,
    S: Access<L>,
    A: Access<L>,
    C: Access<L>,
{
    if a.pp.is_null() {
        return;
    }
    let (head, body_end) = cut::<L>(a.p, a.n);
    // SAFETY: every call covers elements within 0..n, the length of every slice.
    unsafe {
        let mut i = head;
        while i < body_end {
            stream_vector::<L, G, S, A, C>(a, i, L::N);
            i += L::N;
        }
        for (start, count) in [(0, head), (body_end, a.n - body_end)] {
            if count > 0 {
                stream_vector::<L, G, S, A, C>(a, start, count);
            }
        }
    }
}

/// One vector of the streaming reference: m += g, v += g, p += θ* (and the copy of p).
///
/// # Safety
/// `i + count ≤ n` for the arrays of `a`, `pp` not null; the CPU supports `L`.
#[inline(always)]
unsafe fn stream_vector<L, G, S, A, C>(a: ArraysFor<L, G, S, A, C>, i: usize, count: usize)
where
    L: Lanes,
    G: Access<L>,
    S: Access<L>,
    A: Access<L>,
    C: Access<L>,
{
    // SAFETY: i + count ≤ n, so every access is within the arrays.
    unsafe {
        let gv = G::load(a.g.add(i), count);
        let (pv, mv, vv) = (
            <Native as Access<L>>::load(a.p.add(i), count),
            S::load(a.m.add(i), count),
            S::load(a.v.add(i), count),
        );
        let ppv = A::load(a.pp.add(i), count);
        S::store(mv.add(gv), a.m.add(i), count);
        S::store(vv.add(gv), a.v.add(i), count);
        let p_new = pv.add(ppv);
        <Native as Access<L>>::store(p_new, a.p.add(i), count);
        if !a.copy.is_null() {
            C::store(p_new, a.copy.add(i), count);
        }
    }
}

//! Every var's memory at once, without a copy.
//!
//! candle lends a tensor's CPU storage for writing only inside an in-place op
//! (`Tensor::inplace_op2`), under that storage's write lock. One RecAdam step needs every
//! parameter at once (the global gradient norm, the guard's all-or-nothing check, one split of the
//! work over the threads), so the op of each var runs the op of the next one inside it: at the
//! innermost var, every var's values and gradient are borrowed, and the step runs over them all.
//! The nesting costs about 1 KiB of stack per var with candle optimised and 3-4 KiB without (a
//! debug build): up to 128 vars it runs on the calling thread, beyond that on a thread started for
//! the step with a stack sized for it (`tests/in_place.rs` steps 10,000 vars; CI builds candle
//! unoptimised). No value is copied.

use std::cell::RefCell;

use candle_core::{CpuStorage, InplaceOp2, Layout, Tensor};
use recadam_std::{ParamId, ParamMut};

use crate::element::Element;

/// One var to borrow: its handle in the optimizer, its values, its gradient.
pub(crate) struct Lend<'r> {
    pub id: ParamId,
    pub var: &'r Tensor,
    pub grad: &'r Tensor,
}

/// Vars nested on the calling thread's stack at most; a step over more runs on a thread of its
/// own whose stack is sized for them.
const ON_CALLING_THREAD: usize = 128;

/// Stack per nested var on that thread: twice the most measured (10,000 vars need more than
/// 3 KiB each and at most 4 KiB with candle unoptimised; about 1 KiB optimised), and a base for
/// the step itself.
const STACK_PER_VAR: usize = 8 << 10;
const STACK_BASE: usize = 256 << 10;

/// Calls `step` with every var of `lends` borrowed for writing and its gradient for reading.
/// Each var's and gradient's storage is locked while `step` runs.
pub(crate) fn with_all<T: Element>(
    lends: &[Lend<'_>],
    step: &mut (dyn FnMut(&mut [ParamMut<'_, T>]) + Send),
) -> candle_core::Result<()> {
    if lends.len() <= ON_CALLING_THREAD {
        return nest(lends, step);
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("recadam-candle-step".into())
            .stack_size(STACK_BASE + lends.len() * STACK_PER_VAR)
            .spawn_scoped(scope, || nest(lends, step))
            .map_err(|e| {
                candle_core::Error::msg(format!("recadam: cannot start the step's thread: {e}"))
            })?;
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn nest<T: Element>(
    lends: &[Lend<'_>],
    step: &mut (dyn FnMut(&mut [ParamMut<'_, T>]) + Send),
) -> candle_core::Result<()> {
    let step: Step<'_, T> = RefCell::new(step);
    match lends.split_first() {
        None => {
            (step.borrow_mut())(&mut []);
            Ok(())
        }
        Some((first, rest)) => first.var.inplace_op2(
            first.grad,
            &Nest {
                id: first.id,
                rest,
                taken: RefCell::new(Vec::with_capacity(lends.len())),
                step: &step,
            },
        ),
    }
}

/// The op of one var: it holds the vars borrowed before it and the ones still to borrow.
struct Nest<'s, 'r, 'g, 'f, T> {
    id: ParamId,
    rest: &'r [Lend<'r>],
    taken: RefCell<Vec<ParamMut<'s, T>>>,
    step: &'g Step<'f, T>,
}

/// The step to run once every var is borrowed.
type Step<'f, T> = RefCell<&'f mut (dyn FnMut(&mut [ParamMut<'_, T>]) + Send)>;

impl<T: Element> InplaceOp2 for Nest<'_, '_, '_, '_, T> {
    fn name(&self) -> &'static str {
        "recadam-step"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> candle_core::Result<()> {
        let value = T::values_mut(dst, dst_l)?;
        let grad = T::values(src, src_l)?;
        // The borrows of the outer vars outlive this one's: the list shortens to this one's.
        let mut taken: Vec<ParamMut<'_, T>> = std::mem::take(&mut *self.taken.borrow_mut());
        taken.push(ParamMut::new(self.id, value, grad));
        match self.rest.split_first() {
            None => {
                (self.step.borrow_mut())(&mut taken);
                Ok(())
            }
            Some((next, rest)) => next.var.inplace_op2(
                next.grad,
                &Nest {
                    id: next.id,
                    rest,
                    taken: RefCell::new(taken),
                    step: self.step,
                },
            ),
        }
    }
}

//! One stateless update: for frameworks that keep their own state (what DeepSpeed's
//! `ds_adam_step` is for Adam). The caller holds the moments and θ*, counts the steps and
//! schedules the learning rate; the update runs on the calling thread with the best kernel of
//! the CPU, the same bits as every other entry point.

use recadam_simd::SimdElement;
use recadam_std::raw::{self, RawParam};
use recadam_std::{step_held, CallingThread, HeldParam, Kernel, NonFiniteGuard};

use crate::config::recadam_config;
use crate::error::{entry, non_null, Failure, RECADAM_ERROR_LENGTH};
use crate::recadam_status;

fn update<T: SimdElement>(
    config: *const recadam_config,
    step: u64,
    buffers: RawParam<T>,
) -> Result<(), Failure> {
    // SAFETY: the caller's contract (see the public functions).
    let config = unsafe { recadam_config::read(config) }?;
    if buffers.len == 0 {
        return Err(Failure::new(RECADAM_ERROR_LENGTH, "`len` is 0"));
    }
    non_null(buffers.value, "param")?;
    non_null(buffers.grad, "grad")?;
    non_null(buffers.exp_avg, "exp_avg")?;
    non_null(buffers.exp_avg_sq, "exp_avg_sq")?;
    // SAFETY: the caller vouches that each non-null pointer starts a live buffer of `len`
    // elements that nothing else uses during the call; `raw::slices` checks alignment, sizes
    // and that no written buffer overlaps another.
    let slices = unsafe { raw::slices(&[buffers]) }?;
    let params = slices
        .into_iter()
        .map(|slices| HeldParam {
            slices,
            group: 0,
            t: step,
        })
        .collect();
    step_held(
        Kernel::best(),
        &CallingThread,
        NonFiniteGuard::Off,
        &[config],
        params,
    )?;
    Ok(())
}

/// One RecAdam update of `len` f32 elements at step `step` (from 1) with `config` (its `lr` is
/// this step's rate): `param`, `exp_avg` and `exp_avg_sq` are updated in place from `grad` and
/// θ* (`pretrained`; may be null when `config.anneal_w` is 0). No check of the gradient's
/// finiteness: NaN goes through, as in PyTorch.
///
/// # Safety
/// Each non-null pointer starts a buffer of `len` floats, live and used by no other thread
/// during the call. Null pointers, a zero `len`, misaligned or overlapping buffers are errors.
#[no_mangle]
pub unsafe extern "C" fn recadam_update_f32(
    config: *const recadam_config,
    step: u64,
    param: *mut f32,
    grad: *const f32,
    exp_avg: *mut f32,
    exp_avg_sq: *mut f32,
    pretrained: *const f32,
    len: usize,
) -> recadam_status {
    entry(|| {
        update(
            config,
            step,
            RawParam {
                value: param,
                grad,
                exp_avg,
                exp_avg_sq,
                pretrained,
                len,
            },
        )
    })
}

/// [`recadam_update_f32`] for doubles.
///
/// # Safety
/// As for [`recadam_update_f32`], with buffers of `len` doubles.
#[no_mangle]
pub unsafe extern "C" fn recadam_update_f64(
    config: *const recadam_config,
    step: u64,
    param: *mut f64,
    grad: *const f64,
    exp_avg: *mut f64,
    exp_avg_sq: *mut f64,
    pretrained: *const f64,
    len: usize,
) -> recadam_status {
    entry(|| {
        update(
            config,
            step,
            RawParam {
                value: param,
                grad,
                exp_avg,
                exp_avg_sq,
                pretrained,
                len,
            },
        )
    })
}

//! An optimizer over caller-owned buffers: groups with their own hyperparameters, parameters
//! registered once by address, one call per step on the optimizer's threads, the learning rate
//! set between steps, checkpoints in recadam-std's format.
//!
//! A handle is a number that looks like a pointer and is never dereferenced: the live
//! optimizers are kept in a table, so a handle already freed (or any other pointer) is
//! [`RECADAM_ERROR_INVALID_HANDLE`], never a read of freed memory. Numbers are not reused.
//! Calls on one optimizer from several threads are serialised by a lock.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use recadam_core::RecAdamConfig;
use recadam_simd::SimdElement;
use recadam_std::raw::{self, RawParam};
use recadam_std::{
    load_held, save_held, step_held, thread_pool, HeldParam, HeldReport, HeldState, Kernel,
    NonFiniteGuard, Pool,
};

use crate::config::recadam_config;
use crate::error::*;

/// The element type of an optimizer's buffers.
pub type recadam_dtype = u32;
/// `float`.
pub const RECADAM_F32: recadam_dtype = 1;
/// `double`.
pub const RECADAM_F64: recadam_dtype = 2;

/// What a step does when a gradient holds NaN or an infinity.
pub type recadam_nonfinite = u32;
/// Refuse the step: [`RECADAM_ERROR_NONFINITE_GRADIENT`], nothing changes (the default).
pub const RECADAM_NONFINITE_REFUSE: recadam_nonfinite = 0;
/// Skip the step, as a mixed-precision loss scaler does: `RECADAM_OK`, nothing changes, and
/// the report says `skipped`.
pub const RECADAM_NONFINITE_SKIP: recadam_nonfinite = 1;
/// No check (one pass fewer over the gradients): NaN goes through, as in PyTorch.
pub const RECADAM_NONFINITE_OFF: recadam_nonfinite = 2;

/// Where a parameter's θ* (the pretrained weights it is pulled towards) comes from.
pub type recadam_pretrained_mode = u32;
/// None: the parameter's group must have no penalty (`anneal_w` 0).
pub const RECADAM_PRETRAINED_NONE: recadam_pretrained_mode = 0;
/// `pretrained` is used in place: it must stay valid and unchanged until the optimizer is freed.
pub const RECADAM_PRETRAINED_BORROW: recadam_pretrained_mode = 1;
/// `pretrained` is copied at registration (the caller may free it then).
pub const RECADAM_PRETRAINED_COPY: recadam_pretrained_mode = 2;
/// The parameter's values at registration are copied as θ* (`pretrained` must be null): the
/// usual start of fine-tuning.
pub const RECADAM_PRETRAINED_FROM_PARAM: recadam_pretrained_mode = 3;

/// An optimizer (opaque): made by [`recadam_optimizer_new`], freed by [`recadam_optimizer_free`].
pub struct recadam_optimizer {
    _opaque: [u8; 0],
}

/// One parameter to register. Set `struct_size` to `sizeof(recadam_param)`.
///
/// `param` (updated in place at each step) and `grad` (read at each step) are the caller's and
/// must stay valid until the optimizer is freed. `exp_avg` and `exp_avg_sq` may be the caller's
/// (used in place, as they are: zero them to start) or null (the optimizer allocates them,
/// zeroed). Every buffer holds `len` elements of the optimizer's type.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct recadam_param {
    /// `sizeof(recadam_param)`.
    pub struct_size: u32,
    /// `RECADAM_PRETRAINED_*`: where θ* comes from.
    pub pretrained_mode: recadam_pretrained_mode,
    /// The group (from `recadam_add_group`), from 0.
    pub group: usize,
    /// Elements in each buffer (> 0).
    pub len: usize,
    /// The values.
    pub param: *mut c_void,
    /// The gradient, written by the caller before each step.
    pub grad: *const c_void,
    /// The first moment, or null.
    pub exp_avg: *mut c_void,
    /// The second moment, or null.
    pub exp_avg_sq: *mut c_void,
    /// θ*, for `RECADAM_PRETRAINED_BORROW` and `RECADAM_PRETRAINED_COPY`; otherwise null.
    pub pretrained: *const c_void,
}

/// What a step did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct recadam_step_report {
    /// The optimizer's step count after the call (unchanged when skipped).
    pub step: u64,
    /// The first parameter (its id) whose gradient is not finite, when skipped; otherwise
    /// `SIZE_MAX`.
    pub skipped_param: usize,
    /// The global gradient norm (f64, fixed summation order); NaN with the guard off.
    pub grad_norm: f64,
    /// The learning rate of group 0 at this step.
    pub lr: f64,
    /// λ(t) of group 0 at this step (0 without a penalty).
    pub lambda: f64,
    /// 1 when the step was skipped for a non-finite gradient (`RECADAM_NONFINITE_SKIP`).
    pub skipped: u32,
}

/// A buffer the caller owns (its address) or the optimizer allocated.
#[derive(Debug)]
enum Store<T> {
    Caller(usize),
    Owned(Vec<T>),
}

impl<T> Store<T> {
    fn addr(&mut self) -> usize {
        match self {
            Store::Caller(addr) => *addr,
            Store::Owned(v) => v.as_mut_ptr() as usize,
        }
    }
}

#[derive(Debug)]
struct Param<T> {
    value: usize,
    grad: usize,
    exp_avg: Store<T>,
    exp_avg_sq: Store<T>,
    pretrained: Option<Store<T>>,
    len: usize,
    group: usize,
}

impl<T> Param<T> {
    fn raw(&mut self) -> RawParam<T> {
        RawParam {
            value: self.value as *mut T,
            grad: self.grad as *const T,
            exp_avg: self.exp_avg.addr() as *mut T,
            exp_avg_sq: self.exp_avg_sq.addr() as *mut T,
            pretrained: self
                .pretrained
                .as_mut()
                .map_or(std::ptr::null(), |p| p.addr() as *const T),
            len: self.len,
        }
    }
}

#[derive(Debug)]
enum Params {
    F32(Vec<Param<f32>>),
    F64(Vec<Param<f64>>),
}

/// Runs `$body` with `$params` bound to the typed parameter list (`T` is its element type).
macro_rules! typed {
    ($engine:expr, $params:ident, $body:expr) => {
        match &mut $engine.params {
            Params::F32($params) => $body,
            Params::F64($params) => $body,
        }
    };
}

#[derive(Debug)]
struct Engine {
    kernel: Kernel,
    pool: Arc<dyn Pool>,
    guard: NonFiniteGuard,
    groups: Vec<RecAdamConfig>,
    step: u64,
    params: Params,
}

impl Engine {
    fn group(&self, group: usize) -> Result<&RecAdamConfig, Failure> {
        self.groups.get(group).ok_or_else(|| {
            Failure::new(
                RECADAM_ERROR_INVALID_ARGUMENT,
                format!("group {group} does not exist ({} added)", self.groups.len()),
            )
        })
    }
}

type Live = BTreeMap<usize, Arc<Mutex<Engine>>>;

static LIVE: Mutex<Live> = Mutex::new(BTreeMap::new());
/// Handle numbers: multiples of 16 from 16, never reused.
static NEXT: AtomicUsize = AtomicUsize::new(1);

fn live() -> MutexGuard<'static, Live> {
    // The table is only inserted into and removed from: a panic elsewhere cannot leave it
    // half-changed, so a poisoned lock is still a sound table.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on the optimizer behind `handle`.
fn with_engine(
    handle: *mut recadam_optimizer,
    f: impl FnOnce(&mut Engine) -> Result<(), Failure>,
) -> Result<(), Failure> {
    non_null(handle, "optimizer")?;
    let engine = live().get(&handle.addr()).cloned().ok_or_else(|| {
        Failure::new(
            RECADAM_ERROR_INVALID_HANDLE,
            "the optimizer handle is not live: freed already, or not made by recadam_optimizer_new",
        )
    })?;
    let mut engine = engine.lock().map_err(|_| {
        Failure::new(
            RECADAM_ERROR_PANIC,
            "an earlier call on this optimizer failed inside the library (a caught panic); free it",
        )
    })?;
    f(&mut engine)
}

/// Writes `value` to an out-pointer that must not be null.
fn put<T>(out: *mut T, what: &str, value: T) -> Result<(), Failure> {
    non_null(out, what)?;
    // SAFETY: non-null; the caller's contract is that it points to a writable `T`.
    unsafe { out.write_unaligned(value) };
    Ok(())
}

/// Writes `value` to an out-pointer that may be null (not wanted).
fn put_if<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-null; the caller's contract is that it points to a writable `T`.
        unsafe { out.write_unaligned(value) };
    }
}

/// Makes an optimizer of `dtype` (`RECADAM_F32` or `RECADAM_F64`) stepping on `threads`
/// threads (1: the calling thread, no thread is ever started; more: a pool started once, here)
/// with the best kernel of this CPU, and writes its handle to `*out`. It has no group yet.
///
/// # Safety
/// `out` is null or points to a writable `recadam_optimizer *`.
#[no_mangle]
pub unsafe extern "C" fn recadam_optimizer_new(
    dtype: recadam_dtype,
    threads: usize,
    out: *mut *mut recadam_optimizer,
) -> recadam_status {
    entry(|| {
        non_null(out, "out")?;
        let params = match dtype {
            RECADAM_F32 => Params::F32(Vec::new()),
            RECADAM_F64 => Params::F64(Vec::new()),
            other => {
                return Err(Failure::new(
                    RECADAM_ERROR_INVALID_ARGUMENT,
                    format!("invalid dtype {other}: expected RECADAM_F32 or RECADAM_F64"),
                ))
            }
        };
        let engine = Engine {
            kernel: Kernel::best(),
            pool: thread_pool(threads)?,
            guard: NonFiniteGuard::Refuse,
            groups: Vec::new(),
            step: 0,
            params,
        };
        let number = NEXT.fetch_add(1, Ordering::Relaxed) << 4;
        live().insert(number, Arc::new(Mutex::new(engine)));
        put(
            out,
            "out",
            std::ptr::without_provenance_mut::<recadam_optimizer>(number),
        )
    })
}

/// Frees an optimizer and everything it allocated (the caller's buffers stay the caller's).
/// Null is accepted and does nothing; a handle freed already is `RECADAM_ERROR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn recadam_optimizer_free(optimizer: *mut recadam_optimizer) -> recadam_status {
    entry(|| {
        if optimizer.is_null() {
            return Ok(());
        }
        // A call in progress on another thread holds its own reference: the optimizer goes
        // when that call returns.
        live()
            .remove(&optimizer.addr())
            .map(drop)
            .ok_or_else(|| {
                Failure::new(
                    RECADAM_ERROR_INVALID_HANDLE,
                    "the optimizer handle is not live: freed already, or not made by recadam_optimizer_new",
                )
            })
    })
}

/// Adds a group with `*config`'s hyperparameters (checked) and writes its number (0, 1, ...)
/// to `*group` (may be null).
///
/// # Safety
/// `config` is null or points to a readable `recadam_config`; `group` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn recadam_add_group(
    optimizer: *mut recadam_optimizer,
    config: *const recadam_config,
    group: *mut usize,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            // SAFETY: the caller's contract.
            let config = unsafe { recadam_config::read(config) }?;
            engine.groups.push(config);
            put_if(group, engine.groups.len() - 1);
            Ok(())
        })
    })
}

fn register<T: SimdElement>(
    params: &mut Vec<Param<T>>,
    groups: &[RecAdamConfig],
    spec: &recadam_param,
) -> Result<usize, Failure> {
    if spec.len == 0 {
        return Err(Failure::new(RECADAM_ERROR_LENGTH, "recadam_param.len is 0"));
    }
    non_null(spec.param, "recadam_param.param")?;
    non_null(spec.grad, "recadam_param.grad")?;
    let config = groups.get(spec.group).ok_or_else(|| {
        Failure::new(
            RECADAM_ERROR_INVALID_ARGUMENT,
            format!(
                "recadam_param.group is {}, but {} groups were added",
                spec.group,
                groups.len()
            ),
        )
    })?;
    let invalid = |message: &str| Failure::new(RECADAM_ERROR_INVALID_ARGUMENT, message);
    if let Some(k) = params.iter().position(|p| p.value == spec.param as usize) {
        return Err(Failure::new(
            RECADAM_ERROR_DUPLICATE,
            format!("recadam_param.param is the buffer of parameter {k}, registered already"),
        ));
    }
    let state = |ptr: *mut c_void| match ptr.is_null() {
        true => Store::Owned(vec![T::zero(); spec.len]),
        false => Store::Caller(ptr as usize),
    };
    let mut param = Param {
        value: spec.param as usize,
        grad: spec.grad as usize,
        exp_avg: state(spec.exp_avg),
        exp_avg_sq: state(spec.exp_avg_sq),
        pretrained: None,
        len: spec.len,
        group: spec.group,
    };
    match (spec.pretrained_mode, spec.pretrained.is_null()) {
        (RECADAM_PRETRAINED_NONE, true) => {
            if config.has_penalty() {
                return Err(invalid(&format!(
                    "group {} pulls its parameters towards θ* (anneal_w > 0), but recadam_param.pretrained_mode is RECADAM_PRETRAINED_NONE",
                    spec.group
                )));
            }
        }
        (RECADAM_PRETRAINED_BORROW, false) => {
            param.pretrained = Some(Store::Caller(spec.pretrained as usize))
        }
        (RECADAM_PRETRAINED_COPY | RECADAM_PRETRAINED_FROM_PARAM, _) => {
            let from = if spec.pretrained_mode == RECADAM_PRETRAINED_COPY {
                non_null(spec.pretrained, "recadam_param.pretrained")?;
                spec.pretrained
            } else if spec.pretrained.is_null() {
                spec.param.cast_const()
            } else {
                return Err(invalid("recadam_param.pretrained must be null with RECADAM_PRETRAINED_FROM_PARAM"));
            };
            // Checked (alignment, size) before it is read.
            let bytes = spec.len.checked_mul(size_of::<T>());
            if from.addr() % align_of::<T>() != 0 || bytes.is_none_or(|b| b > isize::MAX as usize) {
                return Err(Failure::new(
                    RECADAM_ERROR_BUFFER,
                    "the buffer θ* is copied from is not aligned for its element type, or too large",
                ));
            }
            // SAFETY: checked above (non-null, aligned, size); the caller vouches that it
            // starts a live buffer of `len` elements.
            let copy = unsafe { std::slice::from_raw_parts(from.cast::<T>(), spec.len) };
            param.pretrained = Some(Store::Owned(copy.to_vec()));
        }
        (RECADAM_PRETRAINED_NONE, false) => {
            return Err(invalid(
                "recadam_param.pretrained must be null with RECADAM_PRETRAINED_NONE",
            ))
        }
        (RECADAM_PRETRAINED_BORROW, true) => {
            return Err(Failure::new(
                RECADAM_ERROR_NULL_POINTER,
                "`recadam_param.pretrained` is null (RECADAM_PRETRAINED_BORROW)",
            ))
        }
        (other, _) => {
            return Err(invalid(&format!(
                "invalid recadam_param.pretrained_mode = {other}: expected a RECADAM_PRETRAINED_* value"
            )))
        }
    }
    // Alignment, sizes, and no buffer written by a step overlapping any other buffer of any
    // parameter of this optimizer.
    let mut all: Vec<RawParam<T>> = params.iter_mut().map(Param::raw).collect();
    all.push(param.raw());
    raw::check(&all)?;
    params.push(param);
    Ok(params.len() - 1)
}

/// Registers one parameter (see [`recadam_param`]) and writes its id (0, 1, ... in order of
/// registration) to `*id` (may be null). Checked: `struct_size`, null pointers, `len` > 0, the
/// group, alignment for the optimizer's type, θ* where the group has a penalty, and that no
/// buffer a step writes overlaps any other buffer of this optimizer (a parameter registered
/// twice is `RECADAM_ERROR_DUPLICATE`).
///
/// # Safety
/// `param` is null or points to a readable `recadam_param` whose non-null pointers start live
/// buffers of `len` elements of the optimizer's type, valid until the optimizer is freed.
#[no_mangle]
pub unsafe extern "C" fn recadam_register(
    optimizer: *mut recadam_optimizer,
    param: *const recadam_param,
    id: *mut usize,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            non_null(param, "param")?;
            // SAFETY: non-null; the caller's contract.
            let spec = unsafe { param.read_unaligned() };
            if spec.struct_size as usize != size_of::<recadam_param>() {
                return Err(Failure::new(
                    RECADAM_ERROR_VERSION,
                    format!(
                        "recadam_param.struct_size is {}, this library's recadam_param has {} bytes",
                        spec.struct_size,
                        size_of::<recadam_param>()
                    ),
                ));
            }
            let groups = &engine.groups;
            let k = typed!(engine, params, register(params, groups, &spec))?;
            put_if(id, k);
            Ok(())
        })
    })
}

fn step_typed<T: SimdElement>(
    params: &mut [Param<T>],
    engine: (Kernel, &dyn Pool, NonFiniteGuard, &[RecAdamConfig]),
    t: u64,
) -> Result<HeldReport, Failure> {
    let (kernel, pool, guard, groups) = engine;
    let raw: Vec<RawParam<T>> = params.iter_mut().map(Param::raw).collect();
    // SAFETY: the caller vouched at registration that each buffer stays live, and that nothing
    // else uses it during a call; the owned buffers are this optimizer's, borrowed mutably
    // here; `raw::slices` checks alignment and overlaps again.
    let slices = unsafe { raw::slices(&raw) }?;
    let held = slices
        .into_iter()
        .zip(params.iter())
        .map(|(slices, p)| HeldParam {
            slices,
            group: p.group,
            t,
        })
        .collect();
    Ok(step_held(kernel, pool, guard, groups, held)?)
}

/// One step of every registered parameter, from the gradients in their `grad` buffers, with
/// each group's current learning rate, on the optimizer's threads. Nothing changes unless it
/// succeeds. Writes what it did to `*report` (may be null).
///
/// # Safety
/// `report` is null or points to a writable `recadam_step_report`; the registered buffers are
/// live and used by no other thread during the call.
#[no_mangle]
pub unsafe extern "C" fn recadam_step(
    optimizer: *mut recadam_optimizer,
    report: *mut recadam_step_report,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            let t = engine.step + 1;
            let context = (
                engine.kernel,
                engine.pool.as_ref(),
                engine.guard,
                &engine.groups[..],
            );
            let done = typed!(engine, params, step_typed(params, context, t))?;
            if done.skipped.is_none() {
                engine.step = t;
            }
            let first = engine.groups.first();
            put_if(
                report,
                recadam_step_report {
                    step: engine.step,
                    skipped_param: done.skipped.unwrap_or(usize::MAX),
                    grad_norm: done.grad_norm.unwrap_or(f64::NAN),
                    lr: first.map_or(0.0, |c| c.lr),
                    lambda: first.map_or(0.0, |c| c.lambda(t)),
                    skipped: u32::from(done.skipped.is_some()),
                },
            );
            Ok(())
        })
    })
}

/// Sets the learning rate of `group` for the next steps (checked as the hyperparameter).
#[no_mangle]
pub extern "C" fn recadam_set_lr(
    optimizer: *mut recadam_optimizer,
    group: usize,
    lr: f64,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            let config = RecAdamConfig {
                lr,
                ..*engine.group(group)?
            };
            config.validate().map_err(recadam_std::Error::from)?;
            engine.groups[group] = config;
            Ok(())
        })
    })
}

/// Writes the learning rate of `group` to `*lr`.
///
/// # Safety
/// `lr` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn recadam_get_lr(
    optimizer: *mut recadam_optimizer,
    group: usize,
    lr: *mut f64,
) -> recadam_status {
    entry(|| with_engine(optimizer, |engine| put(lr, "lr", engine.group(group)?.lr)))
}

/// Sets what a step does with a non-finite gradient (`RECADAM_NONFINITE_*`).
#[no_mangle]
pub extern "C" fn recadam_set_nonfinite(
    optimizer: *mut recadam_optimizer,
    mode: recadam_nonfinite,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            engine.guard = match mode {
                RECADAM_NONFINITE_REFUSE => NonFiniteGuard::Refuse,
                RECADAM_NONFINITE_SKIP => NonFiniteGuard::Skip,
                RECADAM_NONFINITE_OFF => NonFiniteGuard::Off,
                other => {
                    return Err(Failure::new(
                        RECADAM_ERROR_INVALID_ARGUMENT,
                        format!("invalid mode {other}: expected a RECADAM_NONFINITE_* value"),
                    ))
                }
            };
            Ok(())
        })
    })
}

/// Writes the steps taken (skipped ones not counted) to `*step`.
///
/// # Safety
/// `step` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn recadam_step_count(
    optimizer: *mut recadam_optimizer,
    step: *mut u64,
) -> recadam_status {
    entry(|| with_engine(optimizer, |engine| put(step, "step", engine.step)))
}

/// Writes λ(t) of `group` to `*lambda`: the weight of the target task at the latest step
/// (at step 1 before any), 0 for a group without a penalty.
///
/// # Safety
/// `lambda` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn recadam_lambda(
    optimizer: *mut recadam_optimizer,
    group: usize,
    lambda: *mut f64,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            let t = engine.step.max(1);
            put(lambda, "lambda", engine.group(group)?.lambda(t))
        })
    })
}

fn distance_of<T: SimdElement>(
    params: &mut [Param<T>],
    groups: &[RecAdamConfig],
) -> Result<f64, Failure> {
    let raw: Vec<RawParam<T>> = params.iter_mut().map(Param::raw).collect();
    // SAFETY: as in `step_typed`.
    let slices = unsafe { raw::slices(&raw) }?;
    let mut sum = 0.0f64;
    for (s, p) in slices.into_iter().zip(params.iter()) {
        if !groups[p.group].has_penalty() {
            continue;
        }
        let (value, _, _, _, pretrained) = s.into_parts();
        if let Some(pretrained) = pretrained {
            sum += value
                .iter()
                .zip(pretrained)
                .map(|(a, b)| {
                    let d = a.widen_to_f64() - b.widen_to_f64();
                    d * d
                })
                .sum::<f64>();
        }
    }
    Ok(sum.sqrt())
}

/// Writes the Euclidean distance of the parameters of penalised groups to θ* (the paper's
/// measure of forgetting) to `*distance`, in double precision.
///
/// # Safety
/// `distance` is null or writable; the registered buffers as for [`recadam_step`].
#[no_mangle]
pub unsafe extern "C" fn recadam_distance(
    optimizer: *mut recadam_optimizer,
    distance: *mut f64,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            let groups = &engine.groups;
            let d = typed!(engine, params, distance_of(params, groups))?;
            put(distance, "distance", d)
        })
    })
}

fn copy_state<T: SimdElement>(
    params: &mut [Param<T>],
    id: usize,
    exp_avg: *mut c_void,
    exp_avg_sq: *mut c_void,
) -> Result<(), Failure> {
    let p = params.get_mut(id).ok_or_else(|| {
        Failure::new(
            RECADAM_ERROR_INVALID_ARGUMENT,
            format!("parameter {id} is not registered"),
        )
    })?;
    let (len, m, v) = (p.len, p.exp_avg.addr(), p.exp_avg_sq.addr());
    for (from, to, what) in [(m, exp_avg, "exp_avg"), (v, exp_avg_sq, "exp_avg_sq")] {
        if to.is_null() {
            continue;
        }
        // The destination is written: it may not overlap the state it copies.
        raw::check_state(&[raw::RawState::<T> {
            exp_avg: to.cast(),
            exp_avg_sq: from as *mut T,
            pretrained: std::ptr::null(),
            len,
        }])
        .map_err(|e| {
            Failure::new(
                Failure::from(e).status,
                format!(
                    "`{what}`: the destination overlaps the optimizer's state or is not aligned"
                ),
            )
        })?;
        // SAFETY: `from` is the parameter's state (live, `len` elements); `to` is checked
        // non-null, aligned and disjoint from it, and the caller vouches for its size.
        unsafe { std::ptr::copy_nonoverlapping(from as *const T, to.cast::<T>(), len) };
    }
    Ok(())
}

/// Copies parameter `id`'s moments into `exp_avg` and `exp_avg_sq` (each `len` elements; either
/// may be null, not wanted): the way to read state the optimizer allocated.
///
/// # Safety
/// Non-null destinations are writable buffers of the parameter's `len` elements.
#[no_mangle]
pub unsafe extern "C" fn recadam_get_state(
    optimizer: *mut recadam_optimizer,
    id: usize,
    exp_avg: *mut c_void,
    exp_avg_sq: *mut c_void,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            typed!(engine, params, copy_state(params, id, exp_avg, exp_avg_sq))
        })
    })
}

fn path_of(path: *const c_char) -> Result<PathBuf, Failure> {
    non_null(path, "path")?;
    // SAFETY: non-null; the caller's contract is a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    std::str::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| Failure::new(RECADAM_ERROR_INVALID_ARGUMENT, "`path` is not UTF-8"))
}

fn checkpoint<T: SimdElement + bytemuck::Pod>(
    params: &mut [Param<T>],
    groups: &mut [RecAdamConfig],
    step: &mut u64,
    path: &std::path::Path,
    load: bool,
) -> Result<(), Failure> {
    let raw: Vec<RawParam<T>> = params.iter_mut().map(Param::raw).collect();
    // SAFETY: as in `step_typed`.
    let slices = unsafe { raw::slices(&raw) }?;
    let states = slices
        .into_iter()
        .zip(params.iter())
        .map(|(s, p)| {
            let (_, _, exp_avg, exp_avg_sq, pretrained) = s.into_parts();
            HeldState {
                exp_avg,
                exp_avg_sq,
                pretrained: pretrained.filter(|_| groups[p.group].has_penalty()),
                group: p.group,
                steps: *step,
            }
        })
        .collect();
    if !load {
        return Ok(save_held(path, groups, states)?);
    }
    let read = load_held(path, groups, states)?;
    *step = read.steps.iter().copied().max().unwrap_or(0);
    for (g, lr) in groups.iter_mut().zip(read.lrs) {
        g.lr = lr;
    }
    Ok(())
}

fn save_or_load(
    optimizer: *mut recadam_optimizer,
    path: *const c_char,
    load: bool,
) -> recadam_status {
    entry(|| {
        let path = path_of(path)?;
        with_engine(optimizer, |engine| {
            let (groups, step) = (&mut engine.groups, &mut engine.step);
            typed!(
                engine,
                params,
                checkpoint(params, groups, step, &path, load)
            )
        })
    })
}

/// Saves the optimizer's state to `path` in recadam-std's checkpoint format (safetensors:
/// moments, step count, groups' hyperparameters and learning rates, a checksum of each θ*;
/// written to a temporary file, synced, renamed). All groups must share one penalty mode.
///
/// # Safety
/// `path` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn recadam_save(
    optimizer: *mut recadam_optimizer,
    path: *const c_char,
) -> recadam_status {
    save_or_load(optimizer, path, false)
}

/// Loads a file [`recadam_save`] wrote into an optimizer with the same groups, parameters (in
/// the same order), hyperparameters (learning rates aside, which are read) and θ*: the moments,
/// step count and learning rates. A damaged or mismatched file is `RECADAM_ERROR_CHECKPOINT`
/// (the message says what differs) and changes nothing.
///
/// # Safety
/// `path` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn recadam_load(
    optimizer: *mut recadam_optimizer,
    path: *const c_char,
) -> recadam_status {
    save_or_load(optimizer, path, true)
}

/// Writes the name of the kernel the optimizer runs ("avx512", "avx2", "neon", "scalar"; a
/// static string) to `*name`, and its thread count to `*threads` (either may be null).
///
/// # Safety
/// `name` and `threads` are null or writable.
#[no_mangle]
pub unsafe extern "C" fn recadam_backend(
    optimizer: *mut recadam_optimizer,
    name: *mut *const c_char,
    threads: *mut usize,
) -> recadam_status {
    entry(|| {
        with_engine(optimizer, |engine| {
            let backend: &'static str = match engine.kernel.backend().name() {
                "avx512" => "avx512\0",
                "avx2" => "avx2\0",
                "neon" => "neon\0",
                _ => "scalar\0",
            };
            put_if(name, backend.as_ptr().cast::<c_char>());
            put_if(threads, engine.pool.threads());
            Ok(())
        })
    })
}

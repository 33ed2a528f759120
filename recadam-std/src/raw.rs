//! Parameters handed over as addresses, as bindings receive them (the Python package's tensor
//! `data_ptr()`s, a C caller's pointers): what can be checked of them, and the slices they
//! become. The caller vouches for what cannot be checked (each address starts a live buffer of
//! `len` elements that nothing else touches during the call); this module checks the rest, so
//! that a tensor given twice or a gradient that is a view of its parameter is an error, not two
//! `&mut` to one memory.

use recadam_core::{MixedSlices, Slices, Storage};

use crate::Error;

/// One parameter's buffers: values and state written, gradient and θ* read. `pretrained` may
/// be null (no θ*); the others may not, unless `len` is 0.
#[derive(Clone, Copy, Debug)]
pub struct RawParam<T> {
    /// The values (updated in place).
    pub value: *mut T,
    /// The gradient.
    pub grad: *const T,
    /// The first moment (updated in place).
    pub exp_avg: *mut T,
    /// The second moment (updated in place).
    pub exp_avg_sq: *mut T,
    /// θ*, or null.
    pub pretrained: *const T,
    /// Elements in each buffer.
    pub len: usize,
}

/// One parameter's optimizer state alone (for saving and loading): moments written, θ* read
/// (null: none).
#[derive(Clone, Copy, Debug)]
pub struct RawState<T> {
    /// The first moment.
    pub exp_avg: *mut T,
    /// The second moment.
    pub exp_avg_sq: *mut T,
    /// θ*, or null.
    pub pretrained: *const T,
    /// Elements in each buffer.
    pub len: usize,
}

/// One mixed-precision parameter's buffers (see `recadam_core::MixedSlices`): f32 values and
/// the state written, the gradient and θ* read, and an optional narrowed copy of the values
/// written. `pretrained` and `params_copy` may be null (none); the others may not, unless `len`
/// is 0.
#[derive(Clone, Copy, Debug)]
pub struct RawMixedParam<G, S, A, C = f32> {
    /// The f32 master values (updated in place).
    pub value: *mut f32,
    /// The gradient, stored as `G`.
    pub grad: *const G,
    /// The first moment, stored as `S` (updated in place).
    pub exp_avg: *mut S,
    /// The second moment, stored as `S` (updated in place).
    pub exp_avg_sq: *mut S,
    /// θ* stored as `A`, or null.
    pub pretrained: *const A,
    /// The copy of the updated values narrowed to `C`, or null.
    pub params_copy: *mut C,
    /// Elements in each buffer.
    pub len: usize,
}

/// One buffer of a call, as [`check_buffers`] sees it.
#[derive(Clone, Copy)]
struct Buffer {
    addr: usize,
    writes: bool,
    size: usize,
    align: usize,
    optional: bool,
}

impl Buffer {
    fn of<X>(ptr: *const X, writes: bool, optional: bool) -> Buffer {
        Buffer {
            addr: ptr as usize,
            writes,
            size: std::mem::size_of::<X>(),
            align: std::mem::align_of::<X>(),
            optional,
        }
    }
}

impl<T> RawParam<T> {
    fn buffers(&self) -> (usize, [Buffer; 5]) {
        (
            self.len,
            [
                Buffer::of(self.value, true, false),
                Buffer::of(self.grad, false, false),
                Buffer::of(self.exp_avg, true, false),
                Buffer::of(self.exp_avg_sq, true, false),
                Buffer::of(self.pretrained, false, true),
            ],
        )
    }
}

impl<T> RawState<T> {
    fn buffers(&self) -> (usize, [Buffer; 3]) {
        (
            self.len,
            [
                Buffer::of(self.exp_avg, true, false),
                Buffer::of(self.exp_avg_sq, true, false),
                Buffer::of(self.pretrained, false, true),
            ],
        )
    }
}

impl<G, S, A, C> RawMixedParam<G, S, A, C> {
    fn buffers(&self) -> (usize, [Buffer; 6]) {
        (
            self.len,
            [
                Buffer::of(self.value, true, false),
                Buffer::of(self.grad, false, false),
                Buffer::of(self.exp_avg, true, false),
                Buffer::of(self.exp_avg_sq, true, false),
                Buffer::of(self.pretrained, false, true),
                Buffer::of(self.params_copy, true, true),
            ],
        )
    }
}

/// Checks what can be checked of `params`: no null buffer (but θ*), each aligned for `T`, each
/// within `isize::MAX` bytes, and no written buffer overlapping any other buffer of the call
/// (reads may overlap reads).
pub fn check<T>(params: &[RawParam<T>]) -> Result<(), Error> {
    check_buffers(params.iter().map(RawParam::buffers))
}

/// [`check`] for state alone.
pub fn check_state<T>(states: &[RawState<T>]) -> Result<(), Error> {
    check_buffers(states.iter().map(RawState::buffers))
}

/// [`check`] for mixed-precision parameters: each buffer aligned and sized for its own type.
pub fn check_mixed<G, S, A, C>(params: &[RawMixedParam<G, S, A, C>]) -> Result<(), Error> {
    check_buffers(params.iter().map(RawMixedParam::buffers))
}

/// The mixed-precision slices of `params`, after [`check_mixed`].
///
/// # Safety
/// As for [`slices`], each buffer of its own type.
pub unsafe fn mixed_slices<'a, G: Storage, S: Storage, A: Storage, C: Storage>(
    params: &[RawMixedParam<G, S, A, C>],
) -> Result<Vec<MixedSlices<'a, G, S, A, C>>, Error> {
    check_mixed(params)?;
    params
        .iter()
        .map(|p| {
            // SAFETY: as in `slices`: `check_mixed` verified each address (the optional θ* and
            // copy aside when null, which are then not used), its alignment and size for its
            // type, and that no written buffer overlaps any other; the caller vouches for the
            // rest.
            unsafe {
                let slices = MixedSlices::new(
                    buffer_mut(p.value, p.len),
                    buffer(p.grad, p.len),
                    buffer_mut(p.exp_avg, p.len),
                    buffer_mut(p.exp_avg_sq, p.len),
                    (!p.pretrained.is_null()).then(|| buffer(p.pretrained, p.len)),
                )?;
                if p.params_copy.is_null() {
                    Ok(slices.without_params_copy())
                } else {
                    Ok(slices.with_params_copy(buffer_mut(p.params_copy, p.len))?)
                }
            }
        })
        .collect()
}

/// The slices of `params`, after [`check`].
///
/// # Safety
/// Each non-null address must start a live, initialised buffer of `len` elements of `T` that
/// nothing else reads or writes while the returned slices live (`'a`).
pub unsafe fn slices<'a, T>(params: &[RawParam<T>]) -> Result<Vec<Slices<'a, T>>, Error> {
    check(params)?;
    params
        .iter()
        .map(|p| {
            // SAFETY: `check` verified each address is non-null (θ* aside, which is then not
            // read), aligned and within `isize::MAX` bytes, and that no written buffer overlaps
            // any other; the caller vouches that each is live for `'a` and used by nothing else.
            let slices = unsafe {
                Slices::new(
                    buffer_mut(p.value, p.len),
                    buffer(p.grad, p.len),
                    buffer_mut(p.exp_avg, p.len),
                    buffer_mut(p.exp_avg_sq, p.len),
                    (!p.pretrained.is_null()).then(|| buffer(p.pretrained, p.len)),
                )
            };
            slices.map_err(Error::from)
        })
        .collect()
}

/// The slices of `states`: `(exp_avg, exp_avg_sq, θ*)`, after [`check_state`].
///
/// # Safety
/// As for [`slices`].
#[allow(clippy::type_complexity)]
pub unsafe fn state_slices<'a, T>(
    states: &[RawState<T>],
) -> Result<Vec<(&'a mut [T], &'a mut [T], Option<&'a [T]>)>, Error> {
    check_state(states)?;
    Ok(states
        .iter()
        .map(|s| {
            // SAFETY: as in `slices`: checked by `check_state`, vouched for by the caller.
            unsafe {
                (
                    buffer_mut(s.exp_avg, s.len),
                    buffer_mut(s.exp_avg_sq, s.len),
                    (!s.pretrained.is_null()).then(|| buffer(s.pretrained, s.len)),
                )
            }
        })
        .collect())
}

/// # Safety
/// `ptr` is null only when `len` is 0; otherwise as for [`slices`].
unsafe fn buffer_mut<'a, T>(ptr: *mut T, len: usize) -> &'a mut [T] {
    if len == 0 {
        return &mut [];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(ptr, len) }
}

/// # Safety
/// As for [`buffer_mut`].
unsafe fn buffer<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

fn check_buffers<const N: usize>(
    params: impl Iterator<Item = (usize, [Buffer; N])>,
) -> Result<(), Error> {
    let mut ranges: Vec<(usize, usize, bool, usize)> = Vec::new();
    for (k, (len, buffers)) in params.enumerate() {
        for buf in &buffers {
            let Some(bytes) = len
                .checked_mul(buf.size)
                .filter(|&b| b <= isize::MAX as usize)
            else {
                return Err(Error::RawBuffer {
                    param: k,
                    problem: "has too many elements",
                });
            };
            let Buffer { addr, writes, .. } = *buf;
            if len == 0 {
                continue;
            }
            if addr == 0 {
                if buf.optional {
                    continue; // θ* (or a copy) may be absent
                }
                return Err(Error::RawBuffer {
                    param: k,
                    problem: "has a null buffer",
                });
            }
            if addr % buf.align != 0 || addr.checked_add(bytes).is_none() {
                return Err(Error::RawBuffer {
                    param: k,
                    problem: "has a buffer not aligned for its element type",
                });
            }
            ranges.push((addr, addr + bytes, writes, k));
        }
    }
    ranges.sort_unstable();
    // In address order, a range overlaps an earlier one when it starts before the end of any
    // earlier range (if it is written) or of any earlier written range (if it is read).
    let (mut end_any, mut end_written) = ((0usize, 0usize), (0usize, 0usize));
    for &(start, end, writes, k) in &ranges {
        let clash = if writes {
            (start < end_any.0).then_some(end_any.1)
        } else {
            (start < end_written.0).then_some(end_written.1)
        };
        if let Some(other) = clash {
            return Err(Error::RawOverlap {
                first: other.min(k),
                second: other.max(k),
            });
        }
        if end > end_any.0 {
            end_any = (end, k);
        }
        if writes && end > end_written.0 {
            end_written = (end, k);
        }
    }
    Ok(())
}

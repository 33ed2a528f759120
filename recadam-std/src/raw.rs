//! Parameters handed over as addresses, as bindings receive them (the Python package's tensor
//! `data_ptr()`s, a C caller's pointers): what can be checked of them, and the slices they
//! become. The caller vouches for what cannot be checked (each address starts a live buffer of
//! `len` elements that nothing else touches during the call); this module checks the rest, so
//! that a tensor given twice or a gradient that is a view of its parameter is an error, not two
//! `&mut` to one memory.

use recadam_core::Slices;

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

impl<T> RawParam<T> {
    fn buffers(&self) -> (usize, [(usize, bool); 5]) {
        (
            self.len,
            [
                (self.value as usize, true),
                (self.grad as usize, false),
                (self.exp_avg as usize, true),
                (self.exp_avg_sq as usize, true),
                (self.pretrained as usize, false),
            ],
        )
    }
}

impl<T> RawState<T> {
    fn buffers(&self) -> (usize, [(usize, bool); 3]) {
        (
            self.len,
            [
                (self.exp_avg as usize, true),
                (self.exp_avg_sq as usize, true),
                (self.pretrained as usize, false),
            ],
        )
    }
}

/// Checks what can be checked of `params`: no null buffer (but θ*), each aligned for `T`, each
/// within `isize::MAX` bytes, and no written buffer overlapping any other buffer of the call
/// (reads may overlap reads).
pub fn check<T>(params: &[RawParam<T>]) -> Result<(), Error> {
    check_buffers::<T, 5>(params.iter().map(RawParam::buffers))
}

/// [`check`] for state alone.
pub fn check_state<T>(states: &[RawState<T>]) -> Result<(), Error> {
    check_buffers::<T, 3>(states.iter().map(RawState::buffers))
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

fn check_buffers<T, const N: usize>(
    params: impl Iterator<Item = (usize, [(usize, bool); N])>,
) -> Result<(), Error> {
    let size = std::mem::size_of::<T>();
    let mut ranges: Vec<(usize, usize, bool, usize)> = Vec::new();
    for (k, (len, buffers)) in params.enumerate() {
        let bytes = len
            .checked_mul(size)
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or(Error::RawBuffer {
                param: k,
                problem: "has too many elements",
            })?;
        if len == 0 {
            continue;
        }
        for (i, &(addr, writes)) in buffers.iter().enumerate() {
            if addr == 0 {
                if i + 1 == N {
                    continue; // θ* may be absent
                }
                return Err(Error::RawBuffer {
                    param: k,
                    problem: "has a null buffer",
                });
            }
            if addr % std::mem::align_of::<T>() != 0 || addr.checked_add(bytes).is_none() {
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

//! What the caller hands the optimizer for one parameter: at registration its θ* and, if it
//! wants, the memory for its state; at each step its values and gradient, under the handle
//! registration returned.

use std::borrow::Cow;
use std::ops::{Deref, DerefMut, Range};
use std::sync::Arc;

/// A registered parameter of one optimizer: an index, so that a step finds the state without
/// hashing a name. A handle from another optimizer is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId {
    pub(crate) optimizer: u32,
    pub(crate) index: u32,
}

impl ParamId {
    /// The position in registration order (0 for the first parameter registered).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// θ*, the pretrained values a parameter is pulled towards: borrowed for the optimizer's
/// lifetime, moved in, or shared (an `Arc` that a model loader also holds). An optimizer whose
/// θ* are all owned or shared is an `Optimizer<'static, T>`, which a struct holds without a
/// lifetime.
#[derive(Clone, Debug)]
pub enum Pretrained<'s, T> {
    /// The caller's values, borrowed.
    Borrowed(&'s [T]),
    /// Values the optimizer owns.
    Owned(Vec<T>),
    /// Values shared with the caller.
    Shared(Arc<[T]>),
    /// A range of a shared flat buffer: one model's θ* in one allocation, each parameter a
    /// part of it. A range outside the buffer reads as empty (and registration refuses it).
    SharedPart(Arc<[T]>, Range<usize>),
}

impl<T> Deref for Pretrained<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Pretrained::Borrowed(s) => s,
            Pretrained::Owned(v) => v,
            Pretrained::Shared(a) => a,
            Pretrained::SharedPart(a, range) => a.get(range.clone()).unwrap_or(&[]),
        }
    }
}

impl<'s, T> From<&'s [T]> for Pretrained<'s, T> {
    fn from(s: &'s [T]) -> Self {
        Pretrained::Borrowed(s)
    }
}

impl<'s, T> From<&'s Vec<T>> for Pretrained<'s, T> {
    fn from(v: &'s Vec<T>) -> Self {
        Pretrained::Borrowed(v)
    }
}

impl<T> From<Vec<T>> for Pretrained<'_, T> {
    fn from(v: Vec<T>) -> Self {
        Pretrained::Owned(v)
    }
}

impl<T> From<Arc<[T]>> for Pretrained<'_, T> {
    fn from(a: Arc<[T]>) -> Self {
        Pretrained::Shared(a)
    }
}

impl<'s, T: Clone> From<Cow<'s, [T]>> for Pretrained<'s, T> {
    fn from(c: Cow<'s, [T]>) -> Self {
        match c {
            Cow::Borrowed(s) => Pretrained::Borrowed(s),
            Cow::Owned(v) => Pretrained::Owned(v),
        }
    }
}

/// A caller-owned buffer or one the optimizer owns: optimizer state can live in memory the
/// caller allocated (pinned host memory on a GPU host, a memory-mapped file).
#[derive(Debug)]
pub enum Buffer<'s, T> {
    /// Allocated by the optimizer.
    Owned(Vec<T>),
    /// Borrowed from the caller for the optimizer's lifetime.
    Borrowed(&'s mut [T]),
}

impl<T> Deref for Buffer<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Buffer::Owned(v) => v,
            Buffer::Borrowed(s) => s,
        }
    }
}

impl<T> DerefMut for Buffer<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Buffer::Owned(v) => v,
            Buffer::Borrowed(s) => s,
        }
    }
}

/// A parameter as the caller hands it to [`Optimizer::step`](crate::Optimizer::step): its
/// handle, its values (updated in place) and its gradient (read only; clipping is applied inside
/// the update).
#[derive(Debug)]
pub struct ParamMut<'a, T> {
    /// The handle [`Optimizer::register`](crate::Optimizer::register) returned.
    pub id: ParamId,
    /// The values, updated in place.
    pub value: &'a mut [T],
    /// The gradient of the loss with respect to `value`.
    pub grad: &'a [T],
}

impl<'a, T> ParamMut<'a, T> {
    /// The parameter `id` with its values and gradient.
    pub fn new(id: ParamId, value: &'a mut [T], grad: &'a [T]) -> Self {
        ParamMut { id, value, grad }
    }
}

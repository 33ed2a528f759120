//! The threads a step runs on, and how its work is cut for them.
//!
//! A step hands a [`Pool`] a number of tasks and one function to run for each; the pool returns
//! when all have run. The caller may give its own pool (a rayon pool shared with its model, a
//! framework's workers), or the optimizer makes one: with the `rayon` feature a persistent rayon
//! pool built once, so no thread is started per step; without it, scoped threads started per
//! step. One thread uses no pool at all.
//!
//! Work is cut at multiples of [`ALIGN`] elements, a whole number of cache lines and SIMD
//! vectors, so threads never share a cache line they write. Every element goes through the same
//! code whatever the cut, so results are bit-identical for any thread count.

use std::fmt::Debug;
use std::sync::Mutex;

use recadam_core::{Element, MixedSlices, Slices, StepScalars, Storage};
use recadam_simd::{GradStats, Kernel, SimdElement};

/// Cut points are multiples of this many elements (256 bytes of f32: 4 cache lines, 4 AVX-512
/// vectors).
pub const ALIGN: usize = 64;

/// Threads that run a step's tasks.
///
/// `run(tasks, work)` calls `work(i)` once for every `i` in `0..tasks`, on any of its threads,
/// and returns when every call has returned (the calls borrow the caller's buffers). A panic in
/// `work` must reach the caller.
pub trait Pool: Debug + Send + Sync {
    /// How many tasks the pool runs at once: a step is cut into this many parts.
    fn threads(&self) -> usize;
    /// Runs `work(0)`, ..., `work(tasks - 1)` and returns when all have returned.
    fn run(&self, tasks: usize, work: &(dyn Fn(usize) + Sync));
}

/// The calling thread alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallingThread;

impl Pool for CallingThread {
    fn threads(&self) -> usize {
        1
    }
    fn run(&self, tasks: usize, work: &(dyn Fn(usize) + Sync)) {
        (0..tasks).for_each(work);
    }
}

/// `threads` threads started for each call (`std::thread::scope`), the calling thread being one
/// of them: what the optimizer uses for more than one thread when built without the `rayon`
/// feature. A step over a model's buffers is long next to starting a thread (tens of
/// microseconds), but a persistent pool is cheaper still.
#[derive(Clone, Copy, Debug)]
pub struct ScopedThreads {
    /// Threads per call (at least 1).
    pub threads: usize,
}

impl Pool for ScopedThreads {
    fn threads(&self) -> usize {
        self.threads.max(1)
    }
    fn run(&self, tasks: usize, work: &(dyn Fn(usize) + Sync)) {
        let threads = self.threads().min(tasks);
        if threads <= 1 {
            return (0..tasks).for_each(work);
        }
        std::thread::scope(|scope| {
            for first in 1..threads {
                scope.spawn(move || (first..tasks).step_by(threads).for_each(work));
            }
            (0..tasks).step_by(threads).for_each(work);
        });
    }
}

/// A rayon pool: the step's tasks run on its threads (from outside the pool, the calling thread
/// waits for them).
#[cfg(feature = "rayon")]
impl Pool for rayon::ThreadPool {
    fn threads(&self) -> usize {
        self.current_num_threads()
    }
    fn run(&self, tasks: usize, work: &(dyn Fn(usize) + Sync)) {
        self.scope(|scope| {
            for i in 1..tasks {
                scope.spawn(move |_| work(i));
            }
            if tasks > 0 {
                work(0);
            }
        });
    }
}

/// Whichever rayon pool the step is called from (`pool.install(|| ...)`), or rayon's global
/// pool outside any: a program that runs everything inside one pool sized by its thread
/// option gets the optimizer on that same pool.
#[cfg(feature = "rayon")]
#[derive(Clone, Copy, Debug, Default)]
pub struct CurrentRayonPool;

#[cfg(feature = "rayon")]
impl Pool for CurrentRayonPool {
    fn threads(&self) -> usize {
        rayon::current_num_threads()
    }
    fn run(&self, tasks: usize, work: &(dyn Fn(usize) + Sync)) {
        rayon::scope(|scope| {
            for i in 1..tasks {
                scope.spawn(move |_| work(i));
            }
            if tasks > 0 {
                work(0);
            }
        });
    }
}

/// Gradients are summed in blocks of this many elements (per parameter, from its start), so
/// that the global norm has the same bits for any number of threads.
pub(crate) const STATS_BLOCK: usize = 1 << 16;

/// The statistics [`crate::Optimizer::step`] computes for one gradient (its sum of squares over
/// fixed blocks in order, and whether every element is finite), to hand to
/// [`crate::Optimizer::step_with_stats`] from a pass that writes the gradient anyway.
///
/// ```
/// use recadam_std::{tensor_grad_stats, Kernel};
/// let s = tensor_grad_stats(Kernel::best(), &[3.0f32, 4.0]);
/// assert_eq!((s.sum_squares, s.finite), (25.0, true));
/// ```
pub fn tensor_grad_stats<T: SimdElement>(kernel: Kernel, grad: &[T]) -> GradStats {
    grad.chunks(STATS_BLOCK)
        .fold(GradStats::EMPTY, |s, b| s.then(kernel.grad_stats(b)))
}

/// Gradient statistics per gradient, each summed over fixed blocks in order, on `pool`, for the
/// gradients of `W` slices as they are stored (16-bit ones give the bits of their f32 values).
/// (Reading each thread's blocks last to first, so that the update would start on gradients
/// still in cache, was measured slower here: it defeats the hardware prefetcher.)
pub(crate) fn grad_stats<W: Update>(
    pool: &dyn Pool,
    kernel: Kernel,
    grads: &[&[W::Grad]],
) -> Vec<GradStats> {
    blocked_grad_stats(pool, grads, |b| W::grad_stats(kernel, b))
}

/// Statistics per gradient, each the chain of `block_stats` over its blocks of [`STATS_BLOCK`]
/// in order, the blocks shared out among `pool`'s threads.
fn blocked_grad_stats<T: Sync>(
    pool: &dyn Pool,
    grads: &[&[T]],
    block_stats: impl Fn(&[T]) -> GradStats + Sync,
) -> Vec<GradStats> {
    let threads = pool.threads();
    if threads <= 1 {
        return grads
            .iter()
            .map(|g| {
                g.chunks(STATS_BLOCK)
                    .fold(GradStats::EMPTY, |s, b| s.then(block_stats(b)))
            })
            .collect();
    }
    let blocks: Vec<(usize, &[T])> = grads
        .iter()
        .enumerate()
        .flat_map(|(k, g)| g.chunks(STATS_BLOCK).map(move |b| (k, b)))
        .collect();
    let per = blocks.len().div_ceil(threads).max(1);
    let partial: Vec<Vec<(usize, GradStats)>> = run_parts(
        pool,
        blocks.chunks(per).collect(),
        |chunk: &[(usize, &[T])]| chunk.iter().map(|&(k, b)| (k, block_stats(b))).collect(),
    );
    let mut stats = vec![GradStats::EMPTY; grads.len()];
    for (k, s) in partial.into_iter().flatten() {
        stats[k] = stats[k].then(s);
    }
    stats
}

/// Runs the update of every `(scalars index, slices)` item on `pool`, cut into as many parts
/// of about equal length as it has threads.
pub(crate) fn update<W: Update>(
    pool: &dyn Pool,
    kernel: Kernel,
    scalars: &[StepScalars<W::Param>],
    work: Vec<(usize, W)>,
) {
    let threads = pool.threads();
    if threads <= 1 {
        for (at, slices) in work {
            slices.update(kernel, &scalars[at]);
        }
        return;
    }
    let parts = split_even(work, threads);
    run_parts(pool, parts, |part| {
        for (at, slices) in part {
            slices.update(kernel, &scalars[at]);
        }
    });
}

/// Runs `work` on every part on `pool` and returns the results in part order.
pub(crate) fn run_parts<P: Send, R: Send>(
    pool: &dyn Pool,
    parts: Vec<P>,
    work: impl Fn(P) -> R + Sync,
) -> Vec<R> {
    if parts.len() <= 1 {
        return parts.into_iter().map(work).collect();
    }
    // Each task takes its part out of its own slot and leaves its result in another: no slot
    // is touched by two tasks, so the locks are never contended.
    let slots: Vec<Mutex<(Option<P>, Option<R>)>> = parts
        .into_iter()
        .map(|p| Mutex::new((Some(p), None)))
        .collect();
    pool.run(slots.len(), &|i| {
        let part = lock(&slots[i]).0.take();
        if let Some(part) = part {
            let result = work(part);
            lock(&slots[i]).1 = Some(result);
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            let (_, result) = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            result.expect("the pool ran every task")
        })
        .collect()
}

fn lock<X>(m: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The slices one kernel call updates in place: [`Slices`] (one element type throughout) or
/// [`MixedSlices`] (f32 parameters, the other arrays as stored). What the pool and the held
/// step need of either, so that one code path serves both.
pub(crate) trait Update: Sized + Send {
    /// The parameters' element: the step scalars are computed in it.
    type Param: Element;
    /// The gradient's element as stored.
    type Grad: Sync;
    fn len(&self) -> usize;
    fn split_at(self, mid: usize) -> Option<(Self, Self)>;
    fn grads(&self) -> &[Self::Grad];
    fn has_pretrained(&self) -> bool;
    /// The statistics of one block of gradients, as the guard and clipping read them.
    fn grad_stats(kernel: Kernel, block: &[Self::Grad]) -> GradStats;
    fn update(self, kernel: Kernel, scalars: &StepScalars<Self::Param>);
}

impl<T: SimdElement> Update for Slices<'_, T> {
    type Param = T;
    type Grad = T;
    fn len(&self) -> usize {
        Slices::len(self)
    }
    fn split_at(self, mid: usize) -> Option<(Self, Self)> {
        Slices::split_at(self, mid)
    }
    fn grads(&self) -> &[T] {
        Slices::grads(self)
    }
    fn has_pretrained(&self) -> bool {
        Slices::has_pretrained(self)
    }
    fn grad_stats(kernel: Kernel, block: &[T]) -> GradStats {
        kernel.grad_stats(block)
    }
    fn update(self, kernel: Kernel, scalars: &StepScalars<T>) {
        kernel.update(scalars, self)
    }
}

impl<G: Storage, S: Storage, A: Storage, C: Storage> Update for MixedSlices<'_, G, S, A, C> {
    type Param = f32;
    type Grad = G;
    fn len(&self) -> usize {
        MixedSlices::len(self)
    }
    fn split_at(self, mid: usize) -> Option<(Self, Self)> {
        MixedSlices::split_at(self, mid)
    }
    fn grads(&self) -> &[G] {
        MixedSlices::grads(self)
    }
    fn has_pretrained(&self) -> bool {
        MixedSlices::has_pretrained(self)
    }
    fn grad_stats(kernel: Kernel, block: &[G]) -> GradStats {
        kernel.grad_stats_stored(block)
    }
    fn update(self, kernel: Kernel, scalars: &StepScalars<f32>) {
        kernel.update_mixed(scalars, self)
    }
}

/// Cuts `items` (each a scalars index and its slices) into `parts` runs of about equal total
/// length, at multiples of [`ALIGN`] within an item, keeping order.
pub(crate) fn split_even<W: Update>(items: Vec<(usize, W)>, parts: usize) -> Vec<Vec<(usize, W)>> {
    let total: usize = items.iter().map(|(_, slices)| slices.len()).sum();
    let parts = parts.max(1);
    let quota = total.div_ceil(parts).div_ceil(ALIGN) * ALIGN;
    let mut out: Vec<Vec<(usize, W)>> = vec![Vec::new()];
    let mut room = quota;
    for (at, mut slices) in items {
        while slices.len() > 0 {
            if room == 0 {
                out.push(Vec::new());
                room = quota;
            }
            if slices.len() <= room {
                room -= slices.len();
                out.last_mut().expect("never empty").push((at, slices));
                break;
            }
            // A cut strictly inside the item, where every slice has `room` elements.
            let (head, tail) = slices
                .split_at(room)
                .expect("split points are within the slices");
            out.last_mut().expect("never empty").push((at, head));
            slices = tail;
            room = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn each_pool() -> Vec<Box<dyn Pool>> {
        let mut pools: Vec<Box<dyn Pool>> = vec![
            Box::new(CallingThread),
            Box::new(ScopedThreads { threads: 3 }),
        ];
        #[cfg(feature = "rayon")]
        pools.push(Box::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap(),
        ));
        #[cfg(feature = "rayon")]
        pools.push(Box::new(CurrentRayonPool));
        pools
    }

    #[test]
    fn every_pool_runs_every_part_once_and_keeps_the_order() {
        for pool in each_pool() {
            for n in [0, 1, 2, 7] {
                let parts: Vec<usize> = (0..n).collect();
                let out = run_parts(pool.as_ref(), parts, |p| p * 10);
                assert_eq!(out, (0..n).map(|p| p * 10).collect::<Vec<_>>(), "{pool:?}");
            }
        }
    }

    #[test]
    fn a_panic_in_a_task_reaches_the_caller() {
        for pool in each_pool() {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_parts(pool.as_ref(), vec![0, 1, 2], |p| {
                    assert!(p != 2, "task 2 fails");
                })
            }));
            assert!(caught.is_err(), "{pool:?}");
        }
    }
}

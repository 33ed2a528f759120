//! Splitting one step's work over threads.
//!
//! Scoped threads (`std::thread::scope`) rather than a pool: a step over a model's buffers is
//! long next to the cost of starting a thread (tens of microseconds), no work crosses steps, and
//! the caller's borrowed buffers can be split without `'static` bounds. Work is cut at multiples
//! of [`ALIGN`] elements, a whole number of cache lines and SIMD vectors, so threads never
//! share a cache line they write. Every element goes through the same code whatever the cut, so
//! results are bit-identical for any thread count.

use recadam_core::Slices;

/// Cut points are multiples of this many elements (256 bytes of f32: 4 cache lines, 4 AVX-512
/// vectors).
pub const ALIGN: usize = 64;

/// Work that can be measured and cut.
pub(crate) trait Splittable: Sized {
    fn len(&self) -> usize;
    /// `[0, mid)` and `[mid, len)`.
    fn split_at(self, mid: usize) -> (Self, Self);
}

impl<'a, T> Splittable for (usize, Slices<'a, T>) {
    fn len(&self) -> usize {
        self.1.len()
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        let (group, slices) = self;
        match slices.split_at(mid) {
            Some((a, b)) => ((group, a), (group, b)),
            None => unreachable!("split points are within the slices"),
        }
    }
}

/// Cuts `items` into `parts` runs of about equal total length, at multiples of [`ALIGN`]
/// within an item, keeping order.
pub(crate) fn split_even<W: Splittable>(items: Vec<W>, parts: usize) -> Vec<Vec<W>> {
    let total: usize = items.iter().map(Splittable::len).sum();
    let parts = parts.max(1);
    let quota = total.div_ceil(parts).div_ceil(ALIGN) * ALIGN;
    let mut out: Vec<Vec<W>> = vec![Vec::new()];
    let mut room = quota;
    for mut item in items {
        while item.len() > 0 {
            if room == 0 {
                out.push(Vec::new());
                room = quota;
            }
            if item.len() <= room {
                room -= item.len();
                out.last_mut().expect("never empty").push(item);
                break;
            }
            let (head, tail) = item.split_at(room);
            out.last_mut().expect("never empty").push(head);
            item = tail;
            room = 0;
        }
    }
    out
}

/// Runs `work` on every part, part 0 on this thread and the others on scoped threads, and
/// returns the results in part order.
pub(crate) fn run<P: Send, R: Send>(parts: Vec<P>, work: impl Fn(P) -> R + Sync) -> Vec<R> {
    let mut parts = parts.into_iter();
    let Some(first) = parts.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts.map(|p| scope.spawn(|| work(p))).collect();
        let mut results = vec![work(first)];
        for h in handles {
            match h.join() {
                Ok(r) => results.push(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        results
    })
}

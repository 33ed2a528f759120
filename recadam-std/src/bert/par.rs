//! Cutting the model's elementwise and per-row work over the threads of a step.
//!
//! Matrix products split their own output rows (see [`super::matmul`]); everything else a layer
//! does (LayerNorm, GELU, dropout, residual adds, bias gradients) goes through here, so that two
//! threads speed up the whole step and not only its products. Every element goes through the
//! same code in the same order whatever the cut, so results are bit-identical for any thread
//! count: sums over rows (a bias or LayerNorm gradient) are cut by column, never by row.

use rayon::prelude::*;

/// Parts of at least this many elements: below it, a second thread costs more than it saves.
const MIN_PART: usize = 1 << 14;

/// How many of `unit`-sized units (rows of a width, or single elements) one part holds when
/// `units` of them are cut for `threads` threads: all of them on one thread or for small work.
pub(crate) fn part(units: usize, unit: usize, threads: usize) -> usize {
    if threads <= 1 || units * unit < 2 * MIN_PART {
        return units.max(1);
    }
    units
        .div_ceil(threads)
        .max(MIN_PART.div_ceil(unit.max(1)))
        .max(1)
}

/// Runs `work` on every task, on the rayon pool when `threads > 1` (the pool's threads take
/// the tasks from the iterator one by one: nothing is collected, nothing allocated), else on the
/// calling thread.
pub(crate) fn run<T: Send>(
    threads: usize,
    tasks: impl Iterator<Item = T> + Send,
    work: impl Fn(T) + Sync + Send,
) {
    if threads > 1 {
        tasks.par_bridge().for_each(work);
    } else {
        tasks.for_each(work);
    }
}

/// `out[i] = f(x[i])` for equal-length slices.
pub(crate) fn map(
    threads: usize,
    out: &mut [f32],
    x: &[f32],
    f: impl Fn(f32) -> f32 + Sync + Send,
) {
    assert_eq!(out.len(), x.len(), "map: lengths differ");
    let n = part(x.len(), 1, threads);
    run(threads, out.chunks_mut(n).zip(x.chunks(n)), |(o, x)| {
        o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x))
    });
}

/// `out[i] = f(out[i], x[i])` for equal-length slices.
pub(crate) fn zip_with(
    threads: usize,
    out: &mut [f32],
    x: &[f32],
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) {
    assert_eq!(out.len(), x.len(), "zip_with: lengths differ");
    let n = part(x.len(), 1, threads);
    run(threads, out.chunks_mut(n).zip(x.chunks(n)), |(o, x)| {
        o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(*o, x))
    });
}

/// `sums[j] += Σ_r rows[r][j]` (rows of width `sums.len()`), summed in row order for every
/// column: the same bits on any number of threads.
pub(crate) fn add_column_sums(threads: usize, sums: &mut [f32], rows: &[f32]) {
    let w = sums.len();
    if w == 0 {
        return;
    }
    let r = rows.len() / w;
    let n = part(w, r, threads);
    run(threads, sums.chunks_mut(n).enumerate(), |(c, s)| {
        let j0 = c * n;
        for row in rows.chunks_exact(w) {
            s.iter_mut().zip(&row[j0..]).for_each(|(s, g)| *s += g);
        }
    });
}

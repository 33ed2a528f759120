//! Matrix products through the `matrixmultiply` crate (runtime-dispatched AVX2/FMA kernels;
//! measured faster here than the `gemm` crate: see Cargo.toml).
//!
//! Every product in the model is one call of [`mm`] on strided views: a matrix is a slice with
//! a row stride and a column stride, so transposes and attention heads (rows `hidden` apart)
//! need no copies. Threads split the output's rows.

use rayon::prelude::*;

/// A read-only strided matrix view: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major with row stride `ld`.
    pub fn rows(data: &'a [f32], ld: usize) -> View<'a> {
        View {
            data,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn transposed(data: &'a [f32], ld: usize) -> View<'a> {
        View {
            data,
            rs: 1,
            cs: ld,
        }
    }
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// Products smaller than this (m·n·k) run on one thread: splitting costs more than it saves.
const PARALLEL_WORK: usize = 1 << 20;

/// `out[m×n] (+)= a[m×k] · b[k×n]`, `out` row-major with row stride `ldo`; accumulates when
/// `accumulate`, overwrites otherwise.
pub(crate) fn mm(
    out: &mut [f32],
    ldo: usize,
    a: View<'_>,
    b: View<'_>,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let total = (m - 1) * ldo + n;
    assert!(out.len() >= total, "output too short");
    assert!(a.fits(m, k) && b.fits(k, n), "operand too short");
    let beta = if accumulate { 1.0 } else { 0.0 };
    // Rows [r0, r0 + rows) of the product into `part`, which starts at row r0.
    let rows_into = |r0: usize, rows: usize, part: &mut [f32]| {
        // SAFETY: the asserts above bound every element read or written: a (i, l) at
        // (r0 + i)·a.rs + l·a.cs within a.data, b (l, j) at l·b.rs + j·b.cs within b.data,
        // c (i, j) at i·ldo + j within `part` (which holds rows r0.. of `out`).
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                n,
                1.0,
                a.data.as_ptr().add(r0 * a.rs),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr(),
                b.rs as isize,
                b.cs as isize,
                beta,
                part.as_mut_ptr(),
                ldo as isize,
                1,
            )
        }
    };
    if threads <= 1 || m < 2 || m * n * k < PARALLEL_WORK {
        rows_into(0, m, &mut out[..total]);
        return;
    }
    let rows_per = m.div_ceil(threads);
    out[..total]
        .par_chunks_mut(rows_per * ldo)
        .enumerate()
        .for_each(|(i, part)| {
            let r0 = i * rows_per;
            rows_into(r0, rows_per.min(m - r0), part)
        });
}

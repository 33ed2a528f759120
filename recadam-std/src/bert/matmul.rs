//! Matrix products through the `gemm` crate (runtime-dispatched AVX-512/AVX2/NEON kernels).
//!
//! Every product in the model is one call of [`mm`] on strided views: a matrix is a slice with
//! a row stride and a column stride, so transposes and attention heads (rows `hidden` apart)
//! need no copies.

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
    if k == 0 {
        if !accumulate {
            out.chunks_mut(ldo).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    assert!(out.len() >= (m - 1) * ldo + n, "output too short");
    assert!(a.fits(m, k) && b.fits(k, n), "operand too short");
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts keep every element gemm reads or writes inside the slices: dst (i, j)
    // at i·ldo + j, lhs (i, l) at i·a.rs + l·a.cs, rhs (l, j) at l·b.rs + j·b.cs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ldo as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

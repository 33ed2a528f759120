//! Matrix products through the `gemm` crate (runtime-dispatched AVX-512/AVX2/NEON kernels).

/// `out[m×n] (+)= a[m×k] · bᵀ` for row-major `a` and `b[n×k]` (a Linear weight `[out, in]`),
/// with row strides `lda`, `ldb`, `ldo`. Accumulates into `out` when `accumulate`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_nt(
    out: &mut [f32],
    ldo: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(out.len() >= (m - 1) * ldo + n, "out too short");
    assert!(k == 0 || a.len() >= (m - 1) * lda + k, "a too short");
    assert!(k == 0 || b.len() >= (n - 1) * ldb + k, "b too short");
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every element gemm touches inside the slices: dst
    // (i, j) at i·ldo + j, lhs (i, l) at i·lda + l, rhs (l, j) = b[j·ldb + l].
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ldo as isize,
            accumulate,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            ldb as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// `out[m×n] = a[m×k] · b[k×n]` for row-major `a`, `b` with row strides `lda`, `ldb`, `ldo`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_nn(
    out: &mut [f32],
    ldo: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    (m, n, k): (usize, usize, usize),
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(out.len() >= (m - 1) * ldo + n, "out too short");
    assert!(k == 0 || a.len() >= (m - 1) * lda + k, "a too short");
    assert!(k == 0 || b.len() >= (k - 1) * ldb + n, "b too short");
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: as for matmul_nt, with rhs (l, j) = b[l·ldb + j].
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ldo as isize,
            false,
            a.as_ptr(),
            1,
            lda as isize,
            b.as_ptr(),
            1,
            ldb as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

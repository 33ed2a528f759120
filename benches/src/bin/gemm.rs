//! The trainer's matrix products on the model's real shapes (all-MiniLM-L6-v2: hidden 384,
//! intermediate 1536), GFLOP/s on one thread: for each Linear weight W `[n × k]` over `rows`
//! tokens, the forward `x·Wᵀ`, the input gradient `dy·W` and the weight gradient `dyᵀ·x`, with
//! the strides the trainer passes (transposes as strides, no copies).
//!
//!     cargo run --release -p benches --bin gemm [-- --json] [--rows 2048,4096]
//!     cargo run --release -p benches --bin gemm --features gemm-crate   # also the `gemm` crate
//!
//! `benches/pytorch/gemm.py` measures PyTorch's `matmul` on the same products.

use std::time::Instant;

/// One product `out[m×n] = a[m×k] · b[k×n]`, a and b given by (row stride, column stride).
struct Product {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    a_strides: (usize, usize),
    b_strides: (usize, usize),
}

/// The three products of a Linear layer `[n_out × k_in]` over `rows` tokens.
fn products(rows: usize, n_out: usize, k_in: usize) -> [Product; 3] {
    [
        // y[rows×n] = x[rows×k] · Wᵀ (W row-major [n×k], read transposed)
        Product {
            name: "forward x·Wᵀ",
            m: rows,
            n: n_out,
            k: k_in,
            a_strides: (k_in, 1),
            b_strides: (1, k_in),
        },
        // dx[rows×k] = dy[rows×n] · W[n×k]
        Product {
            name: "input grad dy·W",
            m: rows,
            n: k_in,
            k: n_out,
            a_strides: (n_out, 1),
            b_strides: (k_in, 1),
        },
        // dW[n×k] = dyᵀ[n×rows] · x[rows×k]
        Product {
            name: "weight grad dyᵀ·x",
            m: n_out,
            n: k_in,
            k: rows,
            a_strides: (1, n_out),
            b_strides: (k_in, 1),
        },
    ]
}

fn filled(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

/// Median seconds per call of `f`, over 5 batches of calls of about 0.2 s each.
fn time(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().as_secs_f64().max(1e-6);
    let calls = ((0.2 / once).ceil() as usize).max(1);
    let mut samples: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed().as_secs_f64() / calls as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[2]
}

fn matrixmultiply(p: &Product, a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: a, b and c hold m·k, k·n and m·n elements, and the strides address exactly those.
    unsafe {
        matrixmultiply::sgemm(
            p.m,
            p.k,
            p.n,
            1.0,
            a.as_ptr(),
            p.a_strides.0 as isize,
            p.a_strides.1 as isize,
            b.as_ptr(),
            p.b_strides.0 as isize,
            p.b_strides.1 as isize,
            0.0,
            c.as_mut_ptr(),
            p.n as isize,
            1,
        )
    }
}

#[cfg(feature = "gemm-crate")]
fn gemm_crate(p: &Product, a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: as above; gemm takes column strides first and reads no `dst` when `alpha` is None.
    unsafe {
        gemm::gemm(
            p.m,
            p.n,
            p.k,
            c.as_mut_ptr(),
            1,
            p.n as isize,
            false,
            a.as_ptr(),
            p.a_strides.1 as isize,
            p.a_strides.0 as isize,
            b.as_ptr(),
            p.b_strides.1 as isize,
            p.b_strides.0 as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args.iter().any(|a| a == "--json");
    let rows: Vec<usize> = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .map(|s| {
            s.split(',')
                .map(|r| r.parse().expect("--rows N,M"))
                .collect()
        })
        .unwrap_or_else(|| vec![2048, 4096]);
    for &r in &rows {
        for (n_out, k_in) in [(384, 384), (1536, 384), (384, 1536)] {
            for p in products(r, n_out, k_in) {
                let a = filled(p.m * p.k, 1);
                let b = filled(p.k * p.n, 2);
                let mut c = vec![0.0f32; p.m * p.n];
                let flop = 2.0 * (p.m * p.n * p.k) as f64;
                #[cfg_attr(not(feature = "gemm-crate"), allow(unused_mut))]
                let mut sides = vec![(
                    "matrixmultiply",
                    flop / time(|| matrixmultiply(&p, &a, &b, &mut c)) / 1e9,
                )];
                #[cfg(feature = "gemm-crate")]
                {
                    let mut c2 = vec![0.0f32; p.m * p.n];
                    let g = flop / time(|| gemm_crate(&p, &a, &b, &mut c2)) / 1e9;
                    matrixmultiply(&p, &a, &b, &mut c);
                    let worst = c
                        .iter()
                        .zip(&c2)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0.0f32, f32::max);
                    assert!(worst < 1e-2, "gemm and matrixmultiply differ by {worst}");
                    sides.push(("gemm", g));
                }
                for (side, gflops) in sides {
                    if json_out {
                        println!(
                            "{}",
                            serde_json::json!({"side": side, "rows": r, "weight": [n_out, k_in],
                                "product": p.name, "m": p.m, "n": p.n, "k": p.k,
                                "gflops_1_thread": gflops})
                        );
                    } else {
                        println!(
                            "W {n_out:>4}×{k_in:<4} rows {r}: {:<18} ({:>4}×{:>4}×{:>4}) {side:<15} {gflops:6.1} GFLOP/s",
                            p.name, p.m, p.n, p.k
                        );
                    }
                }
            }
        }
    }
}

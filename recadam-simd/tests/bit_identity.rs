//! Every backend this CPU has gives exactly the bits of the scalar reference, for random
//! hyperparameters (tiny Adam-step scalars included), random values (subnormals, zeros, huge
//! values, NaN, infinities), every length 0..=300 and larger ones, and unaligned sub-slices.

use proptest::prelude::*;
use recadam_core::{update, Annealing, PenaltyMode, RecAdamConfig, Slices, StepScalars};
use recadam_simd::{Backend, GradStats, Kernel, SimdElement, ACCUMULATORS};
use recadam_testkit::same_bits;

fn kernels() -> Vec<Kernel> {
    let kernels: Vec<Kernel> = Backend::available()
        .map(|b| Kernel::new(b).unwrap())
        .collect();
    // Say which ones ran, so a CI log shows that the vector paths were exercised.
    eprintln!(
        "backends under test: {:?}",
        kernels.iter().map(|k| k.backend()).collect::<Vec<_>>()
    );
    kernels
}

/// Valid configurations, including schedules whose Adam-step scalar is subnormal or zero.
fn config() -> impl Strategy<Value = (RecAdamConfig, u64, f64, f64)> {
    (
        (
            prop_oneof![1e-6f64..1e-2, Just(5e-5)],
            0.0f64..0.99,
            0.9f64..0.9999,
            prop_oneof![1e-9f64..1e-3, Just(1e-8), Just(1e-30)],
        ),
        (
            prop_oneof![Just(0.0), 0.0f64..0.1],
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop_oneof![
                (0.0f64..2.0, -50.0f64..500.0).prop_map(|(k, t0)| Annealing::Sigmoid { k, t0 }),
                // Sharp and late: λ from 1e-300 to 1e-20, so f(−s·λ) is subnormal or zero.
                (0.3f64..3.0, 200.0f64..700.0).prop_map(|(k, t0)| Annealing::Sigmoid { k, t0 }),
                (0.5f64..300.0).prop_map(|t0| Annealing::Linear { t0 }),
                Just(Annealing::Constant),
            ],
            prop_oneof![Just(0.0), Just(1.0), 0.0f64..2.0],
            prop_oneof![Just(0.0), 0.0f64..10_000.0],
        ),
        (
            1u64..400,
            prop_oneof![Just(1.0), Just(0.0), 0.0f64..1.0, Just(1e-35)],
        ),
        prop_oneof![3 => Just(1.0), 1 => 0.0f64..1.0, 1 => Just(0.0)],
    )
        .prop_map(
            |(
                (lr, beta1, beta2, eps),
                (weight_decay, correct_bias, coupled),
                (annealing, w, cof),
                (t, lr_frac),
                grad_scale,
            )| {
                let mut c = RecAdamConfig {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    correct_bias,
                    annealing,
                    anneal_w: w,
                    pretrain_cof: cof,
                    penalty_mode: if coupled {
                        PenaltyMode::Coupled
                    } else {
                        PenaltyMode::Decoupled
                    },
                };
                if c.penalty_factor(c.lr, 1) >= 1.9 {
                    c.lr = 1.8 / c.penalty_factor(1.0, 1);
                }
                let lr_t = c.lr * lr_frac;
                (c, t, lr_t, grad_scale)
            },
        )
}

/// Values of every kind: ordinary, tiny, subnormal, zero of both signs, huge, infinite, NaN.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => -1.0f64..1.0,
        2 => -1e-3f64..1e-3,
        1 => -1e-38f64..1e-38,
        1 => -1e-300f64..1e-300,
        1 => prop_oneof![Just(0.0), Just(-0.0)],
        1 => prop_oneof![Just(1e30), Just(-3e38), Just(1e300)],
        1 => prop_oneof![Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(f64::NAN)],
        1 => any::<u64>().prop_map(f64::from_bits),
    ]
}

/// Runs one step on the reference and on every kernel, over the sub-slices starting at
/// `offset` (so that vector loads are unaligned), and compares every output array.
fn check<T: SimdElement>(
    kernels: &[Kernel],
    (config, t, lr, grad_scale): &(RecAdamConfig, u64, f64, f64),
    data: &[f64],
    n: usize,
    offset: usize,
    with_pretrained: bool,
) -> Result<(), TestCaseError> {
    let Ok(scalars) = StepScalars::<T>::new(config, *t, *lr) else {
        return Ok(()); // e.g. ε rounds to 0 in f32: refused the same way everywhere
    };
    let scalars = scalars.with_grad_scale(*grad_scale).unwrap();
    let column = |k: usize| -> Vec<T> {
        (0..offset + n)
            .map(|i| T::round_from_f64(data[(i * 5 + k) % data.len()]))
            .collect()
    };
    let (p0, g, m0, v0, pp) = (column(0), column(1), column(2), column(3), column(4));
    // Second moments are never negative in a real run; keep the sign of the data anyway for
    // half the elements so NaN from sqrt of a negative is covered too.
    let run = |kernel: Option<&Kernel>| {
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        let slices = Slices::new(
            &mut p[offset..],
            &g[offset..],
            &mut m[offset..],
            &mut v[offset..],
            with_pretrained.then_some(&pp[offset..]),
        )
        .unwrap();
        match kernel {
            Some(k) => k.update(&scalars, slices),
            None => update(&scalars, slices),
        }
        (p, m, v)
    };
    let want = run(None);
    for kernel in kernels {
        let got = run(Some(kernel));
        for (name, a, b) in [
            ("params", &got.0, &want.0),
            ("exp_avg", &got.1, &want.1),
            ("exp_avg_sq", &got.2, &want.2),
        ] {
            prop_assert!(
                same_bits(a, b),
                "{} differs from scalar on {} ({} n={} offset={} t={} lr={:e} {:?})",
                kernel.backend(),
                name,
                T::NAME,
                n,
                offset,
                t,
                lr,
                config
            );
        }
    }
    Ok(())
}

proptest! {
    // Miri interprets every instruction: a few cases there still check the unsafe code paths.
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 6 } else { 512 }))]

    #[test]
    fn every_backend_matches_the_reference_f32(
        c in config(), data in prop::collection::vec(value(), 1..64),
        n in prop_oneof![0usize..=300, 300usize..if cfg!(miri) { 400 } else { 5000 }], offset in 0usize..17, pp in any::<bool>(),
    ) {
        check::<f32>(&kernels(), &c, &data, n, offset, pp)?;
    }

    #[test]
    fn every_backend_matches_the_reference_f64(
        c in config(), data in prop::collection::vec(value(), 1..64),
        n in prop_oneof![0usize..=300, 300usize..if cfg!(miri) { 400 } else { 5000 }], offset in 0usize..17, pp in any::<bool>(),
    ) {
        check::<f64>(&kernels(), &c, &data, n, offset, pp)?;
    }
}

/// Every length from 0 to 300 with realistic values, on every backend, for both types and all
/// three rules (the property tests above sample lengths; this covers each one).
#[test]
#[cfg_attr(miri, ignore = "too slow under Miri; runs natively and under qemu")]
fn every_length_up_to_300() {
    let kernels = kernels();
    let data: Vec<f64> = (0..997).map(|i| ((i as f64) * 0.37).sin() * 0.05).collect();
    for mode in [PenaltyMode::Decoupled, PenaltyMode::Coupled] {
        let config = RecAdamConfig {
            lr: 1e-4,
            weight_decay: 0.01,
            annealing: Annealing::Sigmoid { k: 0.1, t0: 10.0 },
            penalty_mode: mode,
            ..RecAdamConfig::default()
        };
        for n in 0..=300 {
            for pp in [true, false] {
                check::<f32>(&kernels, &(config, 7, 1e-4, 1.0), &data, n, n % 7, pp).unwrap();
                check::<f64>(&kernels, &(config, 7, 1e-4, 0.3), &data, n, n % 5, pp).unwrap();
            }
        }
    }
}

/// The stretch of a realistic schedule where f(−s·λ) is subnormal in f32 (k 0.5, t0 250,
/// lr 5e-5: steps 65-97), run as a real trajectory: the fast path must not change a bit.
#[test]
#[cfg_attr(miri, ignore = "too slow under Miri; runs natively and under qemu")]
fn subnormal_step_scalars_keep_every_bit() {
    let kernels = kernels();
    let config = RecAdamConfig {
        lr: 5e-5,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 250.0 },
        ..RecAdamConfig::default()
    };
    let n = 4099;
    let pretrained: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.7).sin() * 0.02).collect();
    let mut subnormal_steps = 0;
    let mut reference = (pretrained.clone(), vec![0f32; n], vec![0f32; n]);
    let mut per_kernel: Vec<_> = kernels.iter().map(|_| reference.clone()).collect();
    for t in 1..=120u64 {
        let scalars = StepScalars::<f32>::new(&config, t, config.lr).unwrap();
        if scalars.neg_step_lambda != 0.0 && scalars.neg_step_lambda.is_subnormal() {
            subnormal_steps += 1;
        }
        let grads: Vec<f32> = (0..n)
            .map(|i| ((i as f32 + t as f32) * 1.3).cos() * 1e-3 + (reference.0[i] - pretrained[i]))
            .collect();
        let (p, m, v) = &mut reference;
        update(
            &scalars,
            Slices::new(p, &grads, m, v, Some(&pretrained)).unwrap(),
        );
        for (kernel, (p, m, v)) in kernels.iter().zip(&mut per_kernel) {
            kernel.update(
                &scalars,
                Slices::new(p, &grads, m, v, Some(&pretrained)).unwrap(),
            );
            assert!(
                same_bits(p, &reference.0),
                "{} params differ at step {t}",
                kernel.backend()
            );
            assert!(same_bits(m, &reference.1) && same_bits(v, &reference.2));
        }
    }
    assert_eq!(
        subnormal_steps,
        97 - 65 + 1,
        "the schedule should have subnormal scalars at steps 65-97"
    );
}

#[test]
fn forcing_an_unavailable_backend_is_an_error() {
    for backend in Backend::ALL {
        match Kernel::new(backend) {
            Ok(kernel) => assert!(backend.is_available() && kernel.backend() == backend),
            Err(err) => {
                assert!(!backend.is_available());
                assert!(err.to_string().contains(backend.name()), "{err}");
            }
        }
    }
    assert_eq!(Backend::from_name("avx512"), Some(Backend::Avx512));
    assert_eq!(Backend::from_name("sse9"), None);
}

/// Every combination of special values for (p, g, m, v, θ*), packed into long arrays, under
/// step scalars that are normal, subnormal and zero, for all three rules. Found on NEON by the
/// property test: a huge p with an infinite gradient at a subnormal step scalar (|p|·2^37
/// overflows to infinity; the fast path's comparison must be strict).
#[test]
#[cfg_attr(miri, ignore = "too slow under Miri; runs natively and under qemu")]
fn every_combination_of_special_values() {
    let kernels = kernels();
    let specials = [
        0.0,
        -0.0,
        1e-45,
        1e-310,
        0.02,
        -0.7,
        1e30,
        1e300,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    // Each combination fills a whole vector (16 lanes at most; 4 with NEON), so the
    // vector paths see it alone (a vector of mixed lanes can hide a lane's special case).
    const REPEAT: usize = if cfg!(target_arch = "aarch64") { 4 } else { 16 };
    let k = specials.len();
    let n = k.pow(5) * REPEAT;
    let data: Vec<f64> = (0..n * 5)
        .map(|i| specials[(i / 5 / REPEAT) / k.pow((i % 5) as u32) % k])
        .collect();
    // (lr for f32, lr for f64, rule, w): normal scalars, subnormal ones, zero ones.
    for (lr32, lr64, mode, w) in [
        (1e-4, 1e-4, PenaltyMode::Decoupled, 1.0),
        (1e-41, 1e-310, PenaltyMode::Decoupled, 0.0), // f(−s) subnormal: plain rule
        (1e-5, 1e-5, PenaltyMode::Coupled, 1.0),
        (0.0, 0.0, PenaltyMode::Decoupled, 1.0),
    ] {
        // A late sigmoid makes f(−s·λ) subnormal or zero in both types; constant: λ = w.
        for annealing in [
            Annealing::Sigmoid { k: 1.0, t0: 200.0 },
            Annealing::Sigmoid { k: 3.0, t0: 300.0 },
            Annealing::Constant,
        ] {
            let config = RecAdamConfig {
                lr: 1e-4,
                beta1: 0.0,
                weight_decay: 0.01,
                annealing,
                anneal_w: w,
                penalty_mode: mode,
                ..RecAdamConfig::default()
            };
            for pp in [true, false] {
                check::<f32>(&kernels, &(config, 3, lr32, 1.0), &data, n, 0, pp).unwrap();
                check::<f64>(&kernels, &(config, 3, lr64, 1.0), &data, n, 0, pp).unwrap();
            }
        }
    }
}

/// The fixed summation order of `GradStats`, written independently: element i into accumulator
/// i mod 16, then a pairwise tree.
fn grad_stats_reference<T: SimdElement>(g: &[T]) -> GradStats {
    let mut acc = [0.0f64; ACCUMULATORS];
    for (i, x) in g.iter().enumerate() {
        acc[i % ACCUMULATORS] += x.widen_to_f64() * x.widen_to_f64();
    }
    let mut width = ACCUMULATORS;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            acc[j] += acc[j + width];
        }
    }
    GradStats {
        sum_squares: acc[0],
        finite: g.iter().all(|x| x.is_finite()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 6 } else { 256 }))]

    /// Every backend gives the defined order's bits and the right finiteness, at any offset.
    #[test]
    // Under Miri (which interprets every emulated AVX2 instruction) shorter slices: still several
    // whole vectors, the unaligned start and the tail.
    fn grad_stats_have_one_result(data in prop::collection::vec(value(), 0..if cfg!(miri) { 120 } else { 700 }), offset in 0usize..17) {
        let kernels = kernels();
        let f32s: Vec<f32> = data.iter().map(|&x| x as f32).collect();
        let f64s: Vec<f64> = data.clone();
        let o32 = offset.min(f32s.len());
        let o64 = offset.min(f64s.len());
        let (want32, want64) = (grad_stats_reference(&f32s[o32..]), grad_stats_reference(&f64s[o64..]));
        for k in &kernels {
            let (got32, got64) = (k.grad_stats(&f32s[o32..]), k.grad_stats(&f64s[o64..]));
            prop_assert_eq!(got32.finite, want32.finite, "{}", k.backend());
            prop_assert_eq!(got64.finite, want64.finite, "{}", k.backend());
            prop_assert!(got32.sum_squares.to_bits() == want32.sum_squares.to_bits() || (got32.sum_squares.is_nan() && want32.sum_squares.is_nan()), "{} f32: {} vs {}", k.backend(), got32.sum_squares, want32.sum_squares);
            prop_assert!(got64.sum_squares.to_bits() == want64.sum_squares.to_bits() || (got64.sum_squares.is_nan() && want64.sum_squares.is_nan()), "{} f64: {} vs {}", k.backend(), got64.sum_squares, want64.sum_squares);
        }
    }
}

/// The properties above are only as strong as the backends they run: every vector backend this
/// CPU has (by the standard library's own detection) must be among them, and CI names the ones
/// its machines must have in `RECADAM_REQUIRE_BACKENDS` (`avx2`, `neon`), so that a detection
/// that found nothing cannot pass as a scalar-only run.
#[test]
fn every_vector_backend_of_this_cpu_is_under_test() {
    let ran: Vec<Backend> = kernels().iter().map(|k| k.backend()).collect();
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            assert!(ran.contains(&Backend::Avx2), "{ran:?}");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert!(ran.contains(&Backend::Avx512), "{ran:?}");
        }
    }
    #[cfg(target_arch = "aarch64")]
    assert!(ran.contains(&Backend::Neon), "{ran:?}");
    let required = std::env::var("RECADAM_REQUIRE_BACKENDS").unwrap_or_default();
    for name in required.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        assert!(
            ran.iter().any(|b| b.name() == name),
            "RECADAM_REQUIRE_BACKENDS names {name}, but only {ran:?} ran"
        );
    }
}

/// A buffer for five arrays of `n` elements, with its first 64-byte boundary `first` and the
/// `stride` between arrays (a multiple of 64 bytes); the `5·stride` elements from `first` on are
/// filled from `data` the same way in every such buffer, whatever its address. Array k starts
/// at `first + k·stride + offsets[k]`: equal offsets share their offset within a cache line,
/// different ones do not.
fn carved<T: SimdElement>(data: &[f64], n: usize) -> (Vec<T>, usize, usize) {
    let per_line = 64 / std::mem::size_of::<T>();
    let stride = (n + per_line).div_ceil(per_line) * per_line;
    let mut buffer = vec![T::round_from_f64(0.0); 5 * stride + per_line];
    let first = buffer.as_ptr().align_offset(64);
    for (j, x) in buffer[first..first + 5 * stride].iter_mut().enumerate() {
        *x = T::round_from_f64(data[(j * 7) % data.len()]);
    }
    (buffer, first, stride)
}

/// The five disjoint `n`-element windows of `buffer` that start at `starts` (increasing).
fn windows<T>(buffer: &mut [T], starts: [usize; 5], n: usize) -> [&mut [T]; 5] {
    let mut rest = buffer;
    let mut consumed = 0;
    starts.map(|start| {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - consumed);
        let (window, after) = tail.split_at_mut(n);
        rest = after;
        consumed = start + n;
        window
    })
}

/// The vector backends cut each slice at the first 64-byte (AVX-512) or 32-byte boundary of
/// the parameters and, on AVX-512, take 256-bit vectors when the five arrays do not share their
/// offset within a cache line: arrays that share it and arrays that do not, at every offset
/// within a vector and lengths around the vector widths, give the reference's bits.
#[test]
#[cfg_attr(miri, ignore = "too slow under Miri; runs natively and under qemu")]
fn every_alignment_of_the_five_arrays_gives_the_same_bits() {
    let kernels = kernels();
    let data: Vec<f64> = (0..1009)
        .map(|i| ((i as f64) * 0.61).cos() * 0.03)
        .collect();
    let config = RecAdamConfig {
        lr: 1e-4,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.1, t0: 10.0 },
        ..RecAdamConfig::default()
    };
    fn run_all<T: SimdElement>(
        kernels: &[Kernel],
        config: &RecAdamConfig,
        data: &[f64],
        n: usize,
        offsets: [usize; 5],
    ) {
        let scalars = StepScalars::<T>::new(config, 7, config.lr).unwrap();
        let step = |kernel: Option<&Kernel>| {
            let (mut b, first, stride) = carved::<T>(data, n);
            let at = std::array::from_fn(|k| first + k * stride + offsets[k]);
            let [p, g, m, v, pp] = windows(&mut b, at, n);
            let slices = Slices::new(p, g, m, v, Some(pp)).unwrap();
            match kernel {
                Some(k) => k.update(&scalars, slices),
                None => update(&scalars, slices),
            }
            // The five arrays and what lies between them: nothing outside the windows may change.
            b[first..first + 5 * stride].to_vec()
        };
        let want = step(None);
        for kernel in kernels {
            assert!(
                same_bits(&step(Some(kernel)), &want),
                "{} differs ({} n={n} offsets={offsets:?})",
                kernel.backend(),
                T::NAME
            );
        }
    }
    let lanes = [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100];
    for shift in 0..16 {
        for n in lanes {
            for offsets in [
                [shift; 5],
                [shift, 0, 0, 0, 0],
                [0, shift, 2, 8, 5],
                [shift, shift, shift, shift + 4, shift],
            ] {
                run_all::<f32>(&kernels, &config, &data, n, offsets);
                run_all::<f64>(&kernels, &config, &data, n, offsets.map(|o| o % 8));
            }
        }
    }
}

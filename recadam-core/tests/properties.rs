//! Properties of the update rule, checked on random inputs (proptest).

use proptest::prelude::*;
use recadam_core::{update, Annealing, Element, PenaltyMode, RecAdamConfig, Slices, StepScalars};

/// A stable, valid configuration with random hyperparameters.
fn config() -> impl Strategy<Value = RecAdamConfig> {
    (
        (1e-6f64..1e-2, 0.0f64..0.99, 0.9f64..0.9999, 1e-9f64..1e-3),
        (prop_oneof![Just(0.0), 0.0f64..0.1], any::<bool>()),
        (
            prop_oneof![
                (0.0f64..2.0, -50.0f64..500.0).prop_map(|(k, t0)| Annealing::Sigmoid { k, t0 }),
                (0.5f64..300.0).prop_map(|t0| Annealing::Linear { t0 }),
                Just(Annealing::Constant),
            ],
            prop_oneof![Just(1.0), 0.0f64..2.0],
            prop_oneof![Just(0.0), 0.0f64..10_000.0],
        ),
    )
        .prop_map(
            |((lr, beta1, beta2, eps), (weight_decay, correct_bias), (annealing, w, cof))| {
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
                    penalty_mode: PenaltyMode::Decoupled,
                };
                // Keep the penalty stable: c = lr·(w − λ(1))·γ < 1.5.
                if c.penalty_factor(c.lr, 1) >= 1.5 {
                    c.lr = 1.4 / (c.penalty_factor(1.0, 1));
                }
                c
            },
        )
}

fn values(n: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-2.0f64..2.0, n)
}

/// The plain AdamW step written independently from the golden README's operation order, with
/// the Adam step scalar `step` (−s or −s·λ, rounded; the bias correction has its own test).
#[allow(clippy::too_many_arguments)]
fn adamw_reference<T: Element>(
    c: &RecAdamConfig,
    lr: f64,
    step: T,
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
) {
    let f = T::round_from_f64;
    for i in 0..p.len() {
        m[i] = g[i].mul_add(f(1.0 - c.beta1), m[i] * f(c.beta1));
        v[i] = (f(1.0 - c.beta2) * g[i]).mul_add(g[i], v[i] * f(c.beta2));
        let d = v[i].sqrt() + f(c.eps);
        p[i] = p[i] + (step * m[i]) / d;
        if c.weight_decay > 0.0 {
            p[i] = p[i].mul_add(f(-lr * c.weight_decay), p[i]);
        }
    }
}

fn same_value<T: Element>(a: &[T], b: &[T]) -> bool {
    a.iter().zip(b).all(|(x, y)| x == y) // ±0 compare equal; inputs are NaN-free
}

fn bits<T: Element>(a: &[T]) -> Vec<u64> {
    a.iter().map(|x| x.widen_to_f64().to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 8 } else { 256 }))]

    /// w = 0 is exactly AdamW, for every element, whatever the annealing and γ say.
    #[test]
    fn w_zero_is_adamw(mut c in config(), x in values(67), steps in 1u64..20) {
        c.anneal_w = 0.0;
        let cast = |s: &[f64]| s.iter().map(|&v| v as f32).collect::<Vec<f32>>();
        let (mut p, pp, g) = (cast(&x), cast(&x[..]).iter().map(|v| v * 0.5).collect::<Vec<_>>(), cast(&x).iter().map(|v| v.sin()).collect::<Vec<_>>());
        let (mut m, mut v) = (vec![0f32; 67], vec![0f32; 67]);
        let (mut p2, mut m2, mut v2) = (p.clone(), m.clone(), v.clone());
        for t in 1..=steps {
            let lr = c.lr * t as f64 / steps as f64;
            let s = StepScalars::<f32>::new(&c, t, lr).unwrap();
            update(&s, Slices::new(&mut p, &g, &mut m, &mut v, Some(&pp)).unwrap());
            adamw_reference(&c, lr, s.neg_step, &mut p2, &g, &mut m2, &mut v2);
        }
        prop_assert_eq!(bits(&p), bits(&p2));
        prop_assert_eq!(bits(&m), bits(&m2));
        prop_assert_eq!(bits(&v), bits(&v2));
    }

    /// γ = 0 is Adam with its step scaled by λ(t) (the penalty runs with a zero coefficient).
    #[test]
    fn cof_zero_is_adam_scaled_by_lambda(mut c in config(), x in values(33), steps in 1u64..20) {
        c.pretrain_cof = 0.0;
        c.anneal_w = c.anneal_w.max(0.1);
        let p0: Vec<f64> = x.clone();
        let pp: Vec<f64> = x.iter().map(|v| v * 0.3 - 0.1).collect();
        let g: Vec<f64> = x.iter().map(|v| (3.0 * v).cos()).collect();
        let (mut p, mut m, mut v) = (p0.clone(), vec![0.0; 33], vec![0.0; 33]);
        let (mut p2, mut m2, mut v2) = (p0, m.clone(), v.clone());
        for t in 1..=steps {
            let s = StepScalars::<f64>::new(&c, t, c.lr).unwrap();
            update(&s, Slices::new(&mut p, &g, &mut m, &mut v, Some(&pp)).unwrap());
            // The Adam step is s·λ, the plain step s scaled by λ (both rounded from f64).
            let plain = -s.neg_step;
            prop_assert!((s.neg_step_lambda + plain * c.lambda(t)).abs() <= 1e-15 * plain * c.lambda(t));
            adamw_reference(&c, c.lr, s.neg_step_lambda, &mut p2, &g, &mut m2, &mut v2);
        }
        prop_assert!(same_value(&p, &p2));
        prop_assert_eq!(bits(&m), bits(&m2));
    }

    /// With zero gradients and moments the Adam step is zero and the penalty is an Euler step:
    /// the distance to θ* is multiplied by |1 − c(t)| each step, c(t) = lr·(w − λ(t))·γ.
    #[test]
    fn zero_gradients_shrink_the_distance_by_one_minus_c(c in config(), x in values(40), steps in 1u64..30) {
        let c = RecAdamConfig { weight_decay: 0.0, ..c };
        let pp: Vec<f64> = x.iter().map(|v| v * 0.1).collect();
        let mut p: Vec<f64> = x.iter().map(|v| v + 0.5).collect();
        let zeros = vec![0.0; 40];
        let (mut m, mut v) = (zeros.clone(), zeros.clone());
        let distance = |p: &[f64]| p.iter().zip(&pp).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
        for t in 1..=steps {
            let before = distance(&p);
            let s = StepScalars::<f64>::new(&c, t, c.lr).unwrap();
            update(&s, Slices::new(&mut p, &zeros, &mut m, &mut v, Some(&pp)).unwrap());
            let want = before * (1.0 - c.penalty_factor(c.lr, t)).abs();
            // Relative error of the factor, plus the rounding of p itself (ulp(|p|) per element).
            let scale = p.iter().fold(0.0f64, |a, x| a.max(x.abs()));
            let tol = 1e-12 * before + 8.0 * f64::EPSILON * scale * (p.len() as f64).sqrt();
            prop_assert!((distance(&p) - want).abs() <= tol,
                "step {}: distance {} want {}", t, distance(&p), want);
        }
    }

    /// λ never decreases and never exceeds w, for sigmoid and linear annealing.
    #[test]
    fn lambda_is_monotone_and_bounded(k in 0.0f64..50.0, t0 in -1e4f64..1e4, lt0 in 1e-3f64..1e4, w in 0.0f64..10.0, t in 1u64..1_000_000, dt in 0u64..1000) {
        for a in [Annealing::Sigmoid { k, t0 }, Annealing::Linear { t0: lt0 }] {
            let (l1, l2) = (a.lambda(t, w), a.lambda(t + dt, w));
            prop_assert!(l1.is_finite() && l1 >= 0.0 && l1 <= w, "{:?} λ({}) = {}", a, t, l1);
            prop_assert!(l2 >= l1, "{:?} λ({}) = {} < λ({}) = {}", a, t + dt, l2, t, l1);
        }
    }

    /// The update is element-wise: any split gives the same bits as the whole.
    #[test]
    fn two_pieces_equal_the_whole(c in config(), coupled in any::<bool>(), x in values(97), mid in 0usize..=97, t in 1u64..1000) {
        let c = RecAdamConfig { penalty_mode: if coupled { PenaltyMode::Coupled } else { PenaltyMode::Decoupled }, ..c };
        let p0: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let g: Vec<f32> = p0.iter().map(|v| v.sin()).collect();
        let pp: Vec<f32> = p0.iter().map(|v| v * 0.5).collect();
        let m0: Vec<f32> = g.iter().map(|v| v * 0.1).collect();
        let v0: Vec<f32> = g.iter().map(|v| v * v).collect();
        let s = StepScalars::<f32>::new(&c, t, c.lr).unwrap();
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        update(&s, Slices::new(&mut p, &g, &mut m, &mut v, Some(&pp)).unwrap());
        let (mut p2, mut m2, mut v2) = (p0, m0, v0);
        let (a, b) = Slices::new(&mut p2, &g, &mut m2, &mut v2, Some(&pp)).unwrap().split_at(mid).unwrap();
        update(&s, b);
        update(&s, a);
        prop_assert_eq!(bits(&p), bits(&p2));
        prop_assert_eq!(bits(&m), bits(&m2));
        prop_assert_eq!(bits(&v), bits(&v2));
    }

    /// Scaling the gradients inside the step is the same as scaling them in place first (what
    /// `clip_grad_norm_` does before the official step).
    #[test]
    fn grad_scale_equals_scaling_in_place(c in config(), coupled in any::<bool>(), x in values(45), scale in 0.0f64..1.0, t in 1u64..500) {
        let c = RecAdamConfig { penalty_mode: if coupled { PenaltyMode::Coupled } else { PenaltyMode::Decoupled }, ..c };
        let p0: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let g: Vec<f32> = p0.iter().map(|v| (v * 7.0).sin()).collect();
        let pp: Vec<f32> = p0.iter().map(|v| v * 0.5).collect();
        let s = StepScalars::<f32>::new(&c, t, c.lr).unwrap();
        let (mut p, mut m, mut v) = (p0.clone(), vec![0.01f32; 45], vec![1e-4f32; 45]);
        update(&s.with_grad_scale(scale).unwrap(), Slices::new(&mut p, &g, &mut m, &mut v, Some(&pp)).unwrap());
        let scaled: Vec<f32> = g.iter().map(|x| x * scale as f32).collect();
        let (mut p2, mut m2, mut v2) = (p0, vec![0.01f32; 45], vec![1e-4f32; 45]);
        update(&s, Slices::new(&mut p2, &scaled, &mut m2, &mut v2, Some(&pp)).unwrap());
        prop_assert_eq!(bits(&p), bits(&p2));
        prop_assert_eq!(bits(&m), bits(&m2));
        prop_assert_eq!(bits(&v), bits(&v2));
    }

    /// f32 and f64 runs of the same problem agree to f32 precision (gradients bounded away from
    /// zero, so that Adam's normalised step is well conditioned).
    #[test]
    fn f32_and_f64_agree(c in config(), x in values(24), signs in prop::collection::vec(any::<bool>(), 24), steps in 1u64..10) {
        let p0: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let pp: Vec<f32> = p0.iter().map(|v| v * 0.9).collect();
        let g: Vec<f32> = x.iter().zip(&signs).map(|(v, &s)| (0.5 + v.abs() as f32) * if s { 1.0 } else { -1.0 }).collect();
        let widen = |a: &[f32]| a.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let (mut p32, mut m32, mut v32) = (p0.clone(), vec![0f32; 24], vec![0f32; 24]);
        let (mut p64, mut m64, mut v64, pp64, g64) = (widen(&p0), vec![0f64; 24], vec![0f64; 24], widen(&pp), widen(&g));
        for t in 1..=steps {
            update(&StepScalars::<f32>::new(&c, t, c.lr).unwrap(), Slices::new(&mut p32, &g, &mut m32, &mut v32, Some(&pp)).unwrap());
            update(&StepScalars::<f64>::new(&c, t, c.lr).unwrap(), Slices::new(&mut p64, &g64, &mut m64, &mut v64, Some(&pp64)).unwrap());
        }
        for i in 0..24 {
            let tol = 1e-5 * (1.0 + p64[i].abs());
            prop_assert!((p32[i] as f64 - p64[i]).abs() <= tol, "element {}: f32 {} f64 {}", i, p32[i], p64[i]);
        }
    }

    /// No value of any input (NaN, infinities, subnormals, any hyperparameter) makes the core
    /// panic: either the configuration is refused with an error or the update runs.
    #[test]
    fn no_input_panics(
        h in prop::collection::vec(any::<u64>().prop_map(f64::from_bits), 10),
        fun in 0u8..3, bias in any::<bool>(), coupled in any::<bool>(), t in any::<u64>(),
        data in prop::collection::vec(any::<u32>().prop_map(f32::from_bits), 5 * 19),
        with_pp in any::<bool>(), lens in prop::collection::vec(0usize..20, 5),
    ) {
        let annealing = match fun { 0 => Annealing::Sigmoid { k: h[7], t0: h[8] }, 1 => Annealing::Linear { t0: h[8] }, _ => Annealing::Constant };
        let c = RecAdamConfig { lr: h[0], beta1: h[1], beta2: h[2], eps: h[3], weight_decay: h[4], correct_bias: bias, annealing, anneal_w: h[5], pretrain_cof: h[6],
            penalty_mode: if coupled { PenaltyMode::Coupled } else { PenaltyMode::Decoupled } };
        let _ = c.validate();
        let _ = c.lambda(t);
        let (mut p, g, mut m, mut v, pp) = (data[0..lens[0]].to_vec(), &data[19..19 + lens[1]], data[38..38 + lens[2]].to_vec(), data[57..57 + lens[3]].to_vec(), &data[76..76 + lens[4]]);
        if let Ok(s) = StepScalars::<f32>::new(&c, t, h[9]) {
            if let Ok(slices) = Slices::new(&mut p, g, &mut m, &mut v, with_pp.then_some(pp)) {
                update(&s, slices);
            }
        }
        // The same values with valid hyperparameters and equal lengths: the update runs.
        let n = 19;
        let (mut p, mut m, mut v) = (data[0..n].to_vec(), data[38..38 + n].to_vec(), data[57..57 + n].to_vec());
        let s = StepScalars::<f32>::new(&RecAdamConfig::default(), t.max(1), 1e-5).unwrap();
        update(&s, Slices::new(&mut p, &data[19..19 + n], &mut m, &mut v, Some(&data[76..76 + n])).unwrap());
    }
}

/// The bias-corrected step size agrees with one computed from glibc's `pow` (what the official
/// code uses) almost always, and always within the error that one ulp of `pow` explains. They can differ because glibc's `pow` is
/// not correctly rounded everywhere: 0.9999^494 is 0.95179798231030415…, which rounds to
/// 0.9517979823103042; glibc returns 0.9517979823103041, ours the correctly rounded value.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
#[cfg_attr(miri, ignore = "400,000 steps: too slow under Miri")]
fn bias_correction_matches_glibc_pow_but_for_its_rounding_errors() {
    let config = |beta1: f64, beta2: f64| RecAdamConfig {
        beta1,
        beta2,
        anneal_w: 0.0,
        lr: 1.0,
        ..RecAdamConfig::default()
    };
    let (mut differ, mut total) = (0, 0);
    for (beta1, beta2) in [(0.9, 0.999), (0.9, 0.98), (0.95, 0.9999), (0.5, 0.99)] {
        let c = config(beta1, beta2);
        for t in 1..=100_000u64 {
            let s = StepScalars::<f64>::new(&c, t, 1.0).unwrap();
            let tf = t as f64;
            let glibc = -((1.0 - beta2.powf(tf)).sqrt() / (1.0 - beta1.powf(tf)));
            total += 1;
            if s.neg_step != glibc {
                differ += 1;
                // One ulp in β^t, amplified by the condition number 1/(1 − β^t), plus the ops.
                let cond = 1.0 / (1.0 - beta1.powf(tf)) + 1.0 / (1.0 - beta2.powf(tf));
                let rel = ((s.neg_step - glibc) / glibc).abs();
                assert!(
                    rel <= f64::EPSILON * (cond + 4.0),
                    "β = ({beta1}, {beta2}), t = {t}: {} vs {glibc}",
                    s.neg_step
                );
            }
        }
    }
    println!("{differ} of {total} step sizes differ from glibc's");
    assert!(differ * 1000 < total, "{differ} of {total} differ");
    let s = StepScalars::<f64>::new(&config(0.95, 0.9999), 494, 1.0).unwrap();
    assert_eq!(
        s.neg_step,
        -((1.0 - 0.9517979823103042f64).sqrt() / (1.0 - 0.95f64.powf(494.0)))
    );
}

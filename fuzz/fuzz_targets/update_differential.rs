//! Arbitrary hyperparameters, step, learning rate, lengths, offsets and values (NaN, infinities,
//! subnormals included) through every backend this machine has and the scalar reference: the
//! same bits (NaN payloads aside) or the same error, never a panic. Gradient statistics too.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use recadam_core::{update, Annealing, PenaltyMode, RecAdamConfig, Slices, StepScalars};
use recadam_simd::{Backend, Kernel, SimdElement};
use recadam_testkit::same_bits;

#[derive(Arbitrary, Debug)]
struct Input {
    /// lr, β1, β2, ε, wd, w, γ, k, t0, step lr, grad scale: raw bits or mapped into a range.
    hyper: [u64; 11],
    raw_hyper: bool,
    annealing: u8,
    correct_bias: bool,
    coupled: bool,
    t: u64,
    double: bool,
    offset: u8,
    with_pretrained: bool,
    values: Vec<u64>,
}

/// `bits` as a float in [lo, hi), or the raw bits when `raw`.
fn pick(bits: u64, lo: f64, hi: f64, raw: bool) -> f64 {
    if raw {
        f64::from_bits(bits)
    } else {
        lo + (bits >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

/// Mostly small values like real weights and gradients, some raw bit patterns.
fn value(bits: u64) -> f64 {
    match bits & 3 {
        0 => f64::from_bits(bits),
        1 => f32::from_bits((bits >> 32) as u32) as f64,
        _ => ((bits >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.1,
    }
}

fn run<T: SimdElement>(input: &Input) {
    let h = input.hyper;
    let raw = input.raw_hyper;
    let annealing = match input.annealing % 3 {
        0 => Annealing::Sigmoid {
            k: pick(h[7], 0.0, 3.0, raw),
            t0: pick(h[8], -100.0, 1000.0, raw),
        },
        1 => Annealing::Linear {
            t0: pick(h[8], 0.5, 500.0, raw),
        },
        _ => Annealing::Constant,
    };
    let config = RecAdamConfig {
        lr: pick(h[0], 0.0, 1e-2, raw),
        beta1: pick(h[1], 0.0, 1.0, raw),
        beta2: pick(h[2], 0.0, 1.0, raw),
        eps: pick(h[3], 1e-12, 1e-3, raw),
        weight_decay: pick(h[4], 0.0, 0.1, raw),
        correct_bias: input.correct_bias,
        annealing,
        anneal_w: pick(h[5], 0.0, 2.0, raw),
        pretrain_cof: pick(h[6], 0.0, 5000.0, raw),
        penalty_mode: if input.coupled {
            PenaltyMode::Coupled
        } else {
            PenaltyMode::Decoupled
        },
    };
    let lr = pick(h[9], 0.0, config.lr.abs().min(1e300), raw);
    let scalars = match StepScalars::<T>::new(&config, input.t, lr)
        .and_then(|s| s.with_grad_scale(pick(h[10], 0.0, 1.0, raw)))
    {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string(); // the same error for every backend: it is computed once
            return;
        }
    };
    let offset = (input.offset % 17) as usize;
    let n = input.values.len().saturating_sub(offset * 5) / 5;
    let column = |k: usize| -> Vec<T> {
        (0..offset + n)
            .map(|i| {
                T::round_from_f64(value(input.values[(i * 5 + k) % input.values.len().max(1)]))
            })
            .collect()
    };
    if input.values.is_empty() {
        return;
    }
    let (p0, g, m0, v0, pp) = (column(0), column(1), column(2), column(3), column(4));
    let step = |kernel: Option<Kernel>| {
        let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
        let slices = Slices::new(
            &mut p[offset..],
            &g[offset..],
            &mut m[offset..],
            &mut v[offset..],
            input.with_pretrained.then_some(&pp[offset..]),
        )
        .expect("equal lengths");
        match kernel {
            Some(k) => k.update(&scalars, slices),
            None => update(&scalars, slices),
        }
        (p, m, v)
    };
    let want = step(None);
    let want_stats = Kernel::new(Backend::Scalar)
        .unwrap()
        .grad_stats(&g[offset..]);
    for backend in Backend::available() {
        let kernel = Kernel::new(backend).unwrap();
        let got = step(Some(kernel));
        assert!(same_bits(&got.0, &want.0), "{backend}: params differ");
        assert!(same_bits(&got.1, &want.1), "{backend}: exp_avg differs");
        assert!(same_bits(&got.2, &want.2), "{backend}: exp_avg_sq differs");
        let stats = kernel.grad_stats(&g[offset..]);
        assert_eq!(
            stats.finite, want_stats.finite,
            "{backend}: finiteness differs"
        );
        assert!(
            stats.sum_squares.to_bits() == want_stats.sum_squares.to_bits()
                || (stats.sum_squares.is_nan() && want_stats.sum_squares.is_nan()),
            "{backend}: sum of squares differs"
        );
    }
}

fuzz_target!(|input: Input| {
    if input.double {
        run::<f64>(&input);
    } else {
        run::<f32>(&input);
    }
});

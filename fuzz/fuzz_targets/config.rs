//! Arbitrary hyperparameters through validation: either a typed error, or a configuration whose
//! first steps keep the parameters finite when fed finite gradients (within the ranges of real
//! training: lr ≤ 1, w ≤ 10, γ ≤ 1e6, weight decay ≤ 1e3, |values| ≤ 10).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use recadam_core::{update, Annealing, PenaltyMode, RecAdamConfig, Slices, StepScalars};

#[derive(Arbitrary, Debug)]
struct Input {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    anneal_w: f64,
    pretrain_cof: f64,
    k: f64,
    t0: f64,
    annealing: u8,
    correct_bias: bool,
    coupled: bool,
    first_step: u16,
    params: [i16; 8],
    grads: [[i16; 8]; 5],
}

fuzz_target!(|input: Input| {
    let annealing = match input.annealing % 3 {
        0 => Annealing::Sigmoid {
            k: input.k,
            t0: input.t0,
        },
        1 => Annealing::Linear { t0: input.t0 },
        _ => Annealing::Constant,
    };
    let config = RecAdamConfig {
        lr: input.lr,
        beta1: input.beta1,
        beta2: input.beta2,
        eps: input.eps,
        weight_decay: input.weight_decay,
        correct_bias: input.correct_bias,
        annealing,
        anneal_w: input.anneal_w,
        pretrain_cof: input.pretrain_cof,
        penalty_mode: if input.coupled {
            PenaltyMode::Coupled
        } else {
            PenaltyMode::Decoupled
        },
    };
    if let Err(e) = config.validate() {
        assert!(!e.to_string().is_empty());
        return;
    }
    let realistic = config.lr <= 1.0
        && config.anneal_w <= 10.0
        && config.pretrain_cof <= 1e6
        && config.weight_decay <= 1e3;
    let to_f32 = |x: i16| x as f32 / 3276.8; // |x| ≤ 10
    let mut p: Vec<f32> = input.params.iter().map(|&x| to_f32(x)).collect();
    let pp: Vec<f32> = p.iter().map(|x| x * 0.5).collect();
    let (mut m, mut v) = (vec![0.0f32; 8], vec![0.0f32; 8]);
    let t0 = input.first_step as u64 + 1;
    for (i, g) in input.grads.iter().enumerate() {
        let g: Vec<f32> = g.iter().map(|&x| to_f32(x)).collect();
        let scalars = match StepScalars::<f32>::new(&config, t0 + i as u64, config.lr) {
            Ok(s) => s,
            Err(e) => {
                // Valid in f64 but not representable in f32 (ε or a scalar): a typed error.
                assert!(!e.to_string().is_empty());
                return;
            }
        };
        update(
            &scalars,
            Slices::new(&mut p, &g, &mut m, &mut v, Some(&pp)).unwrap(),
        );
        if realistic {
            assert!(
                p.iter().chain(&m).chain(&v).all(|x| x.is_finite()),
                "a valid configuration produced non-finite values at step {}: {config:?} p {p:?}",
                t0 + i as u64
            );
        }
    }
});

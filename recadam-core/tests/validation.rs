//! Every bad input is a typed error whose message names the field and the value.

use recadam_core::{step, Annealing, Error, PenaltyMode, RecAdamConfig, Slices, StepScalars};

fn base() -> RecAdamConfig {
    RecAdamConfig {
        lr: 5e-5,
        ..RecAdamConfig::default()
    }
}

fn expect_field(config: RecAdamConfig, field: &str) {
    let err = config
        .validate()
        .expect_err(&format!("{config:?} must be refused"));
    match err {
        Error::InvalidHyperparameter { field: f, .. } => assert_eq!(f, field, "{err}"),
        other => panic!("expected an invalid `{field}`, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("`{field}`")),
        "message does not name `{field}`: {message}"
    );
    // The same error comes out of the per-step entry point.
    let per_step = StepScalars::<f32>::new(&config, 1, 1e-5).unwrap_err();
    assert_eq!(per_step.to_string(), message);
}

#[test]
fn bad_values_name_their_field() {
    const NAN: f64 = f64::NAN;
    const INF: f64 = f64::INFINITY;
    type Mutation = fn(&mut RecAdamConfig);
    let cases: [(&str, Mutation); 27] = [
        ("lr", |c| c.lr = -1e-5),
        ("lr", |c| c.lr = NAN),
        ("lr", |c| c.lr = INF),
        ("beta1", |c| c.beta1 = 1.0),
        ("beta1", |c| c.beta1 = -0.1),
        ("beta1", |c| c.beta1 = NAN),
        ("beta2", |c| c.beta2 = 1.5),
        ("beta2", |c| c.beta2 = NAN),
        ("eps", |c| c.eps = -1e-8),
        ("eps", |c| c.eps = 0.0),
        ("eps", |c| c.eps = NAN),
        ("eps", |c| c.eps = INF),
        ("weight_decay", |c| c.weight_decay = -0.01),
        ("weight_decay", |c| c.weight_decay = NAN),
        ("weight_decay", |c| c.weight_decay = INF),
        ("pretrain_cof", |c| c.pretrain_cof = -1.0),
        ("pretrain_cof", |c| c.pretrain_cof = INF),
        ("pretrain_cof", |c| c.pretrain_cof = NAN),
        ("anneal_w", |c| c.anneal_w = -1.0),
        ("anneal_w", |c| c.anneal_w = NAN),
        ("anneal.t0", |c| c.annealing = Annealing::Linear { t0: 0.0 }),
        ("anneal.t0", |c| {
            c.annealing = Annealing::Linear { t0: -3.0 }
        }),
        ("anneal.t0", |c| c.annealing = Annealing::Linear { t0: NAN }),
        ("anneal.t0", |c| {
            c.annealing = Annealing::Sigmoid { k: 0.1, t0: INF }
        }),
        ("anneal.k", |c| {
            c.annealing = Annealing::Sigmoid { k: -0.1, t0: 10.0 }
        }),
        ("anneal.k", |c| {
            c.annealing = Annealing::Sigmoid { k: INF, t0: 10.0 }
        }),
        ("anneal.k", |c| {
            c.annealing = Annealing::Sigmoid { k: NAN, t0: 10.0 }
        }),
    ];
    for (field, mutate) in cases {
        let mut config = base();
        mutate(&mut config);
        expect_field(config, field);
    }
}

#[test]
fn a_diverging_penalty_names_lr_and_the_largest_stable_lr() {
    // The official constructor defaults: lr 1e-3, γ 5000, w 1 give c = 5.
    let config = RecAdamConfig {
        lr: 1e-3,
        ..RecAdamConfig::default()
    };
    let err = config.validate().unwrap_err();
    let Error::PenaltyDiverges {
        lr,
        factor,
        max_stable_lr,
    } = err
    else {
        panic!("expected PenaltyDiverges, got {err:?}");
    };
    assert_eq!(lr, 1e-3);
    assert!((factor - 5.0).abs() < 1e-12);
    assert!((max_stable_lr - 4e-4).abs() < 1e-15);
    let message = err.to_string();
    assert!(message.contains("`lr`"), "{message}");
    assert!(message.contains("4e-4"), "{message}");

    // Just below the limit is accepted (it oscillates, c ∈ [1, 2), but converges) ...
    assert!(RecAdamConfig {
        lr: 3.99e-4,
        ..config
    }
    .validate()
    .is_ok());
    // ... and the limit moves with w·γ.
    assert!(RecAdamConfig {
        lr: 3.99e-4,
        anneal_w: 2.0,
        ..config
    }
    .validate()
    .is_err());
    // A scheduled rate above the limit is refused at that step, a lower one accepted.
    let ok = RecAdamConfig { lr: 2e-5, ..config };
    assert!(matches!(
        StepScalars::<f32>::new(&ok, 1, 5e-4),
        Err(Error::PenaltyDiverges { .. })
    ));
    assert!(StepScalars::<f32>::new(&ok, 1, 2e-5).is_ok());
}

#[test]
fn a_diverging_weight_decay_names_lr_and_the_largest_stable_lr() {
    let config = RecAdamConfig {
        lr: 0.5,
        weight_decay: 4.0,
        anneal_w: 0.0,
        ..base()
    };
    let err = config.validate().unwrap_err();
    assert!(
        matches!(err, Error::WeightDecayDiverges { factor, max_stable_lr, .. } if factor == 2.0 && max_stable_lr == 0.5),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("`lr`") && message.contains("`weight_decay`"),
        "{message}"
    );
    assert!(RecAdamConfig { lr: 0.49, ..config }.validate().is_ok());
    // Per step too: a scheduled rate above the limit is refused.
    let ok = RecAdamConfig { lr: 0.1, ..config };
    assert!(matches!(
        StepScalars::<f32>::new(&ok, 1, 0.6),
        Err(Error::WeightDecayDiverges { .. })
    ));
}

#[test]
fn no_penalty_means_no_stability_limit() {
    // Constant annealing (λ = w) and linear with t0 ≤ 1 never apply the penalty; nor does w = 0
    // or the coupled mode, whose penalty goes through Adam's normalised step.
    let big = RecAdamConfig {
        lr: 0.5,
        ..RecAdamConfig::default()
    };
    for config in [
        RecAdamConfig {
            annealing: Annealing::Constant,
            ..big
        },
        RecAdamConfig {
            annealing: Annealing::Linear { t0: 1.0 },
            ..big
        },
        RecAdamConfig {
            anneal_w: 0.0,
            ..big
        },
        RecAdamConfig {
            pretrain_cof: 0.0,
            ..big
        },
        RecAdamConfig {
            penalty_mode: PenaltyMode::Coupled,
            ..big
        },
    ] {
        assert!(config.validate().is_ok(), "{config:?}");
    }
    assert!(RecAdamConfig {
        annealing: Annealing::Linear { t0: 2.0 },
        ..big
    }
    .validate()
    .is_err());
}

#[test]
fn step_zero_and_bad_step_lr_are_refused() {
    let config = base();
    assert_eq!(
        StepScalars::<f64>::new(&config, 0, 1e-5),
        Err(Error::StepZero)
    );
    assert!(Error::StepZero.to_string().contains("`t`"));
    for lr in [-1e-5, f64::NAN, f64::INFINITY] {
        let err = StepScalars::<f64>::new(&config, 3, lr).unwrap_err();
        assert!(
            matches!(err, Error::InvalidHyperparameter { field: "lr", .. }),
            "{err:?}"
        );
    }
}

#[test]
fn an_eps_that_rounds_to_zero_in_f32_is_refused() {
    let config = RecAdamConfig {
        eps: 1e-50,
        ..base()
    };
    assert!(config.validate().is_ok()); // fine in f64
    assert!(StepScalars::<f64>::new(&config, 1, 1e-5).is_ok());
    let err = StepScalars::<f32>::new(&config, 1, 1e-5).unwrap_err();
    assert!(
        matches!(err, Error::InvalidHyperparameter { field: "eps", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("`eps`"));
}

#[test]
fn scalars_that_overflow_the_element_type_are_refused() {
    let plain = RecAdamConfig {
        anneal_w: 0.0,
        ..base()
    };
    let err = StepScalars::<f32>::new(&plain, 1, 1e40).unwrap_err(); // −s = −3.2e39
    assert!(
        matches!(err, Error::ScalarOverflow { dtype: "f32", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("f32"));
    assert!(StepScalars::<f64>::new(&plain, 1, 1e40).is_ok());
    let coupled = RecAdamConfig {
        anneal_w: 1e300,
        penalty_mode: recadam_core::PenaltyMode::Coupled,
        annealing: Annealing::Constant,
        ..base()
    };
    assert!(matches!(
        StepScalars::<f32>::new(&coupled, 1, 1e-5),
        Err(Error::ScalarOverflow { .. })
    ));
}

#[test]
fn mismatched_lengths_name_the_slice() {
    let (mut p, mut m, mut v) = (vec![0f32; 4], vec![0f32; 4], vec![0f32; 4]);
    let g4 = vec![0f32; 4];
    let (g3, m5) = (vec![0f32; 3], vec![0f32; 5]);
    let err = Slices::new(&mut p, &g3, &mut m, &mut v, None).unwrap_err();
    assert_eq!(
        err,
        Error::LengthMismatch {
            slice: "grads",
            len: 3,
            expected: 4
        }
    );
    assert!(err.to_string().contains("`grads`"));
    let err = Slices::new(&mut p, &g4, &mut m, &mut v, Some(&m5)).unwrap_err();
    assert!(err.to_string().contains("`pretrained`"), "{err}");
    let mut m3 = vec![0f32; 3];
    let err = step(&base(), 1, 1e-5, &mut p, &g4, &mut m3, &mut v, None).unwrap_err();
    assert!(err.to_string().contains("`exp_avg`"), "{err}");
    let mut v7 = vec![0f32; 7];
    let err = step(&base(), 1, 1e-5, &mut p, &g4, &mut m, &mut v7, None).unwrap_err();
    assert!(err.to_string().contains("`exp_avg_sq`"), "{err}");
    // Nothing was touched by a refused step.
    assert!(p.iter().chain(&m).all(|&x| x == 0.0));
}

#[test]
fn split_past_the_end_is_none() {
    let (mut p, mut m, mut v) = (vec![0f32; 4], vec![0f32; 4], vec![0f32; 4]);
    let g = vec![0f32; 4];
    let slices = Slices::new(&mut p, &g, &mut m, &mut v, None).unwrap();
    assert!(slices.split_at(5).is_none());
}

/// The vector kernels' split: a body of whole vectors and a tail shorter than one, for every
/// length and width (a width of 0 is taken as 1), with the elements in place and none lost.
#[test]
fn split_lanes_gives_whole_vectors_and_a_short_tail() {
    for n in 0..40usize {
        for lanes in [0usize, 1, 2, 4, 8, 16, 33] {
            let mut p: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
            let g = vec![0f32; n];
            let pp = p.clone();
            let slices = Slices::new(&mut p, &g, &mut m, &mut v, Some(&pp)).unwrap();
            let (body, tail) = slices.split_lanes(lanes);
            let w = lanes.max(1);
            assert_eq!(body.len() % w, 0, "n {n}, lanes {lanes}");
            assert!(tail.len() < w, "n {n}, lanes {lanes}");
            assert_eq!(body.len() + tail.len(), n);
            assert!(body.has_pretrained() && tail.has_pretrained());
            let (bp, ..) = body.into_parts();
            let (tp, ..) = tail.into_parts();
            let joined: Vec<f32> = bp.iter().chain(tp.iter()).copied().collect();
            assert_eq!(joined, pp);
        }
    }
}

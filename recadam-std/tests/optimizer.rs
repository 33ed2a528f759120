//! The optimizer against the core reference update, across thread counts, with the guard,
//! clipping, groups, schedules and metrics.

use recadam_core::{update, Annealing, RecAdamConfig, Slices, StepScalars};
use recadam_std::{
    Buffer, Constant, CosineWarmup, Error, Group, Kernel, LinearWarmupDecay, LrSchedule,
    NonFiniteGuard, Optimizer, Options, ParamId, ParamMut, Pretrained, Selector,
};
use recadam_testkit::golden;

/// A small BERT-like model: names, lengths (odd ones, and one larger than a statistics block).
const SHAPES: [(&str, usize); 6] = [
    ("bert.embeddings.word_embeddings.weight", 70_001),
    ("bert.encoder.layer.0.attention.self.query.weight", 4_099),
    ("bert.encoder.layer.0.attention.self.query.bias", 67),
    ("bert.encoder.layer.0.output.LayerNorm.weight", 64),
    ("classifier.weight", 130),
    ("classifier.bias", 2),
];

fn config() -> RecAdamConfig {
    RecAdamConfig {
        lr: 1e-4,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 5.0 },
        ..RecAdamConfig::default()
    }
}

struct Model {
    values: Vec<Vec<f32>>,
    pretrained: Vec<Vec<f32>>,
}

impl Model {
    fn new() -> Model {
        let pretrained: Vec<Vec<f32>> = SHAPES
            .iter()
            .enumerate()
            .map(|(k, &(_, n))| {
                (0..n)
                    .map(|i| ((i * 7 + k) as f32 * 0.37).sin() * 0.02)
                    .collect()
            })
            .collect();
        Model {
            values: pretrained.clone(),
            pretrained,
        }
    }

    /// Gradients of step t: deterministic, and pulling each weight somewhere new.
    fn grads(&self, t: u64) -> Vec<Vec<f32>> {
        self.values
            .iter()
            .enumerate()
            .map(|(k, v)| {
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| x * 0.5 + ((i + k) as f32 * 0.11 + t as f32).cos() * 1e-2)
                    .collect()
            })
            .collect()
    }
}

fn optimizer<'s>(options: Options, model: &'s Model) -> Optimizer<'s, f32> {
    let mut opt = Optimizer::with_kernel(options, Kernel::from_env().unwrap()).unwrap();
    for g in Group::glue_script("bert.") {
        opt.add_group(g).unwrap();
    }
    for (k, &(name, _)) in SHAPES.iter().enumerate() {
        opt.register_pretrained(name, &model.pretrained[k]).unwrap();
    }
    opt
}

fn step(
    opt: &mut Optimizer<'_, f32>,
    model: &mut Model,
    grads: &[Vec<f32>],
) -> Result<recadam_std::StepReport, Error> {
    let ids: Vec<ParamId> = opt.ids().collect();
    let mut params: Vec<ParamMut<'_, f32>> = model
        .values
        .iter_mut()
        .zip(grads)
        .zip(ids)
        .map(|((value, grad), id)| ParamMut::new(id, value, grad))
        .collect();
    params.reverse(); // any order
    opt.step(&mut params)
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|x| x.iter().map(|f| f.to_bits()).collect())
        .collect()
}

/// The optimizer gives exactly what the core update gives per parameter with the official
/// GLUE script's groups: encoder penalised, head not; no decay for bias and LayerNorm weights.
#[test]
fn matches_the_core_update_with_the_glue_groups() {
    let schedule = LinearWarmupDecay {
        warmup: 3,
        total: 12,
    };
    let mut model = Model::new();
    let pretrained = Model::new();
    let mut opt = optimizer(
        Options {
            schedule: Box::new(schedule),
            ..Options::new(config())
        },
        &pretrained,
    );
    let mut reference = Model::new();
    let mut state: Vec<(Vec<f32>, Vec<f32>)> = SHAPES
        .iter()
        .map(|&(_, n)| (vec![0.0; n], vec![0.0; n]))
        .collect();
    for t in 1..=12u64 {
        let grads = model.grads(t);
        let report = step(&mut opt, &mut model, &grads).unwrap();
        let lr = config().lr * schedule.multiplier(t);
        assert_eq!(report.lr, lr);
        for (k, &(name, _)) in SHAPES.iter().enumerate() {
            let encoder = name.starts_with("bert.");
            let no_decay = name.contains("bias") || name.contains("LayerNorm.weight");
            let c = RecAdamConfig {
                weight_decay: if no_decay { 0.0 } else { config().weight_decay },
                ..config()
            };
            let s = StepScalars::<f32>::new(&c, t, lr).unwrap();
            let (m, v) = &mut state[k];
            let pp = encoder.then_some(reference.pretrained[k].as_slice());
            update(
                &s,
                Slices::new(&mut reference.values[k], &grads[k], m, v, pp).unwrap(),
            );
        }
        assert_eq!(bits(&model.values), bits(&reference.values), "step {t}");
    }
    for (k, id) in opt.ids().enumerate() {
        let (m, v) = opt.state(id).unwrap();
        assert_eq!(m, state[k].0.as_slice());
        assert_eq!(v, state[k].1.as_slice());
    }
    // The head moved freely; the encoder stayed close to θ*.
    let d = opt
        .distance_to_pretrained(opt.ids().zip(model.values.iter().map(|v| v.as_slice())))
        .unwrap();
    let head_moved: f64 = model.values[4]
        .iter()
        .zip(&Model::new().pretrained[4])
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(head_moved > 0.0);
    let manual: f64 = (0..4)
        .map(|k| {
            model.values[k]
                .iter()
                .zip(&model.pretrained[k])
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt();
    assert!(
        (d.overall - manual).abs() <= 1e-12 * manual,
        "{} vs {manual}",
        d.overall
    );
    assert_eq!(d.per_group.len(), 4);
    assert_eq!(d.per_group[2].1, 0.0, "the head has no θ*");
}

/// Any number of threads gives the same bits, with clipping on (the global norm is summed in
/// a fixed order).
#[test]
fn every_thread_count_gives_the_same_bits() {
    let run = |threads: usize| {
        let mut model = Model::new();
        let pretrained = Model::new();
        let options = Options {
            threads,
            max_grad_norm: Some(0.5),
            schedule: Box::new(CosineWarmup {
                warmup: 2,
                total: 8,
                floor: 0.1,
            }),
            ..Options::new(config())
        };
        let mut opt = optimizer(options, &pretrained);
        let mut norms = Vec::new();
        for t in 1..=8 {
            let grads = model.grads(t);
            let report = step(&mut opt, &mut model, &grads).unwrap();
            norms.push((
                report.grad_norm.unwrap().to_bits(),
                report.grad_scale.to_bits(),
            ));
        }
        (bits(&model.values), norms)
    };
    let one = run(1);
    assert!(
        one.1.iter().any(|&(_, s)| f64::from_bits(s) < 1.0),
        "clipping should engage"
    );
    for threads in [2, 3, 4, 7] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}

/// Clipping is `clip_grad_norm_`: the norm is the global L2 norm, the factor
/// max / (norm + 1e-6) when below 1, and the update equals scaling the gradients first.
#[test]
fn clipping_matches_scaling_the_gradients_first() {
    let mut model = Model::new();
    let pretrained = Model::new();
    let options = Options {
        max_grad_norm: Some(0.25),
        ..Options::new(config())
    };
    let mut opt = optimizer(options, &pretrained);
    let mut reference = Model::new();
    let mut ref_opt = optimizer(Options::new(config()), &pretrained);
    for t in 1..=4 {
        let grads = model.grads(t);
        let naive: f64 = grads
            .iter()
            .flatten()
            .map(|&g| (g as f64) * (g as f64))
            .sum::<f64>()
            .sqrt();
        let report = step(&mut opt, &mut model, &grads).unwrap();
        let norm = report.grad_norm.unwrap();
        assert!((norm - naive).abs() <= 1e-12 * naive);
        assert_eq!(report.grad_scale, 0.25 / (norm + 1e-6));
        let scale = report.grad_scale as f32;
        let scaled: Vec<Vec<f32>> = grads
            .iter()
            .map(|g| g.iter().map(|x| x * scale).collect())
            .collect();
        step(&mut ref_opt, &mut reference, &scaled).unwrap();
        assert_eq!(bits(&model.values), bits(&reference.values), "step {t}");
    }
}

/// A NaN or an infinity in any gradient: with the guard on (the default) the step is refused,
/// nothing changes, and the next good step goes on as if the bad one never came.
#[test]
fn the_guard_refuses_non_finite_gradients_and_changes_nothing() {
    let pretrained = Model::new();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut model = Model::new();
        let mut opt = optimizer(Options::new(config()), &pretrained);
        let mut clean = Model::new();
        let mut clean_opt = optimizer(Options::new(config()), &pretrained);
        for t in 1..=3 {
            let g = model.grads(t);
            step(&mut opt, &mut model, &g).unwrap();
            step(&mut clean_opt, &mut clean, &g).unwrap();
        }
        let before = (
            bits(&model.values),
            opt.state(opt.id(SHAPES[1].0).unwrap())
                .map(|(m, v)| (m.to_vec(), v.to_vec())),
        );
        let mut poisoned = model.grads(4);
        poisoned[1][1234] = bad;
        match step(&mut opt, &mut model, &poisoned) {
            Err(Error::NonFiniteGradient { name }) => assert_eq!(name, SHAPES[1].0),
            other => panic!("expected a refused step, got {other:?}"),
        }
        let after = (
            bits(&model.values),
            opt.state(opt.id(SHAPES[1].0).unwrap())
                .map(|(m, v)| (m.to_vec(), v.to_vec())),
        );
        assert!(before == after, "a refused step changed something");
        assert_eq!(opt.steps(), 3);
        // Training goes on: the same as never having seen the bad batch.
        for t in 4..=6 {
            let g = model.grads(t);
            step(&mut opt, &mut model, &g).unwrap();
            step(&mut clean_opt, &mut clean, &g).unwrap();
        }
        assert_eq!(bits(&model.values), bits(&clean.values));
    }
}

#[test]
fn the_guard_can_count_and_skip_like_a_loss_scaler() {
    let pretrained = Model::new();
    let mut model = Model::new();
    let options = Options {
        guard: NonFiniteGuard::Skip,
        ..Options::new(config())
    };
    let mut opt = optimizer(options, &pretrained);
    let mut g = model.grads(1);
    g[4][3] = f32::NAN;
    let before = bits(&model.values);
    let report = step(&mut opt, &mut model, &g).unwrap();
    assert_eq!(report.skipped.as_deref(), Some("classifier.weight"));
    assert_eq!((opt.steps(), opt.skipped_steps()), (0, 1));
    assert_eq!(bits(&model.values), before);
    let g = model.grads(1);
    assert_eq!(step(&mut opt, &mut model, &g).unwrap().step, 1);
}

/// Wrong input is a typed error before anything changes.
#[test]
fn bad_calls_are_errors_that_change_nothing() {
    let pretrained = Model::new();
    let mut model = Model::new();
    let mut opt = optimizer(Options::new(config()), &pretrained);
    let ids: Vec<ParamId> = opt.ids().collect();
    let g = model.grads(1);
    let before = bits(&model.values);
    let (head, rest) = model.values.split_at_mut(5);
    let mut params: Vec<ParamMut<'_, f32>> = head
        .iter_mut()
        .zip(&g)
        .zip(&ids)
        .map(|((value, grad), &id)| ParamMut::new(id, value, grad))
        .collect();
    // A handle of another optimizer.
    let mut other = Optimizer::<f32>::new(Options::new(config())).unwrap();
    other
        .add_group(Group::new("all", Selector::All).anneal_w(0.0))
        .unwrap();
    let foreign = other.register("x", 2).unwrap();
    let mut short = vec![0.0f32; 2];
    params.push(ParamMut::new(foreign, &mut short, &g[5]));
    assert!(matches!(opt.step(&mut params), Err(Error::ForeignParam(0))));
    params.pop();
    // A parameter given twice.
    let mut again = vec![0.0f32; SHAPES[4].1];
    params.push(ParamMut::new(ids[4], &mut again, &g[4]));
    let err = opt.step(&mut params).unwrap_err();
    assert!(
        matches!(&err, Error::DuplicateParam(n) if n == "classifier.weight"),
        "{err}"
    );
    params.pop();
    // A wrong length.
    params.push(ParamMut::new(ids[5], &mut rest[0], &g[4]));
    let err = opt.step(&mut params).unwrap_err();
    assert!(
        matches!(&err, Error::Length { name, what: "grad", .. } if name == "classifier.bias"),
        "{err}"
    );
    assert!(err.to_string().contains("classifier.bias"));
    drop(params);
    assert_eq!(bits(&model.values), before);
    assert_eq!(opt.steps(), 0);
    assert!(opt.ids().all(|id| opt.param_steps(id) == Some(0)));

    // Registration errors.
    let mut opt = Optimizer::<f32>::new(Options::new(config())).unwrap();
    opt.add_group(Group::new("enc", Selector::Prefix("bert.".into())))
        .unwrap();
    assert!(matches!(
        opt.add_group(Group::new("enc", Selector::All)),
        Err(Error::DuplicateGroup(_))
    ));
    assert!(matches!(
        opt.add_group(Group::new("bad", Selector::All).betas(0.9, 1.0)),
        Err(Error::Config(_))
    ));
    let err = opt.register("bert.w", 3).unwrap_err();
    assert!(matches!(err, Error::MissingPretrained { .. }), "{err}");
    assert!(err.to_string().contains("bert.w"));
    let pp = vec![0.0f32; 4];
    let (mut m, mut v) = (vec![0.0f32; 3], vec![0.0f32; 4]);
    assert!(matches!(
        opt.register_with_state(
            "bert.w",
            4,
            Some(Pretrained::Borrowed(&pp)),
            Buffer::Borrowed(&mut m),
            Buffer::Borrowed(&mut v)
        ),
        Err(Error::Length {
            what: "exp_avg",
            ..
        })
    ));
    opt.register_pretrained("bert.w", &pp).unwrap();
    assert!(matches!(
        opt.register_pretrained("bert.w", &pp),
        Err(Error::DuplicateParam(_))
    ));
    // Learning rates and groups by name.
    assert!(matches!(
        opt.set_group_lr("nope", 1e-5),
        Err(Error::UnknownGroup(_))
    ));
    assert!(matches!(opt.set_lr(f64::NAN), Err(Error::Config(_))));
    assert!(
        matches!(opt.set_lr(1.0), Err(Error::Config(_))),
        "the penalty diverges"
    );
    assert_eq!(opt.lr("enc").unwrap(), config().lr);
    assert!(matches!(
        opt.set_max_grad_norm(Some(-1.0)),
        Err(Error::MaxGradNorm(_))
    ));
    // Options.
    assert!(matches!(
        Optimizer::<f32>::new(Options {
            threads: 0,
            ..Options::new(config())
        }),
        Err(Error::Threads(0))
    ));
    assert!(Optimizer::<f32>::new(Options {
        max_grad_norm: Some(f64::NAN),
        ..Options::new(config())
    })
    .is_err());
    let diverging = RecAdamConfig {
        lr: 1e-3,
        ..config()
    };
    assert!(matches!(
        Optimizer::<f32>::new(Options::new(diverging)),
        Err(Error::Config(_))
    ));
}

/// A scheduled learning rate above the stability limit is refused at that step, unchanged.
#[test]
fn a_diverging_scheduled_rate_is_refused_before_any_write() {
    #[derive(Debug)]
    struct Spike;
    impl LrSchedule for Spike {
        fn multiplier(&self, t: u64) -> f64 {
            if t == 2 {
                100.0
            } else {
                1.0
            }
        }
        fn describe(&self) -> String {
            "spike".into()
        }
    }
    let pretrained = Model::new();
    let mut model = Model::new();
    let mut opt = optimizer(
        Options {
            schedule: Box::new(Spike),
            ..Options::new(config())
        },
        &pretrained,
    );
    let g = model.grads(1);
    step(&mut opt, &mut model, &g).unwrap();
    let before = bits(&model.values);
    let err = step(&mut opt, &mut model, &g).unwrap_err();
    assert!(err.to_string().contains("diverge"), "{err}");
    assert_eq!(bits(&model.values), before);
    assert_eq!(opt.steps(), 1);
}

/// Caller-provided state buffers (pinned host memory on a GPU host) give the same result as
/// optimizer-owned ones, and hold the state where the caller put it.
#[test]
fn caller_provided_state_is_updated_in_place() {
    let pretrained = Model::new();
    let mut owned_model = Model::new();
    let mut owned = optimizer(Options::new(config()), &pretrained);
    let mut pinned: Vec<(Vec<f32>, Vec<f32>)> = SHAPES
        .iter()
        .map(|&(_, n)| (vec![0.0; n], vec![0.0; n]))
        .collect();
    let mut model = Model::new();
    {
        let mut opt =
            Optimizer::with_kernel(Options::new(config()), Kernel::from_env().unwrap()).unwrap();
        for g in Group::glue_script("bert.") {
            opt.add_group(g).unwrap();
        }
        for ((k, &(name, n)), (m, v)) in SHAPES.iter().enumerate().zip(pinned.iter_mut()) {
            let pp = Some(Pretrained::from(&pretrained.pretrained[k]));
            opt.register_with_state(name, n, pp, Buffer::Borrowed(m), Buffer::Borrowed(v))
                .unwrap();
        }
        for t in 1..=3 {
            let g = model.grads(t);
            step(&mut opt, &mut model, &g).unwrap();
            step(&mut owned, &mut owned_model, &g).unwrap();
        }
    }
    assert_eq!(bits(&model.values), bits(&owned_model.values));
    for (k, id) in owned.ids().enumerate() {
        assert_eq!(owned.state(id).unwrap().0, pinned[k].0.as_slice());
    }
}

/// The linear schedule is Hugging Face's: it reproduces, bit for bit, the learning rates the
/// official runs used in every golden case (found by trying every warm-up length).
#[test]
fn linear_warmup_reproduces_the_golden_learning_rates() {
    for (name, case) in golden::cases() {
        let t_total = case.steps;
        let base = case.config.lr;
        let matches = |s: &dyn LrSchedule| {
            (1..=t_total).all(|t| base * s.multiplier(t) == case.lr_per_step[t as usize - 1])
        };
        let found = matches(&Constant)
            || (0..=t_total).any(|w| {
                matches(&LinearWarmupDecay {
                    warmup: w,
                    total: t_total,
                })
            });
        assert!(found, "{name}: no schedule reproduces lr_per_step");
    }
    let s = LinearWarmupDecay {
        warmup: 2,
        total: 5,
    };
    let got: Vec<f64> = (1..=6).map(|t| s.multiplier(t)).collect();
    assert_eq!(got, [0.0, 0.5, 1.0, 2.0 / 3.0, 1.0 / 3.0, 0.0]);
    let c = CosineWarmup {
        warmup: 0,
        total: 10,
        floor: 0.0,
    };
    assert_eq!(c.multiplier(1), 1.0);
    assert!((c.multiplier(6) - 0.5).abs() < 1e-15);
    assert!(c.multiplier(11).abs() < 1e-15 && c.multiplier(50).abs() < 1e-15);
}

//! The optimizer as another framework embeds it: handles, per-group hyperparameters, the
//! caller's learning rate, frozen parameters, both step counts, owned θ*, the caller's pool, and
//! a resume that keeps all of it. Each is checked against the core reference update run by hand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use recadam_core::{update, Annealing, RecAdamConfig, Slices, StepScalars};
use recadam_std::{
    Group, Kernel, Optimizer, Options, ParamId, ParamMut, Pool, Pretrained, ScopedThreads,
    Selector, StepCount,
};
use recadam_testkit::fixtures::noise;

/// Lengths of the three parameters: an encoder matrix, an encoder bias, a head.
const LENS: [usize; 3] = [1000, 37, 130];
const NAMES: [&str; 3] = ["enc.w", "enc.b", "head.w"];

fn base() -> RecAdamConfig {
    RecAdamConfig {
        lr: 1e-4,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 3.0 },
        ..RecAdamConfig::default()
    }
}

fn pretrained() -> Vec<Vec<f32>> {
    LENS.iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| noise(i + 1000 * k) * 0.1).collect())
        .collect()
}

/// The gradient of parameter `k` at step `t`.
fn grad(k: usize, t: u64, value: &[f32]) -> Vec<f32> {
    value
        .iter()
        .enumerate()
        .map(|(i, &x)| x * 0.3 + noise(i + 7919 * t as usize + 31 * k) * 0.05)
        .collect()
}

fn kernel() -> Kernel {
    Kernel::from_env().unwrap()
}

/// The core update of one parameter, with its own config, step count and learning rate.
struct Reference {
    values: Vec<Vec<f32>>,
    state: Vec<(Vec<f32>, Vec<f32>)>,
    pretrained: Vec<Vec<f32>>,
}

impl Reference {
    fn new() -> Reference {
        Reference {
            values: pretrained(),
            state: LENS.iter().map(|&n| (vec![0.0; n], vec![0.0; n])).collect(),
            pretrained: pretrained(),
        }
    }

    fn update(&mut self, k: usize, config: &RecAdamConfig, t: u64, lr: f64, g: &[f32]) {
        let s = StepScalars::<f32>::new(config, t, lr).unwrap();
        let (m, v) = &mut self.state[k];
        let pp = config
            .has_penalty()
            .then_some(self.pretrained[k].as_slice());
        update(&s, Slices::new(&mut self.values[k], g, m, v, pp).unwrap());
    }
}

/// Steps the optimizer over the parameters `which` (the others are absent).
fn step(opt: &mut Optimizer<'_, f32>, values: &mut [Vec<f32>], which: &[usize], t: u64) {
    let ids: Vec<ParamId> = opt.ids().collect();
    let grads: Vec<Vec<f32>> = (0..LENS.len()).map(|k| grad(k, t, &values[k])).collect();
    let mut params: Vec<ParamMut<'_, f32>> = values
        .iter_mut()
        .enumerate()
        .filter(|(k, _)| which.contains(k))
        .map(|(k, value)| ParamMut::new(ids[k], value, &grads[k]))
        .collect();
    opt.step(&mut params).unwrap();
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|x| x.iter().map(|f| f.to_bits()).collect())
        .collect()
}

/// The official script's kind of setup: each group its own lr, betas, eps, bias correction,
/// weight decay, anneal_w, pretrain_cof and annealing shape.
fn grouped(step_count: StepCount, pretrained: &[Vec<f32>]) -> Optimizer<'_, f32> {
    let options = Options {
        step_count,
        ..Options::new(base())
    };
    let mut opt = Optimizer::with_kernel(options, kernel()).unwrap();
    opt.add_group(
        Group::new("enc_bias", Selector::Prefix("enc.b".into()))
            .weight_decay(0.0)
            .pretrain_cof(300.0)
            .betas(0.8, 0.99)
            .eps(1e-6)
            .annealing(Annealing::Linear { t0: 4.0 }),
    )
    .unwrap();
    opt.add_group(
        Group::new("head", Selector::Prefix("head.".into()))
            .anneal_w(0.0)
            .lr(1e-3)
            .correct_bias(false),
    )
    .unwrap();
    for (k, name) in NAMES.iter().enumerate() {
        opt.register_pretrained(name, &pretrained[k]).unwrap();
    }
    opt
}

/// The three configs of [`grouped`], written out by hand: enc.w takes the defaults.
fn grouped_configs() -> [RecAdamConfig; 3] {
    [
        base(),
        RecAdamConfig {
            weight_decay: 0.0,
            pretrain_cof: 300.0,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            annealing: Annealing::Linear { t0: 4.0 },
            ..base()
        },
        RecAdamConfig {
            anneal_w: 0.0,
            lr: 1e-3,
            correct_bias: false,
            ..base()
        },
    ]
}

#[test]
fn each_group_uses_its_own_hyperparameters() {
    let pp = pretrained();
    let mut opt = grouped(StepCount::Global, &pp);
    // enc.w fell to the default group: registering before adding a group that takes it is fine.
    let groups: Vec<&str> = opt.groups().map(|(g, _)| g.name.as_str()).collect();
    assert_eq!(groups, ["enc_bias", "head", Group::DEFAULT]);
    let mut values = pretrained();
    let mut reference = Reference::new();
    let configs = grouped_configs();
    for t in 1..=8 {
        for (k, c) in configs.iter().enumerate() {
            let g = grad(k, t, &reference.values[k]);
            reference.update(k, c, t, c.lr, &g);
        }
        step(&mut opt, &mut values, &[0, 1, 2], t);
        assert_eq!(bits(&values), bits(&reference.values), "step {t}");
    }
    assert_eq!(opt.lr("head").unwrap(), 1e-3);
}

/// A framework's scheduler sets the learning rate before each step: for every group, or for one.
#[test]
fn the_callers_learning_rate_drives_each_step() {
    let pp = pretrained();
    let mut opt = grouped(StepCount::Global, &pp);
    let mut values = pretrained();
    let mut reference = Reference::new();
    let mut configs = grouped_configs();
    for t in 1..=8u64 {
        let lr = 1e-4 * (1.0 + (t as f64).sin()) / 2.0;
        opt.set_lr(lr).unwrap();
        let head_lr = 5e-4 / t as f64;
        opt.set_group_lr("head", head_lr).unwrap();
        assert_eq!(opt.lr("head").unwrap(), head_lr);
        assert_eq!(opt.lr(Group::DEFAULT).unwrap(), lr);
        for (k, c) in configs.iter_mut().enumerate() {
            c.lr = if k == 2 { head_lr } else { lr };
            let g = grad(k, t, &reference.values[k]);
            reference.update(k, c, t, c.lr, &g);
        }
        step(&mut opt, &mut values, &[0, 1, 2], t);
        assert_eq!(bits(&values), bits(&reference.values), "step {t}");
        let report = opt.last_step().unwrap();
        assert_eq!(report.lr, lr, "the report gives the first group's rate");
    }
}

/// A parameter left out of a step is frozen: no update and no state change. When it comes back,
/// the global count gives it the optimizer's t, the per-parameter count its own.
#[test]
fn an_absent_parameter_is_frozen_under_either_step_count() {
    for step_count in [StepCount::Global, StepCount::PerParam] {
        let pp = pretrained();
        let mut opt = grouped(step_count, &pp);
        let mut values = pretrained();
        let mut reference = Reference::new();
        let configs = grouped_configs();
        let mut own_t = [0u64; 3];
        // The head is frozen on steps 2 to 4 (a frozen layer, or no gradient that step).
        for t in 1..=7u64 {
            let which: &[usize] = if (2..=4).contains(&t) {
                &[0, 1]
            } else {
                &[0, 1, 2]
            };
            let frozen_before = (
                values[2].clone(),
                opt.state(opt.ids().nth(2).unwrap())
                    .map(|(m, v)| (m.to_vec(), v.to_vec())),
            );
            for &k in which {
                own_t[k] += 1;
                let tk = match step_count {
                    StepCount::Global => t,
                    StepCount::PerParam => own_t[k],
                };
                let g = grad(k, t, &reference.values[k]);
                reference.update(k, &configs[k], tk, configs[k].lr, &g);
            }
            step(&mut opt, &mut values, which, t);
            assert_eq!(
                bits(&values),
                bits(&reference.values),
                "{step_count:?} step {t}"
            );
            if which.len() == 2 {
                let after = (
                    values[2].clone(),
                    opt.state(opt.ids().nth(2).unwrap())
                        .map(|(m, v)| (m.to_vec(), v.to_vec())),
                );
                assert!(after == frozen_before, "a frozen parameter changed");
            }
        }
        let head = opt.id("head.w").unwrap();
        assert_eq!(opt.param_steps(head), Some(4));
        assert_eq!(opt.steps(), 7);
    }
}

/// θ* moved in or shared through an `Arc` gives the same bits as borrowed, and the optimizer
/// then has no lifetime to carry: a plain struct field.
#[test]
fn owned_and_shared_pretrained_weights_need_no_lifetime() {
    struct Trainer {
        opt: Optimizer<'static, f32>,
        ids: Vec<ParamId>,
        values: Vec<Vec<f32>>,
    }
    let make = |shared: bool| {
        let mut opt = Optimizer::with_kernel(Options::new(base()), kernel()).unwrap();
        let ids = pretrained()
            .into_iter()
            .zip(NAMES)
            .map(|(pp, name)| {
                let pp: Pretrained<'static, f32> = if shared {
                    Arc::<[f32]>::from(pp).into()
                } else {
                    pp.into()
                };
                opt.register_pretrained(name, pp).unwrap()
            })
            .collect();
        Trainer {
            opt,
            ids,
            values: pretrained(),
        }
    };
    let pp = pretrained();
    let mut borrowed = Optimizer::with_kernel(Options::new(base()), kernel()).unwrap();
    for (k, name) in NAMES.iter().enumerate() {
        borrowed
            .register_pretrained(name, pp[k].as_slice())
            .unwrap();
    }
    let mut values = pretrained();
    let mut owned = make(false);
    let mut shared = make(true);
    for t in 1..=4 {
        step(&mut borrowed, &mut values, &[0, 1, 2], t);
        for tr in [&mut owned, &mut shared] {
            assert_eq!(tr.ids, tr.opt.ids().collect::<Vec<_>>());
            step(&mut tr.opt, &mut tr.values, &[0, 1, 2], t);
        }
    }
    assert_eq!(bits(&owned.values), bits(&values));
    assert_eq!(bits(&shared.values), bits(&values));
}

/// A pool that counts the tasks it ran: the step runs on the caller's pool, with the same bits
/// as on one thread.
#[derive(Debug)]
struct Counting {
    inner: ScopedThreads,
    tasks: AtomicUsize,
}

impl Pool for Counting {
    fn threads(&self) -> usize {
        self.inner.threads()
    }
    fn run(&self, tasks: usize, work: &(dyn Fn(usize) + Sync)) {
        self.tasks.fetch_add(tasks, Ordering::Relaxed);
        self.inner.run(tasks, work);
    }
}

#[test]
fn the_step_runs_on_the_callers_pool_with_the_same_bits() {
    let run = |pool: Option<Arc<dyn Pool>>| {
        let pp = pretrained();
        let options = Options {
            max_grad_norm: Some(0.05),
            ..Options::new(base())
        };
        let mut opt = Optimizer::with_kernel(options, kernel()).unwrap();
        for (k, name) in NAMES.iter().enumerate() {
            opt.register_pretrained(name, pp[k].as_slice()).unwrap();
        }
        if let Some(pool) = pool {
            opt.set_pool(pool);
        }
        let mut values = pretrained();
        for t in 1..=4 {
            step(&mut opt, &mut values, &[0, 1, 2], t);
        }
        assert!(
            opt.last_step().unwrap().grad_scale < 1.0,
            "clipping engaged"
        );
        bits(&values)
    };
    let one = run(None);
    let counting = Arc::new(Counting {
        inner: ScopedThreads { threads: 3 },
        tasks: AtomicUsize::new(0),
    });
    assert_eq!(run(Some(counting.clone())), one);
    // Four steps, each a gradient pass and an update in three parts.
    assert_eq!(counting.tasks.load(Ordering::Relaxed), 4 * 2 * 3);
    let rayon = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    assert_eq!(run(Some(Arc::new(rayon))), one);
}

/// A checkpoint keeps what an embedder changes while training: each parameter's step count (per
/// parameter) and each group's learning rate.
#[test]
fn a_resume_keeps_per_parameter_steps_and_the_callers_learning_rates() {
    let schedule_lr = |t: u64| 1e-4 / t as f64;
    let train = |opt: &mut Optimizer<'_, f32>,
                 values: &mut [Vec<f32>],
                 ts: std::ops::RangeInclusive<u64>| {
        for t in ts {
            let which: &[usize] = if t % 3 == 0 { &[0] } else { &[0, 1, 2] };
            step(opt, values, which, t);
            // The caller's scheduler sets the next step's rate after each step.
            opt.set_lr(schedule_lr(t + 1)).unwrap();
            opt.set_group_lr("head", 10.0 * schedule_lr(t + 1)).unwrap();
        }
    };
    let pp = pretrained();
    let mut straight = grouped(StepCount::PerParam, &pp);
    let mut straight_values = pretrained();
    train(&mut straight, &mut straight_values, 1..=8);

    let mut first = grouped(StepCount::PerParam, &pp);
    let mut values = pretrained();
    train(&mut first, &mut values, 1..=5);
    let bytes = first.save_checkpoint_to_bytes().unwrap();
    let mut resumed = grouped(StepCount::PerParam, &pp);
    resumed.load_checkpoint_from_bytes(&bytes).unwrap();
    let head = resumed.id("head.w").unwrap();
    assert_eq!(resumed.param_steps(head), Some(4));
    assert_eq!(
        first.param_steps(head),
        None,
        "a handle is its optimizer's own"
    );
    assert_eq!(first.param_steps(first.id("head.w").unwrap()), Some(4));
    assert_eq!(resumed.lr("head").unwrap(), first.lr("head").unwrap());
    train(&mut resumed, &mut values, 6..=8);
    assert_eq!(bits(&values), bits(&straight_values));

    // Another step count kind is another setup.
    let mut global = grouped(StepCount::Global, &pp);
    let err = global.load_checkpoint_from_bytes(&bytes).unwrap_err();
    assert!(err.to_string().contains("step_count"), "{err}");
}

/// State brought over from elsewhere: the step counts set by hand, then steps continue from
/// them (a per-parameter count of 5 makes the next step t = 6). A foreign handle changes
/// nothing.
#[test]
fn step_counts_set_by_hand_drive_the_next_step() {
    let pp = pretrained();
    let mut opt = grouped(StepCount::PerParam, &pp);
    let ids: Vec<ParamId> = opt.ids().collect();
    let other = Optimizer::<f32>::new(Options::new(base()))
        .map(|mut o| o.register_pretrained("x", vec![0.0f32]).unwrap());
    assert!(opt
        .set_step_counts(9, &[(ids[0], 3), (other.unwrap(), 1)])
        .is_err());
    assert_eq!((opt.steps(), opt.param_steps(ids[0])), (0, Some(0)));
    opt.set_step_counts(7, &[(ids[0], 5), (ids[1], 2), (ids[2], 7)])
        .unwrap();
    let mut values = pretrained();
    let mut reference = Reference::new();
    let configs = grouped_configs();
    for (k, t) in [(0, 6), (1, 3), (2, 8)] {
        let g = grad(k, 8, &reference.values[k]);
        reference.update(k, &configs[k], t, configs[k].lr, &g);
    }
    step(&mut opt, &mut values, &[0, 1, 2], 8);
    assert_eq!(bits(&values), bits(&reference.values));
    assert_eq!(opt.steps(), 8);
    assert_eq!(opt.param_steps(ids[1]), Some(3));
}

//! `step_held`, the step over caller-held state (the Python package's and other bindings'
//! path): the same bits as the optimizer with per-parameter step counts, on any pool, and every
//! refusal before any write.

use recadam_core::{Annealing, RecAdamConfig, Slices};
use recadam_std::{
    step_held, thread_pool, Error, Group, HeldParam, Kernel, NonFiniteGuard, Optimizer, Options,
    ParamMut, Pool, Selector, StepCount,
};
use recadam_testkit::fixtures::noise;

const LENS: [usize; 3] = [70_001, 37, 130];

fn configs() -> [RecAdamConfig; 2] {
    let enc = RecAdamConfig {
        lr: 1e-4,
        weight_decay: 0.01,
        eps: 1e-6,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 3.0 },
        ..RecAdamConfig::default()
    };
    let head = RecAdamConfig {
        anneal_w: 0.0,
        lr: 1e-3,
        ..enc
    };
    [enc, head]
}

fn init(k: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| noise(i + 1000 * k) * 0.1).collect()
}

fn grad(k: usize, t: u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| noise(i + 7919 * t as usize + 31 * k) * 0.05)
        .collect()
}

/// Caller-held state of the three parameters.
struct Held {
    values: Vec<Vec<f32>>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    pretrained: Vec<Vec<f32>>,
    steps: Vec<u64>,
}

impl Held {
    fn new() -> Held {
        let values: Vec<Vec<f32>> = LENS.iter().enumerate().map(|(k, &n)| init(k, n)).collect();
        Held {
            pretrained: values.clone(),
            m: LENS.iter().map(|&n| vec![0.0; n]).collect(),
            v: LENS.iter().map(|&n| vec![0.0; n]).collect(),
            values,
            steps: vec![0; LENS.len()],
        }
    }

    /// Steps the parameters `which` with gradients `grads` (indexed like the parameters).
    fn step(
        &mut self,
        pool: &dyn Pool,
        guard: NonFiniteGuard,
        which: &[usize],
        grads: &[Vec<f32>],
    ) -> Result<recadam_std::HeldReport, Error> {
        let mut params = Vec::new();
        for (k, (((value, m), v), pp)) in self
            .values
            .iter_mut()
            .zip(&mut self.m)
            .zip(&mut self.v)
            .zip(&self.pretrained)
            .enumerate()
        {
            if !which.contains(&k) {
                continue;
            }
            let group = usize::from(k == 2);
            let pp = (group == 0).then_some(&pp[..]);
            params.push(HeldParam {
                slices: Slices::new(value, &grads[k], m, v, pp)?,
                group,
                t: self.steps[k] + 1,
            });
        }
        let report = step_held(Kernel::from_env()?, pool, guard, &configs(), params)?;
        if report.skipped.is_none() {
            for &k in which {
                self.steps[k] += 1;
            }
        }
        Ok(report)
    }
}

fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
    v.iter()
        .map(|x| x.iter().map(|f| f.to_bits()).collect())
        .collect()
}

#[test]
fn held_state_steps_give_the_optimizers_bits_on_any_pool() {
    let [enc, head] = configs();
    for threads in [1, 2, 3] {
        let pool = thread_pool(threads).unwrap();
        let mut held = Held::new();
        let options = Options {
            step_count: StepCount::PerParam,
            ..Options::new(enc)
        };
        let mut opt = Optimizer::<f32>::with_kernel(options, Kernel::from_env().unwrap()).unwrap();
        opt.add_group(
            Group::new("head", Selector::Prefix("head".into()))
                .anneal_w(0.0)
                .lr(head.lr),
        )
        .unwrap();
        let ids = [
            opt.register_pretrained("enc.w", held.pretrained[0].clone())
                .unwrap(),
            opt.register_pretrained("enc.b", held.pretrained[1].clone())
                .unwrap(),
            opt.register("head.w", LENS[2]).unwrap(),
        ];
        let mut values = held.values.clone();
        for t in 1..=6u64 {
            // The bias has no gradient on steps 2 and 3: it keeps its own count.
            let which: &[usize] = if (2..=3).contains(&t) {
                &[0, 2]
            } else {
                &[0, 1, 2]
            };
            let grads: Vec<Vec<f32>> = LENS
                .iter()
                .enumerate()
                .map(|(k, &n)| grad(k, t, n))
                .collect();
            let report = held
                .step(pool.as_ref(), NonFiniteGuard::Refuse, which, &grads)
                .unwrap();
            assert_eq!(report.skipped, None);
            let mut params: Vec<ParamMut<'_, f32>> = values
                .iter_mut()
                .enumerate()
                .filter(|(k, _)| which.contains(k))
                .map(|(k, value)| ParamMut::new(ids[k], value, &grads[k]))
                .collect();
            let stepped = opt.step(&mut params).unwrap();
            assert_eq!(
                report.grad_norm, stepped.grad_norm,
                "threads {threads} step {t}"
            );
            assert_eq!(
                bits(&held.values),
                bits(&values),
                "threads {threads} step {t}"
            );
        }
        assert_eq!(held.steps, [6, 4, 6]);
        for (k, id) in ids.iter().enumerate() {
            let (m, v) = opt.state(*id).unwrap();
            assert_eq!(
                bits(&[m.to_vec(), v.to_vec()]),
                bits(&[held.m[k].clone(), held.v[k].clone()])
            );
        }
    }
}

#[test]
fn refusals_change_nothing() {
    let pool = thread_pool(2).unwrap();
    let mut held = Held::new();
    let mut grads: Vec<Vec<f32>> = LENS
        .iter()
        .enumerate()
        .map(|(k, &n)| grad(k, 1, n))
        .collect();
    let before = (bits(&held.values), bits(&held.m), bits(&held.v));
    grads[1][5] = f32::NAN;
    let err = held
        .step(pool.as_ref(), NonFiniteGuard::Refuse, &[0, 1, 2], &grads)
        .unwrap_err();
    assert!(
        matches!(err, Error::NonFiniteGradient { ref name } if name == "#1"),
        "{err}"
    );
    let report = held
        .step(pool.as_ref(), NonFiniteGuard::Skip, &[0, 1, 2], &grads)
        .unwrap();
    assert_eq!(report.skipped, Some(1));
    assert_eq!((bits(&held.values), bits(&held.m), bits(&held.v)), before);

    // A penalised group without θ*, an unknown group, step 0, a diverging rate.
    let (mut p, g, mut m, mut v) = (
        vec![0.0f32; 4],
        vec![0.1f32; 4],
        vec![0.0f32; 4],
        vec![0.0f32; 4],
    );
    let cases: [(usize, u64, f64); 4] = [(0, 1, 1e-4), (7, 1, 1e-4), (1, 0, 1e-4), (0, 1, 1.0)];
    for (group, t, lr) in cases {
        let pp = [0.0f32; 4];
        let mut configs = configs();
        configs[0].lr = lr;
        let with_pp = !(group == 0 && lr == 1e-4);
        let slices = Slices::new(&mut p, &g, &mut m, &mut v, with_pp.then_some(&pp[..])).unwrap();
        let params = vec![HeldParam { slices, group, t }];
        let err = step_held(
            Kernel::best(),
            pool.as_ref(),
            NonFiniteGuard::Refuse,
            &configs,
            params,
        );
        assert!(err.is_err(), "group {group} t {t} lr {lr}");
        assert!(p.iter().chain(&m).chain(&v).all(|&x| x == 0.0));
    }
}

//! Bad input is a typed error, never a panic, and a refused step changes nothing.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer as _;
use recadam_candle::{Error, MissingGrad, NonFiniteGuard, ParamsRecAdam, RecAdam};
use recadam_core::{Annealing, RecAdamConfig};

fn params() -> ParamsRecAdam {
    ParamsRecAdam {
        config: RecAdamConfig {
            lr: 1e-2,
            // λ(1) ≈ 0.27: the task gradient moves vars at once, and the penalty is live.
            annealing: Annealing::Sigmoid { k: 0.5, t0: 3.0 },
            pretrain_cof: 1.0,
            ..RecAdamConfig::default()
        },
        ..ParamsRecAdam::default()
    }
}

fn var(values: &[f32]) -> Var {
    Var::from_slice(values, values.len(), &Device::Cpu).unwrap()
}

fn values(v: &Var) -> Vec<f32> {
    v.as_tensor().to_vec1().unwrap()
}

fn grad(values: &[f32]) -> Tensor {
    Tensor::new(values, &Device::Cpu).unwrap()
}

#[test]
fn vars_of_another_type_are_refused_at_construction() {
    for dtype in [DType::U32, DType::BF16, DType::F16, DType::F64] {
        let v = Var::zeros(4, dtype, &Device::Cpu).unwrap();
        let err = RecAdam::<f32>::new_named(vec![("w".into(), v)], params()).unwrap_err();
        assert!(
            matches!(&err, Error::DType { name, got, want: DType::F32 } if name == "w" && *got == dtype),
            "{err}"
        );
    }
    // Through the candle trait: a candle error whose message names the var.
    let v = Var::zeros(2, DType::U8, &Device::Cpu).unwrap();
    let err = <RecAdam<f64> as candle_nn::Optimizer>::new(vec![v], params()).unwrap_err();
    assert!(
        err.to_string().contains("var.0") && err.to_string().contains("U8"),
        "{err}"
    );
}

#[test]
fn a_var_given_twice_is_refused() {
    let w = var(&[1.0, 2.0]);
    let err = RecAdam::<f32>::new(vec![w.clone(), w], params()).unwrap_err();
    assert!(err.to_string().contains("var.1"), "{err}");
}

#[test]
fn a_pretrained_tensor_of_another_shape_is_refused() {
    let w = var(&[1.0, 2.0]);
    let pp = HashMap::from([("w".to_string(), grad(&[1.0, 2.0, 3.0]))]);
    let err =
        RecAdam::<f32>::with_pretrained(vec![("w".into(), w.clone())], &pp, params()).unwrap_err();
    assert!(
        matches!(&err, Error::Mismatch { name, .. } if name == "w"),
        "{err}"
    );
    // A penalised var without θ*.
    let err = RecAdam::<f32>::with_pretrained(vec![("w".into(), w)], &HashMap::new(), params())
        .unwrap_err();
    assert!(err.to_string().contains("pretrained"), "{err}");
}

/// Each bad step returns its error and leaves both vars and the step count as they were.
#[test]
fn refused_steps_change_nothing() {
    let (a, b) = (var(&[1.0, -1.0]), var(&[0.5, 0.25, 2.0]));
    let mut opt = RecAdam::<f32>::new(vec![a.clone(), b.clone()], params()).unwrap();
    let good = |ga: &[f32], gb: Tensor| {
        let mut s = GradStore::default();
        s.insert(&a, grad(ga));
        s.insert(&b, gb);
        s
    };
    let unchanged = |opt: &RecAdam<f32>| {
        assert_eq!(values(&a), [1.0, -1.0]);
        assert_eq!(values(&b), [0.5, 0.25, 2.0]);
        assert_eq!(opt.optimizer().steps(), 0);
    };

    // A missing gradient.
    let mut only_a = GradStore::default();
    only_a.insert(&a, grad(&[1.0, 1.0]));
    let err = opt.try_step(&only_a).unwrap_err();
    assert!(
        matches!(&err, Error::MissingGrad(n) if n == "var.1"),
        "{err}"
    );
    unchanged(&opt);
    // A gradient of the wrong shape, or type.
    let err = opt
        .try_step(&good(&[1.0, 1.0], grad(&[1.0, 1.0])))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Mismatch { name, .. } if name == "var.1"),
        "{err}"
    );
    let g64 = Tensor::new(&[1.0f64, 1.0, 1.0], &Device::Cpu).unwrap();
    let err = opt.try_step(&good(&[1.0, 1.0], g64)).unwrap_err();
    assert!(err.to_string().contains("F64"), "{err}");
    unchanged(&opt);
    // A non-finite gradient, under the default guard.
    let err = opt
        .try_step(&good(&[1.0, f32::NAN], grad(&[1.0, 1.0, 1.0])))
        .unwrap_err();
    assert!(err.to_string().contains("var.0"), "{err}");
    unchanged(&opt);
    // A gradient that is the var itself: candle refuses to lend one storage twice.
    let err = opt
        .try_step(&good(&[1.0, 1.0], b.as_tensor().clone()))
        .unwrap_err();
    assert!(matches!(err, Error::Candle(_)), "{err}");
    unchanged(&opt);
    // A learning rate at which the penalty diverges, and a negative one: refused at the next
    // step, through the candle trait too.
    for lr in [10.0, -1.0, f64::NAN] {
        opt.set_learning_rate(lr);
        assert!(opt.learning_rate().is_nan() || opt.learning_rate() == lr);
        let err = opt.step(&good(&[1.0, 1.0], grad(&[1.0, 1.0, 1.0])));
        assert!(err.is_err(), "lr {lr} was taken");
        unchanged(&opt);
    }
    // A good rate again: the step runs.
    opt.set_learning_rate(1e-2);
    opt.step(&good(&[1.0, 1.0], grad(&[1.0, 1.0, 1.0])))
        .unwrap();
    assert_eq!(opt.optimizer().steps(), 1);
    assert!(values(&a)[0] < 1.0);
}

#[test]
fn frozen_vars_and_skipped_steps_are_options() {
    let (a, b) = (var(&[1.0, -1.0]), var(&[0.5]));
    let p = ParamsRecAdam {
        missing_grad: MissingGrad::Freeze,
        guard: NonFiniteGuard::Skip,
        ..params()
    };
    let mut opt = RecAdam::<f32>::new(vec![a.clone(), b.clone()], p).unwrap();
    let mut only_a = GradStore::default();
    only_a.insert(&a, grad(&[1.0, 1.0]));
    let report = opt.try_step(&only_a).unwrap();
    assert_eq!(report.updated, 1);
    assert_eq!(values(&b), [0.5], "a var without a gradient stays");
    assert!(values(&a)[0] < 1.0);
    let mut bad = GradStore::default();
    bad.insert(&a, grad(&[f32::INFINITY, 1.0]));
    let before = values(&a);
    let report = opt.try_step(&bad).unwrap();
    assert_eq!(report.skipped.as_deref(), Some("var.0"));
    assert_eq!(values(&a), before);
    assert_eq!(opt.optimizer().skipped_steps(), 1);
}

//! Bad input is an error, never a panic or a partial step, and a refused step changes nothing.

mod common;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor, TensorData};
use common::{bits, device, grads, model, params, Model};
use recadam_burn::{
    Annealing, Error, MissingGrad, NonFiniteGuard, RecAdam, RecAdamConfig, RecAdamOptimizer,
};

const LR: f64 = 1e-4;

/// λ = w from the first step (constant annealing), so a step moves every parameter.
fn optim() -> RecAdamOptimizer {
    let config = RecAdamConfig {
        annealing: Annealing::Constant,
        ..RecAdamConfig::default()
    };
    RecAdamOptimizer::glue_script("classifier", config, 1).unwrap()
}

/// After a refused (or skipped) step, one good step gives what one good step gives from scratch.
fn still_fresh(used: RecAdamOptimizer, m: Model) {
    still_fresh_as(used, m, optim)
}

fn still_fresh_as(mut used: RecAdamOptimizer, m: Model, fresh: impl Fn() -> RecAdamOptimizer) {
    let want = fresh()
        .try_step(LR, m.clone(), grads(&m, 1, 1.0))
        .unwrap()
        .module;
    let got = used
        .try_step(LR, m.clone(), grads(&m, 1, 1.0))
        .unwrap()
        .module;
    assert_eq!(bits(&params(&got)), bits(&params(&want)));
}

fn refused(optim: &mut RecAdamOptimizer, m: &Model, g: GradientsParams) -> Error {
    let before = bits(&params(m));
    match optim.try_step(LR, m.clone(), g) {
        Ok(_) => panic!("the step was not refused"),
        Err(e) => {
            assert_eq!(bits(&params(m)), before);
            e
        }
    }
}

#[test]
fn a_missing_gradient_is_an_error_unless_frozen() {
    let m = model();
    let mut g = grads(&m, 1, 1.0);
    g.remove::<1>(m.encoder.norm.gamma.id).unwrap();
    let mut o = optim();
    let e = refused(&mut o, &m, g);
    assert!(
        matches!(&e, Error::MissingGrad(p) if p == "encoder.norm.gamma"),
        "{e}"
    );
    still_fresh(o, m.clone());

    let mut g = grads(&m, 1, 1.0);
    g.remove::<1>(m.encoder.norm.gamma.id).unwrap();
    let mut o = optim().with_missing_grad(MissingGrad::Freeze);
    let after = o.try_step(LR, m.clone(), g).unwrap().module;
    let (before, after) = (params(&m), params(&after));
    for ((name, _, b), (_, _, a)) in before.iter().zip(&after) {
        assert_eq!(a == b, *name == "encoder.norm.gamma", "{name}");
    }
}

#[test]
fn a_gradient_of_another_shape_or_type_is_an_error() {
    let m = model();
    let mut o = optim();
    let mut g = grads(&m, 1, 1.0);
    g.register(
        m.classifier.bias.as_ref().unwrap().id,
        Tensor::<1>::zeros([4], &common::cpu()),
    );
    let e = refused(&mut o, &m, g);
    assert!(
        matches!(&e, Error::Mismatch { name, .. } if name == "classifier.bias"),
        "{e}"
    );

    let mut g = grads(&m, 1, 1.0);
    let id = m.encoder.dense.weight.id;
    let f64_grad = g.remove::<2>(id).unwrap().cast(DType::F64);
    g.register(id, f64_grad);
    let e = refused(&mut o, &m, g);
    assert!(
        matches!(&e, Error::Mismatch { name, .. } if name == "encoder.dense.weight"),
        "{e}"
    );
    still_fresh(o, m);
}

#[test]
fn a_parameter_neither_f32_nor_f64_is_an_error() {
    // ndarray holds f32 and f64 only; burn's flex backend (CPU) has f16 and bf16.
    let flex = Device::from(burn::backend::FlexDevice).autodiff();
    for dtype in [DType::F16, DType::BF16] {
        let mut m = model().to_device(&flex);
        let beta = m.encoder.norm.beta.take().unwrap();
        let cast = Param::initialized(beta.id, beta.val().cast(dtype));
        m.encoder.norm.beta = Some(cast);
        let mut o = optim();
        let g = grads(&m, 1, 1.0).to_device(&flex, &m);
        let e = refused(&mut o, &m, g);
        assert!(
            matches!(&e, Error::DType { name, got } if name == "encoder.norm.beta" && *got == dtype),
            "{e}"
        );
    }
}

#[test]
fn a_non_finite_gradient_refuses_or_skips_the_step() {
    let m = model();
    let poisoned = |value: f32| {
        let mut g = grads(&m, 1, 1.0);
        let id = m.classifier.weight.id;
        let t = g.remove::<2>(id).unwrap();
        let mut values = t.to_data().try_into_vec::<f32>().unwrap();
        values[3] = value;
        g.register(
            id,
            Tensor::<2>::from_data(TensorData::new(values, t.shape()), &common::cpu()),
        );
        g
    };
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut o = optim();
        let e = refused(&mut o, &m, poisoned(bad));
        assert!(
            matches!(&e, Error::NonFiniteGradient(p) if p == "classifier.weight"),
            "{e}"
        );
        still_fresh(o, m.clone());

        let mut o = optim().with_guard(NonFiniteGuard::Skip);
        let s = o.try_step(LR, m.clone(), poisoned(bad)).unwrap();
        assert_eq!(s.skipped.as_deref(), Some("classifier.weight"));
        assert_eq!(bits(&params(&s.module)), bits(&params(&m)));
        still_fresh(o, m.clone());
    }
}

#[test]
fn a_bad_learning_rate_is_an_error() {
    let m = model();
    // The default penalty (w 1, γ 5000) diverges at lr ≥ 2 / (w·γ) = 4e-4 on the first steps.
    let sigmoid =
        || RecAdamOptimizer::glue_script("classifier", RecAdamConfig::default(), 1).unwrap();
    for lr in [-1e-4, f64::NAN, f64::INFINITY, 5e-4] {
        let mut o = sigmoid();
        let before = bits(&params(&m));
        let e = o.try_step(lr, m.clone(), grads(&m, 1, 1.0)).unwrap_err();
        assert!(matches!(e, Error::Optimizer(_)), "lr {lr}: {e}");
        assert_eq!(bits(&params(&m)), before);
        still_fresh_as(o, m.clone(), sigmoid);
    }
}

#[test]
fn bad_configurations_are_errors() {
    let bad = RecAdamConfig {
        beta2: 1.0,
        ..RecAdamConfig::default()
    };
    assert!(matches!(RecAdam::new(bad), Err(Error::Optimizer(_))));
    assert!(RecAdamOptimizer::glue_script("classifier", bad, 1).is_err());
    for head in ["", "class*", "a b"] {
        assert!(
            RecAdamOptimizer::glue_script(head, RecAdamConfig::default(), 1).is_err(),
            "{head:?}"
        );
    }
}

#[test]
fn given_pretrained_weights_must_match() {
    use burn::nn::LinearConfig;
    let m = model();
    let mut other = model();
    other.classifier = LinearConfig::new(5, 2).init(&device());
    other.encoder.dense = LinearConfig::new(6, 4).init(&device());
    let e = optim().with_pretrained(&m, &other).err().unwrap();
    assert!(
        matches!(&e, Error::Mismatch { name, .. } if name == "encoder.dense.bias"),
        "{e}"
    );
    // The head has no penalty: its θ* is not needed, so its shape does not matter.
    let mut head_only = model();
    head_only.classifier = LinearConfig::new(5, 2).init(&device());
    assert!(optim().with_pretrained(&m, &head_only).is_ok());
}

#[test]
fn huge_finite_gradients_are_not_taken_for_non_finite() {
    // Their sum overflows to infinity, which sends the guard to its exact check.
    let m = model();
    let mut g = grads(&m, 1, 1.0);
    let id = m.classifier.bias.as_ref().unwrap().id;
    g.remove::<1>(id).unwrap();
    g.register(
        id,
        Tensor::<1>::from_data(
            TensorData::new(vec![3e38f32, 3e38, 1.0], [3]),
            &common::cpu(),
        ),
    );
    let s = optim().try_step(LR, m.clone(), g).unwrap();
    assert_eq!(s.skipped, None);
    let before = params(&m);
    let after = params(&s.module);
    assert_ne!(before[5].2, after[5].2, "the head's bias did not move");
}

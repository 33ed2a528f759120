//! A small encoder with a task head, and deterministic gradients, for the module tests.

#![allow(dead_code)]

use burn::module::{Module, Param, ParamId};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Module, Debug)]
pub struct Encoder {
    pub dense: Linear,
    pub norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct Model {
    pub encoder: Encoder,
    pub classifier: Linear,
}

/// burn's ndarray backend, named: the tests also build burn's flex backend, which
/// `Device::default()` would prefer. (burn 0.22 deprecates ndarray in favour of flex; the
/// issue this adapter answers names ndarray, and the golden test runs on both.)
#[allow(deprecated)]
pub fn cpu() -> Device {
    Device::from(burn::backend::NdArrayDevice::default())
}

/// burn's module optimizer steps autodiff parameters, as burn's learner trains them.
pub fn device() -> Device {
    cpu().autodiff()
}

pub fn model() -> Model {
    let device = device();
    Model {
        encoder: Encoder {
            dense: LinearConfig::new(6, 5).init(&device),
            norm: LayerNormConfig::new(5).init(&device),
        },
        classifier: LinearConfig::new(5, 3).init(&device),
    }
}

/// A deterministic value in about [-1, 1] for element `i` of gradient `k` at step `t`.
pub fn noise(k: usize, t: usize, i: usize) -> f32 {
    let x = ((k * 7919 + t * 104_729 + i * 2_654_435_761) % 1_000_003) as f32;
    (x / 500_001.5) - 1.0
}

/// Every float parameter: its name, id, and values (flattened).
pub fn params(m: &Model) -> Vec<(&'static str, ParamId, Vec<f32>)> {
    fn flat<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
        // As f32 whatever the type (a test casts one to f16).
        p.val().into_data().try_into_vec_as::<f32>().unwrap()
    }
    let e = &m.encoder;
    vec![
        (
            "encoder.dense.weight",
            e.dense.weight.id,
            flat(&e.dense.weight),
        ),
        (
            "encoder.dense.bias",
            e.dense.bias.as_ref().unwrap().id,
            flat(e.dense.bias.as_ref().unwrap()),
        ),
        ("encoder.norm.gamma", e.norm.gamma.id, flat(&e.norm.gamma)),
        (
            "encoder.norm.beta",
            e.norm.beta.as_ref().unwrap().id,
            flat(e.norm.beta.as_ref().unwrap()),
        ),
        (
            "classifier.weight",
            m.classifier.weight.id,
            flat(&m.classifier.weight),
        ),
        (
            "classifier.bias",
            m.classifier.bias.as_ref().unwrap().id,
            flat(m.classifier.bias.as_ref().unwrap()),
        ),
    ]
}

fn grad_of<const D: usize>(p: &Param<Tensor<D>>, k: usize, t: usize, scale: f32) -> Tensor<D> {
    let shape = p.val().shape();
    let n = shape.num_elements();
    let values: Vec<f32> = (0..n).map(|i| scale * noise(k, t, i)).collect();
    Tensor::from_data(TensorData::new(values, shape), &cpu())
}

/// The gradients of step `t`: noise of each parameter's shape, times `scale`.
pub fn grads(m: &Model, t: usize, scale: f32) -> GradientsParams {
    let mut g = GradientsParams::new();
    let e = &m.encoder;
    g.register(e.dense.weight.id, grad_of(&e.dense.weight, 0, t, scale));
    let b = e.dense.bias.as_ref().unwrap();
    g.register(b.id, grad_of(b, 1, t, scale));
    g.register(e.norm.gamma.id, grad_of(&e.norm.gamma, 2, t, scale));
    let b = e.norm.beta.as_ref().unwrap();
    g.register(b.id, grad_of(b, 3, t, scale));
    g.register(
        m.classifier.weight.id,
        grad_of(&m.classifier.weight, 4, t, scale),
    );
    let b = m.classifier.bias.as_ref().unwrap();
    g.register(b.id, grad_of(b, 5, t, scale));
    g
}

/// The bits of a parameter list's values.
pub fn bits(p: &[(&'static str, ParamId, Vec<f32>)]) -> Vec<(&'static str, Vec<u32>)> {
    p.iter()
        .map(|(name, _, v)| (*name, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

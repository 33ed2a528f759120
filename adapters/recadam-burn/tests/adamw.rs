//! RecAdam with w = 0 is AdamW: against burn's AdamW on a small network trained by autodiff.

mod common;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use recadam_burn::{RecAdam, RecAdamConfig, RecAdamOptimizer};

#[derive(Module, Debug)]
struct Mlp {
    a: Linear,
    b: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.b.forward(relu(self.a.forward(x)))
    }
}

fn data(device: &Device) -> (Tensor<2>, Tensor<2>) {
    let x: Vec<f32> = (0..64)
        .map(|i| ((i * 37 % 29) as f32 / 14.0) - 1.0)
        .collect();
    let y: Vec<f32> = x
        .chunks(4)
        .map(|r| 0.5 * r.iter().sum::<f32>() - r[0] * r[1])
        .collect();
    (
        Tensor::from_data(TensorData::new(x, [16, 4]), device),
        Tensor::from_data(TensorData::new(y, [16, 1]), device),
    )
}

fn flat(m: &Mlp) -> Vec<f32> {
    let mut out = Vec::new();
    for t in [m.a.weight.val(), m.b.weight.val()] {
        out.extend(t.into_data().try_into_vec::<f32>().unwrap());
    }
    for t in [&m.a.bias, &m.b.bias] {
        out.extend(
            t.as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap(),
        );
    }
    out
}

#[test]
fn recadam_without_penalty_is_burns_adamw() {
    const LR: f64 = 1e-2;
    let device = common::device();
    let start = Mlp {
        a: LinearConfig::new(4, 8).init(&device),
        b: LinearConfig::new(8, 1).init(&device),
    };
    let (x, y) = data(&device);
    let loss = |m: &Mlp| (m.forward(x.clone()) - y.clone()).powi_scalar(2).mean();

    let mut adamw = AdamWConfig::new()
        .with_epsilon(1e-12)
        .with_weight_decay(0.0)
        .init();
    let config = RecAdamConfig {
        eps: 1e-12,
        ..RecAdamConfig::adamw(LR, 0.0)
    };
    let mut recadam = RecAdamOptimizer::new(RecAdam::new(config).unwrap());
    let (mut a, mut r) = (start.clone(), start.clone());
    let first = loss(&a).into_scalar::<f32>();
    for _ in 0..20 {
        let g = GradientsParams::from_grads(loss(&a).backward(), &a);
        a = adamw.step(LR, a, g);
        let g = GradientsParams::from_grads(loss(&r).backward(), &r);
        r = recadam.try_step(LR, r, g).unwrap().module;
    }
    let (pa, pr, p0) = (flat(&a), flat(&r), flat(&start));
    let diff = pa
        .iter()
        .zip(&pr)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let moved = pa
        .iter()
        .zip(&p0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let last = loss(&r).into_scalar::<f32>();
    println!("max |AdamW - RecAdam| {diff:e}, largest move {moved}, loss {first} -> {last}");
    assert!(moved > 0.05, "the weights hardly moved: {moved}");
    assert!(last < first, "the loss did not fall: {first} -> {last}");
    // The same formula written two ways (eps added to √v̂ or to √v, see the README), in f32.
    assert!(
        diff < 2e-5,
        "RecAdam with w = 0 strays {diff} from burn's AdamW"
    );
}

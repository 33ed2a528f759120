//! Fine-tuning a small burn model with RecAdam and with burn's AdamW, side by side.
//!
//! `cargo run --release --example train`
//!
//! An encoder (two linear layers) is first trained on task A and taken as pretrained; then it is
//! fine-tuned with a new head on task B, once with burn's AdamW and once with RecAdam (the GLUE
//! script's groups: the encoder pulled towards its pretrained weights, the head free, no decay on
//! biases). Each run prints its task-B loss and how far the encoder went from its pretrained
//! weights. The RecAdam run also saves its optimizer state half-way with burn's record format,
//! loads it into a new optimizer and goes on from there.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};
use recadam_burn::{Annealing, RecAdamConfig, RecAdamOptimizer};

const STEPS: usize = 60;
const LR: f64 = 1e-2;

#[derive(Module, Debug)]
struct Encoder {
    l1: Linear,
    l2: Linear,
}

#[derive(Module, Debug)]
struct Net {
    encoder: Encoder,
    head: Linear,
}

impl Net {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let h = gelu(self.encoder.l1.forward(x));
        let h = gelu(self.encoder.l2.forward(h));
        self.head.forward(h)
    }
}

/// A batch of task `task`: the label (±1) is the sign of a combination of two input features.
fn batch(task: usize, seed: u64, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let x: Vec<f32> = (0..64 * 8).map(|_| next()).collect();
    let y: Vec<f32> = x
        .chunks(8)
        .map(|r| {
            let z = if task == 0 { r[0] + r[1] } else { r[2] - r[3] };
            if z > 0.0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    (
        Tensor::from_data(TensorData::new(x, [64, 8]), device),
        Tensor::from_data(TensorData::new(y, [64, 1]), device),
    )
}

/// The logistic loss, mean of log(1 + exp(−y·f(x))).
fn loss(net: &Net, task: usize, seed: u64, device: &Device) -> Tensor<1> {
    let (x, y) = batch(task, seed, device);
    (-(net.forward(x) * y)).exp().log1p().mean()
}

/// Euclidean distance of the encoder's parameters to `start`'s.
fn distance(a: &Encoder, b: &Encoder) -> f64 {
    fn values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
        p.val().into_data().try_into_vec::<f32>().unwrap()
    }
    let pairs = [
        (values(&a.l1.weight), values(&b.l1.weight)),
        (values(&a.l2.weight), values(&b.l2.weight)),
        (
            values(a.l1.bias.as_ref().unwrap()),
            values(b.l1.bias.as_ref().unwrap()),
        ),
        (
            values(a.l2.bias.as_ref().unwrap()),
            values(b.l2.bias.as_ref().unwrap()),
        ),
    ];
    pairs
        .iter()
        .flat_map(|(x, y)| x.iter().zip(y).map(|(a, b)| f64::from(a - b).powi(2)))
        .sum::<f64>()
        .sqrt()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // burn's default CPU backend here (ndarray, or flex where the flex feature is on, as in
    // this crate's tests and examples).
    let device = Device::default().autodiff();
    device.seed(7); // burn's initialisation, the same each run
    println!("burn device: {device:?}");
    let init = |i, o| LinearConfig::new(i, o).init(&device);
    // "Pretraining": the encoder and a head on task A.
    let mut net = Net {
        encoder: Encoder {
            l1: init(8, 32),
            l2: init(32, 32),
        },
        head: init(32, 1),
    };
    let mut adamw = AdamWConfig::new().init();
    for step in 0..200 {
        let g = GradientsParams::from_grads(loss(&net, 0, step, &device).backward(), &net);
        net = adamw.step(LR, net, g);
    }
    let pretrained = net.encoder;
    let dir = std::env::temp_dir().join(format!("recadam-burn-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    for which in ["burn AdamW", "recadam"] {
        // The same pretrained encoder, a fresh head for task B.
        let mut net = Net {
            encoder: pretrained.clone(),
            head: init(32, 1),
        };
        if which == "recadam" {
            let config = RecAdamConfig {
                annealing: Annealing::Sigmoid { k: 0.2, t0: 20.0 },
                pretrain_cof: 10.0,
                ..RecAdamConfig::default()
            };
            let optim = || RecAdamOptimizer::glue_script("head", config, 1);
            let mut opt = optim()?;
            for step in 0..STEPS as u64 {
                if step == STEPS as u64 / 2 {
                    // A checkpoint in burn's format, and a new optimizer resuming from it.
                    let file = dir.join("optimizer.bpk");
                    opt.save(&file)?;
                    opt = optim()?.load(&file)?;
                }
                let g = GradientsParams::from_grads(
                    loss(&net, 1, 1000 + step, &device).backward(),
                    &net,
                );
                net = opt.try_step(LR, net, g)?.module;
            }
        } else {
            let mut opt = AdamWConfig::new().init();
            for step in 0..STEPS as u64 {
                let g = GradientsParams::from_grads(
                    loss(&net, 1, 1000 + step, &device).backward(),
                    &net,
                );
                net = opt.step(LR, net, g);
            }
        }
        let b = loss(&net, 1, 9999, &device).into_scalar::<f32>();
        println!(
            "{which:>10}: task-B loss {b:.3} after {STEPS} steps; encoder distance to pretrained {:.3}",
            distance(&net.encoder, &pretrained)
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

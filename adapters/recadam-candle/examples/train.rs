//! Fine-tuning a small candle model with RecAdam and with candle's AdamW, side by side.
//!
//! `cargo run --release --example train`
//!
//! An "encoder" (two linear layers) is first trained on task A and taken as pretrained; then a
//! new head is fine-tuned with the encoder on task B, once with candle's AdamW and once with
//! RecAdam (the GLUE script's groups: the encoder pulled towards its pretrained weights, the head
//! free, no decay on biases). Each run prints its task-B loss and how far the encoder went from
//! its pretrained weights.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{linear, AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use recadam_candle::{ParamsRecAdam, RecAdam};
use recadam_core::{Annealing, RecAdamConfig};

const STEPS: usize = 60;

/// One optimizer step on a loss.
type StepFn = dyn FnMut(&Tensor) -> candle_core::Result<()>;

struct Net {
    encoder: (candle_nn::Linear, candle_nn::Linear),
    head: candle_nn::Linear,
}

impl Net {
    fn new(vm: &VarMap, head: &str) -> candle_core::Result<Net> {
        let vb = VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu);
        Ok(Net {
            encoder: (
                linear(8, 32, vb.pp("encoder.l1"))?,
                linear(32, 32, vb.pp("encoder.l2"))?,
            ),
            head: linear(32, 2, vb.pp(head))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.encoder.0.forward(x)?.gelu()?;
        let h = self.encoder.1.forward(&h)?.gelu()?;
        self.head.forward(&h)
    }
}

/// A batch of task `task`: the label is the sign of one input feature's combination.
fn batch(task: usize, seed: u64) -> candle_core::Result<(Tensor, Tensor)> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let x: Vec<f32> = (0..64 * 8).map(|_| next()).collect();
    let y: Vec<u32> = x
        .chunks(8)
        .map(|r| {
            u32::from(if task == 0 {
                r[0] + r[1] > 0.0
            } else {
                r[2] - r[3] > 0.0
            })
        })
        .collect();
    Ok((
        Tensor::from_vec(x, (64, 8), &Device::Cpu)?,
        Tensor::new(y.as_slice(), &Device::Cpu)?,
    ))
}

fn loss(net: &Net, task: usize, seed: u64) -> candle_core::Result<Tensor> {
    let (x, y) = batch(task, seed)?;
    candle_nn::loss::cross_entropy(&net.forward(&x)?, &y)
}

/// Euclidean distance of the encoder's vars to `start`.
fn distance(vm: &VarMap, start: &[(String, Vec<f32>)]) -> candle_core::Result<f64> {
    let data = vm.data().lock().unwrap();
    let mut sum = 0.0f64;
    for (name, before) in start {
        let now = data[name].flatten_all()?.to_vec1::<f32>()?;
        sum += now
            .iter()
            .zip(before)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>();
    }
    Ok(sum.sqrt())
}

fn main() -> candle_core::Result<()> {
    // "Pretraining": the encoder and a head on task A.
    let pretrained = VarMap::new();
    let net = Net::new(&pretrained, "head_a")?;
    let mut opt = AdamW::new(
        pretrained.all_vars(),
        ParamsAdamW {
            lr: 1e-2,
            ..Default::default()
        },
    )?;
    for step in 0..200 {
        opt.backward_step(&loss(&net, 0, step)?)?;
    }
    let encoder_names: Vec<String> = {
        let mut n: Vec<String> = pretrained
            .data()
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("encoder."))
            .cloned()
            .collect();
        n.sort();
        n
    };

    for which in ["candle AdamW", "recadam"] {
        // The same pretrained encoder, a fresh head for task B.
        let vm = VarMap::new();
        for name in &encoder_names {
            let t = pretrained.data().lock().unwrap()[name].as_tensor().copy()?;
            vm.data()
                .lock()
                .unwrap()
                .insert(name.clone(), Var::from_tensor(&t)?);
        }
        let net = Net::new(&vm, "head_b")?;
        let start: Vec<(String, Vec<f32>)> = encoder_names
            .iter()
            .map(|n| {
                Ok((
                    n.clone(),
                    vm.data().lock().unwrap()[n].flatten_all()?.to_vec1()?,
                ))
            })
            .collect::<candle_core::Result<_>>()?;
        let mut step_fn: Box<StepFn> = if which == "recadam" {
            let config = RecAdamConfig {
                lr: 1e-2,
                annealing: Annealing::Sigmoid { k: 0.2, t0: 20.0 },
                pretrain_cof: 10.0,
                ..RecAdamConfig::default()
            };
            let mut opt =
                RecAdam::<f32>::from_varmap(&vm, ParamsRecAdam::glue_script("encoder.", config))
                    .map_err(candle_core::Error::from)?;
            Box::new(move |l| opt.backward_step(l))
        } else {
            let mut opt = AdamW::new(
                vm.all_vars(),
                ParamsAdamW {
                    lr: 1e-2,
                    ..Default::default()
                },
            )?;
            Box::new(move |l| opt.backward_step(l))
        };
        for step in 0..STEPS as u64 {
            step_fn(&loss(&net, 1, 1000 + step)?)?;
        }
        let b = loss(&net, 1, 9999)?.to_scalar::<f32>()?;
        println!(
            "{which:>12}: task-B loss {b:.3} after {STEPS} steps; encoder distance to pretrained {:.3}",
            distance(&vm, &start)?
        );
    }
    Ok(())
}

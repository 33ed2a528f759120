//! The ZeRO-Offload pattern: an accelerator computes gradients, the host CPU updates the
//! parameters. Every buffer is owned by the "framework" (in real life: pinned host memory it
//! allocated for fast transfers); the optimizer borrows them, keeps no copy, and steps in place
//! on several threads.
//!
//!     cargo run --release -p recadam-std --example zero_offload

use std::time::Instant;

use recadam_core::{Annealing, RecAdamConfig};
use recadam_std::{
    Buffer, Group, LinearWarmupDecay, Optimizer, Options, ParamId, ParamMut, Pretrained,
};

/// Stands in for the framework's pinned host allocation of one tensor.
struct HostTensor {
    name: &'static str,
    params: Vec<f32>,
    grads: Vec<f32>,
    exp_avg: Vec<f32>,
    exp_avg_sq: Vec<f32>,
    pretrained: Vec<f32>,
}

impl HostTensor {
    fn new(name: &'static str, len: usize, seed: u32) -> HostTensor {
        let pretrained: Vec<f32> = (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) as f32 / u32::MAX as f32
                    - 0.5)
                    * 0.04
            })
            .collect();
        HostTensor {
            name,
            params: pretrained.clone(),
            grads: vec![0.0; len],
            exp_avg: vec![0.0; len],
            exp_avg_sq: vec![0.0; len],
            pretrained,
        }
    }
}

/// Stands in for the device: writes this step's gradients into the host buffer (a copy from
/// device memory in real life).
fn device_backward(t: u64, params: &[f32], grads: &mut [f32]) {
    for (i, (g, p)) in grads.iter_mut().zip(params).enumerate() {
        *g = 0.1 * p + 1e-3 * ((i as f32) * 0.01 + t as f32).sin();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut host = [
        HostTensor::new("bert.encoder.attention.weight", 4 << 20, 1),
        HostTensor::new("bert.encoder.ffn.weight", 8 << 20, 2),
        HostTensor::new("bert.encoder.ffn.bias", 3072, 3),
        HostTensor::new("classifier.weight", 768 * 2, 4),
    ];
    let steps = 20;
    let config = RecAdamConfig {
        lr: 5e-5,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.1, t0: 10.0 },
        ..RecAdamConfig::default()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The optimizer borrows θ* and the state buffers; parameters and gradients are borrowed
    // for each step only, so the framework keeps writing them in between.
    let (mut params, rest): (Vec<_>, Vec<_>) = host
        .iter_mut()
        .map(|t| {
            (
                (t.name, &mut t.params, &mut t.grads),
                (t.name, &mut t.exp_avg, &mut t.exp_avg_sq, &t.pretrained),
            )
        })
        .unzip();
    let mut opt = Optimizer::new(Options {
        schedule: Box::new(LinearWarmupDecay {
            warmup: 2,
            total: steps,
        }),
        max_grad_norm: Some(1.0),
        threads,
        ..Options::new(config)
    })?;
    for g in Group::glue_script("bert.") {
        opt.add_group(g)?;
    }
    // Registration returns a handle per tensor; steps pass handles, not names.
    let mut ids: Vec<ParamId> = Vec::new();
    for (name, m, v, pp) in rest {
        ids.push(opt.register_with_state(
            name,
            pp.len(),
            Some(Pretrained::Borrowed(pp)),
            Buffer::Borrowed(m),
            Buffer::Borrowed(v),
        )?);
    }
    let total: usize = params.iter().map(|p| p.1.len()).sum();
    println!(
        "{total} parameters in caller-owned buffers, {threads} threads, backend {}",
        opt.kernel().backend()
    );
    let start = Instant::now();
    for t in 1..=steps {
        for (k, (_, p, g)) in params.iter_mut().enumerate() {
            device_backward(t + k as u64, p, g); // the device writes into the host buffer
        }
        let mut batch: Vec<ParamMut<'_, f32>> = params
            .iter_mut()
            .zip(&ids)
            .map(|((_, value, grad), &id)| ParamMut::new(id, value, grad))
            .collect();
        let report = opt.step(&mut batch)?;
        if t % 5 == 0 {
            let values = ids.iter().zip(&params).map(|(&id, p)| (id, p.1.as_slice()));
            let d = opt.distance_to_pretrained(values)?;
            println!(
                "step {t:>2}: lr {:.2e}  λ {:.3}  |g| {:.3?}  distance to θ* {:.3e}",
                report.lr, report.lambda, report.grad_norm, d.overall
            );
        }
    }
    let per_step = start.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{:.1} ms per step (gradient fill included), updated in place",
        per_step * 1e3
    );
    Ok(())
}

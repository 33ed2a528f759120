//! RecAdam inside another framework's training loop: the framework owns the tensors and the
//! learning-rate scheduler; the optimizer holds state and θ*. One parameter is frozen, and the
//! new head is a group of its own without the pull towards pretrained weights. The README shows
//! this file; `tests/readme_example.rs` runs it.
//!
//!     cargo run --release -p recadam-std --example embedder

use recadam_core::{Annealing, RecAdamConfig};
use recadam_std::{Group, Optimizer, Options, ParamId, ParamMut, Selector};

/// A framework's tensor: values, a gradient when it has one, and a trainable flag.
struct Tensor {
    name: &'static str,
    value: Vec<f32>,
    grad: Vec<f32>,
    trainable: bool,
}

/// Stands in for the framework's backward pass: the gradient of 0.5·|x − target|².
fn backward(tensors: &mut [Tensor], target: f32) -> f32 {
    let mut loss = 0.0;
    for t in tensors.iter_mut() {
        for (g, x) in t.grad.iter_mut().zip(&t.value) {
            *g = x - target;
            loss += 0.5 * *g * *g;
        }
    }
    loss
}

/// The framework's scheduler: linear warm-up over 10 steps, then cosine decay to 0 at 100.
fn scheduler(step: u64, peak: f64) -> f64 {
    if step <= 10 {
        return peak * step as f64 / 10.0;
    }
    let progress = (step - 10) as f64 / 90.0;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pretrained = |n: usize, seed: f32| -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * 0.37 + seed).sin() * 0.1)
            .collect()
    };
    let mut tensors = vec![
        ("bert.embeddings.weight", pretrained(512, 1.0), false), // frozen
        ("bert.layer.0.weight", pretrained(4096, 2.0), true),
        ("bert.layer.0.bias", pretrained(64, 3.0), true),
        ("classifier.weight", vec![0.0; 128], true), // the new task head
    ]
    .into_iter()
    .map(|(name, value, trainable)| Tensor {
        name,
        grad: vec![0.0; value.len()],
        value,
        trainable,
    })
    .collect::<Vec<_>>();

    // The defaults of every group: the paper's RecAdam with a sigmoid schedule for λ(t).
    let config = RecAdamConfig {
        lr: 2e-5,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.1, t0: 50.0 },
        ..RecAdamConfig::default()
    };
    let mut opt = Optimizer::<f32>::new(Options::new(config))?;
    // The head: no θ* to recall (anneal_w = 0), ten times the encoder's learning rate.
    opt.add_group(
        Group::new("head", Selector::Prefix("classifier.".into()))
            .anneal_w(0.0)
            .lr(2e-4),
    )?;
    // Everything else falls to the default group and is pulled towards θ*, which the optimizer
    // keeps (moved in: this optimizer borrows nothing, so it is an `Optimizer<'static, f32>`).
    let ids: Vec<ParamId> = tensors
        .iter()
        .map(|t| {
            if t.name.starts_with("classifier.") {
                opt.register(t.name, t.value.len())
            } else {
                opt.register_pretrained(t.name, t.value.clone())
            }
        })
        .collect::<Result<_, _>>()?;

    let frozen_before = tensors[0].value.clone();
    let mut first_loss = None;
    let mut loss = 0.0;
    for step in 1..=100 {
        loss = backward(&mut tensors, 0.05);
        first_loss.get_or_insert(loss);
        // The framework's scheduler sets each group's rate before the step.
        opt.set_group_lr(Group::DEFAULT, scheduler(step, 2e-5))?;
        opt.set_group_lr("head", scheduler(step, 2e-4))?;
        // Only trainable tensors take part; the frozen one keeps its values and its state.
        let mut params: Vec<ParamMut<'_, f32>> = tensors
            .iter_mut()
            .zip(&ids)
            .filter(|(t, _)| t.trainable)
            .map(|(t, &id)| ParamMut::new(id, &mut t.value, &t.grad))
            .collect();
        opt.step(&mut params)?;
    }
    let distance =
        opt.distance_to_pretrained(ids.iter().zip(&tensors).map(|(&id, t)| (id, &t.value[..])))?;
    println!(
        "loss {:.4} → {loss:.4}; distance to θ*: {:.4} (groups: {:?})",
        first_loss.unwrap_or(0.0),
        distance.overall,
        distance.per_group
    );

    // What a framework relies on:
    assert_eq!(
        tensors[0].value, frozen_before,
        "a frozen tensor does not move"
    );
    assert_eq!(opt.param_steps(ids[0]), Some(0));
    let (m, v) = opt.state(ids[0]).ok_or("a registered handle has state")?;
    assert!(m.iter().chain(v).all(|&x| x == 0.0), "nor does its state");
    assert_eq!(opt.param_steps(ids[1]), Some(100));
    assert!(loss < first_loss.unwrap_or(0.0), "training lowers the loss");
    assert!(
        tensors[3].value.iter().all(|&x| x > 0.0),
        "the head moved towards the target"
    );
    Ok(())
}

//! RecAdam with w = 0 is Adam with decoupled weight decay. With weight decay 0 and an eps far
//! below √v, it and candle's AdamW are the same formula written two ways:
//!   recadam (the official code):  p −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + eps)
//!   candle:                       p −= lr · m̂ / (√v̂ + eps),  m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ)
//! which differ by eps·(1 − √(1−β2ᵗ)) in the denominator only. So a small MLP trained by both on
//! the same batches must stay together up to float rounding. (With weight decay the forms differ:
//! recadam decays the updated p, `p·(1 − lr·wd)` after the step; candle decays p before it, a
//! difference of lr·wd·(the step) per step; the README says so.)

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{linear, AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use recadam_candle::{ParamsRecAdam, RecAdam};
use recadam_core::RecAdamConfig;

const LR: f64 = 1e-2;
const STEPS: usize = 20;

fn mlp(vm: &VarMap) -> impl Module {
    let vb = VarBuilder::from_varmap(vm, DType::F32, &Device::Cpu);
    let l1 = linear(8, 16, vb.pp("l1")).unwrap();
    let l2 = linear(16, 3, vb.pp("l2")).unwrap();
    candle_nn::seq()
        .add(l1)
        .add(candle_nn::Activation::Gelu)
        .add(l2)
}

/// The same initial weights in two maps.
fn twin_maps() -> (VarMap, VarMap) {
    let a = VarMap::new();
    let b = VarMap::new();
    let _ = (mlp(&a), mlp(&b));
    for (name, var) in a.data().lock().unwrap().iter() {
        b.data().lock().unwrap()[name].set(var.as_tensor()).unwrap();
    }
    (a, b)
}

fn batch(step: usize) -> (Tensor, Tensor) {
    let x = Tensor::randn(0f32, 1.0, (32, 8), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..32).map(|i| ((i * 7 + step) % 3) as u32).collect();
    (x, Tensor::new(labels.as_slice(), &Device::Cpu).unwrap())
}

fn loss(model: &impl Module, x: &Tensor, y: &Tensor) -> Tensor {
    let logits = model.forward(x).unwrap();
    candle_nn::loss::cross_entropy(&logits, y).unwrap()
}

fn weights(vm: &VarMap) -> Vec<(String, Vec<f32>)> {
    let mut w: Vec<_> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn recadam_with_w_0_follows_candles_adamw() {
    let (vm_candle, vm_recadam) = twin_maps();
    let (m_candle, m_recadam) = (mlp(&vm_candle), mlp(&vm_recadam));
    // (mlp() over a filled map takes the vars already there.)
    let eps = 1e-12;
    let mut adamw = AdamW::new(
        vm_candle.all_vars(),
        ParamsAdamW {
            lr: LR,
            eps,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )
    .unwrap();
    let config = RecAdamConfig {
        eps,
        ..RecAdamConfig::adamw(LR, 0.0)
    };
    let mut recadam = RecAdam::<f32>::from_varmap(
        &vm_recadam,
        ParamsRecAdam {
            config,
            ..ParamsRecAdam::default()
        },
    )
    .unwrap();
    let mut worst = 0.0f64;
    let mut largest_move = 0.0f64;
    let start = weights(&vm_candle);
    for step in 0..STEPS {
        let (x, y) = batch(step);
        adamw.backward_step(&loss(&m_candle, &x, &y)).unwrap();
        recadam.backward_step(&loss(&m_recadam, &x, &y)).unwrap();
        for ((_, a), (_, b)) in weights(&vm_candle).iter().zip(weights(&vm_recadam)) {
            for (x, y) in a.iter().zip(&b) {
                worst = worst.max(f64::from((x - y).abs()));
            }
        }
    }
    for ((_, a), (_, s)) in weights(&vm_candle).iter().zip(&start) {
        for (x, y) in a.iter().zip(s) {
            largest_move = largest_move.max(f64::from((x - y).abs()));
        }
    }
    // Each step moves a weight by at most about lr (Adam's step is lr·m̂/√v̂). Both sides round
    // the same exact step differently (a few float32 roundings, < 1e-6 relative each), and the
    // rounding of p itself (|p| < 2 here: 2⁻²³ ≈ 1.2e-7); gradients from the slightly different
    // weights differ by as little. 20 steps: 20·(1e-6·lr + 2.4e-7) ≈ 5e-6; the bound allows 4×.
    let tolerance = 2e-5;
    assert!(
        largest_move > 0.1 * LR,
        "the weights barely moved ({largest_move:e}): the comparison would be empty"
    );
    assert!(
        worst <= tolerance,
        "recadam (w = 0) and candle's AdamW differ by {worst:e} > {tolerance:e}"
    );
    eprintln!("largest weight move {largest_move:e}, largest difference {worst:e}");
}

#[test]
fn the_losses_of_both_go_down_together() {
    // Sanity of the setup the test above relies on: the model learns the batches' labels.
    let (vm, _) = twin_maps();
    let model = mlp(&vm);
    let mut opt = RecAdam::<f32>::from_varmap(
        &vm,
        ParamsRecAdam {
            config: RecAdamConfig::adamw(LR, 0.0),
            ..ParamsRecAdam::default()
        },
    )
    .unwrap();
    let (x, y) = batch(0);
    let first = loss(&model, &x, &y).to_scalar::<f32>().unwrap();
    for _ in 0..STEPS {
        opt.backward_step(&loss(&model, &x, &y)).unwrap();
    }
    let last = loss(&model, &x, &y).to_scalar::<f32>().unwrap();
    assert!(last < 0.8 * first, "{first} -> {last}");
}

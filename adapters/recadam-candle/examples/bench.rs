//! Step time of RecAdam through this adapter beside candle's own AdamW, on the tensors of
//! all-MiniLM-L6-v2 (22.7 M parameters in 103 vars), in one run, the sides alternating.
//!
//! `cargo run --release --example bench [-- ROUNDS]` (default 6 rounds of 5 steps per side).
//!
//! candle's AdamW runs its element-wise ops on the calling thread (candle threads matrix
//! products and convolutions only), so it has one figure; RecAdam runs at 1 and 2 threads.

use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use recadam_candle::{ParamsRecAdam, RecAdam};
use recadam_core::RecAdamConfig;

fn vars(shapes: &[Vec<usize>]) -> Vec<Var> {
    shapes
        .iter()
        .map(|s| Var::randn(0f32, 0.02, s.as_slice(), &Device::Cpu).unwrap())
        .collect()
}

fn grads(vars: &[Var]) -> GradStore {
    let mut g = GradStore::default();
    for v in vars {
        g.insert(
            v,
            Tensor::randn(0f32, 1e-3, v.shape(), &Device::Cpu).unwrap(),
        );
    }
    g
}

/// Median seconds per step over `steps` steps.
fn time(steps: usize, mut step: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..steps)
        .map(|_| {
            let start = Instant::now();
            step();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(6, |a| a.parse().expect("ROUNDS is a number"));
    let shapes = recadam_testkit::minilm_shapes();
    let n: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let (va, vr1, vr2) = (vars(&shapes), vars(&shapes), vars(&shapes));
    let (ga, gr1, gr2) = (grads(&va), grads(&vr1), grads(&vr2));
    let mut adamw = AdamW::new(
        va.clone(),
        ParamsAdamW {
            lr: 2e-5,
            ..ParamsAdamW::default()
        },
    )
    .unwrap();
    let config = RecAdamConfig::default(); // the GLUE script's: lr 2e-5, w 1, γ 5000
    let recadam = |vars: &[Var], threads| {
        RecAdam::<f32>::new(
            vars.to_vec(),
            ParamsRecAdam {
                config,
                threads,
                ..ParamsRecAdam::default()
            },
        )
        .unwrap()
    };
    let (mut r1, mut r2) = (recadam(&vr1, 1), recadam(&vr2, 2));
    assert_eq!(va[0].dtype(), DType::F32);
    println!(
        "{} parameters in {} vars; ms per step (median of 5), {rounds} rounds",
        n,
        shapes.len()
    );
    println!("round  candle AdamW  recadam 1 thread  recadam 2 threads  ratio 1t  ratio 2t");
    let mut ratios = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let a = time(5, || adamw.step(&ga).unwrap());
        let t1 = time(5, || r1.step(&gr1).unwrap());
        let t2 = time(5, || r2.step(&gr2).unwrap());
        println!(
            "{round:>5}  {:>12.2}  {:>16.2}  {:>17.2}  {:>8.2}  {:>8.2}",
            a * 1e3,
            t1 * 1e3,
            t2 * 1e3,
            a / t1,
            a / t2
        );
        ratios.0.push(a / t1);
        ratios.1.push(a / t2);
    }
    let range = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
        format!("{lo:.1}-{hi:.1}")
    };
    println!(
        "recadam is {}x (1 thread) and {}x (2 threads) as fast as candle's AdamW per step",
        range(&ratios.0),
        range(&ratios.1)
    );
}

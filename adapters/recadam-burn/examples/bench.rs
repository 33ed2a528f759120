//! Step time of RecAdam through this adapter beside burn's own AdamW, on the tensors of
//! all-MiniLM-L6-v2 (22.7 M parameters in 103 tensors), in one run, the sides alternating; and
//! recadam-std's step over the same sizes in plain vectors, which is what the adapter runs
//! inside: the difference is what burn's functional step costs (each parameter and gradient
//! read out of burn and a tensor built from the result).
//!
//! `cargo run --release --example bench [-- ROUNDS]` (default 6 rounds of 5 steps per side), on
//! burn's default CPU backend; `BURN_DEVICE=ndarray` or `BURN_DEVICE=flex` picks one.

use std::time::Instant;

use burn::module::{Module, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use recadam_burn::{NonFiniteGuard, RecAdam, RecAdamConfig, RecAdamOptimizer};
use recadam_core::Slices;
use recadam_std::{step_held, CallingThread, HeldParam, Kernel, Pool};

/// A model of those shapes: matrices and vectors.
#[derive(Module, Debug)]
struct Tensors {
    matrices: Vec<Param<Tensor<2>>>,
    vectors: Vec<Param<Tensor<1>>>,
}

/// A deterministic value in about [-scale, scale].
fn noise(seed: usize, n: usize, scale: f32) -> Vec<f32> {
    let mut s = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            scale * ((s >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        })
        .collect()
}

fn model(shapes: &[Vec<usize>], device: &Device) -> Tensors {
    let mut m = Tensors {
        matrices: Vec::new(),
        vectors: Vec::new(),
    };
    for (k, s) in shapes.iter().enumerate() {
        let n = s.iter().product();
        let data = TensorData::new(noise(k, n, 0.02), s.clone());
        match s.len() {
            2 => m
                .matrices
                .push(Param::from_tensor(Tensor::from_data(data, device))),
            _ => m
                .vectors
                .push(Param::from_tensor(Tensor::from_data(data, device))),
        }
    }
    m
}

/// Fresh gradients (as backward makes them, each tensor owned by the gradients alone).
fn grads(m: &Tensors, step: usize, device: &Device) -> GradientsParams {
    let mut g = GradientsParams::new();
    for (k, p) in m.matrices.iter().enumerate() {
        let shape = p.val().shape();
        let data = TensorData::new(noise(1000 * step + k, shape.num_elements(), 1e-3), shape);
        g.register(p.id, Tensor::<2>::from_data(data, device));
    }
    for (k, p) in m.vectors.iter().enumerate() {
        let shape = p.val().shape();
        let data = TensorData::new(
            noise(1000 * step + 500 + k, shape.num_elements(), 1e-3),
            shape,
        );
        g.register(p.id, Tensor::<1>::from_data(data, device));
    }
    g
}

/// One step of a model with its gradients.
type StepFn = Box<dyn FnMut(Tensors, GradientsParams) -> Tensors>;

/// One side of the benchmark: a model and what steps it.
enum Side {
    Module(Tensors, StepFn),
    /// recadam-std over plain vectors: p, g, m, v, θ* per tensor.
    Plain(Vec<[Vec<f32>; 5]>, Box<dyn Pool>),
}

/// Median seconds per step over `steps` steps (gradients made outside the timing).
fn time(side: &mut Side, steps: usize, step0: usize, device: &Device) -> f64 {
    let inner = device.clone().inner();
    let config = RecAdamConfig::default();
    let mut t: Vec<f64> = (0..steps)
        .map(|s| {
            let step = step0 + s;
            match side {
                Side::Module(m, step_fn) => {
                    let g = grads(m, step, &inner);
                    let model = std::mem::replace(
                        m,
                        Tensors {
                            matrices: vec![],
                            vectors: vec![],
                        },
                    );
                    let start = Instant::now();
                    *m = step_fn(model, g);
                    start.elapsed().as_secs_f64()
                }
                Side::Plain(buffers, pool) => {
                    for (k, b) in buffers.iter_mut().enumerate() {
                        b[1] = noise(1000 * step + k, b[0].len(), 1e-3);
                    }
                    let start = Instant::now();
                    let params = buffers
                        .iter_mut()
                        .map(|[p, g, m, v, star]| HeldParam {
                            slices: Slices::new(p, g, m, v, Some(&star[..])).unwrap(),
                            group: 0,
                            t: step as u64,
                        })
                        .collect();
                    step_held(
                        Kernel::best(),
                        pool.as_ref(),
                        NonFiniteGuard::Off,
                        &[config],
                        params,
                    )
                    .unwrap();
                    start.elapsed().as_secs_f64()
                }
            }
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(6, |a| a.parse().expect("ROUNDS is a number"));
    let device = Device::default().autodiff();
    let shapes = recadam_testkit::minilm_shapes();
    let n: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    let recadam = |threads| {
        RecAdamOptimizer::new(
            RecAdam::new(RecAdamConfig::default())
                .unwrap()
                .with_threads(threads)
                .unwrap(),
        )
        .with_guard(NonFiniteGuard::Off)
    };
    let plain = |pool: Box<dyn Pool>| {
        let buffers = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let n = s.iter().product();
                let p = noise(k, n, 0.02);
                [p.clone(), vec![0.0; n], vec![0.0; n], vec![0.0; n], p]
            })
            .collect();
        Side::Plain(buffers, pool)
    };
    let two_threads: Box<dyn Pool> = Box::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
    let burns = |mut optim: ModuleOptimizer| -> Side {
        let step: StepFn = Box::new(move |m, g| optim.step(2e-5, m, g));
        Side::Module(model(&shapes, &device), step)
    };
    let mut checked = recadam(1).with_guard(NonFiniteGuard::Refuse);
    let try_step: StepFn = Box::new(move |m, g| checked.try_step(2e-5, m, g).unwrap().module);
    let mut sides = [
        ("burn AdamW", burns(AdamWConfig::new().init())),
        ("recadam 1t", burns(recadam(1).into_module_optimizer())),
        ("recadam 2t", burns(recadam(2).into_module_optimizer())),
        (
            "try_step 1t",
            Side::Module(model(&shapes, &device), try_step),
        ),
        ("plain 1t", plain(Box::new(CallingThread))),
        ("plain 2t", plain(two_threads)),
    ];
    println!(
        "burn device {device:?}; {n} parameters in {} tensors; ms per step (median of 5), {rounds} rounds",
        shapes.len()
    );
    print!("round");
    for (name, _) in &sides {
        print!("  {name:>11}");
    }
    println!();
    // A fresh state's first step takes θ*: one untimed step per side first.
    for (_, side) in sides.iter_mut() {
        time(side, 1, 1, &device);
    }
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for round in 0..rounds {
        print!("{:>5}", round + 1);
        for (k, (_, side)) in sides.iter_mut().enumerate() {
            let ms = time(side, 5, 2 + 5 * round, &device) * 1e3;
            all[k].push(ms);
            print!("  {ms:>11.2}");
        }
        println!();
    }
    let range = |v: &[f64]| {
        let lo = v.iter().cloned().fold(f64::MAX, f64::min);
        let hi = v.iter().cloned().fold(f64::MIN, f64::max);
        format!("{lo:.1}-{hi:.1}")
    };
    for (k, (name, _)) in sides.iter().enumerate() {
        println!("{name:>11}: {} ms per step", range(&all[k]));
    }
    let ratio = |a: usize, b: usize| -> String {
        let r: Vec<f64> = all[a].iter().zip(&all[b]).map(|(x, y)| x / y).collect();
        range(&r)
    };
    println!(
        "burn AdamW / recadam: {}x (1 thread), {}x (2 threads)",
        ratio(0, 1),
        ratio(0, 2)
    );
    println!(
        "recadam through burn / plain recadam-std: {}x (1 thread), {}x (2 threads)",
        ratio(1, 4),
        ratio(2, 5)
    );
    println!("try_step / burn's step: {}x (1 thread)", ratio(3, 1));
}

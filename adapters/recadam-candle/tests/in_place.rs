//! The adapter updates the vars where candle keeps them, with recadam-std's step over all of them
//! at once: the same bits as `recadam_std::Optimizer` over the same values, no copy of a var, and
//! any number of vars.

use candle_core::backprop::GradStore;
use candle_core::{Device, Storage, Tensor, Var};
use candle_nn::Optimizer as _;
use recadam_candle::{Group, ParamsRecAdam, RecAdam, Selector};
use recadam_core::{Annealing, RecAdamConfig};
use recadam_std::{Optimizer, Options, ParamMut};

fn config() -> RecAdamConfig {
    RecAdamConfig {
        lr: 1e-2,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 3.0 },
        pretrain_cof: 1.0,
        ..RecAdamConfig::default()
    }
}

/// Deterministic values in [-1, 1).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn data_ptr(var: &Var) -> usize {
    let (storage, _) = var.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>().unwrap().as_ptr() as usize,
        _ => unreachable!("a CPU var"),
    }
}

#[test]
fn steps_equal_recadam_std_bit_for_bit_and_write_in_place() {
    let shapes: [&[usize]; 4] = [&[3, 5], &[7], &[2, 2, 2], &[33]];
    let names = ["encoder.a", "encoder.b", "head.w", "head.bias"];
    let groups = || {
        vec![Group::new("head", Selector::Prefix("head.".into()))
            .anneal_w(0.0)
            .lr(3e-2)]
    };
    let vars: Vec<Var> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let n = s.iter().product();
            Var::from_vec(noise(i as u64, n), *s, &Device::Cpu).unwrap()
        })
        .collect();
    // The reference: recadam-std over plain vectors.
    let mut values: Vec<Vec<f32>> = vars
        .iter()
        .map(|v| v.flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let mut reference = Optimizer::<f32>::new(Options {
        threads: 2,
        ..Options::new(config())
    })
    .unwrap();
    for g in groups() {
        reference.add_group(g).unwrap();
    }
    let ids: Vec<_> = names
        .iter()
        .zip(&values)
        .map(|(n, v)| reference.register_pretrained(n, v.clone()).unwrap())
        .collect();

    let named = names
        .iter()
        .zip(&vars)
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    let params = ParamsRecAdam {
        config: config(),
        groups: groups(),
        threads: 2,
        ..ParamsRecAdam::default()
    };
    let mut opt = RecAdam::<f32>::new_named(named, params).unwrap();
    // A tensor sharing the first var's storage sees the update: it is made in place.
    let alias = vars[0].as_tensor().clone();
    let before: Vec<usize> = vars.iter().map(data_ptr).collect();

    for step in 1..=6u64 {
        let lr = 1e-2 * step as f64 / 6.0;
        let grads: Vec<Vec<f32>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| noise(100 * step + i as u64, v.len()))
            .collect();
        let mut store = GradStore::default();
        for ((var, g), s) in vars.iter().zip(&grads).zip(shapes) {
            store.insert(var, Tensor::from_vec(g.clone(), s, &Device::Cpu).unwrap());
        }
        opt.set_learning_rate(lr);
        opt.step(&store).unwrap();

        reference.set_lr(lr).unwrap();
        let mut given: Vec<ParamMut<'_, f32>> = ids
            .iter()
            .zip(values.iter_mut())
            .zip(&grads)
            .map(|((id, v), g)| ParamMut::new(*id, v, g))
            .collect();
        reference.step(&mut given).unwrap();
        for (i, var) in vars.iter().enumerate() {
            let got: Vec<u32> = var
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            let want: Vec<u32> = values[i].iter().map(|x| x.to_bits()).collect();
            assert_eq!(got, want, "step {step}: {}", names[i]);
        }
    }
    assert_eq!(opt.optimizer().steps(), 6);
    assert_eq!(
        alias.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        values[0]
    );
    let after: Vec<usize> = vars.iter().map(data_ptr).collect();
    assert_eq!(before, after, "a var's memory was replaced");
    // The head (anneal_w = 0) has no θ*: the distance counts the encoder only.
    let d = opt.distance_to_pretrained().unwrap();
    let want = reference
        .distance_to_pretrained(ids.iter().copied().zip(values.iter().map(|v| &v[..])))
        .unwrap();
    assert_eq!(d, want);
    assert!(d.overall > 0.0);
}

/// One step nests one in-place op per var (1 to 4 KiB of stack each, optimised or not): 10,000
/// vars do not fit a test thread's 2 MiB stack, and the step runs them on a thread of its own.
#[test]
fn ten_thousand_vars_in_one_step() {
    let vars: Vec<Var> = (0..10_000)
        .map(|i| Var::from_vec(vec![i as f32; 3], 3, &Device::Cpu).unwrap())
        .collect();
    let config = RecAdamConfig {
        annealing: Annealing::Constant,
        ..config()
    };
    let params = ParamsRecAdam {
        config,
        ..ParamsRecAdam::default()
    };
    let mut opt = RecAdam::<f32>::new(vars.clone(), params).unwrap();
    let mut store = GradStore::default();
    for v in &vars {
        store.insert(v, Tensor::new(&[1.0f32, -1.0, 0.0], &Device::Cpu).unwrap());
    }
    let report = opt.try_step(&store).unwrap();
    assert_eq!(report.updated, 10_000);
    let last = vars[9_999].as_tensor().to_vec1::<f32>().unwrap();
    // Against its gradient, each side of the element whose gradient is 0.
    assert!(last[0] < last[2] && last[2] < last[1], "{last:?}");
}

//! Every golden case (the official RecAdam's trajectories) through the candle adapter: the same
//! bits as recadam-core's own replay, which itself meets the golden tolerance.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer as _;
use recadam_candle::{Element, NonFiniteGuard, ParamsRecAdam, RecAdam};
use recadam_testkit::golden::{self, Case, Grad};

fn cast<T: Element>(values: &[f64]) -> Vec<T> {
    values.iter().map(|&x| T::round_from_f64(x)).collect()
}

fn bits<T: Element>(values: &[T]) -> Vec<u64> {
    values.iter().map(|x| x.widen_to_f64().to_bits()).collect()
}

/// Runs `case` through `RecAdam<T>` on `threads` threads; returns the final p, m and v.
fn through_candle<T: Element>(case: &Case, threads: usize) -> [Vec<T>; 3] {
    let n = case.n;
    let var = Var::from_vec(cast::<T>(&case.init), n, &Device::Cpu).unwrap();
    let pretrained = Tensor::from_vec(cast::<T>(&case.pretrained), n, &Device::Cpu).unwrap();
    let params = ParamsRecAdam {
        config: case.recadam_config(),
        // The reference checks nothing: let every value through as it does.
        guard: NonFiniteGuard::Off,
        threads,
        ..ParamsRecAdam::default()
    };
    let mut opt = RecAdam::<T>::with_pretrained(
        vec![("p".into(), var.clone())],
        &HashMap::from([("p".to_string(), pretrained)]),
        params,
    )
    .unwrap();
    for t in 1..=case.steps {
        let p = var.as_tensor().to_vec1::<T>().unwrap();
        let g: Vec<T> = match &case.grad {
            // g = a * (p - c) in the dtype, two roundings, as the reference computes it.
            Grad::Quadratic { a, c } => {
                let (a, c) = (cast::<T>(a), cast::<T>(c));
                (0..n).map(|i| a[i] * (p[i] - c[i])).collect()
            }
            Grad::Given { per_step } => cast::<T>(&per_step[t as usize - 1]),
        };
        let mut grads = GradStore::default();
        grads.insert(
            var.as_tensor(),
            Tensor::from_vec(g, n, &Device::Cpu).unwrap(),
        );
        opt.set_learning_rate(case.lr_per_step[t as usize - 1]);
        opt.step(&grads).unwrap();
    }
    let id = opt.optimizer().id("p").unwrap();
    let (m, v) = opt.optimizer().state(id).unwrap();
    [
        var.as_tensor().to_vec1::<T>().unwrap(),
        m.to_vec(),
        v.to_vec(),
    ]
}

fn check<T: Element>(name: &str, case: &Case) {
    let want = golden::core_bits::<T>(name, case);
    for threads in [1, 2] {
        let got = through_candle::<T>(case, threads);
        for (k, array) in ["params", "exp_avg", "exp_avg_sq"].iter().enumerate() {
            assert_eq!(
                bits(&got[k]),
                want[k],
                "{name}: {array} through candle ({threads} threads) differs from recadam-core"
            );
        }
    }
}

#[test]
fn every_golden_case_gives_recadam_cores_bits_through_candle() {
    golden::for_each_case(check::<f32>, check::<f64>);
}

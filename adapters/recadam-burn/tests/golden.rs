//! Every golden case (the official RecAdam's trajectories) through the burn adapter: burn's
//! per-tensor `Optimizer::step` and the module optimizer both end on recadam-core's bits, and
//! recadam-core's own replay meets the golden tolerance.

use burn::backend::FlexDevice;
use burn::module::{Module, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use recadam_burn::{Element, NonFiniteGuard, RecAdam, RecAdamOptimizer};
use recadam_testkit::golden::{self, Case, Grad};

#[derive(Module, Debug)]
struct One {
    p: Param<Tensor<1>>,
}

fn cast<T: Element>(values: &[f64]) -> Vec<T> {
    values.iter().map(|&x| T::round_from_f64(x)).collect()
}

fn bits<T: Element>(values: &[T]) -> Vec<u64> {
    values.iter().map(|x| x.widen_to_f64().to_bits()).collect()
}

/// burn's ndarray backend, named (the tests also build the flex backend, which burn 0.22
/// recommends over the deprecated ndarray).
#[allow(deprecated)]
fn cpu() -> Device {
    Device::from(burn::backend::NdArrayDevice::default())
}

fn tensor<T: Element>(values: Vec<T>) -> Tensor<1> {
    tensor_on(values, &cpu())
}

fn tensor_on<T: Element>(values: Vec<T>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), (device, T::DTYPE))
}

fn values<T: Element>(t: Tensor<1>) -> Vec<T> {
    t.into_data().try_into_vec::<T>().unwrap()
}

/// The case's gradient at step `t` for values `p`.
fn gradient<T: Element>(case: &Case, t: u64, p: &[T]) -> Vec<T> {
    match &case.grad {
        // g = a * (p - c) in the dtype, two roundings, as the reference computes it.
        Grad::Quadratic { a, c } => {
            let (a, c) = (cast::<T>(a), cast::<T>(c));
            (0..case.n).map(|i| a[i] * (p[i] - c[i])).collect()
        }
        Grad::Given { per_step } => cast::<T>(&per_step[t as usize - 1]),
    }
}

/// Through burn's `Optimizer::step`, the state passed along: the final p, m and v.
fn through_trait<T: Element>(case: &Case, threads: usize) -> [Vec<T>; 3] {
    let recadam = RecAdam::new(case.recadam_config())
        .unwrap()
        .with_threads(threads)
        .unwrap();
    let recadam = recadam.with_pretrained(TensorData::new(cast::<T>(&case.pretrained), [case.n]));
    let (mut p, mut state) = (cast::<T>(&case.init), None);
    for t in 1..=case.steps {
        let g = gradient::<T>(case, t, &p);
        let lr = case.lr_per_step[t as usize - 1];
        let (next, s) = recadam.step(lr, tensor(p), tensor(g), state.take());
        p = values(next);
        state = s;
    }
    let state = state.unwrap();
    let (m, v) = moments::<T>(&state);
    [p, m, v]
}

fn moments<T: Element>(s: &recadam_burn::RecAdamState<1>) -> (Vec<T>, Vec<T>) {
    let view = s.view::<T>().expect("the state is of the parameter's type");
    (view.exp_avg.to_vec(), view.exp_avg_sq.to_vec())
}

/// Through the module optimizer with θ* given, on `device`: the final p.
fn through_module<T: Element>(case: &Case, threads: usize, device: &Device) -> Vec<T> {
    // burn's module optimizer steps autodiff parameters (as burn's learner trains them).
    let device = device.clone().autodiff();
    let param = |v: &[f64]| Param::from_tensor(tensor_on(cast::<T>(v), &device));
    let mut model = One {
        p: param(&case.init),
    };
    let pretrained = One {
        p: param(&case.pretrained),
    };
    let recadam = RecAdam::new(case.recadam_config())
        .unwrap()
        .with_threads(threads)
        .unwrap();
    let mut optim = RecAdamOptimizer::new(recadam)
        .with_guard(NonFiniteGuard::Off)
        .with_pretrained(&model, &pretrained)
        .unwrap();
    for t in 1..=case.steps {
        let p = values::<T>(model.p.val());
        let mut grads = GradientsParams::new();
        let g = tensor_on(gradient::<T>(case, t, &p), &device.clone().inner());
        grads.register(model.p.id, g);
        let lr = case.lr_per_step[t as usize - 1];
        model = optim.try_step(lr, model, grads).unwrap().module;
    }
    values(model.p.val())
}

fn check<T: Element>(name: &str, case: &Case) {
    let want = golden::core_bits::<T>(name, case);
    for threads in [1, 2] {
        let got = through_trait::<T>(case, threads);
        for (k, array) in ["params", "exp_avg", "exp_avg_sq"].iter().enumerate() {
            assert_eq!(
                bits(&got[k]),
                want[k],
                "{name}: {array} through burn's Optimizer::step ({threads} threads) differs from recadam-core"
            );
        }
        for (backend, device) in [("ndarray", cpu()), ("flex", Device::from(FlexDevice))] {
            assert_eq!(
                bits(&through_module::<T>(case, threads, &device)),
                want[0],
                "{name}: params through the module optimizer on {backend} ({threads} threads) differ from recadam-core"
            );
        }
    }
}

#[test]
fn every_golden_case_gives_recadam_cores_bits_through_burn() {
    golden::for_each_case(check::<f32>, check::<f64>);
}

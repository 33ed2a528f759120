//! The mixed-precision reference against the f32 reference: every storage mode is the f32 update
//! on widened inputs, with its outputs narrowed (round to nearest even).

use proptest::prelude::*;
use recadam_core::half::{bf16, f16};
use recadam_core::{
    update, update_mixed, Annealing, Error, MixedSlices, PenaltyMode, RecAdamConfig, Slices,
    StepScalars, Storage,
};

fn config() -> impl Strategy<Value = (RecAdamConfig, u64)> {
    (
        (1e-6f64..1e-2, 0.0f64..0.99, 0.9f64..0.9999, 1e-9f64..1e-3),
        (
            prop_oneof![Just(0.0), 0.0f64..0.1],
            any::<bool>(),
            any::<bool>(),
        ),
        (
            prop_oneof![
                (0.0f64..2.0, -50.0f64..500.0).prop_map(|(k, t0)| Annealing::Sigmoid { k, t0 }),
                Just(Annealing::Constant),
            ],
            prop_oneof![Just(0.0), Just(1.0), 0.0f64..2.0],
            prop_oneof![Just(0.0), 0.0f64..10_000.0],
        ),
        1u64..300,
    )
        .prop_map(
            |(
                (lr, beta1, beta2, eps),
                (weight_decay, correct_bias, coupled),
                (annealing, w, cof),
                t,
            )| {
                let mut c = RecAdamConfig {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    correct_bias,
                    annealing,
                    anneal_w: w,
                    pretrain_cof: cof,
                    penalty_mode: if coupled {
                        PenaltyMode::Coupled
                    } else {
                        PenaltyMode::Decoupled
                    },
                };
                if c.penalty_factor(c.lr, 1) >= 1.5 {
                    c.lr = 1.4 / c.penalty_factor(1.0, 1);
                }
                (c, t)
            },
        )
}

/// Ordinary values mostly, and the special ones: zeros, subnormals, huge, infinite, NaN.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -1.0f32..1.0,
        2 => -1e-3f32..1e-3,
        1 => -1e-38f32..1e-38,
        1 => prop_oneof![Just(0.0f32), Just(-0.0), Just(7e4), Just(-3e38)],
        1 => prop_oneof![Just(f32::INFINITY), Just(f32::NAN)],
        1 => any::<u32>().prop_map(f32::from_bits),
    ]
}

fn arrays(n: usize) -> impl Strategy<Value = [Vec<f32>; 5]> {
    prop::collection::vec(prop::collection::vec(value(), n), 5).prop_map(|mut a| {
        // Second moments are never negative in a real run.
        a[3].iter_mut().for_each(|x| *x = x.abs());
        [
            a[0].clone(),
            a[1].clone(),
            a[2].clone(),
            a[3].clone(),
            a[4].clone(),
        ]
    })
}

/// The bits of each value, every NaN as one canonical NaN: which NaN an operation returns
/// (sign, payload) depends on operand order, which the compiler may swap, and is not part of
/// the contract (NaN-ness is).
fn bits(a: &[f32]) -> Vec<u32> {
    a.iter()
        .map(|x| if x.is_nan() { 0x7fc0_0000 } else { x.to_bits() })
        .collect()
}

fn bits_of<S: Storage>(a: &[S]) -> Vec<u32> {
    bits(&a.iter().map(|x| x.widen()).collect::<Vec<_>>())
}

/// `xs` stored as `S` (narrowed), and the f32 values that storage holds (widened back).
fn stored<S: Storage>(xs: &[f32]) -> (Vec<S>, Vec<f32>) {
    let s: Vec<S> = xs.iter().map(|&x| S::narrow(x)).collect();
    let w = s.iter().map(|x| x.widen()).collect();
    (s, w)
}

/// One f32 reference step; returns (p, m, v).
fn reference(
    scalars: &StepScalars<f32>,
    [p, g, m, v, pp]: &[Vec<f32>; 5],
    with_pretrained: bool,
) -> [Vec<f32>; 3] {
    let (mut p, mut m, mut v) = (p.clone(), m.clone(), v.clone());
    let slices = Slices::new(
        &mut p,
        g,
        &mut m,
        &mut v,
        with_pretrained.then_some(&pp[..]),
    )
    .unwrap();
    update(scalars, slices);
    [p, m, v]
}

/// One mixed step from f32 master parameters and `S` moments (narrowed from the given ones),
/// `G` gradients and `A` θ* (the given values, narrowed), writing a `C` copy.
fn mixed<G: Storage, S: Storage, A: Storage, C: Storage>(
    scalars: &StepScalars<f32>,
    [p, g, m, v, pp]: &[Vec<f32>; 5],
    with_pretrained: bool,
) -> (Vec<f32>, Vec<S>, Vec<S>, Vec<C>) {
    let mut p = p.clone();
    let (g, _) = stored::<G>(g);
    let (mut m, _) = stored::<S>(m);
    let (mut v, _) = stored::<S>(v);
    let (pp, _) = stored::<A>(pp);
    let mut copy = vec![C::default(); p.len()];
    let slices = MixedSlices::new(
        &mut p,
        &g,
        &mut m,
        &mut v,
        with_pretrained.then_some(&pp[..]),
    )
    .unwrap()
    .with_params_copy(&mut copy)
    .unwrap();
    update_mixed(scalars, slices);
    (p, m, v, copy)
}

/// Checks one storage mode against the f32 reference on the widened inputs.
fn check_mode<G: Storage, S: Storage, A: Storage, C: Storage>(
    scalars: &StepScalars<f32>,
    data: &[Vec<f32>; 5],
    with_pretrained: bool,
) -> Result<(), TestCaseError> {
    let [p, g, m, v, pp] = data;
    let widened = [
        p.clone(),
        stored::<G>(g).1,
        stored::<S>(m).1,
        stored::<S>(v).1,
        stored::<A>(pp).1,
    ];
    let [want_p, want_m, want_v] = reference(scalars, &widened, with_pretrained);
    let (got_p, got_m, got_v, copy) = mixed::<G, S, A, C>(scalars, data, with_pretrained);
    let mode = format!(
        "grads {} state {} θ* {} copy {}",
        G::NAME,
        S::NAME,
        A::NAME,
        C::NAME
    );
    prop_assert_eq!(bits(&got_p), bits(&want_p), "params, {}", mode);
    prop_assert_eq!(
        bits_of(&got_m),
        bits_of(&stored::<S>(&want_m).0),
        "exp_avg, {}",
        mode
    );
    prop_assert_eq!(
        bits_of(&got_v),
        bits_of(&stored::<S>(&want_v).0),
        "exp_avg_sq, {}",
        mode
    );
    prop_assert_eq!(
        bits_of(&copy),
        bits_of(&stored::<C>(&want_p).0),
        "copy, {}",
        mode
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 4 } else { 256 }))]

    #[test]
    fn every_storage_mode_is_the_f32_update_on_widened_values(
        (c, t) in config(), data in arrays(37), pp in any::<bool>(), lr_frac in 0.0f64..1.0,
    ) {
        let scalars = StepScalars::<f32>::new(&c, t, c.lr * lr_frac).unwrap();
        check_mode::<f32, f32, f32, f32>(&scalars, &data, pp)?;
        check_mode::<bf16, f32, f32, bf16>(&scalars, &data, pp)?;
        check_mode::<f16, f32, f32, f16>(&scalars, &data, pp)?;
        check_mode::<bf16, f32, bf16, bf16>(&scalars, &data, pp)?;
        check_mode::<f32, bf16, bf16, f16>(&scalars, &data, pp)?;
        check_mode::<bf16, bf16, bf16, bf16>(&scalars, &data, pp)?;
        check_mode::<f16, bf16, f32, bf16>(&scalars, &data, pp)?;
    }

    /// With every array in f32 and no copy, the mixed update is the f32 update bit for bit.
    #[test]
    fn all_f32_without_a_copy_is_the_f32_update(
        (c, t) in config(), data in arrays(23), pp in any::<bool>(),
    ) {
        let scalars = StepScalars::<f32>::new(&c, t, c.lr).unwrap();
        let [want_p, want_m, want_v] = reference(&scalars, &data, pp);
        let [p, g, m, v, theta] = data;
        let (mut p, mut m, mut v) = (p, m, v);
        let slices = MixedSlices::new(&mut p, &g, &mut m, &mut v, pp.then_some(&theta[..])).unwrap();
        update_mixed(&scalars, slices);
        prop_assert_eq!(bits(&p), bits(&want_p));
        prop_assert_eq!(bits(&m), bits(&want_m));
        prop_assert_eq!(bits(&v), bits(&want_v));
    }
}

#[test]
fn a_slice_of_another_length_is_an_error_naming_it() {
    let (mut p, g, mut m, mut v) = (
        vec![0f32; 4],
        vec![bf16::ZERO; 4],
        vec![0f32; 4],
        vec![0f32; 3],
    );
    let err = MixedSlices::new(&mut p, &g, &mut m, &mut v, None::<&[f32]>).unwrap_err();
    assert_eq!(
        err,
        Error::LengthMismatch {
            slice: "exp_avg_sq",
            len: 3,
            expected: 4
        }
    );
    let mut v = vec![0f32; 4];
    let mut copy = vec![f16::ZERO; 5];
    let err = MixedSlices::new(&mut p, &g, &mut m, &mut v, None::<&[f32]>)
        .unwrap()
        .with_params_copy(&mut copy)
        .unwrap_err();
    assert_eq!(
        err,
        Error::LengthMismatch {
            slice: "params_copy",
            len: 5,
            expected: 4
        }
    );
    assert!(err.to_string().contains("params_copy"));
}

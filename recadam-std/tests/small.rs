//! The optimizer at small sizes, small enough for Miri: threads, the guard, clipping, groups
//! and a checkpoint round trip through bytes.

use recadam_std::{Error, Optimizer, ParamId};
use recadam_testkit::fixtures::{
    small_optimizer, small_params, small_pretrained, small_train, small_train_range,
};

fn state(opt: &Optimizer<'_, f32>) -> Vec<u32> {
    opt.ids()
        .flat_map(|id| {
            let (m, v) = opt.state(id).unwrap();
            m.iter().chain(v).map(|x| x.to_bits()).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn small_runs_agree_and_resume_through_bytes() {
    let pretrained = small_pretrained();
    let mut straight = small_optimizer(&pretrained);
    let mut straight_values = pretrained.clone();
    small_train(&mut straight, &mut straight_values, 4);

    let mut first = small_optimizer(&pretrained);
    let mut values = pretrained.clone();
    small_train(&mut first, &mut values, 2);
    let bytes = first.save_checkpoint_to_bytes().unwrap();
    let mut resumed = small_optimizer(&pretrained);
    resumed.load_checkpoint_from_bytes(&bytes).unwrap();
    small_train_range(&mut resumed, &mut values, 3..=4);
    assert_eq!(state(&resumed), state(&straight));
    assert_eq!(values, straight_values);

    // A truncated copy is refused and changes nothing.
    let before = state(&resumed);
    assert!(resumed
        .load_checkpoint_from_bytes(&bytes[..bytes.len() / 2])
        .is_err());
    assert_eq!(state(&resumed), before);
}

#[test]
fn a_nan_gradient_is_refused_and_changes_nothing() {
    let pretrained = small_pretrained();
    let mut opt = small_optimizer(&pretrained);
    let mut values = pretrained.clone();
    let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![0.1; v.len()]).collect();
    grads[1][3] = f32::NAN;
    let before = values.clone();
    let ids: Vec<ParamId> = opt.ids().collect();
    let mut params = small_params(&ids, &mut values, &grads);
    assert!(
        matches!(opt.step(&mut params), Err(Error::NonFiniteGradient { name }) if name == "enc.b")
    );
    drop(params);
    assert_eq!(values, before);
}

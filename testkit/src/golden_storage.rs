//! The golden trajectories of the mixed-precision storage modes (`testdata/golden-storage`,
//! written by `scripts/golden_storage.py` from torch): the golden format plus the storage dtype of
//! each array.
//!
//! [`storage_cases`] reads every case in `RECADAM_GOLDEN_STORAGE_DIR` (default: the repository's
//! `testdata/golden-storage`); [`replay_storage`] picks the Rust types of a case's dtypes at run
//! time, so a case with any combination of `float32`, `bfloat16` and `float16` runs.

use std::path::PathBuf;

use recadam_core::half::{bf16, f16};
use recadam_core::{MixedSlices, StepScalars, Storage};
use serde::Deserialize;

use crate::golden::{compare_widened, Case, Grad, Report};

/// The storage dtype of each array of a mixed-precision case (numpy/torch spelling).
#[derive(Clone, Debug, Deserialize)]
pub struct StorageDtypes {
    pub grads: String,
    pub state: String,
    pub pretrained: String,
    /// `None`: no narrowed copy of the parameters.
    pub params_copy: Option<String>,
}

/// An update function over every storage mode (the reference, or a kernel under test).
pub trait MixedUpdate {
    fn update<G: Storage, S: Storage, A: Storage, C: Storage>(
        &mut self,
        scalars: &StepScalars<f32>,
        slices: MixedSlices<'_, G, S, A, C>,
    );
}

/// `recadam_core::update_mixed`.
pub struct Reference;

impl MixedUpdate for Reference {
    fn update<G: Storage, S: Storage, A: Storage, C: Storage>(
        &mut self,
        scalars: &StepScalars<f32>,
        slices: MixedSlices<'_, G, S, A, C>,
    ) {
        recadam_core::update_mixed(scalars, slices)
    }
}

/// The folder: `RECADAM_GOLDEN_STORAGE_DIR` or the repository's `testdata/golden-storage`.
pub fn storage_dir() -> PathBuf {
    crate::shared_dir("RECADAM_GOLDEN_STORAGE_DIR", "testdata/golden-storage")
}

/// Every case in [`storage_dir`], sorted by file name; panics when there is none or a case has no
/// `storage`.
pub fn storage_cases() -> Vec<(String, Case)> {
    let dir = storage_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no storage cases (*.json) in {}",
        dir.display()
    );
    files
        .iter()
        .map(|p| {
            let case = crate::golden::load(p);
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(case.storage.is_some(), "{name} has no `storage`");
            (name, case)
        })
        .collect()
}

/// The rtol of an array stored as `S`: the f32 golden tolerance, or, for a narrowed copy of the
/// parameters, one unit in the last place of `S` at the largest value (the f32 parameters may
/// differ in their last bit through torch's square root, which can move a rounding to `S`).
fn copy_rtol<S: Storage>() -> f64 {
    match S::NAME {
        "bf16" => 2f64.powi(-7),
        "f16" => 2f64.powi(-10),
        _ => crate::golden::rtol::<f32>(),
    }
}

fn stored<S: Storage>(values: &[f64]) -> Vec<S> {
    values.iter().map(|&x| S::narrow(x as f32)).collect()
}

fn widened<S: Storage>(values: &[S]) -> Vec<f64> {
    values.iter().map(|x| x.widen() as f64).collect()
}

/// Replays a mixed-precision case through `update` with the Rust types of its dtypes.
pub fn replay_storage(case: &Case, update: &mut impl MixedUpdate) -> Report {
    let dtypes = case.storage.clone().expect("a storage case");
    match dtypes.grads.as_str() {
        "float32" => with_grads::<f32>(case, &dtypes, update),
        "bfloat16" => with_grads::<bf16>(case, &dtypes, update),
        "float16" => with_grads::<f16>(case, &dtypes, update),
        other => panic!("unknown grads dtype {other:?}"),
    }
}

/// Replays `case` as [`replay_storage`] does when its moments and θ* are float32 or bfloat16
/// (the modes the optimizer offers its users: Python's `state_dtype`, `pretrained_dtype`), and
/// returns `None` for the others (float16 moments or θ*), which the kernel's tests replay. For
/// callers above the kernel, whose code does not depend on those types: each instantiation of
/// the whole step costs compile time, 36 here against 81.
pub fn replay_offered_storage(case: &Case, update: &mut impl MixedUpdate) -> Option<Report> {
    let d = case.storage.clone().expect("a storage case");
    let offered = |dtype: &str| matches!(dtype, "float32" | "bfloat16");
    if !offered(&d.state) || !offered(&d.pretrained) {
        return None;
    }
    Some(match d.grads.as_str() {
        "float32" => offered_state::<f32>(case, &d, update),
        "bfloat16" => offered_state::<bf16>(case, &d, update),
        "float16" => offered_state::<f16>(case, &d, update),
        other => panic!("unknown grads dtype {other:?}"),
    })
}

fn offered_state<G: Storage>(case: &Case, d: &StorageDtypes, u: &mut impl MixedUpdate) -> Report {
    if d.state == "bfloat16" {
        offered_pretrained::<G, bf16>(case, d, u)
    } else {
        offered_pretrained::<G, f32>(case, d, u)
    }
}

fn offered_pretrained<G: Storage, S: Storage>(
    case: &Case,
    d: &StorageDtypes,
    u: &mut impl MixedUpdate,
) -> Report {
    if d.pretrained == "bfloat16" {
        with_pretrained::<G, S, bf16>(case, d, u)
    } else {
        with_pretrained::<G, S, f32>(case, d, u)
    }
}

fn with_grads<G: Storage>(case: &Case, d: &StorageDtypes, u: &mut impl MixedUpdate) -> Report {
    match d.state.as_str() {
        "float32" => with_state::<G, f32>(case, d, u),
        "bfloat16" => with_state::<G, bf16>(case, d, u),
        "float16" => with_state::<G, f16>(case, d, u),
        other => panic!("unknown state dtype {other:?}"),
    }
}

fn with_state<G: Storage, S: Storage>(
    case: &Case,
    d: &StorageDtypes,
    u: &mut impl MixedUpdate,
) -> Report {
    match d.pretrained.as_str() {
        "float32" => with_pretrained::<G, S, f32>(case, d, u),
        "bfloat16" => with_pretrained::<G, S, bf16>(case, d, u),
        "float16" => with_pretrained::<G, S, f16>(case, d, u),
        other => panic!("unknown pretrained dtype {other:?}"),
    }
}

fn with_pretrained<G: Storage, S: Storage, A: Storage>(
    case: &Case,
    d: &StorageDtypes,
    u: &mut impl MixedUpdate,
) -> Report {
    match d.params_copy.as_deref() {
        None => replay_typed::<G, S, A, f32>(case, false, u),
        Some("float32") => replay_typed::<G, S, A, f32>(case, true, u),
        Some("bfloat16") => replay_typed::<G, S, A, bf16>(case, true, u),
        Some("float16") => replay_typed::<G, S, A, f16>(case, true, u),
        Some(other) => panic!("unknown params_copy dtype {other:?}"),
    }
}

fn replay_typed<G: Storage, S: Storage, A: Storage, C: Storage>(
    case: &Case,
    with_copy: bool,
    u: &mut impl MixedUpdate,
) -> Report {
    let config = case.recadam_config();
    let Grad::Given { per_step } = &case.grad else {
        panic!("storage cases give their gradients");
    };
    let pretrained = stored::<A>(&case.pretrained);
    let mut p: Vec<f32> = case.init.iter().map(|&x| x as f32).collect();
    let (mut m, mut v) = (vec![S::default(); case.n], vec![S::default(); case.n]);
    let mut copy = vec![C::default(); case.n];
    let mut report = Report::default();
    let mut checkpoints = case.checkpoints.iter().peekable();
    for t in 1..=case.steps {
        let g = stored::<G>(&per_step[t as usize - 1]);
        let lr = case.lr_per_step[t as usize - 1];
        let scalars = StepScalars::<f32>::new(&config, t, lr)
            .unwrap_or_else(|e| panic!("step {t}: the case's configuration was refused: {e}"));
        let slices = MixedSlices::new(&mut p, &g, &mut m, &mut v, Some(&pretrained)).unwrap();
        if with_copy {
            u.update(&scalars, slices.with_params_copy(&mut copy).unwrap());
        } else {
            u.update(&scalars, slices);
        }
        while let Some(ckpt) = checkpoints.next_if(|c| c.step == t) {
            let f32_rtol = crate::golden::rtol::<f32>();
            let want = |x: &[f64]| x.to_vec();
            compare_widened(
                &mut report,
                t,
                "params",
                &widened(&p),
                &want(&ckpt.params),
                f32_rtol,
            );
            for (array, got, reference) in [
                ("exp_avg", &m, &ckpt.exp_avg),
                ("exp_avg_sq", &v, &ckpt.exp_avg_sq),
            ] {
                compare_widened(&mut report, t, array, &widened(got), reference, f32_rtol);
            }
            match (&ckpt.params_copy, with_copy) {
                (Some(reference), true) => compare_widened(
                    &mut report,
                    t,
                    "params_copy",
                    &widened(&copy),
                    reference,
                    copy_rtol::<C>(),
                ),
                (None, false) => {}
                _ => report
                    .failures
                    .push(format!("step {t}: params_copy present on one side only")),
            }
        }
    }
    if let Some(left) = checkpoints.next() {
        report
            .failures
            .push(format!("checkpoint at step {} never reached", left.step));
    }
    report
}

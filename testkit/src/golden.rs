//! The golden trajectories of the official RecAdam (`testdata/golden/README.md` defines the format).
//!
//! [`cases`] reads every `*.json` in `RECADAM_GOLDEN_DIR` (default: the repository's `testdata/golden`) and panics
//! when there is none; [`replay`] runs one case through any update function and checks every
//! checkpoint array against the reference with the tolerance of the README.

use std::path::{Path, PathBuf};

use recadam_core::{Annealing, Element, RecAdamConfig, Slices, StepScalars};
use serde::Deserialize;

/// One golden case, as stored (numbers as `f64`; cast to the dtype on use).
#[derive(Debug, Deserialize)]
pub struct Case {
    pub description: String,
    pub dtype: String,
    /// The storage dtype of each array, in the mixed-precision cases of `testdata/golden-storage`.
    #[serde(default)]
    pub storage: Option<crate::golden_storage::StorageDtypes>,
    pub config: Config,
    pub lr_per_step: Vec<f64>,
    pub n: usize,
    pub steps: u64,
    pub pretrained: Vec<f64>,
    pub init: Vec<f64>,
    pub grad: Grad,
    pub checkpoints: Vec<Checkpoint>,
    pub anneal_lambda_per_step: Vec<f64>,
}

/// The `RecAdam(...)` constructor arguments of a case.
#[derive(Debug, Deserialize)]
pub struct Config {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub correct_bias: bool,
    pub anneal_fun: String,
    pub anneal_k: f64,
    pub anneal_t0: f64,
    pub anneal_w: f64,
    pub pretrain_cof: f64,
}

/// How the gradient of each step is made.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Grad {
    /// `g = a * (p - c)` in the dtype, from the current p, two roundings.
    Quadratic { a: Vec<f64>, c: Vec<f64> },
    /// `per_step[t - 1]` verbatim.
    Given { per_step: Vec<Vec<f64>> },
}

/// The state after one step.
#[derive(Debug, Deserialize)]
pub struct Checkpoint {
    pub step: u64,
    pub params: Vec<f64>,
    pub exp_avg: Vec<f64>,
    pub exp_avg_sq: Vec<f64>,
    /// The narrowed copy of the parameters (mixed-precision cases with a copy).
    #[serde(default)]
    pub params_copy: Option<Vec<f64>>,
}

impl Case {
    /// The configuration of this case in recadam's terms.
    pub fn recadam_config(&self) -> RecAdamConfig {
        let c = &self.config;
        let annealing = Annealing::from_official(&c.anneal_fun, c.anneal_k, c.anneal_t0)
            .unwrap_or_else(|| panic!("unknown anneal_fun {:?}", c.anneal_fun));
        RecAdamConfig {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            correct_bias: c.correct_bias,
            annealing,
            anneal_w: c.anneal_w,
            pretrain_cof: c.pretrain_cof,
            ..RecAdamConfig::default()
        }
    }

    /// Whether the case runs in `T` (its `dtype` is `T::NAME` spelled the numpy way).
    pub fn is<T: Element>(&self) -> bool {
        self.dtype == format!("float{}", &T::NAME[1..])
    }
}

/// The golden folder: `RECADAM_GOLDEN_DIR` or the repository's `testdata/golden`.
pub fn dir() -> PathBuf {
    crate::shared_dir("RECADAM_GOLDEN_DIR", "testdata/golden")
}

/// Every case in [`dir`], sorted by file name. Panics when the folder holds none: a golden test
/// that checks nothing must fail.
pub fn cases() -> Vec<(String, Case)> {
    let dir = dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read golden folder {}: {e}", dir.display()))
        .map(|entry| entry.expect("golden folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no golden cases (*.json) in {}: set RECADAM_GOLDEN_DIR",
        dir.display()
    );
    files.iter().map(|p| (name(p), load(p))).collect()
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Reads one case file.
pub fn load(path: &Path) -> Case {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("cannot parse {}: {e}", path.display()))
}

/// The rtol of the README's pass criterion: max|got − ref| ≤ rtol·max|ref| per array.
pub fn rtol<T: Element>() -> f64 {
    if T::NAME == "f32" {
        1e-6
    } else {
        1e-13
    }
}

/// What one replay found: the worst normwise error over all checkpoint arrays, and how many
/// arrays were bit-identical.
#[derive(Debug, Default)]
pub struct Report {
    pub worst_norm_rel: f64,
    pub arrays: usize,
    pub bit_exact_arrays: usize,
    pub failures: Vec<String>,
    /// The params, exp_avg and exp_avg_sq after the last step, widened to f64 (exactly).
    pub last: [Vec<f64>; 3],
}

fn cast<T: Element>(values: &[f64]) -> Vec<T> {
    values.iter().map(|&x| T::round_from_f64(x)).collect()
}

/// Replays `case` in `T` through `update` (which must do exactly what `recadam_core::update`
/// does, by whatever means) and compares every checkpoint array with the reference.
pub fn replay<T: Element>(
    case: &Case,
    mut update: impl FnMut(&StepScalars<T>, Slices<'_, T>),
) -> Report {
    let config = case.recadam_config();
    let pretrained = cast::<T>(&case.pretrained);
    let mut p = cast::<T>(&case.init);
    let mut m = vec![T::zero(); case.n];
    let mut v = vec![T::zero(); case.n];
    let mut g = vec![T::zero(); case.n];
    let quadratic = match &case.grad {
        Grad::Quadratic { a, c } => Some((cast::<T>(a), cast::<T>(c))),
        Grad::Given { .. } => None,
    };
    let mut report = Report::default();
    let mut checkpoints = case.checkpoints.iter().peekable();
    for t in 1..=case.steps {
        match (&quadratic, &case.grad) {
            (Some((a, c)), _) => {
                for i in 0..case.n {
                    g[i] = a[i] * (p[i] - c[i]);
                }
            }
            (None, Grad::Given { per_step }) => g = cast::<T>(&per_step[t as usize - 1]),
            (None, Grad::Quadratic { .. }) => unreachable!(),
        }
        let lr = case.lr_per_step[t as usize - 1];
        let scalars = StepScalars::<T>::new(&config, t, lr)
            .unwrap_or_else(|e| panic!("step {t}: the case's configuration was refused: {e}"));
        update(
            &scalars,
            Slices::new(&mut p, &g, &mut m, &mut v, Some(&pretrained)).unwrap(),
        );
        while let Some(ckpt) = checkpoints.next_if(|c| c.step == t) {
            for (array, got, want) in [
                ("params", &p, &ckpt.params),
                ("exp_avg", &m, &ckpt.exp_avg),
                ("exp_avg_sq", &v, &ckpt.exp_avg_sq),
            ] {
                compare(&mut report, t, array, got, &cast::<T>(want));
            }
            // m = v = 0 before step 1, so neither FMA nor sqrt can matter: bit-exact.
            if t == 1 {
                for (array, got, want) in [
                    ("exp_avg", &m, &ckpt.exp_avg),
                    ("exp_avg_sq", &v, &ckpt.exp_avg_sq),
                ] {
                    if !bits_equal(got, &cast::<T>(want)) {
                        report
                            .failures
                            .push(format!("step 1 {array} is not bit-exact"));
                    }
                }
            }
        }
    }
    if let Some(left) = checkpoints.next() {
        report
            .failures
            .push(format!("checkpoint at step {} never reached", left.step));
    }
    report.last = [&p, &m, &v].map(|x| x.iter().map(|e| e.widen_to_f64()).collect());
    report
}

fn bits_equal<T: Element>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.widen_to_f64().to_bits() == y.widen_to_f64().to_bits())
}

fn compare<T: Element>(report: &mut Report, t: u64, array: &str, got: &[T], want: &[T]) {
    let widen = |a: &[T]| a.iter().map(|x| x.widen_to_f64()).collect::<Vec<f64>>();
    compare_widened(report, t, array, &widen(got), &widen(want), rtol::<T>());
}

/// The README's pass criterion on widened values: bit-identical, or max|got − ref| ≤
/// rtol·max|ref|; records the outcome in `report`.
pub(crate) fn compare_widened(
    report: &mut Report,
    t: u64,
    array: &str,
    got: &[f64],
    want: &[f64],
    rtol: f64,
) {
    report.arrays += 1;
    if got.len() == want.len()
        && got
            .iter()
            .zip(want)
            .all(|(x, y)| x.to_bits() == y.to_bits())
    {
        report.bit_exact_arrays += 1;
        return;
    }
    let scale = want.iter().fold(0.0f64, |acc, x| acc.max(x.abs()));
    let diff = got.iter().zip(want).fold(0.0f64, |acc, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() {
            f64::INFINITY
        } else {
            acc.max(d)
        }
    });
    let rel = if scale > 0.0 {
        diff / scale
    } else if diff == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    report.worst_norm_rel = report.worst_norm_rel.max(rel);
    if got.len() != want.len() || diff > rtol * scale {
        report.failures.push(format!(
            "step {t} {array}: max|got − ref| = {diff:e} > {rtol} · max|ref| = {:e} (normwise {rel:e})",
            rtol * scale
        ));
    }
}

/// The bits (as f64) of recadam-core's own replay of `case` after its last step (params,
/// exp_avg, exp_avg_sq), after checking that replay against the golden tolerance: what an
/// adapter's replay of the case must equal.
pub fn core_bits<T: Element>(name: &str, case: &Case) -> [Vec<u64>; 3] {
    let reference = replay::<T>(case, |s, slices| recadam_core::update(s, slices));
    assert!(
        reference.failures.is_empty(),
        "{name}: recadam-core misses the golden tolerance: {:?}",
        reference.failures
    );
    reference
        .last
        .map(|a| a.iter().map(|x| x.to_bits()).collect())
}

/// Runs `f32_case` or `f64_case` on every golden case by its dtype (any other dtype fails).
pub fn for_each_case(mut f32_case: impl FnMut(&str, &Case), mut f64_case: impl FnMut(&str, &Case)) {
    for (name, case) in &cases() {
        if case.is::<f32>() {
            f32_case(name, case);
        } else if case.is::<f64>() {
            f64_case(name, case);
        } else {
            panic!(
                "{name}: dtype {} is neither float32 nor float64",
                case.dtype
            );
        }
    }
}

//! The official RecAdam trajectories, replayed through the scalar reference update.
//!
//! Every `*.json` in `RECADAM_GOLDEN_DIR` (default: the repository's `testdata/golden`) is replayed in its dtype;
//! every checkpoint array must meet max|got − ref| ≤ rtol·max|ref| (rtol 1e-6 for f32, 1e-13 for
//! f64), and the step-1 moments must be bit-exact.

use recadam_core::{update, Element, RecAdamConfig};
use recadam_testkit::golden::{self, Case};

fn replay_in<T: Element>(name: &str, case: &Case) -> bool {
    let report = golden::replay::<T>(case, |scalars, slices| update(scalars, slices));
    println!(
        "{name}: {}/{} arrays bit-exact, worst normwise error {:e}",
        report.bit_exact_arrays, report.arrays, report.worst_norm_rel
    );
    for failure in &report.failures {
        println!("  FAIL {failure}");
    }
    report.failures.is_empty()
}

#[test]
#[cfg_attr(
    miri,
    ignore = "reads files and replays thousands of steps: too slow under Miri"
)]
fn every_golden_case_matches_the_official_code() {
    let mut failed = Vec::new();
    let cases = golden::cases();
    for (name, case) in &cases {
        let ok = if case.is::<f32>() {
            replay_in::<f32>(name, case)
        } else if case.is::<f64>() {
            replay_in::<f64>(name, case)
        } else {
            panic!("{name}: unknown dtype {:?}", case.dtype)
        };
        if !ok {
            failed.push(name.clone());
        }
    }
    assert!(failed.is_empty(), "golden cases failed: {failed:?}");
    println!("{} golden cases passed", cases.len());
}

/// Our λ(t) (libm `exp`) against the λ the official code returned (numpy `exp`): they may differ
/// in the last bits only.
#[test]
#[cfg_attr(
    miri,
    ignore = "reads files and replays thousands of steps: too slow under Miri"
)]
fn lambda_matches_the_official_anneal_function() {
    for (name, case) in golden::cases() {
        let config: RecAdamConfig = case.recadam_config();
        if !config.has_penalty() {
            continue; // the official code never computes λ then; the list is all zeros
        }
        for (i, &want) in case.anneal_lambda_per_step.iter().enumerate() {
            let got = config.lambda(i as u64 + 1);
            let tolerance = 4.0 * f64::EPSILON * want.abs();
            assert!(
                (got - want).abs() <= tolerance,
                "{name}: λ({}) = {got:e}, official {want:e}",
                i + 1
            );
        }
    }
}

/// The golden test can fail: the same update with its multiply-adds rounded twice (no FMA) is
/// caught on at least one case, as the golden README measured (no case matches without FMA).
#[test]
#[cfg_attr(
    miri,
    ignore = "reads files and replays thousands of steps: too slow under Miri"
)]
fn an_update_without_fma_is_caught() {
    use recadam_core::{Rule, Slices, StepScalars};
    fn unfused(s: &StepScalars<f32>, slices: Slices<'_, f32>) {
        let (p, g, m, v, pp) = slices.into_parts();
        let pp = pp.unwrap();
        for i in 0..p.len() {
            m[i] = m[i] * s.beta1 + g[i] * s.one_minus_beta1;
            v[i] = v[i] * s.beta2 + s.one_minus_beta2 * g[i] * g[i];
            let d = v[i].sqrt() + s.eps;
            let step = if s.rule == Rule::Plain {
                s.neg_step
            } else {
                s.neg_step_lambda
            };
            p[i] += (step * m[i]) / d;
            if s.rule != Rule::Plain {
                p[i] += (p[i] - pp[i]) * s.neg_penalty;
            }
            if s.weight_decay {
                p[i] += p[i] * s.neg_weight_decay;
            }
        }
    }
    let caught = golden::cases()
        .iter()
        .filter(|(_, case)| case.is::<f32>())
        .filter(|(_, case)| !golden::replay::<f32>(case, unfused).failures.is_empty())
        .count();
    assert!(
        caught > 0,
        "no f32 golden case tells an unfused update apart"
    );
}

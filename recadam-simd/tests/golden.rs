//! The official RecAdam trajectories, replayed through every SIMD backend this CPU has.

use recadam_core::Element;
use recadam_simd::{Backend, Kernel, SimdElement};
use recadam_testkit::golden::{self, Case};

fn replay_in<T: SimdElement + Element>(kernel: Kernel, name: &str, case: &Case) -> Vec<String> {
    let report = golden::replay::<T>(case, |scalars, slices| kernel.update(scalars, slices));
    println!(
        "{} {name}: {}/{} arrays bit-exact, worst normwise error {:e}",
        kernel.backend(),
        report.bit_exact_arrays,
        report.arrays,
        report.worst_norm_rel
    );
    report.failures
}

#[test]
#[cfg_attr(miri, ignore = "too slow under Miri; runs natively and under qemu")]
fn every_golden_case_matches_on_every_backend() {
    let cases = golden::cases();
    let mut failed = Vec::new();
    for backend in Backend::available() {
        let kernel = Kernel::new(backend).unwrap();
        for (name, case) in &cases {
            let failures = if case.is::<f32>() {
                replay_in::<f32>(kernel, name, case)
            } else {
                replay_in::<f64>(kernel, name, case)
            };
            if !failures.is_empty() {
                failed.push(format!("{backend} {name}: {failures:?}"));
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

//! Every mixed-precision golden case (torch's trajectories of the storage modes, written by
//! `scripts/golden_storage.py`) replayed through the scalar reference `update_mixed`.

use recadam_testkit::golden_storage::{replay_storage, storage_cases, Reference};

#[test]
#[cfg_attr(miri, ignore = "file access; runs natively and under qemu")]
fn every_storage_case_matches_torch() {
    let cases = storage_cases();
    let mut failures = Vec::new();
    for (name, case) in &cases {
        let report = replay_storage(case, &mut Reference);
        eprintln!(
            "{name}: {} arrays, {} bit-exact, worst normwise {:e}",
            report.arrays, report.bit_exact_arrays, report.worst_norm_rel
        );
        assert!(report.arrays > 0, "{name}: no checkpoint compared");
        failures.extend(report.failures.iter().map(|f| format!("{name}: {f}")));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

//! `step_held_mixed`, the step over caller-held mixed-precision storage (f32 master parameters;
//! bf16/f16 gradients, moments, θ* and parameter copy): torch's trajectories for every storage
//! case, the reference's bits on any pool and split, the guard over 16-bit gradients, and every
//! refusal before any write.

use proptest::prelude::*;
use recadam_core::half::{bf16, f16};
use recadam_core::{update_mixed, Annealing, MixedSlices, RecAdamConfig, StepScalars, Storage};
use recadam_std::{
    step_held, step_held_mixed, CallingThread, Error, HeldMixedParam, HeldParam, Kernel,
    NonFiniteGuard, Pool, ScopedThreads,
};
use recadam_testkit::golden::Case;
use recadam_testkit::golden_storage::{replay_offered_storage, storage_cases, MixedUpdate};

fn config() -> RecAdamConfig {
    RecAdamConfig {
        lr: 1e-4,
        weight_decay: 0.01,
        eps: 1e-6,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 3.0 },
        ..RecAdamConfig::default()
    }
}

fn noise(i: usize) -> f32 {
    recadam_testkit::fixtures::noise(i)
}

/// `step_held_mixed` as the golden replay's update: one parameter, its own step count, the
/// case's configuration with this step's rate, on `pool`.
struct Held<'c> {
    case: &'c Case,
    t: u64,
    pool: &'c dyn Pool,
}

impl MixedUpdate for Held<'_> {
    fn update<G: Storage, S: Storage, A: Storage, C: Storage>(
        &mut self,
        _scalars: &StepScalars<f32>,
        slices: MixedSlices<'_, G, S, A, C>,
    ) {
        self.t += 1;
        let config = RecAdamConfig {
            lr: self.case.lr_per_step[self.t as usize - 1],
            ..self.case.recadam_config()
        };
        let params = vec![HeldMixedParam {
            slices,
            group: 0,
            t: self.t,
        }];
        let report = step_held_mixed(
            Kernel::best(),
            self.pool,
            NonFiniteGuard::Refuse,
            &[config],
            params,
        )
        .unwrap_or_else(|e| panic!("step {}: {e}", self.t));
        assert_eq!(report.skipped, None);
    }
}

/// Every storage case torch wrote (testdata/golden-storage, or RECADAM_GOLDEN_STORAGE_DIR) in
/// the modes the optimizer offers (moments and θ* in float32 or bfloat16; any gradients and
/// copy), through the held step with the guard on, on one thread and on two. Cases with float16
/// moments or θ* go through the same code here with other types; every case, those included, is
/// replayed through every backend's kernel in recadam-simd/tests/mixed.rs.
#[test]
fn every_storage_case_follows_torch() {
    let mut replayed = 0;
    for threads in [1, 2] {
        let pool = ScopedThreads { threads };
        for (name, case) in storage_cases() {
            let mut held = Held {
                case: &case,
                t: 0,
                pool: &pool,
            };
            let Some(report) = replay_offered_storage(&case, &mut held) else {
                eprintln!("{name}: float16 moments or θ*, replayed by the kernel's tests only");
                continue;
            };
            replayed += 1;
            assert!(
                report.failures.is_empty(),
                "{name} ({threads} threads): {:#?}",
                report.failures
            );
            assert_eq!(held.t, case.steps, "{name}");
        }
    }
    assert!(replayed > 0, "no storage case in an offered mode");
}

/// One tensor's arrays, in the storage types of the call.
struct Arrays<G, S, A, C> {
    p: Vec<f32>,
    g: Vec<G>,
    m: Vec<S>,
    v: Vec<S>,
    pp: Vec<A>,
    copy: Vec<C>,
}

impl<G: Storage, S: Storage, A: Storage, C: Storage> Arrays<G, S, A, C> {
    fn new(k: usize, n: usize) -> Self {
        let at = |i: usize, salt: usize| noise(i + 1000 * k + 7_000_003 * salt);
        Arrays {
            p: (0..n).map(|i| at(i, 0) * 0.1).collect(),
            g: (0..n).map(|i| G::narrow(at(i, 1) * 0.05)).collect(),
            m: (0..n).map(|i| S::narrow(at(i, 2) * 0.01)).collect(),
            v: (0..n).map(|i| S::narrow((at(i, 3) * 0.01).abs())).collect(),
            pp: (0..n).map(|i| A::narrow(at(i, 4) * 0.1)).collect(),
            copy: vec![C::default(); n],
        }
    }

    fn slices(&mut self) -> MixedSlices<'_, G, S, A, C> {
        MixedSlices::new(
            &mut self.p,
            &self.g,
            &mut self.m,
            &mut self.v,
            Some(&self.pp[..]),
        )
        .unwrap()
        .with_params_copy(&mut self.copy)
        .unwrap()
    }

    /// Every bit of the arrays the step writes.
    fn bits(&self) -> Vec<u32> {
        let wide = |x: &[S]| x.iter().map(|y| y.widen().to_bits()).collect::<Vec<_>>();
        let mut out: Vec<u32> = self.p.iter().map(|x| x.to_bits()).collect();
        out.extend(wide(&self.m));
        out.extend(wide(&self.v));
        out.extend(self.copy.iter().map(|y| y.widen().to_bits()));
        out
    }
}

/// Steps tensors of `lens` (tensor `k` at step `t0 + k`) on `pool`, against the core
/// reference tensor by tensor.
fn same_bits_as_the_reference<G: Storage, S: Storage, A: Storage, C: Storage>(
    lens: &[usize],
    pool: &dyn Pool,
    t0: u64,
) -> Result<(), TestCaseError> {
    let c = config();
    let mut ours: Vec<Arrays<G, S, A, C>> = lens
        .iter()
        .enumerate()
        .map(|(k, &n)| Arrays::new(k, n))
        .collect();
    let mut want: Vec<Arrays<G, S, A, C>> = lens
        .iter()
        .enumerate()
        .map(|(k, &n)| Arrays::new(k, n))
        .collect();
    for (k, w) in want.iter_mut().enumerate() {
        let scalars = StepScalars::new(&c, t0 + k as u64, c.lr).unwrap();
        update_mixed(&scalars, w.slices());
    }
    let params = ours
        .iter_mut()
        .enumerate()
        .map(|(k, a)| HeldMixedParam {
            slices: a.slices(),
            group: 0,
            t: t0 + k as u64,
        })
        .collect();
    let report = step_held_mixed(Kernel::best(), pool, NonFiniteGuard::Skip, &[c], params)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(report.skipped, None);
    for (k, (o, w)) in ours.iter().zip(&want).enumerate() {
        prop_assert!(
            o.bits() == w.bits(),
            "tensor {k} of {lens:?} ({}/{}/{}/{}, {} threads) differs",
            G::NAME,
            S::NAME,
            A::NAME,
            C::NAME,
            pool.threads()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any split over 1-3 threads (cuts inside tensors at multiples of 64) gives the
    /// reference's bits in the storage modes a GPU host uses.
    #[test]
    fn any_pool_gives_the_reference_bits(
        lens in prop::collection::vec(0usize..700, 1..5),
        threads in 1usize..4,
        t0 in 1u64..20,
    ) {
        let pool = ScopedThreads { threads };
        same_bits_as_the_reference::<bf16, f32, f32, bf16>(&lens, &pool, t0)?;
        same_bits_as_the_reference::<f16, f32, f32, f16>(&lens, &pool, t0)?;
        same_bits_as_the_reference::<f32, f32, bf16, f32>(&lens, &pool, t0)?;
        same_bits_as_the_reference::<bf16, bf16, bf16, bf16>(&lens, &pool, t0)?;
    }
}

/// 16-bit gradients: `grads` of three tensors (the middle one poisoned at `at` with `bad`).
fn poisoned<G: Storage>(bad: G, at: usize) -> Vec<Vec<G>> {
    [100usize, 70_001, 37]
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let mut g: Vec<G> = (0..n)
                .map(|i| G::narrow(noise(i + 31 * k) * 0.05))
                .collect();
            if k == 1 {
                g[at] = bad;
            }
            g
        })
        .collect()
}

/// Runs the guard over `grads` with every other array in f32 and returns the report (or the
/// error) and whether anything was written.
fn guarded<G: Storage>(
    grads: &[Vec<G>],
    guard: NonFiniteGuard,
    pool: &dyn Pool,
) -> (Result<recadam_std::HeldReport, Error>, bool) {
    let mut state: Vec<[Vec<f32>; 4]> = grads
        .iter()
        .map(|g| {
            let n = g.len();
            [vec![0.25; n], vec![0.0; n], vec![0.0; n], vec![0.5; n]]
        })
        .collect();
    let before: Vec<[Vec<f32>; 4]> = state.clone();
    let params = state
        .iter_mut()
        .zip(grads)
        .map(|([p, m, v, pp], g)| HeldMixedParam {
            slices: MixedSlices::new(p, g, m, v, Some(&pp[..])).unwrap(),
            group: 0,
            t: 1,
        })
        .collect();
    let result = step_held_mixed(Kernel::best(), pool, guard, &[config()], params);
    (result, state != before)
}

#[test]
fn non_finite_16_bit_gradients_skip_or_refuse_the_step_before_any_write() {
    let pools: [&dyn Pool; 2] = [&CallingThread, &ScopedThreads { threads: 2 }];
    for pool in pools {
        for at in [0, 1, 63, 64, 65_535, 65_536, 70_000] {
            for (bad_bf16, bad_f16) in [
                (bf16::NAN, f16::NAN),
                (bf16::INFINITY, f16::INFINITY),
                (bf16::NEG_INFINITY, f16::NEG_INFINITY),
            ] {
                for (report, wrote) in [
                    guarded(&poisoned(bad_bf16, at), NonFiniteGuard::Skip, pool),
                    guarded(&poisoned(bad_f16, at), NonFiniteGuard::Skip, pool),
                ] {
                    assert_eq!(report.unwrap().skipped, Some(1), "at {at}");
                    assert!(!wrote, "a skipped step wrote (at {at})");
                }
                for (report, wrote) in [
                    guarded(&poisoned(bad_bf16, at), NonFiniteGuard::Refuse, pool),
                    guarded(&poisoned(bad_f16, at), NonFiniteGuard::Refuse, pool),
                ] {
                    match report {
                        Err(Error::NonFiniteGradient { name }) => assert_eq!(name, "#1"),
                        other => panic!("expected a refusal naming #1, got {other:?}"),
                    }
                    assert!(!wrote, "a refused step wrote (at {at})");
                }
            }
        }
        // With the guard off, the step runs (and the NaN reaches its parameter).
        let (report, wrote) = guarded(&poisoned(bf16::NAN, 5), NonFiniteGuard::Off, pool);
        assert_eq!(
            report.unwrap(),
            recadam_std::HeldReport {
                skipped: None,
                grad_norm: None
            }
        );
        assert!(wrote);
    }
}

/// The norm the guard reports over bf16/f16 gradients has the bits of the f32 step's norm over
/// the same values widened, on any pool.
#[test]
fn the_norm_of_16_bit_gradients_is_the_f32_norm_of_their_values() {
    fn check<G: Storage>(pool: &dyn Pool) {
        let grads: Vec<Vec<G>> = [3usize, 70_001, 130_000, 0]
            .iter()
            .enumerate()
            .map(|(k, &n)| (0..n).map(|i| G::narrow(noise(i + 77 * k) * 0.3)).collect())
            .collect();
        let (report, _) = guarded(&grads, NonFiniteGuard::Skip, pool);
        let got = report.unwrap().grad_norm.unwrap();
        let widened: Vec<Vec<f32>> = grads
            .iter()
            .map(|g| g.iter().map(|x| x.widen()).collect())
            .collect();
        let mut state: Vec<[Vec<f32>; 4]> = widened
            .iter()
            .map(|g| {
                [
                    vec![0.25; g.len()],
                    vec![0.0; g.len()],
                    vec![0.0; g.len()],
                    vec![0.5; g.len()],
                ]
            })
            .collect();
        let params = state
            .iter_mut()
            .zip(&widened)
            .map(|([p, m, v, pp], g)| HeldParam {
                slices: recadam_core::Slices::new(p, g, m, v, Some(&pp[..])).unwrap(),
                group: 0,
                t: 1,
            })
            .collect();
        let want = step_held(
            Kernel::best(),
            pool,
            NonFiniteGuard::Skip,
            &[config()],
            params,
        )
        .unwrap()
        .grad_norm
        .unwrap();
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{} on {} threads",
            G::NAME,
            pool.threads()
        );
        assert!(got > 0.0);
    }
    let pools: [&dyn Pool; 3] = [
        &CallingThread,
        &ScopedThreads { threads: 2 },
        &ScopedThreads { threads: 3 },
    ];
    for pool in pools {
        check::<bf16>(pool);
        check::<f16>(pool);
    }
}

#[test]
fn bad_calls_are_typed_errors_before_any_write() {
    let grads = [vec![bf16::from_f32(0.1); 8]];
    let run = |configs: &[RecAdamConfig], group: usize, t: u64, with_pretrained: bool| {
        let (mut p, mut m, mut v) = (vec![0.25f32; 8], vec![0.0f32; 8], vec![0.0f32; 8]);
        let pp = [0.5f32; 8];
        let slices = MixedSlices::new(
            &mut p,
            &grads[0],
            &mut m,
            &mut v,
            with_pretrained.then_some(&pp[..]),
        )
        .unwrap();
        let params = vec![HeldMixedParam { slices, group, t }];
        let result = step_held_mixed(
            Kernel::best(),
            &CallingThread,
            NonFiniteGuard::Skip,
            configs,
            params,
        );
        assert_eq!(p, vec![0.25f32; 8], "a refused call wrote");
        result
    };
    let c = config();
    assert!(matches!(run(&[c], 1, 1, true), Err(Error::UnknownGroup(s)) if s.contains("#1")));
    assert!(matches!(
        run(&[c], 0, 1, false),
        Err(Error::MissingPretrained { name, .. }) if name == "#0"
    ));
    assert!(
        matches!(
            run(&[c], 0, 0, true),
            Err(Error::Config(recadam_core::Error::StepZero))
        ),
        "step 0 is refused"
    );
    // A rate at which the penalty diverges (lr·(w − λ)·γ ≥ 2).
    let fast = RecAdamConfig { lr: 1e-3, ..c };
    assert!(matches!(
        run(&[fast], 0, 1, true),
        Err(Error::Config(recadam_core::Error::PenaltyDiverges { .. }))
    ));
    // The lengths are checked where the slices are grouped, naming the array.
    let (mut p, mut m, mut v) = (vec![0.0f32; 8], vec![0.0f32; 8], vec![0.0f32; 7]);
    let err = MixedSlices::<_, _, f32>::new(&mut p, &grads[0], &mut m, &mut v, None).unwrap_err();
    assert!(err.to_string().contains("exp_avg_sq"), "{err}");
}

//! One step over parameters whose state the caller holds: PyTorch's `state[p]` (the Python
//! package), a C host's buffers, DeepSpeed's flat partitions. The caller keeps each parameter's
//! m, v, θ* and step count, and says which hyperparameters apply; this runs the guard and the
//! update on a pool exactly as [`crate::Optimizer::step`] does, with the same bits.

use recadam_core::{RecAdamConfig, Slices, StepScalars};
use recadam_simd::{Kernel, SimdElement};

use crate::pool::{self, Pool};
use crate::{Error, NonFiniteGuard};

/// One parameter of a [`step_held`] call.
#[derive(Debug)]
pub struct HeldParam<'a, T> {
    /// Its values, gradient, state and θ* (θ* is needed where its group has a penalty).
    pub slices: Slices<'a, T>,
    /// Which of the call's configurations applies (its group).
    pub group: usize,
    /// The step t this update is, from 1: the global count, or the parameter's own as the
    /// official code keeps `state["step"]`.
    pub t: u64,
}

/// What a [`step_held`] call did.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldReport {
    /// `Some(k)` when the step was skipped ([`NonFiniteGuard::Skip`]) because the gradient of
    /// the `k`-th parameter given holds NaN or an infinity; nothing changed.
    pub skipped: Option<usize>,
    /// The global gradient norm (f64, fixed summation order), when the guard read it.
    pub grad_norm: Option<f64>,
}

/// Updates every parameter in `params` with `configs[param.group]` (each config's `lr` is the
/// rate of this step) at its own step `t`, on `pool`.
///
/// Nothing changes unless the whole step succeeds: a group index out of range, a missing θ*,
/// a step `t` of 0, a learning rate at which the penalty diverges and (with
/// [`NonFiniteGuard::Refuse`]) a non-finite gradient are all reported before any write.
///
/// ```
/// use recadam_core::{Annealing, RecAdamConfig, Slices};
/// use recadam_std::{step_held, CallingThread, HeldParam, Kernel, NonFiniteGuard};
///
/// // λ = w from the first step: the task gradient moves the parameter at once.
/// let config = RecAdamConfig { lr: 1e-4, annealing: Annealing::Constant, ..RecAdamConfig::default() };
/// let pretrained = [0.5f32; 4];
/// let (mut p, g) = ([0.5f32; 4], [0.1f32; 4]);
/// let (mut m, mut v) = ([0.0f32; 4], [0.0f32; 4]);
/// let slices = Slices::new(&mut p, &g, &mut m, &mut v, Some(&pretrained[..]))?;
/// let params = vec![HeldParam { slices, group: 0, t: 1 }];
/// let report = step_held(Kernel::best(), &CallingThread, NonFiniteGuard::Skip, &[config], params)?;
/// assert_eq!(report.skipped, None);
/// assert!(p[0] < 0.5);
/// # Ok::<(), recadam_std::Error>(())
/// ```
pub fn step_held<T: SimdElement>(
    kernel: Kernel,
    pool: &dyn Pool,
    guard: NonFiniteGuard,
    configs: &[RecAdamConfig],
    params: Vec<HeldParam<'_, T>>,
) -> Result<HeldReport, Error> {
    // The step scalars first: every check that can fail runs before any write.
    let mut scalars = Vec::with_capacity(params.len());
    for (k, p) in params.iter().enumerate() {
        let config = configs.get(p.group).ok_or(Error::UnknownGroup(format!(
            "#{} (of parameter #{k}; {} given)",
            p.group,
            configs.len()
        )))?;
        if config.has_penalty() && !p.slices.has_pretrained() {
            return Err(Error::MissingPretrained {
                name: format!("#{k}"),
                group: format!("#{}", p.group),
            });
        }
        scalars.push(StepScalars::new(config, p.t, config.lr)?);
    }
    let mut grad_norm = None;
    if guard != NonFiniteGuard::Off {
        let grads: Vec<&[T]> = params.iter().map(|p| p.slices.grads()).collect();
        let stats = pool::grad_stats(pool, kernel, &grads);
        grad_norm = Some(stats.iter().map(|s| s.sum_squares).sum::<f64>().sqrt());
        if let Some(k) = stats.iter().position(|s| !s.finite) {
            if guard == NonFiniteGuard::Refuse {
                return Err(Error::NonFiniteGradient {
                    name: format!("#{k}"),
                });
            }
            return Ok(HeldReport {
                skipped: Some(k),
                grad_norm,
            });
        }
    }
    let work = params
        .into_iter()
        .enumerate()
        .map(|(k, p)| (k, p.slices))
        .collect();
    pool::update(pool, kernel, &scalars, work);
    Ok(HeldReport {
        skipped: None,
        grad_norm,
    })
}

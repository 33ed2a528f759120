//! One step over parameters whose state the caller holds: PyTorch's `state[p]` (the Python
//! package), a C host's buffers, DeepSpeed's flat partitions. The caller keeps each parameter's
//! m, v, θ* and step count, and says which hyperparameters apply; this runs the guard and the
//! update on a pool exactly as [`crate::Optimizer::step`] does, with the same bits.

use std::path::Path;

use recadam_core::{RecAdamConfig, Slices, StepScalars};
use recadam_simd::{Kernel, SimdElement};

use crate::pool::{self, Pool};
use crate::{
    Buffer, Error, Group, NonFiniteGuard, Optimizer, Options, ParamId, Pretrained, Selector,
    StepCount,
};

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

/// One parameter's state as its caller holds it, for [`save_held`] and [`load_held`].
#[derive(Debug)]
pub struct HeldState<'a, T> {
    /// The first moment (written by [`load_held`]).
    pub exp_avg: &'a mut [T],
    /// The second moment (written by [`load_held`]).
    pub exp_avg_sq: &'a mut [T],
    /// θ* (the file keeps its checksum, so a load finds a different θ*), where its group has one.
    pub pretrained: Option<&'a [T]>,
    /// Which of the call's configurations applies (its group).
    pub group: usize,
    /// The steps this parameter took.
    pub steps: u64,
}

/// What [`load_held`] read besides the moments.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldCheckpoint {
    /// Each parameter's step count, in the order given.
    pub steps: Vec<u64>,
    /// Each group's learning rate.
    pub lrs: Vec<f64>,
}

/// Saves caller-held state in the project's checkpoint format (safetensors, checksummed,
/// written atomically): the file an [`crate::Optimizer`] with these groups (named `group{g}`)
/// and parameters (named `group{g}.param{i}`, `i` counting within the group in the order given)
/// would write. The configurations must share one `penalty_mode`.
pub fn save_held<T: SimdElement + bytemuck::Pod>(
    path: &Path,
    configs: &[RecAdamConfig],
    states: Vec<HeldState<'_, T>>,
) -> Result<(), Error> {
    held_optimizer(configs, states)?.0.save_checkpoint(path)
}

/// Reads a file [`save_held`] (or an optimizer of the same layout) wrote into caller-held state:
/// the same groups, parameters, hyperparameters (but the learning rates, which are read) and θ*
/// checksums are required; on any difference or damage nothing changes.
pub fn load_held<T: SimdElement + bytemuck::Pod>(
    path: &Path,
    configs: &[RecAdamConfig],
    states: Vec<HeldState<'_, T>>,
) -> Result<HeldCheckpoint, Error> {
    let (mut opt, ids) = held_optimizer(configs, states)?;
    opt.load_checkpoint(path)?;
    Ok(HeldCheckpoint {
        steps: ids
            .iter()
            .map(|&id| opt.param_steps(id).unwrap_or(0))
            .collect(),
        lrs: (0..configs.len())
            .map(|g| opt.lr(&format!("group{g}")).unwrap_or(f64::NAN))
            .collect(),
    })
}

/// An optimizer over borrowed caller-held state, with per-parameter step counts.
fn held_optimizer<'a, T: SimdElement>(
    configs: &[RecAdamConfig],
    states: Vec<HeldState<'a, T>>,
) -> Result<(Optimizer<'a, T>, Vec<ParamId>), Error> {
    let first = *configs
        .first()
        .ok_or_else(|| Error::UnknownGroup("#0 (no groups given)".into()))?;
    if configs.iter().any(|c| c.penalty_mode != first.penalty_mode) {
        return Err(Error::MixedPenaltyModes);
    }
    let options = Options {
        step_count: StepCount::PerParam,
        ..Options::new(first)
    };
    let mut opt = Optimizer::with_kernel(options, Kernel::best())?;
    for (g, c) in configs.iter().enumerate() {
        let group = Group::new(&format!("group{g}"), Selector::Prefix(format!("group{g}.")))
            .lr(c.lr)
            .weight_decay(c.weight_decay)
            .anneal_w(c.anneal_w)
            .pretrain_cof(c.pretrain_cof)
            .betas(c.beta1, c.beta2)
            .eps(c.eps)
            .correct_bias(c.correct_bias)
            .annealing(c.annealing);
        opt.add_group(group)?;
    }
    let mut in_group = vec![0usize; configs.len()];
    let mut ids = Vec::with_capacity(states.len());
    let mut counts = Vec::with_capacity(states.len());
    let global = states.iter().map(|s| s.steps).max().unwrap_or(0);
    for (k, s) in states.into_iter().enumerate() {
        let index = in_group
            .get_mut(s.group)
            .ok_or(Error::UnknownGroup(format!(
                "#{} (of parameter #{k}; {} given)",
                s.group,
                configs.len()
            )))?;
        let name = format!("group{}.param{index}", s.group);
        *index += 1;
        let id = opt.register_with_state(
            &name,
            s.exp_avg.len(),
            s.pretrained.map(Pretrained::Borrowed),
            Buffer::Borrowed(s.exp_avg),
            Buffer::Borrowed(s.exp_avg_sq),
        )?;
        ids.push(id);
        counts.push((id, s.steps));
    }
    opt.set_step_counts(global, &counts)?;
    Ok((opt, ids))
}

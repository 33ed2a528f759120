//! One step over parameters whose state the caller holds: PyTorch's `state[p]` (the Python
//! package), a C host's buffers, DeepSpeed's flat partitions. The caller keeps each parameter's
//! m, v, θ* and step count, and says which hyperparameters apply; this runs the guard and the
//! update on a pool exactly as [`crate::Optimizer::step`] does, with the same bits.

use std::path::Path;

use recadam_core::{Element, MixedSlices, RecAdamConfig, Slices, StepScalars, Storage};
use recadam_simd::{GradStats, Kernel, SimdElement};

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
    let params = params.into_iter().map(|p| (p.slices, p.group, p.t));
    held_step(kernel, pool, guard, configs, params.collect())
}

/// One parameter of a [`step_held_mixed`] call: f32 master parameters whose gradients,
/// moments, θ* and optional narrowed copy are stored as `G`, `S`, `A` and `C` (f32, bf16 or
/// f16; see `recadam_core::Storage` for the rounding contract).
#[derive(Debug)]
pub struct HeldMixedParam<'a, G, S, A, C = f32> {
    /// Its values, gradient, state, θ* and copy.
    pub slices: MixedSlices<'a, G, S, A, C>,
    /// Which of the call's configurations applies (its group).
    pub group: usize,
    /// The step t this update is, from 1.
    pub t: u64,
}

/// [`step_held`] for a GPU host's storage: f32 master parameters with bf16 or f16 gradients (as
/// a bf16/f16 backward pass leaves them), optionally bf16 moments or θ*, and optionally a
/// bf16/f16 copy of the updated parameters written in the same pass (what the host copies back
/// to the GPU). The guard reads 16-bit gradients as it reads f32 ones: a NaN or an infinity in
/// any of them skips or refuses the step before any write, and the reported norm has the bits of
/// the f32 step's norm over the same (widened) values.
///
/// ```
/// use recadam_core::half::bf16;
/// use recadam_core::{Annealing, MixedSlices, RecAdamConfig};
/// use recadam_std::{step_held_mixed, CallingThread, HeldMixedParam, Kernel, NonFiniteGuard};
///
/// let config = RecAdamConfig { lr: 1e-4, annealing: Annealing::Constant, ..RecAdamConfig::default() };
/// let pretrained = [bf16::from_f32(0.5); 4]; // a bf16 checkpoint
/// let (mut p, g) = ([0.5f32; 4], [bf16::from_f32(0.1); 4]);
/// let (mut m, mut v) = ([0.0f32; 4], [0.0f32; 4]);
/// let mut gpu_copy = [bf16::ZERO; 4];
/// let slices = MixedSlices::new(&mut p, &g, &mut m, &mut v, Some(&pretrained[..]))?
///     .with_params_copy(&mut gpu_copy)?;
/// let params = vec![HeldMixedParam { slices, group: 0, t: 1 }];
/// let report = step_held_mixed(Kernel::best(), &CallingThread, NonFiniteGuard::Skip, &[config], params)?;
/// assert_eq!(report.skipped, None);
/// assert!(p[0] < 0.5);
/// assert_eq!(gpu_copy[0], bf16::from_f32(p[0]));
/// # Ok::<(), recadam_std::Error>(())
/// ```
pub fn step_held_mixed<G: Storage, S: Storage, A: Storage, C: Storage>(
    kernel: Kernel,
    pool: &dyn Pool,
    guard: NonFiniteGuard,
    configs: &[RecAdamConfig],
    params: Vec<HeldMixedParam<'_, G, S, A, C>>,
) -> Result<HeldReport, Error> {
    let params = params.into_iter().map(|p| (p.slices, p.group, p.t));
    held_step(kernel, pool, guard, configs, params.collect())
}

/// [`step_held`] and [`step_held_mixed`]: each `(slices, group, t)` updated with
/// `configs[group]` at step `t`, after the guard.
fn held_step<W: pool::Update>(
    kernel: Kernel,
    pool: &dyn Pool,
    guard: NonFiniteGuard,
    configs: &[RecAdamConfig],
    params: Vec<(W, usize, u64)>,
) -> Result<HeldReport, Error> {
    // The step scalars first: every check that can fail runs before any write.
    let scalars = held_scalars::<W::Param>(
        configs,
        params
            .iter()
            .map(|(slices, group, t)| (*group, *t, slices.has_pretrained())),
    )?;
    let mut report = HeldReport {
        skipped: None,
        grad_norm: None,
    };
    if guard != NonFiniteGuard::Off {
        let grads: Vec<&[W::Grad]> = params.iter().map(|(slices, ..)| slices.grads()).collect();
        report = guard_verdict(guard, &pool::grad_stats::<W>(pool, kernel, &grads))?;
        if report.skipped.is_some() {
            return Ok(report);
        }
    }
    let work = params
        .into_iter()
        .enumerate()
        .map(|(k, (slices, ..))| (k, slices))
        .collect();
    pool::update(pool, kernel, &scalars, work);
    Ok(report)
}

/// The step scalars of each `(group, t, has θ*)`, or the first thing that makes the step
/// impossible: a group out of range, a missing θ*, a step 0, a diverging rate.
fn held_scalars<T: Element>(
    configs: &[RecAdamConfig],
    params: impl Iterator<Item = (usize, u64, bool)>,
) -> Result<Vec<StepScalars<T>>, Error> {
    params
        .enumerate()
        .map(|(k, (group, t, has_pretrained))| {
            let config = configs.get(group).ok_or(Error::UnknownGroup(format!(
                "#{group} (of parameter #{k}; {} given)",
                configs.len()
            )))?;
            if config.has_penalty() && !has_pretrained {
                return Err(Error::MissingPretrained {
                    name: format!("#{k}"),
                    group: format!("#{group}"),
                });
            }
            Ok(StepScalars::new(config, t, config.lr)?)
        })
        .collect()
}

/// The guard's verdict on every gradient's statistics: the global norm (f64, in parameter
/// order) and the first parameter whose gradient is not finite, or with
/// [`NonFiniteGuard::Refuse`] the error naming it.
fn guard_verdict(guard: NonFiniteGuard, stats: &[GradStats]) -> Result<HeldReport, Error> {
    let grad_norm = Some(stats.iter().map(|s| s.sum_squares).sum::<f64>().sqrt());
    match stats.iter().position(|s| !s.finite) {
        Some(k) if guard == NonFiniteGuard::Refuse => Err(Error::NonFiniteGradient {
            name: format!("#{k}"),
        }),
        skipped => Ok(HeldReport { skipped, grad_norm }),
    }
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

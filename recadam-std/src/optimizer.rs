//! The optimizer users hold: named parameters in groups, state, schedule, clipping, the
//! non-finite guard, threads, and the forgetting metrics of the paper.

use std::borrow::Cow;
use std::collections::HashMap;

use recadam_core::{RecAdamConfig, Slices, StepScalars};
use recadam_simd::{GradStats, Kernel, SimdElement};

use crate::group::Group;
use crate::parallel::{self, ALIGN};
use crate::schedule::{Constant, LrSchedule};
use crate::Error;

/// What to do with a step whose gradients contain NaN or an infinity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonFiniteGuard {
    /// Refuse the step with [`Error::NonFiniteGradient`]: no parameter and no state changes,
    /// and training can go on with the next batch.
    #[default]
    Refuse,
    /// Skip the step and count it, as a mixed-precision loss scaler does; `step` returns a
    /// report with `skipped` set.
    Skip,
    /// No check: the non-finite values go through the update (as in PyTorch).
    Off,
}

/// How the optimizer runs, besides the update rule's hyperparameters.
#[derive(Debug)]
pub struct Options {
    /// The update rule; `config.lr` is the peak learning rate the schedule multiplies.
    pub config: RecAdamConfig,
    /// Learning-rate multiplier per step.
    pub schedule: Box<dyn LrSchedule>,
    /// Clip the global gradient norm to this, as `torch.nn.utils.clip_grad_norm_` (with its
    /// 1e-6 in the denominator); `None` does not clip.
    pub max_grad_norm: Option<f64>,
    /// Non-finite gradient handling.
    pub guard: NonFiniteGuard,
    /// Threads per step (1 or more).
    pub threads: usize,
}

impl Options {
    /// `config` with a constant schedule, no clipping, the guard on, and one thread.
    pub fn new(config: RecAdamConfig) -> Options {
        Options {
            config,
            schedule: Box::new(Constant),
            max_grad_norm: None,
            guard: NonFiniteGuard::Refuse,
            threads: 1,
        }
    }
}

/// A caller-owned buffer or one the optimizer owns: optimizer state can live in memory the
/// caller allocated (pinned host memory on a GPU host, a memory-mapped file).
#[derive(Debug)]
pub enum Buffer<'s, T> {
    /// Allocated by the optimizer.
    Owned(Vec<T>),
    /// Borrowed from the caller for the optimizer's lifetime.
    Borrowed(&'s mut [T]),
}

impl<T> std::ops::Deref for Buffer<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Buffer::Owned(v) => v,
            Buffer::Borrowed(s) => s,
        }
    }
}

impl<T> std::ops::DerefMut for Buffer<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            Buffer::Owned(v) => v,
            Buffer::Borrowed(s) => s,
        }
    }
}

/// One registered parameter's optimizer state.
#[derive(Debug)]
pub(crate) struct ParamState<'s, T: Clone> {
    pub(crate) name: String,
    pub(crate) group: usize,
    pub(crate) exp_avg: Buffer<'s, T>,
    pub(crate) exp_avg_sq: Buffer<'s, T>,
    /// θ*, for parameters of penalised groups.
    pub(crate) pretrained: Option<Cow<'s, [T]>>,
}

/// A parameter as the caller hands it to [`Optimizer::step`]: its values, updated in place, and
/// its gradient (read only; clipping is applied inside the update).
#[derive(Debug)]
pub struct ParamMut<'a, T> {
    /// The registered name.
    pub name: &'a str,
    /// The values, updated in place.
    pub value: &'a mut [T],
    /// The gradient of the loss with respect to `value`.
    pub grad: &'a [T],
}

/// What one step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The step number (from 1); unchanged when the step was skipped.
    pub step: u64,
    /// The learning rate used.
    pub lr: f64,
    /// λ(t) (0 without a penalty).
    pub lambda: f64,
    /// The global gradient norm before clipping (f64, fixed summation order); `None` when
    /// neither the guard nor clipping needed it (the pass over the gradients was skipped).
    pub grad_norm: Option<f64>,
    /// The factor the gradients were multiplied by (1 without clipping).
    pub grad_scale: f64,
    /// `Some(name)` when the step was skipped for a non-finite gradient in `name`.
    pub skipped: Option<String>,
}

/// Euclidean distances of the parameters to θ*: the paper's measure of forgetting (Figure 2).
#[derive(Clone, Debug, PartialEq)]
pub struct Distances {
    /// Over every parameter with a pretrained counterpart.
    pub overall: f64,
    /// Per group, in the order the groups were added (0 for groups without a penalty).
    pub per_group: Vec<(String, f64)>,
}

/// Gradients are summed in blocks of this many elements (per parameter, from its start), so
/// that the global norm has the same bits for any number of threads.
const STATS_BLOCK: usize = 1 << 16;

/// The RecAdam optimizer over named parameters, generic over `f32` and `f64`.
///
/// ```
/// use recadam_core::RecAdamConfig;
/// use recadam_std::{Group, Optimizer, Options, ParamMut, Selector};
///
/// let config = RecAdamConfig { lr: 5e-5, ..RecAdamConfig::default() };
/// let mut opt = Optimizer::<f32>::new(Options::new(config))?;
/// opt.add_group(Group::new("encoder", Selector::Prefix("encoder.".into())))?;
/// opt.add_group(Group::new("head", Selector::All).penalty(false))?;
///
/// let pretrained = vec![0.02f32; 8];
/// let mut encoder = pretrained.clone();
/// let mut head = vec![0.0f32; 2];
/// opt.register("encoder.w", encoder.len(), Some(pretrained.as_slice().into()))?;
/// opt.register("head.w", head.len(), None)?;
///
/// let (g_enc, g_head) = (vec![0.1f32; 8], vec![-0.3f32; 2]);
/// let report = opt.step(&mut [
///     ParamMut { name: "encoder.w", value: &mut encoder, grad: &g_enc },
///     ParamMut { name: "head.w", value: &mut head, grad: &g_head },
/// ])?;
/// assert_eq!(report.step, 1);
/// assert!(head[0] > 0.0); // moved against its gradient
/// # Ok::<(), recadam_std::Error>(())
/// ```
#[derive(Debug)]
pub struct Optimizer<'s, T: SimdElement> {
    pub(crate) options: Options,
    pub(crate) groups: Vec<Group>,
    pub(crate) params: Vec<ParamState<'s, T>>,
    index: HashMap<String, usize>,
    pub(crate) step: u64,
    pub(crate) skipped: u64,
    kernel: Kernel,
    last: Option<StepReport>,
}

impl<'s, T: SimdElement> Optimizer<'s, T> {
    /// An optimizer with no groups or parameters yet; checks the options. Runs the best SIMD
    /// kernel this CPU has ([`Kernel::best`]); the environment is not read (tests and benchmarks
    /// that honour `RECADAM_BACKEND` pass `Kernel::from_env()?` to [`Optimizer::with_kernel`]).
    pub fn new(options: Options) -> Result<Self, Error> {
        Self::with_kernel(options, Kernel::best())
    }

    /// The same with an explicit kernel (every backend gives the same bits; the choice is speed).
    pub fn with_kernel(options: Options, kernel: Kernel) -> Result<Self, Error> {
        options.config.validate()?;
        if options.threads == 0 {
            return Err(Error::Threads(0));
        }
        if let Some(max) = options.max_grad_norm {
            if !(max > 0.0 && max.is_finite()) {
                return Err(Error::MaxGradNorm(max));
            }
        }
        Ok(Optimizer {
            options,
            groups: Vec::new(),
            params: Vec::new(),
            index: HashMap::new(),
            step: 0,
            skipped: 0,
            kernel,
            last: None,
        })
    }

    /// Adds a group; parameters registered later go to the first group whose selector takes
    /// their name.
    pub fn add_group(&mut self, group: Group) -> Result<(), Error> {
        if self.groups.iter().any(|g| g.name == group.name) {
            return Err(Error::DuplicateGroup(group.name));
        }
        self.groups.push(group);
        Ok(())
    }

    /// Registers a parameter of `len` elements with optimizer-owned state. `pretrained` is θ*
    /// (borrowed or owned), required in a penalised group and ignored otherwise.
    pub fn register(
        &mut self,
        name: &str,
        len: usize,
        pretrained: Option<Cow<'s, [T]>>,
    ) -> Result<(), Error> {
        let zeros = || Buffer::Owned(vec![T::zero(); len]);
        self.register_with_state(name, len, pretrained, zeros(), zeros())
    }

    /// Registers a parameter whose state lives in caller-provided buffers (for example pinned
    /// host memory). The buffers are used as they are: zeros for a fresh start.
    pub fn register_with_state(
        &mut self,
        name: &str,
        len: usize,
        pretrained: Option<Cow<'s, [T]>>,
        exp_avg: Buffer<'s, T>,
        exp_avg_sq: Buffer<'s, T>,
    ) -> Result<(), Error> {
        if self.index.contains_key(name) {
            return Err(Error::DuplicateParam(name.into()));
        }
        let group = self
            .groups
            .iter()
            .position(|g| g.selector.matches(name))
            .ok_or_else(|| Error::NoGroup(name.into()))?;
        let penalised = self.groups[group].penalty && self.options.config.has_penalty();
        let pretrained = match pretrained {
            Some(pp) if penalised => Some(pp),
            None if penalised => {
                return Err(Error::MissingPretrained {
                    name: name.into(),
                    group: self.groups[group].name.clone(),
                })
            }
            _ => None,
        };
        for (what, l) in [
            ("exp_avg", exp_avg.len()),
            ("exp_avg_sq", exp_avg_sq.len()),
            ("pretrained", pretrained.as_ref().map_or(len, |p| p.len())),
        ] {
            if l != len {
                return Err(Error::Length {
                    name: name.into(),
                    what,
                    len: l,
                    expected: len,
                });
            }
        }
        self.index.insert(name.into(), self.params.len());
        self.params.push(ParamState {
            name: name.into(),
            group,
            exp_avg,
            exp_avg_sq,
            pretrained,
        });
        Ok(())
    }

    /// The steps taken so far (skipped ones not counted).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The steps skipped for non-finite gradients ([`NonFiniteGuard::Skip`]).
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// The report of the last step, if any.
    pub fn last_step(&self) -> Option<&StepReport> {
        self.last.as_ref()
    }

    /// The learning rate the next step will use.
    pub fn next_lr(&self) -> f64 {
        self.options.config.lr * self.options.schedule.multiplier(self.step + 1)
    }

    /// λ of the last step taken (λ(1) before the first).
    pub fn lambda(&self) -> f64 {
        self.options.config.lambda(self.step.max(1))
    }

    /// The kernel that runs the update.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The groups, in the order added.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The registered parameter names, in registration order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// The state `(exp_avg, exp_avg_sq)` of a parameter.
    pub fn state(&self, name: &str) -> Option<(&[T], &[T])> {
        let p = &self.params[*self.index.get(name)?];
        Some((&p.exp_avg, &p.exp_avg_sq))
    }

    /// One optimizer step over every registered parameter (each exactly once, in any order).
    ///
    /// Nothing changes unless the whole step succeeds: mismatched names or lengths, a
    /// non-finite gradient (with the guard on) and a learning rate at which the penalty
    /// diverges are all reported before any parameter or state is touched.
    pub fn step(&mut self, params: &mut [ParamMut<'_, T>]) -> Result<StepReport, Error> {
        let order = self.match_params(params)?;

        // One read of every gradient, for the guard and for clipping; skipped when neither is on.
        let needs_stats =
            self.options.guard != NonFiniteGuard::Off || self.options.max_grad_norm.is_some();
        let mut grad_norm = None;
        let mut bad = None;
        if needs_stats {
            let mut sum_squares = 0.0;
            for (i, s) in self.grad_stats(params, &order).iter().enumerate() {
                sum_squares += s.sum_squares;
                if !s.finite && bad.is_none() {
                    bad = Some(self.params[i].name.clone());
                }
            }
            grad_norm = Some(sum_squares.sqrt());
        }
        let t = self.step + 1;
        let lr = self.next_lr();
        if let (Some(name), NonFiniteGuard::Refuse | NonFiniteGuard::Skip) =
            (bad, self.options.guard)
        {
            if self.options.guard == NonFiniteGuard::Refuse {
                return Err(Error::NonFiniteGradient { name });
            }
            self.skipped += 1;
            let report = StepReport {
                step: self.step,
                lr,
                lambda: self.lambda(),
                grad_norm,
                grad_scale: 1.0,
                skipped: Some(name),
            };
            self.last = Some(report.clone());
            return Ok(report);
        }
        let grad_scale = match (self.options.max_grad_norm, grad_norm) {
            (Some(max), Some(norm)) => {
                let coef = max / (norm + 1e-6);
                if coef < 1.0 {
                    coef
                } else {
                    1.0
                }
            }
            _ => 1.0,
        };
        // Per-group scalars; every check that can fail runs here, before any write.
        let mut scalars = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let config = RecAdamConfig {
                weight_decay: if group.weight_decay {
                    self.options.config.weight_decay
                } else {
                    0.0
                },
                anneal_w: if group.penalty {
                    self.options.config.anneal_w
                } else {
                    0.0
                },
                ..self.options.config
            };
            scalars.push(StepScalars::<T>::new(&config, t, lr)?.with_grad_scale(grad_scale)?);
        }

        let mut work = Vec::with_capacity(self.params.len());
        let mut given: Vec<Option<&mut ParamMut<'_, T>>> = params.iter_mut().map(Some).collect();
        for (state, &at) in self.params.iter_mut().zip(&order) {
            let p = given[at].take().expect("each parameter matched once");
            let slices = Slices::new(
                p.value,
                p.grad,
                &mut state.exp_avg,
                &mut state.exp_avg_sq,
                state.pretrained.as_deref(),
            )?;
            work.push((state.group, slices));
        }
        let kernel = self.kernel;
        let parts = parallel::split_even(work, self.options.threads);
        parallel::run(parts, |part| {
            for (group, slices) in part {
                kernel.update(&scalars[group], slices);
            }
        });

        self.step = t;
        let report = StepReport {
            step: t,
            lr,
            lambda: self.options.config.lambda(t),
            grad_norm,
            grad_scale,
            skipped: None,
        };
        self.last = Some(report.clone());
        Ok(report)
    }

    /// For each registered parameter, its position in `params`; checks names and lengths.
    fn match_params(&self, params: &[ParamMut<'_, T>]) -> Result<Vec<usize>, Error> {
        let mut order = vec![usize::MAX; self.params.len()];
        for (at, p) in params.iter().enumerate() {
            let &i = self
                .index
                .get(p.name)
                .ok_or_else(|| Error::UnknownParam(p.name.into()))?;
            if order[i] != usize::MAX {
                return Err(Error::DuplicateParam(p.name.into()));
            }
            order[i] = at;
            let expected = self.params[i].exp_avg.len();
            for (what, len) in [("value", p.value.len()), ("grad", p.grad.len())] {
                if len != expected {
                    return Err(Error::Length {
                        name: p.name.into(),
                        what,
                        len,
                        expected,
                    });
                }
            }
        }
        if let Some(i) = order.iter().position(|&at| at == usize::MAX) {
            return Err(Error::MissingParam(self.params[i].name.clone()));
        }
        Ok(order)
    }

    /// Gradient statistics per registered parameter, summed over fixed blocks in order.
    /// (Reading each thread's blocks last to first, so that the update would start on
    /// gradients still in cache, was measured slower here: it defeats the hardware prefetcher.)
    fn grad_stats(&self, params: &[ParamMut<'_, T>], order: &[usize]) -> Vec<GradStats> {
        let blocks: Vec<(usize, &[T])> = order
            .iter()
            .enumerate()
            .flat_map(|(i, &at)| params[at].grad.chunks(STATS_BLOCK).map(move |b| (i, b)))
            .collect();
        let threads = self.options.threads.min(blocks.len()).max(1);
        let per = blocks.len().div_ceil(threads).max(1);
        let kernel = self.kernel;
        let partial: Vec<Vec<(usize, GradStats)>> =
            parallel::run(blocks.chunks(per).collect(), |chunk: &[(usize, &[T])]| {
                chunk
                    .iter()
                    .map(|&(i, b)| (i, kernel.grad_stats(b)))
                    .collect()
            });
        let mut stats = vec![GradStats::EMPTY; self.params.len()];
        for (i, s) in partial.into_iter().flatten() {
            stats[i] = stats[i].then(s);
        }
        stats
    }

    /// Euclidean distance to θ* of the given parameter values (every penalised parameter must
    /// be given), overall and per group.
    pub fn distance_to_pretrained<'v>(
        &self,
        values: impl IntoIterator<Item = (&'v str, &'v [T])>,
    ) -> Result<Distances, Error> {
        let mut per_group = vec![0.0f64; self.groups.len()];
        let mut seen = vec![false; self.params.len()];
        for (name, value) in values {
            let &i = self
                .index
                .get(name)
                .ok_or_else(|| Error::UnknownParam(name.into()))?;
            let state = &self.params[i];
            seen[i] = true;
            let Some(pp) = &state.pretrained else {
                continue;
            };
            if value.len() != pp.len() {
                return Err(Error::Length {
                    name: name.into(),
                    what: "value",
                    len: value.len(),
                    expected: pp.len(),
                });
            }
            per_group[state.group] += value
                .iter()
                .zip(pp.iter())
                .map(|(a, b)| {
                    let d = a.widen_to_f64() - b.widen_to_f64();
                    d * d
                })
                .sum::<f64>();
        }
        if let Some(i) =
            (0..self.params.len()).find(|&i| !seen[i] && self.params[i].pretrained.is_some())
        {
            return Err(Error::MissingParam(self.params[i].name.clone()));
        }
        Ok(Distances {
            overall: per_group.iter().sum::<f64>().sqrt(),
            per_group: self
                .groups
                .iter()
                .zip(per_group)
                .map(|(g, d)| (g.name.clone(), d.sqrt()))
                .collect(),
        })
    }
}

/// Rounds `n` up to a multiple of [`ALIGN`] (used by callers that lay out flat buffers).
pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

//! The optimizer users hold: parameters registered under handles, in groups with their own
//! hyperparameters, state, the learning rate (a schedule or the caller's), clipping, the
//! non-finite guard, the thread pool, and the forgetting metrics of the paper.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use recadam_core::{RecAdamConfig, Slices, StepScalars};
use recadam_simd::{GradStats, Kernel, SimdElement};

use crate::group::{Group, Selector};
use crate::param::{Buffer, ParamId, ParamMut, Pretrained};
use crate::pool::{self, CallingThread, Pool, ALIGN};
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

/// Which step count t a parameter's bias correction and λ(t) use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepCount {
    /// The optimizer's count of steps taken: every parameter uses the same t, also one that
    /// was absent from some steps.
    #[default]
    Global,
    /// Each parameter's own count of the steps it took part in, as the official `RecAdam.py`
    /// keeps `state["step"]` per parameter: a parameter without a gradient on some steps
    /// keeps its own t.
    PerParam,
}

impl StepCount {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StepCount::Global => "global",
            StepCount::PerParam => "per_param",
        }
    }
}

/// How the optimizer runs, besides the update rule's hyperparameters.
#[derive(Debug)]
pub struct Options {
    /// The default hyperparameters (groups override them); `config.lr` is the base learning
    /// rate the schedule multiplies.
    pub config: RecAdamConfig,
    /// Learning-rate multiplier per step. The default, [`Constant`], leaves the rate to the
    /// caller ([`Optimizer::set_lr`]).
    pub schedule: Box<dyn LrSchedule>,
    /// Clip the global gradient norm to this, as `torch.nn.utils.clip_grad_norm_` (with its
    /// 1e-6 in the denominator); `None` does not clip.
    pub max_grad_norm: Option<f64>,
    /// Non-finite gradient handling.
    pub guard: NonFiniteGuard,
    /// Threads per step (1 or more) of the optimizer's own pool; [`Optimizer::set_pool`] gives
    /// it the caller's instead.
    pub threads: usize,
    /// Which step count the update uses.
    pub step_count: StepCount,
}

impl Options {
    /// `config` with a constant schedule, no clipping, the guard on, one thread and the global
    /// step count.
    pub fn new(config: RecAdamConfig) -> Options {
        Options {
            config,
            schedule: Box::new(Constant),
            max_grad_norm: None,
            guard: NonFiniteGuard::Refuse,
            threads: 1,
            step_count: StepCount::Global,
        }
    }
}

/// A group as the optimizer holds it: the caller's description and the hyperparameters it
/// resolves to (its `lr` is the current base rate).
#[derive(Clone, Debug)]
pub(crate) struct GroupState {
    pub(crate) group: Group,
    pub(crate) config: RecAdamConfig,
}

/// One registered parameter's optimizer state.
#[derive(Debug)]
pub(crate) struct ParamState<'s, T> {
    pub(crate) name: String,
    pub(crate) group: usize,
    pub(crate) exp_avg: Buffer<'s, T>,
    pub(crate) exp_avg_sq: Buffer<'s, T>,
    /// θ*, for parameters of penalised groups.
    pub(crate) pretrained: Option<Pretrained<'s, T>>,
    /// The steps this parameter took part in.
    pub(crate) steps: u64,
}

/// What one step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The step number (from 1); unchanged when the step was skipped.
    pub step: u64,
    /// The learning rate of the first group (each group's: [`Optimizer::lr`]).
    pub lr: f64,
    /// λ(t) of the first group at the global step (0 without a penalty).
    pub lambda: f64,
    /// The global gradient norm before clipping (f64, fixed summation order); `None` when
    /// neither the guard nor clipping needed it (the pass over the gradients was skipped).
    pub grad_norm: Option<f64>,
    /// The factor the gradients were multiplied by (1 without clipping).
    pub grad_scale: f64,
    /// `Some(name)` when the step was skipped for a non-finite gradient in `name`.
    pub skipped: Option<String>,
    /// How many parameters the step updated (the others were absent: frozen this step).
    pub updated: usize,
}

/// Euclidean distances of the parameters to θ*: the paper's measure of forgetting (Figure 2).
#[derive(Clone, Debug, PartialEq)]
pub struct Distances {
    /// Over every parameter with a pretrained counterpart.
    pub overall: f64,
    /// Per group, in the order the groups were added (0 for groups without a penalty).
    pub per_group: Vec<(String, f64)>,
}

/// Each optimizer's handles carry its number, so that a handle of another one is refused.
static NEXT_OPTIMIZER: AtomicU32 = AtomicU32::new(0);

/// The RecAdam optimizer over registered parameters, generic over `f32` and `f64`.
///
/// Register each parameter once (by name, which checkpoints, logs and group selection use) and
/// keep the returned [`ParamId`]; each step takes the parameters that have gradients, by handle,
/// in any order. A parameter left out of a step is frozen for that step: no update and no state
/// change, as in the official code for a parameter whose `grad` is `None`.
///
/// ```
/// use recadam_core::RecAdamConfig;
/// use recadam_std::{Group, Optimizer, Options, ParamMut, Selector};
///
/// let config = RecAdamConfig { lr: 5e-5, ..RecAdamConfig::default() };
/// let mut opt = Optimizer::<f32>::new(Options::new(config))?;
/// // The new head: no pull towards pretrained weights, its own learning rate.
/// opt.add_group(Group::new("head", Selector::Prefix("head.".into())).anneal_w(0.0).lr(1e-3))?;
///
/// let pretrained = vec![0.02f32; 8];
/// let mut encoder = pretrained.clone();
/// let mut head = vec![0.0f32; 2];
/// let enc = opt.register_pretrained("encoder.w", pretrained)?; // the default group: penalised
/// let hd = opt.register("head.w", head.len())?;
///
/// let (g_enc, g_head) = (vec![0.1f32; 8], vec![-0.3f32; 2]);
/// for step in 1..=3 {
///     opt.set_lr(5e-5 * step as f64)?; // the caller's own schedule
///     opt.step(&mut [
///         ParamMut::new(enc, &mut encoder, &g_enc),
///         ParamMut::new(hd, &mut head, &g_head),
///     ])?;
/// }
/// assert!(head[0] > 0.0); // moved against its gradient
/// # Ok::<(), recadam_std::Error>(())
/// ```
#[derive(Debug)]
pub struct Optimizer<'s, T: SimdElement> {
    id: u32,
    pub(crate) options: Options,
    pub(crate) groups: Vec<GroupState>,
    pub(crate) params: Vec<ParamState<'s, T>>,
    index: HashMap<String, usize>,
    pub(crate) step: u64,
    pub(crate) skipped: u64,
    kernel: Kernel,
    pool: Arc<dyn Pool>,
    last: Option<StepReport>,
    /// Per step, reused: the step scalars (one per group, or per given parameter), and the
    /// number of the last step that saw each parameter (to refuse one given twice).
    scalars: Vec<StepScalars<T>>,
    seen: Vec<u64>,
    calls: u64,
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
        check_max_grad_norm(options.max_grad_norm)?;
        let pool = thread_pool(options.threads)?;
        Ok(Optimizer {
            id: NEXT_OPTIMIZER.fetch_add(1, Ordering::Relaxed),
            options,
            groups: Vec::new(),
            params: Vec::new(),
            index: HashMap::new(),
            step: 0,
            skipped: 0,
            kernel,
            pool,
            last: None,
            scalars: Vec::new(),
            seen: Vec::new(),
            calls: 0,
        })
    }

    /// Adds a group; parameters registered later go to the first group whose selector takes
    /// their name. Its hyperparameters are checked here.
    pub fn add_group(&mut self, group: Group) -> Result<(), Error> {
        if self.groups.iter().any(|g| g.group.name == group.name) {
            return Err(Error::DuplicateGroup(group.name));
        }
        let config = group.overrides.apply(&self.options.config);
        config.validate()?;
        self.groups.push(GroupState { group, config });
        Ok(())
    }

    /// Registers a parameter of `len` elements with optimizer-owned state and no θ*. Its group
    /// must not pull towards pretrained weights (`anneal_w = 0`): use
    /// [`Optimizer::register_pretrained`] for those.
    pub fn register(&mut self, name: &str, len: usize) -> Result<ParamId, Error> {
        let zeros = || Buffer::Owned(vec![T::zero(); len]);
        self.register_with_state(name, len, None, zeros(), zeros())
    }

    /// Registers a parameter with its θ* (borrowed, owned or shared; its length is the
    /// parameter's). In a group without a penalty θ* is not kept.
    pub fn register_pretrained(
        &mut self,
        name: &str,
        pretrained: impl Into<Pretrained<'s, T>>,
    ) -> Result<ParamId, Error> {
        let pretrained = pretrained.into();
        let len = pretrained.len();
        let zeros = || Buffer::Owned(vec![T::zero(); len]);
        self.register_with_state(name, len, Some(pretrained), zeros(), zeros())
    }

    /// Registers a parameter whose state lives in caller-provided buffers (for example pinned
    /// host memory). The buffers are used as they are: zeros for a fresh start.
    pub fn register_with_state(
        &mut self,
        name: &str,
        len: usize,
        pretrained: Option<Pretrained<'s, T>>,
        exp_avg: Buffer<'s, T>,
        exp_avg_sq: Buffer<'s, T>,
    ) -> Result<ParamId, Error> {
        if self.index.contains_key(name) {
            return Err(Error::DuplicateParam(name.into()));
        }
        let index = u32::try_from(self.params.len())
            .map_err(|_| Error::TooManyParams(self.params.len()))?;
        let group = self.group_of(name);
        let penalised = self.groups[group].config.has_penalty();
        let pretrained = match pretrained {
            Some(pp) if penalised => Some(pp),
            None if penalised => {
                return Err(Error::MissingPretrained {
                    name: name.into(),
                    group: self.groups[group].group.name.clone(),
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
            steps: 0,
        });
        self.seen.push(0);
        Ok(ParamId {
            optimizer: self.id,
            index,
        })
    }

    /// The first added group that takes `name`, else the default group (added on first use).
    fn group_of(&mut self, name: &str) -> usize {
        if let Some(g) = self
            .groups
            .iter()
            .position(|g| g.group.selector.matches(name))
        {
            return g;
        }
        if let Some(g) = self
            .groups
            .iter()
            .position(|g| g.group.name == Group::DEFAULT)
        {
            return g;
        }
        self.groups.push(GroupState {
            group: Group::new(Group::DEFAULT, Selector::All),
            config: self.options.config,
        });
        self.groups.len() - 1
    }

    /// The handle of a registered parameter.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.index.get(name).map(|&i| ParamId {
            optimizer: self.id,
            index: i as u32,
        })
    }

    /// The handles in registration order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        (0..self.params.len() as u32).map(|index| ParamId {
            optimizer: self.id,
            index,
        })
    }

    /// The name a parameter was registered under.
    pub fn name(&self, id: ParamId) -> Option<&str> {
        self.param(id).ok().map(|p| p.name.as_str())
    }

    /// The registered parameter names, in registration order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// The steps taken so far (skipped ones not counted).
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The steps a parameter took part in (its t under [`StepCount::PerParam`]).
    pub fn param_steps(&self, id: ParamId) -> Option<u64> {
        self.param(id).ok().map(|p| p.steps)
    }

    /// Sets the step counts, for state brought over from another optimizer (a PyTorch state
    /// dict, whose `state[p]["step"]` is each parameter's count): the optimizer's count of steps
    /// taken, and each listed parameter's own count (the others keep theirs). On an error
    /// nothing changes.
    pub fn set_step_counts(
        &mut self,
        steps: u64,
        per_param: &[(ParamId, u64)],
    ) -> Result<(), Error> {
        for (id, _) in per_param {
            self.param(*id)?;
        }
        for &(id, t) in per_param {
            self.params[id.index()].steps = t;
        }
        self.step = steps;
        Ok(())
    }

    /// The steps skipped for non-finite gradients ([`NonFiniteGuard::Skip`]).
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// The report of the last step, if any.
    pub fn last_step(&self) -> Option<&StepReport> {
        self.last.as_ref()
    }

    /// The learning rate the next step will use in the first group.
    pub fn next_lr(&self) -> f64 {
        self.groups
            .first()
            .map_or(self.options.config.lr, |g| self.lr_at(g, self.step + 1))
    }

    /// The learning rate the next step will use in group `group`.
    pub fn lr(&self, group: &str) -> Result<f64, Error> {
        let g = self.group_index(group)?;
        Ok(self.lr_at(&self.groups[g], self.step + 1))
    }

    fn lr_at(&self, g: &GroupState, t: u64) -> f64 {
        g.config.lr * self.options.schedule.multiplier(t)
    }

    /// Sets the base learning rate of every group (the schedule, [`Constant`] by default,
    /// multiplies it): how a framework's own scheduler drives the optimizer. Checked as the
    /// configuration is (finite, ≥ 0, and stable with each group's penalty and weight decay);
    /// on an error nothing changes.
    pub fn set_lr(&mut self, lr: f64) -> Result<(), Error> {
        for g in &self.groups {
            RecAdamConfig { lr, ..g.config }.validate()?;
        }
        RecAdamConfig {
            lr,
            ..self.options.config
        }
        .validate()?;
        for g in &mut self.groups {
            g.config.lr = lr;
        }
        self.options.config.lr = lr;
        Ok(())
    }

    /// Sets the base learning rate of one group, as a PyTorch scheduler sets `group["lr"]`.
    pub fn set_group_lr(&mut self, group: &str, lr: f64) -> Result<(), Error> {
        let g = self.group_index(group)?;
        let config = RecAdamConfig {
            lr,
            ..self.groups[g].config
        };
        config.validate()?;
        self.groups[g].config = config;
        Ok(())
    }

    fn group_index(&self, name: &str) -> Result<usize, Error> {
        self.groups
            .iter()
            .position(|g| g.group.name == name)
            .ok_or_else(|| Error::UnknownGroup(name.into()))
    }

    /// Clips the global gradient norm to `max` from the next step on (`None`: no clipping).
    pub fn set_max_grad_norm(&mut self, max: Option<f64>) -> Result<(), Error> {
        check_max_grad_norm(max)?;
        self.options.max_grad_norm = max;
        Ok(())
    }

    /// Non-finite gradient handling from the next step on.
    pub fn set_guard(&mut self, guard: NonFiniteGuard) {
        self.options.guard = guard;
    }

    /// Runs the steps on the caller's pool (a `rayon::ThreadPool` with the `rayon` feature, or
    /// any [`Pool`]): a step is cut into as many parts as it has threads. The results are the
    /// same bits on any pool.
    pub fn set_pool(&mut self, pool: Arc<dyn Pool>) {
        self.pool = pool;
    }

    /// The pool the steps run on.
    pub fn pool(&self) -> &Arc<dyn Pool> {
        &self.pool
    }

    /// λ of the first group at the last step taken (λ(1) before the first).
    pub fn lambda(&self) -> f64 {
        self.groups
            .first()
            .map_or(0.0, |g| g.config.lambda(self.step.max(1)))
    }

    /// The kernel that runs the update.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The groups, in the order added, each with the hyperparameters it resolves to (its `lr`
    /// is the current base rate).
    pub fn groups(&self) -> impl Iterator<Item = (&Group, &RecAdamConfig)> {
        self.groups.iter().map(|g| (&g.group, &g.config))
    }

    /// The state `(exp_avg, exp_avg_sq)` of a parameter.
    pub fn state(&self, id: ParamId) -> Option<(&[T], &[T])> {
        let p = self.param(id).ok()?;
        Some((&p.exp_avg, &p.exp_avg_sq))
    }

    fn param(&self, id: ParamId) -> Result<&ParamState<'s, T>, Error> {
        if id.optimizer != self.id {
            return Err(Error::ForeignParam(id.index()));
        }
        self.params
            .get(id.index())
            .ok_or(Error::ForeignParam(id.index()))
    }

    /// One optimizer step over the given parameters (each at most once, in any order); the
    /// registered parameters not given are frozen for this step.
    ///
    /// Nothing changes unless the whole step succeeds: unknown or repeated handles, wrong
    /// lengths, a non-finite gradient (with the guard on) and a learning rate at which the
    /// penalty diverges are all reported before any parameter or state is touched.
    pub fn step(&mut self, params: &mut [ParamMut<'_, T>]) -> Result<StepReport, Error> {
        self.step_impl(params, None)
    }

    /// [`Optimizer::step`] with each gradient's statistics already known: `stats[k]` is
    /// [`crate::tensor_grad_stats`] of `params[k]`'s gradient (with this optimizer's
    /// [`Optimizer::kernel`]), computed by the pass that wrote it while it was in cache. The
    /// step then reads every gradient once instead of twice, with the same bits.
    ///
    /// The statistics are trusted: others clip by another norm (or let a non-finite gradient
    /// through the guard). A count other than `params.len()` is an error and changes nothing.
    ///
    /// ```
    /// use recadam_core::RecAdamConfig;
    /// use recadam_std::{tensor_grad_stats, Optimizer, Options, ParamMut};
    /// let mut opt = Optimizer::new(Options::new(RecAdamConfig::default()))?;
    /// let (mut w, g) = ([1.0f32, 2.0], [0.5f32, -0.5]);
    /// let id = opt.register_pretrained("w", w.to_vec())?;
    /// let stats = [tensor_grad_stats(opt.kernel(), &g)];
    /// let report = opt.step_with_stats(&mut [ParamMut::new(id, &mut w, &g)], &stats)?;
    /// assert_eq!(report.updated, 1);
    /// # Ok::<(), recadam_std::Error>(())
    /// ```
    pub fn step_with_stats(
        &mut self,
        params: &mut [ParamMut<'_, T>],
        stats: &[GradStats],
    ) -> Result<StepReport, Error> {
        if stats.len() != params.len() {
            return Err(Error::StatsCount {
                given: stats.len(),
                params: params.len(),
            });
        }
        self.step_impl(params, Some(stats))
    }

    fn step_impl(
        &mut self,
        params: &mut [ParamMut<'_, T>],
        known: Option<&[GradStats]>,
    ) -> Result<StepReport, Error> {
        self.check_params(params)?;

        // One read of every gradient, for the guard and for clipping; skipped when neither is on
        // or when the caller brings the statistics.
        let needs_stats =
            self.options.guard != NonFiniteGuard::Off || self.options.max_grad_norm.is_some();
        let mut grad_norm = None;
        let mut bad = None;
        if needs_stats {
            let computed;
            let stats = match known {
                Some(stats) => stats,
                None => {
                    computed = self.grad_stats(params);
                    &computed
                }
            };
            let mut sum_squares = 0.0;
            for (k, s) in stats.iter().enumerate() {
                sum_squares += s.sum_squares;
                if !s.finite && bad.is_none() {
                    bad = Some(self.params[params[k].id.index()].name.clone());
                }
            }
            grad_norm = Some(sum_squares.sqrt());
        }
        let t = self.step + 1;
        if let (Some(name), NonFiniteGuard::Refuse | NonFiniteGuard::Skip) =
            (bad, self.options.guard)
        {
            if self.options.guard == NonFiniteGuard::Refuse {
                return Err(Error::NonFiniteGradient { name });
            }
            self.skipped += 1;
            let report = StepReport {
                step: self.step,
                lr: self.next_lr(),
                lambda: self.lambda(),
                grad_norm,
                grad_scale: 1.0,
                skipped: Some(name),
                updated: 0,
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
        // The step scalars; every check that can fail runs here, before any write.
        self.scalars.clear();
        match self.options.step_count {
            StepCount::Global => {
                for g in &self.groups {
                    let lr = g.config.lr * self.options.schedule.multiplier(t);
                    self.scalars
                        .push(StepScalars::new(&g.config, t, lr)?.with_grad_scale(grad_scale)?);
                }
            }
            StepCount::PerParam => {
                for p in params.iter() {
                    let state = &self.params[p.id.index()];
                    let g = &self.groups[state.group];
                    let lr = g.config.lr * self.options.schedule.multiplier(t);
                    self.scalars.push(
                        StepScalars::new(&g.config, state.steps + 1, lr)?
                            .with_grad_scale(grad_scale)?,
                    );
                }
            }
        }
        self.update(params)?;
        for p in params.iter() {
            self.params[p.id.index()].steps += 1;
        }
        self.step = t;
        let report = StepReport {
            step: t,
            lr: self.groups.first().map_or(0.0, |g| self.lr_at(g, t)),
            lambda: self.groups.first().map_or(0.0, |g| g.config.lambda(t)),
            grad_norm,
            grad_scale,
            skipped: None,
            updated: params.len(),
        };
        self.last = Some(report.clone());
        Ok(report)
    }

    /// Checks handles and lengths: each given parameter is this optimizer's, given once, with
    /// the registered length.
    fn check_params(&mut self, params: &[ParamMut<'_, T>]) -> Result<(), Error> {
        self.calls += 1;
        for p in params {
            let state = self.param(p.id)?;
            let i = p.id.index();
            if self.seen[i] == self.calls {
                return Err(Error::DuplicateParam(state.name.clone()));
            }
            let expected = state.exp_avg.len();
            for (what, len) in [("value", p.value.len()), ("grad", p.grad.len())] {
                if len != expected {
                    return Err(Error::Length {
                        name: state.name.clone(),
                        what,
                        len,
                        expected,
                    });
                }
            }
            self.seen[i] = self.calls;
        }
        Ok(())
    }

    /// The update of every given parameter, on the pool (the checks have all passed).
    fn update(&mut self, params: &mut [ParamMut<'_, T>]) -> Result<(), Error> {
        let per_param = self.options.step_count == StepCount::PerParam;
        let mut work = Vec::with_capacity(params.len());
        // Each given handle is distinct (checked): each state is taken once.
        let mut states: Vec<Option<&mut ParamState<'s, T>>> =
            self.params.iter_mut().map(Some).collect();
        for (k, p) in params.iter_mut().enumerate() {
            let state = states[p.id.index()]
                .take()
                .expect("handles were checked to be distinct");
            let at = if per_param { k } else { state.group };
            let slices = Slices::new(
                p.value,
                p.grad,
                &mut state.exp_avg,
                &mut state.exp_avg_sq,
                state.pretrained.as_deref(),
            )?;
            work.push((at, slices));
        }
        pool::update(self.pool.as_ref(), self.kernel, &self.scalars, work);
        Ok(())
    }

    /// Gradient statistics per given parameter, summed over fixed blocks in order.
    fn grad_stats(&self, params: &[ParamMut<'_, T>]) -> Vec<GradStats> {
        let grads: Vec<&[T]> = params.iter().map(|p| p.grad).collect();
        pool::grad_stats::<Slices<'_, T>>(self.pool.as_ref(), self.kernel, &grads)
    }

    /// Euclidean distance to θ* of the given parameter values (every penalised parameter must
    /// be given), overall and per group.
    pub fn distance_to_pretrained<'v>(
        &self,
        values: impl IntoIterator<Item = (ParamId, &'v [T])>,
    ) -> Result<Distances, Error> {
        let mut per_group = vec![0.0f64; self.groups.len()];
        let mut seen = vec![false; self.params.len()];
        for (id, value) in values {
            let state = self.param(id)?;
            seen[id.index()] = true;
            let Some(pp) = &state.pretrained else {
                continue;
            };
            if value.len() != pp.len() {
                return Err(Error::Length {
                    name: state.name.clone(),
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
                .map(|(g, d)| (g.group.name.clone(), d.sqrt()))
                .collect(),
        })
    }
}

fn check_max_grad_norm(max: Option<f64>) -> Result<(), Error> {
    match max {
        Some(max) if !(max > 0.0 && max.is_finite()) => Err(Error::MaxGradNorm(max)),
        _ => Ok(()),
    }
}

/// A pool of `threads` threads, as an optimizer makes its own: the calling thread alone for
/// one (no thread is started); a persistent rayon pool with the `rayon` feature; scoped threads
/// per step without it. For callers of [`crate::step_held`], which has no optimizer to hold one.
pub fn thread_pool(threads: usize) -> Result<Arc<dyn Pool>, Error> {
    match threads {
        0 => Err(Error::Threads(0)),
        1 => Ok(Arc::new(CallingThread)),
        #[cfg(feature = "rayon")]
        n => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("recadam-optimizer-{i}"))
            .build()
            .map(|p| Arc::new(p) as Arc<dyn Pool>)
            .map_err(|e| Error::Pool(e.to_string())),
        #[cfg(not(feature = "rayon"))]
        n => Ok(Arc::new(crate::pool::ScopedThreads { threads: n })),
    }
}

/// Rounds `n` up to a multiple of [`ALIGN`] (used by callers that lay out flat buffers).
pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

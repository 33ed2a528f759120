//! burn's module optimizer with RecAdam in every group, and a step that checks before it writes.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{GradientsParams, LearningRate, ModuleOptimizer, OptimizerRecord};
use burn::store::RecordError;
use burn::tensor::{DType, Tensor, TensorData};
use recadam_core::{RecAdamConfig, StepScalars};
use recadam_simd::Kernel;
use recadam_std::NonFiniteGuard;

use crate::{Error, RecAdam};

/// What a parameter without a gradient does in [`RecAdamOptimizer::try_step`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingGrad {
    /// The step is refused ([`Error::MissingGrad`]): a parameter the loss does not reach is
    /// usually a mistake.
    #[default]
    Error,
    /// The parameter stays as it is, as burn's optimizers and the official RecAdam do: for
    /// frozen parameters (`module.no_grad()`).
    Freeze,
}

/// What [`RecAdamOptimizer::try_step`] gives back.
#[derive(Debug)]
pub struct Stepped<M> {
    /// The module, updated unless the step was skipped.
    pub module: M,
    /// With [`NonFiniteGuard::Skip`]: the first parameter (by path) whose gradient holds NaN or
    /// an infinity; nothing changed.
    pub skipped: Option<String>,
}

/// burn's [`ModuleOptimizer`] with a [`RecAdam`] per group, and [`RecAdamOptimizer::try_step`].
///
/// The module optimizer inside ([`RecAdamOptimizer::into_module_optimizer`]) is what burn's
/// learner takes; its optimizer records (`to_record`, `save`, `load`) hold every parameter's
/// RecAdam state.
#[derive(Clone)]
pub struct RecAdamOptimizer {
    inner: ModuleOptimizer,
    /// burn's groups, in its order (the last that matches a parameter wins).
    groups: Vec<(ParamGroup, RecAdam)>,
    guard: NonFiniteGuard,
    missing_grad: MissingGrad,
}

impl RecAdamOptimizer {
    /// `recadam` for every parameter; non-finite gradients refuse the step, a missing gradient
    /// is an error.
    pub fn new(recadam: RecAdam) -> Self {
        RecAdamOptimizer {
            inner: ModuleOptimizer::from(recadam.clone()),
            groups: vec![(ParamGroup::all(), recadam)],
            guard: NonFiniteGuard::Refuse,
            missing_grad: MissingGrad::Error,
        }
    }

    /// `recadam` for the parameters `group` matches (burn's rule: the last group that matches a
    /// parameter's id or path is its group).
    pub fn with_group(mut self, group: ParamGroup, recadam: RecAdam) -> Self {
        self.inner = self.inner.with_group(group.clone(), recadam.clone(), None);
        self.groups.push((group, recadam));
        self
    }

    /// The official GLUE script's four groups over a model whose task head is the submodule
    /// named `head` (its path from the model, such as `classifier`): the head is not pulled
    /// towards θ* (w = 0), the rest is; no weight decay on biases and LayerNorm weights
    /// (parameters named `bias`, `gamma` or `beta`: burn's `Linear` and `LayerNorm`).
    pub fn glue_script(head: &str, config: RecAdamConfig, threads: usize) -> Result<Self, Error> {
        if head.is_empty()
            || !head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(Error::Group(format!(
                "head path `{head}` (letters, digits, `_` and `.` only)"
            )));
        }
        let head = head.replace('.', r"\.");
        let no_decay = r"(bias|gamma|beta)$";
        let group = |pattern: String| {
            ParamGroup::from_regex(&pattern).map_err(|e| Error::Group(format!("{pattern}: {e:?}")))
        };
        let build = |config: RecAdamConfig| RecAdam::new(config)?.with_threads(threads);
        let undecayed = RecAdamConfig {
            weight_decay: 0.0,
            ..config
        };
        let head_config = RecAdamConfig {
            anneal_w: 0.0,
            ..config
        };
        let head_undecayed = RecAdamConfig {
            anneal_w: 0.0,
            ..undecayed
        };
        Ok(RecAdamOptimizer::new(build(config)?)
            .with_group(group(format!(r"(^|\.){no_decay}"))?, build(undecayed)?)
            .with_group(group(format!(r"^{head}(\.|$)"))?, build(head_config)?)
            .with_group(
                group(format!(r"^{head}\.(.*\.)?{no_decay}"))?,
                build(head_undecayed)?,
            ))
    }

    /// θ* given: each parameter of `model` is pulled towards the parameter of `pretrained` at
    /// the same path (of the same type and shape) instead of towards its own first value, as
    /// when fine-tuning starts from a random initialisation (DESIGN 1.2). Call it before the
    /// first step; parameters whose group has no penalty need none.
    ///
    /// Each such parameter becomes a group of its own (burn's optimizer sees one tensor at a
    /// time, not its name), holding a copy of its θ* besides the one in its state.
    pub fn with_pretrained<M: Module>(mut self, model: &M, pretrained: &M) -> Result<Self, Error> {
        let mut stars = Collect::values();
        pretrained.visit(&mut stars);
        let mut params = Collect::types();
        model.visit(&mut params);
        for (path, value) in params.found {
            let id = value.id;
            let (_, recadam) = self
                .groups
                .iter()
                .rev()
                .find(|(group, _)| group.matches(&id, Some(path.as_str())))
                .expect("the first group matches every parameter");
            if !recadam.config().has_penalty() {
                continue;
            }
            let Some(star) = stars.found.get(&path) else {
                return Err(Error::Optimizer(recadam_std::Error::MissingPretrained {
                    name: path,
                    group: "(the group matching it)".into(),
                }));
            };
            if star.dtype != value.dtype || star.shape != value.shape {
                return Err(Error::Mismatch {
                    name: path,
                    got: format!("pretrained {:?} {:?}", star.dtype, star.shape),
                    want: format!("{:?} {:?}", value.dtype, value.shape),
                });
            }
            let values = star
                .values
                .clone()
                .expect("Collect::values keeps the values");
            let recadam = recadam.clone().with_pretrained(values);
            self = self.with_group(ParamGroup::from_ids(vec![id]), recadam);
        }
        Ok(self)
    }

    /// What a non-finite gradient does (default [`NonFiniteGuard::Refuse`]).
    pub fn with_guard(mut self, guard: NonFiniteGuard) -> Self {
        self.guard = guard;
        self
    }

    /// What a parameter without a gradient does (default [`MissingGrad::Error`]).
    pub fn with_missing_grad(mut self, missing_grad: MissingGrad) -> Self {
        self.missing_grad = missing_grad;
        self
    }

    /// One step of every parameter of `module` that has a gradient, at learning rate `lr`.
    ///
    /// First it checks the whole step: every parameter F32 or F64, its gradient present (see
    /// [`MissingGrad`]) and of its type and shape, every gradient finite (see
    /// [`NonFiniteGuard`]; `Off` skips the read), `lr` stable in every group. A refused step is
    /// an error, a skipped one gives the module back as it was.
    pub fn try_step<M: Module>(
        &mut self,
        lr: LearningRate,
        module: M,
        grads: GradientsParams,
    ) -> Result<Stepped<M>, Error> {
        let mut check = Check {
            grads: &grads,
            guard: self.guard,
            missing_grad: self.missing_grad,
            path: Vec::new(),
            dtypes: (false, false),
            result: Ok(None),
        };
        module.visit(&mut check);
        let (dtypes, result) = (check.dtypes, check.result);
        for (_, recadam) in &self.groups {
            let config = RecAdamConfig {
                lr,
                ..*recadam.config()
            };
            if dtypes.0 {
                StepScalars::<f32>::new(&config, 1, lr).map_err(recadam_std::Error::from)?;
            }
            if dtypes.1 {
                StepScalars::<f64>::new(&config, 1, lr).map_err(recadam_std::Error::from)?;
            }
        }
        match result? {
            Some(name) => match self.guard {
                NonFiniteGuard::Refuse => Err(Error::NonFiniteGradient(name)),
                _ => Ok(Stepped {
                    module,
                    skipped: Some(name),
                }),
            },
            None => Ok(Stepped {
                module: self.inner.step(lr, module, grads),
                skipped: None,
            }),
        }
    }

    /// burn's module optimizer inside, for burn's learner (or `step` without the checks).
    pub fn into_module_optimizer(self) -> ModuleOptimizer {
        self.inner
    }

    /// burn's module optimizer inside.
    pub fn module_optimizer(&self) -> &ModuleOptimizer {
        &self.inner
    }

    /// Every parameter's state as burn's optimizer record (m and v as `exp_avg` and
    /// `exp_avg_sq`, θ* as `pretrained`, the step count as `step`).
    pub fn to_record(&self) -> OptimizerRecord {
        self.inner.to_record()
    }

    /// The state of `record` (what [`RecAdamOptimizer::to_record`] gave).
    pub fn load_record(mut self, record: OptimizerRecord) -> Self {
        self.inner = self.inner.load_record(record);
        self
    }

    /// Saves the state as a burnpack file (burn's `ModuleOptimizer::save`).
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), RecordError> {
        self.inner.save(path)
    }

    /// Loads the state saved by [`RecAdamOptimizer::save`].
    pub fn load(mut self, path: impl AsRef<std::path::Path>) -> Result<Self, RecordError> {
        self.inner = self.inner.load(path)?;
        Ok(self)
    }
}

/// A module's float parameters by path: their ids, types and shapes, and their values where
/// they are needed (θ*; the model's own are not copied).
struct Collect {
    path: Vec<String>,
    keep_values: bool,
    found: std::collections::BTreeMap<String, Found>,
}

/// One parameter as [`Collect`] found it.
struct Found {
    id: ParamId,
    dtype: DType,
    shape: Vec<usize>,
    values: Option<TensorData>,
}

impl Collect {
    /// Ids, types, shapes and a copy of the values.
    fn values() -> Self {
        Collect {
            path: Vec::new(),
            keep_values: true,
            found: Default::default(),
        }
    }

    /// Ids, types and shapes only.
    fn types() -> Self {
        Collect {
            keep_values: false,
            ..Collect::values()
        }
    }
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let found = Found {
            id: param.id,
            dtype: value.dtype(),
            shape: value.dims().to_vec(),
            values: self.keep_values.then(|| value.to_data()),
        };
        self.found.insert(self.path.join("."), found);
    }
}

/// The checks of [`RecAdamOptimizer::try_step`], over a module's float parameters in order.
struct Check<'a> {
    grads: &'a GradientsParams,
    guard: NonFiniteGuard,
    missing_grad: MissingGrad,
    path: Vec<String>,
    /// Whether F32 and F64 parameters were seen.
    dtypes: (bool, bool),
    /// The first error, or the first parameter whose gradient is not finite.
    result: Result<Option<String>, Error>,
}

impl Check<'_> {
    fn param<const D: usize>(&mut self, param: &Param<Tensor<D>>) -> Result<(), Error> {
        let name = self.path.join(".");
        let value = param.val();
        match value.dtype() {
            DType::F32 => self.dtypes.0 = true,
            DType::F64 => self.dtypes.1 = true,
            got => return Err(Error::DType { name, got }),
        }
        let Some(grad) = self.grads.get::<D>(param.id) else {
            return match self.missing_grad {
                MissingGrad::Error => Err(Error::MissingGrad(name)),
                MissingGrad::Freeze => Ok(()),
            };
        };
        if grad.dtype() != value.dtype() || grad.shape() != value.shape() {
            return Err(Error::Mismatch {
                name,
                got: format!("gradient {:?} {:?}", grad.dtype(), grad.dims()),
                want: format!("{:?} {:?}", value.dtype(), value.dims()),
            });
        }
        if self.guard != NonFiniteGuard::Off && matches!(self.result, Ok(None)) {
            // One reduction in burn (no copy): a sum is finite when every term is, unless it
            // overflows; only then are the values read and checked one by one.
            let sum = grad.clone().sum().into_scalar::<f64>();
            if !sum.is_finite() && !all_finite(grad.to_data()) {
                self.result = Ok(Some(name));
            }
        }
        Ok(())
    }
}

/// Whether every value is finite (by recadam's SIMD kernel).
fn all_finite(data: TensorData) -> bool {
    let kernel = Kernel::best();
    match data.dtype() {
        DType::F32 => data
            .as_slice::<f32>()
            .is_ok_and(|s| kernel.grad_stats(s).finite),
        DType::F64 => data
            .as_slice::<f64>()
            .is_ok_and(|s| kernel.grad_stats(s).finite),
        _ => false,
    }
}

impl ModuleVisitor for Check<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.result.is_err() {
            return;
        }
        if let Err(e) = self.param(param) {
            self.result = Err(e);
        }
    }
}

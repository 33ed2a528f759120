//! `RecAdam`: a `candle_nn::Optimizer` that updates CPU `Var`s in place.

use std::collections::{HashMap, HashSet};

use candle_core::backprop::GradStore;
use candle_core::{Storage, Tensor, Var};
use candle_nn::VarMap;
use recadam_core::RecAdamConfig;
use recadam_std::{Distances, Group, NonFiniteGuard, Optimizer, Options, ParamId, StepReport};

use crate::element::Element;
use crate::in_place::{self, Lend};
use crate::Error;

/// What a step does with a var that has no gradient in the `GradStore`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingGrad {
    /// Refuse the step with [`Error::MissingGrad`], nothing changed: a var the loss does not
    /// reach is usually a mistake (a detached branch, the wrong `GradStore`).
    #[default]
    Error,
    /// Leave the var and its state unchanged this step, as the official code does for a
    /// parameter whose `grad` is `None` (and candle's own optimizers do).
    Freeze,
}

/// The optimizer's configuration: the default group's hyperparameters, groups by var name, and
/// how steps run.
#[derive(Clone, Debug)]
pub struct ParamsRecAdam {
    /// The hyperparameters of vars no group selects (default: the official GLUE script's).
    pub config: RecAdamConfig,
    /// Groups with their own hyperparameters, chosen by var name (the first that matches);
    /// names come from [`RecAdam::from_varmap`] or [`RecAdam::new_named`] (the trait's `new`
    /// names vars `var.0`, `var.1`, ...).
    pub groups: Vec<Group>,
    /// Clip the global gradient norm to this (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// What a non-finite gradient does (default: the step is refused, nothing changes).
    pub guard: NonFiniteGuard,
    /// Threads per step (default 1: the calling thread only).
    pub threads: usize,
    /// What a var without a gradient does (default: an error).
    pub missing_grad: MissingGrad,
}

impl Default for ParamsRecAdam {
    fn default() -> Self {
        ParamsRecAdam {
            config: RecAdamConfig::default(),
            groups: Vec::new(),
            max_grad_norm: None,
            guard: NonFiniteGuard::Refuse,
            threads: 1,
            missing_grad: MissingGrad::Error,
        }
    }
}

impl ParamsRecAdam {
    /// The official GLUE script's four groups: vars whose names start with `encoder_prefix` are
    /// pulled towards their pretrained values, the others (a new head) are not; no weight decay
    /// on names containing `bias` or `LayerNorm.weight`.
    pub fn glue_script(encoder_prefix: &str, config: RecAdamConfig) -> Self {
        ParamsRecAdam {
            config,
            groups: Group::glue_script(encoder_prefix),
            ..ParamsRecAdam::default()
        }
    }
}

/// One var as the optimizer holds it.
#[derive(Debug)]
struct Held {
    name: String,
    var: Var,
    id: ParamId,
}

/// RecAdam over candle `Var`s in CPU memory, of element type `T` (`f32` or `f64`).
///
/// A step borrows every var's storage and gradient where candle keeps them and runs
/// `recadam_std`'s step over them: the values are updated in place (no copy of a var, a
/// gradient or a moment), with the same bits as `recadam_core::update`. θ* is a copy of the
/// vars' values at construction, or given ([`RecAdam::with_pretrained`]).
///
/// ```
/// use candle_core::{DType, Device, Tensor, Var};
/// use candle_nn::Optimizer as _;
/// use recadam_candle::{ParamsRecAdam, RecAdam};
/// use recadam_core::{Annealing, RecAdamConfig};
///
/// let w = Var::from_slice(&[1.0f32, -2.0, 3.0], 3, &Device::Cpu)?;
/// // λ = w from the first step, so the loss's gradient counts at once.
/// let config = RecAdamConfig { lr: 1e-2, annealing: Annealing::Constant, ..RecAdamConfig::default() };
/// let mut opt = RecAdam::<f32>::new(vec![w.clone()], ParamsRecAdam { config, ..Default::default() })?;
/// for _ in 0..3 {
///     let loss = w.as_tensor().sqr()?.sum_all()?;
///     opt.backward_step(&loss)?;
/// }
/// let moved = w.as_tensor().to_vec1::<f32>()?;
/// assert!(moved[0] < 1.0 && moved[1] > -2.0); // towards 0, against the gradient
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug)]
pub struct RecAdam<T: Element = f32> {
    optimizer: Optimizer<'static, T>,
    vars: Vec<Held>,
    missing_grad: MissingGrad,
    /// The learning rate last asked for, and whether the optimizer took it.
    lr: f64,
    lr_taken: bool,
}

impl<T: Element> RecAdam<T> {
    /// RecAdam over named vars; θ* is a copy of their values now.
    pub fn new_named(vars: Vec<(String, Var)>, params: ParamsRecAdam) -> Result<Self, Error> {
        Self::build(vars, None, params)
    }

    /// RecAdam over every var of `varmap` (in name order); θ* is a copy of their values now,
    /// so build it after loading the pretrained weights into the map.
    pub fn from_varmap(varmap: &VarMap, params: ParamsRecAdam) -> Result<Self, Error> {
        let mut vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::msg("the VarMap's lock is poisoned"))?
            .iter()
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Self::build(vars, None, params)
    }

    /// RecAdam over named vars with θ* given by name (for example the pretrained checkpoint's
    /// tensors). A var of a penalised group without an entry is an error; vars of groups
    /// without a penalty need none.
    pub fn with_pretrained(
        vars: Vec<(String, Var)>,
        pretrained: &HashMap<String, Tensor>,
        params: ParamsRecAdam,
    ) -> Result<Self, Error> {
        Self::build(vars, Some(pretrained), params)
    }

    fn build(
        vars: Vec<(String, Var)>,
        pretrained: Option<&HashMap<String, Tensor>>,
        params: ParamsRecAdam,
    ) -> Result<Self, Error> {
        let options = Options {
            max_grad_norm: params.max_grad_norm,
            guard: params.guard,
            threads: params.threads,
            ..Options::new(params.config)
        };
        let mut optimizer = Optimizer::new(options)?;
        for group in params.groups {
            optimizer.add_group(group)?;
        }
        let mut storages = HashSet::new();
        let mut held = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            check_var::<T>(&name, var.as_tensor())?;
            // Two vars over one storage would lock it twice in a step (and update it twice).
            let (storage, _) = var.storage_and_layout();
            if !storages.insert(std::ptr::from_ref::<Storage>(&storage).addr()) {
                return Err(Error::SharedVar(name));
            }
            drop(storage);
            let theta_star = match pretrained {
                None => Some(values_of::<T>(var.as_tensor())?),
                Some(map) => match map.get(&name) {
                    None => None,
                    Some(t) => {
                        check_same(&name, t, var.as_tensor(), "pretrained tensor")?;
                        Some(values_of::<T>(t)?)
                    }
                },
            };
            let id = match theta_star {
                Some(pp) => optimizer.register_pretrained(&name, pp)?,
                None => optimizer.register(&name, var.elem_count())?,
            };
            held.push(Held { name, var, id });
        }
        let lr = optimizer.next_lr();
        Ok(RecAdam {
            optimizer,
            vars: held,
            missing_grad: params.missing_grad,
            lr,
            lr_taken: true,
        })
    }

    /// One step with the gradients of `grads`. Every check (a missing or mismatched gradient,
    /// a refused learning rate, a non-finite gradient under the default guard) is made before
    /// anything is written: on an error no var and no state changed.
    pub fn try_step(&mut self, grads: &GradStore) -> Result<StepReport, Error> {
        if !self.lr_taken {
            self.optimizer.set_lr(self.lr)?;
            self.lr_taken = true;
        }
        let mut given: Vec<(usize, Tensor)> = Vec::with_capacity(self.vars.len());
        for (i, held) in self.vars.iter().enumerate() {
            let Some(grad) = grads.get(held.var.as_tensor()) else {
                match self.missing_grad {
                    MissingGrad::Error => return Err(Error::MissingGrad(held.name.clone())),
                    MissingGrad::Freeze => continue,
                }
            };
            check_same(&held.name, grad, held.var.as_tensor(), "gradient")?;
            // A gradient from a transposed or broadcast op may be strided: made contiguous
            // (a copy of that gradient only).
            let grad = if grad.is_contiguous() {
                grad.clone()
            } else {
                grad.contiguous()?
            };
            given.push((i, grad));
        }
        let lends: Vec<Lend<'_>> = given
            .iter()
            .map(|(i, grad)| Lend {
                id: self.vars[*i].id,
                var: self.vars[*i].var.as_tensor(),
                grad,
            })
            .collect();
        let optimizer = &mut self.optimizer;
        let mut report = None;
        in_place::with_all::<T>(&lends, &mut |params| report = Some(optimizer.step(params)))?;
        match report {
            Some(report) => Ok(report?),
            None => Err(candle_core::Error::msg("recadam: the step did not run").into()),
        }
    }

    /// Euclidean distances of the vars to θ* (overall and per group): the paper's measure of
    /// forgetting. Reads the vars where they are.
    pub fn distance_to_pretrained(&self) -> Result<Distances, Error> {
        let guards: Vec<_> = self
            .vars
            .iter()
            .map(|h| h.var.storage_and_layout())
            .collect();
        let mut values = Vec::with_capacity(guards.len());
        for ((storage, layout), held) in guards.iter().zip(&self.vars) {
            let Storage::Cpu(cpu) = &**storage else {
                return Err(not_cpu(&held.name, held.var.as_tensor(), "the value"));
            };
            values.push((held.id, T::values(cpu, layout)?));
        }
        Ok(self.optimizer.distance_to_pretrained(values)?)
    }

    /// The recadam-std optimizer inside: group learning rates, λ(t), step counts, moments,
    /// checkpoints (`save_checkpoint`/`load_checkpoint`), the guard.
    pub fn optimizer(&self) -> &Optimizer<'static, T> {
        &self.optimizer
    }

    /// The same, to change.
    pub fn optimizer_mut(&mut self) -> &mut Optimizer<'static, T> {
        &mut self.optimizer
    }

    /// The vars, by name, in the order they were given.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.vars.iter().map(|h| (h.name.as_str(), &h.var))
    }
}

impl<T: Element> candle_nn::Optimizer for RecAdam<T> {
    type Config = ParamsRecAdam;

    /// RecAdam over `vars`, named `var.0`, `var.1`, ... in order; θ* is a copy of their values
    /// now. A var that is not of type `T`, or not on the CPU, is an error.
    fn new(vars: Vec<Var>, params: ParamsRecAdam) -> candle_core::Result<Self> {
        let named = vars
            .into_iter()
            .enumerate()
            .map(|(i, var)| (format!("var.{i}"), var))
            .collect();
        Ok(Self::new_named(named, params)?)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.try_step(grads)?;
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    /// Sets every group's base learning rate. A rate the update rule refuses (negative,
    /// non-finite, or unstable with the penalty) is reported by the next step, which then
    /// changes nothing.
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
        self.lr_taken = self.optimizer.set_lr(lr).is_ok();
    }
}

fn not_cpu(name: &str, t: &Tensor, what: &'static str) -> Error {
    Error::NotCpu {
        name: name.into(),
        what,
        device: t.device().location(),
    }
}

fn check_var<T: Element>(name: &str, var: &Tensor) -> Result<(), Error> {
    if var.dtype() != T::DTYPE {
        return Err(Error::DType {
            name: name.into(),
            got: var.dtype(),
            want: T::DTYPE,
        });
    }
    if !var.device().is_cpu() {
        return Err(not_cpu(name, var, "the value"));
    }
    if !var.is_contiguous() {
        return Err(Error::NotContiguous(name.into()));
    }
    Ok(())
}

/// `t` (a gradient or θ*) has the var's shape and type, and is on the CPU.
fn check_same(name: &str, t: &Tensor, var: &Tensor, what: &'static str) -> Result<(), Error> {
    if !t.device().is_cpu() {
        return Err(not_cpu(name, t, what));
    }
    if t.dtype() != var.dtype() || t.shape() != var.shape() {
        return Err(Error::Mismatch {
            name: name.into(),
            got: format!("{what} {:?} {:?}", t.dtype(), t.dims()),
            want: format!("{:?} {:?}", var.dtype(), var.dims()),
        });
    }
    Ok(())
}

fn values_of<T: Element>(t: &Tensor) -> Result<Vec<T>, Error> {
    Ok(t.flatten_all()?.to_vec1::<T>()?)
}

//! RecAdam as burn's per-tensor [`Optimizer`]: the parameter and its gradient come in as burn
//! tensors, their values are updated by recadam-std's step, and a new tensor goes back.
//!
//! burn's optimizer trait is functional (`step(lr, tensor, grad, state) -> (tensor, state)`), so
//! a parameter's values are read out of burn once per step and a tensor is built from them
//! afterwards; the state (m, v, θ*) stays in plain vectors between steps and is never a burn
//! tensor, so it costs no conversion. What the round trip costs is measured by
//! `examples/bench.rs` (README, "Use from burn").

use std::fmt;
use std::sync::Arc;

use burn::optim::{LearningRate, Optimizer, RecordState, StateSink, StateSource};
use burn::tensor::{DType, Device, Tensor, TensorData};
use burn_pack::Scalar;
use recadam_core::{RecAdamConfig, Slices, StepScalars};
use recadam_simd::Kernel;
use recadam_std::{step_held, CallingThread, HeldParam, NonFiniteGuard, Pool};

use crate::{Element, Error};

/// RecAdam for one group of parameters, as burn's per-tensor optimizer.
///
/// Its configuration's `lr` is not used: burn passes each step's learning rate (a constant, or
/// burn's scheduler's). `ModuleOptimizer::from(recadam)` makes it burn's module optimizer; see
/// [`crate::RecAdamOptimizer`] for groups and a checked step.
#[derive(Clone)]
pub struct RecAdam {
    config: RecAdamConfig,
    kernel: Kernel,
    /// The threads a step runs on; none: the calling thread.
    pool: Option<Arc<rayon::ThreadPool>>,
    /// θ* of the one parameter this instance is for, given by
    /// [`crate::RecAdamOptimizer::with_pretrained`]; none: θ* is the parameter's first value.
    pretrained: Option<Arc<TensorData>>,
}

impl fmt::Debug for RecAdam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecAdam")
            .field("config", &self.config)
            .field("kernel", &self.kernel)
            .field("threads", &self.threads())
            .field("given_pretrained", &self.pretrained.is_some())
            .finish()
    }
}

impl RecAdam {
    /// RecAdam with `config` (checked now), on the calling thread, with the CPU's best kernel
    /// (or the one `RECADAM_BACKEND` names).
    pub fn new(config: RecAdamConfig) -> Result<Self, Error> {
        StepScalars::<f32>::new(&config, 1, config.lr).map_err(recadam_std::Error::from)?;
        let kernel = Kernel::from_env().map_err(recadam_std::Error::from)?;
        Ok(RecAdam {
            config,
            kernel,
            pool: None,
            pretrained: None,
        })
    }

    /// Runs each tensor's update on `threads` threads (1: the calling thread, no thread is
    /// started; 0 is an error). The pool is shared by the clones of this optimizer.
    pub fn with_threads(mut self, threads: usize) -> Result<Self, Error> {
        if threads == 0 {
            return Err(recadam_std::Error::Threads(0).into());
        }
        self.pool = if threads == 1 {
            None
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("recadam-{i}"))
                .build()
                .map_err(|e| recadam_std::Error::Pool(e.to_string()))?;
            Some(Arc::new(pool))
        };
        Ok(self)
    }

    /// This optimizer for one parameter whose θ* is `pretrained` (of its type and shape),
    /// rather than its value at its first step. Only a parameter's first step reads it; later
    /// steps use the θ* in the state.
    pub fn with_pretrained(mut self, pretrained: TensorData) -> Self {
        self.pretrained = Some(Arc::new(pretrained));
        self
    }

    /// The hyperparameters.
    pub fn config(&self) -> &RecAdamConfig {
        &self.config
    }

    /// Threads per step.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// One step of one tensor: the fallible core of [`Optimizer::step`].
    pub(crate) fn step_tensor<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<RecAdamState<D>>,
    ) -> Result<(Tensor<D>, RecAdamState<D>), Error> {
        let device = tensor.device();
        let mut values = tensor.try_into_data().map_err(|e| Error::Read {
            what: "a parameter".into(),
            message: format!("{e:?}"),
        })?;
        let grad = grad.try_into_data().map_err(|e| Error::Read {
            what: "a gradient".into(),
            message: format!("{e:?}"),
        })?;
        let dtype = values.dtype();
        let state = match dtype {
            DType::F32 => self.update::<f32, D>(lr, &mut values, &grad, state)?,
            DType::F64 => self.update::<f64, D>(lr, &mut values, &grad, state)?,
            got => {
                return Err(Error::DType {
                    name: "(a parameter)".into(),
                    got,
                })
            }
        };
        // The element type given: burn would otherwise cast to the device's default float type.
        Ok((Tensor::from_data(values, (&device, dtype)), state))
    }

    fn update<T: Element, const D: usize>(
        &self,
        lr: LearningRate,
        values: &mut TensorData,
        grad: &TensorData,
        state: Option<RecAdamState<D>>,
    ) -> Result<RecAdamState<D>, Error> {
        let shape = values.shape().to_vec();
        let describe = |d: &TensorData| format!("{:?} {:?}", d.dtype(), d.shape().to_vec());
        // The messages are made only on an error: this runs for every tensor of every step.
        let mismatch = |got: String| Error::Mismatch {
            name: "(a parameter)".into(),
            got,
            want: format!("{:?} {:?}", T::DTYPE, shape),
        };
        if grad.dtype() != T::DTYPE || grad.shape() != values.shape() {
            return Err(mismatch(format!("gradient {}", describe(grad))));
        }
        let g = grad
            .as_slice::<T>()
            .map_err(|e| mismatch(format!("gradient ({e:?})")))?;
        let p = values
            .as_mut_slice::<T>()
            .map_err(|e| mismatch(format!("parameter ({e:?})")))?;
        let mut state = match state {
            Some(state) => state,
            None => RecAdamState {
                t: 0,
                shape: shape.clone(),
                moments: T::wrap(Buffers {
                    m: vec![T::zero(); p.len()],
                    v: vec![T::zero(); p.len()],
                    // θ*: the one given, or the value when the parameter first gets a gradient.
                    pretrained: match (&self.pretrained, self.config.has_penalty()) {
                        (_, false) => None,
                        (None, true) => Some(p.to_vec()),
                        (Some(star), true) => {
                            if star.dtype() != T::DTYPE || star.shape() != grad.shape() {
                                return Err(mismatch(format!("pretrained {}", describe(star))));
                            }
                            Some(
                                star.as_slice::<T>()
                                    .map_err(|e| mismatch(format!("pretrained ({e:?})")))?
                                    .to_vec(),
                            )
                        }
                    },
                }),
            },
        };
        if state.shape != shape {
            return Err(mismatch(format!(
                "optimizer state of shape {:?}",
                state.shape
            )));
        }
        let t = state.t + 1;
        let config = RecAdamConfig { lr, ..self.config };
        let Some(b) = T::moments(&mut state.moments) else {
            return Err(mismatch("optimizer state of the other float type".into()));
        };
        let slices = Slices::new(p, g, &mut b.m, &mut b.v, b.pretrained.as_deref())
            .map_err(recadam_std::Error::from)?;
        let pool: &dyn Pool = match &self.pool {
            Some(pool) => pool.as_ref(),
            None => &CallingThread,
        };
        // burn hands the optimizer one tensor at a time: the guard (whole-step, all or nothing)
        // is RecAdamOptimizer::try_step's, before any tensor changes.
        step_held(
            self.kernel,
            pool,
            NonFiniteGuard::Off,
            &[config],
            vec![HeldParam {
                slices,
                group: 0,
                t,
            }],
        )?;
        state.t = t;
        Ok(state)
    }
}

/// One parameter's state: its step count, first and second moments and θ*, in plain vectors.
#[derive(Clone, Debug)]
pub struct RecAdamState<const D: usize> {
    /// The steps this parameter has taken (the official code's `state["step"]`).
    pub t: u64,
    shape: Vec<usize>,
    moments: Moments,
}

impl<const D: usize> RecAdamState<D> {
    /// m, v and θ* as `T`, if the parameter is of type `T`.
    pub fn view<T: Element>(&self) -> Option<StateView<'_, T>> {
        T::moments_ref(&self.moments).map(|b| StateView {
            exp_avg: &b.m,
            exp_avg_sq: &b.v,
            pretrained: b.pretrained.as_deref(),
        })
    }
}

/// A parameter's m, v and θ*, borrowed from its [`RecAdamState`].
#[derive(Clone, Copy, Debug)]
pub struct StateView<'a, T> {
    /// The first moment m.
    pub exp_avg: &'a [T],
    /// The second moment v.
    pub exp_avg_sq: &'a [T],
    /// θ* (`None` where the parameter's group has no penalty).
    pub pretrained: Option<&'a [T]>,
}

/// The state's buffers, of the parameter's element type.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub enum Moments {
    F32(Buffers<f32>),
    F64(Buffers<f64>),
}

#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Buffers<T> {
    pub(crate) m: Vec<T>,
    pub(crate) v: Vec<T>,
    pub(crate) pretrained: Option<Vec<T>>,
}

const STEP: &str = "step";
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";
const PRETRAINED: &str = "pretrained";

/// In burn's optimizer record (a burnpack file): `step` (a scalar), `exp_avg`, `exp_avg_sq` and,
/// where the group has a penalty, `pretrained`, under the parameter's id: the official
/// RecAdam's names.
impl<const D: usize> RecordState for RecAdamState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        fn push<T: Element>(b: &Buffers<T>, shape: &[usize], prefix: &str, out: &mut StateSink) {
            let data = |v: &Vec<T>| TensorData::new(v.clone(), shape.to_vec());
            out.push_tensor(prefix, EXP_AVG, data(&b.m));
            out.push_tensor(prefix, EXP_AVG_SQ, data(&b.v));
            if let Some(star) = &b.pretrained {
                out.push_tensor(prefix, PRETRAINED, data(star));
            }
        }
        out.push_scalar(prefix, STEP, Scalar::from(self.t));
        match &self.moments {
            Moments::F32(b) => push(b, &self.shape, prefix, out),
            Moments::F64(b) => push(b, &self.shape, prefix, out),
        }
    }

    /// `None` (burn then starts the parameter afresh) when a piece is missing or the pieces do
    /// not agree in type and shape.
    fn state_unflatten(prefix: &str, src: &mut StateSource, _device: &Device) -> Option<Self> {
        fn take<T: Element>(
            m: TensorData,
            v: TensorData,
            star: Option<TensorData>,
        ) -> Option<Buffers<T>> {
            Some(Buffers {
                m: m.try_into_vec::<T>().ok()?,
                v: v.try_into_vec::<T>().ok()?,
                pretrained: match star {
                    Some(s) => Some(s.try_into_vec::<T>().ok()?),
                    None => None,
                },
            })
        }
        let t = u64::try_from(src.take_scalar(prefix, STEP)?).ok()?;
        let m = src.take_tensor(prefix, EXP_AVG)?;
        let v = src.take_tensor(prefix, EXP_AVG_SQ)?;
        let star = src.take_tensor(prefix, PRETRAINED);
        let shape = m.shape().to_vec();
        let same = |d: &TensorData| d.shape().to_vec() == shape && d.dtype() == m.dtype();
        if !same(&v) || !star.as_ref().is_none_or(same) {
            return None;
        }
        let moments = match m.dtype() {
            DType::F32 => Moments::F32(take::<f32>(m, v, star)?),
            DType::F64 => Moments::F64(take::<f64>(m, v, star)?),
            _ => return None,
        };
        Some(RecAdamState { t, shape, moments })
    }
}

impl Optimizer for RecAdam {
    type State<const D: usize> = RecAdamState<D>;

    /// One RecAdam step of one tensor at burn's learning rate `lr`.
    ///
    /// # Panics
    ///
    /// burn's trait has no error: on a parameter that is neither F32 nor F64, a gradient or a
    /// loaded state that does not match it, or a learning rate at which the penalty diverges,
    /// this panics with the message of the [`Error`]. [`crate::RecAdamOptimizer::try_step`]
    /// checks all of these (but a loaded state) before any tensor changes and returns the error.
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        match self.step_tensor(lr, tensor, grad, state) {
            Ok((tensor, state)) => (tensor, Some(state)),
            Err(e) => panic!("recadam-burn: {e}"),
        }
    }

    /// The state is in host memory whatever the device: nothing moves.
    fn to_device<const D: usize>(state: Self::State<D>, _device: &Device) -> Self::State<D> {
        state
    }
}

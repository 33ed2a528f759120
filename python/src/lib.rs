//! `recadam._recadam`: the Rust side of the Python package. One call per optimizer step hands
//! every parameter's buffers over as addresses (`tensor.data_ptr()` or a numpy array's data
//! address) with their length, group and step; the step runs recadam-std's [`step_held`] on
//! the optimizer's threads with the GIL released. The Python side (`recadam/_torch.py`,
//! `recadam/_numpy.py`) checks device, dtype, layout and lengths and keeps every tensor alive
//! for the call; this side checks what it can (null, alignment, overlap) and turns every error,
//! and any panic, into a Python exception.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use recadam_core::half::bf16;
use recadam_core::{Annealing, PenaltyMode, RecAdamConfig, Slices, Storage};
use recadam_simd::SimdElement;
use recadam_std::{
    load_held,
    raw::{self, RawMixedParam, RawParam, RawState},
    save_held, step_held, step_held_mixed, thread_pool, Backend, HeldMixedParam, HeldParam,
    HeldState, Kernel, NonFiniteGuard, Pool,
};

/// A param group as the Python optimizer keeps it: the official `RecAdam.py` keys, plus
/// `penalty` (`"decoupled"` or `"coupled"`).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct GroupSpec {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    correct_bias: bool,
    anneal_fun: String,
    anneal_k: f64,
    anneal_t0: f64,
    anneal_w: f64,
    pretrain_cof: f64,
    penalty: String,
}

impl GroupSpec {
    fn config(&self) -> PyResult<RecAdamConfig> {
        let annealing = Annealing::from_official(&self.anneal_fun, self.anneal_k, self.anneal_t0)
            .ok_or_else(|| {
            PyValueError::new_err(format!(
                "invalid `anneal_fun` = {:?}: expected 'sigmoid', 'linear' or 'constant'",
                self.anneal_fun
            ))
        })?;
        let penalty_mode = match self.penalty.as_str() {
            "decoupled" => PenaltyMode::Decoupled,
            "coupled" => PenaltyMode::Coupled,
            other => {
                return Err(PyValueError::new_err(format!(
                    "invalid `penalty` = {other:?}: expected 'decoupled' or 'coupled'"
                )))
            }
        };
        let config = RecAdamConfig {
            lr: self.lr,
            beta1: self.betas.0,
            beta2: self.betas.1,
            eps: self.eps,
            weight_decay: self.weight_decay,
            correct_bias: self.correct_bias,
            annealing,
            anneal_w: self.anneal_w,
            pretrain_cof: self.pretrain_cof,
            penalty_mode,
        };
        config.validate().map_err(value_error)?;
        Ok(config)
    }
}

/// One parameter of a step: the addresses of its value, gradient, `exp_avg`, `exp_avg_sq` and
/// θ* (0: none), its length in elements, its group and the step t it takes.
type ParamSpec = (usize, usize, usize, usize, usize, usize, usize, u64);

/// One parameter's state for `save` and `load`: the addresses of `exp_avg`, `exp_avg_sq` and θ*
/// (0: none), the length, the group and the step count (in group order: the file names each
/// parameter by its group and its place in it).
type StateSpec = (usize, usize, usize, usize, usize, u64);

fn configs_of(groups: &[GroupSpec]) -> PyResult<Vec<RecAdamConfig>> {
    groups.iter().map(GroupSpec::config).collect()
}

/// The addresses of a step as recadam-std's raw parameters.
fn raw_params<T>(params: &[ParamSpec]) -> Vec<RawParam<T>> {
    params
        .iter()
        .map(|&(p, g, m, v, pp, len, ..)| RawParam {
            value: p as *mut T,
            grad: g as *const T,
            exp_avg: m as *mut T,
            exp_avg_sq: v as *mut T,
            pretrained: pp as *const T,
            len,
        })
        .collect()
}

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Checks a group's hyperparameters; raises `ValueError` naming the field and value.
#[pyfunction]
fn validate(group: GroupSpec) -> PyResult<()> {
    group.config().map(|_| ())
}

/// λ(t) of a group (0 without a penalty), as the official `anneal_function`.
#[pyfunction]
fn anneal_lambda(group: GroupSpec, t: u64) -> PyResult<f64> {
    Ok(group.config()?.lambda(t.max(1)))
}

/// The SIMD backends this CPU can run, best first.
#[pyfunction]
fn backends() -> Vec<&'static str> {
    let mut all: Vec<Backend> = Backend::available().collect();
    all.reverse();
    all.iter().map(|b| b.name()).collect()
}

/// The kernel and the threads of one optimizer.
#[pyclass(frozen, module = "recadam._recadam")]
struct Engine {
    kernel: Kernel,
    pool: Arc<dyn Pool>,
}

#[pymethods]
impl Engine {
    /// `threads` ≥ 1 (1 starts no thread; more start a persistent pool once); `backend` one of
    /// `backends()`, or None for the best.
    #[new]
    #[pyo3(signature = (threads = 1, backend = None))]
    fn new(threads: usize, backend: Option<&str>) -> PyResult<Engine> {
        let kernel = match backend {
            None => Kernel::best(),
            Some(name) => {
                let b = Backend::from_name(name).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "invalid `backend` = {name:?}: expected one of {:?}",
                        backends()
                    ))
                })?;
                Kernel::new(b).map_err(value_error)?
            }
        };
        let pool = thread_pool(threads).map_err(value_error)?;
        Ok(Engine { kernel, pool })
    }

    /// The backend that runs the update.
    #[getter]
    fn backend(&self) -> &'static str {
        self.kernel.backend().name()
    }

    /// The threads a step runs on.
    #[getter]
    fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// The memory-bandwidth reference of the benchmarks: the update's memory traffic (reads
    /// the five buffers, writes three) with one addition each, on the same threads. Every
    /// parameter needs θ*. Same contract as `step`.
    fn stream(&self, py: Python<'_>, dtype: &str, params: Vec<ParamSpec>) -> PyResult<()> {
        match dtype {
            "float32" => self.stream_typed::<f32>(py, &params),
            "float64" => self.stream_typed::<f64>(py, &params),
            other => Err(PyTypeError::new_err(format!("unsupported dtype {other}"))),
        }
    }

    /// Saves caller-held state in the project's checkpoint format (safetensors, checksummed,
    /// atomic; see recadam-std's `checkpoint`), or with `load` reads such a file into it (the
    /// same groups, parameters and hyperparameters but the learning rates are required; a
    /// difference is a `ValueError` naming it, and nothing changes). `params` are `(exp_avg,
    /// exp_avg_sq, θ* or 0, len, group, steps)`, in group order, with `step`'s contract for the
    /// addresses. Returns each parameter's step count and each group's learning rate.
    #[pyo3(signature = (path, dtype, groups, params, load))]
    fn checkpoint(
        &self,
        py: Python<'_>,
        path: std::path::PathBuf,
        dtype: &str,
        groups: Vec<GroupSpec>,
        params: Vec<StateSpec>,
        load: bool,
    ) -> PyResult<(Vec<u64>, Vec<f64>)> {
        let configs = configs_of(&groups)?;
        match dtype {
            "float32" => self.checkpoint_typed::<f32>(py, &path, &configs, &params, load),
            "float64" => self.checkpoint_typed::<f64>(py, &path, &configs, &params, load),
            other => Err(PyTypeError::new_err(format!("unsupported dtype {other}"))),
        }
    }

    /// One step over every parameter given. Returns `(skipped, grad_norm)`: `skipped` is the
    /// index of the first parameter with a non-finite gradient when the step was skipped.
    ///
    /// The caller guarantees that every address is the start of a live, C-contiguous CPU buffer
    /// of `len` elements of `dtype` (the moments of `state_dtype`, θ* of `pretrained_dtype`
    /// where given: `"bfloat16"` storage for float32 parameters), kept alive and not used by
    /// another thread for the call.
    #[pyo3(signature = (dtype, groups, params, nonfinite, state_dtype = None, pretrained_dtype = None))]
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        py: Python<'_>,
        dtype: &str,
        groups: Vec<GroupSpec>,
        params: Vec<ParamSpec>,
        nonfinite: &str,
        state_dtype: Option<&str>,
        pretrained_dtype: Option<&str>,
    ) -> PyResult<(Option<usize>, Option<f64>)> {
        let configs = groups
            .iter()
            .map(GroupSpec::config)
            .collect::<PyResult<Vec<_>>>()?;
        let guard = match nonfinite {
            "skip" => NonFiniteGuard::Skip,
            "raise" => NonFiniteGuard::Refuse,
            "propagate" => NonFiniteGuard::Off,
            other => {
                return Err(PyValueError::new_err(format!(
                    "invalid `nonfinite` = {other:?}: expected 'skip', 'raise' or 'propagate'"
                )))
            }
        };
        let state = state_dtype.unwrap_or(dtype);
        let pretrained = pretrained_dtype.unwrap_or(dtype);
        match (dtype, state, pretrained) {
            ("float32", "float32", "float32") => {
                self.step_typed::<f32>(py, &configs, &params, guard)
            }
            ("float64", "float64", "float64") => {
                self.step_typed::<f64>(py, &configs, &params, guard)
            }
            ("float32", "bfloat16", "float32") => {
                self.step_mixed::<bf16, f32>(py, &configs, &params, guard)
            }
            ("float32", "float32", "bfloat16") => {
                self.step_mixed::<f32, bf16>(py, &configs, &params, guard)
            }
            ("float32", "bfloat16", "bfloat16") => {
                self.step_mixed::<bf16, bf16>(py, &configs, &params, guard)
            }
            ("float32" | "float64", ..) => Err(PyTypeError::new_err(format!(
                "unsupported storage: {dtype} parameters with {state} moments and {pretrained} θ* \
                 (float32 parameters may keep their moments and θ* in float32 or bfloat16; \
                 float64 parameters keep everything in float64)"
            ))),
            (other, ..) => Err(PyTypeError::new_err(format!(
                "unsupported dtype {other}: recadam steps float32 and float64"
            ))),
        }
    }
}

impl Engine {
    fn stream_typed<T: SimdElement>(&self, py: Python<'_>, params: &[ParamSpec]) -> PyResult<()> {
        let (kernel, pool) = (self.kernel, self.pool.clone());
        py.detach(|| {
            caught(|| {
                // SAFETY: as in `step_typed`: the Python caller keeps every buffer alive and
                // untouched for the call; `raw::slices` checks the rest.
                let all = unsafe { raw::slices(&raw_params::<T>(params)) }.map_err(value_error)?;
                // Each thread takes the same share of every buffer, cut at 64 elements.
                let threads = pool.threads();
                let mut parts: Vec<Vec<Slices<'_, T>>> = (0..threads).map(|_| Vec::new()).collect();
                for mut s in all {
                    for (i, part) in parts.iter_mut().enumerate() {
                        let left = threads - i;
                        let take = (s.len().div_ceil(left)).div_ceil(64) * 64;
                        if take >= s.len() || i + 1 == threads {
                            part.push(s);
                            break;
                        }
                        let (a, b) = s.split_at(take).ok_or_else(|| value_error("split"))?;
                        part.push(a);
                        s = b;
                    }
                }
                let slots: Vec<Mutex<Vec<Slices<'_, T>>>> =
                    parts.into_iter().map(Mutex::new).collect();
                pool.run(slots.len(), &|i| {
                    let mine =
                        std::mem::take(&mut *slots[i].lock().unwrap_or_else(|e| e.into_inner()));
                    for s in mine {
                        kernel.stream(s);
                    }
                });
                Ok(())
            })
        })
    }

    /// [`Engine::step_typed`] for float32 parameters and gradients whose moments are stored as
    /// `S` and θ* as `A` (recadam-std's `step_held_mixed`).
    fn step_mixed<S: Storage, A: Storage>(
        &self,
        py: Python<'_>,
        configs: &[RecAdamConfig],
        params: &[ParamSpec],
        guard: NonFiniteGuard,
    ) -> PyResult<(Option<usize>, Option<f64>)> {
        let (kernel, pool) = (self.kernel, self.pool.clone());
        py.detach(|| {
            caught(|| {
                let raw: Vec<RawMixedParam<f32, S, A>> = params
                    .iter()
                    .map(|&(p, g, m, v, pp, len, ..)| RawMixedParam {
                        value: p as *mut f32,
                        grad: g as *const f32,
                        exp_avg: m as *mut S,
                        exp_avg_sq: v as *mut S,
                        pretrained: pp as *const A,
                        params_copy: std::ptr::null_mut(),
                        len,
                    })
                    .collect();
                // SAFETY: as in `step_typed`, each buffer of its declared storage type (the
                // Python side checks every tensor's dtype against it); `raw::mixed_slices`
                // checks null, alignment, sizes and overlaps.
                let slices = unsafe { raw::mixed_slices(&raw) }.map_err(value_error)?;
                let held = slices
                    .into_iter()
                    .zip(params)
                    .map(|(slices, &(.., group, t))| HeldMixedParam { slices, group, t })
                    .collect();
                let report = step_held_mixed(kernel, pool.as_ref(), guard, configs, held)
                    .map_err(value_error)?;
                Ok((report.skipped, report.grad_norm))
            })
        })
    }

    /// The caller-held state saved, or loaded into (recadam-std's `save_held`, `load_held`).
    fn checkpoint_typed<T: SimdElement + bytemuck::Pod>(
        &self,
        py: Python<'_>,
        path: &std::path::Path,
        configs: &[RecAdamConfig],
        params: &[StateSpec],
        load: bool,
    ) -> PyResult<(Vec<u64>, Vec<f64>)> {
        py.detach(|| {
            caught(|| {
                let raw: Vec<RawState<T>> = params
                    .iter()
                    .map(|&(m, v, pp, len, ..)| RawState {
                        exp_avg: m as *mut T,
                        exp_avg_sq: v as *mut T,
                        pretrained: pp as *const T,
                        len,
                    })
                    .collect();
                // SAFETY: the Python caller guarantees that m, v (and θ* when not 0) start live
                // buffers of `len` elements of `T`, kept alive and untouched by other threads for
                // this call; `raw::state_slices` checks null, alignment, sizes and overlaps.
                let buffers = unsafe { raw::state_slices(&raw) }.map_err(value_error)?;
                let states: Vec<HeldState<'_, T>> = buffers
                    .into_iter()
                    .zip(params)
                    .map(
                        |((exp_avg, exp_avg_sq, pretrained), &(.., group, steps))| HeldState {
                            exp_avg,
                            exp_avg_sq,
                            pretrained,
                            group,
                            steps,
                        },
                    )
                    .collect();
                if load {
                    let read = load_held(path, configs, states).map_err(value_error)?;
                    Ok((read.steps, read.lrs))
                } else {
                    save_held(path, configs, states).map_err(value_error)?;
                    Ok((Vec::new(), Vec::new()))
                }
            })
        })
    }

    fn step_typed<T: SimdElement>(
        &self,
        py: Python<'_>,
        configs: &[RecAdamConfig],
        params: &[ParamSpec],
        guard: NonFiniteGuard,
    ) -> PyResult<(Option<usize>, Option<f64>)> {
        let (kernel, pool) = (self.kernel, self.pool.clone());
        py.detach(|| {
            caught(|| {
                // SAFETY: the Python caller guarantees that each address starts a live buffer
                // of `len` elements of `T`, kept alive for this call and touched by no other
                // thread meanwhile (the GIL is released, but the caller holds every tensor
                // until the call returns); `raw::slices` checks what can be checked (null,
                // alignment, sizes, written buffers overlapping any other).
                let slices =
                    unsafe { raw::slices(&raw_params::<T>(params)) }.map_err(value_error)?;
                let held = slices
                    .into_iter()
                    .zip(params)
                    .map(|(slices, &(.., group, t))| HeldParam { slices, group, t })
                    .collect();
                let report =
                    step_held(kernel, pool.as_ref(), guard, configs, held).map_err(value_error)?;
                Ok((report.skipped, report.grad_norm))
            })
        })
    }
}

/// Runs `f`, turning a panic into a Python `RuntimeError`: no Rust panic crosses into Python.
fn caught<R>(f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(PyRuntimeError::new_err(format!(
            "recadam: internal error (a Rust panic, caught): {what}"
        )))
    })
}

/// Panics inside the same guard as every entry point: for the test that a panic reaches Python
/// as an exception.
#[pyfunction]
fn _panic_for_test() -> PyResult<()> {
    caught(|| panic!("a test panic"))
}

/// The extension module.
#[pymodule]
fn _recadam(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(anneal_lambda, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

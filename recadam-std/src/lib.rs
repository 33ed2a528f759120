//! # recadam-std
//!
//! The RecAdam optimizer as users hold it: parameters registered once under handles, in groups
//! chosen by name with their own hyperparameters (as the official `RecAdam.py` param groups),
//! the learning rate from the caller at each step or from a schedule, gradient clipping, a
//! non-finite gradient guard, a thread pool (its own or the caller's) over large caller-owned
//! buffers (GPU hosts updating pinned host memory, ZeRO-Offload style), checkpoints that resume
//! exactly, and the paper's forgetting metrics. Every step runs the `recadam-simd` kernel, so results are the same bits for any
//! thread count and any CPU.
//!
//! See [`Optimizer`] for an example.
//!
//! ## Features
//! - `rayon`: the optimizer's own threads are a persistent rayon pool (started once, not per
//!   step), and a `rayon::ThreadPool` can be given to [`Optimizer::set_pool`]. Without it, more
//!   than one thread means scoped threads started per step.
//! - `trainer` (default; implies `rayon`): the CPU mini-BERT in [`bert`] (configuration, weights,
//!   tokenizer, forward and backward passes, heads) and fine-tuning as a library: [`trainer`]
//!   (classifier, training step, batches), [`glue`] (the GLUE files), [`evaluate`] and
//!   [`metrics`] (GLUE's scores), [`run_dir`] (run folders that resume exactly). It brings
//!   `tokenizers`, `matrixmultiply`, `csv` and `sha2`.
//!   Without it (`default-features = false`) the crate is the optimizer alone.

#[cfg(feature = "trainer")]
pub mod bert;
mod checkpoint;
mod error;
#[cfg(feature = "trainer")]
pub mod evaluate;
#[cfg(feature = "trainer")]
pub mod glue;
mod group;
mod held;
#[cfg(feature = "trainer")]
pub mod metrics;
mod optimizer;
mod param;
mod pool;
pub mod raw;
#[cfg(feature = "trainer")]
pub mod run_dir;
mod schedule;
#[cfg(feature = "trainer")]
pub mod trainer;

pub use checkpoint::{write_atomic, FORMAT_VERSION};
pub use error::{CheckpointError, Error};
pub use group::{Group, Overrides, Selector};
pub use held::{
    load_held, save_held, step_held, step_held_mixed, HeldCheckpoint, HeldMixedParam, HeldParam,
    HeldReport, HeldState,
};
pub use optimizer::{
    align_up, thread_pool, Distances, NonFiniteGuard, Optimizer, Options, StepCount, StepReport,
};
pub use param::{Buffer, ParamId, ParamMut, Pretrained};
#[cfg(feature = "rayon")]
pub use pool::CurrentRayonPool;
pub use pool::{tensor_grad_stats, CallingThread, Pool, ScopedThreads, ALIGN};
/// The update kernel an optimizer runs ([`Optimizer::with_kernel`]).
pub use recadam_simd::{Backend, GradStats, Kernel};
pub use schedule::{Constant, CosineWarmup, LinearWarmupDecay, LrSchedule};

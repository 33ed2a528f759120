//! # recadam-std
//!
//! The RecAdam optimizer as users hold it: named parameters in groups (penalty on or off,
//! weight decay on or off, chosen by name), learning-rate schedules, gradient clipping, a
//! non-finite gradient guard, threads over large caller-owned buffers (GPU hosts updating pinned
//! host memory, ZeRO-Offload style), checkpoints that resume exactly, and the paper's forgetting
//! metrics. Every step runs the `recadam-simd` kernel, so results are the same bits for any
//! thread count and any CPU.
//!
//! See [`Optimizer`] for an example.
//!
//! ## Features
//! - `trainer` (default): the CPU mini-BERT in [`bert`] (configuration, weights, tokenizer,
//!   forward and backward passes, heads), which brings `tokenizers`, `matrixmultiply` and `rayon`.
//!   Without it (`default-features = false`) the crate is the optimizer alone.

#[cfg(feature = "trainer")]
pub mod bert;
mod checkpoint;
mod error;
mod group;
mod optimizer;
mod parallel;
mod schedule;

pub use checkpoint::{write_atomic, FORMAT_VERSION};
pub use error::{CheckpointError, Error};
pub use group::{Group, Selector};
pub use optimizer::{
    align_up, Buffer, Distances, NonFiniteGuard, Optimizer, Options, ParamMut, StepReport,
};
pub use parallel::ALIGN;
/// The update kernel an optimizer runs ([`Optimizer::with_kernel`]).
pub use recadam_simd::{Backend, Kernel};
pub use schedule::{Constant, CosineWarmup, LinearWarmupDecay, LrSchedule};

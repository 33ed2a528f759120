//! # recadam-simd
//!
//! The RecAdam update of [`recadam_core`], vectorised by hand: AVX-512 and AVX2+FMA on x86_64
//! (chosen at run time, so one binary runs the best path of any x86_64 CPU and never faults on an
//! older one) and NEON on aarch64. Every backend gives exactly the bits of the scalar reference
//! `recadam_core::update` (a NaN's payload aside, which depends on operand order), for every
//! length and alignment: the same operations in the same order,
//! fused multiply-adds at the same four places, correctly rounded square root and division, on
//! every lane of every vector (the two ends of a slice are partial vectors). The mixed-precision
//! update (`Kernel::update_mixed`: bf16/f16 gradients, moments, θ* and parameter copy) gives the
//! bits of `recadam_core::update_mixed` the same way, with bf16 and f16 converted in the vector
//! registers (F16C on x86).
//!
//! ```
//! use recadam_core::{RecAdamConfig, Slices, StepScalars};
//! use recadam_simd::Kernel;
//!
//! let kernel = Kernel::from_env()?; // RECADAM_BACKEND, or the best the CPU has
//! let config = RecAdamConfig::default();
//! let pretrained = vec![0.02f32; 1000];
//! let (mut p, mut m, mut v) = (pretrained.clone(), vec![0.0; 1000], vec![0.0; 1000]);
//! let grads = vec![1e-3f32; 1000];
//! let scalars = StepScalars::new(&config, 1, config.lr)?;
//! kernel.update(&scalars, Slices::new(&mut p, &grads, &mut m, &mut v, Some(&pretrained))?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod backend;
mod grad_stats;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod kernel;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod lanes;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod stored;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use backend::{Backend, BackendError, Kernel, SimdElement};
pub use grad_stats::{GradStats, ACCUMULATORS};

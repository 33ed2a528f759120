//! # librecadam
//!
//! The RecAdam update and optimizer behind a C ABI, for C, C++ and any language that calls C
//! (Julia, Go, Swift, a C++ trainer updating pinned host buffers). The header
//! `include/recadam.h` is generated from this crate by cbindgen and checked by a test.
//!
//! - [`recadam_optimizer_new`] … [`recadam_optimizer_free`]: an optimizer over caller-owned
//!   buffers in groups, stepped by one call on its own threads ([`optimizer`]).
//! - [`recadam_update_f32`] and [`recadam_update_f64`]: one stateless update of one set of
//!   slices, for frameworks that keep their own state ([`update`]).
//!
//! Every function returns a [`recadam_status`]; on an error [`recadam_last_error`] gives the
//! message (per thread). Inputs are checked (null pointers, zero lengths, alignment, buffers
//! that overlap memory the call writes, a buffer registered twice, hyperparameters, handles
//! already freed) and nothing changes on an error. A Rust panic is caught at every entry point
//! and returned as [`RECADAM_ERROR_PANIC`]: the library is built with `panic = "unwind"` (the
//! default), which this needs.
//!
//! What cannot be checked is the caller's promise: a non-null pointer starts a live buffer of
//! `len` elements of the optimizer's type, and buffers registered with an optimizer stay valid,
//! and untouched by other threads during a call, until it is freed.

#![warn(missing_docs)]
#![allow(non_camel_case_types)]

mod config;
mod error;
pub mod optimizer;
pub mod update;

pub use config::{
    recadam_anneal, recadam_config, recadam_config_default, recadam_penalty,
    RECADAM_ANNEAL_CONSTANT, RECADAM_ANNEAL_LINEAR, RECADAM_ANNEAL_SIGMOID,
    RECADAM_PENALTY_COUPLED, RECADAM_PENALTY_DECOUPLED,
};
#[doc(hidden)]
pub use error::recadam_test_panic;
pub use error::{
    recadam_last_error, recadam_status, recadam_status_name, RECADAM_ERROR_BUFFER,
    RECADAM_ERROR_CHECKPOINT, RECADAM_ERROR_DUPLICATE, RECADAM_ERROR_HYPERPARAMETER,
    RECADAM_ERROR_INVALID_ARGUMENT, RECADAM_ERROR_INVALID_HANDLE, RECADAM_ERROR_LENGTH,
    RECADAM_ERROR_NONFINITE_GRADIENT, RECADAM_ERROR_NULL_POINTER, RECADAM_ERROR_OVERLAP,
    RECADAM_ERROR_PANIC, RECADAM_ERROR_SYSTEM, RECADAM_ERROR_VERSION, RECADAM_OK,
};
pub use optimizer::*;
pub use update::{recadam_update_f32, recadam_update_f64};

/// The version of this C interface: it changes when a function's signature or a struct's
/// layout changes incompatibly.
pub const RECADAM_ABI_VERSION: u32 = 1;

/// The library's version, as "major.minor.patch" (a static string).
#[no_mangle]
pub extern "C" fn recadam_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// [`RECADAM_ABI_VERSION`] of the library linked, to compare with the header's.
#[no_mangle]
pub extern "C" fn recadam_abi_version() -> u32 {
    RECADAM_ABI_VERSION
}

//! Status codes, the per-thread message of the last error, and the guard every entry point runs
//! its body in (no panic crosses into C).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use recadam_std::Error;

/// What a call did: [`RECADAM_OK`] or one of the `RECADAM_ERROR_*` codes.
pub type recadam_status = u32;

/// The call succeeded.
pub const RECADAM_OK: recadam_status = 0;
/// A pointer that must not be null was null.
pub const RECADAM_ERROR_NULL_POINTER: recadam_status = 1;
/// An argument out of its range (a type, mode or group that does not exist, 0 threads, a group
/// that needs θ* given none, a path that is not valid text).
pub const RECADAM_ERROR_INVALID_ARGUMENT: recadam_status = 2;
/// A hyperparameter or learning rate refused by the update rule (the message names it).
pub const RECADAM_ERROR_HYPERPARAMETER: recadam_status = 3;
/// A buffer length of 0.
pub const RECADAM_ERROR_LENGTH: recadam_status = 4;
/// A buffer not aligned for its element type, or larger than memory can hold.
pub const RECADAM_ERROR_BUFFER: recadam_status = 5;
/// Two buffers share memory that the call writes (a gradient that is its parameter, say).
pub const RECADAM_ERROR_OVERLAP: recadam_status = 6;
/// A parameter buffer registered a second time.
pub const RECADAM_ERROR_DUPLICATE: recadam_status = 7;
/// An optimizer handle that is not live: freed already, or never made by this library.
pub const RECADAM_ERROR_INVALID_HANDLE: recadam_status = 8;
/// A gradient holds NaN or an infinity and the optimizer refuses such steps
/// (`RECADAM_NONFINITE_REFUSE`); nothing changed.
pub const RECADAM_ERROR_NONFINITE_GRADIENT: recadam_status = 9;
/// A checkpoint could not be written or read, or does not fit the optimizer.
pub const RECADAM_ERROR_CHECKPOINT: recadam_status = 10;
/// A struct whose `struct_size` is not the size this library knows.
pub const RECADAM_ERROR_VERSION: recadam_status = 11;
/// The system refused something (the optimizer's threads could not start).
pub const RECADAM_ERROR_SYSTEM: recadam_status = 12;
/// A bug in the library: a Rust panic, caught. The optimizer it happened in cannot be used any
/// more (free it).
pub const RECADAM_ERROR_PANIC: recadam_status = 13;

/// A failed call: its status and message.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: recadam_status,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: recadam_status, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let status = match &e {
            Error::Config(_) => RECADAM_ERROR_HYPERPARAMETER,
            Error::NonFiniteGradient { .. } => RECADAM_ERROR_NONFINITE_GRADIENT,
            Error::Checkpoint(_) | Error::MixedPenaltyModes => RECADAM_ERROR_CHECKPOINT,
            Error::RawBuffer { .. } => RECADAM_ERROR_BUFFER,
            Error::RawOverlap { .. } => RECADAM_ERROR_OVERLAP,
            Error::Pool(_) => RECADAM_ERROR_SYSTEM,
            _ => RECADAM_ERROR_INVALID_ARGUMENT,
        };
        Failure::new(status, e.to_string())
    }
}

/// A pointer that must not be null.
pub(crate) fn non_null<T>(ptr: *const T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::new(
            RECADAM_ERROR_NULL_POINTER,
            format!("`{what}` is null"),
        ));
    }
    Ok(())
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

/// Runs an entry point's body: its status, with the message kept for [`recadam_last_error`],
/// and a panic caught and turned into [`RECADAM_ERROR_PANIC`].
pub(crate) fn entry(body: impl FnOnce() -> Result<(), Failure>) -> recadam_status {
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Failure::new(
            RECADAM_ERROR_PANIC,
            format!("internal error (a Rust panic, caught): {what}"),
        ))
    });
    match result {
        Ok(()) => {
            set_last_error("");
            RECADAM_OK
        }
        Err(f) => {
            set_last_error(&f.message);
            f.status
        }
    }
}

/// The message of the last call on this thread that failed ("" after a call that succeeded).
/// The text stays valid until the next call on this thread; it is never null.
#[no_mangle]
pub extern "C" fn recadam_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a status code ("RECADAM_OK", "RECADAM_ERROR_NULL_POINTER", ...; "unknown" for a
/// code this library does not have). A static string.
#[no_mangle]
pub extern "C" fn recadam_status_name(status: recadam_status) -> *const c_char {
    let name: &'static str = match status {
        RECADAM_OK => "RECADAM_OK\0",
        RECADAM_ERROR_NULL_POINTER => "RECADAM_ERROR_NULL_POINTER\0",
        RECADAM_ERROR_INVALID_ARGUMENT => "RECADAM_ERROR_INVALID_ARGUMENT\0",
        RECADAM_ERROR_HYPERPARAMETER => "RECADAM_ERROR_HYPERPARAMETER\0",
        RECADAM_ERROR_LENGTH => "RECADAM_ERROR_LENGTH\0",
        RECADAM_ERROR_BUFFER => "RECADAM_ERROR_BUFFER\0",
        RECADAM_ERROR_OVERLAP => "RECADAM_ERROR_OVERLAP\0",
        RECADAM_ERROR_DUPLICATE => "RECADAM_ERROR_DUPLICATE\0",
        RECADAM_ERROR_INVALID_HANDLE => "RECADAM_ERROR_INVALID_HANDLE\0",
        RECADAM_ERROR_NONFINITE_GRADIENT => "RECADAM_ERROR_NONFINITE_GRADIENT\0",
        RECADAM_ERROR_CHECKPOINT => "RECADAM_ERROR_CHECKPOINT\0",
        RECADAM_ERROR_VERSION => "RECADAM_ERROR_VERSION\0",
        RECADAM_ERROR_SYSTEM => "RECADAM_ERROR_SYSTEM\0",
        RECADAM_ERROR_PANIC => "RECADAM_ERROR_PANIC\0",
        _ => "unknown\0",
    };
    name.as_ptr().cast()
}

/// Panics inside the guard every entry point runs in: for the test that a panic comes back as
/// [`RECADAM_ERROR_PANIC`]. Not in the header.
/// cbindgen:ignore
#[doc(hidden)]
#[no_mangle]
pub extern "C" fn recadam_test_panic() -> recadam_status {
    entry(|| panic!("a test panic"))
}

//! Errors of the optimizer and its checkpoints: each says what was wrong and where.

use std::path::PathBuf;

/// What went wrong in the optimizer. Nothing changed when a step returns one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hyperparameter, a learning rate or slice lengths were refused by the update rule.
    #[error(transparent)]
    Config(#[from] recadam_core::Error),
    /// A kernel this CPU lacks, or a `RECADAM_BACKEND` that names none (`Kernel::from_env`).
    #[error(transparent)]
    Backend(#[from] recadam_simd::BackendError),
    /// `threads` must be at least 1.
    #[error("invalid `threads` = {0}: at least one thread is needed")]
    Threads(usize),
    /// `max_grad_norm` must be finite and positive.
    #[error("invalid `max_grad_norm` = {0}: it must be finite and > 0")]
    MaxGradNorm(f64),
    /// Two groups with one name.
    #[error("group `{0}` is added twice")]
    DuplicateGroup(String),
    /// A parameter registered, or given to a step, twice.
    #[error("parameter `{0}` is given twice")]
    DuplicateParam(String),
    /// A parameter of a penalised group registered without θ*.
    #[error("parameter `{name}` is in group `{group}`, which pulls parameters towards their pretrained weights, but no pretrained weights were given (register it with `register_pretrained`, or give its group `anneal_w(0.0)`)")]
    MissingPretrained {
        /// The parameter.
        name: String,
        /// Its group.
        group: String,
    },
    /// A handle that is not one of this optimizer's parameters (another optimizer's).
    #[error("parameter handle #{0} does not belong to this optimizer")]
    ForeignParam(usize),
    /// More parameters than a handle can number (2^32).
    #[error("cannot register more than {0} parameters")]
    TooManyParams(usize),
    /// A group name that was not added.
    #[error("group `{0}` does not exist")]
    UnknownGroup(String),
    /// The optimizer's thread pool could not be started.
    #[error("cannot start the optimizer's threads: {0}")]
    Pool(String),
    /// A metric was not given a registered parameter that it needs.
    #[error("registered parameter `{0}` was not given")]
    MissingParam(String),
    /// A buffer of the wrong length.
    #[error("parameter `{name}`: `{what}` has length {len}, expected {expected}")]
    Length {
        /// The parameter.
        name: String,
        /// Which buffer.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The registered length.
        expected: usize,
    },
    /// [`crate::Optimizer::step_with_stats`] was given another number of gradient statistics
    /// than parameters.
    #[error("step_with_stats: {given} gradient statistics for {params} parameters")]
    StatsCount {
        /// Statistics given.
        given: usize,
        /// Parameters given.
        params: usize,
    },
    /// A gradient holds NaN or an infinity; the step was refused and nothing changed.
    #[error("the gradient of `{name}` holds NaN or an infinity: the step was refused and no parameter or state changed")]
    NonFiniteGradient {
        /// The first parameter (in registration order) with a non-finite gradient.
        name: String,
    },
    /// Groups with different penalty modes given to [`crate::save_held`] or
    /// [`crate::load_held`]: the checkpoint format holds one.
    #[error(
        "the checkpoint format holds one `penalty_mode` for every group; the groups given differ"
    )]
    MixedPenaltyModes,
    /// A buffer handed over by address that cannot be used (`raw`).
    #[error("parameter #{param} {problem}")]
    RawBuffer {
        /// The parameter's position in the call.
        param: usize,
        /// What is wrong.
        problem: &'static str,
    },
    /// Two buffers handed over by address share memory that the call writes (`raw`).
    #[error("parameters #{first} and #{second} share memory that the step writes (a tensor given twice, or a gradient or state that is a view of a parameter)")]
    RawOverlap {
        /// The first parameter involved.
        first: usize,
        /// The second (the same when a parameter's own buffers overlap).
        second: usize,
    },
    /// Saving or loading a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// What is wrong with a checkpoint file, or with writing one. Loading never panics and changes
/// no state unless the whole file is valid and matches the optimizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Not a readable safetensors file (truncated, corrupted header, bad offsets).
    #[error("checkpoint {path} is not a valid safetensors file: {reason}")]
    Container {
        /// The file.
        path: PathBuf,
        /// What the safetensors reader found.
        reason: String,
    },
    /// A safetensors file, but not a recadam optimizer checkpoint, or one with a missing or
    /// unreadable field.
    #[error("checkpoint {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// Written by a format version this build does not read.
    #[error("checkpoint {path} has format version {found}; this build reads version {supported}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The file's version.
        found: String,
        /// The version this build reads.
        supported: u32,
    },
    /// The contents do not match the checksum stored with them.
    #[error("checkpoint {path} is corrupted: checksum {computed} of its contents differs from the stored {stored}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The stored checksum.
        stored: String,
        /// The checksum of what was read.
        computed: String,
    },
    /// The checkpoint is valid but was written by a different optimizer setup.
    #[error("checkpoint {path} does not match this optimizer: {field} is {saved} in the file but {current} here")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs (`dtype`, `config`, `schedule`, `parameter w` ...).
        field: String,
        /// The checkpoint's value.
        saved: String,
        /// The optimizer's value.
        current: String,
    },
}

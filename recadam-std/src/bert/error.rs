//! Errors of the model loaders: each names the file or tensor and what is wrong.

use std::path::PathBuf;

/// What is wrong with a model folder, a tensor or an input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or lacks a field.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The weights file is not a readable safetensors file.
    #[error("{path} is not a valid safetensors file: {reason}")]
    Container {
        /// The file.
        path: PathBuf,
        /// What the reader found.
        reason: String,
    },
    /// A parameter of the architecture is not in the weights file.
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The canonical name (without the `bert.` prefix).
        name: String,
    },
    /// A tensor has the wrong shape or dtype for the configuration.
    #[error("{path}: tensor `{name}` is {found}, expected {expected}")]
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor as named in the file.
        name: String,
        /// Its dtype and shape.
        found: String,
        /// What the configuration needs.
        expected: String,
    },
    /// The tokenizer could not be loaded or could not encode an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// An input does not fit the model (token id beyond the vocabulary, too long, ...).
    #[error("input: {0}")]
    Input(String),
}

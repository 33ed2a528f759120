//! The `recadam` program: a driver over `recadam-std`'s trainer (arguments, progress, files,
//! plots), with the demo's synthetic tasks. `src/main.rs` is the command line over these.

pub mod demo;
pub mod eval_cmd;
pub mod finetune;
pub mod plot;
pub mod study;
pub mod study_report;
pub mod synthetic;
pub mod threads;
pub mod tiny_model;

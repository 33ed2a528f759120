//! The `recadam` program as a library: GLUE data and metrics, the fine-tuning loop, the demo's
//! synthetic tasks, plots. `src/main.rs` is the command line over these.

pub mod demo;
pub mod eval_cmd;
pub mod evaluate;
pub mod finetune;
pub mod glue;
pub mod metrics;
pub mod plot;
pub mod run_dir;
pub mod synthetic;
pub mod threads;
pub mod tiny_model;
pub mod trainer;

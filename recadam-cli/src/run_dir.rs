//! A run's output folder: the JSON-lines log, checkpoints, the summary and the plot.
//!
//! ```text
//! OUT/log.jsonl                 one JSON object per logged step, evaluation and the summary
//! OUT/checkpoint-000300/        model.safetensors (encoder `bert.…` and head `classifier.…`),
//!                               optimizer.safetensors (the optimizer's checkpoint), run.json
//! OUT/latest                    the name of the newest complete checkpoint folder
//! OUT/summary.json, OUT/plot.svg
//! ```
//!
//! A checkpoint folder is complete before `latest` names it (each file is written atomically,
//! then `latest` is replaced atomically), so a crash at any point leaves a loadable checkpoint.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde_json::Value;

use crate::trainer::{Classifier, Trainer, ENCODER};

/// Errors of a run folder.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not what the run wrote.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The optimizer refused its checkpoint.
    #[error(transparent)]
    Optimizer(#[from] recadam_std::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An output folder, with its log open for appending.
pub struct RunDir {
    root: PathBuf,
    log: File,
    echo: bool,
}

impl RunDir {
    /// Opens (creating) `root`; with `echo` every log line is also printed to stdout.
    pub fn open(root: impl AsRef<Path>, echo: bool) -> Result<RunDir, RunError> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let path = root.join("log.jsonl");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(RunDir { root, log, echo })
    }

    /// Starts the folder afresh: removes what an earlier run wrote there (its log, checkpoints,
    /// `latest`, summary and plot; nothing else), so that `--resume` can never pick up another
    /// run's checkpoint.
    pub fn clear(&mut self) -> Result<(), RunError> {
        for entry in std::fs::read_dir(&self.root)
            .map_err(io(&self.root))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with("checkpoint-") {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            } else if ["latest", "summary.json", "plot.svg"].contains(&name.as_str()) {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        let path = self.root.join("log.jsonl");
        self.log.set_len(0).map_err(io(&path))?;
        Ok(())
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Appends one line to the log (and stdout with `echo`).
    pub fn log(&mut self, line: &Value) -> Result<(), RunError> {
        let text = line.to_string();
        if self.echo {
            println!("{text}");
        }
        let path = self.root.join("log.jsonl");
        writeln!(self.log, "{text}").map_err(io(&path))
    }

    /// Drops log lines of steps after `step` (a resumed run logs them again).
    pub fn truncate_log_after(&mut self, step: u64) -> Result<(), RunError> {
        let path = self.root.join("log.jsonl");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(Value::as_u64))
                    .is_some_and(|s| s <= step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        recadam_std::write_atomic(&path, kept.as_bytes()).map_err(io(&path))?;
        self.log = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(())
    }

    /// Writes a file of the run atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), RunError> {
        let path = self.root.join(name);
        recadam_std::write_atomic(&path, bytes).map_err(io(&path))
    }

    /// Saves a checkpoint of `trainer` after `step` with the run's description `run`, then
    /// makes it the latest and removes older ones.
    pub fn save_checkpoint(
        &self,
        step: u64,
        trainer: &Trainer,
        run: &Value,
    ) -> Result<(), RunError> {
        let name = format!("checkpoint-{step:06}");
        let dir = self.root.join(&name);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let model = model_to_safetensors(&trainer.model)?;
        let path = dir.join("model.safetensors");
        recadam_std::write_atomic(&path, &model).map_err(io(&path))?;
        trainer
            .optimizer()
            .save_checkpoint(dir.join("optimizer.safetensors"))?;
        let run = serde_json::to_vec_pretty(run).unwrap_or_default();
        let path = dir.join("run.json");
        recadam_std::write_atomic(&path, &run).map_err(io(&path))?;
        self.write("latest", name.as_bytes())?;
        for entry in std::fs::read_dir(&self.root)
            .map_err(io(&self.root))?
            .flatten()
        {
            let old = entry.file_name().to_string_lossy().into_owned();
            if old.starts_with("checkpoint-") && old != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// The newest complete checkpoint folder, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<PathBuf>, RunError> {
        let path = self.root.join("latest");
        match std::fs::read_to_string(&path) {
            Ok(name) => Ok(Some(self.root.join(name.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// The model's parameters as safetensors, under Hugging Face's names.
pub fn model_to_safetensors(model: &Classifier) -> Result<Vec<u8>, RunError> {
    fn view(shape: Vec<usize>, data: &[f32]) -> Result<TensorView<'_>, SafeTensorError> {
        TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(data))
    }
    let mut tensors = Vec::new();
    for (name, shape, offset) in model.encoder.layout.entries() {
        let n: usize = shape.iter().product();
        tensors.push((
            format!("{ENCODER}{name}"),
            view(shape.to_vec(), &model.encoder.data[offset..offset + n]),
        ));
    }
    let outputs = model.head.bias.len();
    let hidden = model.head.weight.len() / outputs.max(1);
    tensors.push((
        "classifier.weight".into(),
        view(vec![outputs, hidden], &model.head.weight),
    ));
    tensors.push((
        "classifier.bias".into(),
        view(vec![outputs], &model.head.bias),
    ));
    let invalid = |reason: String| RunError::Invalid {
        path: "<model>".into(),
        reason,
    };
    let tensors: Vec<_> = tensors
        .into_iter()
        .map(|(n, v)| v.map(|v| (n, v)))
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    safetensors::tensor::serialize(tensors, None).map_err(|e| invalid(e.to_string()))
}

/// Loads a model saved by [`model_to_safetensors`] into `model`, whose shapes it must match.
pub fn load_model(path: &Path, model: &mut Classifier) -> Result<(), RunError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let invalid = |reason: String| RunError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let file = SafeTensors::deserialize(&bytes).map_err(|e| invalid(e.to_string()))?;
    let read = |name: &str, out: &mut [f32]| -> Result<(), RunError> {
        let t = file
            .tensor(name)
            .map_err(|_| invalid(format!("no tensor `{name}`")))?;
        if t.dtype() != Dtype::F32 || t.data().len() != out.len() * 4 {
            return Err(invalid(format!(
                "`{name}` is {:?} {:?}, expected F32 with {} values",
                t.dtype(),
                t.shape(),
                out.len()
            )));
        }
        for (o, b) in out.iter_mut().zip(t.data().chunks_exact(4)) {
            *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    };
    let mut encoder = model.encoder.data.clone();
    for (name, shape, offset) in model.encoder.layout.entries() {
        let n: usize = shape.iter().product();
        read(
            &format!("{ENCODER}{name}"),
            &mut encoder[offset..offset + n],
        )?;
    }
    let mut weight = model.head.weight.clone();
    let mut bias = model.head.bias.clone();
    read("classifier.weight", &mut weight)?;
    read("classifier.bias", &mut bias)?;
    model.encoder.data = encoder;
    model.head.weight = weight;
    model.head.bias = bias;
    Ok(())
}

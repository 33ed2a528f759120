//! Checkpoints of the full optimizer state as safetensors plus metadata.
//!
//! Layout: one tensor per state buffer, `<parameter>::exp_avg` and `<parameter>::exp_avg_sq`, of
//! shape `[len]` in the optimizer's dtype; the safetensors metadata holds the format name and
//! version, the dtype, the step and skipped-step counts, the default hyperparameters, the groups
//! with the hyperparameters each resolves to, the schedule, the clipping norm, the step count
//! kind, the parameter list (name, group, length, steps taken, CRC-32 of θ*), and a CRC-32 of
//! all of that and of every tensor's bytes.
//!
//! A resume must use the same setup, except for what a step changes: the state, the step counts
//! and each group's learning rate (which a caller's scheduler sets, as PyTorch's
//! `load_state_dict` restores `param_groups[i]["lr"]`) are restored from the file. θ* itself is not stored (it is the
//! pretrained model, which the caller has); its checksum makes sure a resume uses the same one.
//!
//! Saving is atomic: the file is written beside the target under a temporary name, flushed to
//! disk, renamed over the target, and the folder is flushed, so a crash at any point leaves either
//! the previous checkpoint or the new one. Loading reads the file once (nothing larger than the
//! file is allocated), checks everything, and only then replaces the state.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use bytemuck::Pod;
use recadam_core::{Annealing, PenaltyMode, RecAdamConfig};
use recadam_simd::SimdElement;
use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};

use crate::{CheckpointError, Error, Optimizer};

#[cfg(target_endian = "big")]
compile_error!("checkpoints store little-endian bytes; big-endian targets are not supported");

/// The checkpoint format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
const FORMAT: &str = "recadam-optimizer";
/// The name errors give a checkpoint held in memory.
const MEMORY: &str = "<in memory>";

/// The hyperparameters as stored (one record per field, so a mismatch names it).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ConfigRecord {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    correct_bias: bool,
    annealing: String,
    anneal_k: f64,
    anneal_t0: f64,
    anneal_w: f64,
    pretrain_cof: f64,
    penalty_mode: String,
}

impl From<&RecAdamConfig> for ConfigRecord {
    fn from(c: &RecAdamConfig) -> Self {
        let (k, t0) = match c.annealing {
            Annealing::Sigmoid { k, t0 } => (k, t0),
            Annealing::Linear { t0 } => (0.0, t0),
            Annealing::Constant => (0.0, 0.0),
        };
        ConfigRecord {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            correct_bias: c.correct_bias,
            annealing: c.annealing.name().into(),
            anneal_k: k,
            anneal_t0: t0,
            anneal_w: c.anneal_w,
            pretrain_cof: c.pretrain_cof,
            penalty_mode: match c.penalty_mode {
                PenaltyMode::Decoupled => "decoupled",
                PenaltyMode::Coupled => "coupled",
            }
            .into(),
        }
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct GroupRecord {
    name: String,
    config: ConfigRecord,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ParamRecord {
    name: String,
    group: String,
    len: usize,
    steps: u64,
    pretrained_crc32: Option<u32>,
}

/// One state buffer as a safetensors view (no copy).
struct StateView<'a> {
    dtype: Dtype,
    shape: [usize; 1],
    bytes: &'a [u8],
}

impl View for StateView<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn dtype_of<T: SimdElement>() -> Dtype {
    if T::NAME == "f32" {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

fn tensor_name(param: &str, buffer: &str) -> String {
    format!("{param}::{buffer}")
}

/// CRC-32 of the metadata (sorted, without the checksum itself) and of every tensor in name order.
fn checksum<'a>(
    metadata: &BTreeMap<String, String>,
    tensors: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> String {
    let mut hasher = crc32fast::Hasher::new();
    for (key, value) in metadata.iter().filter(|(k, _)| k.as_str() != "checksum") {
        hasher.update(key.as_bytes());
        hasher.update(&[0]);
        hasher.update(value.as_bytes());
        hasher.update(&[0]);
    }
    let mut tensors: Vec<(&str, &[u8])> = tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, bytes) in tensors {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    format!("{:08x}", hasher.finalize())
}

fn crc32_of<T: Pod>(values: &[T]) -> u32 {
    crc32fast::hash(bytemuck::cast_slice(values))
}

fn to_json<S: Serialize>(value: &S) -> String {
    serde_json::to_string(value).expect("records serialise")
}

impl<T: SimdElement + Pod> Optimizer<'_, T> {
    fn metadata(&self) -> BTreeMap<String, String> {
        let groups: Vec<GroupRecord> = self
            .groups
            .iter()
            .map(|g| GroupRecord {
                name: g.group.name.clone(),
                config: ConfigRecord::from(&g.config),
            })
            .collect();
        let params: Vec<ParamRecord> = self
            .params
            .iter()
            .map(|p| ParamRecord {
                name: p.name.clone(),
                group: self.groups[p.group].group.name.clone(),
                len: p.exp_avg.len(),
                steps: p.steps,
                pretrained_crc32: p.pretrained.as_deref().map(crc32_of),
            })
            .collect();
        BTreeMap::from([
            ("format".into(), FORMAT.into()),
            ("version".into(), FORMAT_VERSION.to_string()),
            ("dtype".into(), T::NAME.into()),
            ("step".into(), self.step.to_string()),
            ("skipped".into(), self.skipped.to_string()),
            (
                "config".into(),
                to_json(&ConfigRecord::from(&self.options.config)),
            ),
            ("groups".into(), to_json(&groups)),
            ("schedule".into(), self.options.schedule.describe()),
            ("max_grad_norm".into(), to_json(&self.options.max_grad_norm)),
            ("step_count".into(), self.options.step_count.name().into()),
            ("params".into(), to_json(&params)),
        ])
    }

    /// The state tensors and the metadata (with its checksum) of a checkpoint.
    #[allow(clippy::type_complexity)]
    fn contents(&self) -> (Vec<(String, StateView<'_>)>, HashMap<String, String>) {
        let dtype = dtype_of::<T>();
        let mut tensors: Vec<(String, StateView<'_>)> = Vec::new();
        for p in &self.params {
            for (buffer, values) in [("exp_avg", &*p.exp_avg), ("exp_avg_sq", &*p.exp_avg_sq)] {
                tensors.push((
                    tensor_name(&p.name, buffer),
                    StateView {
                        dtype,
                        shape: [values.len()],
                        bytes: bytemuck::cast_slice(values),
                    },
                ));
            }
        }
        let mut metadata = self.metadata();
        let sum = checksum(
            &metadata,
            tensors.iter().map(|(n, v)| (n.as_str(), v.bytes)),
        );
        metadata.insert("checksum".into(), sum);
        (tensors, metadata.into_iter().collect())
    }

    /// The checkpoint as bytes (the same bytes [`Optimizer::save_checkpoint`] writes), for
    /// storage other than a local file.
    pub fn save_checkpoint_to_bytes(&self) -> Result<Vec<u8>, Error> {
        let (tensors, metadata) = self.contents();
        safetensors::tensor::serialize(tensors, Some(metadata)).map_err(|e| {
            Error::from(CheckpointError::Container {
                path: PathBuf::from(MEMORY),
                reason: e.to_string(),
            })
        })
    }

    /// Saves the whole optimizer state to `path`, atomically (see the module docs).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (tensors, metadata) = self.contents();
        Ok(write_through_temporary(
            path,
            |tmp| {
                safetensors::tensor::serialize_to_file(tensors, Some(metadata), tmp).map_err(|e| {
                    match e {
                        safetensors::SafeTensorError::IoError(source) => io(source),
                        other => CheckpointError::Container {
                            path: tmp.to_path_buf(),
                            reason: other.to_string(),
                        },
                    }
                })
            },
            io,
        )?)
    }

    /// Loads the state saved by [`Optimizer::save_checkpoint`] into this optimizer, which must
    /// have the same dtype, hyperparameters, groups, schedule, clipping, step count kind and
    /// parameters (with the same θ*). The state, the step counts and the groups' learning rates
    /// are restored. On any error nothing changes.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<(), Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_decoded(path, &bytes)
    }

    /// Loads a checkpoint from bytes ([`Optimizer::save_checkpoint_to_bytes`]); the same checks
    /// as [`Optimizer::load_checkpoint`], and on any error nothing changes.
    pub fn load_checkpoint_from_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.load_decoded(Path::new(MEMORY), bytes)
    }

    fn load_decoded(&mut self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let state = self.decode(path, bytes)?;
        for ((p, (m, v)), steps) in self.params.iter_mut().zip(state.buffers).zip(state.steps) {
            p.exp_avg.copy_from_slice(&m);
            p.exp_avg_sq.copy_from_slice(&v);
            p.steps = steps;
        }
        for (g, lr) in self.groups.iter_mut().zip(state.lrs) {
            g.config.lr = lr;
        }
        self.options.config.lr = state.default_lr;
        self.step = state.step;
        self.skipped = state.skipped;
        Ok(())
    }

    /// Checks and decodes a checkpoint file's bytes against this optimizer.
    fn decode(&self, path: &Path, bytes: &[u8]) -> Result<Decoded<T>, CheckpointError> {
        let invalid = |reason: String| CheckpointError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let mismatch = |field: &str, saved: String, current: String| CheckpointError::Mismatch {
            path: path.to_path_buf(),
            field: field.into(),
            saved,
            current,
        };
        let container = |e: safetensors::SafeTensorError| CheckpointError::Container {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(container)?;
        let tensors = SafeTensors::deserialize(bytes).map_err(container)?;
        let stored: BTreeMap<String, String> = header
            .metadata()
            .as_ref()
            .ok_or_else(|| invalid("no metadata: not a recadam optimizer checkpoint".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let field = |key: &str| {
            stored
                .get(key)
                .ok_or_else(|| invalid(format!("metadata has no `{key}`")))
        };
        if field("format")? != FORMAT {
            return Err(invalid(format!(
                "`format` is {:?}, not {FORMAT:?}: not a recadam optimizer checkpoint",
                field("format")?
            )));
        }
        if field("version")? != &FORMAT_VERSION.to_string() {
            return Err(CheckpointError::Version {
                path: path.to_path_buf(),
                found: field("version")?.clone(),
                supported: FORMAT_VERSION,
            });
        }
        let computed = checksum(
            &stored,
            tensors.iter().map(|(name, view)| (name, view.data())),
        );
        if field("checksum")? != &computed {
            return Err(CheckpointError::Checksum {
                path: path.to_path_buf(),
                stored: field("checksum")?.clone(),
                computed,
            });
        }

        // The setup must be the one that wrote it.
        let current = self.metadata();
        for key in ["dtype", "schedule", "max_grad_norm", "step_count"] {
            if field(key)? != &current[key] {
                return Err(mismatch(key, field(key)?.clone(), current[key].clone()));
            }
        }
        // The default hyperparameters and the groups: the same, but for the learning rates,
        // which are restored.
        let mut saved_config: ConfigRecord = parse_json(field("config")?, "config", &invalid)?;
        let mut current_config: ConfigRecord = parse_json(&current["config"], "config", &invalid)?;
        let default_lr = saved_config.lr;
        (saved_config.lr, current_config.lr) = (0.0, 0.0);
        if saved_config != current_config {
            return Err(mismatch(
                "config (besides the learning rate)",
                to_json(&saved_config),
                to_json(&current_config),
            ));
        }
        let mut saved_groups: Vec<GroupRecord> = parse_json(field("groups")?, "groups", &invalid)?;
        let lrs: Vec<f64> = saved_groups.iter().map(|g| g.config.lr).collect();
        if let Some(bad) = lrs
            .iter()
            .chain([&default_lr])
            .find(|lr| !(**lr >= 0.0 && lr.is_finite()))
        {
            return Err(invalid(format!("a group's learning rate is {bad}")));
        }
        let mut current_groups: Vec<GroupRecord> =
            parse_json(&current["groups"], "groups", &invalid)?;
        for g in saved_groups.iter_mut().chain(current_groups.iter_mut()) {
            g.config.lr = 0.0;
        }
        if saved_groups != current_groups {
            return Err(mismatch(
                "groups (besides their learning rates)",
                to_json(&saved_groups),
                to_json(&current_groups),
            ));
        }
        let saved_params: Vec<ParamRecord> = parse_json(field("params")?, "params", &invalid)?;
        let mut current_params: Vec<ParamRecord> =
            parse_json(&current["params"], "params", &invalid)?;
        if saved_params.len() != current_params.len() {
            return Err(mismatch(
                "the number of parameters",
                saved_params.len().to_string(),
                current_params.len().to_string(),
            ));
        }
        for (saved, now) in saved_params.iter().zip(current_params.iter_mut()) {
            now.steps = saved.steps;
            if saved != now {
                return Err(mismatch(
                    &format!("parameter `{}`", now.name),
                    to_json(saved),
                    to_json(now),
                ));
            }
        }
        let count = |key: &str| -> Result<u64, CheckpointError> {
            field(key)?
                .parse()
                .map_err(|_| invalid(format!("`{key}` is not a step count")))
        };
        let (step, skipped) = (count("step")?, count("skipped")?);

        let mut buffers = Vec::with_capacity(self.params.len());
        let expected = tensors.len();
        if expected != 2 * self.params.len() {
            return Err(invalid(format!(
                "{expected} tensors, expected {}",
                2 * self.params.len()
            )));
        }
        for p in &self.params {
            let read = |buffer: &str| -> Result<Vec<T>, CheckpointError> {
                let name = tensor_name(&p.name, buffer);
                let view = tensors
                    .tensor(&name)
                    .map_err(|_| invalid(format!("tensor `{name}` is missing")))?;
                if view.dtype() != dtype_of::<T>() || view.shape() != [p.exp_avg.len()] {
                    return Err(invalid(format!(
                        "tensor `{name}` is {:?} {:?}, expected {:?} [{}]",
                        view.dtype(),
                        view.shape(),
                        dtype_of::<T>(),
                        p.exp_avg.len()
                    )));
                }
                // The file's bytes may not be aligned for T: copy them into T's own buffer
                // (its length is the one the file's header declares and the data holds).
                let mut values = vec![T::zero(); p.exp_avg.len()];
                bytemuck::cast_slice_mut::<T, u8>(&mut values).copy_from_slice(view.data());
                Ok(values)
            };
            buffers.push((read("exp_avg")?, read("exp_avg_sq")?));
        }
        Ok(Decoded {
            step,
            skipped,
            buffers,
            steps: saved_params.iter().map(|p| p.steps).collect(),
            lrs,
            default_lr,
        })
    }
}

/// A metadata field's JSON records; an error names the field.
fn parse_json<R: serde::de::DeserializeOwned>(
    json: &str,
    key: &str,
    invalid: &impl Fn(String) -> CheckpointError,
) -> Result<R, CheckpointError> {
    serde_json::from_str(json).map_err(|e| invalid(format!("`{key}` is not readable: {e}")))
}

struct Decoded<T> {
    step: u64,
    skipped: u64,
    buffers: Vec<(Vec<T>, Vec<T>)>,
    /// Per parameter, the steps it took.
    steps: Vec<u64>,
    /// Per group, its base learning rate.
    lrs: Vec<f64>,
    /// The base learning rate of groups added later.
    default_lr: f64,
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, and fsync of
/// the folder. A crash leaves either the old file or the new one, never a mix. (The same
/// sequence as [`Optimizer::save_checkpoint`], for the other files of a run.)
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> std::io::Result<()> {
    write_through_temporary(path.as_ref(), |tmp| std::fs::write(tmp, bytes), |e| e)
}

/// The atomic write: `write` fills a temporary file beside `path`, which is fsynced and renamed
/// over `path`, then the folder is fsynced so that the rename itself is durable. On an error the
/// temporary file is removed and `path` is untouched. `io` wraps the I/O errors of those steps.
fn write_through_temporary<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    io: impl Fn(std::io::Error) -> E,
) -> Result<(), E> {
    let tmp = temporary_path(path);
    let written = write(&tmp)
        .and_then(|()| File::open(&tmp).and_then(|f| f.sync_all()).map_err(&io))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(&io));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(&io)?;
    }
    Ok(())
}

/// A file name beside `path` that no other writer uses.
fn temporary_path(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}-{nanos}", std::process::id()));
    path.with_file_name(name)
}

//! A run's output folder: the JSON-lines log, checkpoints, the summary and the plot.
//!
//! ```text
//! OUT/log.jsonl                 one JSON object per logged step, evaluation and the summary,
//!                               and one per checkpoint inside a loss interval (its steps so far)
//! OUT/checkpoint-000300/        model.safetensors (encoder `bert.…` and head `classifier.…`),
//!                               optimizer.safetensors (the optimizer's checkpoint), run.json,
//!                               manifest.json (written last: size and SHA-256 of each file, and
//!                               of the log as it stood at this step)
//! OUT/latest                    `checkpoint-000300 sha256:<SHA-256 of its manifest.json>`
//! OUT/summary.json, OUT/plot.svg
//! ```
//!
//! A checkpoint is written into a staging folder (`.checkpoint-000300.partial`, each file atomic:
//! temporary file, fsync, rename, folder fsync), renamed into place once complete, and only then
//! named by `latest` (written the same way). A crash at any point leaves the previous checkpoint
//! named and whole. Reading ([`read_checkpoint`]) checks the pointer, the manifest's checksum,
//! format and version, and every file's size and SHA-256 before anything is used; a resume also
//! checks the log's checksummed prefix ([`RunDir::resume`]) before changing any file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::trainer::{Classifier, Trainer};

/// The run-folder checkpoint format this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;
const CHECKPOINT_FORMAT: &str = "recadam-run-checkpoint";
/// The files of a checkpoint folder besides its manifest.
pub const CHECKPOINT_FILES: [&str; 3] = ["model.safetensors", "optimizer.safetensors", "run.json"];
const MANIFEST: &str = "manifest.json";
const LOG: &str = "log.jsonl";
const LATEST: &str = "latest";
const STAGING_SUFFIX: &str = ".partial";

/// Errors of a run folder. Each names the file and what is wrong with it.
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
    /// A file the checkpoint needs is not there.
    #[error("{path} is missing{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Missing {
        /// The file.
        path: PathBuf,
        /// What that means, when it needs saying.
        reason: String,
    },
    /// A file has another size than the checkpoint wrote (truncated, or extended).
    #[error("{path} is {found} bytes, but the checkpoint wrote {expected}{}", if found < expected { " (truncated)" } else { "" })]
    Size {
        /// The file.
        path: PathBuf,
        /// The size the manifest records.
        expected: u64,
        /// The size on disk.
        found: u64,
    },
    /// A file's content differs from what the checkpoint wrote (damaged, or another run's).
    #[error(
        "{path} is damaged or not this run's: SHA-256 {found}, but the checkpoint wrote {expected}"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The checksum recorded when it was written.
        expected: String,
        /// The checksum of the file now.
        found: String,
    },
    /// A checkpoint's manifest and the `latest` pointer that names it disagree (either may be
    /// the damaged one, or come from another run).
    #[error("{manifest} has SHA-256 {found}, but {latest} gives it {expected}: one of the two is damaged or not this run's")]
    Mismatch {
        /// The manifest.
        manifest: PathBuf,
        /// The pointer.
        latest: PathBuf,
        /// The checksum the pointer records.
        expected: String,
        /// The manifest's checksum now.
        found: String,
    },
    /// Written in a checkpoint format version this build does not read.
    #[error("{path} has checkpoint format version {found}; this build reads version {supported}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The version this build reads.
        supported: u32,
    },
    /// A file is not what the run wrote: its format, a field, or a tensor's shape.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The optimizer refused its checkpoint.
    #[error("{path}: {source}")]
    Optimizer {
        /// The file.
        path: PathBuf,
        /// The optimizer's error.
        source: crate::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> RunError {
    RunError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A run's log (`bytes`, read from `path`): one JSON value per line. An error names the line.
pub fn parse_log(path: &Path, bytes: &[u8]) -> Result<Vec<Value>, RunError> {
    std::str::from_utf8(bytes)
        .map_err(|e| invalid(path, format!("not UTF-8: {e}")))?
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| invalid(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Reads the log of the run in `dir`.
pub fn read_log(dir: &Path) -> Result<Vec<Value>, RunError> {
    let path = dir.join(LOG);
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    parse_log(&path, &bytes)
}

/// Reads a file the checkpoint needs: a missing one is [`RunError::Missing`].
fn read_needed(path: &Path) -> Result<Vec<u8>, RunError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RunError::Missing {
            path: path.to_path_buf(),
            reason: String::new(),
        },
        _ => io(path)(e),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Size and SHA-256 of a file's content (for the log: of its first `bytes` bytes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRecord {
    bytes: u64,
    sha256: String,
}

impl FileRecord {
    fn of(bytes: &[u8]) -> FileRecord {
        FileRecord {
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }

    /// Checks `content` (the file at `path`) against this record.
    fn check(&self, path: &Path, content: &[u8]) -> Result<(), RunError> {
        if content.len() as u64 != self.bytes {
            return Err(RunError::Size {
                path: path.to_path_buf(),
                expected: self.bytes,
                found: content.len() as u64,
            });
        }
        let found = sha256_hex(content);
        if found != self.sha256 {
            return Err(RunError::Checksum {
                path: path.to_path_buf(),
                expected: self.sha256.clone(),
                found,
            });
        }
        Ok(())
    }
}

/// What a checkpoint folder holds, written after its other files.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    version: u64,
    step: u64,
    files: BTreeMap<String, FileRecord>,
    /// The log as it stood when the checkpoint was written (a prefix of the log after it).
    log: FileRecord,
}

/// A checkpoint whose every file was read and matched its manifest.
#[derive(Debug)]
pub struct VerifiedCheckpoint {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// The optimizer steps it holds.
    pub step: u64,
    /// `model.safetensors`.
    pub model: Vec<u8>,
    /// `optimizer.safetensors`.
    pub optimizer: Vec<u8>,
    /// `run.json`.
    pub run: Vec<u8>,
    log: FileRecord,
}

impl VerifiedCheckpoint {
    /// The path of one of the checkpoint's files (for errors).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

/// The step of a checkpoint folder name `checkpoint-NNNNNN`.
fn checkpoint_step(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?;
    (digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn checkpoint_name(step: u64) -> String {
    format!("checkpoint-{step:06}")
}

/// The checkpoint `latest` names in `root`, verified: `Ok(None)` when there is no `latest` (no
/// checkpoint was ever completed there, or the pointer was deleted: either way nothing can be
/// trusted to be whole). Reads, never writes.
pub fn read_checkpoint(root: &Path) -> Result<Option<VerifiedCheckpoint>, RunError> {
    let latest = root.join(LATEST);
    let pointer = match std::fs::read(&latest) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&latest)(e)),
    };
    let not_a_pointer = || {
        invalid(
            &latest,
            "not a checkpoint pointer (expected `checkpoint-NNNNNN sha256:<64 hex digits>`)",
        )
    };
    let text = std::str::from_utf8(&pointer).map_err(|_| not_a_pointer())?;
    // Exactly as written: any other byte is damage.
    let (name, expected) = text
        .strip_suffix('\n')
        .and_then(|line| line.split_once(" sha256:"))
        .ok_or_else(not_a_pointer)?;
    let step = checkpoint_step(name).ok_or_else(not_a_pointer)?;
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_a_pointer());
    }
    let dir = root.join(name);
    if !dir.is_dir() {
        return Err(invalid(
            &latest,
            format!("names {name}, which is not there"),
        ));
    }
    let manifest_path = dir.join(MANIFEST);
    let manifest_bytes = read_needed(&manifest_path)?;
    let found = sha256_hex(&manifest_bytes);
    if found != expected {
        return Err(RunError::Mismatch {
            manifest: manifest_path,
            latest,
            expected: expected.into(),
            found,
        });
    }
    let manifest: Manifest = parse_json(&manifest_path, &manifest_bytes)?;
    if manifest.format != CHECKPOINT_FORMAT {
        return Err(invalid(
            &manifest_path,
            format!(
                "format `{}`, expected `{CHECKPOINT_FORMAT}`",
                manifest.format
            ),
        ));
    }
    if manifest.version != u64::from(CHECKPOINT_VERSION) {
        return Err(RunError::Version {
            path: manifest_path,
            found: manifest.version,
            supported: CHECKPOINT_VERSION,
        });
    }
    if manifest.step != step {
        return Err(invalid(
            &manifest_path,
            format!("holds step {}, but its folder is {name}", manifest.step),
        ));
    }
    let mut contents = Vec::with_capacity(CHECKPOINT_FILES.len());
    for file in CHECKPOINT_FILES {
        let path = dir.join(file);
        let record = manifest
            .files
            .get(file)
            .ok_or_else(|| invalid(&manifest_path, format!("lists no `{file}`")))?;
        let content = read_needed(&path)?;
        record.check(&path, &content)?;
        contents.push(content);
    }
    let [model, optimizer, run] = <[Vec<u8>; 3]>::try_from(contents).expect("three files");
    Ok(Some(VerifiedCheckpoint {
        dir,
        step,
        model,
        optimizer,
        run,
        log: manifest.log,
    }))
}

/// Parses JSON into `T`, naming the field that does not read.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
) -> Result<T, RunError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let reason = if field == "." {
            format!("not readable as this run's JSON: {}", e.inner())
        } else {
            format!("field `{field}` is unreadable: {}", e.inner())
        };
        invalid(path, reason)
    })?;
    de.end()
        .map_err(|e| invalid(path, format!("not readable as this run's JSON: {e}")))?;
    Ok(value)
}

/// An output folder, with its log open for appending.
pub struct RunDir {
    root: PathBuf,
    log: File,
    /// Bytes in the log, and the SHA-256 state over them (for checkpoints' manifests).
    log_len: u64,
    log_hash: Sha256,
    echo: bool,
}

impl RunDir {
    /// Starts a fresh run in `root` (creating it): removes what an earlier run wrote there (its
    /// log, checkpoints, `latest`, summary and plot; nothing else), so that `--resume` can never
    /// pick up another run's checkpoint. With `echo` every log line is also printed to stdout.
    pub fn create(root: impl AsRef<Path>, echo: bool) -> Result<RunDir, RunError> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        for entry in std::fs::read_dir(&root).map_err(io(&root))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with("checkpoint-") || is_staging(&name) {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            } else if [LATEST, "summary.json", "plot.svg"].contains(&name.as_str()) {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        let path = root.join(LOG);
        let log = File::create(&path).map_err(io(&path))?;
        Ok(RunDir {
            root,
            log,
            log_len: 0,
            log_hash: Sha256::new(),
            echo,
        })
    }

    /// The whole log, once its first bytes are checked against `checkpoint` (the log as it stood
    /// when the checkpoint was written).
    fn read_verified_log(
        root: &Path,
        checkpoint: &VerifiedCheckpoint,
    ) -> Result<Vec<u8>, RunError> {
        let path = root.join(LOG);
        let log = read_needed(&path)?;
        let len = checkpoint.log.bytes;
        if (log.len() as u64) < len {
            return Err(RunError::Size {
                path,
                expected: len,
                found: log.len() as u64,
            });
        }
        checkpoint.log.check(&path, &log[..len as usize])?;
        Ok(log)
    }

    /// Continues the run in `root` from `checkpoint` (from [`read_checkpoint`]): checks that the
    /// log still begins with what it held at the checkpoint, then cuts it back to that (a resumed
    /// run logs the later steps again). Returns the folder and the kept log's lines, parsed
    /// ([`parse_log`]), so the caller need not read the log again. Nothing is written unless
    /// the checks pass; call it after every other check of the resume.
    pub fn resume(
        root: impl AsRef<Path>,
        checkpoint: &VerifiedCheckpoint,
        echo: bool,
    ) -> Result<(RunDir, Vec<Value>), RunError> {
        let root = root.as_ref().to_path_buf();
        let bytes = Self::read_verified_log(&root, checkpoint)?;
        let path = root.join(LOG);
        let kept = &bytes[..checkpoint.log.bytes as usize];
        let lines = parse_log(&path, kept)?;
        if kept.len() < bytes.len() {
            crate::write_atomic(&path, kept).map_err(io(&path))?;
        }
        let log = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut log_hash = Sha256::new();
        log_hash.update(kept);
        let dir = RunDir {
            root,
            log,
            log_len: kept.len() as u64,
            log_hash,
            echo,
        };
        Ok((dir, lines))
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Appends one line to the log (and stdout with `echo`).
    pub fn log(&mut self, line: &Value) -> Result<(), RunError> {
        let text = format!("{line}\n");
        if self.echo {
            print!("{text}");
        }
        let path = self.root.join(LOG);
        self.log.write_all(text.as_bytes()).map_err(io(&path))?;
        self.log_len += text.len() as u64;
        self.log_hash.update(text.as_bytes());
        Ok(())
    }

    /// Writes a file of the run atomically.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), RunError> {
        let path = self.root.join(name);
        crate::write_atomic(&path, bytes).map_err(io(&path))
    }

    /// Saves a checkpoint of `trainer` after `step` with the run's options `run`, then makes it
    /// the latest and removes older ones. When the latest checkpoint already holds `step` (a run
    /// resumed at its end), there is nothing new to save. On an error (a full disk, say) the
    /// previous checkpoint stays the latest, whole.
    pub fn save_checkpoint(
        &mut self,
        step: u64,
        trainer: &Trainer,
        run: &Value,
    ) -> Result<(), RunError> {
        let name = checkpoint_name(step);
        if self.latest_name()?.as_deref() == Some(name.as_str()) {
            return Ok(());
        }
        let model = model_to_safetensors(&trainer.model)?;
        let optimizer = trainer
            .optimizer()
            .save_checkpoint_to_bytes()
            .map_err(|source| RunError::Optimizer {
                path: self.root.join(&name).join("optimizer.safetensors"),
                source,
            })?;
        let run = serde_json::to_vec_pretty(run)
            .map_err(|e| invalid(&self.root.join(&name).join("run.json"), e.to_string()))?;
        let log_path = self.root.join(LOG);
        self.log.sync_data().map_err(io(&log_path))?;
        let log = FileRecord {
            bytes: self.log_len,
            sha256: hex(&self.log_hash.clone().finalize()),
        };

        // Written in full under a staging name, then renamed into place; on any error the
        // staging folder goes and the previous checkpoint stays the latest.
        let staging = self.root.join(format!(".{name}{STAGING_SUFFIX}"));
        let dir = self.root.join(&name);
        let placed = (|| {
            let sum = write_checkpoint_folder(&staging, step, [&model, &optimizer, &run], log)?;
            if dir.exists() {
                // Left by a crash before `latest` named it: never the latest (checked above).
                std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
            }
            std::fs::rename(&staging, &dir).map_err(io(&dir))?;
            File::open(&self.root)
                .and_then(|d| d.sync_all())
                .map_err(io(&self.root))?;
            Ok(sum)
        })();
        let manifest_sum = placed.inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&staging);
        })?;
        self.write(LATEST, format!("{name} sha256:{manifest_sum}\n").as_bytes())?;
        for entry in std::fs::read_dir(&self.root)
            .map_err(io(&self.root))?
            .flatten()
        {
            let old = entry.file_name().to_string_lossy().into_owned();
            if (old.starts_with("checkpoint-") && old != name) || is_staging(&old) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }

    /// The folder name `latest` points at, unverified (only to skip re-saving a step).
    fn latest_name(&self) -> Result<Option<String>, RunError> {
        let path = self.root.join(LATEST);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.split_whitespace().next().map(str::to_owned)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

fn is_staging(name: &str) -> bool {
    name.starts_with(".checkpoint-") && name.ends_with(STAGING_SUFFIX)
}

/// Writes the checkpoint's files into `dir` (made afresh), the manifest last, each atomically;
/// returns the manifest's SHA-256.
fn write_checkpoint_folder(
    dir: &Path,
    step: u64,
    contents: [&[u8]; 3],
    log: FileRecord,
) -> Result<String, RunError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::create_dir(dir).map_err(io(dir))?;
    let mut files = BTreeMap::new();
    for (file, content) in CHECKPOINT_FILES.into_iter().zip(contents) {
        let path = dir.join(file);
        crate::write_atomic(&path, content).map_err(io(&path))?;
        files.insert(file.to_owned(), FileRecord::of(content));
    }
    let manifest = Manifest {
        format: CHECKPOINT_FORMAT.into(),
        version: u64::from(CHECKPOINT_VERSION),
        step,
        files,
        log,
    };
    let path = dir.join(MANIFEST);
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(&path, e.to_string()))?;
    crate::write_atomic(&path, &bytes).map_err(io(&path))?;
    Ok(sha256_hex(&bytes))
}

/// The model's parameters as safetensors, under Hugging Face's names.
pub fn model_to_safetensors(model: &Classifier) -> Result<Vec<u8>, RunError> {
    model
        .to_safetensors_bytes()
        .map_err(|e| invalid(Path::new("<model>"), e.to_string()))
}

/// Loads a model saved by [`model_to_safetensors`] (the bytes of the file at `path`) into
/// `model`: every tensor must be there, in f32, with the shape `model` has. On an error `model`
/// is unchanged.
pub fn load_model(path: &Path, bytes: &[u8], model: &mut Classifier) -> Result<(), RunError> {
    model
        .load_safetensors_bytes(bytes, path)
        .map_err(|e| invalid(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_parses_line_by_line_and_an_error_names_the_line() {
        let path = Path::new("run/log.jsonl");
        let lines = parse_log(path, b"{\"step\":1}\n{\"step\":2}\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["step"], 2);
        let torn = parse_log(path, b"{\"step\":1}\n{\"ste")
            .unwrap_err()
            .to_string();
        assert!(torn.starts_with("run/log.jsonl: line 2: "), "{torn}");
        let bytes = parse_log(path, b"{\"step\":1}\n\xff\n")
            .unwrap_err()
            .to_string();
        assert!(bytes.starts_with("run/log.jsonl: not UTF-8"), "{bytes}");
    }
}

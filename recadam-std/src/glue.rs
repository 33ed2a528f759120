//! The GLUE tasks the paper fine-tunes on, read from the TSV files of `download_glue_data.py`'s
//! layout (`<DIR>/<TASK>/{train,dev}.tsv`).
//!
//! The files are read with the `csv` crate with quoting off: MRPC and STS-B hold unbalanced `"`
//! that are text, not quotes (Python's `csv.QUOTE_NONE`). MRPC starts with a UTF-8 BOM and CoLA's
//! dev file has no final newline; both are read as they are. A row with the wrong number of
//! columns, an unknown label or a missing header is an error naming the file and line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A GLUE task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// Recognising textual entailment: sentence pairs, entailment (0) or not (1).
    Rte,
    /// Microsoft Research paraphrase corpus: sentence pairs, paraphrase (1) or not (0).
    Mrpc,
    /// Corpus of linguistic acceptability: single sentences, acceptable (1) or not (0).
    Cola,
    /// Semantic textual similarity benchmark: sentence pairs scored 0 to 5 (regression).
    Stsb,
    /// Stanford sentiment treebank, binary: single sentences, positive (1) or negative (0).
    Sst2,
}

/// Which file of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train.tsv`.
    Train,
    /// `dev.tsv` (the split the paper reports).
    Dev,
}

/// What an example is labelled with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Label {
    /// A class index (classification tasks).
    Class(usize),
    /// A similarity score (STS-B).
    Score(f32),
}

/// One example: a sentence or a sentence pair, and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The (first) sentence.
    pub text_a: String,
    /// The second sentence of a pair task.
    pub text_b: Option<String>,
    /// The gold label.
    pub label: Label,
}

/// A file that could not be read as the task's TSV.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub struct GlueError {
    /// The file.
    pub file: PathBuf,
    /// The line (from 1), when the problem is in a row.
    pub line: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// How a task's file is laid out.
struct Columns {
    count: usize,
    /// The first header field, or `None` when the file has no header (CoLA).
    header: Option<&'static str>,
    text_a: usize,
    text_b: Option<usize>,
    label: usize,
}

impl Task {
    /// Every task, in the order of the help text.
    pub const ALL: [Task; 5] = [Task::Rte, Task::Mrpc, Task::Cola, Task::Stsb, Task::Sst2];

    /// The task's name as GLUE spells it (also its folder).
    pub fn name(self) -> &'static str {
        match self {
            Task::Rte => "RTE",
            Task::Mrpc => "MRPC",
            Task::Cola => "CoLA",
            Task::Stsb => "STS-B",
            Task::Sst2 => "SST-2",
        }
    }

    /// Outputs of the task head: the number of classes, or 1 for regression.
    pub fn outputs(self) -> usize {
        match self {
            Task::Stsb => 1,
            _ => 2,
        }
    }

    /// Whether examples are sentence pairs.
    pub fn is_pair(self) -> bool {
        self.columns().text_b.is_some()
    }

    /// The metric the task is compared by (the paper's): accuracy (RTE, SST-2), F1 (MRPC),
    /// Matthews correlation (CoLA), Spearman correlation (STS-B).
    pub fn main_metric(self) -> &'static str {
        match self {
            Task::Rte | Task::Sst2 => "accuracy",
            Task::Mrpc => "f1",
            Task::Cola => "mcc",
            Task::Stsb => "spearman",
        }
    }

    fn columns(self) -> Columns {
        match self {
            Task::Rte => Columns {
                count: 4,
                header: Some("index"),
                text_a: 1,
                text_b: Some(2),
                label: 3,
            },
            Task::Mrpc => Columns {
                count: 5,
                header: Some("Quality"),
                text_a: 3,
                text_b: Some(4),
                label: 0,
            },
            Task::Cola => Columns {
                count: 4,
                header: None,
                text_a: 3,
                text_b: None,
                label: 1,
            },
            Task::Stsb => Columns {
                count: 10,
                header: Some("index"),
                text_a: 7,
                text_b: Some(8),
                label: 9,
            },
            Task::Sst2 => Columns {
                count: 2,
                header: Some("sentence"),
                text_a: 0,
                text_b: None,
                label: 1,
            },
        }
    }

    fn parse_label(self, field: &str) -> Option<Label> {
        match (self, field) {
            (Task::Rte, "entailment") => Some(Label::Class(0)),
            (Task::Rte, "not_entailment") => Some(Label::Class(1)),
            (Task::Rte, _) => None,
            (Task::Stsb, _) => field
                .parse::<f32>()
                .ok()
                .filter(|s| (0.0..=5.0).contains(s))
                .map(Label::Score),
            (_, "0") => Some(Label::Class(0)),
            (_, "1") => Some(Label::Class(1)),
            _ => None,
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Task {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Task {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Task, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Task {
    type Err = String;
    /// Case-insensitive, with or without the hyphen (`rte`, `STS-B`, `stsb`, `sst2`).
    fn from_str(s: &str) -> Result<Task, String> {
        let key = s.to_ascii_lowercase().replace('-', "");
        Task::ALL
            .into_iter()
            .find(|t| t.name().to_ascii_lowercase().replace('-', "") == key)
            .ok_or_else(|| format!("unknown task `{s}` (expected RTE, MRPC, CoLA, STS-B or SST-2)"))
    }
}

impl Split {
    /// The file name of the split.
    pub fn file_name(self) -> &'static str {
        match self {
            Split::Train => "train.tsv",
            Split::Dev => "dev.tsv",
        }
    }
}

/// The path of a task's split under a GLUE folder.
pub fn path(glue_dir: impl AsRef<Path>, task: Task, split: Split) -> PathBuf {
    glue_dir.as_ref().join(task.name()).join(split.file_name())
}

/// The GLUE folder used when none is given: the repository's `testdata/glue` (the genuine files
/// of five tasks; see its SOURCES.md), found from where this crate was built, not from the working
/// directory.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(
        || PathBuf::from("testdata/glue"),
        |root| root.join("testdata/glue"),
    )
}

/// Reads `<glue_dir>/<TASK>/<split>.tsv`.
pub fn read(
    glue_dir: impl AsRef<Path>,
    task: Task,
    split: Split,
) -> Result<Vec<Example>, GlueError> {
    let file = path(glue_dir, task, split);
    let bytes = std::fs::read(&file).map_err(|e| GlueError {
        file: file.clone(),
        line: None,
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "{e}: a GLUE folder holds <TASK>/train.tsv and <TASK>/dev.tsv as \
                 download_glue_data.py lays them out; give it with --data DIR or GLUE_DIR"
            ),
            _ => e.to_string(),
        },
    })?;
    parse(&bytes, task, &file)
}

/// Parses a task's TSV from memory; `file` only names it in errors.
pub fn parse(bytes: &[u8], task: Task, file: &Path) -> Result<Vec<Example>, GlueError> {
    let columns = task.columns();
    let err = |line: Option<u64>, reason: String| GlueError {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .quoting(false)
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut examples = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map(|p| p.line());
                return Err(err(line, format!("not a {task} TSV row: {e}")));
            }
        }
        let line = record.position().map(|p| p.line());
        if record.len() != columns.count {
            return Err(err(
                line,
                format!(
                    "{} columns where {task} has {}",
                    record.len(),
                    columns.count
                ),
            ));
        }
        if std::mem::take(&mut first) {
            if let Some(expected) = columns.header {
                let got = record[0].trim_start_matches('\u{feff}');
                if got != expected {
                    return Err(err(
                        line,
                        format!(
                            "expected the {task} header starting with `{expected}`, found `{got}`"
                        ),
                    ));
                }
                continue;
            }
        }
        let label = task.parse_label(&record[columns.label]).ok_or_else(|| {
            err(
                line,
                format!("`{}` is not a {task} label", &record[columns.label]),
            )
        })?;
        examples.push(Example {
            text_a: record[columns.text_a].to_string(),
            text_b: columns.text_b.map(|i| record[i].to_string()),
            label,
        });
    }
    if first && columns.header.is_some() {
        return Err(err(None, format!("empty file: no {task} header")));
    }
    Ok(examples)
}

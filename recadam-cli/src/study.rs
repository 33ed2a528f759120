//! `recadam study`: the paper's comparison as a list of fine-tuning runs, (task, arm, seed), each
//! ending in one JSON line appended to a results file. Rows already there are skipped, so a study
//! stopped anywhere resumes where it stopped, on any machine that has the results file: a run cut
//! off between its checkpoints resumes from its run folder, and a finished run is never run twice.
//!
//! `recadam study report` turns the rows into the tables and figures of `docs/results/`
//! ([`crate::study_report`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use recadam_std::bert::BertConfig;
use recadam_std::evaluate::is_sentence_embedding_model;
use recadam_std::glue::{self, Split, Task};
use recadam_std::run_dir::{parse_json, read_checkpoint, RunError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::finetune::{self, FinetuneArgs, FinetuneError, Init, OptimizerKind};
use crate::plot::median;

/// What is compared: an update rule and where the encoder starts.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Arm {
    /// AdamW from the pretrained weights: vanilla fine-tuning.
    Adamw,
    /// RecAdam from the pretrained weights.
    Recadam,
    /// RecAdam from a random initialisation, pulled towards the pretrained weights.
    RecadamRandom,
}

impl Arm {
    /// Every arm, in the order tables list them.
    pub const ALL: [Arm; 3] = [Arm::Adamw, Arm::Recadam, Arm::RecadamRandom];

    /// The name in manifests, rows and tables.
    pub fn name(self) -> &'static str {
        match self {
            Arm::Adamw => "adamw",
            Arm::Recadam => "recadam",
            Arm::RecadamRandom => "recadam-random",
        }
    }

    /// The update rule and the start of the encoder.
    pub fn run_kind(self) -> (OptimizerKind, Init) {
        match self {
            Arm::Adamw => (OptimizerKind::Adamw, Init::Pretrained),
            Arm::Recadam => (OptimizerKind::Recadam, Init::Pretrained),
            Arm::RecadamRandom => (OptimizerKind::Recadam, Init::Random),
        }
    }
}

impl std::str::FromStr for Arm {
    type Err = String;
    fn from_str(s: &str) -> Result<Arm, String> {
        Arm::ALL
            .into_iter()
            .find(|a| a.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                let names: Vec<&str> = Arm::ALL.iter().map(|a| a.name()).collect();
                format!("unknown arm `{s}` (arms: {})", names.join(", "))
            })
    }
}

/// One run of a study.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    /// The task, by its position in [`Task::ALL`] (so that entries sort in that order).
    pub task: TaskKey,
    /// The arm.
    pub arm: Arm,
    /// The seed (head, random initialisation, batch order, dropout).
    pub seed: u64,
}

/// A task that orders as [`Task::ALL`] lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskKey(pub Task);

impl TaskKey {
    fn index(self) -> usize {
        Task::ALL
            .iter()
            .position(|&t| t == self.0)
            .unwrap_or(usize::MAX)
    }
}

impl PartialOrd for TaskKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TaskKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.index().cmp(&other.index())
    }
}

impl Entry {
    /// The run folder's name: `RTE-recadam-seed0`.
    pub fn folder(&self) -> String {
        format!(
            "{}-{}-seed{}",
            self.task.0.name(),
            self.arm.name(),
            self.seed
        )
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} seed {}", self.task.0, self.arm.name(), self.seed)
    }
}

/// A manifest line: `{"task": "RTE", "arm": "recadam", "seed": 0}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestLine {
    task: String,
    arm: String,
    seed: u64,
}

/// The hyperparameters every run of a study shares (the issue's protocol), as a row records
/// them for its task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// Peak learning rate.
    pub lr: f64,
    /// Sentences per batch.
    pub batch_size: usize,
    /// Tokens per sequence at most (batches are padded to their longest).
    pub max_seq_length: usize,
    /// Optimizer steps of this task.
    pub steps: u64,
    /// Fraction of the steps of linear warm-up (then linear decay to 0).
    pub warmup_ratio: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Annealing rate k.
    pub k: f64,
    /// Annealing midpoint t0.
    pub t0: f64,
    /// Penalty coefficient γ.
    pub gamma: f64,
    /// Global gradient-norm clipping.
    pub max_grad_norm: f64,
    /// Dev evaluation every this many steps.
    pub eval_every: u64,
    /// Dropout of the model (its config's hidden and attention dropout).
    pub dropout: f64,
}

/// Steps per task: one count for every task, or `TASK=N` pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steps(pub Vec<(Task, u64)>, pub Option<u64>);

impl Steps {
    /// The count of `task`.
    pub fn of(&self, task: Task) -> Option<u64> {
        self.0
            .iter()
            .find(|(t, _)| *t == task)
            .map(|&(_, n)| n)
            .or(self.1)
    }
}

impl std::str::FromStr for Steps {
    type Err = String;
    fn from_str(s: &str) -> Result<Steps, String> {
        if let Ok(n) = s.trim().parse::<u64>() {
            return Ok(Steps(Vec::new(), Some(n)));
        }
        let mut pairs = Vec::new();
        for part in s.split(',') {
            let (task, n) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected TASK=STEPS or one number"))?;
            let task: Task = task.trim().parse()?;
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|e| format!("`{part}`: the step count: {e}"))?;
            pairs.push((task, n));
        }
        Ok(Steps(pairs, None))
    }
}

/// The options of `recadam study` (running it).
#[derive(Clone, Debug, clap::Args)]
pub struct StudyArgs {
    /// The model folder (as `scripts/fetch-minilm.sh` fills it).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The GLUE folder; default: the copy in the repository this program was built from.
    #[arg(long, env = "GLUE_DIR", default_value_os_t = glue::default_dir())]
    pub data: PathBuf,
    /// The results file: one JSON line per finished run, appended; rows already there are skipped.
    #[arg(long, default_value = "docs/results/study.jsonl")]
    pub results: PathBuf,
    /// Where the runs' folders (logs, checkpoints) go; a run cut off resumes from its folder.
    #[arg(long, default_value = "runs/study")]
    pub runs: PathBuf,
    /// A manifest (JSON lines `{"task": "RTE", "arm": "recadam", "seed": 0}`); without one the
    /// study is every --tasks × --arms × --seeds.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Tasks, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "RTE,MRPC,CoLA,STS-B")]
    pub tasks: Vec<String>,
    /// Arms, comma-separated: adamw, recadam, recadam-random.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "adamw,recadam,recadam-random"
    )]
    pub arms: Vec<String>,
    /// Seeds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub seeds: Vec<u64>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-5)]
    pub lr: f64,
    /// Sentences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per sequence at most.
    #[arg(long, default_value_t = 128)]
    pub max_seq_length: usize,
    /// Steps per task: `RTE=600,MRPC=600,CoLA=900,STS-B=900`, or one count for all.
    #[arg(long, default_value = "RTE=600,MRPC=600,CoLA=900,STS-B=900,SST-2=900")]
    pub steps: Steps,
    /// Fraction of the steps of linear warm-up.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Decoupled weight decay (not on biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Annealing rate k.
    #[arg(long, default_value_t = 0.1)]
    pub k: f64,
    /// Annealing midpoint t0.
    #[arg(long, default_value_t = 150.0)]
    pub t0: f64,
    /// Penalty coefficient γ.
    #[arg(long, default_value_t = 5000.0)]
    pub gamma: f64,
    /// Global gradient-norm clipping.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Dropout of the hidden states and attention probabilities (default: the model config's,
    /// 0.1 for BERT models).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Dev evaluation (for the curves) every this many steps, and at the end.
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Log (and keep in the row's curve) the loss, λ and distance every this many steps.
    #[arg(long, default_value_t = 25)]
    pub log_every: u64,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Stop after this many runs have finished in this process (a study split over sessions).
    #[arg(long)]
    pub max_runs: Option<usize>,
    /// Stop the run in progress after this step, with a checkpoint (the next `recadam study`
    /// resumes it).
    #[arg(long)]
    pub stop_after: Option<u64>,
}

/// Errors of a study, each naming the file and line at fault.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A bad option.
    #[error("{0}")]
    Usage(String),
    /// A line of a manifest or a results file that cannot be used.
    #[error("{}, line {line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A run failed.
    #[error("{entry}: {source}")]
    Run {
        /// The run.
        entry: String,
        /// Why.
        source: Box<FinetuneError>,
    },
}

/// A point of a run's curves: what the log says at `step`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurvePoint {
    /// The step.
    pub step: u64,
    /// Mean training loss over the steps since the previous point.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    /// λ(t) of the step.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lambda: Option<f64>,
    /// Euclidean distance of the encoder to θ*.
    pub distance: f64,
    /// The task's main dev metric, where the run evaluated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dev: Option<f64>,
}

/// A number that JSON holds as `null` when it is not finite (serde_json writes NaN and ±∞ so),
/// read back as NaN: a run whose score is NaN (a constant prediction's correlation) is a row.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One finished run: a line of the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// The task (GLUE's name).
    pub task: String,
    /// The arm.
    pub arm: Arm,
    /// The seed.
    pub seed: u64,
    /// The model folder's name.
    pub model: String,
    /// The hyperparameters.
    pub protocol: Protocol,
    /// The dev metrics at the end, by name.
    pub dev: BTreeMap<String, f64>,
    /// The task's main metric's name.
    pub main_metric: String,
    /// The main metric's value.
    #[serde(deserialize_with = "null_as_nan")]
    pub score: f64,
    /// Distance of the encoder to θ* at the end.
    #[serde(deserialize_with = "null_as_nan")]
    pub distance: f64,
    /// λ at the last step.
    #[serde(deserialize_with = "null_as_nan")]
    pub lambda: f64,
    /// Zero-shot STS-B dev Spearman of the mean-pooled encoder before fine-tuning (sentence-
    /// embedding models).
    pub stsb_zero_shot_before: Option<f64>,
    /// The same after fine-tuning: how much of the source skill the arm kept.
    pub stsb_zero_shot_after: Option<f64>,
    /// The curves (the logged steps and the evaluations).
    pub curve: Vec<CurvePoint>,
    /// Wall-clock seconds of the run (set-up, probes, training, evaluations), the parts before a
    /// resume included.
    #[serde(deserialize_with = "null_as_nan")]
    pub seconds: f64,
    /// Whether the run was resumed from a checkpoint.
    pub resumed: bool,
    /// Median training throughput of the logged intervals (real tokens, not padding).
    #[serde(deserialize_with = "null_as_nan")]
    pub tokens_per_s: f64,
    /// Threads.
    pub threads: usize,
    /// The CPU (its model name, family and model).
    pub cpu: String,
    /// The commit of the source the program was built from (`-dirty` when it had changes).
    pub commit: String,
    /// The command line.
    pub command: String,
    /// When the run finished (seconds since 1970, UTC).
    pub finished_unix: u64,
}

impl Row {
    /// The run it records, or why its task or seed do not name one.
    pub fn entry(&self) -> Result<Entry, String> {
        Ok(Entry {
            task: TaskKey(self.task.parse()?),
            arm: self.arm,
            seed: self.seed,
        })
    }
}

/// The rows of a results file, with their line numbers; a missing file has none. A line that is
/// not a row, a second row of the same run, are errors naming the line.
pub fn read_rows(path: &Path) -> Result<Vec<(usize, Row)>, StudyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StudyError::Io {
                path: path.into(),
                source,
            })
        }
    };
    let mut rows = Vec::new();
    let mut seen: BTreeMap<Entry, usize> = BTreeMap::new();
    let line_error = |line: usize, reason: String| StudyError::Line {
        path: path.into(),
        line,
        reason,
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(line)
            .map_err(|e| line_error(n, format!("not a study row: {e}")))?;
        let entry = row.entry().map_err(|e| line_error(n, e))?;
        if let Some(first) = seen.insert(entry, n) {
            return Err(line_error(
                n,
                format!("a second row of {entry} (the first is line {first})"),
            ));
        }
        rows.push((n, row));
    }
    Ok(rows)
}

/// The runs a manifest file lists, in its order; an unknown task or arm, a repeated run or a line
/// that is not a manifest line are errors naming the line.
pub fn read_manifest(path: &Path) -> Result<Vec<Entry>, StudyError> {
    let text = std::fs::read_to_string(path).map_err(|source| StudyError::Io {
        path: path.into(),
        source,
    })?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_error = |reason: String| StudyError::Line {
            path: path.into(),
            line: i + 1,
            reason,
        };
        let raw: ManifestLine = serde_json::from_str(line).map_err(|e| {
            line_error(format!(
                "not a manifest line ({{\"task\": \"RTE\", \"arm\": \"recadam\", \"seed\": 0}}): {e}"
            ))
        })?;
        let entry = Entry {
            task: TaskKey(raw.task.parse().map_err(line_error)?),
            arm: raw.arm.parse().map_err(line_error)?,
            seed: raw.seed,
        };
        if entries.contains(&entry) {
            return Err(line_error(format!("{entry} is listed twice")));
        }
        entries.push(entry);
    }
    Ok(entries)
}

impl StudyArgs {
    /// The runs of the study, seed by seed (so that a study cut short has whole seeds), then task
    /// by task, then arm by arm; or the manifest's, in its order.
    pub fn entries(&self) -> Result<Vec<Entry>, StudyError> {
        if let Some(manifest) = &self.manifest {
            return read_manifest(manifest);
        }
        let tasks = self
            .tasks
            .iter()
            .map(|t| t.parse().map(TaskKey))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StudyError::Usage(format!("--tasks: {e}")))?;
        let arms = self
            .arms
            .iter()
            .map(|a| a.parse())
            .collect::<Result<Vec<Arm>, _>>()
            .map_err(|e| StudyError::Usage(format!("--arms: {e}")))?;
        let mut entries = Vec::new();
        for &seed in &self.seeds {
            for &task in &tasks {
                for &arm in &arms {
                    let entry = Entry { task, arm, seed };
                    if !entries.contains(&entry) {
                        entries.push(entry);
                    }
                }
            }
        }
        Ok(entries)
    }

    /// The protocol of `task`'s runs with a model of dropout `dropout`.
    pub fn protocol(&self, task: Task, dropout: f64) -> Result<Protocol, StudyError> {
        let steps = self
            .steps
            .of(task)
            .ok_or_else(|| StudyError::Usage(format!("--steps names no step count for {task}")))?;
        Ok(Protocol {
            lr: self.lr,
            batch_size: self.batch_size,
            max_seq_length: self.max_seq_length,
            steps,
            warmup_ratio: self.warmup_ratio,
            weight_decay: self.weight_decay,
            k: self.k,
            t0: self.t0,
            gamma: self.gamma,
            max_grad_norm: self.max_grad_norm,
            eval_every: self.eval_every,
            dropout,
        })
    }

    /// The `recadam finetune` options of one run.
    fn finetune_args(&self, model: &Path, entry: Entry, p: &Protocol) -> FinetuneArgs {
        let (optimizer, init) = entry.arm.run_kind();
        FinetuneArgs {
            model: model.into(),
            task: entry.task.0,
            data: self.data.clone(),
            optimizer,
            init,
            seed: entry.seed,
            lr: p.lr,
            batch_size: p.batch_size,
            max_seq_length: p.max_seq_length,
            steps: Some(p.steps),
            epochs: 0.0,
            warmup_ratio: p.warmup_ratio,
            weight_decay: p.weight_decay,
            k: p.k,
            t0: p.t0,
            gamma: p.gamma,
            w: 1.0,
            max_grad_norm: p.max_grad_norm,
            eval_every: p.eval_every,
            log_every: self.log_every,
            eval_limit: None,
            threads: self.threads,
            output: self.runs.join(entry.folder()),
            json: false,
            resume: false,
            stop_after: self.stop_after,
            no_forgetting_probe: false,
            dropout: Some(p.dropout),
        }
    }
}

/// The model's dropout, as its config states it (the study records it; BERT's default is 0.1).
fn model_dropout(model: &Path) -> Result<f64, StudyError> {
    BertConfig::from_file(model.join("config.json"))
        .map(|config| config.hidden_dropout_prob)
        .map_err(|e| StudyError::Usage(e.to_string()))
}

/// Whether the runs can measure forgetting: a sentence-embedding model and STS-B's dev file.
fn has_similarity_probe(model: &Path, data: &Path) -> bool {
    is_sentence_embedding_model(model) && glue::path(data, Task::Stsb, Split::Dev).is_file()
}

/// The CPU's model name, family and model, from /proc/cpuinfo (as `lscpu` shows them).
pub fn cpu_name() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    };
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(model)) => {
            format!("{name} (family {family} model {model})")
        }
        (Some(name), _, _) => name,
        _ => std::env::consts::ARCH.to_owned(),
    }
}

/// The commit of the source tree this program was built from, `-dirty` when tracked files
/// (other than `docs/results`) differed from it; `unknown` where git or the tree was not there.
/// Stamped at build time (`build.rs`): the code that runs, not the tree as it is now.
pub fn source_commit() -> String {
    env!("RECADAM_SOURCE_COMMIT").to_owned()
}

/// The curves of a finished run from its log: every logged step (loss, λ, distance) and every
/// evaluation (the main metric).
fn curve_of(log: &[Value], main_metric: &str) -> Vec<CurvePoint> {
    let mut points: BTreeMap<u64, CurvePoint> = BTreeMap::new();
    for line in log {
        let (Some(step), Some(distance)) = (line["step"].as_u64(), line["distance"].as_f64())
        else {
            continue;
        };
        let point = points.entry(step).or_insert(CurvePoint {
            step,
            loss: None,
            lambda: None,
            distance,
            dev: None,
        });
        match line["event"].as_str() {
            Some("train") => {
                point.loss = line["loss"].as_f64();
                point.lambda = line["lambda"].as_f64();
            }
            Some("eval") => point.dev = line["dev"][main_metric].as_f64(),
            _ => {}
        }
    }
    points.into_values().collect()
}

/// Appends `row` as one line (one write, then synced), starting a new line if the file does
/// not end with one.
fn append_row(path: &Path, row: &Row) -> Result<(), StudyError> {
    let io = |source| StudyError::Io {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let needs_newline = std::fs::read(path)
        .map(|b| b.last().is_some_and(|&c| c != b'\n'))
        .unwrap_or(false);
    let mut line = if needs_newline {
        String::from("\n")
    } else {
        String::new()
    };
    line += &serde_json::to_string(row)
        .map_err(|e| StudyError::Usage(format!("a row does not serialise: {e}")))?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_data().map_err(io)
}

/// What a study did in this process.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Runs already in the results file.
    pub skipped: usize,
    /// Runs finished (rows appended).
    pub finished: usize,
    /// Runs left to do.
    pub left: usize,
}

/// Runs the study: every run of the manifest without a row, in order, each row appended as it
/// finishes. Everything is checked first (the manifest, every row already there, the GLUE files
/// of every task, the model's config), so that a bad input stops the study before any run.
pub fn run(args: &StudyArgs, mut say: impl FnMut(&str)) -> Result<Outcome, StudyError> {
    let model = args
        .model
        .as_ref()
        .ok_or_else(|| StudyError::Usage("--model is required to run a study".into()))?;
    let model_name = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| model.display().to_string());
    let entries = args.entries()?;
    if entries.is_empty() {
        return Err(StudyError::Usage("the study lists no runs".into()));
    }
    let dropout = match args.dropout {
        Some(p) => p,
        None => model_dropout(model)?,
    };
    let rows = read_rows(&args.results)?;
    let mut done: BTreeMap<Entry, usize> = BTreeMap::new();
    // Every row of another model, and every row of another protocol for a task this study
    // runs, is foreign: it is neither reused nor run again beside.
    let tasks: Vec<Task> = entries.iter().map(|e| e.task.0).collect();
    for (line, row) in &rows {
        let entry = row.entry().map_err(|reason| StudyError::Line {
            path: args.results.clone(),
            line: *line,
            reason,
        })?;
        let differs = if row.model != model_name {
            Some(format!("model {} (this study: {model_name})", row.model))
        } else if tasks.contains(&entry.task.0) {
            let protocol = args.protocol(entry.task.0, dropout)?;
            (row.protocol != protocol).then(|| {
                format!(
                    "protocol {} (this study: {})",
                    serde_json::to_string(&row.protocol).unwrap_or_default(),
                    serde_json::to_string(&protocol).unwrap_or_default()
                )
            })
        } else {
            None
        };
        if let Some(differs) = differs {
            return Err(StudyError::Line {
                path: args.results.clone(),
                line: *line,
                reason: format!("the row of {entry} is of another {differs}"),
            });
        }
        done.insert(entry, *line);
    }
    for entry in &entries {
        for split in [Split::Train, Split::Dev] {
            let file = glue::path(&args.data, entry.task.0, split);
            if !file.is_file() {
                return Err(StudyError::Usage(format!(
                    "the GLUE folder {} has no {} ({} is not there)",
                    args.data.display(),
                    entry.task.0,
                    file.display()
                )));
            }
        }
        let protocol = args.protocol(entry.task.0, dropout)?;
        // A run cut off earlier resumes from its folder: only if it is a run of this study.
        if !done.contains_key(entry) {
            let ft = args.finetune_args(model, *entry, &protocol);
            let failed = |e: RunError| StudyError::Run {
                entry: entry.to_string(),
                source: Box::new(FinetuneError::Run(e)),
            };
            if let Some(ckpt) = read_checkpoint(&ft.output).map_err(failed)? {
                let saved: Value = parse_json(&ckpt.path("run.json"), &ckpt.run).map_err(failed)?;
                let run = serde_json::to_value(&ft)
                    .map_err(|e| StudyError::Usage(format!("the options do not serialise: {e}")))?;
                let differs = finetune::resume_differences(&run, &saved);
                if !differs.is_empty() {
                    return Err(StudyError::Usage(format!(
                        "{}: the run cut off there is not this study's run of {entry} ({} \
                         differ); remove the folder to run it afresh",
                        ft.output.display(),
                        differs.join(", ")
                    )));
                }
            }
        }
    }
    if !has_similarity_probe(model, &args.data) {
        say(
            "note: no zero-shot STS-B probe (the model is not a sentence-embedding model, or the \
             GLUE folder has no STS-B dev file): the rows will not say what each arm kept",
        );
    }
    let threads = crate::threads::resolve(args.threads).map_err(StudyError::Usage)?;
    let (cpu, commit) = (cpu_name(), source_commit());
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut outcome = Outcome::default();
    let todo: Vec<Entry> = entries
        .iter()
        .copied()
        .filter(|e| !done.contains_key(e))
        .collect();
    outcome.skipped = entries.len() - todo.len();
    outcome.left = todo.len();
    say(&format!(
        "study: {} runs, {} already in {}, {} to run",
        entries.len(),
        outcome.skipped,
        args.results.display(),
        todo.len()
    ));
    for (i, entry) in todo.iter().enumerate() {
        if args.max_runs.is_some_and(|m| outcome.finished >= m) {
            break;
        }
        let protocol = args.protocol(entry.task.0, dropout)?;
        let mut ft = args.finetune_args(model, *entry, &protocol);
        let failed = |source: FinetuneError| StudyError::Run {
            entry: entry.to_string(),
            source: Box::new(source),
        };
        let ckpt = read_checkpoint(&ft.output)
            .map_err(|e| failed(FinetuneError::Run(e)))?
            .is_some();
        ft.resume = ckpt;
        say(&format!(
            "[{}/{}] {entry}{}",
            i + 1,
            todo.len(),
            if ckpt { " (resumed)" } else { "" }
        ));
        let summary = finetune::run(&ft).map_err(failed)?;
        if !summary.completed {
            say(&format!(
                "{entry}: stopped after step {} (checkpoint in {}); run the study again to go on",
                summary.steps,
                ft.output.display()
            ));
            return Ok(outcome);
        }
        let log = finetune::read_log(&ft.output).map_err(StudyError::Usage)?;
        let curve = curve_of(&log, &summary.main_metric);
        let rates: Vec<f64> = log
            .iter()
            .filter(|l| l["event"] == "train")
            .filter_map(|l| l["tokens_per_s"].as_f64())
            .collect();
        let dev: BTreeMap<String, f64> = summary
            .dev
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .collect();
        let row = Row {
            task: entry.task.0.name().into(),
            arm: entry.arm,
            seed: entry.seed,
            model: model_name.clone(),
            score: dev.get(&summary.main_metric).copied().unwrap_or(f64::NAN),
            dev,
            main_metric: summary.main_metric.clone(),
            protocol,
            distance: summary.distance,
            lambda: curve
                .iter()
                .rev()
                .find_map(|p| p.lambda)
                .unwrap_or(f64::NAN),
            stsb_zero_shot_before: summary.similarity_before,
            stsb_zero_shot_after: summary.similarity_after,
            curve,
            seconds: summary.wall_seconds,
            resumed: ckpt,
            tokens_per_s: median(rates).unwrap_or(f64::NAN),
            threads,
            cpu: cpu.clone(),
            commit: commit.clone(),
            command: command.clone(),
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        append_row(&args.results, &row)?;
        outcome.finished += 1;
        outcome.left -= 1;
        say(&format!(
            "{entry}: dev {} {:.4}, distance {:.3}, {:.0} s",
            row.main_metric, row.score, row.distance, row.seconds
        ));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_per_task_or_for_all() {
        let s: Steps = "RTE=600,CoLA=900".parse().unwrap();
        assert_eq!(s.of(Task::Rte), Some(600));
        assert_eq!(s.of(Task::Cola), Some(900));
        assert_eq!(s.of(Task::Mrpc), None);
        let all: Steps = "7".parse().unwrap();
        assert_eq!(all.of(Task::Stsb), Some(7));
        assert!("RTE".parse::<Steps>().unwrap_err().contains("TASK=STEPS"));
        assert!("XYZ=3".parse::<Steps>().is_err());
    }

    #[test]
    fn arms_parse_by_name() {
        for arm in Arm::ALL {
            assert_eq!(arm.name().parse::<Arm>(), Ok(arm));
        }
        assert!("sgd"
            .parse::<Arm>()
            .unwrap_err()
            .contains("unknown arm `sgd`"));
    }

    #[test]
    fn a_row_with_a_nan_score_is_written_and_read_back() {
        let text = r#"{"task":"STS-B","arm":"adamw","seed":0,"model":"m","protocol":{"lr":5e-5,"batch_size":32,"max_seq_length":128,"steps":9,"warmup_ratio":0.1,"weight_decay":0.01,"k":0.1,"t0":150.0,"gamma":5000.0,"max_grad_norm":1.0,"eval_every":100,"dropout":0.1},"dev":{},"main_metric":"spearman","score":null,"distance":1.0,"lambda":0.0,"stsb_zero_shot_before":null,"stsb_zero_shot_after":null,"curve":[],"seconds":1.0,"resumed":false,"tokens_per_s":null,"threads":1,"cpu":"c","commit":"c","command":"c","finished_unix":0}"#;
        let row: Row = serde_json::from_str(text).unwrap();
        assert!(row.score.is_nan() && row.tokens_per_s.is_nan());
        let again: Row = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
        assert!(again.score.is_nan());
        assert_eq!(again.distance, 1.0);
    }

    #[test]
    fn curves_merge_train_and_eval_lines_by_step() {
        let log: Vec<Value> = [
            r#"{"event":"start","step":0}"#,
            r#"{"event":"train","step":5,"loss":0.7,"lambda":0.2,"distance":1.5}"#,
            r#"{"event":"eval","step":5,"distance":1.5,"dev":{"accuracy":0.6}}"#,
            r#"{"event":"train","step":10,"loss":0.6,"lambda":0.9,"distance":2.5}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let curve = curve_of(&log, "accuracy");
        assert_eq!(curve.len(), 2);
        assert_eq!(curve[0].dev, Some(0.6));
        assert_eq!(curve[0].lambda, Some(0.2));
        assert_eq!(curve[1].dev, None);
        assert_eq!(curve[1].distance, 2.5);
    }
}

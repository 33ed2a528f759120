//! Scoring a fine-tuned model on a GLUE split, and the zero-shot sentence-similarity score of its
//! embeddings (how much of a sentence-embedding model's skill survived fine-tuning).

use std::path::Path;

use crate::bert::{BertTokenizer, ModelError};

use crate::glue::{Example, Label, Task};
use crate::metrics::{self, MetricError};
use crate::trainer::Classifier;

/// Errors while scoring.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Tokenising or running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The predictions could not be scored.
    #[error(transparent)]
    Metric(#[from] MetricError),
    /// A label of the wrong kind for the task.
    #[error("{task} example {index} has label {label:?}")]
    Label {
        /// The task.
        task: Task,
        /// The example.
        index: usize,
        /// Its label.
        label: Label,
    },
}

/// Named scores, the task's main metric first.
pub type Scores = Vec<(&'static str, f64)>;

/// The scores as a JSON object, by name.
pub fn scores_to_json(scores: &Scores) -> serde_json::Map<String, serde_json::Value> {
    scores
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect()
}

/// Whether the folder holds a sentence-transformers model (mean-pooled embeddings are its
/// product, so their STS-B score measures its pretrained skill).
pub fn is_sentence_embedding_model(dir: &Path) -> bool {
    dir.join("modules.json").exists() || dir.join("sentence_bert_config.json").exists()
}

/// The STS-B dev examples for the zero-shot similarity probe: `None` unless the model is a
/// sentence-embedding model and the GLUE folder has STS-B. An STS-B file that is there but does
/// not read is an error, not a skipped probe.
pub fn similarity_probe(
    model_dir: &Path,
    glue_dir: &Path,
) -> Result<Option<Vec<Example>>, crate::glue::GlueError> {
    let split = crate::glue::Split::Dev;
    if !is_sentence_embedding_model(model_dir)
        || !crate::glue::path(glue_dir, Task::Stsb, split).exists()
    {
        return Ok(None);
    }
    crate::glue::read(glue_dir, Task::Stsb, split).map(Some)
}

/// Examples in order of length, so that each batch pads little (scores do not depend on order).
fn by_length(texts: &[(&str, Option<&str>)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].0.len() + texts[i].1.map_or(0, str::len));
    order
}

/// Runs `run` over `texts` in batches of `batch` texts of similar length and puts its `width`
/// outputs per text back in the texts' order.
fn batched(
    texts: &[(&str, Option<&str>)],
    batch: usize,
    width: usize,
    mut run: impl FnMut(&[(&str, Option<&str>)]) -> Result<Vec<f32>, ModelError>,
) -> Result<Vec<f32>, ModelError> {
    let mut out = vec![0.0f32; texts.len() * width];
    for rows in by_length(texts).chunks(batch.max(1)) {
        let inputs: Vec<_> = rows.iter().map(|&i| texts[i]).collect();
        let values = run(&inputs)?;
        for (&i, row) in rows.iter().zip(values.chunks_exact(width)) {
            out[i * width..(i + 1) * width].copy_from_slice(row);
        }
    }
    Ok(out)
}

/// The head's outputs for every example, `[examples, outputs]`, in the examples' order.
pub fn predict(
    model: &Classifier,
    tokenizer: &BertTokenizer,
    examples: &[Example],
    batch: usize,
    threads: usize,
) -> Result<Vec<f32>, ModelError> {
    let texts: Vec<(&str, Option<&str>)> = examples
        .iter()
        .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
        .collect();
    batched(&texts, batch, model.head.bias.len(), |inputs| {
        model.logits(&tokenizer.encode(inputs)?, threads)
    })
}

/// The examples' gold labels as `value` reads them; a label it refuses is an error naming the
/// example.
fn gold<'e, T>(
    task: Task,
    examples: impl IntoIterator<Item = &'e Example>,
    value: impl Fn(Label) -> Option<T>,
) -> Result<Vec<T>, EvalError> {
    examples
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            value(e.label).ok_or(EvalError::Label {
                task,
                index,
                label: e.label,
            })
        })
        .collect()
}

/// The gold similarity scores of STS-B examples: a class label is an error naming the example.
pub fn gold_scores<'e>(
    task: Task,
    examples: impl IntoIterator<Item = &'e Example>,
) -> Result<Vec<f32>, EvalError> {
    gold(task, examples, |label| match label {
        Label::Score(s) => Some(s),
        Label::Class(_) => None,
    })
}

/// [`gold_scores`] widened for the correlation metrics.
fn gold_scores_f64(task: Task, examples: &[Example]) -> Result<Vec<f64>, EvalError> {
    Ok(gold_scores(task, examples)?
        .into_iter()
        .map(f64::from)
        .collect())
}

/// The gold classes of a classification task's examples: a score, or a class the task does not
/// have, is an error naming the example. (Training and scoring read labels through these two
/// functions: one policy.)
pub fn gold_classes<'e>(
    task: Task,
    examples: impl IntoIterator<Item = &'e Example>,
) -> Result<Vec<usize>, EvalError> {
    let outputs = task.outputs();
    gold(task, examples, |label| match label {
        Label::Class(c) if c < outputs => Some(c),
        _ => None,
    })
}

/// The class of each row of `logits` (`[rows, classes]`): the index of its largest value.
pub fn predicted_classes(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks_exact(classes.max(1))
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0)
        })
        .collect()
}

/// The task's metrics from the head's outputs: accuracy (and F1 for MRPC, MCC for CoLA), or
/// Spearman and Pearson for STS-B. The main metric ([`Task::main_metric`]) comes first.
pub fn score(task: Task, logits: &[f32], examples: &[Example]) -> Result<Scores, EvalError> {
    let outputs = task.outputs();
    if task == Task::Stsb {
        let pred: Vec<f64> = logits.iter().map(|&x| f64::from(x)).collect();
        let gold = gold_scores_f64(task, examples)?;
        return Ok(vec![
            ("spearman", metrics::spearman(&pred, &gold)?),
            ("pearson", metrics::pearson(&pred, &gold)?),
        ]);
    }
    let pred = predicted_classes(logits, outputs);
    let gold = gold_classes(task, examples)?;
    let accuracy = metrics::accuracy(&pred, &gold)?;
    Ok(match task {
        Task::Mrpc => vec![("f1", metrics::f1(&pred, &gold)?), ("accuracy", accuracy)],
        Task::Cola => vec![
            ("mcc", metrics::matthews(&pred, &gold)?),
            ("accuracy", accuracy),
        ],
        _ => vec![("accuracy", accuracy)],
    })
}

/// Predicts and scores.
pub fn evaluate(
    model: &Classifier,
    tokenizer: &BertTokenizer,
    task: Task,
    examples: &[Example],
    batch: usize,
    threads: usize,
) -> Result<Scores, EvalError> {
    let logits = predict(model, tokenizer, examples, batch, threads)?;
    score(task, &logits, examples)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

/// Zero-shot STS-B: Spearman correlation between the gold scores and the cosine similarity of
/// the two sentences' mean-pooled embeddings (the skill all-MiniLM-L6-v2 was trained for; the
/// task head plays no part).
pub fn zero_shot_similarity(
    model: &Classifier,
    tokenizer: &BertTokenizer,
    stsb: &[Example],
    batch: usize,
    threads: usize,
) -> Result<f64, EvalError> {
    let h = model.encoder.config.hidden_size;
    let embed = |texts: Vec<&str>| {
        let singles: Vec<(&str, Option<&str>)> = texts.iter().map(|t| (*t, None)).collect();
        batched(&singles, batch, h, |inputs| {
            model.mean_pooled(&tokenizer.encode(inputs)?, threads)
        })
    };
    let a = embed(stsb.iter().map(|e| e.text_a.as_str()).collect())?;
    let b = embed(
        stsb.iter()
            .map(|e| e.text_b.as_deref().unwrap_or(""))
            .collect(),
    )?;
    let sims: Vec<f64> = a
        .chunks_exact(h)
        .zip(b.chunks_exact(h))
        .map(|(x, y)| cosine(x, y))
        .collect();
    let gold = gold_scores_f64(Task::Stsb, stsb)?;
    Ok(metrics::spearman(&sims, &gold)?)
}

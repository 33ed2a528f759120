//! `recadam finetune`: a pretrained BERT fine-tuned on a GLUE task, as the paper's experiment
//! and the official GLUE script run it: the encoder pulled towards θ*, the new head not; no decay
//! for biases and LayerNorm weights; clipping at 1.0; linear warm-up and decay.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use recadam_core::{Annealing, PenaltyMode, RecAdamConfig};
use recadam_std::bert::{BertTokenizer, BertWeights, Head, Targets};
use recadam_std::{LinearWarmupDecay, Options};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::plot::{write_svg, Panel, Series};
use recadam_std::evaluate::{
    evaluate, gold_classes, gold_scores, scores_to_json, similarity_probe, zero_shot_similarity,
    EvalError,
};
use recadam_std::glue::{self, Example, Split, Task};
use recadam_std::run_dir::{self, load_model, parse_json, read_checkpoint, RunDir, RunError};
use recadam_std::trainer::Batches;
use recadam_std::trainer::{Classifier, Trainer};

/// The update rule of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam with decoupled weight decay, no penalty.
    Adamw,
    /// RecAdam: the decoupled, annealed quadratic penalty towards θ*.
    Recadam,
    /// The paper's ablation: the penalty gradient mixed into the gradient before the moments.
    RecadamCoupled,
}

impl OptimizerKind {
    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Adamw => "adamw",
            OptimizerKind::Recadam => "recadam",
            OptimizerKind::RecadamCoupled => "recadam-coupled",
        }
    }
}

/// Where the fine-tuned encoder starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// From the pretrained weights (θ*).
    Pretrained,
    /// From a random initialisation (the official script's default), pulled towards θ*.
    Random,
}

/// The options of `recadam finetune`.
#[derive(Clone, Debug, Serialize, Deserialize, clap::Args)]
pub struct FinetuneArgs {
    /// The model folder (config.json, model.safetensors, tokenizer.json), as
    /// `scripts/fetch-minilm.sh` fills it.
    #[arg(long)]
    pub model: PathBuf,
    /// The GLUE task.
    #[arg(long, value_parser = parse_task)]
    pub task: Task,
    /// The GLUE folder (`<DIR>/<TASK>/{train,dev}.tsv`, as `download_glue_data.py` lays it out);
    /// default: the copy in the repository this program was built from.
    #[arg(long, env = "GLUE_DIR", default_value_os_t = recadam_std::glue::default_dir())]
    pub data: PathBuf,
    /// The update rule.
    #[arg(long, value_enum, default_value = "recadam")]
    pub optimizer: OptimizerKind,
    /// Where the encoder starts.
    #[arg(long, value_enum, default_value = "pretrained")]
    pub init: Init,
    /// Seeds the head, the random initialisation, the batch order and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Peak learning rate (the paper: 2e-5 for BERT-base).
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    /// Sentences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per sequence at most (longest-first truncation).
    #[arg(long, default_value_t = 128)]
    pub max_seq_length: usize,
    /// Optimizer steps; overrides --epochs.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Passes over the training set (when --steps is not given).
    #[arg(long, default_value_t = 3.0)]
    pub epochs: f64,
    /// Fraction of the steps spent warming the learning rate up from 0.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Decoupled weight decay (not on biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Sigmoid annealing rate k of λ(t) = w / (1 + e^(−k(t − t0))).
    #[arg(long, default_value_t = 0.5)]
    pub k: f64,
    /// Annealing midpoint t0 (steps).
    #[arg(long, default_value_t = 250.0)]
    pub t0: f64,
    /// Penalty coefficient γ (`pretrain_cof`).
    #[arg(long, default_value_t = 5000.0)]
    pub gamma: f64,
    /// Annealing weight w (`anneal_w`).
    #[arg(long, default_value_t = 1.0)]
    pub w: f64,
    /// Clip the global gradient norm to this.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    /// Evaluate on the dev set (and checkpoint) every this many steps; 0: only at the end.
    #[arg(long, default_value_t = 100)]
    pub eval_every: u64,
    /// Log the training loss every this many steps.
    #[arg(long, default_value_t = 10)]
    pub log_every: u64,
    /// Score only the first N dev examples during training (all at the end).
    #[arg(long)]
    pub eval_limit: Option<usize>,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// The output folder (log, checkpoints, summary, plot).
    #[arg(long, default_value = "runs/finetune")]
    pub output: PathBuf,
    /// Print the JSON lines to stdout too.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
    /// Continue the run in --output from its latest checkpoint, exactly.
    #[arg(long)]
    #[serde(skip)]
    pub resume: bool,
    /// Stop after this step, with a checkpoint (a later `--resume` goes on to the end, with
    /// the same bits as one uninterrupted run).
    #[arg(long)]
    #[serde(skip)]
    pub stop_after: Option<u64>,
    /// Skip the zero-shot STS-B similarity of the embeddings before and after.
    #[arg(long)]
    pub no_forgetting_probe: bool,
    /// Dropout of the hidden states and attention probabilities while training (default: the
    /// model config's).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout: Option<f64>,
}

/// The steps since the last loss line: what the next one averages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
struct Interval {
    loss_sum: f64,
    steps: u64,
    tokens: u64,
    /// Training time up to the interval's last checkpoint (the time since is measured from
    /// then).
    seconds: f64,
}

impl Interval {
    /// The log line of an interval cut by a checkpoint at `step`.
    /// `elapsed_s` is the run's wall time so far, which a resume reads from the log's last line.
    fn to_json(self, step: u64, elapsed_s: f64) -> Value {
        json!({"event": "interval", "step": step, "loss_sum": self.loss_sum,
               "steps": self.steps, "tokens": self.tokens, "seconds": self.seconds,
               "elapsed_s": elapsed_s})
    }

    /// The interval the checkpoint at `step` cut, from the log (none on a log step).
    fn stopped_at(log: &[Value], step: u64) -> Result<Interval, FinetuneError> {
        match log
            .iter()
            .rev()
            .find(|l| l["event"] == "interval" && l["step"] == step)
        {
            Some(line) => Interval::deserialize(line).map_err(|e| {
                FinetuneError::Usage(format!("--resume: the log's interval line {line}: {e}"))
            }),
            None => Ok(Interval::default()),
        }
    }
}

fn parse_task(s: &str) -> Result<Task, String> {
    s.parse()
}

/// Errors of a run, each saying what to fix.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// A bad option.
    #[error("{0}")]
    Usage(String),
    /// The model folder.
    #[error(transparent)]
    Model(#[from] recadam_std::bert::ModelError),
    /// The data.
    #[error(transparent)]
    Data(#[from] glue::GlueError),
    /// Training.
    #[error(transparent)]
    Train(#[from] recadam_std::trainer::TrainError),
    /// Scoring.
    #[error(transparent)]
    Eval(#[from] recadam_std::evaluate::EvalError),
    /// The output folder.
    #[error(transparent)]
    Run(#[from] recadam_std::run_dir::RunError),
    /// The optimizer's set-up or checkpoint.
    #[error(transparent)]
    Optimizer(#[from] recadam_std::Error),
    /// The plot.
    #[error("plot: {0}")]
    Plot(String),
}

/// The result of a run (also `summary.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// The task.
    pub task: String,
    /// The update rule.
    pub optimizer: String,
    /// Where the encoder started.
    pub init: Init,
    /// The seed.
    pub seed: u64,
    /// Steps taken.
    pub steps: u64,
    /// The dev metrics at the end, by name.
    pub dev: serde_json::Map<String, Value>,
    /// The task's main metric's name.
    pub main_metric: String,
    /// Euclidean distance of the encoder to θ*.
    pub distance: f64,
    /// Zero-shot STS-B Spearman of the pretrained embeddings (sentence-embedding models).
    pub similarity_before: Option<f64>,
    /// The same after fine-tuning.
    pub similarity_after: Option<f64>,
    /// Wall-clock seconds of training (this process).
    pub seconds: f64,
    /// False when `--stop-after` ended the run early (then `dev` is empty).
    pub completed: bool,
    /// Wall-clock seconds of the whole run (set-up, probes, training, evaluations), the parts
    /// before a resume included.
    #[serde(default)]
    pub wall_seconds: f64,
}

impl FinetuneArgs {
    /// The update rule's configuration.
    pub fn config(&self) -> RecAdamConfig {
        match self.optimizer {
            OptimizerKind::Adamw => RecAdamConfig::adamw(self.lr, self.weight_decay),
            kind => RecAdamConfig {
                lr: self.lr,
                weight_decay: self.weight_decay,
                annealing: Annealing::Sigmoid {
                    k: self.k,
                    t0: self.t0,
                },
                anneal_w: self.w,
                pretrain_cof: self.gamma,
                penalty_mode: if kind == OptimizerKind::RecadamCoupled {
                    PenaltyMode::Coupled
                } else {
                    PenaltyMode::Decoupled
                },
                ..RecAdamConfig::default()
            },
        }
    }

    /// Total steps for `train_len` examples.
    pub fn total_steps(&self, train_len: usize) -> u64 {
        self.steps.unwrap_or_else(|| {
            let per_epoch = train_len.div_ceil(self.batch_size.max(1)) as f64;
            (per_epoch * self.epochs).ceil() as u64
        })
    }

    fn check(&self) -> Result<(), FinetuneError> {
        let usage = |m: &str| Err(FinetuneError::Usage(m.into()));
        if self.batch_size == 0 {
            return usage("--batch-size must be at least 1");
        }
        if self.max_seq_length < 2 {
            return usage("--max-seq-length must be at least 2 ([CLS] and [SEP])");
        }
        if self.steps.is_none() && !self.epochs.is_finite()
            || self.epochs <= 0.0 && self.steps.is_none()
        {
            return usage("--epochs must be positive (or give --steps)");
        }
        if self.steps == Some(0) {
            return usage("--steps must be at least 1");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return usage("--warmup-ratio must be in [0, 1)");
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return usage("--max-grad-norm must be positive");
        }
        if self.dropout.is_some_and(|p| !(0.0..1.0).contains(&p)) {
            return usage("--dropout must be in [0, 1)");
        }
        if self.threads == Some(0) {
            return usage("--threads must be at least 1");
        }
        self.config()
            .validate()
            .map_err(|e| FinetuneError::Usage(e.to_string()))
    }
}

/// The batch's training targets, read with the same label policy as scoring (the whole training
/// set was checked against it before the first step).
fn targets(task: Task, examples: &[&Example]) -> Result<Targets, EvalError> {
    Ok(if task == Task::Stsb {
        Targets::Values(gold_scores(task, examples.iter().copied())?)
    } else {
        Targets::Labels(gold_classes(task, examples.iter().copied())?)
    })
}

/// Runs `recadam finetune` on one pool of `--threads` threads.
pub fn run(args: &FinetuneArgs) -> Result<Summary, FinetuneError> {
    args.check()?;
    let threads = crate::threads::resolve(args.threads).map_err(FinetuneError::Usage)?;
    crate::threads::with_pool(threads, || run_on(args, threads)).map_err(FinetuneError::Usage)?
}

fn run_on(args: &FinetuneArgs, threads: usize) -> Result<Summary, FinetuneError> {
    let run_started = Instant::now();
    let (mut pretrained, _) = BertWeights::from_folder(&args.model)?;
    if let Some(p) = args.dropout {
        pretrained.config.hidden_dropout_prob = p;
        pretrained.config.attention_probs_dropout_prob = p;
    }
    let tokenizer =
        BertTokenizer::from_file(args.model.join("tokenizer.json"), args.max_seq_length)?;
    let train = glue::read(&args.data, args.task, Split::Train)?;
    let dev = glue::read(&args.data, args.task, Split::Dev)?;
    if train.is_empty() || dev.is_empty() {
        return Err(FinetuneError::Usage(format!(
            "{} has no examples",
            args.data.display()
        )));
    }
    // Every training label of the right kind, before anything is trained or written.
    if args.task == Task::Stsb {
        gold_scores(args.task, &train)?;
    } else {
        gold_classes(args.task, &train)?;
    }
    let total = args.total_steps(train.len());
    let warmup = (total as f64 * args.warmup_ratio) as u64;
    let theta_star = pretrained.data.clone();
    let encoder = match args.init {
        Init::Pretrained => pretrained.clone(),
        Init::Random => BertWeights::random(pretrained.config.clone(), args.seed ^ 0x494e_4954),
    };
    let head = Head::new(args.task.outputs(), encoder.config.hidden_size, args.seed);
    let model = Classifier { encoder, head };
    let options = Options {
        schedule: Box::new(LinearWarmupDecay { warmup, total }),
        max_grad_norm: Some(args.max_grad_norm),
        threads,
        ..Options::new(args.config())
    };
    let mut trainer = Trainer::new(model, theta_star.into(), options, true)?;
    let run_json = serde_json::to_value(args)
        .map_err(|e| FinetuneError::Usage(format!("the options do not serialise: {e}")))?;

    // The output folder, and where to start. A resume verifies every file it reads (checkpoint,
    // options, log) and loads the checkpoint into memory before it changes any file.
    let mut start_step = 0;
    let mut elapsed_before = 0.0;
    let mut interval = Interval::default();
    let mut dir = if args.resume {
        let Some(ckpt) = read_checkpoint(&args.output)? else {
            return Err(FinetuneError::Usage(format!(
                "--resume: no checkpoint in {}: its `latest` file, which names the newest \
                 complete checkpoint, is not there",
                args.output.display()
            )));
        };
        let run_path = ckpt.path("run.json");
        // Typed first, so that an unreadable field is named as such; then compared by value.
        parse_json::<FinetuneArgs>(&run_path, &ckpt.run)?;
        let saved: Value = parse_json(&run_path, &ckpt.run)?;
        let differs = resume_differences(&run_json, &saved);
        if !differs.is_empty() {
            return Err(FinetuneError::Usage(format!(
                "--resume: {} differ from the run in {}",
                differs.join(", "),
                ckpt.dir.display()
            )));
        }
        let mut model = trainer.model.clone();
        load_model(&ckpt.path("model.safetensors"), &ckpt.model, &mut model)?;
        trainer
            .optimizer_mut()
            .load_checkpoint_from_bytes(&ckpt.optimizer)
            .map_err(|source| RunError::Optimizer {
                path: ckpt.path("optimizer.safetensors"),
                source,
            })?;
        if trainer.optimizer().steps() != ckpt.step {
            return Err(FinetuneError::Run(RunError::Invalid {
                path: ckpt.path("optimizer.safetensors"),
                reason: format!(
                    "holds {} steps, but the checkpoint is of step {}",
                    trainer.optimizer().steps(),
                    ckpt.step
                ),
            }));
        }
        trainer.model = model;
        start_step = ckpt.step;
        // Checks the log before it cuts it back: the first and only write of a resume's checks.
        let (dir, log) = RunDir::resume(&args.output, &ckpt, args.json)?;
        // The run's time so far, as its log last states it.
        elapsed_before = log
            .iter()
            .rev()
            .find_map(|l| l["elapsed_s"].as_f64())
            .unwrap_or(0.0);
        interval = Interval::stopped_at(&log, start_step)?;
        dir
    } else {
        let mut dir = RunDir::create(&args.output, args.json)?;
        dir.log(
            &json!({"event": "start", "step": 0, "run": run_json, "total_steps": total,
                        "train_examples": train.len(), "dev_examples": dev.len(),
                        "backend": trainer.optimizer().kernel().backend().name()}),
        )?;
        dir
    };

    let stsb_dev = if args.no_forgetting_probe {
        None
    } else {
        similarity_probe(&args.model, &args.data)?
    };
    let eval_batch = args.batch_size.max(32);
    let similarity_before = match &stsb_dev {
        Some(stsb) => {
            let original = Classifier {
                encoder: pretrained,
                head: trainer.model.head.clone(),
            };
            Some(zero_shot_similarity(
                &original, &tokenizer, stsb, eval_batch, threads,
            )?)
        }
        None => None,
    };

    // What every summary of this run says; the figures are filled in where it ends.
    let summary_of_run = Summary {
        task: args.task.name().into(),
        optimizer: args.optimizer.name().into(),
        init: args.init,
        seed: args.seed,
        steps: 0,
        dev: serde_json::Map::new(),
        main_metric: args.task.main_metric().into(),
        distance: 0.0,
        similarity_before,
        similarity_after: None,
        seconds: 0.0,
        completed: false,
        wall_seconds: 0.0,
    };

    let progress = ProgressBar::new(total).with_position(start_step);
    progress.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    progress.set_prefix(format!("{} {}", args.task, args.optimizer.name()));

    let mut batches = Batches::new(train.len(), args.batch_size, args.seed ^ 0x4241_5443);
    for _ in 0..start_step {
        batches.next_rows();
    }
    let dev_during: &[Example] = &dev[..args.eval_limit.unwrap_or(dev.len()).min(dev.len())];
    let started = Instant::now();
    let mut last_log = Instant::now();
    for step in start_step + 1..=total {
        let rows = batches.next_rows();
        let examples: Vec<&Example> = rows.iter().map(|&r| &train[r]).collect();
        let texts: Vec<(&str, Option<&str>)> = examples
            .iter()
            .map(|e| (e.text_a.as_str(), e.text_b.as_deref()))
            .collect();
        let batch = tokenizer.encode(&texts)?;
        interval.tokens += batch.attention_mask.iter().filter(|&&m| m != 0).count() as u64;
        let log = trainer.step(
            &batch,
            &targets(args.task, &examples)?,
            args.seed.wrapping_mul(1_000_003) ^ step,
        )?;
        interval.loss_sum += f64::from(log.loss);
        interval.steps += 1;
        progress.set_position(step);
        if step % args.log_every.max(1) == 0 || step == total {
            let seconds = interval.seconds + last_log.elapsed().as_secs_f64();
            let loss = interval.loss_sum / interval.steps as f64;
            let tokens_per_s = interval.tokens as f64 / seconds;
            progress.set_message(format!(
                "loss {loss:.4} λ {:.3} lr {:.2e} {tokens_per_s:.0} tok/s",
                log.lambda, log.lr,
            ));
            dir.log(
                &json!({"event": "train", "step": step, "loss": loss, "lr": log.lr,
                            "lambda": log.lambda, "grad_norm": log.grad_norm,
                            "distance": trainer.distance(),
                            "tokens_per_s": tokens_per_s,
                            "elapsed_s": elapsed_before + run_started.elapsed().as_secs_f64()}),
            )?;
            interval = Interval::default();
            last_log = Instant::now();
        }
        let eval_now = args.eval_every > 0 && step % args.eval_every == 0 && step != total;
        let stop_now = args.stop_after == Some(step) && step < total;
        if eval_now || stop_now {
            // The interval's training time so far; the evaluation's is not the step's.
            interval.seconds += last_log.elapsed().as_secs_f64();
        }
        if eval_now {
            let scores = evaluate(
                &trainer.model,
                &tokenizer,
                args.task,
                dev_during,
                eval_batch,
                threads,
            )?;
            let mut line = json!({"event": "eval", "step": step, "distance": trainer.distance(),
                                  "elapsed_s": elapsed_before + run_started.elapsed().as_secs_f64()});
            line["dev"] = Value::Object(scores_to_json(&scores));
            dir.log(&line)?;
            progress.println(format!(
                "step {step}: dev {} {:.4}",
                scores[0].0, scores[0].1
            ));
        }
        // After the step's evaluation, so that a stopped and resumed run logs what one run does.
        if eval_now || stop_now {
            // Inside a log interval: its steps so far go into the checkpoint's log, so that a
            // run resumed from here logs the interval's loss over all its steps, as one run does.
            if interval.steps > 0 {
                let elapsed_s = elapsed_before + run_started.elapsed().as_secs_f64();
                dir.log(&interval.to_json(step, elapsed_s))?;
            }
            dir.save_checkpoint(step, &trainer, &run_json)?;
            last_log = Instant::now();
        }
        if stop_now {
            progress.finish_and_clear();
            return Ok(Summary {
                steps: step,
                distance: trainer.distance(),
                seconds: started.elapsed().as_secs_f64(),
                completed: false,
                wall_seconds: elapsed_before + run_started.elapsed().as_secs_f64(),
                ..summary_of_run
            });
        }
    }
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let scores = evaluate(
        &trainer.model,
        &tokenizer,
        args.task,
        &dev,
        eval_batch,
        threads,
    )?;
    let distance = trainer.distance();
    let mut line = json!({"event": "eval", "step": total, "distance": distance});
    line["dev"] = Value::Object(scores_to_json(&scores));
    dir.log(&line)?;
    dir.save_checkpoint(total, &trainer, &run_json)?;
    let similarity_after = match &stsb_dev {
        Some(stsb) => Some(zero_shot_similarity(
            &trainer.model,
            &tokenizer,
            stsb,
            eval_batch,
            threads,
        )?),
        None => None,
    };
    let summary = Summary {
        steps: total,
        dev: scores_to_json(&scores),
        distance,
        similarity_after,
        seconds,
        completed: true,
        wall_seconds: elapsed_before + run_started.elapsed().as_secs_f64(),
        ..summary_of_run
    };
    let unserialisable = |e: serde_json::Error| RunError::Invalid {
        path: args.output.join("summary.json"),
        reason: format!("the summary does not serialise: {e}"),
    };
    let mut line = serde_json::to_value(&summary).map_err(unserialisable)?;
    line["event"] = json!("summary");
    line["step"] = json!(total);
    dir.log(&line)?;
    dir.write(
        "summary.json",
        &serde_json::to_vec_pretty(&summary).map_err(unserialisable)?,
    )?;
    plot_runs(
        std::slice::from_ref(&args.output),
        &args.output.join("plot.svg"),
    )
    .map_err(FinetuneError::Plot)?;
    Ok(summary)
}

/// The options of `run` (a run's `run.json`) that differ from `saved`'s, as `--option` names;
/// where the output goes, the threads and the logging and evaluation intervals may change.
pub fn resume_differences(run: &Value, saved: &Value) -> Vec<String> {
    run.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| {
            !["threads", "output", "eval_every", "log_every", "eval_limit"].contains(&k.as_str())
                && saved.get(k.as_str()) != Some(v)
        })
        .map(|(k, _)| format!("--{}", k.replace('_', "-")))
        .collect()
}

/// The summary as a table for people.
pub fn summary_table(s: &Summary) -> String {
    let mut rows = vec![
        ("task".to_string(), s.task.clone()),
        (
            "optimizer".into(),
            format!("{} (init {:?})", s.optimizer, s.init).to_lowercase(),
        ),
        ("steps".into(), s.steps.to_string()),
    ];
    for (k, v) in &s.dev {
        rows.push((
            format!("dev {k}"),
            format!("{:.4}", v.as_f64().unwrap_or(f64::NAN)),
        ));
    }
    rows.push(("distance to θ*".into(), format!("{:.3}", s.distance)));
    if let (Some(b), Some(a)) = (s.similarity_before, s.similarity_after) {
        rows.push((
            "STS-B zero-shot Spearman".into(),
            format!("{b:.4} → {a:.4}"),
        ));
    }
    rows.push(("training time".into(), format!("{:.0} s", s.seconds)));
    if !s.completed {
        rows.push((
            "stopped".into(),
            format!("after step {}: continue with --resume", s.steps),
        ));
    }
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("  {k:<width$}  {v}\n"))
        .collect()
}

/// Reads a run folder's log lines.
pub fn read_log(dir: &Path) -> Result<Vec<Value>, String> {
    run_dir::read_log(dir).map_err(|e| e.to_string())
}

/// `recadam plot DIR...`: training loss, dev metric and distance to θ* of each run, one line
/// per run, into `out`.
pub fn plot_runs(dirs: &[PathBuf], out: &Path) -> Result<(), String> {
    let mut loss = Vec::new();
    let mut metric = Vec::new();
    let mut distance = Vec::new();
    let mut metric_name = String::from("dev metric");
    for dir in dirs {
        let log = read_log(dir)?;
        let run = log
            .iter()
            .find(|l| l["event"] == "start")
            .map(|l| &l["run"]);
        let label = run.map_or_else(
            || dir.display().to_string(),
            |r| {
                format!(
                    "{} {} seed {}",
                    r["optimizer"].as_str().unwrap_or("?"),
                    r["init"].as_str().unwrap_or(""),
                    r["seed"]
                )
            },
        );
        let task = run
            .and_then(|r| r["task"].as_str())
            .and_then(|t| t.parse::<Task>().ok());
        if let Some(task) = task {
            metric_name = format!("{task} dev {}", task.main_metric());
        }
        let series = |event: &str, value: &dyn Fn(&Value) -> Option<f64>| Series {
            label: label.clone(),
            points: log
                .iter()
                .filter(|l| l["event"] == event)
                .filter_map(|l| Some((l["step"].as_f64()?, value(l)?)))
                .collect(),
        };
        loss.push(series("train", &|l| l["loss"].as_f64()));
        let main = task.map_or("accuracy", |t| t.main_metric());
        metric.push(series("eval", &|l| l["dev"][main].as_f64()));
        distance.push(series("train", &|l| l["distance"].as_f64()));
    }
    write_svg(
        out,
        &[
            Panel {
                title: "training loss".into(),
                series: loss,
            },
            Panel {
                title: metric_name,
                series: metric,
            },
            Panel {
                title: "distance to pretrained θ*".into(),
                series: distance,
            },
        ],
    )
}

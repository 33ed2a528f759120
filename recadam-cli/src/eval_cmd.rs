//! `recadam eval`: scores a fine-tuned run's latest checkpoint on a task's dev set; without a
//! run, the model folder's encoder with an untrained head (the chance baseline) and, for a
//! sentence-embedding model, its zero-shot STS-B similarity.

use std::path::PathBuf;

use recadam_std::bert::{BertTokenizer, BertWeights, Head};
use serde_json::json;

use recadam_std::evaluate::{evaluate, scores_to_json, similarity_probe, zero_shot_similarity};
use recadam_std::glue::{self, Split, Task};
use recadam_std::run_dir::{load_model, read_checkpoint};
use recadam_std::trainer::Classifier;

/// The options of `recadam eval`.
#[derive(Clone, Debug, clap::Args)]
pub struct EvalArgs {
    /// The model folder (its config and tokenizer; its weights unless --run is given).
    #[arg(long)]
    pub model: PathBuf,
    /// The GLUE task.
    #[arg(long, value_parser = |s: &str| s.parse::<Task>())]
    pub task: Task,
    /// The GLUE folder (`<DIR>/<TASK>/{train,dev}.tsv`, as `download_glue_data.py` lays it out);
    /// default: the copy in the repository this program was built from.
    #[arg(long, env = "GLUE_DIR", default_value_os_t = recadam_std::glue::default_dir())]
    pub data: PathBuf,
    /// A `recadam finetune` output folder: its latest checkpoint is scored.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Tokens per sequence at most.
    #[arg(long, default_value_t = 128)]
    pub max_seq_length: usize,
    /// Sentences per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `recadam eval` on one pool of `--threads` threads.
pub fn run(args: &EvalArgs) -> Result<(), String> {
    let threads = crate::threads::resolve(args.threads)?;
    crate::threads::with_pool(threads, || run_on(args, threads))?
}

fn run_on(args: &EvalArgs, threads: usize) -> Result<(), String> {
    let (encoder, _) = BertWeights::from_folder(&args.model).map_err(|e| e.to_string())?;
    let tokenizer = BertTokenizer::from_file(
        args.model.join("tokenizer.json"),
        args.max_seq_length.max(2),
    )
    .map_err(|e| e.to_string())?;
    let head = Head::new(args.task.outputs(), encoder.config.hidden_size, 0);
    let mut model = Classifier { encoder, head };
    let source = match &args.run {
        Some(run) => {
            // Every file of the checkpoint is verified, though only the model is used.
            let ckpt = read_checkpoint(run)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no checkpoint in {}", run.display()))?;
            load_model(&ckpt.path("model.safetensors"), &ckpt.model, &mut model)
                .map_err(|e| e.to_string())?;
            ckpt.dir.display().to_string()
        }
        None => format!("{} with an untrained head", args.model.display()),
    };
    let dev = glue::read(&args.data, args.task, Split::Dev).map_err(|e| e.to_string())?;
    let scores = evaluate(
        &model,
        &tokenizer,
        args.task,
        &dev,
        args.batch_size,
        threads,
    )
    .map_err(|e| e.to_string())?;
    let similarity = match similarity_probe(&args.model, &args.data).map_err(|e| e.to_string())? {
        Some(stsb) => Some(
            zero_shot_similarity(&model, &tokenizer, &stsb, args.batch_size, threads)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    if args.json {
        let dev = scores_to_json(&scores);
        println!(
            "{}",
            json!({"task": args.task.name(), "model": source, "dev": dev, "zero_shot_stsb_spearman": similarity})
        );
    } else {
        println!("{} dev, {source}:", args.task);
        for (k, v) in &scores {
            println!("  {k:<26} {v:.4}");
        }
        if let Some(s) = similarity {
            println!("  {:<26} {s:.4}", "STS-B zero-shot Spearman");
        }
    }
    Ok(())
}

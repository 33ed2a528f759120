//! `recadam`: fine-tune BERT models with RecAdam on the CPU and measure what they forget.
//! With no subcommand it runs the self-contained demo.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use recadam_cli::demo::{self, DemoOptions};
use recadam_cli::finetune::{self, FinetuneArgs, OptimizerKind};
use recadam_cli::study::{self, StudyArgs};
use recadam_cli::study_report;

#[derive(Parser)]
#[command(name = "recadam", version, about = "RecAdam fine-tuning on the CPU: GLUE runs, forgetting measured, and a demo", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Pretrain a small BERT on a synthetic task, fine-tune it on another with AdamW and with
    /// RecAdam, and measure what each forgot (the default command; about 25 seconds).
    Demo(DemoArgs),
    /// Fine-tune a pretrained BERT on a GLUE task.
    Finetune(Box<FinetuneArgs>),
    /// Score a fine-tuned run (or a model's zero-shot similarity) on a GLUE dev set.
    Eval(recadam_cli::eval_cmd::EvalArgs),
    /// Run the paper's comparison (tasks × arms × seeds), one result row per finished run,
    /// resumable; `recadam study report` makes its tables and figures.
    Study(Box<StudyCmd>),
    /// Plot the loss, dev metric and distance to θ* of one or more run folders on shared axes.
    Plot {
        /// Run folders written by `recadam finetune`.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// The SVG file to write.
        #[arg(long, default_value = "runs/compare.svg")]
        output: PathBuf,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct StudyCmd {
    #[command(subcommand)]
    action: Option<StudyAction>,
    #[command(flatten)]
    run: StudyArgs,
}

#[derive(Subcommand)]
enum StudyAction {
    /// The study's tables (Markdown, also printed) and figures (SVG) from its results file.
    Report {
        /// The results file `recadam study` appends to.
        #[arg(long, default_value = "docs/results/study.jsonl")]
        results: PathBuf,
        /// Where `study.md`, `scores.svg`, `forgetting.svg` and `curves.svg` go.
        #[arg(long, default_value = "docs/results")]
        output: PathBuf,
    },
}

fn run_study(cmd: &StudyCmd) -> Result<(), String> {
    match &cmd.action {
        None => {
            let outcome =
                study::run(&cmd.run, |line| eprintln!("{line}")).map_err(|e| e.to_string())?;
            eprintln!(
                "study: {} runs finished now, {} were already done, {} left; rows in {}",
                outcome.finished,
                outcome.skipped,
                outcome.left,
                cmd.run.results.display()
            );
            Ok(())
        }
        Some(StudyAction::Report { results, output }) => {
            let rows = study::read_rows(results).map_err(|e| e.to_string())?;
            study_report::check_one_study(results, &rows).map_err(|e| e.to_string())?;
            let md = study_report::markdown(&rows);
            std::fs::create_dir_all(output).map_err(|e| format!("{}: {e}", output.display()))?;
            let path = output.join("study.md");
            std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
            let figures = study_report::figures(&rows, output)?;
            print!("{md}");
            eprintln!("wrote {}", path.display());
            for f in figures {
                eprintln!("wrote {}", f.display());
            }
            Ok(())
        }
    }
}

#[derive(clap::Args, Default)]
struct DemoArgs {
    /// Seeds the data, the initialisation, the heads and the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object per fine-tuning run to stdout (and nothing else there).
    #[arg(long)]
    json: bool,
    /// Where the plot and the runs' JSON go.
    #[arg(long, default_value = "runs/demo")]
    output: PathBuf,
    /// Threads (default 1: the demo's model is too small for more to pay).
    #[arg(long)]
    threads: Option<usize>,
}

fn bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

fn run_demo(args: &DemoArgs) -> Result<(), String> {
    let mut o = DemoOptions {
        seed: args.seed,
        ..DemoOptions::default()
    };
    if let Some(t) = args.threads {
        o.threads = recadam_cli::threads::resolve(Some(t))?;
    }
    recadam_cli::threads::with_pool(o.threads, || run_demo_with(args, o))?
}

fn run_demo_with(args: &DemoArgs, o: DemoOptions) -> Result<(), String> {
    let started = Instant::now();
    eprintln!(
        "Pretraining a {}-layer BERT (width {}) on the source task: which of 4 word groups is most frequent.",
        recadam_cli::synthetic::model_config().num_hidden_layers,
        recadam_cli::synthetic::model_config().hidden_size
    );
    let pre_bar = bar(o.pretrain_steps, "pretraining");
    let pre = demo::prepare(&o, |step, loss| {
        pre_bar.set_position(step);
        if step % 50 == 0 {
            pre_bar.set_message(format!("loss {loss:.4}"));
        }
    })
    .map_err(|e| e.to_string())?;
    pre_bar.finish_and_clear();
    eprintln!(
        "Pretrained: source accuracy {:.3}. Fine-tuning on the target task (is the most frequent group 0 or 1?)",
        pre.source_metric
    );
    let mut runs = Vec::new();
    for optimizer in [OptimizerKind::Adamw, OptimizerKind::Recadam] {
        let ft_bar = bar(
            o.finetune_steps,
            &format!("fine-tuning {}", optimizer.name()),
        );
        let run = demo::finetune(&o, &pre, optimizer, |p| {
            ft_bar.set_position(p.step);
            ft_bar.set_message(format!(
                "target acc {:.3}  source acc {:.3}  distance {:.2}",
                p.target_metric, p.source_metric, p.distance
            ));
        })
        .map_err(|e| e.to_string())?;
        ft_bar.finish_and_clear();
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&run).map_err(|e| e.to_string())?
            );
        }
        runs.push(run);
    }
    std::fs::create_dir_all(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let plot = args.output.join(format!("demo-seed{}.svg", o.seed));
    recadam_cli::plot::write_svg(&plot, &demo::panels(&runs))?;
    let mut lines = String::new();
    for run in &runs {
        lines += &serde_json::to_string(run).map_err(|e| format!("a demo result: {e}"))?;
        lines.push('\n');
    }
    let results = args.output.join(format!("demo-seed{}.jsonl", o.seed));
    std::fs::write(&results, lines).map_err(|e| format!("{}: {e}", results.display()))?;
    let table = demo::table(&runs);
    let note = format!(
        "\n{table}\nSource accuracy is the pretrained source head, kept frozen, read off the fine-tuned encoder:\n\
         what fine-tuning left of the pretrained skill. Seed {}, {:.0} s. Plot: {}\n",
        o.seed,
        started.elapsed().as_secs_f64(),
        plot.display()
    );
    if args.json {
        eprint!("{note}");
    } else {
        print!("{note}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_demo(&DemoArgs {
            output: PathBuf::from("runs/demo"),
            ..DemoArgs::default()
        }),
        Some(Command::Demo(args)) => run_demo(&args),
        Some(Command::Finetune(args)) => finetune::run(&args).map_err(|e| e.to_string()).map(|s| {
            let table = finetune::summary_table(&s);
            if args.json {
                eprint!("{table}");
            } else {
                print!("{table}");
            }
            eprintln!("Log, checkpoint and plot in {}", args.output.display());
        }),
        Some(Command::Study(cmd)) => run_study(&cmd),
        Some(Command::Eval(args)) => recadam_cli::eval_cmd::run(&args),
        Some(Command::Plot { runs, output }) => {
            finetune::plot_runs(&runs, &output).map(|()| eprintln!("wrote {}", output.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

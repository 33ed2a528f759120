//! The `recadam` program end to end on a tiny model made by the test: fine-tuning on the real
//! RTE files with logs, checkpoints and plots, exact resume, evaluation, and the demo.

use std::path::Path;

use serde_json::Value;

mod common;
use common::{glue_dir, latest, program, succeeds};

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// A run folder's log.
fn run_log(dir: impl AsRef<Path>) -> Vec<Value> {
    json_lines(&std::fs::read(dir.as_ref().join("log.jsonl")).unwrap())
}

/// `(step, loss)` of every training line.
fn losses(lines: &[Value]) -> Vec<(u64, f64)> {
    lines
        .iter()
        .filter(|l| l["event"] == "train")
        .map(|l| (l["step"].as_u64().unwrap(), l["loss"].as_f64().unwrap()))
        .collect()
}

fn finetune_args<'a>(model: &'a str, glue: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "finetune",
        "--model",
        model,
        "--task",
        "RTE",
        "--data",
        glue,
        "--output",
        out,
        "--steps",
        "6",
        "--batch-size",
        "4",
        "--max-seq-length",
        "48",
        "--eval-every",
        "3",
        "--log-every",
        "1",
        "--eval-limit",
        "24",
        "--lr",
        "1e-3",
        "--weight-decay",
        "0.01",
        "--gamma",
        "100",
        "--k",
        "1",
        "--t0",
        "3",
        "--warmup-ratio",
        "0.5",
        "--threads",
        "1",
        "--json",
    ]
}

/// `recadam eval` of RTE on `model` with sequences of at most `max_seq_length` tokens.
fn eval_args<'a>(model: &'a str, glue: &'a str, max_seq_length: &'a str) -> Vec<&'a str> {
    vec![
        "eval",
        "--model",
        model,
        "--task",
        "RTE",
        "--data",
        glue,
        "--max-seq-length",
        max_seq_length,
    ]
}

fn tiny_model(dir: &Path) -> String {
    recadam_cli::tiny_model::write(dir, 7).unwrap();
    dir.to_string_lossy().into_owned()
}

#[test]
fn finetune_logs_checkpoints_plots_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let glue = glue_dir().to_string_lossy().into_owned();
    let straight = tmp.path().join("straight").to_string_lossy().into_owned();

    let out = succeeds(&finetune_args(&model, &glue, &straight));
    let lines = json_lines(&out.stdout);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "train").count(),
        6,
        "{events:?}"
    );
    assert_eq!(
        events.iter().filter(|e| **e == "eval").count(),
        2,
        "{events:?}"
    );
    assert_eq!(events.first(), Some(&"start"));
    assert_eq!(events.last(), Some(&"summary"));
    let summary = lines.last().unwrap();
    let accuracy = summary["dev"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    // 277 dev examples: the accuracy is a multiple of 1/277.
    assert!(((accuracy * 277.0) - (accuracy * 277.0).round()).abs() < 1e-9);
    let train: Vec<&Value> = lines.iter().filter(|l| l["event"] == "train").collect();
    for (i, l) in train.iter().enumerate() {
        assert_eq!(l["step"], i as u64 + 1);
        assert!(l["loss"].as_f64().unwrap().is_finite());
        assert!(l["lambda"].as_f64().unwrap() > 0.0);
    }
    // Step 1's learning rate is 0 (warm-up starts at 0): the encoder has not moved yet.
    assert_eq!(train[0]["lr"], 0.0);
    assert_eq!(train[0]["distance"], 0.0);
    assert!(train[5]["distance"].as_f64().unwrap() > 0.0);
    // The log file holds the same lines as stdout.
    let logged = run_log(&straight);
    assert_eq!(logged, lines);
    let root = Path::new(&straight);
    assert_eq!(latest(root), "checkpoint-000006");
    assert!(
        !root.join("checkpoint-000003").exists(),
        "older checkpoints are removed"
    );
    let svg = std::fs::read_to_string(root.join("plot.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("distance to pretrained"));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(root.join("summary.json")).unwrap()).unwrap();
    assert_eq!(saved["dev"], summary["dev"]);

    // Stop after step 2 (a checkpoint), then resume: the same model bits and losses.
    let resumed = tmp.path().join("resumed").to_string_lossy().into_owned();
    let mut args = finetune_args(&model, &glue, &resumed);
    args.extend(["--stop-after", "2"]);
    succeeds(&args);
    assert_eq!(latest(Path::new(&resumed)), "checkpoint-000002");
    let mut args = finetune_args(&model, &glue, &resumed);
    args.push("--resume");
    let out = succeeds(&args);
    let again = json_lines(&out.stdout);
    let model_bytes = |dir: &str| {
        std::fs::read(Path::new(dir).join("checkpoint-000006/model.safetensors")).unwrap()
    };
    assert!(
        model_bytes(&straight) == model_bytes(&resumed),
        "resume changed the weights"
    );
    let optimizer_bytes = |dir: &str| {
        std::fs::read(Path::new(dir).join("checkpoint-000006/optimizer.safetensors")).unwrap()
    };
    // The optimizer's checkpoints hold the same tensors and metadata (the header's key order
    // may differ: the metadata is a hash map).
    let (a, b) = (optimizer_bytes(&straight), optimizer_bytes(&resumed));
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (name, t) in a.tensors() {
        assert!(
            t.data() == b.tensor(&name).unwrap().data(),
            "{name} differs"
        );
    }
    let metadata = |bytes: &[u8]| safetensors::SafeTensors::read_metadata(bytes).unwrap().1;
    assert_eq!(
        metadata(&optimizer_bytes(&straight)).metadata(),
        metadata(&optimizer_bytes(&resumed)).metadata()
    );
    assert_eq!(losses(&again), losses(&lines)[2..].to_vec());
    // The resumed log file has every step once.
    let log = run_log(&resumed);
    assert_eq!(losses(&log), losses(&lines));

    // Resuming under other settings is refused, naming the option.
    let mut args = finetune_args(&model, &glue, &resumed);
    args.extend(["--resume", "--seed", "9"]);
    let out = program().args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seed"));

    // A fresh run in a used folder starts afresh: the old checkpoints and log are gone.
    let mut args = finetune_args(&model, &glue, &resumed);
    args.extend(["--stop-after", "1"]);
    succeeds(&args);
    let root = Path::new(&resumed);
    assert_eq!(latest(root), "checkpoint-000001");
    assert!(!root.join("checkpoint-000006").exists() && !root.join("summary.json").exists());
    let log = run_log(root);
    assert_eq!(losses(&log), losses(&lines)[..1].to_vec());

    // `recadam eval` scores the run's checkpoint as the run did.
    let mut args = eval_args(&model, &glue, "48");
    args.extend([
        "--run",
        &straight,
        "--batch-size",
        "32",
        "--threads",
        "1",
        "--json",
    ]);
    let out = succeeds(&args);
    let eval = json_lines(&out.stdout);
    assert_eq!(eval[0]["dev"]["accuracy"], summary["dev"]["accuracy"]);

    // `recadam plot` puts both runs on shared axes.
    let svg = tmp.path().join("both.svg");
    succeeds(&[
        "plot",
        &straight,
        &resumed,
        "--output",
        &svg.to_string_lossy(),
    ]);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("RTE dev accuracy"), "titles name the metric");
}

/// A run resumed from a checkpoint inside a log interval logs the interval's loss over all its
/// steps, as one run does (the steps before the checkpoint are kept in its log).
#[test]
fn a_stop_inside_a_log_interval_keeps_the_interval_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let glue = glue_dir().to_string_lossy().into_owned();
    let args = |out: &str| -> Vec<String> {
        let mut a: Vec<String> = finetune_args(&model, &glue, out)
            .into_iter()
            .map(String::from)
            .collect();
        let at = a.iter().position(|x| x == "--log-every").unwrap();
        a[at + 1] = "4".into();
        a
    };
    let straight = tmp.path().join("straight").to_string_lossy().into_owned();
    succeeds(&args(&straight));
    let straight_log = run_log(&straight);
    let one_run = losses(&straight_log);
    assert_eq!(one_run.iter().map(|l| l.0).collect::<Vec<_>>(), [4, 6]);
    // The evaluation's checkpoint at step 3 keeps the interval's three steps in the log, as a
    // run killed after it needs them, whether or not the run stops there.
    let intervals: Vec<(u64, u64)> = straight_log
        .iter()
        .filter(|l| l["event"] == "interval")
        .map(|l| (l["step"].as_u64().unwrap(), l["steps"].as_u64().unwrap()))
        .collect();
    assert_eq!(intervals, [(3, 3)]);
    // Step 2: a stop alone; step 3: the evaluation's checkpoint (--eval-every 3), as a run
    // killed after it resumes from.
    for stop_after in ["2", "3"] {
        let resumed = tmp
            .path()
            .join(format!("resumed-{stop_after}"))
            .to_string_lossy()
            .into_owned();
        let mut stop = args(&resumed);
        stop.extend(["--stop-after".into(), stop_after.into()]);
        succeeds(&stop);
        let mut resume = args(&resumed);
        resume.push("--resume".into());
        succeeds(&resume);
        assert_eq!(
            losses(&run_log(&resumed)),
            one_run,
            "stopped after step {stop_after}"
        );
    }
}

#[test]
fn bad_options_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let glue = glue_dir().to_string_lossy().into_owned();
    let out_dir = tmp.path().join("out").to_string_lossy().into_owned();
    let fails = |extra: &[&str], expect: &str| {
        // Each extra option replaces the default one's value, or is added.
        let mut args = finetune_args(&model, &glue, &out_dir);
        for pair in extra.chunks(2) {
            match args.iter().position(|a| *a == pair[0]) {
                Some(i) if pair.len() == 2 => args[i + 1] = pair[1],
                _ => args.extend(pair),
            }
        }
        let out = program().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && err.contains(expect),
            "{extra:?}: {err}"
        );
    };
    // lr·γ = 5: the penalty step would diverge; the message says which option.
    fails(&["--lr", "1e-3", "--gamma", "5000"], "lr");
    fails(&["--batch-size", "0"], "--batch-size");
    fails(&["--task", "QNLI"], "QNLI");
    fails(&["--data", "/nonexistent"], "RTE/train.tsv");
    let elsewhere = format!("{out_dir}-none");
    fails(&["--output", &elsewhere, "--resume"], "no checkpoint");
}

#[test]
fn demo_json_has_the_promised_fields_and_recadam_forgets_less() {
    let tmp = tempfile::tempdir().unwrap();
    let out = succeeds(&["demo", "--json", "--output", &tmp.path().to_string_lossy()]);
    let runs = json_lines(&out.stdout);
    assert_eq!(runs.len(), 2);
    for (run, name) in runs.iter().zip(["adamw", "recadam"]) {
        assert_eq!(run["optimizer"], name);
        assert_eq!(run["seed"], 0);
        for field in [
            "target_metric",
            "source_metric_before",
            "source_metric_after",
            "distance",
        ] {
            assert!(
                run[field].as_f64().is_some_and(f64::is_finite),
                "{field}: {run}"
            );
        }
        assert_eq!(run["source_metric_before"], runs[0]["source_metric_before"]);
    }
    // The demo's point, for its default seed: RecAdam keeps more of the source task and stays
    // closer to the pretrained weights.
    let after = |i: usize| runs[i]["source_metric_after"].as_f64().unwrap();
    assert!(after(1) > after(0), "{runs:?}");
    assert!(runs[1]["distance"].as_f64() < runs[0]["distance"].as_f64());
    assert!(tmp.path().join("demo-seed0.svg").exists());
}

/// `--threads` above what the machine runs is clamped with a note (it used to abort with "failed
/// to spawn thread"); 0 is refused.
#[test]
fn too_many_threads_are_clamped() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let glue = glue_dir().to_string_lossy().into_owned();
    let eval = |threads: &str| {
        let mut args = eval_args(&model, &glue, "32");
        args.extend(["--threads", threads]);
        program().args(args).output().unwrap()
    };
    let out = eval("100000");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("clamped"), "{err}");
    let out = eval("0");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
}

/// A real fine-tune gives the same bits on the best kernel of this CPU as on the scalar reference
/// (AVX-512 or AVX2 here, NEON under qemu-aarch64): the same losses and the same model file.
/// `RECADAM_REQUIRE_BACKEND` names the kernel the best must be (CI: `neon` for the aarch64 build).
#[test]
fn the_best_kernel_trains_the_same_bits_as_the_scalar_one() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let glue = glue_dir().to_string_lossy().into_owned();
    let run = |backend: Option<&str>| {
        let dir = tmp
            .path()
            .join(backend.unwrap_or("best"))
            .to_string_lossy()
            .into_owned();
        let mut cmd = program();
        cmd.args(finetune_args(&model, &glue, &dir));
        match backend {
            Some(name) => cmd.env("RECADAM_BACKEND", name),
            None => cmd.env_remove("RECADAM_BACKEND"),
        };
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&out.stdout);
        let used = lines[0]["backend"].as_str().unwrap().to_string();
        let losses: Vec<Value> = lines
            .iter()
            .filter(|l| l["event"] == "train")
            .map(|l| l["loss"].clone())
            .collect();
        let ckpt = Path::new(&dir).join(latest(Path::new(&dir)));
        let weights = std::fs::read(ckpt.join("model.safetensors")).unwrap();
        (used, losses, weights)
    };
    let (best, best_losses, best_weights) = run(None);
    let (scalar, scalar_losses, scalar_weights) = run(Some("scalar"));
    assert_eq!(scalar, "scalar");
    if let Ok(want) = std::env::var("RECADAM_REQUIRE_BACKEND") {
        assert_eq!(best, want, "the best kernel of this CPU");
    }
    assert_eq!(best_losses.len(), 6);
    assert_eq!(best_losses, scalar_losses, "{best} against scalar");
    assert!(
        best_weights == scalar_weights,
        "the model files of {best} and scalar differ"
    );
}

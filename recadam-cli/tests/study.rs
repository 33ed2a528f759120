//! `recadam study` end to end on a tiny model the test builds and the real GLUE files: 2 tasks ×
//! 2 arms × 1 seed of a few steps, interrupted twice (after a finished run, and inside a run) and
//! resumed to the same rows as a study run straight through; the report's tables and figures; and
//! every bad input the issue lists refused with the line at fault, nothing run and nothing lost.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;
use common::{fails, glue_dir, succeeds};

/// A tiny sentence-embedding model folder (`modules.json` makes it one, so that the zero-shot
/// STS-B probe runs as it does for all-MiniLM-L6-v2).
fn tiny_model(dir: &Path) -> PathBuf {
    recadam_cli::tiny_model::write(dir, 11).unwrap();
    std::fs::write(dir.join("modules.json"), "[]").unwrap();
    dir.to_path_buf()
}

/// `recadam study` over RTE and CoLA, AdamW and RecAdam, seed 3, 4 steps each.
fn study(model: &Path, results: &Path, runs: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "study",
        "--tasks",
        "RTE,CoLA",
        "--arms",
        "adamw,recadam",
        "--seeds",
        "3",
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--max-seq-length",
        "32",
        "--eval-every",
        "2",
        "--log-every",
        "1",
        "--lr",
        "1e-3",
        "--k",
        "1",
        "--t0",
        "2",
        "--gamma",
        "100",
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec();
    for (option, value) in [
        ("--model", model),
        ("--data", &glue_dir()),
        ("--results", results),
        ("--runs", runs),
    ] {
        args.push(option.into());
        args.push(value.to_string_lossy().into_owned());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `args` with `option`'s value replaced.
fn with(mut args: Vec<String>, option: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == option).unwrap();
    args[at + 1] = value.into();
    args
}

/// The commit of the tree these tests are built from, if git is there to say.
fn git_head() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A row without what differs between two runs of the same work: times, the command line,
/// whether it was resumed.
fn outcome(row: &Value) -> Value {
    let mut row = row.clone();
    for key in [
        "seconds",
        "tokens_per_s",
        "command",
        "finished_unix",
        "resumed",
    ] {
        row.as_object_mut().unwrap().remove(key);
    }
    row
}

#[test]
fn an_interrupted_study_resumes_to_the_rows_of_one_straight_run_and_reports_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));

    let straight = tmp.path().join("straight.jsonl");
    succeeds(&study(&model, &straight, &tmp.path().join("runs-a"), &[]));
    let expected = rows(&straight);
    assert_eq!(expected.len(), 4);
    let order: Vec<(String, String)> = expected
        .iter()
        .map(|r| (r["task"].to_string(), r["arm"].to_string()))
        .collect();
    assert_eq!(
        order,
        [
            ("\"RTE\"", "\"adamw\""),
            ("\"RTE\"", "\"recadam\""),
            ("\"CoLA\"", "\"adamw\""),
            ("\"CoLA\"", "\"recadam\""),
        ]
        .map(|(t, a)| (t.to_string(), a.to_string()))
    );
    for row in &expected {
        assert_eq!(row["protocol"]["steps"], 4);
        assert_eq!(row["curve"].as_array().unwrap().len(), 4, "{row}");
        assert!(row["score"].as_f64().unwrap().is_finite());
        assert_eq!(
            row["score"],
            row["dev"][row["main_metric"].as_str().unwrap()]
        );
        assert!(row["stsb_zero_shot_before"].as_f64().is_some());
        assert!(row["stsb_zero_shot_after"].as_f64().is_some());
        assert!(row["distance"].as_f64().unwrap() > 0.0);
        assert!(!row["cpu"].as_str().unwrap().is_empty());
        // The commit the program was built from (stamped at build time; this test is built
        // from the same tree), where git can say it.
        if let Some(head) = git_head() {
            let commit = row["commit"].as_str().unwrap();
            assert_eq!(commit.trim_end_matches("-dirty"), head, "{row}");
        }
    }
    // λ: 0 for AdamW; RecAdam's sigmoid at step 4 with k 1, t0 2.
    assert_eq!(expected[0]["lambda"], 0.0);
    let lambda = expected[1]["lambda"].as_f64().unwrap();
    assert!(
        (lambda - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-9,
        "{lambda}"
    );

    // Interrupted after one run, then inside the second (a checkpoint at step 2), then resumed.
    let resumed = tmp.path().join("resumed.jsonl");
    let runs = tmp.path().join("runs-b");
    succeeds(&study(&model, &resumed, &runs, &["--max-runs", "1"]));
    assert_eq!(rows(&resumed).len(), 1);
    succeeds(&study(&model, &resumed, &runs, &["--stop-after", "2"]));
    assert_eq!(rows(&resumed).len(), 1, "a stopped run appended a row");
    assert!(runs.join("RTE-recadam-seed3").join("latest").exists());
    succeeds(&study(&model, &resumed, &runs, &[]));
    let got = rows(&resumed);
    assert_eq!(got.len(), 4);
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(outcome(g), outcome(e), "a resumed study differs");
    }
    assert_eq!(got[1]["resumed"], true);
    // Once more, on another machine (the rows alone): nothing to run, nothing appended.
    std::fs::remove_dir_all(&runs).unwrap();
    let before = std::fs::read(&resumed).unwrap();
    let out = succeeds(&study(&model, &resumed, &runs, &[]));
    assert_eq!(std::fs::read(&resumed).unwrap(), before);
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 already in"));

    // The report: tables with every row's score, and the figures.
    let report = tmp.path().join("report");
    let out = succeeds(&[
        "study".into(),
        "report".into(),
        "--results".into(),
        resumed.to_string_lossy().into_owned(),
        "--output".into(),
        report.to_string_lossy().into_owned(),
    ]);
    let md = std::fs::read_to_string(report.join("study.md")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), md);
    for needle in [
        "| task (metric) | adamw | recadam |",
        "| RTE (accuracy, main) |",
        "| CoLA (mcc, main) |",
        "recadam − adamw",
        "zero-shot STS-B",
        "Distance of the encoder",
        "(1 seed)",
    ] {
        assert!(md.contains(needle), "no `{needle}` in:\n{md}");
    }
    for row in &got {
        let score = format!("{:.4}", row["score"].as_f64().unwrap());
        assert!(md.contains(&score), "no {score} in:\n{md}");
    }
    // RecAdam's gain on RTE, seed against seed.
    let gain = got[1]["score"].as_f64().unwrap() - got[0]["score"].as_f64().unwrap();
    assert!(
        md.contains(&format!("{gain:+.4}")),
        "no gain {gain:+.4} in:\n{md}"
    );
    let scores = std::fs::read_to_string(report.join("scores.svg")).unwrap();
    assert_eq!(scores.matches("<circle").count(), 4, "one marker per row");
    let kept = std::fs::read_to_string(report.join("forgetting.svg")).unwrap();
    // Per source task: the pretrained value and one per row.
    assert_eq!(kept.matches("<circle").count(), 2 * 3);
    let curves = std::fs::read_to_string(report.join("curves.svg")).unwrap();
    assert!(curves.contains("λ(t)") && curves.contains("<polyline"));
}

#[test]
fn bad_manifests_results_and_glue_folders_are_refused_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(&tmp.path().join("model"));
    let runs = tmp.path().join("runs");
    let results = tmp.path().join("results.jsonl");
    let path = |s: &Path| s.to_string_lossy().into_owned();

    // Manifests.
    let manifest = tmp.path().join("manifest.jsonl");
    for (text, needle) in [
        (
            "{\"task\":\"RTE\",\"arm\":\"adamw\",\"seed\":0}\n{\"task\":\"QNLI\",\"arm\":\"adamw\",\"seed\":0}\n",
            "line 2: unknown task `QNLI`",
        ),
        (
            "{\"task\":\"RTE\",\"arm\":\"sgd\",\"seed\":0}\n",
            "line 1: unknown arm `sgd`",
        ),
        (
            "{\"task\":\"RTE\",\"arm\":\"adamw\",\"seed\":0}\n\n{\"task\":\"rte\",\"arm\":\"adamw\",\"seed\":0}\n",
            "line 3: RTE adamw seed 0 is listed twice",
        ),
        ("{\"task\":\"RTE\",\"arm\":\"adamw\"}\n", "line 1: not a manifest line"),
    ] {
        std::fs::write(&manifest, text).unwrap();
        let err = fails(&study(&model, &results, &runs, &["--manifest", &path(&manifest)]));
        assert!(err.contains(needle), "{err}");
        assert!(err.contains(&path(&manifest)), "{err}");
    }
    let err = fails(&study(&model, &results, &runs, &["--arms", "adamw,sgd"]));
    assert!(err.contains("--arms: unknown arm `sgd`"), "{err}");

    // A GLUE folder without a task the study names.
    let glue = tmp.path().join("glue");
    std::fs::create_dir_all(glue.join("RTE")).unwrap();
    for split in ["train.tsv", "dev.tsv"] {
        std::fs::copy(
            glue_dir().join("RTE").join(split),
            glue.join("RTE").join(split),
        )
        .unwrap();
    }
    let args = with(study(&model, &results, &runs, &[]), "--data", &path(&glue));
    let err = fails(&args);
    assert!(err.contains("has no CoLA"), "{err}");
    assert!(
        !runs.exists(),
        "a run started before every input was checked"
    );
    // Steps for one task of two: refused before the first run, not hours later.
    let err = fails(&with(
        study(&model, &results, &runs, &[]),
        "--steps",
        "RTE=4",
    ));
    assert!(
        err.contains("--steps names no step count for CoLA"),
        "{err}"
    );
    assert!(
        !runs.exists(),
        "a run started before every input was checked"
    );

    // Results files: a good row to damage, from a one-run study.
    let good = tmp.path().join("good.jsonl");
    let one_run = study(&model, &good, &tmp.path().join("runs-good"), &[]);
    succeeds(&with(with(one_run, "--tasks", "RTE"), "--arms", "adamw"));
    let row = std::fs::read_to_string(&good).unwrap();
    let mut other_protocol: Value = serde_json::from_str(row.trim()).unwrap();
    other_protocol["protocol"]["lr"] = serde_json::json!(0.5);
    let mut foreign: Value = serde_json::from_str(row.trim()).unwrap();
    foreign["extra"] = serde_json::json!(1);
    let mut other_model: Value = serde_json::from_str(row.trim()).unwrap();
    other_model["model"] = serde_json::json!("bert-base-uncased");
    other_model["task"] = serde_json::json!("SST-2");
    let cases = [
        (
            format!("{row}{{\"task\": \"RTE\", \"ar"),
            "line 2: not a study row",
        ),
        (
            format!("{row}{row}"),
            "line 2: a second row of RTE adamw seed 3 (the first is line 1)",
        ),
        (
            format!("{other_protocol}\n"),
            "line 1: the row of RTE adamw seed 3 is of another protocol",
        ),
        (
            format!("{row}{foreign}\n"),
            "line 2: not a study row: unknown field `extra`",
        ),
        (
            "{\"event\":\"train\",\"step\":1}\n".to_string(),
            "line 1: not a study row",
        ),
        (
            format!("{row}{other_model}\n"),
            "line 2: the row of SST-2 adamw seed 3 is of another model bert-base-uncased",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&results, &text).unwrap();
        let err = fails(&study(&model, &results, &runs, &[]));
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.contains(&path(&results)), "{err}");
        assert_eq!(
            std::fs::read_to_string(&results).unwrap(),
            text,
            "the results changed"
        );
        assert!(!runs.exists(), "a run started on a bad results file");
    }
    // The report refuses the same, and a study of two protocols.
    std::fs::write(
        &results,
        format!("{row}{}\n", {
            let mut v = other_protocol.clone();
            v["task"] = serde_json::json!("RTE");
            v["seed"] = serde_json::json!(4);
            v
        }),
    )
    .unwrap();
    let err = fails(&[
        "study".into(),
        "report".into(),
        "--results".into(),
        path(&results),
        "--output".into(),
        path(&tmp.path().join("report")),
    ]);
    assert!(
        err.contains("line 2: a RTE row of another protocol than line 1's"),
        "{err}"
    );

    // A run folder left by a study of other options is not resumed into this one.
    std::fs::remove_file(&results).unwrap();
    let cut = with(
        study(&model, &results, &runs, &["--stop-after", "1"]),
        "--tasks",
        "RTE",
    );
    succeeds(&cut);
    assert!(runs.join("RTE-adamw-seed3").join("latest").exists());
    let err = fails(&with(with(cut, "--lr", "2e-3"), "--stop-after", "2"));
    assert!(
        err.contains("RTE-adamw-seed3: the run cut off there is not this study's run of RTE adamw seed 3 (--lr differ)"),
        "{err}"
    );
    assert!(!results.exists());
}

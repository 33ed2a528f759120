//! The GLUE readers on the real files of testdata/glue (row counts from SOURCES.md, counted
//! there with Python's csv module and QUOTE_NONE), and on malformed input.

use std::path::{Path, PathBuf};

use recadam_std::glue::{self, Example, Label, Split, Task};

/// `RECADAM_GLUE_DIR` (default: the repository's `testdata/glue`).
fn glue_dir() -> PathBuf {
    recadam_testkit::shared_dir("RECADAM_GLUE_DIR", "testdata/glue")
}

fn read(task: Task, split: Split) -> Vec<Example> {
    glue::read(glue_dir(), task, split).unwrap_or_else(|e| panic!("{e}"))
}

fn class_counts(examples: &[Example]) -> [usize; 2] {
    let mut counts = [0; 2];
    for e in examples {
        match e.label {
            Label::Class(c) => counts[c] += 1,
            Label::Score(_) => panic!("a score in a classification task"),
        }
    }
    counts
}

#[test]
fn row_counts_of_the_real_files() {
    let expected = [
        (Task::Rte, 2490, 277),
        (Task::Mrpc, 3668, 408),
        (Task::Cola, 8551, 1043),
        (Task::Stsb, 5749, 1500),
        (Task::Sst2, 67349, 872),
    ];
    for (task, train, dev) in expected {
        assert_eq!(read(task, Split::Train).len(), train, "{task} train");
        assert_eq!(read(task, Split::Dev).len(), dev, "{task} dev");
    }
}

#[test]
fn label_counts_match_the_official_splits() {
    // SOURCES.md: RTE entailment / not_entailment, the others 1 / 0.
    assert_eq!(class_counts(&read(Task::Rte, Split::Train)), [1249, 1241]);
    assert_eq!(class_counts(&read(Task::Rte, Split::Dev)), [146, 131]);
    assert_eq!(class_counts(&read(Task::Mrpc, Split::Train)), [1194, 2474]);
    assert_eq!(class_counts(&read(Task::Mrpc, Split::Dev)), [129, 279]);
    assert_eq!(class_counts(&read(Task::Cola, Split::Train)), [2528, 6023]);
    assert_eq!(class_counts(&read(Task::Cola, Split::Dev)), [322, 721]);
    assert_eq!(
        class_counts(&read(Task::Sst2, Split::Train)),
        [29780, 37569]
    );
    assert_eq!(class_counts(&read(Task::Sst2, Split::Dev)), [428, 444]);
}

#[test]
fn fields_are_the_right_columns_and_quotes_are_text() {
    let mrpc = read(Task::Mrpc, Split::Train);
    // The first row, after the BOM'd header: an unbalanced-looking `"` stays in the text.
    assert_eq!(mrpc[0].label, Label::Class(1));
    assert!(mrpc[0]
        .text_a
        .starts_with("Amrozi accused his brother , whom he called \" the witness \""));
    assert!(mrpc[0]
        .text_b
        .as_deref()
        .unwrap()
        .starts_with("Referring to him as only \" the witness \""));
    let stsb = read(Task::Stsb, Split::Train);
    assert_eq!(stsb[0].text_a, "A plane is taking off.");
    assert_eq!(
        stsb[0].text_b.as_deref(),
        Some("An air plane is taking off.")
    );
    assert_eq!(stsb[0].label, Label::Score(5.0));
    assert_eq!(stsb[1].label, Label::Score(3.8));
    let rte = read(Task::Rte, Split::Train);
    assert_eq!(
        rte[0].text_a,
        "No Weapons of Mass Destruction Found in Iraq Yet."
    );
    assert_eq!(rte[0].label, Label::Class(1), "not_entailment is class 1");
    let cola = read(Task::Cola, Split::Dev);
    assert!(cola.iter().all(|e| e.text_b.is_none()));
    // The file has no final newline: its last row is still read whole.
    let last = std::fs::read_to_string(glue::path(glue_dir(), Task::Cola, Split::Dev)).unwrap();
    assert!(!last.ends_with('\n'));
    let last_sentence = last.rsplit('\t').next().unwrap();
    assert_eq!(cola.last().unwrap().text_a, last_sentence);
    let sst = read(Task::Sst2, Split::Dev);
    assert!(sst
        .iter()
        .all(|e| !e.text_a.is_empty() && e.text_b.is_none()));
}

fn parse_err(text: &str, task: Task) -> String {
    glue::parse(text.as_bytes(), task, Path::new("x.tsv"))
        .map(|e| format!("parsed {} rows", e.len()))
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_rows_name_the_file_and_line() {
    let rte = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n";
    let err = parse_err(rte, Task::Rte);
    assert!(
        err.contains("x.tsv, line 3") && err.contains("3 columns"),
        "{err}"
    );
    let bad_label = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n";
    let err = parse_err(bad_label, Task::Rte);
    assert!(err.contains("line 2") && err.contains("`maybe`"), "{err}");
    let bad_score = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n0\tg\tf\ty\t0\tn\tn\ta\tb\t7.5\n";
    assert!(parse_err(bad_score, Task::Stsb).contains("`7.5`"));
    let no_header = "0\ta\tb\tentailment\n";
    let err = parse_err(no_header, Task::Rte);
    assert!(err.contains("header") && err.contains("line 1"), "{err}");
    assert!(parse_err("", Task::Sst2).contains("empty"));
    let not_utf8 = b"sentence\tlabel\n\xff\xfe\t1\n";
    let err = glue::parse(not_utf8, Task::Sst2, Path::new("x.tsv")).unwrap_err();
    assert_eq!(err.line, Some(2), "{err}");
    let missing = glue::read("/nonexistent", Task::Rte, Split::Dev).unwrap_err();
    assert!(missing.to_string().contains("RTE/dev.tsv"), "{missing}");
    assert!(
        missing.to_string().contains("--data DIR or GLUE_DIR"),
        "a missing folder says how to give one: {missing}"
    );
}

#[test]
fn task_names_parse_in_any_case() {
    for task in Task::ALL {
        assert_eq!(task.name().parse::<Task>(), Ok(task));
        assert_eq!(
            task.name().to_lowercase().replace('-', "").parse::<Task>(),
            Ok(task)
        );
    }
    assert!("QNLI".parse::<Task>().unwrap_err().contains("QNLI"));
}

#[test]
fn the_fuzz_seeds_are_valid_files_of_their_task() {
    // fuzz/corpus/glue_tsv: the first byte picks the task, as in the fuzz target.
    let dir = recadam_testkit::workspace_root().join("fuzz/corpus/glue_tsv");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let task = Task::ALL[usize::from(bytes[0]) % Task::ALL.len()];
        let examples = glue::parse(&bytes[1..], task, &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(examples.len() >= 2, "{}", path.display());
        seen += 1;
    }
    assert!(seen >= Task::ALL.len());
}

/// With no `--data` and no `GLUE_DIR`, the program reads the repository's own copy, wherever it is
/// started from: that folder is the workspace root's `testdata/glue`, and it holds every task.
#[test]
fn default_folder_is_the_repository_copy() {
    let dir = glue::default_dir();
    assert_eq!(dir, recadam_testkit::workspace_root().join("testdata/glue"));
    for task in [Task::Rte, Task::Mrpc, Task::Cola, Task::Stsb, Task::Sst2] {
        assert!(glue::path(&dir, task, Split::Train).is_file(), "{task:?}");
    }
}

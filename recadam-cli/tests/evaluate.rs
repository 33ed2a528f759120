//! Scoring on a tiny model made by the test: embeddings ignore padding, the zero-shot similarity
//! ranks identical pairs above unrelated ones, and logits do not depend on batching.

use recadam_std::bert::{BertTokenizer, BertWeights, Head};
use recadam_std::evaluate::{predict, zero_shot_similarity};
use recadam_std::glue::{Example, Label};
use recadam_std::trainer::Classifier;

fn tiny() -> (tempfile::TempDir, Classifier, BertTokenizer) {
    let dir = tempfile::tempdir().unwrap();
    recadam_cli::tiny_model::write(dir.path(), 3).unwrap();
    let (encoder, _) = BertWeights::from_folder(dir.path()).unwrap();
    let head = Head::new(2, encoder.config.hidden_size, 1);
    let tokenizer = BertTokenizer::from_file(dir.path().join("tokenizer.json"), 64).unwrap();
    (dir, Classifier { encoder, head }, tokenizer)
}

const SENTENCES: [&str; 6] = [
    "a cat sat on the mat.",
    "the stock market fell sharply today",
    "he plays the violin",
    "rain is expected tomorrow, then sun",
    "x",
    "seven quick zebras jumped over 3 lazy dogs!",
];

#[test]
fn mean_pooling_ignores_padding() {
    let (_dir, model, tokenizer) = tiny();
    let h = model.encoder.config.hidden_size;
    let alone = model
        .mean_pooled(&tokenizer.encode(&[(SENTENCES[4], None)]).unwrap(), 1)
        .unwrap();
    let padded = tokenizer
        .encode(&[(SENTENCES[4], None), (SENTENCES[5], None)])
        .unwrap();
    assert!(
        padded.attention_mask.contains(&0),
        "the short row is padded"
    );
    let batched = model.mean_pooled(&padded, 1).unwrap();
    for (a, b) in alone.iter().zip(&batched[..h]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn logits_do_not_depend_on_batch_size() {
    let (_dir, model, tokenizer) = tiny();
    let examples: Vec<Example> = SENTENCES
        .iter()
        .zip(SENTENCES.iter().rev())
        .map(|(a, b)| Example {
            text_a: a.to_string(),
            text_b: Some(b.to_string()),
            label: Label::Class(0),
        })
        .collect();
    let one = predict(&model, &tokenizer, &examples, 1, 1).unwrap();
    let all = predict(&model, &tokenizer, &examples, 4, 1).unwrap();
    assert_eq!(one.len(), examples.len() * 2);
    for (a, b) in one.iter().zip(&all) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn zero_shot_similarity_ranks_identical_pairs_first() {
    let (_dir, model, tokenizer) = tiny();
    // Identical pairs scored 5, mismatched pairs scored 0: even a random encoder gives identical
    // sentences cosine 1, so the rank correlation is high, if both sentences are embedded.
    let mut pairs = Vec::new();
    for (i, a) in SENTENCES.iter().enumerate() {
        pairs.push((a, a, 5.0));
        pairs.push((a, &SENTENCES[(i + 1) % SENTENCES.len()], 0.0));
    }
    let examples: Vec<Example> = pairs
        .iter()
        .map(|(a, b, s)| Example {
            text_a: a.to_string(),
            text_b: Some(b.to_string()),
            label: Label::Score(*s),
        })
        .collect();
    let rho = zero_shot_similarity(&model, &tokenizer, &examples, 4, 1).unwrap();
    assert!(rho > 0.8, "{rho}");
    // Classification labels are not similarity scores: a typed error, not a number.
    let mut wrong = examples.clone();
    wrong[3].label = Label::Class(1);
    let err = zero_shot_similarity(&model, &tokenizer, &wrong, 4, 1).unwrap_err();
    assert!(err.to_string().contains("example 3"), "{err}");
}

#[test]
fn classification_scores_refuse_labels_of_another_kind() {
    use recadam_std::evaluate::score;
    use recadam_std::glue::Task;
    let example = |label| Example {
        text_a: "a".into(),
        text_b: Some("b".into()),
        label,
    };
    // Logits [2 examples, 2 classes]: example 0 predicts class 1, example 1 class 0.
    let logits = [0.0f32, 1.0, 1.0, 0.0];
    let right = [example(Label::Class(1)), example(Label::Class(1))];
    assert_eq!(
        score(Task::Rte, &logits, &right).unwrap(),
        vec![("accuracy", 0.5)]
    );
    for wrong in [Label::Score(2.5), Label::Class(2)] {
        let examples = [example(Label::Class(1)), example(wrong)];
        let err = score(Task::Rte, &logits, &examples).unwrap_err();
        assert!(err.to_string().contains("example 1"), "{err}");
    }
}

/// Training reads labels through the same functions as scoring: a label of the wrong kind for
/// the task is an error naming the example, never a silent class 0 (as finetune once made it).
#[test]
fn training_labels_follow_the_scoring_policy() {
    use recadam_std::evaluate::{gold_classes, gold_scores};
    use recadam_std::glue::Task;
    let example = |label| Example {
        text_a: "a".into(),
        text_b: None,
        label,
    };
    let classes = [example(Label::Class(0)), example(Label::Class(1))];
    assert_eq!(gold_classes(Task::Cola, &classes).unwrap(), vec![0, 1]);
    let mixed = [example(Label::Class(1)), example(Label::Score(0.0))];
    let err = gold_classes(Task::Cola, &mixed).unwrap_err();
    assert!(err.to_string().contains("example 1"), "{err}");
    let scores = [example(Label::Score(4.5)), example(Label::Score(0.0))];
    assert_eq!(gold_scores(Task::Stsb, &scores).unwrap(), vec![4.5, 0.0]);
    let err = gold_scores(Task::Stsb, &classes).unwrap_err();
    assert!(err.to_string().contains("example 0"), "{err}");
}

/// The zero-shot probe of a sentence-embedding model skips a GLUE folder without STS-B, but an
/// STS-B file that is there and does not read is an error (it used to be skipped in silence).
#[test]
fn a_damaged_similarity_probe_file_is_an_error() {
    use recadam_std::evaluate::similarity_probe;
    let (model, _, _) = tiny();
    std::fs::write(model.path().join("modules.json"), "[]").unwrap();
    let glue = tempfile::tempdir().unwrap();
    assert!(similarity_probe(model.path(), glue.path())
        .unwrap()
        .is_none());
    std::fs::create_dir_all(glue.path().join("STS-B")).unwrap();
    std::fs::write(glue.path().join("STS-B/dev.tsv"), "not\ta\tgood\theader\n").unwrap();
    let err = similarity_probe(model.path(), glue.path()).unwrap_err();
    assert!(err.to_string().contains("STS-B/dev.tsv"), "{err}");
    // Not a sentence-embedding model: no probe, whatever the folder holds.
    std::fs::remove_file(model.path().join("modules.json")).unwrap();
    assert!(similarity_probe(model.path(), glue.path())
        .unwrap()
        .is_none());
}

/// The demo's update rules are a typed choice: AdamW has no penalty, RecAdam the decoupled one,
/// the ablation the coupled one (the demo once treated every name but "adamw" as RecAdam).
#[test]
fn demo_configurations_follow_the_optimizer_kind() {
    use recadam_cli::demo::{finetune_config, DemoOptions};
    use recadam_cli::finetune::OptimizerKind;
    use recadam_core::PenaltyMode;
    let o = DemoOptions::default();
    let adamw = finetune_config(&o, OptimizerKind::Adamw);
    assert!(!adamw.has_penalty());
    let recadam = finetune_config(&o, OptimizerKind::Recadam);
    assert!(recadam.has_penalty() && recadam.penalty_mode == PenaltyMode::Decoupled);
    assert_eq!(recadam.pretrain_cof, o.gamma);
    let coupled = finetune_config(&o, OptimizerKind::RecadamCoupled);
    assert!(coupled.has_penalty() && coupled.penalty_mode == PenaltyMode::Coupled);
}

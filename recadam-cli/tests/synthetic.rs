//! The demo's synthetic tasks: labels recomputed from the token ids, independently of the
//! generator, and the classes balanced.

use recadam_cli::synthetic::{model_config, Dataset, SyntheticTask};

/// Content words start at id 3, in four groups of seven.
fn group(id: u32) -> usize {
    (id as usize - 3) / 7
}

#[test]
fn labels_follow_from_the_words() {
    let n = 4000;
    let source = Dataset::generate(SyntheticTask::Source, n, 11);
    let target = Dataset::generate(SyntheticTask::Target, n, 12);
    let vocab = model_config().vocab_size as u32;
    for (data, task) in [
        (&source, SyntheticTask::Source),
        (&target, SyntheticTask::Target),
    ] {
        let mut per_class = vec![0usize; task.classes()];
        for (row, &label) in data.labels.iter().enumerate() {
            let ids = &data.ids[row * data.seq..(row + 1) * data.seq];
            assert_eq!((ids[0], ids[data.seq - 1]), (1, 2), "[CLS] … [SEP]");
            let words = &ids[1..data.seq - 1];
            assert!(words.iter().all(|&w| (3..vocab).contains(&w)));
            let mut counts = [0usize; 4];
            words.iter().for_each(|&w| counts[group(w)] += 1);
            let max = *counts.iter().max().unwrap();
            assert_eq!(counts.iter().filter(|&&c| c == max).count(), 1, "no ties");
            let topic = counts.iter().position(|&c| c == max).unwrap();
            let expected = match task {
                SyntheticTask::Source => topic,
                SyntheticTask::Target => usize::from(topic < 2),
            };
            assert_eq!(label, expected);
            per_class[label] += 1;
        }
        for &c in &per_class {
            let share = c as f64 / n as f64;
            assert!(
                (share - 1.0 / task.classes() as f64).abs() < 0.05,
                "{per_class:?}"
            );
        }
    }
    // Deterministic in the seed.
    assert_eq!(
        Dataset::generate(SyntheticTask::Source, 50, 11).ids,
        source.ids[..50 * source.seq]
    );
}

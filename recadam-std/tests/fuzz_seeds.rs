//! The checkpoint fuzz target's seed corpus is made by the project: valid checkpoints of the
//! test kit's small setup. This test checks that the committed seeds still load (so the fuzzer
//! mutates valid files of the current format); `RECADAM_WRITE_FUZZ_SEEDS=1` rewrites them.

use recadam_std::bert::BertWeights;
use recadam_testkit::fixtures::{small_optimizer, small_pretrained, small_train, tiny_bert_config};
use recadam_testkit::workspace_root;

const STEPS: [u64; 4] = [0, 1, 3, 12];

#[test]
#[cfg_attr(miri, ignore = "file system")]
fn the_checkpoint_seed_corpus_is_valid() {
    let dir = workspace_root().join("fuzz/corpus/checkpoint_load");
    let pretrained = small_pretrained();
    if std::env::var_os("RECADAM_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for steps in STEPS {
            let mut opt = small_optimizer(&pretrained);
            let mut values = pretrained.clone();
            small_train(&mut opt, &mut values, steps);
            opt.save_checkpoint(dir.join(format!("seed-{steps}-steps.safetensors")))
                .unwrap();
        }
    }
    for steps in STEPS {
        let path = dir.join(format!("seed-{steps}-steps.safetensors"));
        let mut opt = small_optimizer(&pretrained);
        opt.load_checkpoint(&path).unwrap_or_else(|e| {
            panic!(
                "seed {}: {e} (rerun with RECADAM_WRITE_FUZZ_SEEDS=1)",
                path.display()
            )
        });
        assert_eq!(opt.steps(), steps);
    }
}

/// The model fuzz target's seeds: tiny random models, which must load.
#[test]
#[cfg_attr(miri, ignore = "file system")]
fn the_model_seed_corpus_is_valid() {
    let dir = workspace_root().join("fuzz/corpus/safetensors_model");
    let seeds = [1u64, 2];
    if std::env::var_os("RECADAM_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for seed in seeds {
            let bytes = BertWeights::random(tiny_bert_config(), seed)
                .to_safetensors_bytes()
                .unwrap();
            std::fs::write(dir.join(format!("tiny-random-{seed}.safetensors")), bytes).unwrap();
        }
    }
    for seed in seeds {
        let path = dir.join(format!("tiny-random-{seed}.safetensors"));
        let (w, report) =
            BertWeights::from_safetensors(tiny_bert_config(), &path).unwrap_or_else(|e| {
                panic!(
                    "seed {}: {e} (rerun with RECADAM_WRITE_FUZZ_SEEDS=1)",
                    path.display()
                )
            });
        assert_eq!(w.data, BertWeights::random(tiny_bert_config(), seed).data);
        assert!(report.unknown.is_empty());
    }
}

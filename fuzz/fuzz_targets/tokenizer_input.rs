//! Arbitrary text (and text pairs) through the real model's tokenizer: a batch whose ids are
//! in the vocabulary, whose rows are no longer than the limit and start with [CLS], or a typed
//! error; never a panic. Needs the model folder (scripts/fetch-minilm.sh, or RECADAM_MINILM_DIR).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use recadam_std::bert::BertTokenizer;

/// Two limits: a short one that truncates most inputs (pairs longest-first), and 128.
const LIMITS: [usize; 2] = [9, 128];

fn tokenizers() -> &'static [BertTokenizer] {
    static TOKENIZERS: OnceLock<Vec<BertTokenizer>> = OnceLock::new();
    TOKENIZERS.get_or_init(|| {
        let dir = std::env::var("RECADAM_MINILM_DIR").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/models/all-MiniLM-L6-v2"
            )
            .into()
        });
        LIMITS
            .iter()
            .map(|&n| {
                BertTokenizer::from_file(format!("{dir}/tokenizer.json"), n)
                    .expect("run scripts/fetch-minilm.sh first")
            })
            .collect()
    })
}

fuzz_target!(|input: (&str, Option<&str>, bool)| {
    let (a, b, short) = input;
    let tokenizer = &tokenizers()[usize::from(!short)];
    let max_len = tokenizer.max_len();
    match tokenizer.encode(&[(a, b), ("x", None)]) {
        Ok(batch) => {
            assert_eq!(batch.batch, 2);
            assert!(
                batch.seq <= max_len,
                "row of {} tokens for a limit of {max_len}",
                batch.seq
            );
            assert!(batch.input_ids.iter().all(|&id| id < 30522));
            assert_eq!(batch.input_ids[0], 101, "[CLS] first");
            assert!(batch.token_type_ids.iter().all(|&t| t <= 1));
            assert_eq!(batch.input_ids.len(), batch.attention_mask.len());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});

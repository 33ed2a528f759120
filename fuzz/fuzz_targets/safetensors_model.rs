//! Arbitrary bytes, and mutations of a valid model file (the seed corpus), through the model
//! weights loader: weights of the expected shapes or a typed error naming what is wrong; never a
//! panic, never an allocation the input does not justify (run with -malloc_limit_mb).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use recadam_std::bert::BertWeights;
use recadam_testkit::fixtures::tiny_bert_config;

fuzz_target!(|data: &[u8]| {
    let config = tiny_bert_config();
    match BertWeights::from_safetensors_bytes(config.clone(), data, Path::new("fuzz")) {
        Ok((weights, _report)) => {
            assert_eq!(weights.data.len(), weights.layout.len());
            // What loaded writes out and loads again to the same values.
            let bytes = weights.to_safetensors_bytes().unwrap();
            let (again, _) =
                BertWeights::from_safetensors_bytes(config, &bytes, Path::new("fuzz")).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&again.data), bits(&weights.data));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});

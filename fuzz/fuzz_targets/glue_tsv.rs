//! Arbitrary bytes as a GLUE task's TSV file (the first byte picks the task): a list of
//! examples whose fields hold no tab or line break and whose labels fit the task, or an error
//! that names the file; never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use recadam_std::glue::{parse, Label, Task};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let task = Task::ALL[usize::from(pick) % Task::ALL.len()];
    match parse(bytes, task, Path::new("fuzz.tsv")) {
        Ok(examples) => {
            for e in &examples {
                let fields = std::iter::once(&e.text_a).chain(e.text_b.as_ref());
                for f in fields {
                    assert!(!f.contains('\t') && !f.contains('\n'), "{f:?}");
                }
                assert_eq!(e.text_b.is_some(), task.is_pair());
                match e.label {
                    Label::Class(c) => assert!(task != Task::Stsb && c < task.outputs()),
                    Label::Score(s) => assert!(task == Task::Stsb && (0.0..=5.0).contains(&s)),
                }
            }
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.tsv"), "{e}"),
    }
});

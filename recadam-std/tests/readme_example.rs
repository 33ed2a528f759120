//! The README's embedder example is `examples/embedder.rs`, shown verbatim: this runs it (its
//! assertions are the checks) and checks that the README still shows the file's code.

#[path = "../examples/embedder.rs"]
mod embedder;

#[test]
fn the_embedder_example_runs() {
    embedder::main().unwrap();
}

#[test]
fn the_readme_shows_the_embedder_example() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/embedder.rs");
    // The README shows the code from the first `use` on (the file's header is for the file).
    let code = &example[example.find("use ").unwrap()..];
    assert!(
        readme.contains(code),
        "README.md no longer shows examples/embedder.rs: copy the file from its first `use` into the README's block"
    );
}

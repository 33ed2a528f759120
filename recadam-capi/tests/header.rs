//! The committed header is what cbindgen generates from this crate's source now: a change to
//! the C interface that was not carried into `include/recadam.h` fails here.
//! `RECADAM_BLESS=1 cargo test -p recadam-capi --test header` writes it anew.

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen cannot generate the header")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let path = crate_dir.join("include/recadam.h");
    if std::env::var_os("RECADAM_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/recadam.h");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/recadam.h differs from what cbindgen generates from src/: run \
         `RECADAM_BLESS=1 cargo test -p recadam-capi --test header` and commit the header"
    );
}

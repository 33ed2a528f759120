//! librecadam again, as an example target: `cargo test` builds examples (and rebuilds them when
//! the library changes), but builds the library itself only as the rlib the tests link. The C
//! tests link this build (`target/<profile>/examples/librecadam_c.{a,so}`), so they always test
//! the current source; users build the library itself (`cargo build --release -p recadam-capi`).

pub use recadam::*;

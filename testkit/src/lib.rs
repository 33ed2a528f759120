//! Test support for the recadam crates (not published).
//!
//! - [`shared_dir`]: where the reference data lives (DESIGN section 3 environment variables).
//! - [`golden`]: the official RecAdam trajectories and their replay through any update function.
//! - [`fixtures`]: a small optimizer setup shared by tests, fuzz targets and their seed corpus.

pub mod fixtures;
pub mod golden;

use std::path::{Path, PathBuf};

/// The workspace root (the folder of the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the workspace root")
        .to_path_buf()
}

/// The folder named by the environment variable `var`, or `default` (relative to the workspace
/// root, like every relative path given in the variable, so that commands typed at the
/// root work as written).
pub fn shared_dir(var: &str, default: &str) -> PathBuf {
    let given = std::env::var_os(var).map(PathBuf::from);
    let path = given.unwrap_or_else(|| PathBuf::from(default));
    if path.is_absolute() {
        path
    } else {
        workspace_root().join(path)
    }
}

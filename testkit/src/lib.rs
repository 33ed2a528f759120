//! Test support for the recadam crates (not published).
//!
//! - [`shared_dir`]: where the reference data lives (DESIGN section 3 environment variables).
//! - [`golden`]: the official RecAdam trajectories and their replay through any update function.
//! - `fixtures` (feature `optimizer`): a small optimizer setup shared by tests, fuzz targets and
//!   their seed corpus.

#[cfg(feature = "optimizer")]
pub mod fixtures;
pub mod golden;
pub mod golden_storage;

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

/// Whether two arrays hold the same bits, where a NaN may differ from another NaN only in its
/// payload (which differs between instruction sets).
pub fn same_bits<T: recadam_core::Element>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let (x, y) = (x.widen_to_f64(), y.widen_to_f64());
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        })
}

/// The parameter shapes of all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 22.7 M parameters in
/// 103 tensors), in the model's order: what the adapters' benchmarks step.
pub fn minilm_shapes() -> Vec<Vec<usize>> {
    let (h, i) = (384, 1536);
    let mut s = vec![vec![30522, h], vec![512, h], vec![2, h], vec![h], vec![h]];
    for _ in 0..6 {
        for _ in 0..4 {
            s.extend([vec![h, h], vec![h]]);
        }
        s.extend([
            vec![h],
            vec![h],
            vec![i, h],
            vec![i],
            vec![h, i],
            vec![h],
            vec![h],
            vec![h],
        ]);
    }
    s.extend([vec![h, h], vec![h]]);
    s
}

//! Stamps the program with the commit of the source tree it is built from (`recadam study` writes
//! it into every row): `-dirty` when tracked files other than `docs/results` differ from that
//! commit, `unknown` where git or the repository is not there. Computed here, at build time, so a
//! row names the code that ran, whatever the tree holds when the study runs.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn main() {
    let stamp = match git(&["rev-parse", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            // The results file is left out: a study appends to it as it goes.
            let status = [
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":(top)",
                ":(top,exclude)docs/results",
            ];
            match git(&status) {
                Some(changes) if changes.is_empty() => commit,
                _ => format!("{commit}-dirty"),
            }
        }
        _ => "unknown".into(),
    };
    println!("cargo:rustc-env=RECADAM_SOURCE_COMMIT={stamp}");

    // Stamp again when the commit moves (HEAD, its branch, the index) or a source the program is
    // built from changes (a tree that becomes dirty without a commit).
    if let (Some(git_dir), Some(common)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ) {
        let mut watched = vec![
            Path::new(&git_dir).join("HEAD"),
            Path::new(&git_dir).join("index"),
            Path::new(&common).join("packed-refs"),
        ];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(Path::new(&common).join(branch));
        }
        for path in watched.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    for dir in [
        "src",
        "../recadam-core/src",
        "../recadam-simd/src",
        "../recadam-std/src",
        "../Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={dir}");
    }
}

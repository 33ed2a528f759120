//! What the program's end-to-end tests share: the program to run, the GLUE folder, and the
//! checks on how a run ended. Each test crate uses its own part of it.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The GLUE files the tests read: `RECADAM_GLUE_DIR`, or the repository's copy.
pub fn glue_dir() -> PathBuf {
    recadam_testkit::shared_dir("RECADAM_GLUE_DIR", "testdata/glue")
}

/// The `recadam` program to test: this build's, or `RECADAM_CLI_BIN` run through
/// `RECADAM_CLI_RUNNER` (words; CI runs the aarch64 build under `qemu-aarch64` this way).
pub fn program() -> Command {
    let bin =
        std::env::var("RECADAM_CLI_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_recadam").into());
    match std::env::var("RECADAM_CLI_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// `recadam args…`, however it ends.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    program().args(args).output().expect("run recadam")
}

/// `recadam args…`, which must succeed.
pub fn succeeds<S: AsRef<OsStr> + Debug>(args: &[S]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "recadam {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The error `recadam args…` stops with (it must fail).
pub fn fails<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "recadam {args:?} did not fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The checkpoint folder a run's `latest` names (its first word; a checksum follows).
pub fn latest(run: &Path) -> String {
    let text = std::fs::read_to_string(run.join("latest")).unwrap();
    text.split_whitespace().next().unwrap().to_owned()
}

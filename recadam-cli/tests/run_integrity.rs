//! Fault injection over real run folders of `recadam finetune` (a tiny model the test builds, the
//! real RTE files): every file a resume reads is damaged in every way the issue lists (a flipped
//! bit at several offsets, header and data; truncated; deleted; swapped with another run's copy),
//! and each case must give an error naming the file, change no file, and refuse `eval` as well.
//! Also: the process killed while it writes checkpoints, and a full disk (a small tmpfs).
//!
//! `cargo test -p recadam-cli --test run_integrity -- --nocapture` prints the table of
//! docs/robustness.md (fault × file → the error's first line).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use recadam_std::run_dir::read_checkpoint;

mod common;
use common::{glue_dir, latest, program, run, succeeds};

/// `recadam finetune` on RTE with the tiny model: `steps` steps, logged each step.
fn finetune_args(model: &Path, out: &Path, seed: u64, steps: u64) -> Vec<String> {
    let mut args: Vec<String> = [
        "finetune",
        "--task",
        "RTE",
        "--batch-size",
        "4",
        "--max-seq-length",
        "32",
        "--log-every",
        "1",
        "--eval-limit",
        "8",
        "--lr",
        "1e-3",
        "--gamma",
        "10",
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec();
    for (option, value) in [
        ("--model", model.to_string_lossy().into_owned()),
        ("--data", glue_dir().to_string_lossy().into_owned()),
        ("--output", out.to_string_lossy().into_owned()),
        ("--seed", seed.to_string()),
        ("--steps", steps.to_string()),
    ] {
        args.push(option.into());
        args.push(value);
    }
    args
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Every file under `root` with its bytes (folders as empty entries), to compare before and after.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                all.insert(rel, None);
                stack.push(path);
            } else {
                all.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    all
}

/// Runs `args`, which must fail without changing any file of `folder`; returns what it printed
/// on stderr.
fn refused_without_change(folder: &Path, args: &[String], what: &str) -> String {
    let before = snapshot(folder);
    let out = run(args);
    assert!(!out.status.success(), "{what}: recadam went on");
    assert!(
        snapshot(folder) == before,
        "{what}: a refused command changed the folder"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn final_model(run: &Path) -> Vec<u8> {
    std::fs::read(run.join(latest(run)).join("model.safetensors")).unwrap()
}

enum Fault {
    /// One bit of the byte at this offset (negative: from the end) flipped.
    Flip(i64),
    Truncate,
    Delete,
    /// Replaced by the same file of another run.
    Swap,
}

impl Fault {
    fn describe(&self) -> String {
        match self {
            Fault::Flip(at) => format!("bit flipped at byte {at}"),
            Fault::Truncate => "truncated to half".into(),
            Fault::Delete => "deleted".into(),
            Fault::Swap => "another run's copy".into(),
        }
    }

    fn apply(&self, file: &Path, other: &Path) {
        match self {
            Fault::Flip(at) => {
                let mut bytes = std::fs::read(file).unwrap();
                let len = bytes.len() as i64;
                let i = if *at < 0 {
                    len + at
                } else {
                    *at.min(&(len - 1))
                };
                bytes[i as usize] ^= 0x01;
                std::fs::write(file, bytes).unwrap();
            }
            Fault::Truncate => {
                let bytes = std::fs::read(file).unwrap();
                std::fs::write(file, &bytes[..bytes.len() / 2]).unwrap();
            }
            Fault::Delete => std::fs::remove_file(file).unwrap(),
            Fault::Swap => {
                std::fs::copy(other, file).unwrap();
            }
        }
    }
}

/// The pristine folders the fault cases start from: run A stopped after step 2 (the one
/// damaged), and run B, the same with another seed (the source of swapped files).
struct Runs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    a: PathBuf,
    b: PathBuf,
}

fn two_stopped_runs() -> Runs {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let model = root.join("model");
    recadam_cli::tiny_model::write(&model, 7).unwrap();
    let (a, b) = (root.join("a"), root.join("b"));
    for (out, seed) in [(&a, 1), (&b, 2)] {
        succeeds(&with(
            finetune_args(&model, out, seed, 4),
            &["--stop-after", "2"],
        ));
    }
    Runs {
        _tmp: tmp,
        root,
        model,
        a,
        b,
    }
}

#[test]
fn no_damaged_file_lets_resume_or_eval_proceed_and_nothing_changes() {
    let runs = two_stopped_runs();
    let checkpoint = latest(&runs.a);
    assert_eq!(checkpoint, "checkpoint-000002");
    assert!(read_checkpoint(&runs.a).unwrap().is_some());
    let files = [
        "latest".to_string(),
        format!("{checkpoint}/manifest.json"),
        format!("{checkpoint}/model.safetensors"),
        format!("{checkpoint}/optimizer.safetensors"),
        format!("{checkpoint}/run.json"),
        "log.jsonl".to_string(),
    ];
    // Offsets: the first and last byte, inside a safetensors header (byte 20) and in the data
    // or body (the middle); in `latest`, inside the step number and inside the checksum.
    let faults = |file: &str| -> Vec<Fault> {
        let mut at = vec![0, 20, -1];
        let len = std::fs::metadata(runs.a.join(file)).unwrap().len() as i64;
        at.push(len / 2);
        if file == "latest" {
            at = vec![0, 16, 20, 40, -1];
        }
        let mut f: Vec<Fault> = at.into_iter().map(Fault::Flip).collect();
        f.extend([Fault::Truncate, Fault::Delete, Fault::Swap]);
        f
    };
    let mut table = Vec::new();
    let mut case_number = 0;
    for file in &files {
        for fault in faults(file) {
            case_number += 1;
            let case = runs.root.join(format!("case-{case_number}"));
            copy_dir(&runs.a, &case);
            fault.apply(&case.join(file), &runs.b.join(file));
            let before = snapshot(&case);
            let what = format!("{file}, {}", fault.describe());
            let resume = with(finetune_args(&runs.model, &case, 1, 4), &["--resume"]);
            let err = refused_without_change(&case, &resume, &what);
            let name = Path::new(file).file_name().unwrap().to_string_lossy();
            assert!(
                err.contains(name.as_ref()),
                "{what}: the error names no file: {err}"
            );
            assert!(read_checkpoint(&case).map_or(true, |c| c.is_none()) || file == "log.jsonl");
            // `eval` reads the checkpoint but not the log.
            let eval = run(&[
                "eval".into(),
                "--model".into(),
                runs.model.to_string_lossy().into_owned(),
                "--task".into(),
                "RTE".into(),
                "--data".into(),
                glue_dir().to_string_lossy().into_owned(),
                "--run".into(),
                case.to_string_lossy().into_owned(),
                "--max-seq-length".into(),
                "32".into(),
                "--threads".into(),
                "1".into(),
            ]);
            assert_eq!(
                eval.status.success(),
                file == "log.jsonl",
                "{what}: eval {}",
                String::from_utf8_lossy(&eval.stderr)
            );
            assert!(snapshot(&case) == before, "{what}: eval changed the folder");
            let first_line = err
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .replace(&case.to_string_lossy().into_owned(), "OUT");
            table.push(format!(
                "| `{file}` | {} | {first_line} |",
                fault.describe()
            ));
            std::fs::remove_dir_all(&case).unwrap();
        }
    }
    println!("| file | fault | `--resume` says |\n|---|---|---|");
    for row in table {
        println!("{row}");
    }
    // The undamaged folder resumes, to the same final weights as an uninterrupted run.
    let straight = runs.root.join("straight");
    succeeds(&finetune_args(&runs.model, &straight, 1, 4));
    succeeds(&with(
        finetune_args(&runs.model, &runs.a, 1, 4),
        &["--resume"],
    ));
    assert!(final_model(&runs.a) == final_model(&straight));
}

/// A run killed while it writes checkpoints (one each step) always leaves a verified checkpoint
/// named by `latest` (or none yet, before the first), never a torn one; resuming from wherever it
/// stopped ends with the same weights as a run that was never killed.
#[test]
fn a_kill_while_checkpointing_leaves_the_previous_checkpoint_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    recadam_cli::tiny_model::write(&model, 7).unwrap();
    let steps = 8;
    let every_step =
        |out: &Path| with(finetune_args(&model, out, 3, steps), &["--eval-every", "1"]);
    let straight = tmp.path().join("straight");
    succeeds(&every_step(&straight));

    let out = tmp.path().join("killed");
    let mut kills = 0u32;
    let mut resumed = false;
    // Each round kills the run once the staging folder of a step past the kills so far appears
    // (a checkpoint being written), after a delay that grows with the kills, so that they land at
    // different points of the write and the run gets further each time. A round whose run ends
    // before a kill lands (the write was too quick to see) starts the folder afresh.
    let mut round = 0;
    while kills < 5 && round < 30 {
        round += 1;
        let args = if resumed {
            with(every_step(&out), &["--resume"])
        } else {
            every_step(&out)
        };
        let mut child = program()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut killed = false;
        while started.elapsed() < Duration::from_secs(60) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            let staging = std::fs::read_dir(&out)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix(".checkpoint-")
                        .and_then(|rest| rest.strip_suffix(".partial"))
                        .and_then(|step| step.parse::<u64>().ok())
                        .is_some_and(|step| step > u64::from(kills) + 1)
                });
            if staging {
                std::thread::sleep(Duration::from_micros(300 * u64::from(kills)));
                child.kill().unwrap();
                killed = true;
                break;
            }
        }
        child.wait().unwrap();
        match read_checkpoint(&out) {
            Ok(Some(c)) => {
                println!(
                    "round {round} (killed: {killed}): latest is step {}",
                    c.step
                );
                resumed = true;
            }
            Ok(None) => {
                println!("round {round} (killed: {killed}): no checkpoint named yet");
                resumed = false;
            }
            Err(e) => panic!("round {round} left a damaged checkpoint: {e}"),
        }
        if killed {
            kills += 1;
        } else {
            std::fs::remove_dir_all(&out).unwrap();
            resumed = false;
        }
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed while a checkpoint was written, in {round} rounds"
    );
    let last = if resumed {
        with(every_step(&out), &["--resume"])
    } else {
        every_step(&out)
    };
    succeeds(&last);
    assert!(
        final_model(&out) == final_model(&straight),
        "the killed run ended elsewhere"
    );
}

/// A disk that fills while a checkpoint is written: a clear error, the previous checkpoint intact
/// and still the latest, and the run resumes from it (elsewhere) to the uninterrupted weights.
/// The disk is a small tmpfs in a private mount namespace (`unshare`, which needs root); where
/// that is not allowed the test says so and passes, unless `RECADAM_REQUIRE_TMPFS=1` (CI).
#[test]
fn a_full_disk_while_checkpointing_is_an_error_and_keeps_the_previous_checkpoint() {
    let allowed = Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        assert!(
            std::env::var_os("RECADAM_REQUIRE_TMPFS").is_none(),
            "RECADAM_REQUIRE_TMPFS is set, but `unshare --mount` is not allowed here"
        );
        eprintln!("skipped: `unshare --mount` is not allowed here (it needs root)");
        return;
    }
    let runs = two_stopped_runs();
    let before = snapshot(&runs.a);
    // Room for what is there and a little more, not for a second checkpoint.
    let used: u64 = before
        .values()
        .map(|f| {
            f.as_ref()
                .map_or(4096, |b| (b.len() as u64).div_ceil(4096) * 4096)
        })
        .sum();
    let model_bytes = before[&PathBuf::from("checkpoint-000002/model.safetensors")]
        .as_ref()
        .unwrap()
        .len() as u64;
    let size = used + 8 * 4096;
    assert!(
        model_bytes + 4096 > 8 * 4096,
        "the model must not fit in the spare room"
    );
    let disk = runs.root.join("disk");
    let after = runs.root.join("after");
    std::fs::create_dir_all(&disk).unwrap();
    let args = with(finetune_args(&runs.model, &disk, 1, 4), &["--resume"]);
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "mount -t tmpfs -o size={size} tmpfs '{disk}' && cp -r '{a}/.' '{disk}/' && \
         {{ '{bin}' {args} > '{root}/stdout' 2> '{root}/stderr'; echo $? > '{root}/status'; }}; \
         cp -r '{disk}/.' '{after}/'",
        disk = disk.display(),
        a = runs.a.display(),
        bin = env!("CARGO_BIN_EXE_recadam"),
        args = quoted.join(" "),
        root = runs.root.display(),
        after = after.display(),
    );
    std::fs::create_dir_all(&after).unwrap();
    let status = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .status()
        .unwrap();
    assert!(status.success(), "the tmpfs script failed");
    let code = std::fs::read_to_string(runs.root.join("status")).unwrap();
    let err = std::fs::read_to_string(runs.root.join("stderr")).unwrap();
    println!("full disk: exit {} with: {err}", code.trim());
    assert_ne!(code.trim(), "0", "the run did not fill the disk");
    assert!(
        err.contains("No space left on device"),
        "the error says the disk is full: {err}"
    );
    // The previous checkpoint is still the latest, every file as it was.
    let kept = snapshot(&after);
    for (path, bytes) in &before {
        if path.starts_with("checkpoint-000002") || path == Path::new("latest") {
            assert!(kept.get(path) == Some(bytes), "{} changed", path.display());
        }
    }
    assert!(
        !kept
            .keys()
            .any(|p| p.to_string_lossy().ends_with(".partial")),
        "the staging folder of the failed checkpoint is removed: {:?}",
        kept.keys().collect::<Vec<_>>()
    );
    let checkpoint = read_checkpoint(&after).unwrap().expect("a checkpoint");
    assert_eq!(checkpoint.step, 2);
    // Resumed on a disk with room, the run ends where an uninterrupted one does.
    succeeds(&with(
        finetune_args(&runs.model, &after, 1, 4),
        &["--resume"],
    ));
    let straight = runs.root.join("straight");
    succeeds(&finetune_args(&runs.model, &straight, 1, 4));
    assert!(final_model(&after) == final_model(&straight));
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites `latest` so that it names the checkpoint's manifest as it is now (a folder whose
/// checksums agree but whose content is foreign: what a newer build, or hand-editing, leaves).
fn repoint(run: &Path, checkpoint: &str) {
    let manifest = std::fs::read(run.join(checkpoint).join("manifest.json")).unwrap();
    let sum = sha256_hex(&manifest);
    std::fs::write(run.join("latest"), format!("{checkpoint} sha256:{sum}\n")).unwrap();
}

/// Past the checksums: a manifest of another format version, and options in run.json whose field
/// does not read, are named as such (and change nothing).
#[test]
fn a_consistent_but_foreign_checkpoint_is_named() {
    let runs = two_stopped_runs();
    let checkpoint = latest(&runs.a);
    let manifest_path = runs.a.join(&checkpoint).join("manifest.json");
    let pristine = std::fs::read(&manifest_path).unwrap();
    let resume = with(finetune_args(&runs.model, &runs.a, 1, 4), &["--resume"]);

    let mut manifest: serde_json::Value = serde_json::from_slice(&pristine).unwrap();
    manifest["version"] = 2.into();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    repoint(&runs.a, &checkpoint);
    let err = refused_without_change(&runs.a, &resume, "version 2");
    assert!(
        err.contains("manifest.json has checkpoint format version 2"),
        "{err}"
    );

    // run.json with an unreadable field, its manifest record and pointer made to agree.
    let run_path = runs.a.join(&checkpoint).join("run.json");
    let mut options: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&run_path).unwrap()).unwrap();
    options["lr"] = "fast".into();
    let bytes = serde_json::to_vec_pretty(&options).unwrap();
    std::fs::write(&run_path, &bytes).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&pristine).unwrap();
    manifest["files"]["run.json"] = serde_json::json!({
        "bytes": bytes.len(),
        "sha256": sha256_hex(&bytes),
    });
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    repoint(&runs.a, &checkpoint);
    let err = refused_without_change(&runs.a, &resume, "unreadable lr");
    assert!(
        err.contains("run.json") && err.contains("field `lr` is unreadable"),
        "{err}"
    );
}

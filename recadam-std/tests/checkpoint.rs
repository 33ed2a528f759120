//! Checkpoints: exact resume, and every kind of bad file is a typed error that changes nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use recadam_core::{Annealing, RecAdamConfig};
use recadam_simd::SimdElement;
use recadam_std::{
    CheckpointError, Error, Group, Kernel, LinearWarmupDecay, Optimizer, Options, ParamId,
    ParamMut, Selector,
};

const SHAPES: [(&str, usize); 3] = [("enc.a", 1000), ("enc.b", 37), ("head.w", 5)];

fn config() -> RecAdamConfig {
    RecAdamConfig {
        lr: 1e-4,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: 0.3, t0: 4.0 },
        ..RecAdamConfig::default()
    }
}

fn pretrained<T: SimdElement>(shapes: &[(&str, usize)]) -> Vec<Vec<T>> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, &(_, n))| {
            (0..n)
                .map(|i| T::round_from_f64(((i + 3 * k) as f64 * 0.7).sin() * 0.05))
                .collect()
        })
        .collect()
}

fn optimizer<'s, T: SimdElement>(
    config: RecAdamConfig,
    shapes: &[(&str, usize)],
    pp: &'s [Vec<T>],
) -> Optimizer<'s, T> {
    let options = Options {
        schedule: Box::new(LinearWarmupDecay {
            warmup: 2,
            total: 10,
        }),
        max_grad_norm: Some(1.0),
        threads: 2,
        ..Options::new(config)
    };
    let mut opt = Optimizer::with_kernel(options, Kernel::from_env().unwrap()).unwrap();
    opt.add_group(Group::new("enc", Selector::Prefix("enc.".into())))
        .unwrap();
    opt.add_group(Group::new("head", Selector::All).anneal_w(0.0))
        .unwrap();
    for (k, &(name, _)) in shapes.iter().enumerate() {
        opt.register_pretrained(name, &pp[k]).unwrap();
    }
    opt
}

fn train<T: SimdElement>(
    opt: &mut Optimizer<'_, T>,
    values: &mut [Vec<T>],
    steps: std::ops::RangeInclusive<u64>,
) {
    let ids: Vec<ParamId> = opt.ids().collect();
    for t in steps {
        let grads: Vec<Vec<T>> = values
            .iter()
            .map(|v| {
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| x + T::round_from_f64(((i as f64) + t as f64).cos() * 0.3))
                    .collect()
            })
            .collect();
        let mut params: Vec<ParamMut<'_, T>> = values
            .iter_mut()
            .zip(&grads)
            .zip(&ids)
            .map(|((value, grad), &id)| ParamMut::new(id, value, grad))
            .collect();
        opt.step(&mut params).unwrap();
    }
}

fn state_bits<T: SimdElement>(opt: &Optimizer<'_, T>) -> Vec<u64> {
    let mut out = vec![opt.steps(), opt.skipped_steps()];
    for id in opt.ids() {
        out.push(opt.param_steps(id).unwrap());
        let (m, v) = opt.state(id).unwrap();
        out.extend(m.iter().chain(v).map(|x| x.widen_to_f64().to_bits()));
    }
    out
}

/// k steps, save, load into a fresh optimizer, N − k more: the same bits as N straight.
#[test]
fn resuming_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opt.safetensors");
    let pp = pretrained::<f32>(&SHAPES);
    let mut straight_values = pp.clone();
    let mut straight = optimizer(config(), &SHAPES, &pp);
    train(&mut straight, &mut straight_values, 1..=9);

    let mut values = pp.clone();
    let mut first = optimizer(config(), &SHAPES, &pp);
    train(&mut first, &mut values, 1..=4);
    first.save_checkpoint(&path).unwrap();
    drop(first);
    let mut resumed = optimizer(config(), &SHAPES, &pp);
    resumed.load_checkpoint(&path).unwrap();
    assert_eq!(resumed.steps(), 4);
    train(&mut resumed, &mut values, 5..=9);
    assert_eq!(state_bits(&resumed), state_bits(&straight));
    let bits = |v: &[Vec<f32>]| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&values), bits(&straight_values));

    // f64 too.
    let pp64 = pretrained::<f64>(&SHAPES);
    let mut a = optimizer(config(), &SHAPES, &pp64);
    let mut va = pp64.clone();
    train(&mut a, &mut va, 1..=3);
    a.save_checkpoint(&path).unwrap();
    let mut b = optimizer(config(), &SHAPES, &pp64);
    b.load_checkpoint(&path).unwrap();
    assert_eq!(state_bits(&a), state_bits(&b));
}

/// A saved checkpoint of 3 steps, and an optimizer at 5 steps to load it into.
fn saved(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("good.safetensors");
    let pp = pretrained::<f32>(&SHAPES);
    let mut opt = optimizer(config(), &SHAPES, &pp);
    let mut values = pp.clone();
    train(&mut opt, &mut values, 1..=3);
    opt.save_checkpoint(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// Loads `bytes` into a trained optimizer; returns the error and checks nothing changed.
fn load_bad(dir: &Path, bytes: &[u8]) -> CheckpointError {
    let path = dir.join("bad.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let pp = pretrained::<f32>(&SHAPES);
    let mut opt = optimizer(config(), &SHAPES, &pp);
    let mut values = pp.clone();
    train(&mut opt, &mut values, 1..=5);
    let before = state_bits(&opt);
    let err = match opt.load_checkpoint(&path) {
        Err(Error::Checkpoint(e)) => e,
        Err(other) => panic!("expected a checkpoint error, got {other}"),
        Ok(()) => panic!("a bad file was accepted"),
    };
    assert_eq!(
        state_bits(&opt),
        before,
        "a failed load changed the state ({err})"
    );
    err
}

#[test]
fn truncated_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved(dir.path());
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for cut in [
        0,
        1,
        7,
        8,
        9,
        header / 2,
        header + 7,
        header + 8,
        header + 9,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        let err = load_bad(dir.path(), &bytes[..cut]);
        assert!(
            matches!(err, CheckpointError::Container { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn corrupted_data_fails_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved(dir.path());
    for at in [bytes.len() - 1, bytes.len() - 4000, bytes.len() / 2 + 100] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let err = load_bad(dir.path(), &bad);
        assert!(
            matches!(err, CheckpointError::Checksum { .. }),
            "byte {at}: {err}"
        );
        assert!(err.to_string().contains("corrupted"));
    }
}

/// Replaces `from` by `to` (same length) in the header.
fn edit_header(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let text = std::str::from_utf8(&bytes[8..8 + header]).unwrap();
    assert!(text.contains(from), "{from} not in header");
    let mut out = bytes.to_vec();
    out[8..8 + header].copy_from_slice(text.replacen(from, to, 1).as_bytes());
    out
}

#[test]
fn a_wrong_version_or_format_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved(dir.path());
    let err = load_bad(
        dir.path(),
        &edit_header(&bytes, "\"version\":\"2\"", "\"version\":\"7\""),
    );
    assert!(
        matches!(&err, CheckpointError::Version { found, .. } if found == "7"),
        "{err}"
    );
    let err = load_bad(
        dir.path(),
        &edit_header(&bytes, "recadam-optimizer", "recadam-optimizes"),
    );
    assert!(matches!(err, CheckpointError::Invalid { .. }), "{err}");
    // A header edit the checksum covers (the step count).
    let err = load_bad(
        dir.path(),
        &edit_header(&bytes, "\"step\":\"3\"", "\"step\":\"4\""),
    );
    assert!(matches!(err, CheckpointError::Checksum { .. }), "{err}");
    // A safetensors file that is not a checkpoint.
    let plain = safetensors::tensor::serialize(
        [(
            "x",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    let err = load_bad(dir.path(), &plain);
    assert!(
        err.to_string()
            .contains("not a recadam optimizer checkpoint"),
        "{err}"
    );
}

#[test]
fn a_different_setup_is_a_mismatch_that_names_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = saved(dir.path());
    let mismatch = |err: Error| match err {
        Error::Checkpoint(CheckpointError::Mismatch { field, .. }) => field,
        other => panic!("expected a mismatch, got {other}"),
    };
    // dtype
    let pp64 = pretrained::<f64>(&SHAPES);
    let mut opt64 = optimizer(config(), &SHAPES, &pp64);
    assert_eq!(mismatch(opt64.load_checkpoint(&path).unwrap_err()), "dtype");
    // hyperparameters
    let pp = pretrained::<f32>(&SHAPES);
    let mut other = optimizer(
        RecAdamConfig {
            weight_decay: 0.02,
            ..config()
        },
        &SHAPES,
        &pp,
    );
    assert_eq!(
        mismatch(other.load_checkpoint(&path).unwrap_err()),
        "config (besides the learning rate)"
    );
    // a group's own hyperparameters
    let options = Options {
        schedule: Box::new(LinearWarmupDecay {
            warmup: 2,
            total: 10,
        }),
        max_grad_norm: Some(1.0),
        ..Options::new(config())
    };
    let mut regrouped = Optimizer::with_kernel(options, Kernel::from_env().unwrap()).unwrap();
    regrouped
        .add_group(Group::new("enc", Selector::Prefix("enc.".into())).eps(1e-6))
        .unwrap();
    regrouped
        .add_group(Group::new("head", Selector::All).anneal_w(0.0))
        .unwrap();
    for (k, &(name, _)) in SHAPES.iter().enumerate() {
        regrouped.register_pretrained(name, &pp[k]).unwrap();
    }
    assert_eq!(
        mismatch(regrouped.load_checkpoint(&path).unwrap_err()),
        "groups (besides their learning rates)"
    );
    // The learning rate is not setup but state (a caller's scheduler sets it): it is restored,
    // as PyTorch's `load_state_dict` restores each group's `lr`.
    let mut other_lr = optimizer(
        RecAdamConfig {
            lr: 2e-4,
            ..config()
        },
        &SHAPES,
        &pp,
    );
    other_lr.load_checkpoint(&path).unwrap();
    assert!(other_lr.groups().all(|(_, c)| c.lr == config().lr));
    // a parameter's shape
    let shapes = [("enc.a", 1000), ("enc.b", 38), ("head.w", 5)];
    let pp_shape = pretrained::<f32>(&shapes);
    let mut reshaped = optimizer(config(), &shapes, &pp_shape);
    assert_eq!(
        mismatch(reshaped.load_checkpoint(&path).unwrap_err()),
        "parameter `enc.b`"
    );
    // other pretrained weights
    let mut pp_other = pretrained::<f32>(&SHAPES);
    pp_other[0][17] += 1.0;
    let mut moved = optimizer(config(), &SHAPES, &pp_other);
    assert_eq!(
        mismatch(moved.load_checkpoint(&path).unwrap_err()),
        "parameter `enc.a`"
    );
}

#[test]
fn a_missing_file_is_an_io_error() {
    let pp = pretrained::<f32>(&SHAPES);
    let mut opt = optimizer(config(), &SHAPES, &pp);
    let err = opt
        .load_checkpoint("/nonexistent/dir/x.safetensors")
        .unwrap_err();
    assert!(
        matches!(err, Error::Checkpoint(CheckpointError::Io { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("/nonexistent/dir/x.safetensors"));
}

/// A header that declares a huge tensor is refused without allocating for it.
#[test]
fn a_header_that_lies_about_sizes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = saved(dir.path());
    let edited = edit_header(&bytes, "\"shape\":[1000]", "\"shape\":[9999]");
    let err = load_bad(dir.path(), &edited);
    assert!(matches!(err, CheckpointError::Container { .. }), "{err}");
}

const CHILD_ENV: &str = "RECADAM_CRASH_CHILD";
const BIG: [(&str, usize); 2] = [("enc.big", 3_000_000), ("head.w", 10)];

/// Run by `a_crash_during_save_leaves_a_valid_checkpoint` in a child process: steps and saves
/// forever, until it is killed.
#[test]
#[ignore = "run as a child process by a_crash_during_save_leaves_a_valid_checkpoint"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let pp = pretrained::<f32>(&BIG);
    let mut opt = optimizer(config(), &BIG, &pp);
    let mut values = pp.clone();
    for t in 1.. {
        train(&mut opt, &mut values, t..=t);
        opt.save_checkpoint(&path).unwrap();
        println!("saved {t}");
    }
}

fn temporaries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count()
}

/// Kill a process in the middle of saving, many times: the checkpoint file is always a valid
/// one (the previous or the new), never a torn one. The parent watches the folder and kills the
/// child the moment a save's temporary file exists, so the kill lands mid-write.
#[test]
fn a_crash_during_save_leaves_a_valid_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let pp = pretrained::<f32>(&BIG);
    optimizer(config(), &BIG, &pp)
        .save_checkpoint(&path)
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut steps_seen = Vec::new();
    for round in 0..5 {
        let leftover = temporaries(dir.path());
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Let `round` saves complete, then wait for the next one to be in progress (a new
        // temporary file) and kill at once.
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        let mut completed = 0;
        while completed < round {
            let line = lines.next().expect("the child reports its saves").unwrap();
            completed += usize::from(line.starts_with("saved "));
        }
        let start = std::time::Instant::now();
        while temporaries(dir.path()) == leftover {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round}: the child never saved"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            temporaries(dir.path()) > leftover,
            "round {round}: the kill came after the save"
        );
        let mut opt = optimizer(config(), &BIG, &pp);
        opt.load_checkpoint(&path)
            .unwrap_or_else(|e| panic!("round {round}: the checkpoint is torn: {e}"));
        assert!(
            opt.steps() == round as u64 || opt.steps() == round as u64 + 1,
            "round {round}: step {}",
            opt.steps()
        );
        steps_seen.push(opt.steps());
    }
    println!("steps in the checkpoint after each kill: {steps_seen:?}");
}

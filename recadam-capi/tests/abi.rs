//! The C interface called from Rust, as C calls it: the same bits as recadam-std's optimizer
//! over several groups, threads and a learning-rate schedule; checkpoints that resume exactly;
//! handles shared between threads; a panic caught at the boundary. Runs under Miri in CI (with
//! one thread, where Miri would be slow with a pool).

#![allow(clippy::needless_range_loop)] // parameters by number, as C registers them

use std::ffi::{c_void, CStr, CString};
use std::ptr::{null, null_mut};

use recadam::*;
use recadam_core::{Annealing, RecAdamConfig};
use recadam_std::{Group, Optimizer, Options, ParamMut, Pretrained, Selector};
use recadam_testkit::fixtures::noise;

/// Small under Miri, with a SIMD body and a tail elsewhere.
const LENS: [usize; 3] = if cfg!(miri) {
    [19, 5, 3]
} else {
    [4099, 37, 130]
};
const STEPS: u64 = if cfg!(miri) { 3 } else { 12 };

fn ok(status: recadam_status) {
    assert_eq!(status, RECADAM_OK, "{}", last_error());
}

fn last_error() -> String {
    // SAFETY: never null, NUL-terminated, valid until the next call on this thread.
    unsafe { CStr::from_ptr(recadam_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn configs() -> [RecAdamConfig; 2] {
    let encoder = RecAdamConfig {
        lr: 1e-4,
        weight_decay: 0.01,
        eps: 1e-6,
        annealing: Annealing::Sigmoid { k: 0.5, t0: 3.0 },
        ..RecAdamConfig::default()
    };
    let head = RecAdamConfig {
        anneal_w: 0.0,
        lr: 1e-3,
        ..encoder
    };
    [encoder, head]
}

fn c_config(c: &RecAdamConfig) -> recadam_config {
    let mut out = std::mem::MaybeUninit::<recadam_config>::uninit();
    // SAFETY: a recadam_config to write.
    ok(unsafe { recadam_config_default(out.as_mut_ptr()) });
    // SAFETY: filled by recadam_config_default.
    let mut out = unsafe { out.assume_init() };
    let Annealing::Sigmoid { k, t0 } = c.annealing else {
        unreachable!()
    };
    out.lr = c.lr;
    out.weight_decay = c.weight_decay;
    out.eps = c.eps;
    out.anneal_k = k;
    out.anneal_t0 = t0;
    out.anneal_w = c.anneal_w;
    out
}

fn init(k: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| noise(i + 1000 * k) * 0.1).collect()
}

fn grad(k: usize, t: u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| noise(i + 7919 * t as usize + 31 * k) * 0.05)
        .collect()
}

fn lr_at(t: u64) -> f64 {
    1e-4 * (1.0 - t as f64 / (2 * STEPS) as f64)
}

/// The model through the C interface: parameter 0 and 1 in the penalised group (0 with the
/// caller's moments and θ* borrowed, 1 with the library's moments and θ* copied from the
/// values), parameter 2 in the head.
struct CModel {
    opt: *mut recadam_optimizer,
    values: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    m0: Vec<f32>,
    v0: Vec<f32>,
    pretrained0: Vec<f32>,
}

impl CModel {
    fn new(threads: usize) -> Box<CModel> {
        let values: Vec<Vec<f32>> = LENS.iter().enumerate().map(|(k, &n)| init(k, n)).collect();
        let mut model = Box::new(CModel {
            opt: null_mut(),
            grads: LENS.iter().map(|&n| vec![0.0; n]).collect(),
            m0: vec![0.0; LENS[0]],
            v0: vec![0.0; LENS[0]],
            pretrained0: values[0].clone(),
            values,
        });
        // SAFETY: every buffer lives in the box, which outlives the optimizer (see Drop).
        unsafe {
            ok(recadam_optimizer_new(RECADAM_F32, threads, &mut model.opt));
            for c in configs() {
                ok(recadam_add_group(model.opt, &c_config(&c), null_mut()));
            }
            for k in 0..3 {
                let mut p = recadam_param {
                    struct_size: size_of::<recadam_param>() as u32,
                    pretrained_mode: [
                        RECADAM_PRETRAINED_BORROW,
                        RECADAM_PRETRAINED_FROM_PARAM,
                        RECADAM_PRETRAINED_NONE,
                    ][k],
                    group: usize::from(k == 2),
                    len: LENS[k],
                    param: model.values[k].as_mut_ptr().cast(),
                    grad: model.grads[k].as_ptr().cast(),
                    exp_avg: null_mut(),
                    exp_avg_sq: null_mut(),
                    pretrained: null(),
                };
                if k == 0 {
                    p.exp_avg = model.m0.as_mut_ptr().cast();
                    p.exp_avg_sq = model.v0.as_mut_ptr().cast();
                    p.pretrained = model.pretrained0.as_ptr().cast();
                }
                let mut id = usize::MAX;
                ok(recadam_register(model.opt, &p, &mut id));
                assert_eq!(id, k);
            }
        }
        model
    }

    fn step(&mut self, t: u64) -> recadam_step_report {
        for (k, g) in self.grads.iter_mut().enumerate() {
            let n = g.len();
            g.copy_from_slice(&grad(k, t, n));
        }
        let mut report = recadam_step_report::default();
        ok(recadam_set_lr(self.opt, 0, lr_at(t)));
        // SAFETY: the registered buffers are alive in `self`.
        ok(unsafe { recadam_step(self.opt, &mut report) });
        report
    }

    fn state(&self, k: usize) -> (Vec<f32>, Vec<f32>) {
        let (mut m, mut v) = (vec![0.0f32; LENS[k]], vec![0.0f32; LENS[k]]);
        // SAFETY: two buffers of the parameter's length.
        ok(unsafe {
            recadam_get_state(
                self.opt,
                k,
                m.as_mut_ptr().cast::<c_void>(),
                v.as_mut_ptr().cast::<c_void>(),
            )
        });
        (m, v)
    }
}

impl Drop for CModel {
    fn drop(&mut self) {
        ok(recadam_optimizer_free(self.opt));
    }
}

fn rust_optimizer<'a>(pretrained: &'a [Vec<f32>]) -> Optimizer<'a, f32> {
    let [encoder, head] = configs();
    let mut opt = Optimizer::new(Options::new(encoder)).unwrap();
    opt.add_group(
        Group::new("head", Selector::Prefix("p2".into()))
            .lr(head.lr)
            .anneal_w(0.0),
    )
    .unwrap();
    for k in 0..2 {
        opt.register_pretrained(&format!("p{k}"), Pretrained::Borrowed(&pretrained[k]))
            .unwrap();
    }
    opt.register("p2", LENS[2]).unwrap();
    opt
}

#[test]
fn the_c_optimizer_gives_the_bits_of_the_rust_optimizer() {
    let threads = if cfg!(miri) { 1 } else { 2 };
    let mut c = CModel::new(threads);
    let pretrained: Vec<Vec<f32>> = c.values[..2].to_vec();
    let mut rust = rust_optimizer(&pretrained);
    rust.set_pool(recadam_std::thread_pool(threads).unwrap());
    let mut values: Vec<Vec<f32>> = c.values.clone();
    for t in 1..=STEPS {
        let report = c.step(t);
        assert_eq!((report.step, report.skipped), (t, 0));
        let grads: Vec<Vec<f32>> = LENS
            .iter()
            .enumerate()
            .map(|(k, &n)| grad(k, t, n))
            .collect();
        rust.set_group_lr("default", lr_at(t)).unwrap();
        let ids: Vec<_> = rust.ids().collect();
        let mut params: Vec<ParamMut<'_, f32>> = values
            .iter_mut()
            .zip(&grads)
            .zip(&ids)
            .map(|((v, g), &id)| ParamMut::new(id, v, g))
            .collect();
        let r = rust.step(&mut params).unwrap();
        assert_eq!(report.lambda, configs()[0].lambda(t));
        assert_eq!(report.grad_norm, r.grad_norm.unwrap());
    }
    for k in 0..3 {
        assert!(c.values[k] == values[k], "parameter {k}");
        let id = rust.ids().nth(k).unwrap();
        let (m, v) = rust.state(id).unwrap();
        assert!(c.state(k) == (m.to_vec(), v.to_vec()), "state of {k}");
    }
    assert!((c.m0.as_slice(), c.v0.as_slice()) == (&c.state(0).0[..], &c.state(0).1[..]));
    let mut distance = f64::NAN;
    // SAFETY: an f64 to write.
    ok(unsafe { recadam_distance(c.opt, &mut distance) });
    let ids: Vec<_> = rust.ids().collect();
    let want = rust
        .distance_to_pretrained(ids.iter().zip(&values).map(|(&id, v)| (id, v.as_slice())))
        .unwrap();
    assert!(
        (distance - want.overall).abs() <= 1e-12 * want.overall,
        "{distance} {want:?}"
    );
}

#[test]
#[cfg_attr(miri, ignore = "files: Miri runs isolated")]
fn a_checkpoint_resumes_with_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let path = CString::new(dir.path().join("c.safetensors").to_str().unwrap()).unwrap();
    let half = STEPS / 2;
    let mut straight = CModel::new(1);
    for t in 1..=STEPS {
        straight.step(t);
    }
    let mut first = CModel::new(1);
    for t in 1..=half {
        first.step(t);
    }
    // SAFETY: a NUL-terminated path.
    ok(unsafe { recadam_save(first.opt, path.as_ptr()) });
    let mut resumed = CModel::new(1);
    // The values live where they were registered: copy into those buffers, not new ones.
    for k in 0..3 {
        let (dst, src) = (resumed.values[k].as_mut_ptr(), first.values[k].as_ptr());
        // SAFETY: same lengths; distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, LENS[k]) };
    }
    ok(recadam_set_lr(resumed.opt, 1, 0.5)); // read back from the file
                                             // SAFETY: a NUL-terminated path.
    ok(unsafe { recadam_load(resumed.opt, path.as_ptr()) });
    let mut lr = 0.0;
    // SAFETY: an f64 to write.
    ok(unsafe { recadam_get_lr(resumed.opt, 1, &mut lr) });
    assert_eq!(lr, configs()[1].lr);
    for t in half + 1..=STEPS {
        resumed.step(t);
    }
    assert!(resumed.values == straight.values);
    for k in 0..3 {
        assert!(resumed.state(k) == straight.state(k));
    }
}

#[test]
fn one_handle_used_from_several_threads_is_serialised() {
    let per_thread = if cfg!(miri) { 2 } else { 25 };
    let mut values = vec![0.5f32; 64];
    let grads = vec![0.01f32; 64];
    let mut opt = null_mut();
    let config = RecAdamConfig {
        anneal_w: 0.0,
        ..RecAdamConfig::default()
    };
    // SAFETY: the buffers outlive the optimizer, freed below.
    unsafe {
        ok(recadam_optimizer_new(RECADAM_F32, 1, &mut opt));
        ok(recadam_add_group(opt, &c_config(&config), null_mut()));
        let p = recadam_param {
            struct_size: size_of::<recadam_param>() as u32,
            pretrained_mode: RECADAM_PRETRAINED_NONE,
            group: 0,
            len: 64,
            param: values.as_mut_ptr().cast(),
            grad: grads.as_ptr().cast(),
            exp_avg: null_mut(),
            exp_avg_sq: null_mut(),
            pretrained: null(),
        };
        ok(recadam_register(opt, &p, null_mut()));
    }
    let handle = opt as usize;
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(move || {
                for _ in 0..per_thread {
                    // SAFETY: the buffers live until the scope ends; calls are serialised.
                    ok(unsafe { recadam_step(handle as *mut recadam_optimizer, null_mut()) });
                }
            });
        }
    });
    let mut steps = 0;
    // SAFETY: a u64 to write.
    ok(unsafe { recadam_step_count(opt, &mut steps) });
    assert_eq!(steps, 3 * per_thread);
    ok(recadam_optimizer_free(opt));
    // SAFETY: the handle is stale: refused without being read.
    assert_eq!(
        unsafe { recadam_step(opt, null_mut()) },
        RECADAM_ERROR_INVALID_HANDLE
    );
    assert!(values[0] < 0.5);
}

#[test]
fn a_panic_is_caught_at_the_boundary() {
    assert_eq!(recadam::recadam_test_panic(), RECADAM_ERROR_PANIC);
    assert!(last_error().contains("a test panic"), "{}", last_error());
    // The next call succeeds and clears the message.
    let mut config = std::mem::MaybeUninit::<recadam_config>::uninit();
    // SAFETY: a recadam_config to write.
    ok(unsafe { recadam_config_default(config.as_mut_ptr()) });
    assert_eq!(last_error(), "");
}

#[test]
fn the_library_names_its_versions_and_statuses() {
    // SAFETY: static NUL-terminated strings.
    let version = unsafe { CStr::from_ptr(recadam_version()) }
        .to_str()
        .unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(recadam_abi_version(), RECADAM_ABI_VERSION);
    for status in 0..=RECADAM_ERROR_PANIC {
        // SAFETY: as above.
        let name = unsafe { CStr::from_ptr(recadam_status_name(status)) };
        assert!(name.to_str().unwrap().starts_with("RECADAM_"));
    }
}

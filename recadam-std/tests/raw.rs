//! Parameters handed over by address (`recadam_std::raw`, the bindings' path): the slices they
//! become step exactly as safe slices do, and every address that cannot be used is an error
//! before any slice exists. Runs under Miri in CI (the module's `unsafe` is there).

use recadam_core::{RecAdamConfig, Slices};
use recadam_std::raw::{self, RawParam, RawState};
use recadam_std::{step_held, CallingThread, Error, HeldParam, Kernel, NonFiniteGuard};

const N: usize = 37;

struct Buffers {
    value: Vec<f32>,
    grad: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    pretrained: Vec<f32>,
}

fn buffers(seed: f32) -> Buffers {
    // Plain arithmetic, not `sin`: under Miri, library float functions are not deterministic.
    let f = |k: f32| {
        (0..N)
            .map(|i| ((i * 7 + k as usize) % 13) as f32 * 0.01 - 0.06)
            .collect::<Vec<f32>>()
    };
    Buffers {
        value: f(seed),
        grad: f(seed + 1.0),
        m: vec![0.0; N],
        v: vec![0.0; N],
        pretrained: f(seed + 2.0),
    }
}

fn raw_of(b: &mut Buffers) -> RawParam<f32> {
    RawParam {
        value: b.value.as_mut_ptr(),
        grad: b.grad.as_ptr(),
        exp_avg: b.m.as_mut_ptr(),
        exp_avg_sq: b.v.as_mut_ptr(),
        pretrained: b.pretrained.as_ptr(),
        len: N,
    }
}

fn config() -> RecAdamConfig {
    RecAdamConfig {
        lr: 1e-3,
        pretrain_cof: 100.0,
        weight_decay: 0.01,
        ..RecAdamConfig::default()
    }
}

fn step(params: Vec<Slices<'_, f32>>) {
    let held = params
        .into_iter()
        .map(|slices| HeldParam {
            slices,
            group: 0,
            t: 1,
        })
        .collect();
    step_held(
        Kernel::best(),
        &CallingThread,
        NonFiniteGuard::Refuse,
        &[config()],
        held,
    )
    .unwrap();
}

#[test]
fn slices_from_addresses_step_as_safe_slices_do() {
    let (mut a, mut b) = (buffers(0.0), buffers(5.0));
    let (mut a2, mut b2) = (buffers(0.0), buffers(5.0));
    let raws = [raw_of(&mut a), raw_of(&mut b)];
    // SAFETY: the buffers live until the end of the test and nothing else touches them while
    // the slices live (they are dropped by `step`).
    step(unsafe { raw::slices(&raws) }.unwrap());
    let safe = [&mut a2, &mut b2]
        .into_iter()
        .map(|x| {
            Slices::new(
                &mut x.value,
                &x.grad,
                &mut x.m,
                &mut x.v,
                Some(&x.pretrained[..]),
            )
            .unwrap()
        })
        .collect();
    step(safe);
    for (x, y) in [(&a, &a2), (&b, &b2)] {
        assert_eq!(x.value, y.value);
        assert_eq!((&x.m, &x.v), (&y.m, &y.v));
        assert_ne!(x.value, buffers(0.0).value);
    }
}

#[test]
fn reads_may_share_memory() {
    let (mut a, mut b) = (buffers(0.0), buffers(5.0));
    let shared_grad = [0.01f32; N];
    let shared_pretrained = [0.0f32; N];
    let mut raws = [raw_of(&mut a), raw_of(&mut b)];
    for r in &mut raws {
        r.grad = shared_grad.as_ptr();
        r.pretrained = shared_pretrained.as_ptr();
    }
    raws[1].pretrained = std::ptr::null(); // no θ*: allowed
                                           // SAFETY: as above; the shared buffers are only read.
    let slices = unsafe { raw::slices(&raws) }.unwrap();
    assert!(slices[0].has_pretrained() && !slices[1].has_pretrained());
}

#[test]
fn unusable_addresses_are_errors() {
    let (mut a, mut b) = (buffers(0.0), buffers(5.0));
    let good = [raw_of(&mut a), raw_of(&mut b)];
    let mut cases: Vec<(Vec<RawParam<f32>>, &str)> = Vec::new();
    // A parameter given twice.
    cases.push((vec![good[0], good[1], good[0]], "overlap"));
    // The gradient is the parameter itself.
    let mut aliased = good[1];
    aliased.grad = aliased.value;
    cases.push((vec![good[0], aliased], "overlap"));
    // One parameter's state overlaps another's values (a view half-way in).
    let mut half = good[1];
    half.exp_avg = good[0].value.wrapping_add(N / 2);
    cases.push((vec![good[0], half], "overlap"));
    // θ* is a view of a parameter that is written.
    let mut theta = good[1];
    theta.pretrained = good[0].exp_avg_sq;
    cases.push((vec![good[0], theta], "overlap"));
    // Null, misaligned, too long.
    let mut null = good[0];
    null.exp_avg = std::ptr::null_mut();
    cases.push((vec![null], "null"));
    let mut misaligned = good[0];
    misaligned.grad = (good[0].grad as *const u8).wrapping_add(1) as *const f32;
    cases.push((vec![misaligned], "aligned"));
    let mut long = good[0];
    long.len = usize::MAX / 2;
    cases.push((vec![long], "too many"));
    for (raws, what) in cases {
        let err = raw::check(&raws).unwrap_err();
        let text = err.to_string();
        match what {
            "overlap" => assert!(matches!(err, Error::RawOverlap { .. }), "{text}"),
            _ => assert!(
                matches!(err, Error::RawBuffer { .. }) && text.contains(what),
                "{text}"
            ),
        }
        // SAFETY: `slices` refuses these before it makes any slice.
        assert!(unsafe { raw::slices(&raws) }.is_err());
    }
    // Zero elements: no address is read, null ones included.
    let empty = RawParam::<f32> {
        value: std::ptr::null_mut(),
        grad: std::ptr::null(),
        exp_avg: std::ptr::null_mut(),
        exp_avg_sq: std::ptr::null_mut(),
        pretrained: std::ptr::null(),
        len: 0,
    };
    raw::check(&[empty, good[0]]).unwrap();
}

#[test]
fn state_alone() {
    let (mut a, mut b) = (buffers(0.0), buffers(5.0));
    let state = |x: &mut Buffers| RawState {
        exp_avg: x.m.as_mut_ptr(),
        exp_avg_sq: x.v.as_mut_ptr(),
        pretrained: x.pretrained.as_ptr(),
        len: N,
    };
    let (sa, sb) = (state(&mut a), state(&mut b));
    // SAFETY: the buffers outlive the slices, which nothing else touches.
    let slices = unsafe { raw::state_slices(&[sa, sb]) }.unwrap();
    for (m, v, pp) in slices {
        m[0] = 1.0;
        v[0] = 2.0;
        assert_eq!(pp.map(|p| p.len()), Some(N));
    }
    assert_eq!((a.m[0], b.v[0]), (1.0, 2.0));
    let mut twice = sb;
    twice.exp_avg_sq = sb.exp_avg;
    assert!(matches!(
        raw::check_state(&[sa, twice]),
        Err(Error::RawOverlap { .. })
    ));
}

/// Mixed-precision buffers by address: each buffer is sized and aligned for its own type, so
/// 16-bit buffers laid end to end with f32 ones are accepted, and a copy written over another
/// buffer, a misaligned 16-bit address or a null gradient is an error before any slice exists.
#[test]
fn mixed_buffers_are_checked_each_for_its_own_type() {
    use recadam_core::half::bf16;
    use recadam_core::MixedSlices;
    use recadam_std::raw::RawMixedParam;
    use recadam_std::{step_held_mixed, HeldMixedParam};

    // One u32 arena: f32 values, then bf16 gradients, bf16 moments and a bf16 copy packed two
    // per word, end to end (the 16-bit buffers are N = 37 elements: 74 bytes, not a whole
    // number of words, so the next one starts mid-word).
    let mut arena = vec![0u32; N + 4 * N.div_ceil(2) + 2];
    let base = arena.as_mut_ptr().cast::<u8>();
    let value = base.cast::<f32>();
    let at16 = |k: usize| base.wrapping_add(4 * N + 2 * N * k).cast::<bf16>();
    let (grad, m, v, copy) = (at16(0), at16(1), at16(2), at16(3));
    let raw = |value, grad, copy| RawMixedParam::<bf16, bf16, f32, bf16> {
        value,
        grad,
        exp_avg: m,
        exp_avg_sq: v,
        pretrained: std::ptr::null(),
        params_copy: copy,
        len: N,
    };
    // SAFETY: every address lies in `arena` with room for N elements of its type; nothing else
    // uses the arena while the slices live.
    unsafe {
        for i in 0..N {
            value.add(i).write(0.01 * i as f32);
            grad.add(i).write(bf16::from_f32(0.1));
            m.add(i).write(bf16::ZERO);
            v.add(i).write(bf16::ZERO);
        }
        let slices = raw::mixed_slices(&[raw(value, grad as *const bf16, copy)]).unwrap();
        let held = slices
            .into_iter()
            .map(
                |slices: MixedSlices<'_, bf16, bf16, f32, bf16>| HeldMixedParam {
                    slices,
                    group: 0,
                    t: 1,
                },
            )
            .collect();
        let c = RecAdamConfig {
            anneal_w: 0.0,
            ..config()
        };
        step_held_mixed(
            Kernel::best(),
            &CallingThread,
            NonFiniteGuard::Skip,
            &[c],
            held,
        )
        .unwrap();
        for i in 0..N {
            assert!(
                value.add(i).read() < 0.01 * i as f32,
                "element {i} did not move"
            );
            assert_eq!(copy.add(i).read(), bf16::from_f32(value.add(i).read()));
        }
        // The copy written over the gradients.
        assert!(matches!(
            raw::mixed_slices(&[raw(value, grad as *const bf16, grad)]),
            Err(Error::RawOverlap { .. })
        ));
        // A gradient address that is not a multiple of 2.
        assert!(matches!(
            raw::mixed_slices(&[raw(value, grad.cast::<u8>().wrapping_add(1).cast(), copy)]),
            Err(Error::RawBuffer { .. })
        ));
        // No gradient.
        assert!(matches!(
            raw::mixed_slices(&[raw(value, std::ptr::null(), copy)]),
            Err(Error::RawBuffer { .. })
        ));
    }
}

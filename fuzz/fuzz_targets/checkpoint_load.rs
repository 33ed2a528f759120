//! Arbitrary bytes, and mutations of valid checkpoints (the seed corpus), through the checkpoint
//! loader: a typed error that changes nothing, or a state that round-trips. Never a panic; run
//! with -malloc_limit_mb to catch allocations the input does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recadam_std::Optimizer;
use recadam_testkit::fixtures::{small_optimizer, small_pretrained};

/// Step counts, the groups' learning rates, and the bits of every state buffer.
fn state(opt: &Optimizer<'_, f32>) -> (u64, u64, Vec<u64>, Vec<u64>, Vec<u32>) {
    let mut bits = Vec::new();
    let mut steps = Vec::new();
    for id in opt.ids() {
        let (m, v) = opt.state(id).unwrap();
        bits.extend(m.iter().chain(v).map(|x| x.to_bits()));
        steps.push(opt.param_steps(id).unwrap());
    }
    let lrs = opt.groups().map(|(_, c)| c.lr.to_bits()).collect();
    (opt.steps(), opt.skipped_steps(), steps, lrs, bits)
}

fuzz_target!(|data: &[u8]| {
    let pretrained = small_pretrained();
    let mut opt = small_optimizer(&pretrained);
    let before = state(&opt);
    match opt.load_checkpoint_from_bytes(data) {
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(
                state(&opt) == before,
                "a refused checkpoint changed the state: {e}"
            );
        }
        Ok(()) => {
            // What was loaded saves and loads again to the same state.
            let saved = opt.save_checkpoint_to_bytes().unwrap();
            let mut again = small_optimizer(&pretrained);
            again.load_checkpoint_from_bytes(&saved).unwrap();
            assert!(
                state(&again) == state(&opt),
                "a loaded state does not round-trip"
            );
        }
    }
});

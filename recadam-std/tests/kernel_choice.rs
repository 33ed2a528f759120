//! A library constructor does not read the environment: `Optimizer::new` runs the best kernel
//! even when `RECADAM_BACKEND` names none (it used to fail), while `Kernel::from_env`, which tests
//! and benchmarks use, still refuses such a name. One test in its own binary: it sets a variable
//! of the process.

use recadam_core::RecAdamConfig;
use recadam_std::{Error, Kernel, Optimizer, Options};

#[test]
fn new_ignores_recadam_backend_and_from_env_reads_it() {
    std::env::set_var("RECADAM_BACKEND", "no-such-backend");
    let opt = Optimizer::<f32>::new(Options::new(RecAdamConfig {
        lr: 1e-4,
        ..RecAdamConfig::default()
    }))
    .expect("the constructor does not read RECADAM_BACKEND");
    assert_eq!(opt.kernel(), Kernel::best());
    let err = Kernel::from_env().unwrap_err();
    assert!(err.to_string().contains("no-such-backend"), "{err}");
    // The program-level path turns it into the optimizer's error type.
    assert!(matches!(Error::from(err), Error::Backend(_)));
    std::env::set_var("RECADAM_BACKEND", "scalar");
    assert_eq!(
        Kernel::from_env().unwrap().backend(),
        recadam_std::Backend::Scalar
    );
}

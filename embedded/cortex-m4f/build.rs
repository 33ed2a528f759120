//! Embeds every float32 golden case (`RECADAM_GOLDEN_DIR`, default the repository's
//! `testdata/golden`) into the firmware as bit patterns, with the bits recadam-core's replay
//! gives on the host: the firmware must give the same. Puts `memory.x` where the linker finds it.

use std::fmt::Write as _;
use std::path::PathBuf;

use recadam_core::{update, Annealing, PenaltyMode};
use recadam_testkit::golden::{self, Grad};

fn bits32(values: &[f64]) -> String {
    let mut out = String::from("&[");
    for &x in values {
        write!(out, "{:#x},", (x as f32).to_bits()).unwrap();
    }
    out.push(']');
    out
}

fn f64_lit(x: f64) -> String {
    format!("f64::from_bits({:#x})", x.to_bits())
}

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::copy("memory.x", out.join("memory.x")).unwrap();
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-env-changed=RECADAM_GOLDEN_DIR");
    println!("cargo:rerun-if-changed={}", golden::dir().display());

    let cases = golden::cases();
    let mut code = String::from("static CASES: &[Case] = &[\n");
    let mut count = 0;
    for (name, case) in &cases {
        if !case.is::<f32>() {
            continue;
        }
        count += 1;
        let report = golden::replay::<f32>(case, update);
        assert!(report.failures.is_empty(), "{name}: {:?}", report.failures);
        let c = case.recadam_config();
        let annealing = match c.annealing {
            Annealing::Sigmoid { k, t0 } => {
                format!(
                    "Annealing::Sigmoid {{ k: {}, t0: {} }}",
                    f64_lit(k),
                    f64_lit(t0)
                )
            }
            Annealing::Linear { t0 } => format!("Annealing::Linear {{ t0: {} }}", f64_lit(t0)),
            Annealing::Constant => "Annealing::Constant".into(),
        };
        assert!(c.penalty_mode == PenaltyMode::Decoupled);
        let grad = match &case.grad {
            Grad::Quadratic { a, c } => {
                format!("Grad::Quadratic {{ a: {}, c: {} }}", bits32(a), bits32(c))
            }
            Grad::Given { per_step } => format!("Grad::Given({})", bits32(&per_step.concat())),
        };
        let last = case.checkpoints.last().expect("a checkpoint at step T");
        assert_eq!(last.step, case.steps);
        let mut lrs = String::from("&[");
        for &lr in &case.lr_per_step {
            write!(lrs, "{},", f64_lit(lr)).unwrap();
        }
        lrs.push(']');
        writeln!(
            code,
            "Case {{ name: {name:?}, n: {n}, steps: {steps}, config: RecAdamConfig {{ lr: {lr}, beta1: {b1}, \
             beta2: {b2}, eps: {eps}, weight_decay: {wd}, correct_bias: {cb}, annealing: {annealing}, \
             anneal_w: {w}, pretrain_cof: {cof}, penalty_mode: PenaltyMode::Decoupled }}, lrs: {lrs}, \
             init: {init}, pretrained: {pp}, grad: {grad}, expect: [{ep}, {em}, {ev}], golden: {golden} }},",
            n = case.n,
            steps = case.steps,
            lr = f64_lit(c.lr),
            b1 = f64_lit(c.beta1),
            b2 = f64_lit(c.beta2),
            eps = f64_lit(c.eps),
            wd = f64_lit(c.weight_decay),
            cb = c.correct_bias,
            w = f64_lit(c.anneal_w),
            cof = f64_lit(c.pretrain_cof),
            init = bits32(&case.init),
            pp = bits32(&case.pretrained),
            ep = bits32(&report.last[0]),
            em = bits32(&report.last[1]),
            ev = bits32(&report.last[2]),
            golden = bits32(&last.params),
        )
        .unwrap();
    }
    assert!(
        count > 0,
        "no float32 golden case in {}",
        golden::dir().display()
    );
    code.push_str("];\n");
    let max_n = cases
        .iter()
        .filter(|(_, c)| c.is::<f32>())
        .map(|(_, c)| c.n)
        .max()
        .unwrap();
    writeln!(code, "const MAX_N: usize = {max_n};").unwrap();
    std::fs::write(out.join("golden.rs"), code).unwrap();
}

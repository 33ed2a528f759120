//! Sets `recadam_arm_fpv4` on the Cortex-M targets whose FPU has single-precision fused
//! multiply-add and square root instructions (FPv4-SP on Cortex-M4F, FPv5 on Cortex-M7 and
//! Cortex-M33): there the f32 update uses them. Elsewhere libm's `fmaf` is used, which on these
//! chips would compute in software doubles.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(recadam_arm_fpv4)");
    println!("cargo::rerun-if-env-changed=TARGET");
    let target = std::env::var("TARGET").unwrap_or_default();
    if ["thumbv7em-none-eabihf", "thumbv8m.main-none-eabihf"].contains(&target.as_str()) {
        println!("cargo::rustc-cfg=recadam_arm_fpv4");
    }
}

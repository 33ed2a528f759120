//! Builds the C reference loop of the kernel benchmark the way the issue measures it:
//! `gcc -O3 -march=native -fno-math-errno` (without -fno-math-errno gcc does not vectorise sqrtf).
fn main() {
    println!("cargo:rerun-if-changed=c/update.c");
    cc::Build::new()
        .file("c/update.c")
        .opt_level(3)
        .flag_if_supported("-march=native")
        .flag("-fno-math-errno")
        .compile("recadam_c_reference");
}

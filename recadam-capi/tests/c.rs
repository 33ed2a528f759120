//! The C interface from C and C++: programs in `tests/c/` and `examples/c/`, compiled by the
//! system's `cc`/`c++` against `include/recadam.h` and the library cargo built, run natively and
//! under AddressSanitizer and UndefinedBehaviorSanitizer.
//!
//! Needs a C and C++ compiler and cJSON (Debian: `gcc g++ libcjson-dev`). Without them the tests
//! say so and pass, unless `RECADAM_REQUIRE_C` is set (CI sets it), where they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use recadam_core::{update, Element};
use recadam_testkit::golden;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder of the library the C programs link: the `recadam_c` example target, the same
/// library built by `cargo test` itself (`examples/clib.rs` says why), in this test's
/// `target/<profile>/examples/`.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .join("examples");
    let lib = dir.join("librecadam_c.a");
    let built = std::fs::metadata(&lib)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run `cargo test -p recadam-capi`, which builds it",
                lib.display()
            )
        });
    // `cargo test --test c` alone builds no example: a library older than the source would
    // test old code.
    let root = crate_dir().parent().expect("the workspace");
    for krate in [
        "recadam-capi",
        "recadam-std",
        "recadam-simd",
        "recadam-core",
    ] {
        if let Some(newer) =
            newest_source(&root.join(krate).join("src")).filter(|(t, _)| *t > built)
        {
            panic!(
                "{} is older than {}: run `cargo test -p recadam-capi` (all its targets), which rebuilds it",
                lib.display(),
                newer.1.display()
            );
        }
    }
    dir
}

fn newest_source(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() {
            newest_source(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (t, path))
        };
        newest = newest.max(found);
    }
    newest
}

/// The libraries a Rust static library needs on Linux (`rustc --print native-static-libs`).
const NATIVE_LIBS: [&str; 4] = ["-lpthread", "-ldl", "-lm", "-lgcc_s"];

const SANITIZE: [&str; 3] = [
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
];

/// Compiles `sources` into an executable in the test's scratch folder, or says why it cannot
/// (no compiler, no cJSON) and returns None when `RECADAM_REQUIRE_C` is not set.
fn compile(
    compiler: &str,
    name: &str,
    sources: &[&str],
    flags: &[&str],
    libs: &[&str],
) -> Option<PathBuf> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut cmd = Command::new(compiler);
    cmd.args(flags)
        .arg("-g")
        .arg("-I")
        .arg(crate_dir().join("include"))
        .args(sources.iter().map(|s| crate_dir().join(s)))
        .args(libs)
        .arg("-o")
        .arg(&out);
    let result = cmd.output();
    let missing = match &result {
        Err(e) => Some(format!("cannot run `{compiler}`: {e}")),
        Ok(o) if !o.status.success() => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            if stderr.contains("cjson/cJSON.h") {
                Some("cJSON is not installed (Debian: libcjson-dev)".to_string())
            } else {
                panic!("`{cmd:?}` failed:\n{stderr}");
            }
        }
        Ok(_) => None,
    };
    if let Some(why) = missing {
        assert!(
            std::env::var_os("RECADAM_REQUIRE_C").is_none(),
            "RECADAM_REQUIRE_C is set and {why}"
        );
        eprintln!("skipped: {why}");
        return None;
    }
    Some(out)
}

fn static_lib() -> Vec<String> {
    let mut libs = vec![lib_dir().join("librecadam_c.a").display().to_string()];
    libs.extend(NATIVE_LIBS.map(String::from));
    libs
}

fn run(program: &Path, args: &[&Path]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn golden_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let mut flags = vec![
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-O2",
    ];
    // g = a·(p − c) must round twice, as the golden README says: no contraction into an FMA.
    flags.push("-ffp-contract=off");
    flags.extend(extra);
    let mut libs = static_lib();
    libs.insert(1, "-lcjson".into());
    let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
    compile("cc", name, &["tests/c/golden.c"], &flags, &libs)
}

/// recadam's own replay of each golden case (the scalar reference): final arrays by name.
fn rust_replay() -> BTreeMap<(String, String), Vec<u64>> {
    let mut out = BTreeMap::new();
    for (name, case) in golden::cases() {
        let report = if case.is::<f32>() {
            golden::replay::<f32>(&case, update)
        } else {
            golden::replay::<f64>(&case, update)
        };
        let is_f32 = case.is::<f32>();
        for (array, values) in ["params", "exp_avg", "exp_avg_sq"].iter().zip(report.last) {
            let bits = values
                .iter()
                .map(|&x| {
                    if is_f32 {
                        u64::from(f32::round_from_f64(x).to_bits())
                    } else {
                        x.to_bits()
                    }
                })
                .collect();
            out.insert((name.clone(), array.to_string()), bits);
        }
    }
    out
}

fn c_replay(stdout: &[u8]) -> BTreeMap<(String, String), Vec<u64>> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("case "))
        .map(|l| {
            let mut words = l.split(' ');
            let (name, array) = (words.next().unwrap(), words.next().unwrap());
            let bits = words
                .map(|h| u64::from_str_radix(h, 16).expect("hex bits"))
                .collect();
            ((name.to_string(), array.to_string()), bits)
        })
        .collect()
}

#[test]
fn c_replays_every_golden_case_with_the_bits_of_the_rust_replay() {
    let Some(program) = golden_program("golden", &[]) else {
        return;
    };
    let out = run(&program, &[&golden::dir()]);
    let (c, rust) = (c_replay(&out.stdout), rust_replay());
    assert_eq!(
        c.len(),
        rust.len(),
        "the C program did not replay every case"
    );
    for (key, bits) in &rust {
        assert!(
            c.get(key) == Some(bits),
            "{key:?}: the C replay's bits differ from recadam's"
        );
    }
}

#[test]
fn c_golden_and_bad_input_run_clean_under_asan_and_ubsan() {
    let Some(golden_asan) = golden_program("golden-asan", &SANITIZE) else {
        return;
    };
    run(&golden_asan, &[&golden::dir()]);
    let mut flags = vec!["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic"];
    flags.extend(SANITIZE);
    let libs = static_lib();
    let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
    let bad = compile(
        "cc",
        "bad-input-asan",
        &["tests/c/bad_input.c"],
        &flags,
        &libs,
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    run(&bad, &[scratch.path()]);
}

#[test]
fn c_bad_input_returns_its_status_and_changes_nothing() {
    let flags = [
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-pedantic",
        "-O2",
    ];
    let libs = static_lib();
    let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
    let Some(bad) = compile("cc", "bad-input", &["tests/c/bad_input.c"], &flags, &libs) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let out = run(&bad, &[scratch.path()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 failures"), "{text}");
    assert!(
        text.lines()
            .filter(|l| l.starts_with("ok RECADAM_ERROR_"))
            .count()
            >= 40,
        "{text}"
    );
}

#[test]
fn the_header_compiles_and_links_as_cpp() {
    let flags = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"];
    let libs = static_lib();
    let libs: Vec<&str> = libs.iter().map(String::as_str).collect();
    let Some(program) = compile("c++", "header-cpp", &["tests/c/header.cpp"], &flags, &libs) else {
        return;
    };
    let out = run(&program, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("C++: recadam "));
}

#[test]
fn the_readme_example_links_the_shared_library() {
    let dir = lib_dir();
    let rpath = format!("-Wl,-rpath,{}", dir.display());
    let search = format!("-L{}", dir.display());
    let flags = ["-std=c99", "-Wall", "-Wextra", "-Werror"];
    let libs = [search.as_str(), "-lrecadam_c", rpath.as_str()];
    let Some(program) = compile("cc", "example", &["examples/c/example.c"], &flags, &libs) else {
        return;
    };
    let out = run(&program, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The weights moved towards the target (1.0) and the penalty held them short of it.
    let w: Vec<f64> = text
        .trim_start_matches("w = ")
        .split(',')
        .next()
        .unwrap()
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(
        w.len() == 4 && w[0] > 0.5 && w[0] < 1.0 && w[1] > -0.25,
        "{text}"
    );
}

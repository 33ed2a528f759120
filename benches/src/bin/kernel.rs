//! The update kernel, per backend, single thread, for n = 2^12 … 2^26 f32 parameters, with the
//! memory-bandwidth limit (a streaming kernel of the same memory shape) measured in the same run.
//!
//!     cargo run --release -p benches --bin kernel            # a table
//!     cargo run --release -p benches --bin kernel -- --json  # one JSON object per (backend, n)
//!
//! Besides the fields `backend`, `n`, `threads`, `ns_per_param`, `gbps`, `limit_gbps`, `ratio`,
//! each line has `subnormal_ns_per_param` (the same kernel at a step whose Adam scalar is
//! subnormal) and `c_ns_per_param` (a plain C loop, gcc -O3 -march=native -fno-math-errno).

use std::time::Duration;

use benches::{
    c_update, config, gbps, time_kernel, time_per_call, time_stream, Buffers, NORMAL_STEP,
    SUBNORMAL_STEP,
};
use recadam_core::StepScalars;
use recadam_simd::{Backend, Kernel};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let only = match Kernel::from_env() {
        Ok(k) if std::env::var_os("RECADAM_BACKEND").is_some() => Some(k.backend()),
        Ok(_) => None,
        Err(e) => {
            eprintln!("kernel: {e}");
            std::process::exit(2);
        }
    };
    let backends: Vec<Backend> = Backend::available()
        .filter(|b| only.is_none_or(|o| o == *b))
        .collect();
    let best = Kernel::best();
    let exponents: Vec<u32> = if quick {
        vec![12, 16]
    } else {
        (12..=26).step_by(2).collect()
    };
    if !json {
        println!(
            "recadam kernel, 1 thread, f32; limit = streaming kernel (5 read, 3 written) on {}",
            best.backend()
        );
        println!(
            "{:>8} {:>9} {:>10} {:>8} {:>10} {:>7} {:>14} {:>10}",
            "backend", "n", "ns/param", "GB/s", "limit GB/s", "ratio", "subnormal ns/p", "C ns/p"
        );
    }
    for e in exponents {
        let n = 1usize << e;
        let (batch, batches) = if n >= 1 << 24 {
            (Duration::from_millis(150), 3)
        } else {
            (Duration::from_millis(40), 5)
        };
        let pristine = Buffers::new(n);
        let mut buffers = pristine.clone();
        let limit = time_stream(best, &mut buffers, batch, batches);
        let config = config();
        let scalars = StepScalars::<f32>::new(&config, NORMAL_STEP, config.lr).unwrap();
        buffers.reset_from(&pristine);
        let c = time_per_call(|| c_update(&scalars, &mut buffers), batch, batches);
        for &backend in &backends {
            let kernel = Kernel::new(backend).unwrap();
            buffers.reset_from(&pristine);
            let t = time_kernel(kernel, &mut buffers, NORMAL_STEP, batch, batches);
            buffers.reset_from(&pristine);
            let sub = time_kernel(kernel, &mut buffers, SUBNORMAL_STEP, batch, batches);
            let (ns, sub_ns, c_ns) = (t * 1e9 / n as f64, sub * 1e9 / n as f64, c * 1e9 / n as f64);
            let (g, lg) = (gbps(n, t), gbps(n, limit));
            if json {
                println!(
                    "{}",
                    json!({
                        "backend": backend.name(), "n": n, "threads": 1,
                        "ns_per_param": ns, "gbps": g, "limit_gbps": lg, "ratio": g / lg,
                        "subnormal_ns_per_param": sub_ns, "c_ns_per_param": c_ns,
                    })
                );
            } else {
                println!(
                    "{:>8} {:>9} {:>10.3} {:>8.2} {:>10.2} {:>7.3} {:>14.3} {:>10.3}",
                    backend.name(),
                    format!("2^{e}"),
                    ns,
                    g,
                    lg,
                    g / lg,
                    sub_ns,
                    c_ns
                );
            }
        }
    }
}

//! The update kernel, per backend, single thread, for n = 2^12 … 2^26 f32 parameters, with the
//! memory-bandwidth limit (a streaming kernel of the same memory shape) measured in the same run.
//!
//!     cargo run --release -p benches --bin kernel            # a table
//!     cargo run --release -p benches --bin kernel -- --json  # one JSON object per (backend, n)
//!
//! The streaming kernel, a plain C loop (gcc -O3 -march=native -fno-math-errno) and every
//! backend run in alternation (`time_interleaved`, 9 rounds below 2^24, 3 above); `ratio` (ours
//! against the stream) and `speed_vs_c` (the C loop's time over ours) are medians of ratios taken
//! within a round. Besides those and `backend`, `n`, `threads`, `ns_per_param`, `gbps`,
//! `limit_gbps`, each line has `subnormal_ns_per_param` (the same kernel at a step whose Adam
//! scalar is subnormal, timed after the rounds) and `c_ns_per_param`.

use std::time::Duration;

use benches::{
    c_update, config, gbps, time_interleaved, time_kernel, Buffers, NORMAL_STEP, SUBNORMAL_STEP,
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
            "{:>8} {:>9} {:>10} {:>8} {:>10} {:>7} {:>14} {:>10} {:>7}",
            "backend",
            "n",
            "ns/param",
            "GB/s",
            "limit GB/s",
            "ratio",
            "subnormal ns/p",
            "C ns/p",
            "vs C"
        );
    }
    for e in exponents {
        let n = 1usize << e;
        let (batch, rounds) = if n >= 1 << 24 {
            (Duration::from_millis(150), 3)
        } else {
            (Duration::from_millis(40), 9)
        };
        let config = config();
        let scalars = StepScalars::<f32>::new(&config, NORMAL_STEP, config.lr).unwrap();
        let pristine = Buffers::new(n);
        // The stream, the C loop and each backend alternate in rounds (time_interleaved), each
        // on buffers of its own: the ratios compare runs a few milliseconds apart.
        let mut stream_buffers = pristine.clone();
        let mut c_buffers = pristine.clone();
        let mut kernel_buffers: Vec<(Kernel, Buffers)> = backends
            .iter()
            .map(|&b| (Kernel::new(b).unwrap(), pristine.clone()))
            .collect();
        let mut stream = || best.stream(stream_buffers.slices());
        let mut c_loop = || c_update(&scalars, &mut c_buffers);
        let mut kernels: Vec<Box<dyn FnMut() + '_>> = kernel_buffers
            .iter_mut()
            .map(|(kernel, buffers)| {
                let (kernel, scalars) = (*kernel, &scalars);
                Box::new(move || kernel.update(scalars, buffers.slices())) as Box<dyn FnMut()>
            })
            .collect();
        let mut fs: Vec<&mut dyn FnMut()> = vec![&mut stream, &mut c_loop];
        fs.extend(kernels.iter_mut().map(|f| &mut **f as &mut dyn FnMut()));
        let timing = time_interleaved(&mut fs, batch, rounds);
        drop(fs);
        drop(kernels);
        let (limit, c) = (timing.seconds[0], timing.seconds[1]);
        for (k, (kernel, buffers)) in kernel_buffers.iter_mut().enumerate() {
            let (t, backend) = (timing.seconds[2 + k], kernel.backend());
            let ratio = 1.0 / timing.speedup(0, 2 + k); // stream time / ours
            let vs_c = timing.speedup(2 + k, 1); // C time / ours
            buffers.reset_from(&pristine);
            let sub = time_kernel(*kernel, buffers, SUBNORMAL_STEP, batch, 5);
            let (ns, sub_ns, c_ns) = (t * 1e9 / n as f64, sub * 1e9 / n as f64, c * 1e9 / n as f64);
            let (g, lg) = (gbps(n, t), gbps(n, limit));
            if json {
                println!(
                    "{}",
                    json!({
                        "backend": backend.name(), "n": n, "threads": 1,
                        "ns_per_param": ns, "gbps": g, "limit_gbps": lg, "ratio": ratio,
                        "subnormal_ns_per_param": sub_ns, "c_ns_per_param": c_ns,
                        "speed_vs_c": vs_c, "rounds": rounds,
                    })
                );
            } else {
                println!(
                    "{:>8} {:>9} {:>10.3} {:>8.2} {:>10.2} {:>7.3} {:>14.3} {:>10.3} {:>7.3}",
                    backend.name(),
                    format!("2^{e}"),
                    ns,
                    g,
                    lg,
                    ratio,
                    sub_ns,
                    c_ns,
                    vs_c
                );
            }
        }
    }
}

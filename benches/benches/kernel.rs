//! Criterion benchmark of the update kernel per backend and of the streaming limit, reported as
//! bytes per second (32 bytes per f32 parameter). Run: `cargo bench -p benches --bench kernel`.

use std::hint::black_box;

use benches::{config, Buffers, BYTES_PER_PARAM_F32, NORMAL_STEP, SUBNORMAL_STEP};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use recadam_core::StepScalars;
use recadam_simd::{Backend, Kernel};

fn kernel(c: &mut Criterion) {
    let config = config();
    for e in [12u32, 16, 20, 24] {
        let n = 1usize << e;
        let mut group = c.benchmark_group(format!("kernel/2^{e}"));
        group.throughput(Throughput::Bytes((n as f64 * BYTES_PER_PARAM_F32) as u64));
        group.sample_size(if e >= 24 { 10 } else { 30 });
        let pristine = Buffers::new(n);
        let mut b = pristine.clone();
        for backend in Backend::available() {
            let k = Kernel::new(backend).unwrap();
            for (label, t) in [
                ("normal", NORMAL_STEP),
                ("subnormal-scalar", SUBNORMAL_STEP),
            ] {
                let s = StepScalars::<f32>::new(&config, t, config.lr).unwrap();
                b.reset_from(&pristine);
                group.bench_function(BenchmarkId::new(backend.name(), label), |bench| {
                    bench.iter(|| k.update(black_box(&s), b.slices()))
                });
            }
        }
        let best = Kernel::best();
        b.reset_from(&pristine);
        group.bench_function(
            BenchmarkId::new("stream-limit", best.backend().name()),
            |bench| bench.iter(|| best.stream(b.slices())),
        );
        group.finish();
    }
}

criterion_group!(benches, kernel);
criterion_main!(benches);

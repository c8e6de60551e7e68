//! `aggregate`: raw kernel samples to a symbolized profile, with a fake
//! resolver that costs a `format!` per address, so what is measured is the
//! aggregator (deduplicating addresses, building locations, merging stacks).
//! Throughput is raw samples.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use profiler::aggregate::aggregate;
use profiler_benches::{FakeResolver, SynthConfig, bench_meta, synthetic_raw};

fn aggregation(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    for (label, samples) in [("1k", 1_000), ("20k", 20_000)] {
        let raw = synthetic_raw(&SynthConfig::realistic(samples));
        let meta = bench_meta();
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &raw, |b, raw| {
            b.iter(|| aggregate(black_box(raw), &mut FakeResolver, meta.clone()))
        });
    }
    group.finish();
}

criterion_group!(benches, aggregation);
criterion_main!(benches);

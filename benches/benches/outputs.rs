//! The writers, on a profile aggregated from synthetic data with 1k and 10k
//! distinct stacks: the SVG flame graph (inferno), gzip'd pprof and folded
//! stacks, each written into a `Vec` (reused, so allocation of the output
//! buffer is not measured). Throughput is distinct stacks.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use profiler::output::{SvgOptions, folded, pprof, svg};
use profiler_benches::profile_with_unique_stacks;

fn outputs(c: &mut Criterion) {
    let sizes = [("1k", 1_000), ("10k", 10_000)];
    let profiles: Vec<_> = sizes
        .iter()
        .map(|&(label, stacks)| {
            let profile = profile_with_unique_stacks(stacks);
            debug_assert_eq!(folded::folded_lines(&profile).len(), stacks);
            (label, stacks, profile)
        })
        .collect();
    let options = SvgOptions::default();

    let mut group = c.benchmark_group("output");
    // The SVG of 10k stacks takes tens of milliseconds; fewer samples keep
    // the run short.
    group.sample_size(20);
    for (label, stacks, profile) in &profiles {
        group.throughput(Throughput::Elements(*stacks as u64));
        let mut out = Vec::new();
        group.bench_with_input(BenchmarkId::new("svg", label), profile, |b, profile| {
            b.iter(|| {
                out.clear();
                svg::write_svg(black_box(profile), &options, &mut out).unwrap();
            })
        });
        group.bench_with_input(
            BenchmarkId::new("pprof_gz", label),
            profile,
            |b, profile| {
                b.iter(|| {
                    out.clear();
                    pprof::write_pprof(black_box(profile), &mut out).unwrap();
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("folded", label), profile, |b, profile| {
            b.iter(|| {
                out.clear();
                folded::write_folded(black_box(profile), &mut out).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, outputs);
criterion_main!(benches);

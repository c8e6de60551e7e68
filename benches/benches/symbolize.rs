//! Real symbolization through the profiler's `Symbolizer` (blazesym).
//!
//! User: about 1000 code addresses of this very process: functions listed
//! from the ELF symbol tables of the bench binary (its own code and the std
//! it links statically) and of the shared libraries it maps (libc, ...),
//! each at an offset inside the function, looked up through a maps snapshot
//! taken with `symbolizer::capture`, as the profiler does.
//!
//! Kernel: about 1000 text symbols of `/proc/kallsyms`, each plus a small
//! offset (skipped, with a note, when kallsyms hides addresses).
//!
//! `cold` builds a new `Symbolizer` for each iteration, so blazesym opens and
//! parses the ELF/DWARF (or kallsyms) again; the files themselves stay in the
//! page cache. `warm` repeats the lookup on one primed `Symbolizer`: every
//! address is a hit in the profiler's own cache. Throughput is addresses.

use std::{collections::BTreeMap, hint::black_box, ops::ControlFlow, sync::Arc};

use blazesym::{
    SymType,
    inspect::{
        Inspector,
        source::{Elf, Source},
    },
};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use profiler_benches::XorShift;
use symbolizer::{FileCache, ObjectFile, ProcessMaps, Symbolizer, capture};

/// How many addresses each side looks up.
const ADDRESSES: usize = 1000;
/// Of the user addresses, how many come from the bench binary itself; the
/// rest are spread over the shared libraries.
const FROM_EXECUTABLE: usize = 800;

/// `(file offset, size)` of the functions in a file's ELF symbol tables,
/// listed by blazesym's inspector.
fn elf_functions(object: &ObjectFile) -> Vec<(u64, u64)> {
    let mut elf = Elf::new(object.fd_path());
    elf.debug_syms = false;
    let mut functions = Vec::new();
    let listed = Inspector::new().for_each(&Source::Elf(elf), |sym| {
        if let (SymType::Function, Some(offset), Some(size)) =
            (sym.sym_type, sym.file_offset, sym.size)
            && size > 0
        {
            functions.push((offset, size as u64));
        }
        ControlFlow::Continue(())
    });
    if let Err(e) = listed {
        eprintln!("note: cannot list the symbols of {}: {e}", object.path);
    }
    functions
}

/// Runtime start and size of the functions of one mapped file, by address.
fn functions_of(maps: &ProcessMaps, object: &Arc<ObjectFile>) -> Vec<(u64, u64)> {
    let mut functions = BTreeMap::new();
    for (offset, size) in elf_functions(object) {
        // The mapping of this file that holds that offset gives the address.
        for m in maps
            .mappings
            .iter()
            .filter(|m| m.object.as_ref().is_some_and(|o| o.key == object.key))
        {
            if offset >= m.file_offset && offset < m.file_offset + (m.end - m.start) {
                functions.insert(m.start + offset - m.file_offset, size);
            }
        }
    }
    functions.into_iter().collect()
}

/// `count` functions spread evenly over `functions`, each at a random offset
/// inside it.
fn pick(functions: &[(u64, u64)], count: usize, rng: &mut XorShift) -> Vec<u64> {
    let count = count.min(functions.len());
    (0..count)
        .map(|i| {
            let (start, size) = functions[i * functions.len() / count];
            start + rng.below(size as usize) as u64
        })
        .collect()
}

fn user_addresses(maps: &ProcessMaps) -> Vec<u64> {
    let own = user_addresses as fn(&ProcessMaps) -> Vec<u64> as usize as u64;
    let exe = maps
        .find(own)
        .and_then(|(_, m)| m.object.clone())
        .expect("the bench binary is mapped from a file");
    let mut rng = XorShift::new(42);
    let mut addrs = pick(&functions_of(maps, &exe), FROM_EXECUTABLE, &mut rng);
    let from_exe = addrs.len();

    let mut libraries: Vec<Arc<ObjectFile>> = Vec::new();
    for m in maps.mappings.iter() {
        if let Some(o) = &m.object
            && o.key != exe.key
            && !libraries.iter().any(|l| l.key == o.key)
        {
            libraries.push(o.clone());
        }
    }
    let per_library = (ADDRESSES - from_exe) / libraries.len().max(1);
    let mut names = Vec::new();
    for library in &libraries {
        let picked = pick(&functions_of(maps, library), per_library, &mut rng);
        names.push(format!(
            "{} {}",
            library.path.rsplit('/').next().unwrap_or(&library.path),
            picked.len()
        ));
        addrs.extend(picked);
    }
    eprintln!(
        "note: user addresses: {} ({from_exe} in the bench binary, libraries: {})",
        addrs.len(),
        names.join(", ")
    );
    addrs
}

/// Text symbols of the running kernel plus small offsets, or `None` when
/// kallsyms shows only zeros (not root, or `kptr_restrict`).
fn kernel_addresses() -> Option<Vec<u64>> {
    let text = std::fs::read_to_string("/proc/kallsyms").ok()?;
    let mut starts: Vec<u64> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
            matches!(fields.next()?, "t" | "T").then_some(addr)
        })
        .filter(|&addr| addr != 0)
        .collect();
    if starts.is_empty() {
        return None;
    }
    starts.sort_unstable();
    starts.dedup();
    let mut rng = XorShift::new(7);
    let count = ADDRESSES.min(starts.len() - 1);
    Some(
        (0..count)
            .map(|i| {
                let j = i * (starts.len() - 1) / count;
                // Stay before the next symbol.
                let room = (starts[j + 1] - starts[j]).min(0x40) as usize;
                starts[j] + rng.below(room) as u64
            })
            .collect(),
    )
}

fn report(label: &str, symbolizer: &Symbolizer, total: usize) {
    let stats = symbolizer.stats();
    eprintln!(
        "note: {label}: {total} addresses, {} distinct looked up, {} not symbolized, {} failed lookups",
        stats.cache_misses, stats.unknown, stats.failed_lookups
    );
}

fn symbolize(c: &mut Criterion) {
    let mut files = FileCache::default();
    let maps = capture(std::process::id(), &mut files).expect("own maps");
    let user = user_addresses(&maps);

    let mut primed = Symbolizer::new();
    black_box(primed.symbolize_user(&maps, &user));
    report("user", &primed, user.len());

    let mut group = c.benchmark_group("symbolize_user");
    group.throughput(Throughput::Elements(user.len() as u64));
    // A cold lookup parses the binary's DWARF: far slower than a warm one.
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter("cold"), |b| {
        b.iter_batched(
            Symbolizer::new,
            // The symbolizer is handed back so its drop is not timed.
            |mut symbolizer| {
                let symbols = symbolizer.symbolize_user(&maps, black_box(&user));
                (symbolizer, symbols)
            },
            BatchSize::PerIteration,
        )
    });
    group.sample_size(100);
    group.bench_function(BenchmarkId::from_parameter("warm"), |b| {
        b.iter(|| primed.symbolize_user(&maps, black_box(&user)))
    });
    group.finish();

    let Some(kernel) = kernel_addresses() else {
        eprintln!(
            "note: /proc/kallsyms shows no addresses (not root?): skipping the kernel benchmarks"
        );
        return;
    };
    let mut primed = Symbolizer::new();
    black_box(primed.symbolize_kernel(&kernel));
    report("kernel", &primed, kernel.len());

    let mut group = c.benchmark_group("symbolize_kernel");
    group.throughput(Throughput::Elements(kernel.len() as u64));
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter("cold"), |b| {
        b.iter_batched(
            Symbolizer::new,
            |mut symbolizer| {
                let symbols = symbolizer.symbolize_kernel(black_box(&kernel));
                (symbolizer, symbols)
            },
            BatchSize::PerIteration,
        )
    });
    group.sample_size(100);
    group.bench_function(BenchmarkId::from_parameter("warm"), |b| {
        b.iter(|| primed.symbolize_kernel(black_box(&kernel)))
    });
    group.finish();
}

criterion_group!(benches, symbolize);
criterion_main!(benches);

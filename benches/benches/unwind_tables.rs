//! Building unwind tables (`unwind-tables`) for the system's libc, dynamic
//! loader and python3 from their bytes, read once beforehand: gimli's
//! evaluation of every FDE, conversion to rows and merging. Throughput is
//! bytes of `.eh_frame` (and `.debug_frame`). The rows and their size are
//! printed once per file.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const FILES: [(&str, &str); 3] = [
    ("libc", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
    ("ld.so", "/lib64/ld-linux-x86-64.so.2"),
    ("python3", "/usr/bin/python3"),
];

fn unwind_tables(c: &mut Criterion) {
    let mut group = c.benchmark_group("unwind_tables");
    for (label, path) in FILES {
        let Ok(data) = std::fs::read(path) else {
            eprintln!("note: {path} cannot be read: skipping it");
            continue;
        };
        let table = match unwind_tables::build_table(&data) {
            Ok(table) => table,
            Err(e) => {
                eprintln!("note: {path}: {e}: skipping it");
                continue;
            }
        };
        let s = &table.stats;
        eprintln!(
            "note: {label}: {} rows, {} bytes of table ({} rows before merging, {} unsupported) from {} FDEs, {} bytes of CFI",
            table.rows.len(),
            table.bytes(),
            s.rows_before_merge,
            s.unsupported_rows,
            s.fdes,
            s.eh_frame_bytes + s.debug_frame_bytes,
        );
        group.throughput(Throughput::Bytes(
            (s.eh_frame_bytes + s.debug_frame_bytes) as u64,
        ));
        group.bench_with_input(BenchmarkId::from_parameter(label), &data, |b, data| {
            b.iter(|| unwind_tables::build_table(black_box(data)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, unwind_tables);
criterion_main!(benches);

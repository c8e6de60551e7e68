//! Builds the tables of the files named on the command line and prints
//! their statistics and build time (the best of 10 builds); with `--rows`,
//! the rows as well.
//! `cargo run --release -p unwind-tables --example dump -- /usr/lib/x86_64-linux-gnu/libc.so.6`

use std::path::Path;
use std::time::Instant;

use profiler_common::cfa;

const KINDS: [(u8, &str); 10] = [
    (cfa::NONE, "none"),
    (cfa::END, "end"),
    (cfa::RSP, "rsp"),
    (cfa::RBP, "rbp"),
    (cfa::PLT, "plt"),
    (cfa::DEREF_RSP, "deref_rsp"),
    (cfa::DEREF_RBP, "deref_rbp"),
    (cfa::SIGNAL, "signal"),
    (cfa::RSP_WORDS, "rsp_words"),
    (cfa::UNSUPPORTED, "unsupported"),
];

fn main() {
    let mut print_rows = false;
    for arg in std::env::args().skip(1) {
        if arg == "--rows" {
            print_rows = true;
            continue;
        }
        let mut elapsed = std::time::Duration::MAX;
        let mut built = None;
        for _ in 0..10 {
            let start = Instant::now();
            let table = unwind_tables::build_table_for_path(Path::new(&arg));
            elapsed = elapsed.min(start.elapsed());
            built = Some(table);
        }
        let table = match built.unwrap() {
            Ok(table) => table,
            Err(e) => {
                println!("{arg}: {e}");
                continue;
            }
        };
        let s = &table.stats;
        let kinds: Vec<String> = KINDS
            .iter()
            .map(|&(k, name)| format!("{name} {}", s.kinds[k as usize]))
            .collect();
        println!(
            "{arg}: {:.2} ms, {} rows ({} bytes; {} before merging), {} FDEs ({} from .debug_frame, {} dropped, {} skipped), \
             .eh_frame {} bytes, .debug_frame {} bytes",
            elapsed.as_secs_f64() * 1e3,
            table.rows.len(),
            table.bytes(),
            s.rows_before_merge,
            s.fdes,
            s.fdes_debug_frame,
            s.fdes_dropped,
            s.fdes_skipped,
            s.eh_frame_bytes,
            s.debug_frame_bytes,
        );
        println!("  kinds: {}", kinds.join(", "));
        println!("  unsupported (before merging): {:?}", s.unsupported);
        let rbp_unsupported = table
            .rows
            .iter()
            .filter(|r| r.rbp_kind() == profiler_common::rbp_rule::UNSUPPORTED)
            .count();
        println!("  rows with rbp unsupported: {rbp_unsupported}");
        if print_rows {
            for row in &table.rows {
                println!(
                    "  {:#010x} cfa {:2} off {:5} rbp {:2} {:3}",
                    row.pc,
                    row.cfa_kind(),
                    row.cfa_offset,
                    row.rbp_kind(),
                    row.rbp_offset
                );
            }
        }
    }
}

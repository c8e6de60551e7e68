//! Tables of the system's own libc, dynamic loader and python3, held
//! against readelf's reading of their frame information.

mod common;

use std::path::Path;

use common::*;
use profiler_common::{UnwindRow, cfa, rbp_rule};
use unwind_tables::{build_table, build_table_for_path, lookup};

const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";
const PYTHON: &str = "/usr/bin/python3";

/// The file at `path`, or `None` with a loud note (another distribution).
fn present(path: &str) -> Option<&Path> {
    let path = Path::new(path);
    if path.exists() && have("readelf") {
        Some(path)
    } else {
        eprintln!("SKIPPED: {} or readelf is missing", path.display());
        None
    }
}

fn check_against_readelf(path: &Path) -> unwind_tables::UnwindTable {
    let table = build_table_for_path(path).unwrap();
    assert_well_formed(&table.rows);
    // Building from the bytes gives the same table when no debug file adds
    // a `.debug_frame`.
    if table.stats.debug_frame_bytes == 0 {
        assert_eq!(build_table(&std::fs::read(path).unwrap()).unwrap(), table);
    }
    let (compared, expressions) = compare_with_readelf(path, &table.rows);
    eprintln!(
        "{}: {} rows, {} readelf rows compared ({expressions} CFA expressions), stats {:?}",
        path.display(),
        table.rows.len(),
        compared,
        table.stats
    );
    assert!(compared >= table.stats.fdes);
    assert_eq!(table.stats.fdes_dropped, 0);
    assert_eq!(table.stats.fdes, readelf_fdes(path).len());
    table
}

fn entry_is_rsp_plus_8(path: &Path, rows: &[UnwindRow], function: &str) {
    let segments = load_segments(path);
    let vaddr = symbol(path, function).unwrap_or_else(|| panic!("no symbol {function}"));
    let pc = file_offset(&segments, vaddr).unwrap();
    let row = lookup(rows, pc).unwrap();
    assert_eq!(
        (row.cfa_kind(), row.cfa_offset, row.rbp_kind()),
        (cfa::RSP, 8, rbp_rule::SAME),
        "{function} at {pc:#x}: {row:?}"
    );
}

/// The `(file offset, row)` of the first PLT row, which must be at `.plt`
/// + 16, after the first stub's two pushes.
fn check_plt(path: &Path, rows: &[UnwindRow]) {
    use object::{Object, ObjectSection};
    let data = std::fs::read(path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let plt = file.section_by_name(".plt").expect(".plt").address();
    let pc = file_offset(&load_segments(path), plt + 16).unwrap();
    let row = lookup(rows, pc).unwrap();
    assert_eq!(row.pc, pc, "{row:?}");
    assert_eq!(row.cfa_kind(), cfa::PLT, "{row:?}");
    assert_eq!(row.cfa_offset, 8);
    assert!(matches!(row.rbp_offset, 10 | 11), "{row:?}");
    assert_eq!(row.rbp_kind(), rbp_rule::SAME);
    let before = lookup(rows, pc - 1).unwrap();
    assert_eq!((before.cfa_kind(), before.cfa_offset), (cfa::RSP, 24));
}

#[test]
fn libc() {
    let Some(path) = present(LIBC) else { return };
    let table = check_against_readelf(path);
    for function in ["malloc", "free", "qsort", "getenv", "fopen"] {
        entry_is_rsp_plus_8(path, &table.rows, function);
    }
    check_plt(path, &table.rows);
    // clone and clone3's children: the return address is undefined.
    assert!(table.stats.kinds[cfa::END as usize] >= 1);
    // Compared with readelf above; a few hand-written functions (longjmp)
    // keep the return address in a register.
    assert!(table.stats.unsupported_rows < table.rows.len() / 100);
}

#[test]
fn libc_restore_rt_is_a_signal_frame() {
    let Some(path) = present(LIBC) else { return };
    let table = build_table_for_path(path).unwrap();
    // libc.so.6 is stripped: the symbol is in its debug file, if installed.
    let id = unwind_tables::build_id(&std::fs::read(path).unwrap()).expect("libc has a build ID");
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let debug = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
    let Some(vaddr) =
        symbol(path, "__restore_rt").or_else(|| symbol(Path::new(&debug), "__restore_rt"))
    else {
        eprintln!("SKIPPED: no symbol __restore_rt in {LIBC} or {debug} (libc6-dbg)");
        return;
    };
    let pc = file_offset(&load_segments(path), vaddr).unwrap();
    let row = lookup(&table.rows, pc).unwrap();
    assert_eq!(
        row.cfa_kind(),
        cfa::SIGNAL,
        "__restore_rt at {pc:#x}: {row:?}"
    );
    // Its FDE starts a byte early, at the nop unwinders land on after
    // subtracting 1 from the return address.
    assert_eq!(lookup(&table.rows, pc - 1).unwrap().cfa_kind(), cfa::SIGNAL);
    assert_eq!(table.stats.kinds[cfa::SIGNAL as usize], 1);
}

#[test]
fn ld_so() {
    let Some(path) = present(LD_SO) else { return };
    let table = check_against_readelf(path);
    entry_is_rsp_plus_8(path, &table.rows, "_dl_catch_exception");
    // _dl_runtime_resolve_* base the CFA on rbx once they realign the stack.
    assert!(table.stats.unsupported.cfa_register > 0);
}

#[test]
fn python3() {
    let Some(path) = present(PYTHON) else { return };
    let table = check_against_readelf(path);
    check_plt(path, &table.rows);
    // _start, the entry point, is the outermost frame.
    use object::Object;
    let entry = object::File::parse(&*std::fs::read(path).unwrap())
        .unwrap()
        .entry();
    let pc = file_offset(&load_segments(path), entry).unwrap();
    assert_eq!(lookup(&table.rows, pc).unwrap().cfa_kind(), cfa::END);
}

#[test]
fn lookup_finds_the_last_row_at_or_before() {
    let row = |pc, kind| UnwindRow {
        pc,
        kind,
        ..UnwindRow::default()
    };
    let rows = [
        row(0x10, cfa::RSP),
        row(0x20, cfa::RBP),
        row(0x30, cfa::NONE),
    ];
    assert_eq!(lookup(&rows, 0), None);
    assert_eq!(lookup(&rows, 0xf), None);
    assert_eq!(lookup(&rows, 0x10), Some(&rows[0]));
    assert_eq!(lookup(&rows, 0x1f), Some(&rows[0]));
    assert_eq!(lookup(&rows, 0x20), Some(&rows[1]));
    assert_eq!(lookup(&rows, 0x30), Some(&rows[2]));
    assert_eq!(lookup(&rows, u32::MAX), Some(&rows[2]));
    assert_eq!(lookup(&[], 5), None);
}

#[test]
fn not_elf_is_an_error() {
    assert!(matches!(
        build_table(b"not an ELF file at all"),
        Err(unwind_tables::Error::Elf { .. })
    ));
    assert_eq!(unwind_tables::build_id(b"nope"), None);
}

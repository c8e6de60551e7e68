//! Tables of small C programs compiled here with gcc, held against
//! readelf and against what the compiler is known to emit.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use profiler_common::{UnwindRow, cfa, rbp_rule};
use unwind_tables::{Error, build_table, build_table_for_path, lookup};

const FRAME_POINTER: &str = r#"
#include <stdio.h>
__attribute__((noinline)) long leaf(long n) { return n * 3; }
__attribute__((noinline)) long with_frame(long n) {
    volatile long a[4] = {n, n + 1, n + 2, n + 3};
    printf("%ld\n", a[1]);
    return leaf(a[0] + a[3]) + 1;
}
int main(int argc, char **argv) { return (int)with_frame(argc); }
"#;

fn row_at(path: &Path, rows: &[UnwindRow], vaddr: u64) -> UnwindRow {
    let pc = file_offset(&load_segments(path), vaddr).unwrap();
    *lookup(rows, pc).unwrap_or_else(|| panic!("no row at {pc:#x}"))
}

/// `with_frame` begins `push rbp` and soon has `mov rbp, rsp`: rsp + 8,
/// then rsp + 16 with rbp saved at CFA - 16, then rbp + 16.
fn check_frame_pointer_prologue(path: &Path) -> unwind_tables::UnwindTable {
    let table = build_table_for_path(path).unwrap();
    assert_well_formed(&table.rows);
    compare_with_readelf(path, &table.rows);

    let entry = symbol(path, "with_frame").unwrap();
    let code = std::fs::read(path).unwrap();
    let offset = file_offset(&load_segments(path), entry).unwrap() as usize;
    let prologue = &code[offset..offset + 16];
    assert_eq!(prologue[0], 0x55, "with_frame does not begin with push rbp");
    // gcc may schedule other instructions before it.
    let mov = prologue
        .windows(3)
        .position(|w| w == [0x48, 0x89, 0xe5])
        .expect("mov rbp, rsp in with_frame's prologue") as u64;
    let at = |delta| {
        let row = row_at(path, &table.rows, entry + delta);
        (
            row.cfa_kind(),
            row.cfa_offset,
            row.rbp_kind(),
            row.rbp_offset,
        )
    };
    assert_eq!(at(0), (cfa::RSP, 8, rbp_rule::SAME, 0));
    assert_eq!(at(1), (cfa::RSP, 16, rbp_rule::AT_CFA, -2));
    assert_eq!(at(mov), (cfa::RSP, 16, rbp_rule::AT_CFA, -2));
    assert_eq!(at(mov + 3), (cfa::RBP, 16, rbp_rule::AT_CFA, -2));
    table
}

#[test]
fn pie_frame_pointer_function() {
    let dir = temp_dir("pie");
    let Some(exe) = compile(
        &dir,
        "fp",
        FRAME_POINTER,
        &["-O2", "-fno-omit-frame-pointer", "-fPIE", "-pie"],
    ) else {
        return;
    };
    check_frame_pointer_prologue(&exe);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_pie_rows_are_keyed_by_file_offset() {
    let dir = temp_dir("no-pie");
    let Some(exe) = compile(
        &dir,
        "fp",
        FRAME_POINTER,
        &["-O2", "-fno-omit-frame-pointer", "-no-pie"],
    ) else {
        return;
    };
    let table = check_frame_pointer_prologue(&exe);
    // The text segment is linked at 0x400000 and more, but rows are keyed
    // by where the code is in the file.
    let entry = symbol(&exe, "with_frame").unwrap();
    let segments = load_segments(&exe);
    let &(vaddr, _, offset) = segments
        .iter()
        .find(|&&(start, size, _)| entry >= start && entry < start + size)
        .unwrap();
    assert!(vaddr >= 0x400000 && vaddr != offset, "{segments:x?}");
    let pc = (entry - (vaddr - offset)) as u32;
    assert_eq!(lookup(&table.rows, pc).unwrap().pc, pc);
    assert!(table.rows.iter().all(|r| u64::from(r.pc) < 0x400000));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn large_stack_frames_count_in_words_up_to_512_kib() {
    let dir = temp_dir("big");
    let source = r#"
#include <string.h>
__attribute__((noinline)) int use(char *p) { return p[7]; }
__attribute__((noinline)) int big(int n) { char buf[100000]; memset(buf, n, sizeof buf); return use(buf) + buf[n]; }
__attribute__((noinline)) int huge(int n) { char buf[600000]; memset(buf, n, sizeof buf); return use(buf) + buf[n]; }
int main(int argc, char **argv) { return big(argc) + huge(argc); }
"#;
    let Some(exe) = compile(&dir, "big", source, &["-O2"]) else {
        return;
    };
    let table = build_table_for_path(&exe).unwrap();
    assert_well_formed(&table.rows);
    compare_with_readelf(&exe, &table.rows);
    // rsp + 100016 does not fit 16 bits: 12 502 words of 8 bytes.
    let rows = function_rows(&exe, &table.rows, "big");
    assert!(
        rows.iter()
            .any(|r| (r.cfa_kind(), r.cfa_offset) == (cfa::RSP_WORDS, (100016 / 8) as u16)),
        "{rows:?}"
    );
    assert_eq!((rows[0].cfa_kind(), rows[0].cfa_offset), (cfa::RSP, 8));
    // rsp + 600016 does not fit in words either.
    let rows = function_rows(&exe, &table.rows, "huge");
    assert!(
        rows.iter().any(|r| r.cfa_kind() == cfa::UNSUPPORTED),
        "{rows:?}"
    );
    assert!(table.stats.unsupported.cfa_offset >= 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn realigned_main_derefs_rbp() {
    let dir = temp_dir("realign");
    // A variable-length array next to an over-aligned one makes gcc keep
    // the incoming stack pointer in r10 (its "DRAP") and the CFA at
    // *(rbp - 8).
    let source = r#"
#include <string.h>
__attribute__((noinline)) int sink(char *p, int n) { return p[3] + n; }
int main(int argc, char **argv) {
    char buf[argc + 16];
    char aligned[64] __attribute__((aligned(64)));
    memset(buf, argc, argc + 16);
    memset(aligned, argc, sizeof aligned);
    return sink(buf, argc) + sink(aligned, argc);
}
"#;
    let Some(exe) = compile(&dir, "realign", source, &["-O2"]) else {
        return;
    };
    let table = build_table_for_path(&exe).unwrap();
    assert_well_formed(&table.rows);
    compare_with_readelf(&exe, &table.rows);
    let rows = function_rows(&exe, &table.rows, "main");
    let deref: Vec<_> = rows
        .iter()
        .filter(|r| r.cfa_kind() == cfa::DEREF_RBP)
        .collect();
    assert!(!deref.is_empty(), "{rows:?}");
    for row in deref {
        assert_eq!(row.cfa_offset as i16, -8, "{row:?}");
        // rbp is saved at [rbp] (DW_OP_breg6 0), which the format cannot say.
        assert_eq!(row.rbp_kind(), rbp_rule::UNSUPPORTED);
    }
    // Around it, the CFA is r10 + 0.
    assert!(rows.iter().any(|r| r.cfa_kind() == cfa::UNSUPPORTED));
    assert!(table.stats.unsupported.cfa_register >= 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn objcopy(args: &[&str]) {
    let status = Command::new("objcopy")
        .args(args)
        .status()
        .expect("objcopy");
    assert!(status.success(), "objcopy {args:?}");
}

#[test]
fn debug_frame_in_a_separate_debug_file() {
    let dir = temp_dir("debuglink");
    // Without asynchronous unwind tables gcc writes the program's CFI to
    // .debug_frame only; crt1's _start keeps its .eh_frame.
    let Some(exe) = compile(
        &dir,
        "prog",
        FRAME_POINTER,
        &[
            "-O2",
            "-g",
            "-fno-omit-frame-pointer",
            "-fno-asynchronous-unwind-tables",
        ],
    ) else {
        return;
    };
    let full = build_table(&std::fs::read(&exe).unwrap()).unwrap();
    assert!(full.stats.fdes_debug_frame >= 3, "{:?}", full.stats);
    assert!(full.stats.eh_frame_bytes > 0);
    compare_with_readelf(&exe, &full.rows);
    let entry = symbol(&exe, "with_frame").unwrap();
    let expected = row_at(&exe, &full.rows, entry + 1);
    assert_eq!((expected.cfa_kind(), expected.cfa_offset), (cfa::RSP, 16));

    let exe_s = exe.to_str().unwrap();
    let debug = dir.join("prog.debug");
    let stripped = dir.join("prog.stripped");
    objcopy(&["--only-keep-debug", exe_s, debug.to_str().unwrap()]);
    // --add-gnu-debuglink checksums the file by the name it is given.
    let status = Command::new("objcopy")
        .current_dir(&dir)
        .args([
            "--strip-debug",
            "--add-gnu-debuglink=prog.debug",
            "prog",
            "prog.stripped",
        ])
        .status()
        .unwrap();
    assert!(status.success());

    // The stripped file alone covers only _start and the PLT.
    let alone = build_table(&std::fs::read(&stripped).unwrap()).unwrap();
    assert_eq!(alone.stats.debug_frame_bytes, 0);
    let pc = file_offset(&load_segments(&stripped), entry + 1).unwrap();
    assert!(lookup(&alone.rows, pc).is_none_or(|r| r.cfa_kind() == cfa::NONE));

    // Through .gnu_debuglink, the debug file next to it fills in.
    let linked = build_table_for_path(&stripped).unwrap();
    assert_eq!(linked.rows, full.rows);
    assert!(linked.stats.debug_frame_bytes > 0);

    // Compressed debug sections (as distributions ship them) too.
    objcopy(&["--compress-debug-sections=zlib", debug.to_str().unwrap()]);
    let out = run("readelf", &["-SW".as_ref(), debug.as_os_str()]);
    assert!(
        out.lines()
            .any(|l| l.contains(".debug_frame") && l.contains(" C ")),
        "{out}"
    );
    let compressed = build_table_for_path(&stripped).unwrap();
    assert_eq!(compressed.rows, full.rows);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn no_call_frame_information_is_an_error() {
    let dir = temp_dir("nocfi");
    let Some(exe) = compile(
        &dir,
        "prog",
        FRAME_POINTER,
        &["-O2", "-fno-asynchronous-unwind-tables"],
    ) else {
        return;
    };
    let bare = dir.join("bare");
    objcopy(&[
        "-R",
        ".eh_frame",
        "-R",
        ".eh_frame_hdr",
        exe.to_str().unwrap(),
        bare.to_str().unwrap(),
    ]);
    assert!(matches!(
        build_table(&std::fs::read(&bare).unwrap()),
        Err(Error::NoUnwindInfo)
    ));
    assert!(matches!(
        build_table_for_path(&bare),
        Err(Error::NoUnwindInfo)
    ));
    // The original has crt1's FDEs at least.
    assert!(build_table_for_path(&exe).unwrap().stats.fdes > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fdes_of_discarded_code_are_skipped() {
    let dir = temp_dir("gc-sections");
    // ld drops the unused function but leaves its .debug_frame FDE, at
    // address 0: in a PIE, inside the first (read-only) segment.
    let source = r#"
int unused_function(int n) { return n * 11 + 3; }
__attribute__((noinline)) int used(int n) { return n * 7; }
int main(int argc, char **argv) { return used(argc); }
"#;
    let flags = [
        "-O2",
        "-g",
        "-fno-asynchronous-unwind-tables",
        "-ffunction-sections",
        "-Wl,--gc-sections",
        "-pie",
        "-fPIE",
    ];
    let Some(exe) = compile(&dir, "gc", source, &flags) else {
        return;
    };
    let readelf = readelf_fdes(&exe);
    assert!(
        readelf
            .iter()
            .any(|f| f.section == ".debug_frame" && f.start == 0),
        "{readelf:?}"
    );
    let table = build_table_for_path(&exe).unwrap();
    assert_well_formed(&table.rows);
    compare_with_readelf(&exe, &table.rows);
    assert_eq!(table.stats.fdes_skipped, 1, "{:?}", table.stats);
    assert_eq!(table.stats.fdes, readelf.len());
    assert!(table.rows[0].pc >= 0x1000, "{:?}", table.rows[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

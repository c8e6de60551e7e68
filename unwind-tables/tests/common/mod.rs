//! Test helpers: an independent reading of a file's frame information and
//! segments, from binutils' `readelf`, to hold the tables against; and
//! compiling small C programs with gcc.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use profiler_common::{UnwindRow, cfa, rbp_rule};

/// `(p_vaddr, p_memsz, p_offset)` of each PT_LOAD, from `readelf -lW`.
pub fn load_segments(path: &Path) -> Vec<(u64, u64, u64)> {
    segments_with_flags(path)
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

/// The executable PT_LOADs only.
pub fn executable_segments(path: &Path) -> Vec<(u64, u64, u64)> {
    segments_with_flags(path)
        .into_iter()
        .filter_map(|(s, x)| x.then_some(s))
        .collect()
}

fn segments_with_flags(path: &Path) -> Vec<((u64, u64, u64), bool)> {
    let out = run("readelf", &["-lW".as_ref(), path.as_os_str()]);
    out.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.first() != Some(&"LOAD") {
                return None;
            }
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            // Flags ("R E", "RW") sit between the sizes and the alignment.
            let executable = fields[6..fields.len() - 1].iter().any(|f| f.contains('E'));
            Some(((hex(fields[2]), hex(fields[5]), hex(fields[1])), executable))
        })
        .collect()
}

/// The file offset of `vaddr` by `segments`, as the kernel will compute it.
pub fn file_offset(segments: &[(u64, u64, u64)], vaddr: u64) -> Option<u32> {
    segments
        .iter()
        .find(|&&(start, size, _)| vaddr >= start && vaddr < start + size)
        .map(|&(start, _, offset)| u32::try_from(vaddr - start + offset).unwrap())
}

/// One row of `readelf --debug-dump=frames-interp`: the rules by column
/// name (`CFA`, `rbp`, `ra`, ...); a register not shown has no rule.
#[derive(Clone, Debug)]
pub struct ReadelfRow {
    pub loc: u64,
    pub rules: HashMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct ReadelfFde {
    pub section: String,
    pub start: u64,
    pub end: u64,
    pub signal: bool,
    pub rows: Vec<ReadelfRow>,
}

/// Every FDE `readelf --debug-dump=frames-interp` shows for `path`. An FDE
/// with no table of its own has its CIE's initial rules, at its start.
pub fn readelf_fdes(path: &Path) -> Vec<ReadelfFde> {
    let out = run(
        "readelf",
        &["--debug-dump=frames-interp".as_ref(), path.as_os_str()],
    );
    let mut section = String::new();
    // (section, CIE offset) -> (augmentation, initial rules)
    let mut cies: HashMap<(String, String), (String, HashMap<String, String>)> = HashMap::new();
    let mut fdes: Vec<ReadelfFde> = Vec::new();
    let mut current_cie: Option<(String, String)> = None;
    let mut columns: Vec<String> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("Contents of the ") {
            section = rest.split_whitespace().next().unwrap().to_string();
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 4 && fields[3] == "CIE" {
            let augmentation = fields[4].trim_matches('"').to_string();
            let key = (section.clone(), fields[0].to_string());
            cies.insert(key.clone(), (augmentation, HashMap::new()));
            current_cie = Some(key);
            continue;
        }
        if fields.len() >= 6 && fields[3] == "FDE" {
            let cie = fields[4].strip_prefix("cie=").unwrap();
            let cie = format!("{:0>8}", cie);
            let (start, end) = fields[5]
                .strip_prefix("pc=")
                .unwrap()
                .split_once("..")
                .unwrap();
            let (augmentation, _) = &cies[&(section.clone(), cie.clone())];
            fdes.push(ReadelfFde {
                section: section.clone(),
                start: u64::from_str_radix(start, 16).unwrap(),
                end: u64::from_str_radix(end, 16).unwrap(),
                signal: augmentation.contains('S'),
                rows: Vec::new(),
            });
            current_cie = None;
            // Rows inherit the CIE's rules until the FDE's own table shows.
            let initial = cies[&(section.clone(), cie)].1.clone();
            let fde = fdes.last_mut().unwrap();
            fde.rows.push(ReadelfRow {
                loc: fde.start,
                rules: initial,
            });
            continue;
        }
        if fields.first() == Some(&"LOC") {
            columns = fields[1..].iter().map(|s| s.to_string()).collect();
            continue;
        }
        if fields.len() == columns.len() + 1
            && fields[0].len() >= 8
            && fields[0].bytes().all(|b| b.is_ascii_hexdigit())
        {
            let rules: HashMap<String, String> = columns
                .iter()
                .cloned()
                .zip(fields[1..].iter().map(|s| s.to_string()))
                .collect();
            let loc = u64::from_str_radix(fields[0], 16).unwrap();
            if let Some(key) = &current_cie {
                cies.get_mut(key).unwrap().1 = rules;
            } else if let Some(fde) = fdes.last_mut() {
                // The FDE's table replaces the CIE's row at the start.
                if fde.rows.len() == 1 && fde.rows[0].loc == loc {
                    fde.rows.clear();
                }
                if fde.rows.last().is_some_and(|r| r.loc == loc) {
                    fde.rows.pop();
                }
                fde.rows.push(ReadelfRow { loc, rules });
            }
        }
    }
    fdes
}

/// What readelf's rules for a row should become in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this `(kind, cfa_offset, rbp_offset)`.
    Row(u8, u16, i8),
    /// A CFA expression (readelf shows only "exp"): PLT, DEREF_* or
    /// UNSUPPORTED, with this rbp rule and offset unless unsupported.
    Expression(u8, i8),
}

fn offset_from(rule: &str, base: &str) -> Option<i64> {
    let rest = rule.strip_prefix(base)?;
    rest.parse::<i64>().ok()
}

/// The row readelf's textual rules translate to, by the rules of the
/// format: signal frames first, then the return address, CFA and rbp.
pub fn expected(row: &ReadelfRow, signal: bool) -> Expected {
    let kind = UnwindRow::make_kind;
    let unsupported = Expected::Row(kind(cfa::UNSUPPORTED, rbp_rule::SAME), 0, 0);
    if signal {
        return Expected::Row(kind(cfa::SIGNAL, rbp_rule::SAME), 0, 0);
    }
    match row.rules.get("ra").map(String::as_str) {
        Some("c-8") => {}
        Some("u") => return Expected::Row(kind(cfa::END, rbp_rule::SAME), 0, 0),
        _ => return unsupported,
    }
    let (rbp_kind, rbp_offset) = match row.rules.get("rbp").map(String::as_str) {
        None | Some("u") | Some("s") => (rbp_rule::SAME, 0),
        Some(rule) => match offset_from(rule, "c") {
            Some(n) if n % 8 == 0 && i8::try_from(n / 8).is_ok() => {
                (rbp_rule::AT_CFA, (n / 8) as i8)
            }
            _ => (rbp_rule::UNSUPPORTED, 0),
        },
    };
    let cfa_rule = row.rules["CFA"].as_str();
    if cfa_rule == "exp" {
        return Expected::Expression(rbp_kind, rbp_offset);
    }
    let (cfa_kind, offset) = if let Some(n) = offset_from(cfa_rule, "rsp") {
        (cfa::RSP, n)
    } else if let Some(n) = offset_from(cfa_rule, "rbp") {
        (cfa::RBP, n)
    } else {
        return unsupported;
    };
    match u16::try_from(offset) {
        Ok(offset) => Expected::Row(kind(cfa_kind, rbp_kind), offset, rbp_offset),
        // Over 64 KiB from rsp: in 8-byte words, when it divides.
        Err(_) if cfa_kind == cfa::RSP && offset % 8 == 0 => match u16::try_from(offset / 8) {
            Ok(words) => Expected::Row(kind(cfa::RSP_WORDS, rbp_kind), words, rbp_offset),
            Err(_) => unsupported,
        },
        Err(_) => unsupported,
    }
}

/// Holds `rows` against readelf's view of `path`'s frame information:
/// every row of every FDE of code (in an executable segment), and what
/// follows each FDE. Returns how many readelf rows were compared, and how
/// many were CFA expressions.
pub fn compare_with_readelf(path: &Path, rows: &[UnwindRow]) -> (usize, usize) {
    let segments = executable_segments(path);
    let fdes = readelf_fdes(path);
    assert!(
        !fdes.is_empty(),
        "readelf shows no FDEs in {}",
        path.display()
    );
    let starts: std::collections::HashSet<u32> = fdes
        .iter()
        .filter_map(|f| file_offset(&segments, f.start))
        .collect();
    let (mut compared, mut expressions) = (0, 0);
    for fde in &fdes {
        let Some(start) = file_offset(&segments, fde.start) else {
            continue;
        };
        let bias = fde.start - u64::from(start);
        for row in fde
            .rows
            .iter()
            .filter(|r| r.loc >= fde.start && r.loc < fde.end)
        {
            let pc = u32::try_from(row.loc - bias).unwrap();
            let ours = *unwind_tables::lookup(rows, pc)
                .unwrap_or_else(|| panic!("no row at {pc:#x} ({fde:?})"));
            let context = || {
                format!(
                    "at {pc:#x} (vaddr {:#x}): ours {ours:?}, readelf {row:?}",
                    row.loc
                )
            };
            match expected(row, fde.signal) {
                Expected::Row(kind, cfa_offset, rbp_offset) => {
                    assert_eq!(
                        (ours.kind, ours.cfa_offset, ours.rbp_offset),
                        (kind, cfa_offset, rbp_offset),
                        "{}",
                        context()
                    );
                }
                Expected::Expression(rbp_kind, rbp_offset) => {
                    expressions += 1;
                    match ours.cfa_kind() {
                        cfa::UNSUPPORTED => {}
                        cfa::PLT => assert_eq!(ours.rbp_kind(), rbp_rule::SAME, "{}", context()),
                        cfa::DEREF_RSP | cfa::DEREF_RBP => {
                            assert_eq!(
                                (ours.rbp_kind(), ours.rbp_offset),
                                (rbp_kind, rbp_offset),
                                "{}",
                                context()
                            )
                        }
                        _ => panic!("a CFA expression became {}", context()),
                    }
                }
            }
            compared += 1;
        }
        // Past the FDE: another FDE, or no information.
        let end = u32::try_from(fde.end - bias).unwrap();
        if !starts.contains(&end) {
            let after = unwind_tables::lookup(rows, end).expect("a row after every FDE");
            assert_eq!(
                after.cfa_kind(),
                cfa::NONE,
                "after the FDE ending at {end:#x}: {after:?}"
            );
        }
    }
    (compared, expressions)
}

/// Checks the table's shape: sorted by pc, no two neighbours alike.
pub fn assert_well_formed(rows: &[UnwindRow]) {
    assert!(!rows.is_empty());
    for pair in rows.windows(2) {
        assert!(pair[0].pc < pair[1].pc, "not sorted: {pair:?}");
        assert!(
            (pair[0].kind, pair[0].cfa_offset, pair[0].rbp_offset)
                != (pair[1].kind, pair[1].cfa_offset, pair[1].rbp_offset),
            "equal neighbours: {pair:?}"
        );
    }
    assert_eq!(
        rows.last().unwrap().cfa_kind(),
        cfa::NONE,
        "the table ends with NONE"
    );
}

/// The address of the symbol `name` in the ELF file at `path` (symbol
/// table, then dynamic symbols).
pub fn symbol(path: &Path, name: &str) -> Option<u64> {
    symbol_range(path, name).map(|(address, _)| address)
}

/// The address and size of the symbol `name`.
pub fn symbol_range(path: &Path, name: &str) -> Option<(u64, u64)> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    file.symbols()
        .chain(file.dynamic_symbols())
        .find(|s| s.name() == Ok(name) && s.address() != 0)
        .map(|s| (s.address(), s.size()))
}

/// The rows in force over the function `name` of the file at `path`.
pub fn function_rows(path: &Path, rows: &[UnwindRow], name: &str) -> Vec<UnwindRow> {
    let (vaddr, size) = symbol_range(path, name).unwrap_or_else(|| panic!("no symbol {name}"));
    let start = file_offset(&load_segments(path), vaddr).unwrap();
    let end = start + size as u32;
    let mut out = vec![*unwind_tables::lookup(rows, start).expect("a row at the function")];
    out.extend(rows.iter().filter(|r| r.pc > start && r.pc < end));
    out
}

pub fn run(program: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    // readelf exits with 1 over warnings it prints about other sections (a
    // separate debug file it cannot open), output complete.
    assert!(
        out.status.success() || !out.stdout.is_empty(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("unwind-tables-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `source` with gcc and `flags` into `dir/name`; `None` (with a
/// loud note) when gcc or readelf is missing.
pub fn compile(dir: &Path, name: &str, source: &str, flags: &[&str]) -> Option<PathBuf> {
    if !have("gcc") || !have("readelf") {
        eprintln!("SKIPPED: gcc or readelf is not installed");
        return None;
    }
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&c)
        .status()
        .unwrap();
    assert!(status.success(), "gcc {flags:?} {name}.c failed");
    Some(out)
}

//! x86-64 unwind tables for the profiler's in-kernel unwinder: compact
//! [`profiler_common::UnwindRow`]s built from a file's `.eh_frame` (and
//! `.debug_frame`) call frame information.
//!
//! A table is sorted by `pc` (a file offset), each row applying up to the
//! next one; [`lookup`] finds the row for an offset as the kernel does.
//! Conventions beyond the row's own documentation:
//! - `cfa::DEREF_RSP` and `cfa::DEREF_RBP` rows hold their offset as an
//!   `i16` in `cfa_offset` (two's complement): gcc's realigned `main` has
//!   `DW_OP_breg6 -8; DW_OP_deref`.
//! - `END`, `SIGNAL`, `NONE` and `UNSUPPORTED` rows have offsets 0 and rbp
//!   rule `SAME`: nothing in them is used, and equal rows merge.
//! - A `NONE` row follows the last FDE, and every FDE whose successor does
//!   not start where it ends.

use std::path::{Path, PathBuf};

use gimli::{BaseAddresses, DebugFrame, EhFrame, LittleEndian};
use profiler_common::{UnwindRow, cfa};

mod convert;
mod optimize;
pub mod persist;
mod source;

use convert::{Origin, read_fdes};
use source::ElfCfi;

/// Why a table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a readable object file: {source}")]
    Elf {
        #[source]
        source: object::read::Error,
    },
    #[error("not an ELF file ({format})")]
    NotElf { format: String },
    #[error("not an x86-64 file ({architecture})")]
    Architecture { architecture: String },
    /// Neither `.eh_frame` nor `.debug_frame` (nor a debug file with one):
    /// such code can only be walked with frame pointers.
    #[error("no call frame information (.eh_frame or .debug_frame)")]
    NoUnwindInfo,
    #[error("cannot read section {section}: {source}")]
    Section {
        section: &'static str,
        #[source]
        source: object::read::Error,
    },
    #[error("section {section} is compressed with {format}, which is not supported")]
    Compression {
        section: &'static str,
        format: String,
    },
    #[error("cannot decompress section {section}: {source}")]
    Inflate {
        section: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed call frame information in {section}: {source}")]
    Cfi {
        section: &'static str,
        #[source]
        source: gimli::Error,
    },
    /// Code beyond 4 GiB into the file: rows hold 32-bit file offsets.
    #[error("code at {vaddr:#x} is at file offset {offset:#x}, beyond what a row holds")]
    OffsetTooLarge { vaddr: u64, offset: u64 },
    #[error("invalid cache key {key:?}: use letters, digits, '-', '_' and '.' only")]
    InvalidKey { key: String },
}

/// A file's unwind rows, sorted by `pc`, and how they came about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnwindTable {
    pub rows: Vec<UnwindRow>,
    pub stats: TableStats,
}

impl UnwindTable {
    /// Size of the rows as the kernel stores them.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(self.rows.as_slice())
    }
}

/// Counts from building one table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// FDEs read, from both sections.
    pub fdes: usize,
    /// FDEs kept from `.debug_frame` (code `.eh_frame` does not cover).
    pub fdes_debug_frame: usize,
    /// FDEs dropped because an FDE kept covers part of their code.
    pub fdes_dropped: usize,
    /// FDEs skipped: empty, outside the executable segments (FDEs of
    /// sections the linker discarded), or not evaluable.
    pub fdes_skipped: usize,
    /// Rows before neighbours with the same rule were merged (gimli's rows
    /// plus the `NONE` rows after FDEs).
    pub rows_before_merge: usize,
    /// Rows of the table per CFA kind, indexed by `cfa::*`.
    pub kinds: [usize; 16],
    /// Rows of the table whose CFA kind is `cfa::UNSUPPORTED`.
    pub unsupported_rows: usize,
    /// Why rows were unsupported, counted before merging.
    pub unsupported: UnsupportedCauses,
    /// Bytes of `.eh_frame` and `.debug_frame` read (the latter
    /// decompressed, and from the debug file if it came from there).
    pub eh_frame_bytes: usize,
    pub debug_frame_bytes: usize,
}

/// Why gimli rows ended up unsupported (before merging).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnsupportedCauses {
    /// CFA based on a register other than rsp and rbp.
    pub cfa_register: usize,
    /// A CFA expression of another shape than the PLT and deref ones.
    pub cfa_expression: usize,
    /// A CFA offset that does not fit (`u16`, or `i16` for deref).
    pub cfa_offset: usize,
    /// The return address is not at CFA - 8 (and not undefined).
    pub return_address: usize,
    /// rbp's rule is neither "same" nor "saved at CFA + 8n" (these rows
    /// keep their CFA rule, with `rbp_rule::UNSUPPORTED`).
    pub rbp: usize,
}

/// The GNU build ID of an ELF file, if it has one.
pub fn build_id(elf: &[u8]) -> Option<Vec<u8>> {
    source::build_id_of(&object::File::parse(elf).ok()?)
}

/// The table of the ELF file `elf` from its own sections.
pub fn build_table(elf: &[u8]) -> Result<UnwindTable, Error> {
    let file = source::parse(elf)?;
    let cfi = ElfCfi::read(&file)?;
    build(&cfi, None)
}

/// The table of the ELF file at `path`; with no `.debug_frame` of its own,
/// that of its separate debug file (by build ID under `/usr/lib/debug`, or
/// `.gnu_debuglink`) fills what `.eh_frame` does not cover.
pub fn build_table_for_path(path: &Path) -> Result<UnwindTable, Error> {
    build_table_with_debug_root(path, Path::new(source::DEBUG_ROOT))
}

fn build_table_with_debug_root(path: &Path, debug_root: &Path) -> Result<UnwindTable, Error> {
    let data = map(path)?;
    let file = source::parse(&data)?;
    let cfi = ElfCfi::read(&file)?;
    if cfi.debug_frame.is_some() {
        return build(&cfi, None);
    }
    let debug_data = source::find_debug_file(path, &file, debug_root).and_then(|p| map(&p).ok());
    let debug_file = debug_data
        .as_deref()
        .and_then(|data| object::File::parse(data).ok());
    // A debug file that cannot be read is no reason to lose the table
    // `.eh_frame` gives.
    let debug_cfi = debug_file.as_ref().and_then(|f| ElfCfi::read(f).ok());
    build(&cfi, debug_cfi.as_ref())
}

fn map(path: &Path) -> Result<memmap2::Mmap, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and private; a file truncated under it
    // would fault, a risk every tool mapping ELF files takes.
    unsafe { memmap2::Mmap::map(&file) }.map_err(io)
}

/// The table from `cfi`'s sections, `debug`'s `.debug_frame` filling in
/// when `cfi` has none. Addresses are always placed with `cfi`'s segments:
/// a debug file's program headers describe no file contents.
fn build(cfi: &ElfCfi<'_>, debug: Option<&ElfCfi<'_>>) -> Result<UnwindTable, Error> {
    let debug_frame = cfi
        .debug_frame
        .as_ref()
        .or_else(|| debug.and_then(|d| d.debug_frame.as_ref()));
    if cfi.eh_frame.is_none() && debug_frame.is_none() {
        return Err(Error::NoUnwindInfo);
    }
    let mut stats = TableStats::default();
    let mut eh_fdes = Vec::new();
    if let Some(eh) = &cfi.eh_frame {
        stats.eh_frame_bytes = eh.data.len();
        let mut section = EhFrame::new(&eh.data, LittleEndian);
        section.set_address_size(8);
        let bases = BaseAddresses::default()
            .set_eh_frame(eh.address)
            .set_text(cfi.text_address);
        eh_fdes = read_fdes(&section, &bases, &cfi.segments, Origin::EhFrame, &mut stats)?;
    }
    let mut debug_fdes = Vec::new();
    if let Some(debug) = debug_frame {
        stats.debug_frame_bytes = debug.data.len();
        let mut section = DebugFrame::new(&debug.data, LittleEndian);
        section.set_address_size(8);
        let bases = BaseAddresses::default();
        debug_fdes = read_fdes(
            &section,
            &bases,
            &cfi.segments,
            Origin::DebugFrame,
            &mut stats,
        )?;
    }
    let rows = optimize::assemble(eh_fdes, debug_fdes, &mut stats);
    stats.kinds = optimize::count_kinds(&rows);
    stats.unsupported_rows = stats.kinds[cfa::UNSUPPORTED as usize];
    Ok(UnwindTable { rows, stats })
}

/// The row in force at file offset `pc`: the last with `row.pc <= pc`
/// (the kernel's binary search). `None` before the first row.
pub fn lookup(rows: &[UnwindRow], pc: u32) -> Option<&UnwindRow> {
    let after = rows.partition_point(|row| row.pc <= pc);
    after.checked_sub(1).map(|i| &rows[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tool(program: &str, dir: &Path, args: &[&str]) -> bool {
        Command::new(program)
            .current_dir(dir)
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A debug file with no `.gnu_debuglink` pointing at it is found by
    /// build ID under the debug root, as distributions install them.
    #[test]
    fn debug_file_found_by_build_id() {
        let dir =
            std::env::temp_dir().join(format!("unwind-tables-build-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("p.c"),
            "__attribute__((noinline)) int f(int n) { return n * 7; }\n\
             int main(int argc, char **argv) { return f(argc) + f(argc + 1); }\n",
        )
        .unwrap();
        // Only .debug_frame describes main and f.
        let flags = [
            "-O2",
            "-g",
            "-fno-asynchronous-unwind-tables",
            "-Wl,--build-id",
            "-o",
            "p",
            "p.c",
        ];
        if !tool("gcc", &dir, &flags) {
            eprintln!("SKIPPED: gcc is not installed or failed");
            return;
        }
        assert!(tool(
            "objcopy",
            &dir,
            &["--only-keep-debug", "p", "p.debug"]
        ));
        assert!(tool("objcopy", &dir, &["--strip-debug", "p", "p.stripped"]));

        let full = build_table(&std::fs::read(dir.join("p")).unwrap()).unwrap();
        assert!(full.stats.fdes_debug_frame >= 2);
        let stripped = std::fs::read(dir.join("p.stripped")).unwrap();
        assert_eq!(build_table(&stripped).unwrap().stats.debug_frame_bytes, 0);

        let id = build_id(&stripped).expect("gcc was asked for a build ID");
        assert_eq!(
            build_id(&std::fs::read(dir.join("p.debug")).unwrap()),
            Some(id.clone())
        );
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let root = dir.join("debug-root");
        let by_id = root.join(".build-id").join(&hex[..2]);
        std::fs::create_dir_all(&by_id).unwrap();
        std::fs::rename(
            dir.join("p.debug"),
            by_id.join(format!("{}.debug", &hex[2..])),
        )
        .unwrap();

        let found = build_table_with_debug_root(&dir.join("p.stripped"), &root).unwrap();
        assert_eq!(found.rows, full.rows);
        // Without the debug root, nothing fills in.
        let missing =
            build_table_with_debug_root(&dir.join("p.stripped"), &dir.join("nowhere")).unwrap();
        assert_ne!(missing.rows, full.rows);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

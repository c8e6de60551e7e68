//! What an interpreter's ELF file tells: the addresses of `_PyRuntime` and
//! `_PyEval_EvalFrameDefault` (and its `.cold` part), the `Py_Version`
//! constant, and the load segments that turn file addresses into runtime ones.
//!
//! The file is mapped, not read: only the pages of its headers, symbol
//! and string tables and `Py_Version` are touched (a libpython with debug
//! info is 20-30 MB). `object`'s `ReadCache` reads without mapping, but
//! with two system calls per symbol name: 50 ms for a libpython's 15,000
//! symbols, against a few with the map.

use std::fs::File;

use object::read::elf::{ElfFile64, ProgramHeader as _};
use object::{Endianness, Object, ObjectSymbol, elf};

use crate::region::Region;

/// A symbol's file (link-time) address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Symbol {
    pub address: u64,
    pub size: u64,
}

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug)]
struct Segment {
    vaddr: u64,
    offset: u64,
    file_size: u64,
}

/// The interpreter's symbols in one file.
#[derive(Debug)]
pub(crate) struct PythonFile {
    pub runtime: Symbol,
    pub eval: Symbol,
    /// Only in files with a full symbol table (`.symtab`), and only where
    /// the compiler split the function.
    pub eval_cold: Option<Symbol>,
    /// `Py_Version` (`PY_VERSION_HEX`, 3.11+).
    pub py_version: Option<u32>,
    segments: Vec<Segment>,
}

const RUNTIME: &[u8] = b"_PyRuntime";
const EVAL: &[u8] = b"_PyEval_EvalFrameDefault";
const EVAL_COLD: &[u8] = b"_PyEval_EvalFrameDefault.cold";
const PY_VERSION: &[u8] = b"Py_Version";

impl PythonFile {
    /// The interpreter's symbols in `file`, or `None` when it is not a
    /// 64-bit ELF file defining both `_PyRuntime` and `_PyEval_EvalFrameDefault`.
    pub fn read(file: File) -> Option<PythonFile> {
        // SAFETY: the map is read-only and private; a file truncated under
        // it would fault, a risk every tool mapping ELF files takes.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let elf = ElfFile64::<Endianness, &[u8]>::parse(&map[..]).ok()?;
        let mut found: [Option<Symbol>; 4] = [None; 4];
        // Dynamic symbols first: a stripped executable has only those.
        for symbol in elf.dynamic_symbols().chain(elf.symbols()) {
            if symbol.is_undefined() {
                continue;
            }
            let Ok(name) = symbol.name_bytes() else {
                continue;
            };
            let Some(slot) = [RUNTIME, EVAL, EVAL_COLD, PY_VERSION]
                .iter()
                .position(|wanted| *wanted == name)
            else {
                continue;
            };
            found[slot].get_or_insert(Symbol {
                address: symbol.address(),
                size: symbol.size(),
            });
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        let [Some(runtime), Some(eval), eval_cold, py_version] = found else {
            return None;
        };
        let endian = elf.endian();
        let segments: Vec<Segment> = elf
            .elf_program_headers()
            .iter()
            .filter(|header| header.p_type(endian) == elf::PT_LOAD)
            .map(|header| Segment {
                vaddr: header.p_vaddr(endian),
                offset: header.p_offset(endian),
                file_size: header.p_filesz(endian),
            })
            .collect();
        let py_version = py_version.and_then(|symbol| {
            let offset = usize::try_from(file_offset(&segments, symbol.address, 8)?).ok()?;
            let bytes: [u8; 8] = map.get(offset..offset.checked_add(8)?)?.try_into().ok()?;
            let value = match endian {
                Endianness::Little => u64::from_le_bytes(bytes),
                Endianness::Big => u64::from_be_bytes(bytes),
            };
            u32::try_from(value).ok()
        });
        Some(PythonFile {
            runtime,
            eval,
            eval_cold: eval_cold.filter(|cold| cold.size > 0),
            py_version,
            segments,
        })
    }

    /// What is added to a file address to give the runtime address, from
    /// the file's mappings (`regions`, all of this file). A mapping whose
    /// offset is a segment's page-aligned start is taken first: a
    /// mapping's offset can also fall inside the previous segment's last
    /// page, whose addresses differ from the next one's.
    pub fn load_bias(&self, regions: &[&Region]) -> Option<u64> {
        let page = page_size();
        let aligned = |segment: &Segment| segment.offset & !(page - 1);
        // The mapping of `region` with `segment`: the file address at its start.
        let bias = |region: &Region, segment: &Segment| {
            let vaddr_at_start =
                (segment.vaddr & !(page - 1)) + (region.file_offset - aligned(segment));
            region.start.wrapping_sub(vaddr_at_start)
        };
        let exact = regions.iter().find_map(|region| {
            let segment = self
                .segments
                .iter()
                .find(|s| aligned(s) == region.file_offset)?;
            Some(bias(region, segment))
        });
        exact.or_else(|| {
            regions.iter().find_map(|region| {
                let segment = self.segments.iter().find(|s| {
                    aligned(s) <= region.file_offset && region.file_offset < s.offset + s.file_size
                })?;
                Some(bias(region, segment))
            })
        })
    }
}

/// The file offset of `len` bytes at file address `vaddr`, when a segment
/// holds them in the file (not in its zero-filled tail).
fn file_offset(segments: &[Segment], vaddr: u64, len: u64) -> Option<u64> {
    segments.iter().find_map(|s| {
        let within = vaddr.checked_sub(s.vaddr)?;
        (within + len <= s.file_size).then_some(s.offset + within)
    })
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(segments: Vec<Segment>) -> PythonFile {
        let symbol = Symbol {
            address: 0,
            size: 0,
        };
        PythonFile {
            runtime: symbol,
            eval: symbol,
            eval_cold: None,
            py_version: None,
            segments,
        }
    }

    fn region(start: u64, file_offset: u64) -> Region {
        Region {
            start,
            end: start + 0x1000,
            file_offset,
            path: "/lib/libpython3.11.so.1.0".into(),
        }
    }

    /// libpython3.11.so.1.0 of pyenv 3.11.7: the data segment's page-aligned
    /// offset 0x414000 is also inside the previous segment.
    #[test]
    fn bias_of_a_shared_library() {
        let f = file(vec![
            Segment {
                vaddr: 0,
                offset: 0,
                file_size: 0xf4188,
            },
            Segment {
                vaddr: 0xf5000,
                offset: 0xf5000,
                file_size: 0x23b6d9,
            },
            Segment {
                vaddr: 0x331000,
                offset: 0x331000,
                file_size: 0xe3078,
            },
            Segment {
                vaddr: 0x415ed0,
                offset: 0x414ed0,
                file_size: 0x161190,
            },
        ]);
        let base = 0x7f00_0000_0000;
        let data = region(base + 0x415000, 0x414000);
        assert_eq!(f.load_bias(&[&data]), Some(base));
        let text = region(base + 0xf5000, 0xf5000);
        assert_eq!(f.load_bias(&[&text, &data]), Some(base));
        // A later part of the data segment (after mprotect split it).
        let later = region(base + 0x417000, 0x416000);
        assert_eq!(f.load_bias(&[&later]), Some(base));
    }

    #[test]
    fn bias_of_a_non_pie_executable() {
        let f = file(vec![
            Segment {
                vaddr: 0x400000,
                offset: 0,
                file_size: 0x1e3e8,
            },
            Segment {
                vaddr: 0x41f000,
                offset: 0x1f000,
                file_size: 0x2b2289,
            },
        ]);
        assert_eq!(f.load_bias(&[&region(0x41f000, 0x1f000)]), Some(0));
    }

    #[test]
    fn offsets_in_the_file() {
        let segments = [Segment {
            vaddr: 0x1000,
            offset: 0x800,
            file_size: 0x100,
        }];
        assert_eq!(file_offset(&segments, 0x1010, 8), Some(0x810));
        assert_eq!(file_offset(&segments, 0x10fc, 8), None);
        assert_eq!(file_offset(&segments, 0x800, 8), None);
    }
}

//! Uncompressed copies of separate debug files, cached for the boot.
//!
//! Debian's `-dbg` packages (libc6-dbg among them) ship their DWARF
//! zlib-compressed, and blazesym inflates every debug section of a file the
//! first time it symbolizes an address in it: ~25 ms of CPU for libc, at
//! every recording that has a libc frame, even though the file never changes.
//!
//! For a mapped object with a build ID whose debug file is where blazesym
//! looks first, `/usr/lib/debug/.build-id/xx/yyyy.debug`, and has compressed
//! sections, a copy with those sections inflated is written once to
//! `/run/profiler/debug/.build-id/xx/yyyy.debug` (root-only, tmpfs), and
//! blazesym is given `/run/profiler/debug` as its first debug directory, so
//! it finds the copy first. The copy is the same ELF file with each
//! compressed section's data inflated and appended, its section header
//! pointing there, and four bytes at the end that make its CRC-32 the
//! original's: blazesym checks the debug link's CRC against the file it
//! opened. Names, inlined frames, files and lines come out the same (tests
//! compare them); only the inflating is gone.
//!
//! The rewriting (ELF64 little-endian, zlib only) and the CRC-32 forging are
//! written by hand: `objcopy --decompress-debug-sections` does the former,
//! but is an external program that may be missing.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use crate::private_files::{private_dir, write_new};

/// Where distributions install separate debug files by build ID: the first
/// place blazesym's default debug directories lead it to.
pub const SYSTEM_DEBUG_DIR: &str = "/usr/lib/debug";
/// blazesym's default debug directories, searched after the cache.
const DEFAULT_DEBUG_DIRS: [&str; 2] = ["/usr/lib/debug", "/lib/debug/"];
/// Copies stop being written once the cache holds this much.
/// tmpfs is memory: a bound that holds libc6-dbg (14 MB) and a few more.
const MAX_CACHE_BYTES: u64 = 64 << 20;

const SHF_COMPRESSED: u64 = 0x800;
const ELFCOMPRESS_ZLIB: u32 = 1;

/// The debug directories to give blazesym: the cache first, then its defaults.
pub fn debug_dirs(cache: Option<&Path>) -> Vec<PathBuf> {
    cache
        .map(Path::to_path_buf)
        .into_iter()
        .chain(DEFAULT_DEBUG_DIRS.iter().map(PathBuf::from))
        .collect()
}

/// The size of the separate debug file blazesym would find for `build_id`
/// in its default debug directories; `None` if there is none.
pub fn system_debug_file_size(build_id: &str) -> Option<u64> {
    let relative = build_id_path(build_id)?;
    DEFAULT_DEBUG_DIRS
        .iter()
        .find_map(|dir| fs::metadata(Path::new(dir).join(&relative)).ok())
        .map(|meta| meta.len())
}

/// `.build-id/xx/yyyy.debug` for a hex build ID; `None` if it is not one.
fn build_id_path(build_id: &str) -> Option<PathBuf> {
    let hex = build_id.len() >= 16 && build_id.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| {
        PathBuf::from(".build-id")
            .join(&build_id[..2])
            .join(format!("{}.debug", &build_id[2..]))
    })
}

/// The cache directory (`CACHE/debug`), root-only; `None` when unusable.
pub fn cache_dir(root: &Path) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    private_dir(root)?;
    let dir = root.join("debug");
    private_dir(&dir)?;
    Some(dir)
}

/// Makes sure the cache holds an uncompressed copy of the system debug file
/// of `build_id`, if it has compressed sections. Returns whether the copy is
/// there now.
pub fn prepare(cache: &Path, system: &Path, build_id: &str) -> bool {
    let Some(relative) = build_id_path(build_id) else {
        return false;
    };
    let copy = cache.join(&relative);
    if fs::symlink_metadata(&copy).is_ok() {
        return true;
    }
    let Ok(original) = fs::read(system.join(&relative)) else {
        return false;
    };
    let Some(inflated) = inflate_sections(&original) else {
        return false;
    };
    if cache_bytes(cache) + inflated.len() as u64 > MAX_CACHE_BYTES {
        return false;
    }
    let dirs_ok = relative
        .parent()
        .map(|p| {
            let mut dir = cache.to_path_buf();
            p.components().all(|c| {
                dir.push(c);
                private_dir(&dir).is_some()
            })
        })
        .unwrap_or(false);
    dirs_ok && write_new(&copy, &inflated).is_ok()
}

/// The uncompressed copy of the system debug file of `build_id`, made now
/// if needed (see [`prepare`]); `None` when there is none.
///
/// The symbolizer reads the copy directly, as an ELF file of its own, rather
/// than through the object's debug link: blazesym checks a debug link's
/// CRC-32 over the whole file it leads to (libc's: 14 MB, ~3 ms of CPU with
/// the page faults of mapping it, at every recording), which proves nothing
/// here: the copy is found by build ID and was written by [`prepare`]. The
/// names, inlined frames, files and lines are the same either way (tested).
pub fn copy(cache: &Path, system: &Path, build_id: &str) -> Option<PathBuf> {
    let copy = cache.join(build_id_path(build_id)?);
    prepare(cache, system, build_id).then_some(copy)
}

/// Bytes held by the copies in the cache.
fn cache_bytes(cache: &Path) -> u64 {
    let Ok(subdirs) = fs::read_dir(cache.join(".build-id")) else {
        return 0;
    };
    subdirs
        .flatten()
        .filter_map(|d| fs::read_dir(d.path()).ok())
        .flat_map(|files| files.flatten())
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn get<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    get(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    get(bytes, at).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    get(bytes, at).map(u64::from_le_bytes)
}

fn align(out: &mut Vec<u8>, to: u64) {
    let to = to.clamp(1, 4096) as usize;
    while !out.len().is_multiple_of(to) {
        out.push(0);
    }
}

/// The ELF file with its zlib-compressed sections inflated, and the same
/// CRC-32; `None` if it has none, or is not a file this handles.
pub fn inflate_sections(elf: &[u8]) -> Option<Vec<u8>> {
    // ELF64, little-endian.
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(u64_at(elf, 0x28)?).ok()?;
    let shentsize = usize::from(u16_at(elf, 0x3a)?);
    let shnum = usize::from(u16_at(elf, 0x3c)?);
    if shentsize != 64 || shnum == 0 {
        return None;
    }
    let mut headers = elf.get(shoff..shoff.checked_add(shnum * 64)?)?.to_vec();
    let mut out = elf.to_vec();
    let mut inflated_any = false;
    for i in 0..shnum {
        let h = i * 64;
        let flags = u64_at(&headers, h + 8)?;
        if flags & SHF_COMPRESSED == 0 {
            continue;
        }
        let offset = usize::try_from(u64_at(&headers, h + 24)?).ok()?;
        let size = usize::try_from(u64_at(&headers, h + 32)?).ok()?;
        let data = elf.get(offset..offset.checked_add(size)?)?;
        // Elf64_Chdr: type, reserved, size, alignment.
        if u32_at(data, 0)? != ELFCOMPRESS_ZLIB {
            return None;
        }
        let inflated_size = u64_at(data, 8)?;
        let alignment = u64_at(data, 16)?;
        if inflated_size > MAX_CACHE_BYTES {
            return None;
        }
        let mut inflated = Vec::with_capacity(inflated_size as usize);
        flate2::read::ZlibDecoder::new(data.get(24..)?)
            .take(inflated_size + 1)
            .read_to_end(&mut inflated)
            .ok()?;
        if inflated.len() as u64 != inflated_size {
            return None;
        }
        align(&mut out, alignment);
        let new_offset = out.len() as u64;
        out.extend_from_slice(&inflated);
        headers[h + 8..h + 16].copy_from_slice(&(flags & !SHF_COMPRESSED).to_le_bytes());
        headers[h + 24..h + 32].copy_from_slice(&new_offset.to_le_bytes());
        headers[h + 32..h + 40].copy_from_slice(&inflated_size.to_le_bytes());
        headers[h + 48..h + 56].copy_from_slice(&alignment.to_le_bytes());
        inflated_any = true;
    }
    if !inflated_any {
        return None;
    }
    align(&mut out, 8);
    let new_shoff = out.len() as u64;
    out.extend_from_slice(&headers);
    out[0x28..0x30].copy_from_slice(&new_shoff.to_le_bytes());
    let suffix = crc_suffix(crc32fast::hash(&out), crc32fast::hash(elf));
    out.extend_from_slice(&suffix);
    Some(out)
}

/// The reflected CRC-32 (zlib) table.
fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (i, entry) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *entry = c;
    }
    table
}

/// Four bytes that, appended to data whose CRC-32 is `crc`, make it `target`.
///
/// Four bytes `x` after the data take the CRC register `r` to `F(r ^ x)`,
/// where `F` is four rounds of `v -> (v >> 8) ^ T[v & 0xff]`; each round is
/// invertible (the table's top bytes are all different), so
/// `x = F⁻¹(target register) ^ r`.
fn crc_suffix(crc: u32, target: u32) -> [u8; 4] {
    let table = crc_table();
    let mut v = !target;
    for _ in 0..4 {
        let top = v >> 24;
        let k = table
            .iter()
            .position(|t| t >> 24 == top)
            .expect("CRC-32 table top bytes are a permutation") as u32;
        v = ((v ^ table[k as usize]) << 8) | k;
    }
    (v ^ !crc).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffix_gives_the_wanted_crc() {
        for (data, target) in [
            (&b""[..], 0u32),
            (b"hello", 0xdead_beef),
            (b"some longer data \x00\x01\xff", 0x1234_5678),
        ] {
            let mut bytes = data.to_vec();
            bytes.extend_from_slice(&crc_suffix(crc32fast::hash(data), target));
            assert_eq!(crc32fast::hash(&bytes), target, "{data:?}");
        }
    }

    #[test]
    fn build_id_paths_are_hex_only() {
        assert_eq!(
            build_id_path("93ac61ec5a8eb1396f9fbd350e3169a558528a40").unwrap(),
            PathBuf::from(".build-id/93/ac61ec5a8eb1396f9fbd350e3169a558528a40.debug")
        );
        assert!(build_id_path("../../etc/passwd0000").is_none());
        assert!(build_id_path("abcd").is_none());
    }

    #[test]
    fn not_an_elf_file_or_nothing_compressed_gives_no_copy() {
        assert!(inflate_sections(b"not an elf file at all").is_none());
        let own = fs::read("/proc/self/exe").unwrap();
        // Test binaries are built without compressed debug sections.
        assert!(inflate_sections(&own).is_none());
    }

    /// libc's frames (names, inlined frames, files, lines) are the same
    /// with the uncompressed copy as with libc6-dbg's compressed file, and
    /// when the copy is read directly, as the symbolizer does.
    #[test]
    fn libc_names_the_same_from_the_uncompressed_copy() {
        use blazesym::symbolize::{
            Input, Symbolizer,
            source::{Elf, Source},
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the cache is root-only");
            return;
        }
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        let libc = maps
            .lines()
            .filter_map(crate::maps::parse_line)
            .find(|e| e.executable && e.path.contains("/libc.so"))
            .expect("libc is mapped");
        let build_id: String = blazesym::helper::read_elf_build_id(&*libc.path)
            .unwrap()
            .expect("libc has a build id")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache_dir(&tmp.path().join("profiler")).unwrap();
        if !prepare(&cache, Path::new(SYSTEM_DEBUG_DIR), &build_id) {
            eprintln!("skipped: no compressed debug file for libc (apt-get install libc6-dbg)");
            return;
        }
        // The mapping's last page runs past the segment's file size.
        let offsets: Vec<u64> = (libc.file_offset..libc.file_offset + (libc.end - libc.start))
            .step_by(251)
            .filter(|&o| crate::segments::virtual_offsets(Path::new(&*libc.path), &[o]).is_some())
            .collect();
        let virtual_offsets =
            crate::segments::virtual_offsets(Path::new(&*libc.path), &offsets).unwrap();
        // Through libc's debug link, or (`direct`) from the copy itself.
        let lookup = |dirs: Vec<PathBuf>, direct: Option<&Path>| -> Vec<String> {
            let symbolizer = Symbolizer::builder()
                .set_debug_dirs(Some(dirs))
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build();
            let source = Source::Elf(Elf::new(direct.unwrap_or(Path::new(&*libc.path))));
            let input = match direct {
                Some(_) => Input::VirtOffset(virtual_offsets.as_slice()),
                None => Input::FileOffset(offsets.as_slice()),
            };
            symbolizer
                .symbolize(&source, input)
                .unwrap()
                .iter()
                // Everything but the module, which names the debug file read.
                .map(|s| match s.as_sym() {
                    Some(s) => format!(
                        "{} {:#x}+{:#x} {:?} {:?} {:?}",
                        s.name, s.addr, s.offset, s.size, s.code_info, s.inlined
                    ),
                    None => "none".to_string(),
                })
                .collect()
        };
        let expected = lookup(debug_dirs(None), None);
        let got = lookup(debug_dirs(Some(&cache)), None);
        let copy = copy(&cache, Path::new(SYSTEM_DEBUG_DIR), &build_id).unwrap();
        let direct = lookup(Vec::new(), Some(&copy));
        let inlined = expected.iter().filter(|s| !s.ends_with("[]")).count();
        assert!(inlined > 10, "only {inlined} addresses with inlined frames");
        for (((offset, want), got), direct) in offsets.iter().zip(&expected).zip(&got).zip(&direct)
        {
            assert_eq!(want, got, "libc+{offset:#x}");
            assert_eq!(want, direct, "libc+{offset:#x}, from the copy itself");
        }
    }
}

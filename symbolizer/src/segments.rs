//! File offsets to virtual offsets, by an ELF file's loadable segments.
//!
//! A separate debug file keeps its object's program headers but not their
//! file offsets (its sections hold no code), so addresses must be given to
//! blazesym as virtual offsets when it reads such a file directly (see
//! `debug_cache::copy`). The translation is blazesym's own for `FileOffset`
//! input: the first `PT_LOAD` whose file range holds the offset.

use std::{fs::File, io::Read, path::Path};

const PT_LOAD: u32 = 1;
/// Program headers are read from the file's first bytes; they follow the
/// ELF header in every object a linker writes.
const HEAD_BYTES: usize = 16 * 1024;

/// `(p_offset, p_vaddr, p_filesz)` of a `PT_LOAD`.
pub type Segment = (u64, u64, u64);

/// The loadable segments of an ELF64 little-endian file whose first bytes
/// are `head`; `None` if it is not one, or its program headers are not
/// within `head`.
fn load_segments(head: &[u8]) -> Option<Vec<Segment>> {
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(head.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(head.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    if phentsize < 0x38 {
        return None;
    }
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter_map(|at| match u32_at(at) {
            Some(PT_LOAD) => Some(Some(at)),
            Some(_) => None,
            None => Some(None),
        })
        .map(|at| {
            let at = at?;
            Some((u64_at(at + 0x08)?, u64_at(at + 0x10)?, u64_at(at + 0x20)?))
        })
        .collect()
}

/// The virtual offset of each of `offsets` in `segments`; `None` if one is
/// in no segment.
pub fn translate(segments: &[Segment], offsets: &[u64]) -> Option<Vec<u64>> {
    offsets
        .iter()
        .map(|&offset| {
            segments
                .iter()
                .find(|&&(start, _, size)| (start..start + size).contains(&offset))
                .map(|&(start, vaddr, _)| offset - start + vaddr)
        })
        .collect()
}

/// The loadable segments of the ELF file at `path`; `None` if it cannot be
/// read as one.
pub fn read(path: &Path) -> Option<Vec<Segment>> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    File::open(path)
        .ok()?
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    load_segments(&head)
}

/// The virtual offsets of `offsets` in the ELF file at `path`; `None` if
/// it cannot be read as one or an offset is in no loadable segment.
#[cfg(test)]
pub fn virtual_offsets(path: &Path, offsets: &[u64]) -> Option<Vec<u64>> {
    translate(&read(path)?, offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_map_through_the_segment_that_holds_them() {
        let segments = [(0, 0, 0x1000), (0x1000, 0x2000, 0x500)];
        assert_eq!(
            translate(&segments, &[0x10, 0x1000, 0x14ff]),
            Some(vec![0x10, 0x2000, 0x24ff])
        );
        assert_eq!(translate(&segments, &[0x1500]), None);
    }

    #[test]
    fn reads_this_test_binary() {
        assert!(load_segments(b"not an elf file at all").is_none());
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe_name = exe.to_string_lossy().into_owned();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let mappings: Vec<_> = maps
            .lines()
            .filter_map(crate::maps::parse_line)
            .filter(|e| *e.path == *exe_name)
            .collect();
        // A position-independent test binary's first segment is at file
        // offset 0 and virtual offset 0: its mapping's start is the load base.
        let base = mappings.iter().find(|e| e.file_offset == 0).unwrap().start;
        let here = reads_this_test_binary as fn() as usize as u64;
        let text = mappings
            .iter()
            .find(|e| e.executable && (e.start..e.end).contains(&here))
            .expect("this function is in the binary's code");
        let offset = here - text.start + text.file_offset;
        assert_eq!(virtual_offsets(&exe, &[offset]), Some(vec![here - base]));
    }
}

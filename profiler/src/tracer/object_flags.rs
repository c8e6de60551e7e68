//! The eBPF object declares its hash maps `BPF_F_NO_PREALLOC` (allocated on
//! use), which kernels before 6.1 refuse in perf_event programs. For them,
//! a copy of the object is loaded with the flag cleared in every map
//! definition. (Released aya passes the object's flags through as they are;
//! setting them at load time took a patched aya.)

use std::borrow::Cow;

use object::{Object, ObjectSection, ObjectSymbol};

/// `BPF_F_NO_PREALLOC`.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// Bytes of one legacy map definition in the `maps` section (`struct
/// bpf_map_def`: type, key size, value size, max entries, flags, id, pinning).
const MAP_DEF_BYTES: u64 = 28;
/// Offset of `map_flags` in it.
const MAP_FLAGS_AT: u64 = 16;

/// `object` with `flags` cleared in every map's flags; the object itself
/// when no map has them. `None` if it is not an ELF file with a `maps`
/// section laid out as expected.
pub fn without_map_flags(elf: &[u8], flags: u32) -> Option<Cow<'_, [u8]>> {
    let file = object::File::parse(elf).ok()?;
    let maps = file.section_by_name("maps")?;
    let (section_at, section_len) = maps.file_range()?;
    let mut patched: Option<Vec<u8>> = None;
    for symbol in file.symbols() {
        if symbol.section_index() != Some(maps.index()) {
            continue;
        }
        if symbol.address() + MAP_DEF_BYTES > section_len {
            return None;
        }
        let at = (section_at + symbol.address() + MAP_FLAGS_AT) as usize;
        let bytes: [u8; 4] = elf.get(at..at + 4)?.try_into().ok()?;
        let value = u32::from_le_bytes(bytes);
        if value & flags != 0 {
            let copy = patched.get_or_insert_with(|| elf.to_vec());
            copy[at..at + 4].copy_from_slice(&(value & !flags).to_le_bytes());
        }
    }
    Some(match patched {
        Some(copy) => Cow::Owned(copy),
        None => Cow::Borrowed(elf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each map definition's flags in `elf`, by map name.
    fn flags(elf: &[u8]) -> Vec<(String, u32)> {
        let file = object::File::parse(elf).unwrap();
        let maps = file.section_by_name("maps").unwrap();
        let data = maps.data().unwrap();
        let mut out: Vec<(String, u32)> = file
            .symbols()
            .filter(|s| s.section_index() == Some(maps.index()))
            .map(|s| {
                let at = (s.address() + MAP_FLAGS_AT) as usize;
                let value = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                (s.name().unwrap().to_string(), value)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn clears_no_prealloc_in_the_embedded_object_and_nothing_else() {
        let original = super::super::EBPF_OBJECT;
        let before = flags(original);
        let stacks = before.iter().find(|(name, _)| name == "STACKS").unwrap();
        assert_eq!(
            stacks.1 & BPF_F_NO_PREALLOC,
            BPF_F_NO_PREALLOC,
            "the object declares STACKS without preallocation"
        );
        let patched = without_map_flags(original, BPF_F_NO_PREALLOC).expect("a maps section");
        assert!(matches!(patched, Cow::Owned(_)));
        let after = flags(&patched);
        assert_eq!(before.len(), after.len());
        for ((name, old), (_, new)) in before.iter().zip(&after) {
            assert_eq!(*new, old & !BPF_F_NO_PREALLOC, "{name}");
        }
        // BPF_F_MMAPABLE (1 << 10) stays on the arrays user space maps.
        let rows = after
            .iter()
            .find(|(name, _)| name == "UNWIND_ROWS")
            .unwrap();
        assert_eq!(rows.1, 1 << 10);
        // Nothing to clear: the same bytes, not a copy.
        assert!(matches!(
            without_map_flags(&patched, BPF_F_NO_PREALLOC),
            Some(Cow::Borrowed(_))
        ));
        let other: Vec<u8> = patched
            .iter()
            .zip(original)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| *a)
            .collect();
        assert_eq!(
            other.len(),
            before
                .iter()
                .filter(|(_, f)| f & BPF_F_NO_PREALLOC != 0)
                .count(),
            "one byte changed per map with the flag"
        );
    }
}

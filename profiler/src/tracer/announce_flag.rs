//! The kernel's "a sampled process was not announced" flag (`ANNOUNCE_LOST`,
//! a one-value array map created `BPF_F_MMAPABLE`), read through a shared
//! read-only mapping of its value: a memory load where reading the `STATS`
//! counters took two bpf calls and a per-CPU copy. It is looked at whenever
//! a process exits unannounced, which on a fork-heavy system is most reads
//! of the process records.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use aya::maps::Map;
use memmap2::{Mmap, MmapOptions};

pub(super) struct AnnounceFlag {
    /// The mapping holds a reference to the map: it outlives the map's fd.
    value: Mmap,
}

impl AnnounceFlag {
    /// Maps the value of `map`, or `None` if it is not an array or the
    /// kernel refuses the mapping (the caller then reads `STATS`).
    pub(super) fn of(map: &Map) -> Option<AnnounceFlag> {
        match map {
            Map::Array(data) => Self::from_fd(data.fd().as_fd()),
            _ => None,
        }
    }

    fn from_fd(fd: BorrowedFd<'_>) -> Option<AnnounceFlag> {
        // SAFETY: a shared, read-only mapping of a one-`u64` array's value
        // area; it is only read with volatile loads, as the kernel writes it.
        let value = unsafe { MmapOptions::new().len(8).map(fd.as_raw_fd()) }.ok()?;
        Some(AnnounceFlag { value })
    }

    /// Whether a process was sampled but not announced since loading.
    pub(super) fn is_set(&self) -> bool {
        // SAFETY: the mapping is 8 bytes long and page aligned.
        unsafe { std::ptr::read_volatile(self.value.as_ptr().cast::<u64>()) != 0 }
    }
}

#[cfg(test)]
mod tests {
    use aya::maps::{Array, IterableMap, MapData};

    use super::*;

    /// What the kernel stores in the map is what the mapping reads.
    #[test]
    fn reads_the_value_the_kernel_holds() {
        if !crate::test_support::root_or_skip("creating a BPF map") {
            return;
        }
        const BPF_F_MMAPABLE: u32 = 1 << 10;
        let mut array = Array::<MapData, u64>::create(1, BPF_F_MMAPABLE)
            .expect("create a memory-mappable array map");
        let flag = AnnounceFlag::from_fd(array.map().fd().as_fd()).expect("map its value");
        assert!(!flag.is_set(), "a new map's value is 0");
        array.set(0, 1u64, 0).expect("write the value");
        assert!(flag.is_set(), "the mapping did not see the kernel's write");
        drop(array);
        assert!(flag.is_set(), "the mapping outlives the map's fd");
    }
}

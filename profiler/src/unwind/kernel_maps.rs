//! The kernel side of the unwind tables: the rows and files arrays, written
//! through shared mappings of their values (`BPF_F_MMAPABLE`), and the
//! per-process mappings hash map, written with one bpf call per process.
//!
//! The rows array is mapped only for the pages a table is written to, then
//! unmapped: mapped whole, its 32 MiB counted in the profiler's RSS (the
//! agent's `memory_target` and what users watch) though it is kernel memory.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use aya::{
    Ebpf,
    maps::{HashMap, Map, MapData},
};
use memmap2::{MmapMut, MmapOptions};
use profiler_common::{UnwindFile, UnwindProcess, UnwindRow, map_names};

use super::{TableSink, UnwindError};

/// The three maps, taken out of the loaded object.
pub struct KernelMaps {
    /// The rows array (its own descriptor: the map stays in the object).
    rows: OwnedFd,
    row_capacity: u32,
    files: MmapMut,
    file_capacity: u32,
    procs: HashMap<MapData, u32, UnwindProcess>,
}

/// Maps the values of array map `map` (of `capacity` values of `T`) for writing.
fn map_values<T>(map: &Map, capacity: u32) -> Option<MmapMut> {
    let Map::Array(data) = map else {
        return None;
    };
    let len = capacity as usize * size_of::<T>();
    // SAFETY: a shared mapping of an mmapable array's value area, of its
    // size; the kernel reads it concurrently, and every write is of whole
    // plain-data values.
    unsafe {
        MmapOptions::new()
            .len(len)
            .map_mut(data.fd().as_fd().as_raw_fd())
    }
    .ok()
}

impl KernelMaps {
    /// Takes the unwind maps out of `ebpf`; `None` if a map is missing or
    /// cannot be mapped.
    pub fn take(ebpf: &mut Ebpf) -> Option<KernelMaps> {
        let capacity = |name: &str| match ebpf.map(name)? {
            Map::Array(data) => data.info().ok().map(|info| info.max_entries()),
            _ => None,
        };
        let row_capacity = capacity(map_names::UNWIND_ROWS)?;
        let file_capacity = capacity(map_names::UNWIND_FILES)?;
        let rows = match ebpf.map(map_names::UNWIND_ROWS)? {
            Map::Array(data) => data.fd().as_fd().try_clone_to_owned().ok()?,
            _ => return None,
        };
        let files = map_values::<UnwindFile>(ebpf.map(map_names::UNWIND_FILES)?, file_capacity)?;
        let procs = HashMap::try_from(ebpf.take_map(map_names::UNWIND_PROCS)?).ok()?;
        Some(KernelMaps {
            rows,
            row_capacity,
            files,
            file_capacity,
            procs,
        })
    }
}

impl TableSink for KernelMaps {
    fn row_capacity(&self) -> u32 {
        self.row_capacity
    }

    fn file_capacity(&self) -> u32 {
        self.file_capacity
    }

    fn write_rows(&mut self, first: u32, rows: &[UnwindRow]) -> Result<(), UnwindError> {
        let end = first as usize + rows.len();
        if end > self.row_capacity as usize {
            return Err(UnwindError::RowsOutOfRange {
                first,
                count: rows.len(),
            });
        }
        // SAFETY: `UnwindRow` is plain data with no padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(rows.as_ptr().cast::<u8>(), std::mem::size_of_val(rows))
        };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let at = first as usize * size_of::<UnwindRow>();
        let from = at / page * page;
        let to = (at + bytes.len()).div_ceil(page) * page;
        // SAFETY: a shared mapping of whole pages of the array's value area
        // (the kernel checks the range), written with plain-data rows
        // while the kernel may read other rows.
        let mut pages = unsafe {
            MmapOptions::new()
                .offset(from as u64)
                .len(to - from)
                .map_mut(self.rows.as_raw_fd())
        }
        .map_err(|e| UnwindError::Map {
            action: "map the unwind rows",
            message: e.to_string(),
        })?;
        pages[at - from..at - from + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    fn set_file(&mut self, slot: u32, file: UnwindFile) -> Result<(), UnwindError> {
        if slot >= self.file_capacity {
            return Err(UnwindError::SlotOutOfRange { slot });
        }
        // The rows must be in place before the kernel sees a non-zero count.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        let at = slot as usize * size_of::<UnwindFile>();
        // SAFETY: an aligned slot within the mapping; one 8-byte store, so
        // the kernel never reads half an entry.
        unsafe {
            let value = (file.first_row as u64) | ((file.rows as u64) << 32);
            std::ptr::write_volatile(self.files.as_mut_ptr().add(at).cast::<u64>(), value);
        }
        Ok(())
    }

    fn set_process(&mut self, pid: u32, process: &UnwindProcess) -> Result<(), UnwindError> {
        self.procs
            .insert(pid, process, 0)
            .map_err(|e| UnwindError::Map {
                action: "write a process's mappings",
                message: e.to_string(),
            })
    }

    fn remove_process(&mut self, pid: u32) {
        let _ = self.procs.remove(&pid);
    }
}

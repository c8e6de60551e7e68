//! Unwind tables for the kernel's user-stack walker (`--unwind auto|dwarf`):
//! built per file from its call frame information (the `unwind-tables`
//! crate), shared by every process that maps the file, and kept in step
//! with the processes the process manager holds.
//!
//! Layers, each testable without root: [`TableSource`] gives a file's rows
//! (built, or read from the cache under `/run/profiler/unwind`);
//! [`UnwindManager`] decides what is loaded where and evicts under the
//! budget; [`TableSink`] is the kernel's maps ([`KernelMaps`]).

mod alloc;
mod kernel_maps;
mod manager;
mod source;

pub use kernel_maps::KernelMaps;
pub use manager::UnwindManager;
pub use source::FileTables;

use crate::tracer::Tracer;

use profiler_common::{UnwindFile, UnwindProcess, UnwindRow};
use symbolizer::ObjectFile;

#[derive(Debug, thiserror::Error)]
pub enum UnwindError {
    #[error("rows {first}..+{count} are outside the kernel's rows array")]
    RowsOutOfRange { first: u32, count: usize },
    #[error("file slot {slot} is outside the kernel's files array")]
    SlotOutOfRange { slot: u32 },
    #[error("cannot {action}: {message}")]
    Map {
        action: &'static str,
        message: String,
    },
}

/// The rows of unwind tables `bytes` of kernel memory hold, if that is a
/// size the kernel's rows array can have (8 KiB to 16 GiB).
pub fn rows_in(bytes: u64) -> Option<u32> {
    let rows = bytes / size_of::<UnwindRow>() as u64;
    (1024..=u32::MAX as u64 / 2)
        .contains(&rows)
        .then_some(rows as u32)
}

/// The unwind tables of a running tracer.
pub type Tables = UnwindManager<KernelMaps, FileTables>;

impl Tables {
    /// The tables of `tracer`, if it walks stacks with them; from then on
    /// `processes` must track changes ([`ProcessTable::track_changes`]).
    pub fn of(tracer: &mut Tracer) -> Option<Tables> {
        tracer
            .take_unwind_maps()
            .map(|maps| UnwindManager::new(maps, FileTables::default()))
    }
}

impl<S: TableSink, T: TableSource> crate::follow::FollowProcesses for UnwindManager<S, T> {
    fn sync(&mut self, maps: &symbolizer::ProcessMaps) {
        UnwindManager::sync(self, maps);
    }

    fn remove(&mut self, pid: u32) {
        UnwindManager::remove(self, pid);
    }
}

/// Where the manager puts tables and mappings: the kernel's maps, or a
/// recorder in tests.
pub trait TableSink {
    /// Rows the sink can hold.
    fn row_capacity(&self) -> u32;
    /// File slots the sink can hold.
    fn file_capacity(&self) -> u32;
    fn write_rows(&mut self, first: u32, rows: &[UnwindRow]) -> Result<(), UnwindError>;
    /// Points `slot` at its rows (`rows == 0`: unloaded). Called after the rows are written.
    fn set_file(&mut self, slot: u32, file: UnwindFile) -> Result<(), UnwindError>;
    fn set_process(&mut self, pid: u32, process: &UnwindProcess) -> Result<(), UnwindError>;
    fn remove_process(&mut self, pid: u32);
}

/// A file's unwind rows: `None` when it has none that can be used
/// (frame pointers are used for its code).
pub trait TableSource {
    fn table(&mut self, object: &ObjectFile) -> Option<Vec<UnwindRow>>;

    /// Tables built, tables read from a cache, and milliseconds spent building.
    fn counts(&self) -> (u64, u64, u64) {
        (0, 0, 0)
    }
}

/// What was loaded, for the summary and the agent's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindStats {
    /// Files whose tables are loaded now, and their rows and bytes.
    pub files_loaded: u64,
    pub rows_loaded: u64,
    pub bytes_loaded: u64,
    /// Files mapped by a process that have no usable table (frame pointers).
    pub files_without_table: u64,
    /// Files whose table is larger than the whole budget.
    pub files_too_big: u64,
    /// Table loads refused for lack of room at the time (tried again later).
    pub files_no_room: u64,
    /// Files unloaded to make room (least recently used first).
    pub files_evicted: u64,
    /// Tables built from the files, and read from the cache.
    pub tables_built: u64,
    pub tables_cached: u64,
    /// Milliseconds spent building tables.
    pub build_ms: u64,
    /// Writes of a process's mappings, and those refused (map full).
    pub process_writes: u64,
    pub processes_full: u64,
    /// Mappings beyond `UNWIND_MAPPINGS_MAX` in one process (frame pointers there).
    pub mappings_dropped: u64,
}

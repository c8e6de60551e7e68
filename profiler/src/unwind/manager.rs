//! Keeps the kernel's unwind tables in step with the processes held: each
//! mapped file's table is built once (or read from the cache), loaded into
//! the rows array, and shared by every process that maps the file; each
//! process's mappings with a table are written whenever they change.
//!
//! When the rows budget is reached, the files least recently mapped by a
//! synced process are evicted (their processes are written again without
//! them, and walk those frames with frame pointers).

use std::{collections::HashSet, sync::Arc};

use foldhash::HashMap;
use profiler_common::{UNWIND_MAPPINGS_MAX, UnwindFile, UnwindMapping, UnwindProcess, UnwindRow};
use symbolizer::{ObjectFile, ProcessMaps};

use super::{TableSink, TableSource, UnwindStats, alloc::RowAllocator};

/// The identity of a mapped file (device, inode), as the symbolizer keys it.
type FileKey = (u32, u32, u64);

#[derive(Debug)]
enum FileState {
    /// Loaded in slot `slot` at rows `[first_row, first_row + rows)`.
    Loaded {
        slot: u32,
        first_row: u32,
        rows: u32,
        last_used: u64,
    },
    /// No table (no CFI, not ELF, unreadable): frame pointers.
    NoTable,
    /// Too big for the budget even when everything else is evicted.
    TooBig,
}

pub struct UnwindManager<S: TableSink, T: TableSource> {
    sink: S,
    source: T,
    rows: RowAllocator,
    free_slots: Vec<u32>,
    files: HashMap<FileKey, FileState>,
    /// Which processes use each loaded file's slot (rewritten on eviction).
    slot_users: HashMap<u32, HashSet<u32>>,
    /// Each synced process's mappings as written.
    processes: HashMap<u32, Vec<UnwindMapping>>,
    /// Bumped at every sync: the files' recency.
    clock: u64,
    stats: UnwindStats,
}

impl<S: TableSink, T: TableSource> UnwindManager<S, T> {
    pub fn new(sink: S, source: T) -> Self {
        let rows = RowAllocator::new(sink.row_capacity());
        // Popped from the end: slot 0 first.
        let free_slots = (0..sink.file_capacity()).rev().collect();
        UnwindManager {
            sink,
            source,
            rows,
            free_slots,
            files: HashMap::default(),
            slot_users: HashMap::default(),
            processes: HashMap::default(),
            clock: 0,
            stats: UnwindStats::default(),
        }
    }

    pub fn stats(&self) -> UnwindStats {
        let (built, cached, build_ms) = self.source.counts();
        UnwindStats {
            tables_built: built,
            tables_cached: cached,
            build_ms,
            ..self.stats
        }
    }

    pub fn source(&self) -> &T {
        &self.source
    }

    /// Writes `maps`' mappings with a table into the kernel, loading the
    /// tables of files not loaded yet.
    pub fn sync(&mut self, maps: &ProcessMaps) {
        self.clock += 1;
        let pid = maps.pid;
        let mut mappings = Vec::new();
        for mapping in maps.mappings.iter() {
            let Some(object) = &mapping.object else {
                continue;
            };
            let Some(slot) = self.ensure_loaded(object) else {
                continue;
            };
            mappings.push(UnwindMapping {
                start: mapping.start,
                end: mapping.end,
                bias: mapping.start.wrapping_sub(mapping.file_offset),
                file: slot,
                reserved: 0,
            });
        }
        self.write_process(pid, mappings);
    }

    /// Forgets process `pid` (it exited).
    pub fn remove(&mut self, pid: u32) {
        if let Some(mappings) = self.processes.remove(&pid) {
            for mapping in mappings {
                if let Some(users) = self.slot_users.get_mut(&mapping.file) {
                    users.remove(&pid);
                }
            }
            self.sink.remove_process(pid);
        }
    }

    /// The synced processes, for pruning those gone.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.keys().copied().collect()
    }

    fn write_process(&mut self, pid: u32, mut mappings: Vec<UnwindMapping>) {
        mappings.sort_by_key(|m| m.start);
        if mappings.len() > UNWIND_MAPPINGS_MAX {
            self.stats.mappings_dropped += (mappings.len() - UNWIND_MAPPINGS_MAX) as u64;
            mappings.truncate(UNWIND_MAPPINGS_MAX);
        }
        if let Some(old) = self.processes.get(&pid) {
            for mapping in old {
                if let Some(users) = self.slot_users.get_mut(&mapping.file) {
                    users.remove(&pid);
                }
            }
        }
        for mapping in &mappings {
            self.slot_users.entry(mapping.file).or_default().insert(pid);
        }
        let mut value = UnwindProcess {
            len: mappings.len() as u32,
            reserved: 0,
            mappings: [UnwindMapping::default(); UNWIND_MAPPINGS_MAX],
        };
        value.mappings[..mappings.len()].copy_from_slice(&mappings);
        match self.sink.set_process(pid, &value) {
            Ok(()) => self.stats.process_writes += 1,
            // The map is full: this process walks with frame pointers.
            Err(_) => self.stats.processes_full += 1,
        }
        self.processes.insert(pid, mappings);
    }

    /// The slot of `object`'s table, loading it if needed; `None` when the
    /// file has no usable table.
    fn ensure_loaded(&mut self, object: &Arc<ObjectFile>) -> Option<u32> {
        let clock = self.clock;
        match self.files.get_mut(&object.key) {
            Some(FileState::Loaded {
                slot, last_used, ..
            }) => {
                *last_used = clock;
                return Some(*slot);
            }
            Some(FileState::NoTable | FileState::TooBig) => return None,
            None => {}
        }
        let rows = match self.source.table(object) {
            Some(rows) if !rows.is_empty() => rows,
            _ => {
                self.stats.files_without_table += 1;
                self.files.insert(object.key, FileState::NoTable);
                return None;
            }
        };
        let Ok(count) = u32::try_from(rows.len()) else {
            self.files.insert(object.key, FileState::TooBig);
            return None;
        };
        let Some((slot, first_row)) = self.make_room(count) else {
            self.stats.files_too_big += 1;
            self.files.insert(object.key, FileState::TooBig);
            return None;
        };
        if self.sink.write_rows(first_row, &rows).is_err()
            || self
                .sink
                .set_file(
                    slot,
                    UnwindFile {
                        first_row,
                        rows: count,
                    },
                )
                .is_err()
        {
            self.rows.release(first_row, count);
            self.free_slots.push(slot);
            self.files.insert(object.key, FileState::NoTable);
            return None;
        }
        self.files.insert(
            object.key,
            FileState::Loaded {
                slot,
                first_row,
                rows: count,
                last_used: clock,
            },
        );
        self.stats.files_loaded += 1;
        self.stats.rows_loaded += count as u64;
        self.stats.bytes_loaded += count as u64 * size_of::<UnwindRow>() as u64;
        Some(slot)
    }

    /// A free slot and `count` free rows, evicting the least recently
    /// used files (not used by this sync) until they fit.
    fn make_room(&mut self, count: u32) -> Option<(u32, u32)> {
        if count > self.rows.capacity() {
            return None;
        }
        loop {
            if !self.free_slots.is_empty()
                && let Some(first) = self.rows.alloc(count)
            {
                let slot = self.free_slots.pop().expect("checked non-empty");
                return Some((slot, first));
            }
            if !self.evict_one() {
                return None;
            }
        }
    }

    /// Evicts the least recently used loaded file that this sync did not
    /// use; false when there is none.
    fn evict_one(&mut self) -> bool {
        let clock = self.clock;
        let victim = self
            .files
            .iter()
            .filter_map(|(key, state)| match state {
                FileState::Loaded { last_used, .. } if *last_used < clock => {
                    Some((*last_used, *key))
                }
                _ => None,
            })
            .min();
        let Some((_, key)) = victim else {
            return false;
        };
        let Some(FileState::Loaded {
            slot,
            first_row,
            rows,
            ..
        }) = self.files.remove(&key)
        else {
            return false;
        };
        // Unload the file before its rows are given to another.
        let _ = self.sink.set_file(slot, UnwindFile::default());
        self.stats.files_evicted += 1;
        self.stats.files_loaded -= 1;
        self.stats.rows_loaded -= rows as u64;
        self.stats.bytes_loaded -= rows as u64 * size_of::<UnwindRow>() as u64;
        // Its processes no longer point at the slot before it is reused.
        let users = self.slot_users.remove(&slot).unwrap_or_default();
        for pid in users {
            if let Some(mappings) = self.processes.get(&pid) {
                let kept = mappings
                    .iter()
                    .copied()
                    .filter(|m| m.file != slot)
                    .collect();
                self.write_process(pid, kept);
            }
        }
        self.rows.release(first_row, rows);
        self.free_slots.push(slot);
        true
    }
}

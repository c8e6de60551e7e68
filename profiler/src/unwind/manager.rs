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

/// `UnwindMapping::file` of a mapping without a table (past any slot).
const NO_SLOT: u32 = u32::MAX;

/// Tables larger than this are followed by giving the heap's free memory back.
const BIG_TABLE_BYTES: usize = 4 << 20;

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

    /// Writes `maps`' mappings into the kernel (those of files without a
    /// table with no slot), loading the tables of files not loaded yet.
    pub fn sync(&mut self, maps: &ProcessMaps) {
        self.clock += 1;
        let pid = maps.pid;
        let mut mappings = Vec::new();
        for mapping in maps.mappings.iter() {
            // Mappings without a table are written too, with no slot: the
            // kernel then knows the address (frame pointers there) and does
            // not ask for the process to be read again (`EVENT_UNWIND_MISS`),
            // which JIT code made it do five times a second.
            let slot = match &mapping.object {
                Some(object) => self.ensure_loaded(object).unwrap_or(NO_SLOT),
                None => NO_SLOT,
            };
            mappings.push(UnwindMapping {
                start: mapping.start,
                end: mapping.end,
                bias: mapping.start.wrapping_sub(mapping.file_offset),
                file: slot,
                reserved: 0,
            });
        }
        static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *DEBUG.get_or_init(|| std::env::var_os("PROFILER_DEBUG_UNWIND").is_some()) {
            eprintln!(
                "unwind sync {pid} at {:?}: {:?}",
                std::time::SystemTime::now(),
                maps.mappings
                    .iter()
                    .map(|m| (m.start, &*m.name))
                    .collect::<Vec<_>>()
            );
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
        }
        // Also when never written here: the kernel copies a parent's entry
        // for a forked child at its first sample.
        self.sink.remove_process(pid);
    }

    /// Forgets the processes `alive` says are gone: without the kernel's
    /// records no exit is seen, and their entries would fill the map.
    /// Returns how many.
    pub fn prune(&mut self, alive: impl Fn(u32) -> bool) -> usize {
        let gone: Vec<u32> = self
            .processes
            .keys()
            .copied()
            .filter(|&pid| !alive(pid))
            .collect();
        for &pid in &gone {
            self.remove(pid);
        }
        gone.len()
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
        for mapping in mappings.iter().filter(|m| m.file != NO_SLOT) {
            self.slot_users.entry(mapping.file).or_default().insert(pid);
        }
        let mut value = UnwindProcess {
            len: mappings.len() as u32,
            reserved: 0,
            mappings: [UnwindMapping::default(); UNWIND_MAPPINGS_MAX],
        };
        value.mappings[..mappings.len()].copy_from_slice(&mappings);
        match self.sink.set_process(pid, &value) {
            Ok(()) => {
                self.stats.process_writes += 1;
                self.processes.insert(pid, mappings);
            }
            // The map is full: this process walks with frame pointers until
            // it is written again (its next change or announcement).
            Err(_) => {
                self.stats.processes_full += 1;
                self.remove(pid);
            }
        }
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
            self.stats.files_too_big += 1;
            self.files.insert(object.key, FileState::TooBig);
            return None;
        };
        let Some((slot, first_row)) = self.make_room(count) else {
            // Only a table larger than the whole budget is never tried
            // again; no room now (tables of this very sync, no free slot)
            // may change.
            if count > self.rows.capacity() {
                self.stats.files_too_big += 1;
                self.files.insert(object.key, FileState::TooBig);
            } else {
                self.stats.files_no_room += 1;
            }
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
        if rows.len() * size_of::<UnwindRow>() > BIG_TABLE_BYTES {
            drop(rows);
            // Building a large file's table (rustc's: 6 MB of .eh_frame, 9 MB
            // of rows) leaves tens of MB free in the heap, which glibc keeps
            // (`record -a` here: 114 MB peak RSS against 48 with --unwind fp).
            // SAFETY: malloc_trim has no preconditions.
            unsafe { libc::malloc_trim(0) };
        }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use profiler_common::cfa;
    use symbolizer::{FileCache, Mapping, maps::MapEntry};

    use super::*;
    use crate::unwind::UnwindError;

    /// What the manager wrote, as the kernel would hold it.
    #[derive(Default)]
    struct Recorder {
        rows: Vec<UnwindRow>,
        files: Vec<UnwindFile>,
        processes: HashMap<u32, UnwindProcess>,
    }

    impl Recorder {
        fn new(rows: u32, files: u32) -> Self {
            Recorder {
                rows: vec![UnwindRow::default(); rows as usize],
                files: vec![UnwindFile::default(); files as usize],
                processes: HashMap::default(),
            }
        }

        /// The rows the kernel would search for `pid`'s mapping holding `addr`.
        fn rows_for(&self, pid: u32, addr: u64) -> Option<&[UnwindRow]> {
            let process = self.processes.get(&pid)?;
            let mapping = process.mappings[..process.len as usize]
                .iter()
                .find(|m| m.start <= addr && addr < m.end)?;
            let file = *self.files.get(mapping.file as usize)?;
            (file.rows > 0)
                .then(|| &self.rows[file.first_row as usize..(file.first_row + file.rows) as usize])
        }
    }

    impl TableSink for Recorder {
        fn row_capacity(&self) -> u32 {
            self.rows.len() as u32
        }
        fn file_capacity(&self) -> u32 {
            self.files.len() as u32
        }
        fn write_rows(&mut self, first: u32, rows: &[UnwindRow]) -> Result<(), UnwindError> {
            self.rows[first as usize..first as usize + rows.len()].copy_from_slice(rows);
            Ok(())
        }
        fn set_file(&mut self, slot: u32, file: UnwindFile) -> Result<(), UnwindError> {
            self.files[slot as usize] = file;
            Ok(())
        }
        fn set_process(&mut self, pid: u32, process: &UnwindProcess) -> Result<(), UnwindError> {
            self.processes.insert(pid, *process);
            Ok(())
        }
        fn remove_process(&mut self, pid: u32) {
            self.processes.remove(&pid);
        }
    }

    /// Tables of `rows` rows, marked with the file's inode, for the paths
    /// given; none for other files. Counts how often each is asked for.
    struct Fake {
        sizes: Vec<(&'static str, usize)>,
        asked: HashMap<String, usize>,
    }

    impl TableSource for Fake {
        fn table(&mut self, object: &ObjectFile) -> Option<Vec<UnwindRow>> {
            *self.asked.entry(object.path.clone()).or_default() += 1;
            let &(_, n) = self.sizes.iter().find(|(p, _)| *p == object.path)?;
            let mark = object.key.2 as u16;
            Some(
                (0..n)
                    .map(|i| UnwindRow {
                        pc: i as u32 * 16,
                        cfa_offset: mark,
                        kind: UnwindRow::make_kind(cfa::RSP, 0),
                        rbp_offset: 0,
                    })
                    .collect(),
            )
        }
    }

    const LIBC: &str = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    const LD: &str = "/usr/lib64/ld-linux-x86-64.so.2";
    const SH: &str = "/bin/sh";

    /// A mapping of real file `path` at `start` (opened through our own /proc).
    fn mapping(cache: &mut FileCache, path: &str, start: u64) -> Mapping {
        let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}"));
        let dev = meta.dev();
        let entry = MapEntry {
            start,
            end: start + 0x10000,
            readable: true,
            executable: true,
            file_offset: 0x1000,
            dev: (libc::major(dev), libc::minor(dev)),
            inode: meta.ino(),
            path: Arc::from(path),
        };
        symbolizer::process::mapping(std::process::id(), &entry, cache)
    }

    fn process(pid: u32, mappings: Vec<Mapping>) -> ProcessMaps {
        ProcessMaps {
            pid,
            mappings: Arc::new(mappings),
        }
    }

    #[test]
    fn a_file_is_loaded_once_for_every_process_that_maps_it() {
        let mut cache = FileCache::default();
        let fake = Fake {
            sizes: vec![(LIBC, 100), (LD, 50)],
            asked: HashMap::default(),
        };
        let mut manager = UnwindManager::new(Recorder::new(1000, 8), fake);
        let a = process(
            10,
            vec![
                mapping(&mut cache, SH, 0x1000_0000),
                mapping(&mut cache, LIBC, 0x7000_0000),
            ],
        );
        let b = process(
            11,
            vec![
                mapping(&mut cache, LIBC, 0x7100_0000),
                mapping(&mut cache, LD, 0x7200_0000),
            ],
        );
        manager.sync(&a);
        manager.sync(&b);
        assert_eq!(manager.source.asked[LIBC], 1, "libc's table built once");
        let stats = manager.stats();
        assert_eq!((stats.files_loaded, stats.rows_loaded), (2, 150));
        assert_eq!(stats.files_without_table, 1, "the shell has no table here");
        let sink = &manager.sink;
        // Process 10: only libc has a table (the shell is written with no
        // slot: known, frame pointers); libc's bias maps the runtime address
        // to the file offset.
        let p10 = sink.processes[&10];
        assert_eq!(p10.len, 2);
        assert_eq!(p10.mappings[0].file, NO_SLOT);
        assert_eq!(p10.mappings[1].bias, 0x7000_0000 - 0x1000);
        let libc_rows = sink.rows_for(10, 0x7000_0040).expect("libc rows for 10");
        assert_eq!(libc_rows.len(), 100);
        assert_eq!(
            sink.rows_for(11, 0x7100_0040).map(|r| r.as_ptr()),
            Some(libc_rows.as_ptr()),
            "both processes point at the same rows"
        );
        assert_eq!(sink.rows_for(11, 0x7200_0040).map(<[_]>::len), Some(50));
        assert!(
            sink.rows_for(10, 0x1000_0040).is_none(),
            "no table: frame pointers"
        );
        manager.remove(10);
        assert!(!manager.sink.processes.contains_key(&10));
        assert_eq!(manager.prune(|pid| pid != 11), 1);
        assert!(manager.sink.processes.is_empty(), "11 pruned as gone");
    }

    #[test]
    fn over_the_budget_the_least_recently_used_file_is_evicted() {
        let mut cache = FileCache::default();
        let fake = Fake {
            sizes: vec![(LIBC, 600), (LD, 300), (SH, 500)],
            asked: HashMap::default(),
        };
        let mut manager = UnwindManager::new(Recorder::new(1000, 8), fake);
        manager.sync(&process(1, vec![mapping(&mut cache, LIBC, 0x7000_0000)]));
        manager.sync(&process(2, vec![mapping(&mut cache, LD, 0x7200_0000)]));
        // 900 of 1000 rows used: the shell's 500 need libc (least recently
        // used) out, and process 1 no longer points at its slot.
        manager.sync(&process(3, vec![mapping(&mut cache, SH, 0x1000_0000)]));
        let stats = manager.stats();
        assert_eq!(stats.files_evicted, 1);
        assert_eq!((stats.files_loaded, stats.rows_loaded), (2, 800));
        let sink = &manager.sink;
        assert_eq!(sink.processes[&1].len, 0, "libc's mapping was dropped");
        assert!(sink.rows_for(1, 0x7000_0040).is_none());
        assert_eq!(sink.rows_for(2, 0x7200_0040).map(<[_]>::len), Some(300));
        let sh = sink.rows_for(3, 0x1000_0040).expect("the shell's rows");
        assert_eq!(sh.len(), 500);
        let sh_inode = std::fs::metadata(SH).unwrap().ino() as u16;
        assert!(
            sh.iter().all(|r| r.cfa_offset == sh_inode),
            "the rows are the shell's"
        );
        // A table larger than the whole budget is never loaded.
        let mut big = UnwindManager::new(
            Recorder::new(100, 8),
            Fake {
                sizes: vec![(LIBC, 101)],
                asked: HashMap::default(),
            },
        );
        big.sync(&process(1, vec![mapping(&mut cache, LIBC, 0x7000_0000)]));
        assert_eq!(big.stats().files_too_big, 1);
        assert_eq!(big.sink.processes[&1].mappings[0].file, NO_SLOT);
        assert!(big.sink.rows_for(1, 0x7000_0040).is_none());
    }
}

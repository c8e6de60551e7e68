//! The process manager: snapshots of the processes being profiled, taken when
//! the kernel announces them (first sample, fork, exec) so that a process
//! that exits before the end of the recording is still symbolized. At the end,
//! live processes are captured again to pick up libraries loaded since.
//! A process is also captured once more shortly after it was first seen: it
//! is often announced while the dynamic loader is still mapping its
//! libraries, and it may exit before the end.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use symbolizer::{FileCache, ProcessMaps, Symbol, Symbolizer};

use crate::{aggregate::Resolve, profile::Mapping};

/// How long after its first capture a process is captured again.
pub const SETTLE_AFTER: Duration = Duration::from_millis(300);

#[derive(Default)]
pub struct ProcessTable {
    files: FileCache,
    processes: HashMap<u32, ProcessMaps>,
    /// Processes captured once, not yet captured again, and when.
    unsettled: HashMap<u32, Instant>,
}

impl ProcessTable {
    /// Captures (or re-captures) `pid`. A process that has exited keeps the
    /// snapshot taken while it lived, if any.
    pub fn capture(&mut self, pid: u32) {
        if let Ok(maps) = symbolizer::capture(pid, &mut self.files) {
            self.unsettled.entry(pid).or_insert_with(Instant::now);
            self.processes.insert(pid, maps);
        }
    }

    /// Captures again the processes first captured more than `after` ago
    /// (once each), to pick up the libraries mapped after they were announced.
    pub fn settle(&mut self, after: Duration) {
        let due: Vec<u32> = self
            .unsettled
            .iter()
            .filter(|(_, at)| at.elapsed() >= after)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            if let Ok(maps) = symbolizer::capture(pid, &mut self.files) {
                self.processes.insert(pid, maps);
            }
            self.unsettled.remove(&pid);
        }
    }

    /// Re-captures the processes still alive and captures any not seen yet;
    /// exited ones keep their snapshots.
    pub fn refresh<I: IntoIterator<Item = u32>>(&mut self, pids: I) {
        for pid in pids {
            self.capture(pid);
        }
        self.files.prune();
    }

    pub fn get(&self, pid: u32) -> Option<&ProcessMaps> {
        self.processes.get(&pid)
    }

    /// Processes held.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Drops the snapshots of processes that have exited, except those in
    /// `keep` (they have samples still to symbolize), and the files only
    /// they mapped. Returns how many were dropped.
    pub fn evict_exited(&mut self, keep: &std::collections::HashSet<u32>) -> usize {
        let before = self.processes.len();
        self.processes.retain(|pid, _| {
            keep.contains(pid) || std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        self.unsettled
            .retain(|pid, _| self.processes.contains_key(pid));
        self.files.prune();
        before - self.processes.len()
    }

    /// The identities (device, inode) of the files the processes held map.
    pub fn live_files(&self) -> std::collections::HashSet<(u32, u32, u64)> {
        self.processes
            .values()
            .flat_map(|p| p.mappings.iter())
            .filter_map(|m| m.object.as_ref().map(|o| o.key))
            .collect()
    }
}

/// [`Resolve`] over the real symbolizer and the captured processes.
pub struct Resolver<'a> {
    pub symbolizer: &'a mut Symbolizer,
    pub processes: &'a ProcessTable,
}

impl Resolve for Resolver<'_> {
    fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Symbol> {
        match self.processes.get(pid) {
            Some(maps) => self.symbolizer.symbolize_user(maps, addrs),
            None => {
                let empty = ProcessMaps {
                    pid,
                    mappings: Vec::new(),
                };
                self.symbolizer.symbolize_user(&empty, addrs)
            }
        }
    }

    fn kernel(&mut self, addrs: &[u64]) -> Vec<Symbol> {
        self.symbolizer.symbolize_kernel(addrs)
    }

    fn mapping(&self, pid: u32, index: usize) -> Option<Mapping> {
        let mapping = self.processes.get(pid)?.mappings.get(index)?;
        Some(Mapping {
            start: mapping.start,
            end: mapping.end,
            file_offset: mapping.file_offset,
            path: mapping
                .object
                .as_ref()
                .map_or_else(|| mapping.name.clone(), |o| o.path.clone()),
            build_id: mapping.object.as_ref().and_then(|o| o.build_id.clone()),
        })
    }
}

//! The process manager: snapshots of the processes being profiled, taken when
//! the kernel announces them (first sample, fork, exec) so that a process
//! that exits before the end of the recording is still symbolized. At the end,
//! live processes are captured again to pick up libraries loaded since.
//! A process is also captured once more shortly after it was first seen: it
//! is often announced while the dynamic loader is still mapping its
//! libraries, and it may exit before the end.
//!
//! With the kernel's process records ([`crate::process_events`]) applied, a
//! process is *followed*: its mappings are kept up to date from the records
//! (a fork copies the parent's, an exec starts afresh, each new executable
//! mapping is added), so it is never read from `/proc` again, and a process
//! forked or exec'd during the recording is never read from `/proc` at all.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use symbolizer::{FileCache, ProcessMaps, Symbol, Symbolizer, maps::MapEntry};

use crate::{
    aggregate::Resolve,
    process_events::{Change, MappedRange, Timed, monotonic_ns},
    profile::Mapping,
};

/// How long after its first capture a process is captured again.
pub const SETTLE_AFTER: Duration = Duration::from_millis(300);

#[derive(Default)]
pub struct ProcessTable {
    files: FileCache,
    processes: HashMap<u32, ProcessMaps>,
    /// Processes captured once, not yet captured again, and when.
    unsettled: HashMap<u32, Instant>,
    /// When each process was last read from `/proc` (CLOCK_MONOTONIC ns):
    /// records older than that are already in its snapshot.
    captured_at: HashMap<u32, u64>,
    /// Processes whose mappings the kernel's records keep complete.
    followed: HashSet<u32>,
    /// Whether a process first seen exec'ing is followed (system-wide
    /// recordings), or only the descendants of processes already held.
    follow_every_exec: bool,
    /// Records are being applied (and none was lost).
    following: bool,
    /// Each followed process's mappings before its last exec.
    before_exec: HashMap<u32, Vec<symbolizer::Mapping>>,
    /// Processes the kernel announced (first sampled) while records are
    /// followed, and when: read from `/proc` only if the records up to
    /// then did not make them followed.
    announced: HashMap<u32, u64>,
}

impl ProcessTable {
    /// Captures (or re-captures) `pid`. A process that has exited keeps the
    /// snapshot taken while it lived, if any.
    pub fn capture(&mut self, pid: u32) {
        if self.followed.contains(&pid) {
            return;
        }
        let at = monotonic_ns();
        if let Ok(maps) = symbolizer::capture(pid, &mut self.files) {
            if self.following {
                // The snapshot and the records after it make the whole.
                self.captured_at.insert(pid, at);
                self.followed.insert(pid);
            } else {
                self.unsettled.entry(pid).or_insert_with(Instant::now);
            }
            self.processes.insert(pid, maps);
        }
    }

    /// The kernel announced `pid` (its first sample). Without records it is
    /// read from `/proc` at once; with them, once the records up to now are
    /// applied ([`Self::capture_announced`]), and only if they did not make
    /// it followed: a process forked or exec'd during the recording never is.
    pub fn announce(&mut self, pid: u32) {
        if !self.following {
            self.capture(pid);
        } else if !self.followed.contains(&pid) {
            self.announced.entry(pid).or_insert_with(monotonic_ns);
        }
    }

    /// Reads from `/proc` the announced processes that the records applied
    /// so far (up to `horizon_ns`, CLOCK_MONOTONIC) did not make followed.
    pub fn capture_announced(&mut self, horizon_ns: u64) {
        let due: Vec<u32> = self
            .announced
            .iter()
            .filter(|&(_, &at)| at <= horizon_ns || !self.following)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            self.announced.remove(&pid);
            self.capture(pid);
        }
    }

    /// From now on, keep processes up to date from the kernel's records:
    /// call before the first capture, and then [`Self::apply`] every record.
    /// `every_exec`: also take up processes not held yet when they exec.
    pub fn follow_records(&mut self, every_exec: bool) {
        self.follow_every_exec = every_exec;
        self.following = true;
    }

    /// Records were lost: the mappings built from them may be incomplete, so
    /// every process goes back to being read from `/proc`.
    pub fn stop_following(&mut self) {
        self.following = false;
        self.followed.clear();
    }

    /// Processes whose mappings come from the kernel's records.
    pub fn followed(&self) -> usize {
        self.followed.len()
    }

    /// Applies the kernel's records, in time order.
    pub fn apply(&mut self, changes: impl IntoIterator<Item = Timed>) {
        if !self.following {
            return;
        }
        for Timed { at_ns, change } in changes {
            let pid = match &change {
                Change::Fork { pid, .. } | Change::Exec { pid } | Change::Map { pid, .. } => *pid,
            };
            // A snapshot read from /proc after the record already holds it.
            if self.captured_at.get(&pid).is_some_and(|&at| at > at_ns) {
                continue;
            }
            match change {
                Change::Fork { pid, parent } => {
                    let Some(maps) = self.processes.get(&parent) else {
                        continue;
                    };
                    let child = ProcessMaps {
                        pid,
                        mappings: maps.mappings.clone(),
                    };
                    self.processes.insert(pid, child);
                    self.captured_at.remove(&pid);
                    self.unsettled.remove(&pid);
                    self.followed.insert(pid);
                }
                Change::Exec { pid } => {
                    if !self.follow_every_exec && !self.processes.contains_key(&pid) {
                        continue;
                    }
                    let fresh = ProcessMaps {
                        pid,
                        mappings: Vec::new(),
                    };
                    if let Some(old) = self.processes.insert(pid, fresh) {
                        self.before_exec.insert(pid, old.mappings);
                    }
                    self.captured_at.remove(&pid);
                    self.unsettled.remove(&pid);
                    self.followed.insert(pid);
                }
                Change::Map { pid, mapping } => {
                    if !self.followed.contains(&pid) {
                        continue;
                    }
                    let Some(maps) = self.processes.get_mut(&pid) else {
                        continue;
                    };
                    let entry = map_entry(mapping);
                    maps.insert(symbolizer::process::mapping(pid, &entry, &mut self.files));
                }
            }
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
            if self.followed.contains(&pid) {
                self.unsettled.remove(&pid);
                continue;
            }
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
        // Samples taken in a process before its exec are symbolized in the
        // image they were taken in, where the new one leaves it room.
        for (pid, older) in std::mem::take(&mut self.before_exec) {
            if let Some(maps) = self.processes.get_mut(&pid) {
                maps.fill_gaps(older);
            }
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

/// A mapping from the kernel's record, as a line of `/proc/PID/maps` would give it.
fn map_entry(mapping: MappedRange) -> MapEntry {
    MapEntry {
        start: mapping.start,
        end: mapping.end,
        readable: true,
        executable: true,
        file_offset: mapping.file_offset,
        dev: mapping.dev,
        inode: mapping.inode,
        path: mapping.path,
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

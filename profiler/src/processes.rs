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
//!
//! A process with anonymous executable memory (a JIT) also has its perf map
//! (`/tmp/perf-PID.map`) read while it lives: when it is read from `/proc`
//! or first sampled, every [`PERF_MAP_EVERY`] while the recording goes on
//! (JITs keep appending, and the process may exit before the end), and at
//! the end. The newest read is kept.

// Keyed by pid: thousands of inserts and lookups a second on a fork-heavy
// system, where SipHash was ~10% of `record -a`'s CPU. foldhash is seeded
// per table; pids are the kernel's, not an adversary's choice.
use foldhash::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use symbolizer::{
    FileCache, PerfMap, ProcessMaps, Symbol, Symbolizer,
    perf_map::{self, Outcome, PerfMapError, ReadStats},
};

use crate::{
    aggregate::Resolve,
    pid_alive::process_exists,
    process_events::{Change, ProcessEvents, Timed, monotonic_ns},
    profile::Mapping,
};

/// How long after its first capture a process is captured again.
pub const SETTLE_AFTER: Duration = Duration::from_millis(300);

/// How often the perf maps of live JIT processes are read again (at a
/// [`ProcessTable::settle`]). A file that has not changed is not parsed.
pub const PERF_MAP_EVERY: Duration = Duration::from_secs(1);

/// A process held, and where its mappings come from. (One entry, so that a
/// record costs one lookup: ~10 000 records a second on a fork-heavy system.)
struct Held {
    maps: ProcessMaps,
    /// When it was last read from `/proc` (CLOCK_MONOTONIC ns), unless it
    /// forked or exec'd since: records older than that are in the snapshot.
    captured_at: Option<u64>,
    /// The kernel's records keep its mappings complete.
    followed: bool,
    /// Its mappings before its last exec, if records followed it through one.
    before_exec: Option<Arc<Vec<symbolizer::Mapping>>>,
    /// The kernel announced a sample of it, or it was read from `/proc`:
    /// kept after it exits, for its samples to be named at the end.
    sampled: bool,
    /// Its JIT's perf map, as last read.
    perf_map: Option<Arc<PerfMap>>,
    /// Its perf map was refused (counted once).
    perf_map_refused: bool,
    /// Its exit record was applied: its pid may be another process's now.
    exited: bool,
}

impl Held {
    /// A process the records made (a fork's child, or first seen exec'ing).
    fn from_records(pid: u32, mappings: Arc<Vec<symbolizer::Mapping>>) -> Self {
        Held {
            maps: ProcessMaps { pid, mappings },
            captured_at: None,
            followed: true,
            before_exec: None,
            sampled: false,
            perf_map: None,
            perf_map_refused: false,
            exited: false,
        }
    }
}

#[derive(Default)]
pub struct ProcessTable {
    files: FileCache,
    processes: HashMap<u32, Held>,
    /// Processes captured once, not yet captured again, and when.
    unsettled: HashMap<u32, Instant>,
    /// Whether a process first seen exec'ing is followed (system-wide
    /// recordings), or only the descendants of processes already held.
    follow_every_exec: bool,
    /// Records are being applied (and none was lost).
    following: bool,
    /// Processes the kernel announced (first sampled) while records are
    /// followed, and when: read from `/proc` only if the records up to
    /// then did not make them followed.
    announced: HashMap<u32, u64>,
    /// Every process sampled before this time (CLOCK_MONOTONIC ns) has
    /// been announced, unless announcements were lost
    /// ([`Self::announced_until`]).
    announced_until: u64,
    /// The tracer lost announcements: exited processes are all kept.
    announcements_lost: bool,
    /// Whether [`Self::take_changes`] is asked (the unwind tables follow
    /// the processes' mappings).
    track_changes: bool,
    /// Processes whose mappings changed, and processes that exited, since
    /// the last [`Self::take_changes`].
    changed: foldhash::HashSet<u32>,
    exited: Vec<u32>,
    /// Processes the kernel announced (first sampled), or whose stacks
    /// reached an address in no known mapping, since the last
    /// [`Self::take_announced`].
    announced_now: Vec<u32>,
    /// When the perf maps were last read again ([`PERF_MAP_EVERY`]).
    perf_maps_polled: Option<Instant>,
    /// Perf maps read and refused so far.
    perf_map_reads: ReadStats,
    /// Python code objects the kernel announced (process, address), since
    /// the last [`Self::take_python_codes`].
    python_codes: Vec<(u32, u64, u64)>,
}

impl ProcessTable {
    /// Captures (or re-captures) `pid`. A process that has exited keeps the
    /// snapshot taken while it lived, if any.
    pub fn capture(&mut self, pid: u32) {
        if self.is_followed(pid) {
            return;
        }
        if self.read_proc(pid) && !self.following {
            self.unsettled.entry(pid).or_insert_with(Instant::now);
        }
    }

    /// Reads `pid` from `/proc`; true if it could. With records followed,
    /// the snapshot and the records after it make the whole: it is followed.
    fn read_proc(&mut self, pid: u32) -> bool {
        let at = monotonic_ns();
        let Ok(maps) = symbolizer::capture(pid, &mut self.files) else {
            return false;
        };
        let (before_exec, perf_map, perf_map_refused) = match self.processes.get_mut(&pid) {
            Some(held) => (
                held.before_exec.take(),
                held.perf_map.take(),
                held.perf_map_refused,
            ),
            None => (None, None, false),
        };
        let held = Held {
            maps,
            captured_at: self.following.then_some(at),
            followed: self.following,
            before_exec,
            sampled: true,
            perf_map,
            perf_map_refused,
            exited: false,
        };
        self.processes.insert(pid, held);
        self.changed(pid);
        self.read_perf_map(pid);
        true
    }

    /// Reads the perf map of `pid` again if it has memory that may hold JIT
    /// code (anonymous and executable) and has not exited (a failed read keeps the last one).
    fn read_perf_map(&mut self, pid: u32) {
        let Some(held) = self.processes.get_mut(&pid) else {
            return;
        };
        if held.exited || !held.maps.may_hold_jit_code() {
            return;
        }
        match perf_map::read(pid, held.perf_map.as_deref()) {
            Ok(Outcome::New(map)) => {
                self.perf_map_reads.read += 1;
                held.perf_map = Some(Arc::new(map));
            }
            Ok(Outcome::Unchanged) | Err(PerfMapError::Missing { .. }) => {}
            Err(e @ PerfMapError::Refused { .. }) => {
                if !std::mem::replace(&mut held.perf_map_refused, true) {
                    self.perf_map_reads.refused += 1;
                    eprintln!("note: {e}");
                }
            }
            // An unreadable file now may be readable at the next read.
            Err(PerfMapError::Io { .. }) => {}
        }
    }

    /// Reads again the perf maps of the live sampled processes that may
    /// have JIT code, at most every [`PERF_MAP_EVERY`].
    fn poll_perf_maps(&mut self) {
        if self
            .perf_maps_polled
            .is_some_and(|at| at.elapsed() < PERF_MAP_EVERY)
        {
            return;
        }
        self.perf_maps_polled = Some(Instant::now());
        let due: Vec<u32> = self
            .processes
            .iter()
            .filter(|(_, held)| held.sampled && !held.exited && held.maps.may_hold_jit_code())
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            self.read_perf_map(pid);
        }
    }

    /// The perf map of `pid`, as last read.
    pub fn perf_map(&self, pid: u32) -> Option<&PerfMap> {
        self.processes.get(&pid)?.perf_map.as_deref()
    }

    /// Perf maps read and refused so far, and the lines skipped in those
    /// kept (the newest read of each process held).
    pub fn perf_map_stats(&self) -> ReadStats {
        ReadStats {
            lines_skipped: self
                .processes
                .values()
                .filter_map(|held| held.perf_map.as_ref())
                .map(|map| map.lines_skipped)
                .sum(),
            ..self.perf_map_reads
        }
    }

    /// From now on, note which processes' mappings change and which exit,
    /// for [`Self::take_changes`].
    pub fn track_changes(&mut self) {
        self.track_changes = true;
    }

    fn changed(&mut self, pid: u32) {
        if self.track_changes {
            self.changed.insert(pid);
        }
    }

    /// The processes whose mappings changed (still held), and those that
    /// exited, since the last call.
    pub fn take_changes(&mut self) -> (Vec<u32>, Vec<u32>) {
        let changed = std::mem::take(&mut self.changed)
            .into_iter()
            .filter(|pid| self.processes.contains_key(pid))
            .collect();
        (changed, std::mem::take(&mut self.exited))
    }

    /// The kernel walked a stack of `pid` into an address in none of the
    /// mappings it was given (a library just loaded): for the unwind tables.
    pub fn unwind_missed(&mut self, pid: u32) {
        if self.track_changes {
            self.announced_now.push(pid);
        }
    }

    /// The kernel stored a Python frame of code object `code` (`id` in
    /// stacks) of `pid` that it had not announced before.
    pub fn python_code(&mut self, pid: u32, code: u64, id: u64) {
        self.python_codes.push((pid, code, id));
    }

    /// The code objects announced since the last call: (pid, address, id).
    pub fn take_python_codes(&mut self) -> Vec<(u32, u64, u64)> {
        std::mem::take(&mut self.python_codes)
    }

    /// The processes announced, or whose stacks missed a mapping, since
    /// the last call (with [`Self::track_changes`]).
    pub fn take_announced(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.announced_now)
    }

    /// `pid`'s mappings read from `/proc` now, not kept: for the unwind
    /// tables of a process sampled before the records about it are due.
    pub fn read_now(&mut self, pid: u32) -> Option<ProcessMaps> {
        symbolizer::capture(pid, &mut self.files).ok()
    }

    fn is_followed(&self, pid: u32) -> bool {
        self.processes.get(&pid).is_some_and(|held| held.followed)
    }

    /// The kernel announced `pid` (its first sample). Without records it is
    /// read from `/proc` at once; with them, once the records up to now are
    /// applied ([`Self::capture_announced`]), and only if they did not make
    /// it followed: a process forked or exec'd during the recording never is.
    pub fn announce(&mut self, pid: u32) {
        if self.track_changes {
            self.announced_now.push(pid);
        }
        if !self.following {
            self.capture(pid);
            return;
        }
        if !self.mark_sampled(pid) {
            self.announced.entry(pid).or_insert_with(monotonic_ns);
        }
    }

    /// Marks `pid` sampled if it is followed (it is then not read from
    /// `/proc`); false if it is not.
    fn mark_sampled(&mut self, pid: u32) -> bool {
        match self.processes.get_mut(&pid) {
            Some(held) if held.followed => {
                if !std::mem::replace(&mut held.sampled, true) {
                    // Its first sample: a JIT's perf map is read now, in
                    // case the process exits before the next poll.
                    self.read_perf_map(pid);
                }
                true
            }
            _ => false,
        }
    }

    /// The caller read the tracer's announcements after `at_ns`
    /// (CLOCK_MONOTONIC): every process sampled before then was announced,
    /// or its announcement was lost and counted ([`Self::follow`] asks).
    /// A followed process whose exit record is older is dropped at its exit
    /// if it was never announced: it has no sample to name. (On a
    /// fork-heavy system most processes are never sampled; holding them all
    /// until the end made the table and the memory grow with every fork.)
    pub fn announced_until(&mut self, at_ns: u64) {
        self.announced_until = at_ns;
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
            if !self.mark_sampled(pid) {
                self.capture(pid);
            }
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
    /// every followed process is read from `/proc` again ([`Self::settle`];
    /// one that has exited keeps what it has). Records keep being applied:
    /// from its next read on, a process is whole again.
    fn reread_followed(&mut self) {
        let now = Instant::now() - SETTLE_AFTER;
        for (&pid, held) in &mut self.processes {
            if std::mem::take(&mut held.followed) {
                self.unsettled.insert(pid, now);
            }
        }
    }

    /// Processes whose mappings come from the kernel's records.
    pub fn followed(&self) -> usize {
        self.processes.values().filter(|held| held.followed).count()
    }

    /// Reads the kernel's records that are due from `events` (all of them
    /// when `everything`), applies them, and reads from `/proc` the announced
    /// processes they did not make followed. When the kernel dropped records
    /// since the last call, every followed process is read from `/proc` again;
    /// returns how many records were dropped since then.
    /// `announcements_lost` reads the tracer's count of processes sampled
    /// but not announced, asked only when a process exits unannounced
    /// (any at all, and exited processes are kept from then on).
    pub fn follow(
        &mut self,
        events: &mut ProcessEvents,
        everything: bool,
        announcements_lost: impl FnOnce() -> u64,
    ) -> u64 {
        let before = events.lost();
        self.apply_checked(events.read(everything), announcements_lost);
        let lost = events.lost() - before;
        if lost > 0 {
            self.reread_followed();
        }
        self.capture_announced(events.horizon_ns());
        if lost > 0 && everything {
            // No settle comes after the last read: read them now.
            self.settle(Duration::ZERO);
        }
        lost
    }

    /// Applies the kernel's records, in time order (no announcement lost).
    pub fn apply(&mut self, changes: impl IntoIterator<Item = Timed>) {
        self.apply_checked(changes, || 0);
    }

    fn apply_checked(
        &mut self,
        changes: impl IntoIterator<Item = Timed>,
        announcements_lost: impl FnOnce() -> u64,
    ) {
        let mut announcements_lost = Some(announcements_lost);
        if !self.following {
            return;
        }
        // A snapshot read from /proc after a record already holds it.
        let newer = |held: &Held, at_ns: u64| held.captured_at.is_some_and(|at| at > at_ns);
        for Timed { at_ns, change } in changes {
            match change {
                Change::Fork { pid, parent } => {
                    if self.processes.get(&pid).is_some_and(|h| newer(h, at_ns)) {
                        continue;
                    }
                    let Some(held) = self.processes.get(&parent) else {
                        continue;
                    };
                    // The parent's list, shared until either changes it.
                    let child = Held::from_records(pid, Arc::clone(&held.maps.mappings));
                    self.processes.insert(pid, child);
                    self.unsettled.remove(&pid);
                    self.changed(pid);
                }
                Change::Exec { pid } => {
                    match self.processes.get_mut(&pid) {
                        Some(held) if newer(held, at_ns) => continue,
                        Some(held) => {
                            held.before_exec = Some(std::mem::take(&mut held.maps.mappings));
                            held.captured_at = None;
                            held.followed = true;
                            // The new image's JIT (if any) writes a map of its own.
                            held.perf_map = None;
                            held.exited = false;
                        }
                        None if self.follow_every_exec => {
                            self.processes
                                .insert(pid, Held::from_records(pid, Arc::default()));
                        }
                        None => continue,
                    }
                    self.unsettled.remove(&pid);
                    self.changed(pid);
                }
                Change::Map { pid, mapping } => {
                    let Some(held) = self.processes.get_mut(&pid) else {
                        continue;
                    };
                    if !held.followed || newer(held, at_ns) {
                        continue;
                    }
                    let mapping = symbolizer::process::mapping(pid, &mapping, &mut self.files);
                    held.maps.insert(mapping);
                    self.changed(pid);
                }
                Change::Exit { pid } => {
                    // (The old leader of a process whose other thread execs
                    // exits too, just before the exec record: the process
                    // is then taken up again by the exec, or read from
                    // /proc when announced.)
                    let unannounced = at_ns < self.announced_until
                        && !self.announcements_lost
                        && self.processes.get(&pid).is_some_and(|h| !h.sampled)
                        && !self.announced.contains_key(&pid);
                    if unannounced
                        && let Some(read) = announcements_lost.take()
                        && read() > 0
                    {
                        self.announcements_lost = true;
                    }
                    if unannounced && !self.announcements_lost {
                        self.processes.remove(&pid);
                    } else if let Some(held) = self.processes.get_mut(&pid) {
                        held.exited = true;
                    }
                    if self.track_changes {
                        self.exited.push(pid);
                    }
                }
            }
        }
    }

    /// Whether processes wait to be read again or for records to catch up
    /// with their announcement.
    pub fn has_pending(&self) -> bool {
        !self.unsettled.is_empty() || !self.announced.is_empty()
    }

    /// Captures again the processes first captured more than `after` ago
    /// (once each), to pick up the libraries mapped after they were announced;
    /// reads the perf maps of live JIT processes again when due
    /// ([`PERF_MAP_EVERY`]).
    pub fn settle(&mut self, after: Duration) {
        self.poll_perf_maps();
        let due: Vec<u32> = self
            .unsettled
            .iter()
            .filter(|(_, at)| at.elapsed() >= after)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            if self.is_followed(pid) {
                self.unsettled.remove(&pid);
                continue;
            }
            self.unsettled.remove(&pid);
            self.read_proc(pid);
        }
    }

    /// Lets samples taken in a process before its last exec (inside
    /// `execve`, or in a fork's child before it exec'd) be symbolized in the
    /// image they were taken in, where the new one leaves it room. Call
    /// before symbolizing.
    pub fn fill_before_exec(&mut self) {
        for held in self.processes.values_mut() {
            if let Some(older) = held.before_exec.take() {
                held.maps.fill_gaps(&older);
            }
        }
    }

    /// Re-captures `pids` (the processes with samples) that are still
    /// alive, and captures any not seen yet; exited ones keep their
    /// snapshots. Only these get their images from before an exec back
    /// ([`Self::fill_before_exec`]): the others have nothing to symbolize
    /// (with `-a` on a fork-heavy system, most of thousands of processes;
    /// filling them all was 8% of such a recording's CPU).
    pub fn refresh<I: IntoIterator<Item = u32>>(&mut self, pids: I) {
        for pid in pids {
            self.capture(pid);
            // A followed process is not read from /proc again; its JIT's
            // perf map is, for the code compiled since the last read (a
            // process just read from /proc had its map read then too: the
            // unchanged file is not parsed again).
            self.read_perf_map(pid);
            if let Some(held) = self.processes.get_mut(&pid)
                && let Some(older) = held.before_exec.take()
            {
                held.maps.fill_gaps(&older);
            }
        }
        self.files.prune();
    }

    pub fn get(&self, pid: u32) -> Option<&ProcessMaps> {
        self.processes.get(&pid).map(|held| &held.maps)
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
        self.processes
            .retain(|pid, _| keep.contains(pid) || process_exists(*pid));
        let held = &self.processes;
        self.unsettled.retain(|pid, _| held.contains_key(pid));
        self.files.prune();
        before - self.processes.len()
    }

    /// The identities (device, inode) of the files the processes held map.
    pub fn live_files(&self) -> std::collections::HashSet<(u32, u32, u64)> {
        self.processes
            .values()
            .flat_map(|held| held.maps.mappings.iter())
            .filter_map(|m| m.object.as_ref().map(|o| o.key))
            .collect()
    }
}

/// [`Resolve`] over the real symbolizer and the captured processes.
pub struct Resolver<'a> {
    pub symbolizer: &'a mut Symbolizer,
    pub processes: &'a ProcessTable,
    /// The Python processes, when their frames are walked.
    pub pythons: Option<&'a mut crate::python::Pythons>,
}

impl Resolve for Resolver<'_> {
    fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Symbol> {
        self.users(&[(pid, addrs)])
            .pop()
            .expect("one list per process")
    }

    fn users(&mut self, requests: &[(u32, &[u64])]) -> Vec<Vec<Symbol>> {
        // A process not held (it exited before it was read) has no mappings.
        let empty: HashMap<u32, ProcessMaps> = requests
            .iter()
            .filter(|&&(pid, _)| self.processes.get(pid).is_none())
            .map(|&(pid, _)| {
                let maps = ProcessMaps {
                    pid,
                    mappings: Arc::default(),
                };
                (pid, maps)
            })
            .collect();
        let processes: Vec<(&ProcessMaps, &[u64])> = requests
            .iter()
            .map(|&(pid, addrs)| {
                let maps = self
                    .processes
                    .get(pid)
                    .or_else(|| empty.get(&pid))
                    .expect("held, or one of the empty ones");
                (maps, addrs)
            })
            .collect();
        let perf_maps: Vec<Option<&PerfMap>> = requests
            .iter()
            .map(|&(pid, _)| self.processes.perf_map(pid))
            .collect();
        self.symbolizer
            .note_perf_map_reads(self.processes.perf_map_stats());
        self.symbolizer
            .symbolize_users_with_perf_maps(&processes, &perf_maps)
    }

    fn kernel(&mut self, addrs: &[u64]) -> Vec<Symbol> {
        self.symbolizer.symbolize_kernel(addrs)
    }

    fn python(&mut self, pid: u32, id: u64, index: u32) -> Option<crate::profile::Line> {
        self.pythons.as_deref_mut()?.line(pid, id, index)
    }

    fn mapping(&self, pid: u32, index: usize) -> Option<Mapping> {
        let mapping = self.processes.get(pid)?.mappings.get(index)?;
        // JIT code is named after the perf map its names come from, as
        // perf names it; the outputs mark its frames by that name
        // (`profile::is_perf_map`).
        // (Not a file with a build ID: an ELF file, named from its symbols.)
        let perf_map = self.processes.perf_map(pid).filter(|_| {
            mapping.may_hold_jit_code()
                && mapping.object.as_ref().is_none_or(|o| o.build_id.is_none())
        });
        Some(Mapping {
            start: mapping.start,
            end: mapping.end,
            file_offset: mapping.file_offset,
            path: match (perf_map, &mapping.object) {
                (Some(map), _) => map.path(),
                (None, Some(object)) => object.path.clone(),
                (None, None) => mapping.name.to_string(),
            },
            build_id: mapping.object.as_ref().and_then(|o| o.build_id.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use symbolizer::maps::MapEntry;

    fn map(pid: u32, start: u64, name: &str, at_ns: u64) -> Timed {
        Timed {
            at_ns,
            change: Change::Map {
                pid,
                mapping: MapEntry {
                    start,
                    end: start + 0x1000,
                    readable: true,
                    executable: true,
                    file_offset: 0,
                    dev: (0, 0),
                    inode: 0,
                    path: name.into(),
                },
            },
        }
    }

    fn exec(pid: u32, at_ns: u64) -> Timed {
        Timed {
            at_ns,
            change: Change::Exec { pid },
        }
    }

    fn fork(pid: u32, parent: u32, at_ns: u64) -> Timed {
        Timed {
            at_ns,
            change: Change::Fork { pid, parent },
        }
    }

    fn names(table: &ProcessTable, pid: u32) -> Vec<String> {
        table
            .get(pid)
            .map(|p| p.mappings.iter().map(|m| m.name.to_string()).collect())
            .unwrap_or_default()
    }

    /// A process exec'd during the recording gets its mappings from the
    /// records alone; its fork's child starts with them, then execs and
    /// starts afresh, and keeps the old image for the gaps.
    #[test]
    fn records_build_exec_fork_and_exec_again() {
        let mut table = ProcessTable::default();
        table.follow_records(true);
        table.apply([
            exec(10, 1),
            map(10, 0x10000, "//anon-parent-exe", 2),
            map(10, 0x20000, "//anon-parent-lib", 3),
            fork(11, 10, 4),
            exec(11, 5),
            map(11, 0x30000, "//anon-child-exe", 6),
            // Another process's mapping, never announced: not held.
            map(99, 0x40000, "//anon-other", 7),
        ]);
        assert_eq!(
            names(&table, 10),
            ["//anon-parent-exe", "//anon-parent-lib"]
        );
        assert_eq!(names(&table, 11), ["//anon-child-exe"]);
        assert!(table.get(99).is_none());
        assert_eq!(table.followed(), 2);
        table.fill_before_exec();
        assert_eq!(
            names(&table, 11),
            ["//anon-parent-exe", "//anon-parent-lib", "//anon-child-exe"]
        );
        // Followed processes are never read from /proc: an announcement of
        // one only marks it sampled (pid 10 does not exist, a read would
        // fail and be counted as a capture of nothing; the snapshot must
        // stay).
        table.announce(10);
        table.capture_announced(u64::MAX);
        assert_eq!(
            names(&table, 10),
            ["//anon-parent-exe", "//anon-parent-lib"]
        );
    }

    fn exit(pid: u32, at_ns: u64) -> Timed {
        Timed {
            at_ns,
            change: Change::Exit { pid },
        }
    }

    /// A followed process that exits never announced (never sampled) is
    /// dropped at its exit record. Kept: one announced once followed, one
    /// announced before its records were applied, and one that exits after
    /// the time announcements are known complete up to.
    #[test]
    fn unannounced_processes_are_dropped_at_their_exit() {
        let mut table = ProcessTable::default();
        table.follow_records(true);
        table.announced_until(100);
        table.announce(32);
        table.apply([
            exec(30, 1),
            map(30, 0x10000, "//anon-a", 2),
            exec(31, 3),
            map(31, 0x10000, "//anon-b", 4),
            exec(32, 5),
            map(32, 0x10000, "//anon-c", 6),
            exec(33, 7),
            map(33, 0x10000, "//anon-d", 8),
            fork(34, 31, 9),
        ]);
        table.announce(31);
        table.apply([
            exit(30, 10),
            exit(31, 11),
            exit(32, 12),
            exit(34, 13),
            exit(33, 200),
        ]);
        assert!(table.get(30).is_none(), "never announced");
        assert!(table.get(34).is_none(), "a fork's child never announced");
        assert_eq!(names(&table, 31), ["//anon-b"]);
        assert_eq!(names(&table, 32), ["//anon-c"]);
        assert_eq!(names(&table, 33), ["//anon-d"]);
        // 32 is followed: its announcement is taken without reading /proc
        // (there is no pid 32 to read), and it stays after another exit.
        table.capture_announced(u64::MAX);
        table.announced_until(300);
        table.apply([exit(32, 250)]);
        assert_eq!(names(&table, 32), ["//anon-c"]);
        assert_eq!(table.followed(), 3);
        // The tracer lost an announcement: no exit drops a process any more.
        let mut asked = 0;
        table.apply_checked(
            [
                exec(35, 260),
                map(35, 0x10000, "//anon-e", 261),
                exit(35, 262),
            ],
            || {
                asked += 1;
                1
            },
        );
        assert_eq!(asked, 1);
        table.apply([exec(36, 270), exit(36, 271)]);
        assert!(table.get(35).is_some() && table.get(36).is_some());
    }

    /// Without `every_exec` (per-PID and command recordings), only the
    /// descendants of processes already held are taken up.
    #[test]
    fn only_descendants_are_followed_when_not_every_exec() {
        let mut table = ProcessTable::default();
        table.follow_records(false);
        table.apply([exec(20, 1), map(20, 0x10000, "//anon", 2), fork(21, 20, 3)]);
        assert!(table.get(20).is_none());
        assert!(table.get(21).is_none());
        assert_eq!(table.followed(), 0);
    }

    /// A snapshot read from /proc at time T already holds every record
    /// before T: those are skipped, later ones are applied.
    #[test]
    fn records_older_than_a_snapshot_are_skipped() {
        let mut table = ProcessTable::default();
        table.follow_records(true);
        let pid = std::process::id();
        table.capture(pid);
        let own = names(&table, pid).len();
        assert!(own > 0);
        let captured = table.processes[&pid]
            .captured_at
            .expect("captured while following");
        table.apply([
            exec(pid, captured - 1),
            map(pid, 0x1000, "//anon-new", captured + 1),
        ]);
        let now = names(&table, pid);
        assert_eq!(now.len(), own + 1, "{now:?}");
        assert!(now.contains(&"//anon-new".to_string()));
    }
}

//! The kernel's own account of processes forking, exec'ing and mapping code,
//! read from one dummy software perf event per CPU (the "tracking" event perf
//! itself records with): `FORK`, `COMM` with the exec flag, and `MMAP2` for
//! every executable mapping, each written synchronously as it happens.
//!
//! With it the process manager knows a new process's mappings without reading
//! `/proc/PID/maps` while the process lives. On a fork-heavy workload that
//! read was most of the profiler's CPU during the recording, and it still
//! came too late for the processes that exited within a millisecond (16% of
//! the children of `ovh_fork`, whose frames stayed addresses).
//!
//! The buffers are per CPU (the kernel refuses to merge CPU-bound events into
//! one buffer), so records are put back in time order (CLOCK_MONOTONIC) before
//! they are applied: a child's exec, read from one CPU's buffer, must not be
//! applied before its fork, read from another's. Each buffer's records are
//! kept in time order as read (they nearly always come so), and the buffers'
//! queues merged: sorting them all at each read was a third of reading them
//! on a fork-heavy system. A record is applied once it is older than
//! [`SETTLE_NS`] at the start of a read, so that no record still being
//! written on another CPU can be older than it.

mod records;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use perf_event::{Builder, Clock, ReadFormat, SampleFlag, Sampler, events::Software};

use records::Parsed;
use symbolizer::maps::MapEntry;

/// What a record says about a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `pid` was forked from `parent`: it starts with the parent's mappings.
    Fork { pid: u32, parent: u32 },
    /// `pid` exec'd: its mappings start again from nothing.
    Exec { pid: u32 },
    /// `pid` mapped executable memory (a file, `[vdso]`, or anonymous code),
    /// as a line of `/proc/PID/maps` would say it (the path interned: one
    /// string for all the records of a file).
    Map { pid: u32, mapping: MapEntry },
    /// `pid`'s main thread exited.
    Exit { pid: u32 },
}

/// A change and when it happened (CLOCK_MONOTONIC, nanoseconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    pub at_ns: u64,
    pub change: Change,
}

/// How old a record must be to be applied before the last read.
pub const SETTLE_NS: u64 = 20_000_000;

/// Bytes of ring buffer per CPU. A fork-heavy workload (`ovh_fork`, ~1 500
/// fork+exec'd children a second on 2 CPUs) writes ~10 000 records (~1 MB)
/// a second in all (measured with `perf record -e dummy -a`); `record` reads
/// every 100 ms while records come (the agent always), and as soon as a
/// buffer is half full, so 256 KiB per CPU holds ~5 reads' worth. Any
/// overflow is counted, never silent.
pub const BUFFER_BYTES: usize = 256 * 1024;

/// CLOCK_MONOTONIC now, in nanoseconds: the clock the records carry.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The tracking events, one per CPU, and the records read but not yet due.
pub struct ProcessEvents {
    samplers: Vec<Sampler>,
    /// Per buffer, the records read but not yet due, in time order.
    pending: Vec<VecDeque<Timed>>,
    paths: records::Paths,
    /// Records dropped, by the LOST records read.
    lost_records: u64,
    /// Records dropped, by the kernel's per-event count.
    lost: u64,
    /// Every record up to this time (CLOCK_MONOTONIC ns) has been returned.
    horizon_ns: u64,
    records_read: u64,
}

impl ProcessEvents {
    /// Opens and enables a tracking event on each of `cpus`.
    pub fn open(cpus: &[u32]) -> io::Result<Self> {
        Self::open_with(cpus, BUFFER_BYTES)
    }

    /// As [`Self::open`], with `buffer_bytes` of ring buffer per CPU.
    pub fn open_with(cpus: &[u32], buffer_bytes: usize) -> io::Result<Self> {
        let mut samplers = Vec::with_capacity(cpus.len());
        for &cpu in cpus {
            let mut builder = Builder::new(Software::DUMMY);
            builder
                .any_pid()
                .one_cpu(cpu as usize)
                .exclude_kernel(false)
                .mmap(true)
                .mmap2(true)
                .comm(true)
                .comm_exec(true)
                .task(true)
                .sample_id_all(true)
                .sample(SampleFlag::TID)
                .sample(SampleFlag::TIME)
                .clockid(Clock::MONOTONIC)
                // `record` sleeps for up to 800 ms when nothing happens; a
                // burst of records then wakes it before the buffer fills.
                // (Half the buffer is also the kernel's default.)
                .wakeup_watermark(buffer_bytes / 2)
                .enabled(true);
            // The kernel's count of records it could not write (6.0+), read
            // at the end: a LOST record only appears once space frees up, and
            // not at all if nothing is written after. Older kernels refuse
            // the flag; the LOST records are all there is then.
            let counter = match builder.clone().read_format(ReadFormat::LOST).build() {
                Ok(counter) => counter,
                Err(_) => builder.build()?,
            };
            samplers.push(counter.sampled(buffer_bytes)?);
        }
        Ok(Self {
            pending: vec![VecDeque::new(); samplers.len()],
            samplers,
            paths: records::Paths::default(),
            lost_records: 0,
            lost: 0,
            horizon_ns: 0,
            records_read: 0,
        })
    }

    /// The buffers' file descriptors: readable once a buffer is half full.
    pub fn raw_fds(&self) -> Vec<RawFd> {
        self.samplers.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// Records read so far, applied or pending.
    pub fn records_read(&self) -> u64 {
        self.records_read
    }

    /// Records the kernel dropped because a buffer was full. Any at all means
    /// the mappings built from the records may be incomplete.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Every record written up to this time (CLOCK_MONOTONIC ns) has been
    /// returned by [`Self::read`].
    pub fn horizon_ns(&self) -> u64 {
        self.horizon_ns
    }

    /// Stops the kernel writing more records (before the last [`Self::read`]).
    pub fn disable(&mut self) {
        for sampler in &mut self.samplers {
            let _ = sampler.disable();
        }
    }

    /// Reads every buffer and returns, in time order, the changes that are
    /// due: older than [`SETTLE_NS`], or all of them when `everything` (after
    /// [`Self::disable`]).
    pub fn read(&mut self, everything: bool) -> Due<'_> {
        let horizon = monotonic_ns().saturating_sub(SETTLE_NS);
        for (sampler, queue) in self.samplers.iter_mut().zip(&mut self.pending) {
            while let Some(record) = sampler.next_record() {
                self.records_read += 1;
                let body = record.to_contiguous();
                match records::parse(record.ty(), record.misc(), &body, &mut self.paths) {
                    Some(Parsed::Change(timed)) => in_order(queue, timed),
                    Some(Parsed::Lost(n)) => self.lost_records += n,
                    // Other kinds (exit, throttle) say nothing about mappings.
                    None => {}
                }
            }
        }
        // Reading a CPU's counter costs an interrupt of that CPU and a wait
        // for it (a fifth of the profiler's CPU when done at every read):
        // while recording the LOST records tell (they follow a loss at the
        // next write); at the end the counters tell what no record did.
        let counted: u64 = if everything {
            self.samplers
                .iter_mut()
                .filter_map(|s| s.as_counter_mut().read_full().ok()?.lost())
                .sum()
        } else {
            0
        };
        self.lost = self.lost.max(counted).max(self.lost_records);
        self.horizon_ns = if everything { u64::MAX } else { horizon };
        Due::new(&mut self.pending, self.horizon_ns)
    }
}

/// Adds `timed` to a buffer's queue, after every record not newer. A record
/// older than the last one read from the same buffer is rare (one written
/// from an interrupt between another's timestamp and its write).
fn in_order(queue: &mut VecDeque<Timed>, timed: Timed) {
    if queue.back().is_none_or(|last| last.at_ns <= timed.at_ns) {
        queue.push_back(timed);
    } else {
        let at = queue.partition_point(|t| t.at_ns <= timed.at_ns);
        queue.insert(at, timed);
    }
}

/// The records due, oldest first, taken from the front of the buffers'
/// queues (the lowest buffer first on equal times); the newer ones stay for
/// the next read.
pub struct Due<'a> {
    queues: &'a mut [VecDeque<Timed>],
    until_ns: u64,
    /// The due fronts, as (time, queue): one entry per CPU at most.
    fronts: BinaryHeap<Reverse<(u64, usize)>>,
}

impl<'a> Due<'a> {
    fn new(queues: &'a mut [VecDeque<Timed>], until_ns: u64) -> Self {
        let mut due = Due {
            queues,
            until_ns,
            fronts: BinaryHeap::new(),
        };
        for index in 0..due.queues.len() {
            due.push_front_of(index);
        }
        due
    }

    fn push_front_of(&mut self, index: usize) {
        if let Some(front) = self.queues[index].front()
            && front.at_ns <= self.until_ns
        {
            self.fronts.push(Reverse((front.at_ns, index)));
        }
    }
}

/// As a drain: the due records not taken are dropped with it.
impl Drop for Due<'_> {
    fn drop(&mut self) {
        self.for_each(drop);
    }
}

impl Iterator for Due<'_> {
    type Item = Timed;

    fn next(&mut self) -> Option<Timed> {
        let Reverse((_, index)) = self.fronts.pop()?;
        let timed = self.queues[index].pop_front();
        self.push_front_of(index);
        timed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_at(pid: u32, at_ns: u64) -> Timed {
        Timed {
            at_ns,
            change: Change::Exec { pid },
        }
    }

    /// Two buffers' records come out merged in time order (the first
    /// buffer's first on equal times), a late one read out of order put in
    /// its place, and those after the horizon kept for the next read.
    #[test]
    fn buffers_are_merged_in_time_order() {
        let mut queues = vec![VecDeque::new(), VecDeque::new()];
        for (queue, pid, at) in [(0, 1, 10), (0, 2, 30), (0, 3, 20), (0, 4, 50), (1, 5, 5)] {
            in_order(&mut queues[queue], exec_at(pid, at));
        }
        for (pid, at) in [(6, 20), (7, 40), (8, 45)] {
            in_order(&mut queues[1], exec_at(pid, at));
        }
        let pids = |due: Due| -> Vec<u32> {
            due.map(|t| match t.change {
                Change::Exec { pid } => pid,
                _ => unreachable!(),
            })
            .collect()
        };
        assert_eq!(pids(Due::new(&mut queues, 40)), [5, 1, 3, 6, 2, 7]);
        assert_eq!(pids(Due::new(&mut queues, u64::MAX)), [8, 4]);
        // Due but not taken: gone all the same, as from a drain.
        in_order(&mut queues[0], exec_at(9, 60));
        in_order(&mut queues[1], exec_at(10, 70));
        drop(Due::new(&mut queues, 65));
        assert_eq!(pids(Due::new(&mut queues, u64::MAX)), [10]);
        assert!(queues.iter().all(VecDeque::is_empty));
    }

    fn root_or_skip() -> bool {
        crate::test_support::root_or_skip("opening system-wide perf events")
    }

    /// The CPUs to follow, as `record` and the agent find them.
    fn online() -> Vec<u32> {
        aya::util::online_cpus().expect("the online CPUs")
    }

    /// A child that forks and execs `true` is seen forking, exec'ing,
    /// mapping `true` and libc, and exiting, in that order, even though the
    /// records come from different CPUs' buffers.
    #[test]
    fn sees_a_fork_an_exec_and_its_mappings_in_order() {
        if !root_or_skip() {
            return;
        }
        let cpus = online();
        let mut events = ProcessEvents::open(&cpus).expect("open tracking events");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "/bin/true; exit 0"])
            .spawn()
            .unwrap();
        let sh = child.id();
        child.wait().unwrap();
        events.disable();
        let changes: Vec<Timed> = events.read(true).collect();
        assert_eq!(events.lost(), 0);
        let forked: Vec<u32> = changes
            .iter()
            .filter_map(|t| match t.change {
                Change::Fork { pid, parent } if parent == sh => Some(pid),
                _ => None,
            })
            .collect();
        assert_eq!(forked.len(), 1, "sh forks once for /bin/true: {changes:#?}");
        let pid = forked[0];
        let of_child: Vec<&Change> = changes
            .iter()
            .map(|t| &t.change)
            .filter(|c| match c {
                Change::Fork { pid: p, .. }
                | Change::Exec { pid: p }
                | Change::Map { pid: p, .. }
                | Change::Exit { pid: p } => *p == pid,
            })
            .collect();
        assert!(matches!(of_child[0], Change::Fork { .. }), "{of_child:#?}");
        assert!(
            matches!(of_child.last(), Some(Change::Exit { .. })),
            "the child's exit comes last: {of_child:#?}"
        );
        let exec_at = of_child
            .iter()
            .position(|c| matches!(c, Change::Exec { .. }))
            .unwrap_or_else(|| panic!("no exec of the child: {of_child:#?}"));
        let mapped: Vec<&str> = of_child[exec_at..]
            .iter()
            .filter_map(|c| match c {
                Change::Map { mapping, .. } => Some(&*mapping.path),
                _ => None,
            })
            .collect();
        assert!(mapped.iter().any(|p| p.ends_with("/true")), "{mapped:?}");
        assert!(mapped.iter().any(|p| p.contains("libc.so")), "{mapped:?}");
        assert!(mapped.contains(&"[vdso]"), "{mapped:?}");
        let times: Vec<u64> = changes.iter().map(|t| t.at_ns).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order");
    }

    /// A buffer too small for what happens is counted, not silent.
    #[test]
    fn dropped_records_are_counted() {
        if !root_or_skip() {
            return;
        }
        let cpus = online();
        let mut events = ProcessEvents::open_with(&cpus, 4096).expect("open tracking events");
        let mut table = crate::processes::ProcessTable::default();
        table.follow_records(true);
        let pid = std::process::id();
        table.apply([Timed {
            at_ns: 0,
            change: Change::Exec { pid },
        }]);
        assert_eq!(table.followed(), 1);
        for _ in 0..40 {
            std::process::Command::new("/bin/true").status().unwrap();
        }
        events.disable();
        let lost = table.follow(&mut events, true, || 0);
        assert!(
            lost > 0 && events.lost() == lost,
            "40 execs of /bin/true in a page of buffer per CPU: {lost} lost"
        );
        // What was built from the records may have gaps: read again from /proc.
        assert!(
            table.get(pid).is_some_and(|p| !p.mappings.is_empty()),
            "a followed process was not read from /proc again after records were lost"
        );
        assert_eq!(table.followed(), 1, "read again, it is followed again");
    }

    /// `record` sleeps up to 800 ms while nothing happens: a burst of
    /// records must wake it (the fd readable) well before its buffer is full.
    #[test]
    fn a_half_full_buffer_makes_its_fd_readable() {
        if !root_or_skip() {
            return;
        }
        let cpus = online();
        let mut events = ProcessEvents::open_with(&cpus, 64 * 1024).expect("open tracking events");
        let readable = |events: &ProcessEvents| {
            let mut fds: Vec<libc::pollfd> = events
                .raw_fds()
                .into_iter()
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: a valid array of pollfds, of the length given.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, 0) };
            n > 0
        };
        std::process::Command::new("/bin/true").status().unwrap();
        assert!(
            !readable(&events),
            "readable after one exec: an idle `record` would wake for every record"
        );
        let mut execs = 0;
        while !readable(&events) && execs < 2000 {
            std::process::Command::new("/bin/true").status().unwrap();
            execs += 1;
        }
        // The kernel's lost count is taken at a read.
        events.read(true);
        assert!(
            execs < 2000 && events.lost() == 0,
            "not readable after {execs} execs, or records lost ({}) first",
            events.lost()
        );
    }

    #[test]
    fn records_newer_than_the_settle_time_wait_for_the_next_read() {
        if !root_or_skip() {
            return;
        }
        let mut events = ProcessEvents::open(&[0]).expect("open tracking event");
        events.pending[0].push_back(Timed {
            at_ns: monotonic_ns() + 1_000_000_000,
            change: Change::Exec { pid: 1 },
        });
        assert!(
            events
                .read(false)
                .all(|t| t.change != Change::Exec { pid: 1 })
        );
        events.disable();
        assert!(
            events
                .read(true)
                .any(|t| t.change == Change::Exec { pid: 1 })
        );
    }
}

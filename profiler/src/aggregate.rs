//! Turns a [`RawProfile`] (addresses) into a [`Profile`] (named locations),
//! asking a [`Resolve`] for names in one batch per process and one for the
//! kernel. Return addresses (every frame but the innermost) are looked up one
//! byte earlier, so a call at the end of a function is not blamed on the next.

use std::collections::hash_map::Entry;

use foldhash::HashMap;

use profiler_common::python;
use symbolizer::Symbol;

use crate::{
    phases,
    profile::{FrameKind, Line, Location, Mapping, Meta, Profile, Sample, ThreadState},
    raw::{RawProfile, RawStack, unwind_end_name, unwind_end_of},
};

/// Names for addresses; the real one wraps the symbolizer and the process table.
pub trait Resolve {
    /// Names for user addresses of process `pid`, one per address.
    fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Symbol>;
    /// Names for the user addresses of several processes, one list per
    /// process: where looking up many processes' addresses together is
    /// cheaper than one by one.
    fn users(&mut self, requests: &[(u32, &[u64])]) -> Vec<Vec<Symbol>> {
        requests
            .iter()
            .map(|&(pid, addrs)| self.user(pid, addrs))
            .collect()
    }
    /// Names for kernel addresses, one per address.
    fn kernel(&mut self, addrs: &[u64]) -> Vec<Symbol>;
    /// The mapping that `Symbol::mapping` indexes, for user symbols of `pid`.
    fn mapping(&self, pid: u32, index: usize) -> Option<Mapping>;
    /// The Python frame of code `id` (`python::code_id`) of `pid` at
    /// instruction `index` (`python::NO_INDEX`: unknown): function, file
    /// and line; `None` if the code object could not be read.
    fn python(&mut self, _pid: u32, _id: u64, _index: u32) -> Option<Line> {
        None
    }
}

/// How samples are turned into a profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggregateOptions {
    /// Keep the interpreter's eval-loop frames under the Python frames
    /// they run (by default the Python frames take their place).
    pub interpreter_frames: bool,
}

/// The frame name of Python frames lost to `cause` (`python::lost`).
fn python_lost_name(cause: u32) -> &'static str {
    use profiler_common::python::lost;
    match cause {
        lost::NO_THREAD => "[python frames lost: thread state not found]",
        lost::READ_FAULT => "[python frames lost: interpreter memory not readable]",
        lost::DEPTH => "[python frames lost: depth limit]",
        _ => "[python frames lost]",
    }
}

/// An address space: a process's, or the kernel's (`None`).
type Space = Option<u32>;

/// The address to look up for the frame at `depth` (0 = innermost).
fn lookup_address(addr: u64, depth: usize) -> u64 {
    if depth == 0 {
        addr
    } else {
        addr.saturating_sub(1)
    }
}

/// `RawStack::Lost::errno` of the marker stack that stands for the stacks
/// of a window beyond the agent's `max_stacks` (not a kernel errno).
pub const ERRNO_OVER_STACK_CAP: i32 = 100_000;

fn lost_stack_name(side: &str, errno: i32) -> String {
    match -errno {
        profiler_common::STACK_ERROR_BEFORE_START => {
            "[stack unknown: off CPU since before the recording]".to_string()
        }
        e if e == -ERRNO_OVER_STACK_CAP => {
            "[stacks over the per-window cap (max_stacks)]".to_string()
        }
        _ => lost_errno_name(side, errno),
    }
}

fn lost_errno_name(side: &str, errno: i32) -> String {
    match errno {
        7 => format!("[lost {side} stack: stack map full]"),
        _ => format!("[lost {side} stack: error {errno}]"),
    }
}

/// What makes mappings of different processes one: the same segment of the
/// same file, told by its build ID. A file without one is never shared (a
/// path alone may name different versions of a file), so its key holds the
/// process, and its address: anonymous regions of one size (a JIT's code
/// pages) all have offset 0, and were one mapping whose locations, found
/// by offset, one region's address took from another's.
#[derive(PartialEq, Eq, Hash)]
struct SegmentKey {
    path: String,
    build_id: Option<String>,
    file_offset: u64,
    len: u64,
    pid: Option<u32>,
    start: Option<u64>,
}

#[derive(Default)]
struct Builder {
    profile: Profile,
    locations: HashMap<(Space, u64), usize>,
    special: HashMap<String, usize>,
    /// A process's mapping (pid, index in its maps): the profile's mapping
    /// and where the process mapped it.
    mappings: HashMap<(u32, usize), Option<(usize, u64)>>,
    segments: HashMap<SegmentKey, usize>,
    /// User locations by the profile's mapping and the offset looked up in
    /// it: one location for the code of a shared file, whichever processes
    /// ran it. With many short-lived processes of one program (a build, a
    /// shell script) each maps it at an address of its own; per process and
    /// address there were 14 000 locations and 6 500 mappings in a 3.5 s
    /// recording at 999 Hz, for 3 900 and 4 so.
    in_mappings: HashMap<(usize, u64), usize>,
    /// Python frames by (process, code object, instruction), and by what
    /// they are named: one location per function, file and line.
    python: HashMap<(u32, u64, u32), usize>,
    python_lines: HashMap<Line, usize>,
}

impl Builder {
    fn special(&mut self, name: String) -> usize {
        if let Some(&index) = self.special.get(&name) {
            return index;
        }
        let index = self.profile.locations.len();
        self.profile.locations.push(Location {
            kind: FrameKind::Special,
            address: 0,
            mapping: None,
            lines: vec![Line {
                function: name.clone(),
                file: None,
                line: None,
            }],
        });
        self.special.insert(name, index);
        index
    }

    /// The location of a Python frame.
    fn python(&mut self, resolver: &mut dyn Resolve, pid: u32, code: u64, index: u32) -> usize {
        if let Some(&known) = self.python.get(&(pid, code, index)) {
            return known;
        }
        let location = match resolver.python(pid, code, index) {
            Some(line) => match self.python_lines.get(&line) {
                Some(&known) => known,
                None => {
                    let at = self.profile.locations.len();
                    self.profile.locations.push(Location {
                        kind: FrameKind::Python,
                        address: code,
                        mapping: None,
                        lines: vec![line.clone()],
                    });
                    self.python_lines.insert(line, at);
                    at
                }
            },
            // Data, not an error: the code object is known by its id.
            None => self.special(format!("[python code {code:#x}]")),
        };
        self.python.insert((pid, code, index), location);
        location
    }

    /// The profile's mapping for mapping `index` of process `pid`, and the
    /// address where `pid` mapped it.
    fn mapping(&mut self, resolver: &dyn Resolve, pid: u32, index: usize) -> Option<(usize, u64)> {
        if let Some(&found) = self.mappings.get(&(pid, index)) {
            return found;
        }
        let found = resolver.mapping(pid, index).map(|mapping| {
            let Mapping {
                start,
                end,
                file_offset,
                path,
                build_id,
            } = mapping;
            let key = SegmentKey {
                pid: build_id.is_none().then_some(pid),
                start: build_id.is_none().then_some(start),
                path,
                build_id,
                file_offset,
                len: end.saturating_sub(start),
            };
            let m = match self.segments.entry(key) {
                Entry::Occupied(known) => *known.get(),
                Entry::Vacant(new) => {
                    self.profile.mappings.push(Mapping {
                        start,
                        end,
                        file_offset,
                        path: new.key().path.clone(),
                        build_id: new.key().build_id.clone(),
                    });
                    *new.insert(self.profile.mappings.len() - 1)
                }
            };
            (m, start)
        });
        self.mappings.insert((pid, index), found);
        found
    }

    fn add_symbols(
        &mut self,
        resolver: &dyn Resolve,
        space: Space,
        lookups: &[(u64, u64)],
        symbols: Vec<Symbol>,
    ) {
        for (&(lookup, address), symbol) in lookups.iter().zip(symbols) {
            let (mapping, address) = match (space, symbol.mapping) {
                (Some(pid), Some(index)) => match self.mapping(resolver, pid, index) {
                    Some((m, start)) => {
                        let key = (m, lookup.wrapping_sub(start));
                        if let Some(&known) = self.in_mappings.get(&key) {
                            self.locations.insert((space, lookup), known);
                            continue;
                        }
                        self.in_mappings.insert(key, self.profile.locations.len());
                        // As an address where the profile's mapping is (the
                        // first process's), so that address and mapping agree.
                        let shared_start = self.profile.mappings[m].start;
                        (
                            Some(m),
                            shared_start.wrapping_add(address.wrapping_sub(start)),
                        )
                    }
                    None => (None, address),
                },
                _ => (None, address),
            };
            let index = self.profile.locations.len();
            self.profile.locations.push(Location {
                kind: if space.is_some() {
                    FrameKind::User
                } else {
                    FrameKind::Kernel
                },
                address,
                mapping,
                lines: symbol
                    .frames
                    .iter()
                    .map(|f| Line {
                        function: f.function.clone(),
                        file: f.file.clone(),
                        line: f.line,
                    })
                    .collect(),
            });
            self.locations.insert((space, lookup), index);
        }
    }
}

/// Unique lookup addresses of one stack side, with the first sampled address for each.
fn collect(stack: &RawStack, into: &mut HashMap<u64, u64>, user: bool) {
    if let RawStack::Frames(frames) = stack {
        for (depth, &addr) in frames.iter().enumerate() {
            if user && (unwind_end_of(addr).is_some() || python::parse(addr).is_some()) {
                continue;
            }
            into.entry(lookup_address(addr, depth)).or_insert(addr);
        }
    }
}

fn sorted(map: HashMap<u64, u64>) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = map.into_iter().collect();
    v.sort_unstable();
    v
}

pub fn aggregate(raw: &RawProfile, resolver: &mut dyn Resolve, meta: Meta) -> Profile {
    aggregate_with(raw, resolver, meta, &AggregateOptions::default())
}

pub fn aggregate_with(
    raw: &RawProfile,
    resolver: &mut dyn Resolve,
    meta: Meta,
    options: &AggregateOptions,
) -> Profile {
    let mut builder = Builder::default();
    builder.profile.meta = meta;

    let mut user: HashMap<u32, HashMap<u64, u64>> = HashMap::default();
    let mut kernel: HashMap<u64, u64> = HashMap::default();
    for sample in &raw.samples {
        collect(
            &sample.user_stack,
            user.entry(sample.tgid).or_default(),
            true,
        );
        collect(&sample.kernel_stack, &mut kernel, false);
    }
    // Sized up front: with thousands of short-lived processes every map
    // below grows to thousands of entries, and growing them step by step
    // (rehashing into fresh, page-faulting memory) showed as ~4% of a
    // 999 Hz fork-heavy recording's CPU.
    let user_lookups = user.values().map(HashMap::len).sum::<usize>();
    let lookups = kernel.len() + user_lookups;
    builder.locations.reserve(lookups);
    builder.profile.locations.reserve(lookups);
    builder.in_mappings.reserve(user_lookups);
    // At least one mapping per process with user frames.
    builder.mappings.reserve(user.len());
    let kernel = sorted(kernel);
    phases::mark("aggregate:collect");
    if !kernel.is_empty() {
        let addrs: Vec<u64> = kernel.iter().map(|&(lookup, _)| lookup).collect();
        let symbols = resolver.kernel(&addrs);
        builder.add_symbols(resolver, None, &kernel, symbols);
    }
    let mut user: Vec<(u32, Vec<(u64, u64)>)> = user
        .into_iter()
        .map(|(pid, lookups)| (pid, sorted(lookups)))
        .filter(|(_, lookups)| !lookups.is_empty())
        .collect();
    user.sort_unstable_by_key(|&(pid, _)| pid);
    let addrs: Vec<Vec<u64>> = user
        .iter()
        .map(|(_, lookups)| lookups.iter().map(|&(lookup, _)| lookup).collect())
        .collect();
    let requests: Vec<(u32, &[u64])> = user
        .iter()
        .zip(&addrs)
        .map(|((pid, _), addrs)| (*pid, addrs.as_slice()))
        .collect();
    phases::mark("aggregate:kernel");
    let symbols = resolver.users(&requests);
    phases::mark("aggregate:users");
    for ((pid, lookups), symbols) in user.iter().zip(symbols) {
        builder.add_symbols(resolver, Some(*pid), lookups, symbols);
    }
    phases::mark("aggregate:locations");

    let period = builder.profile.period_nanos();
    type MergeKey = (u32, u32, String, ThreadState, Vec<usize>);
    let mut merged: HashMap<MergeKey, (u64, u64)> =
        HashMap::with_capacity_and_hasher(raw.samples.len(), Default::default());
    for sample in &raw.samples {
        let mut locations = Vec::new();
        if let Some(marker) = sample.state.marker_frame() {
            locations.push(builder.special(marker.to_string()));
        }
        for (stack, space, side) in [
            (&sample.kernel_stack, None, "kernel"),
            (&sample.user_stack, Some(sample.tgid), "user"),
        ] {
            match stack {
                RawStack::Frames(frames) => {
                    // The kernel stores an eval-loop frame right after the
                    // Python frames it runs.
                    let mut after_python = false;
                    for (depth, &addr) in frames.iter().enumerate() {
                        if let Some(end) = space.and(unwind_end_of(addr)) {
                            locations.push(builder.special(unwind_end_name(end).to_string()));
                            continue;
                        }
                        if space.is_some()
                            && let Some((code, index)) = python::parse(addr)
                        {
                            after_python = true;
                            locations.push(if code == 0 {
                                builder.special(python_lost_name(index).to_string())
                            } else {
                                builder.python(resolver, sample.tgid, code, index)
                            });
                            continue;
                        }
                        if std::mem::take(&mut after_python) && !options.interpreter_frames {
                            continue;
                        }
                        locations.push(builder.locations[&(space, lookup_address(addr, depth))]);
                    }
                }
                RawStack::Absent => {}
                RawStack::Lost { errno } => {
                    locations.push(builder.special(lost_stack_name(side, *errno)))
                }
            }
        }
        let nanos = match sample.state {
            ThreadState::OnCpu => sample.count.saturating_mul(period),
            _ => sample.nanos,
        };
        let entry = merged
            .entry((
                sample.tgid,
                sample.tid,
                sample.comm.clone(),
                sample.state,
                locations,
            ))
            .or_default();
        entry.0 += sample.count;
        entry.1 += nanos;
    }
    let mut samples: Vec<Sample> = merged
        .into_iter()
        .map(
            |((pid, tid, comm, state, locations), (count, nanos))| Sample {
                pid,
                tid,
                comm,
                locations,
                count,
                nanos,
                state,
            },
        )
        .collect();
    samples.sort_by(|a, b| {
        (a.pid, a.tid, &a.comm, a.state, &a.locations).cmp(&(
            b.pid,
            b.tid,
            &b.comm,
            b.state,
            &b.locations,
        ))
    });
    builder.profile.samples = samples;
    phases::mark("aggregate:merge");
    builder.profile
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawSample;
    use symbolizer::Frame;

    /// Names every address `fn_<hex>`; records what it was asked.
    #[derive(Default)]
    struct FakeResolver {
        user_calls: Vec<(u32, Vec<u64>)>,
        kernel_calls: Vec<Vec<u64>>,
        /// Every process maps one file (with a build ID) at `pid << 16`,
        /// and names are of offsets in it; otherwise each has a file of its own.
        one_file: bool,
    }

    fn named(prefix: &str, addr: u64, mapping: Option<usize>) -> Symbol {
        Symbol {
            frames: [Frame {
                function: format!("{prefix}{addr:x}"),
                file: None,
                line: None,
            }]
            .into(),
            symbolized: true,
            mapping,
        }
    }

    impl Resolve for FakeResolver {
        fn user(&mut self, pid: u32, addrs: &[u64]) -> Vec<Symbol> {
            self.user_calls.push((pid, addrs.to_vec()));
            let base = if self.one_file {
                u64::from(pid) << 16
            } else {
                0
            };
            addrs
                .iter()
                .map(|&a| named("u", a - base, Some(0)))
                .collect()
        }
        fn kernel(&mut self, addrs: &[u64]) -> Vec<Symbol> {
            self.kernel_calls.push(addrs.to_vec());
            addrs.iter().map(|&a| named("k", a, None)).collect()
        }
        fn mapping(&self, pid: u32, _index: usize) -> Option<Mapping> {
            if self.one_file {
                let start = u64::from(pid) << 16;
                return Some(Mapping {
                    start,
                    end: start + 0x1000,
                    file_offset: 0x2000,
                    path: "/bin/app".into(),
                    build_id: Some("ab12".into()),
                });
            }
            Some(Mapping {
                start: 0,
                end: 0x1000,
                file_offset: 0,
                path: format!("/bin/p{pid}"),
                build_id: None,
            })
        }
    }

    /// One process with two anonymous regions of one size (a JIT's code
    /// pages), at 0x10000 and 0x20000; names are of addresses.
    struct TwoRegions;

    impl Resolve for TwoRegions {
        fn user(&mut self, _pid: u32, addrs: &[u64]) -> Vec<Symbol> {
            addrs
                .iter()
                .map(|&a| named("jit_", a, Some(usize::from(a >= 0x20000))))
                .collect()
        }
        fn kernel(&mut self, addrs: &[u64]) -> Vec<Symbol> {
            addrs.iter().map(|&a| named("k", a, None)).collect()
        }
        fn mapping(&self, _pid: u32, index: usize) -> Option<Mapping> {
            let start = 0x10000 * (index as u64 + 1);
            Some(Mapping {
                start,
                end: start + 0x1000,
                file_offset: 0,
                path: "/tmp/perf-7.map".into(),
                build_id: None,
            })
        }
    }

    /// The same offset in two such regions is two locations, each with its
    /// own name: the regions are not one mapping.
    #[test]
    fn anonymous_regions_of_one_size_keep_their_own_names() {
        let raw = RawProfile {
            samples: vec![
                sample(
                    7,
                    RawStack::Frames(vec![0x10100]),
                    RawStack::Frames(vec![]),
                    1,
                ),
                sample(
                    7,
                    RawStack::Frames(vec![0x20100]),
                    RawStack::Frames(vec![]),
                    1,
                ),
            ],
            ..Default::default()
        };
        let profile = aggregate(&raw, &mut TwoRegions, Meta::default());
        let names: Vec<Vec<String>> = profile
            .samples
            .iter()
            .map(|s| profile.frame_names(s))
            .collect();
        assert!(
            names.contains(&vec!["app".into(), "jit_10100_[j]".into()]),
            "{names:?}"
        );
        assert!(
            names.contains(&vec!["app".into(), "jit_20100_[j]".into()]),
            "{names:?}"
        );
        assert_eq!(profile.mappings.len(), 2);
    }

    fn sample(tgid: u32, user: RawStack, kernel: RawStack, count: u64) -> RawSample {
        RawSample {
            tgid,
            tid: tgid,
            comm: "app".into(),
            user_stack: user,
            kernel_stack: kernel,
            count,
            nanos: 0,
            state: ThreadState::OnCpu,
        }
    }

    #[test]
    fn adjusts_return_addresses_and_orders_kernel_above_user() {
        let raw = RawProfile {
            samples: vec![sample(
                7,
                RawStack::Frames(vec![0x100, 0x201, 0x301]),
                RawStack::Frames(vec![0xa00, 0xb01]),
                3,
            )],
            ..Default::default()
        };
        let mut resolver = FakeResolver::default();
        let profile = aggregate(&raw, &mut resolver, Meta::default());
        assert_eq!(resolver.user_calls, vec![(7, vec![0x100, 0x200, 0x300])]);
        assert_eq!(resolver.kernel_calls, vec![vec![0xa00, 0xb00]]);
        assert_eq!(profile.samples.len(), 1);
        let names = profile.frame_names(&profile.samples[0]);
        assert_eq!(
            names,
            ["app", "u300", "u200", "u100", "kb00_[k]", "ka00_[k]"]
        );
        assert_eq!(profile.samples[0].count, 3);
        // The sampled address is kept, not the lookup address.
        assert_eq!(
            profile.locations[profile.samples[0].locations[1]].address,
            0xb01
        );
        assert_eq!(profile.mappings.len(), 1);
        assert_eq!(profile.mappings[0].path, "/bin/p7");
    }

    #[test]
    fn lost_stacks_stay_in_the_profile_and_equal_stacks_merge() {
        let raw = RawProfile {
            samples: vec![
                sample(1, RawStack::Lost { errno: 7 }, RawStack::Absent, 2),
                sample(1, RawStack::Lost { errno: 7 }, RawStack::Absent, 5),
                sample(
                    2,
                    RawStack::Frames(vec![0x10]),
                    RawStack::Lost { errno: 12 },
                    1,
                ),
            ],
            ..Default::default()
        };
        let profile = aggregate(&raw, &mut FakeResolver::default(), Meta::default());
        assert_eq!(profile.total_samples(), 8);
        assert_eq!(profile.samples.len(), 2);
        assert_eq!(profile.samples[0].count, 7);
        assert_eq!(
            profile.frame_names(&profile.samples[0]),
            ["app", "[lost user stack: stack map full]"]
        );
        assert_eq!(
            profile.frame_names(&profile.samples[1]),
            ["app", "u10", "[lost kernel stack: error 12]"]
        );
    }

    #[test]
    fn the_same_address_in_files_without_build_ids_is_two_locations() {
        let raw = RawProfile {
            samples: vec![
                sample(1, RawStack::Frames(vec![0x10]), RawStack::Absent, 1),
                sample(2, RawStack::Frames(vec![0x10]), RawStack::Absent, 1),
            ],
            ..Default::default()
        };
        let profile = aggregate(&raw, &mut FakeResolver::default(), Meta::default());
        assert_ne!(profile.samples[0].locations, profile.samples[1].locations);
        assert_eq!(profile.mappings.len(), 2);
    }

    #[test]
    fn one_file_mapped_by_many_processes_is_one_mapping_with_shared_locations() {
        let at = |pid: u32, offset: u64| (u64::from(pid) << 16) + offset;
        let raw = RawProfile {
            samples: vec![
                sample(
                    1,
                    RawStack::Frames(vec![at(1, 0x10), at(1, 0x21)]),
                    RawStack::Absent,
                    1,
                ),
                sample(
                    2,
                    RawStack::Frames(vec![at(2, 0x10), at(2, 0x21)]),
                    RawStack::Absent,
                    2,
                ),
                sample(3, RawStack::Frames(vec![at(3, 0x30)]), RawStack::Absent, 1),
            ],
            ..Default::default()
        };
        let mut resolver = FakeResolver {
            one_file: true,
            ..Default::default()
        };
        let profile = aggregate(&raw, &mut resolver, Meta::default());
        assert_eq!(profile.mappings.len(), 1, "{:?}", profile.mappings);
        assert_eq!(profile.mappings[0].start, at(1, 0));
        // Two processes, one stack: the same locations; the third's own.
        let by_pid = |pid| {
            &profile
                .samples
                .iter()
                .find(|s| s.pid == pid)
                .unwrap()
                .locations
        };
        assert_eq!(by_pid(1), by_pid(2));
        assert_eq!(profile.locations.len(), 3);
        // Addresses are where the shared mapping is, so they fall inside it.
        let mut addresses: Vec<u64> = profile.locations.iter().map(|l| l.address).collect();
        addresses.sort_unstable();
        assert_eq!(addresses, [at(1, 0x10), at(1, 0x21), at(1, 0x30)]);
        assert_eq!(profile.frame_names(&profile.samples[2]), ["app", "u30"]);
        assert_eq!(
            profile.frame_names(&profile.samples[1]),
            ["app", "u20", "u10"]
        );
    }

    #[test]
    fn off_cpu_samples_get_a_state_marker_and_keep_their_nanoseconds() {
        let off_cpu = |state, nanos, user| RawSample {
            state,
            nanos,
            ..sample(3, user, RawStack::Frames(vec![0xa00]), 2)
        };
        let raw = RawProfile {
            samples: vec![
                off_cpu(ThreadState::Blocked, 5_000, RawStack::Frames(vec![0x10])),
                off_cpu(ThreadState::Blocked, 7_000, RawStack::Frames(vec![0x10])),
                off_cpu(ThreadState::Runnable, 1_000, RawStack::Frames(vec![0x10])),
                off_cpu(
                    ThreadState::Blocked,
                    9_000,
                    RawStack::Lost {
                        errno: -profiler_common::STACK_ERROR_BEFORE_START,
                    },
                ),
                sample(3, RawStack::Frames(vec![0x10]), RawStack::Absent, 4),
            ],
            ..Default::default()
        };
        let meta = Meta {
            frequency_hz: 100,
            ..Default::default()
        };
        let profile = aggregate(&raw, &mut FakeResolver::default(), meta);
        let found: Vec<(ThreadState, u64, u64, Vec<String>)> = profile
            .samples
            .iter()
            .map(|s| (s.state, s.count, s.nanos, profile.frame_names(s)))
            .collect();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            found,
            [
                // On CPU: 4 samples of 10 ms each at 100 Hz, no marker.
                (ThreadState::OnCpu, 4, 40_000_000, names(&["app", "u10"])),
                // The two blocked samples with equal stacks merge.
                (
                    ThreadState::Blocked,
                    4,
                    12_000,
                    names(&["app", "u10", "ka00_[k]", "[blocked]"])
                ),
                (
                    ThreadState::Blocked,
                    2,
                    9_000,
                    names(&[
                        "app",
                        "[stack unknown: off CPU since before the recording]",
                        "ka00_[k]",
                        "[blocked]"
                    ])
                ),
                (
                    ThreadState::Runnable,
                    2,
                    1_000,
                    names(&["app", "u10", "ka00_[k]", "[waiting for CPU]"])
                ),
            ]
        );
    }

    /// Names Python code objects `py_<code>` in `app.py`, line = index;
    /// code 0xdead cannot be read.
    struct PythonNames;

    impl Resolve for PythonNames {
        fn user(&mut self, _pid: u32, addrs: &[u64]) -> Vec<Symbol> {
            addrs.iter().map(|&a| named("u", a, None)).collect()
        }
        fn kernel(&mut self, addrs: &[u64]) -> Vec<Symbol> {
            addrs.iter().map(|&a| named("k", a, None)).collect()
        }
        fn mapping(&self, _pid: u32, _index: usize) -> Option<Mapping> {
            None
        }
        fn python(&mut self, _pid: u32, code: u64, index: u32) -> Option<Line> {
            (code != 0xdead).then(|| Line {
                function: format!("py_{code:x}"),
                file: Some("app.py".into()),
                line: Some(index),
            })
        }
    }

    fn python_names(raw: &RawProfile, options: &AggregateOptions) -> Vec<Vec<String>> {
        let profile = aggregate_with(raw, &mut PythonNames, Meta::default(), options);
        profile
            .samples
            .iter()
            .map(|s| profile.frame_names(s))
            .collect()
    }

    #[test]
    fn python_frames_take_the_place_of_their_eval_loop_frame() {
        // Innermost first: a C function called from Python, two Python
        // frames, the eval loop running them, its caller, then another run.
        let user = vec![
            0x100,
            python::frame(0xc0de, 3),
            python::frame(0xb0de, 7),
            0x201,
            0x301,
            python::frame(0xa0de, 1),
            0x401,
            0x501,
        ];
        let raw = RawProfile {
            samples: vec![sample(7, RawStack::Frames(user), RawStack::Absent, 2)],
            ..Default::default()
        };
        assert_eq!(
            python_names(&raw, &AggregateOptions::default()),
            [[
                "app",
                "u500",
                "py_a0de (app.py:1)",
                "u300",
                "py_b0de (app.py:7)",
                "py_c0de (app.py:3)",
                "u100"
            ]]
        );
        let kept = python_names(
            &raw,
            &AggregateOptions {
                interpreter_frames: true,
            },
        );
        assert_eq!(
            kept,
            [[
                "app",
                "u500",
                "u400",
                "py_a0de (app.py:1)",
                "u300",
                "u200",
                "py_b0de (app.py:7)",
                "py_c0de (app.py:3)",
                "u100"
            ]]
        );
    }

    #[test]
    fn python_frames_that_cannot_be_named_or_walked_stay_visible() {
        let user = vec![
            python::frame(0xdead, 2),
            python::frame(0, python::lost::READ_FAULT),
            0x201,
            0x301,
        ];
        let raw = RawProfile {
            samples: vec![sample(7, RawStack::Frames(user), RawStack::Absent, 1)],
            ..Default::default()
        };
        assert_eq!(
            python_names(&raw, &AggregateOptions::default()),
            [[
                "app",
                "u300",
                "[python frames lost: interpreter memory not readable]",
                "[python code 0xdead]"
            ]]
        );
    }

    #[test]
    fn python_frames_of_one_function_and_line_are_one_location() {
        // Two processes, two code objects with one name: one location.
        let raw = RawProfile {
            samples: vec![
                sample(
                    7,
                    RawStack::Frames(vec![python::frame(0xa0de, 4), 0x201]),
                    RawStack::Absent,
                    1,
                ),
                sample(
                    8,
                    RawStack::Frames(vec![python::frame(0xa0de, 4), 0x201]),
                    RawStack::Absent,
                    1,
                ),
            ],
            ..Default::default()
        };
        let profile = aggregate(&raw, &mut PythonNames, Meta::default());
        let python: Vec<&Location> = profile
            .locations
            .iter()
            .filter(|l| l.kind == FrameKind::Python)
            .collect();
        assert_eq!(python.len(), 1, "{:?}", profile.locations);
        assert_eq!(python[0].lines[0].function, "py_a0de");
    }
}

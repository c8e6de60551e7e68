//! The symbolized profile: what every output (folded, SVG, pprof) and the
//! summary are made from. It follows pprof's model (samples point at
//! locations, a location holds one line per inlined frame) so that the pprof
//! encoder loses nothing, and the text outputs expand it into frames.

use std::borrow::Cow;

use foldhash::HashMap;

/// Where a frame comes from; the outputs tell kernel frames apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrameKind {
    User,
    Kernel,
    /// A Python function (CPython frames walked in the kernel): its one
    /// line is the function's qualified name, file and line.
    Python,
    /// A marker the profiler adds, such as a lost stack; never a real address.
    Special,
}

/// One function at a location. Names of frames that could not be symbolized
/// are `module+0xoffset` (or `[unknown]` for an address in no mapping; the
/// location keeps the address), never dropped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Line {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// A file mapped into a process (or the kernel image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub path: String,
    /// Hex-encoded GNU build ID, when the file has one.
    pub build_id: Option<String>,
}

/// One address in one address space, or (in a file with a build ID) one
/// place in the code of a file that many processes map: `aggregate` makes
/// one location of it for all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub kind: FrameKind,
    /// The address as sampled (not adjusted for symbol lookup); for a
    /// location shared by processes, as an address in its `mapping` (where
    /// the first of them mapped the file).
    pub address: u64,
    /// Index into `Profile::mappings`.
    pub mapping: Option<usize>,
    /// Innermost first: with inlining, `lines[0]` is the inlined callee and
    /// the last entry is the function the code was inlined into (pprof's order).
    pub lines: Vec<Line>,
}

/// What a thread was doing when a sample was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadState {
    /// Running on a CPU (a cpu-clock sample).
    #[default]
    OnCpu,
    /// Off CPU, asleep: waiting for I/O, a lock, a timer, a child...
    Blocked,
    /// Off CPU but runnable: preempted or yielding, waiting for a CPU.
    Runnable,
}

impl ThreadState {
    /// The `thread_state` label value in pprof.
    pub fn label(self) -> &'static str {
        match self {
            ThreadState::OnCpu => "on-cpu",
            ThreadState::Blocked => "blocked",
            ThreadState::Runnable => "runnable",
        }
    }

    /// The frame put on top of an off-CPU stack, so that flame graphs and
    /// `go tool pprof -top` tell waiting for I/O from waiting for a CPU.
    pub fn marker_frame(self) -> Option<&'static str> {
        match self {
            ThreadState::OnCpu => None,
            ThreadState::Blocked => Some("[blocked]"),
            ThreadState::Runnable => Some("[waiting for CPU]"),
        }
    }
}

/// A stack and how often, or how long, it was seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// Indices into `Profile::locations`, leaf first (pprof's order).
    pub locations: Vec<usize>,
    /// On CPU: samples taken. Off CPU: times the thread blocked here.
    pub count: u64,
    /// Time the sample stands for: samples × period on CPU, the measured
    /// blocked time off CPU.
    pub nanos: u64,
    pub state: ThreadState,
}

/// What a profile measures (`profiler record --mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProfileKind {
    /// On-CPU samples; values are sample counts.
    #[default]
    Cpu,
    /// Time spent off CPU (blocked or waiting for a CPU), in nanoseconds.
    OffCpu,
    /// On-CPU samples (one period each) and off-CPU time together, in
    /// nanoseconds: a thread's stacks add up to its wall time.
    Wall,
}

impl ProfileKind {
    /// Whether values are time (nanoseconds) rather than sample counts.
    pub fn is_time(self) -> bool {
        self != ProfileKind::Cpu
    }
}

/// What was profiled and how; used for titles, pprof metadata and the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub kind: ProfileKind,
    /// What was profiled, e.g. `pid 1234 (myapp)` or `./my-program args`.
    pub target: String,
    pub start_unix_nanos: u64,
    pub duration_nanos: u64,
    pub frequency_hz: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub meta: Meta,
    pub mappings: Vec<Mapping>,
    pub locations: Vec<Location>,
    pub samples: Vec<Sample>,
}

impl Profile {
    /// Nanoseconds of CPU one sample stands for.
    pub fn period_nanos(&self) -> u64 {
        1_000_000_000 / self.meta.frequency_hz.max(1)
    }

    pub fn total_samples(&self) -> u64 {
        self.samples.iter().map(|s| s.count).sum()
    }

    /// What a sample weighs in the folded output, flame graphs and the
    /// summary: its count in a CPU profile, its nanoseconds otherwise.
    pub fn value(&self, sample: &Sample) -> u64 {
        if self.meta.kind.is_time() {
            sample.nanos
        } else {
            sample.count
        }
    }

    pub fn total_value(&self) -> u64 {
        self.samples.iter().map(|s| self.value(s)).sum()
    }

    /// Frames of one sample, root first, as the folded format and flame graphs
    /// name them: kernel frames end in `_[k]`, inlined ones in `_[i]`, JIT
    /// code named from a perf map in `_[j]` (the suffixes `perf script |
    /// stackcollapse` uses, which inferno colours). The process's command
    /// name is the root frame.
    pub fn frame_names(&self, sample: &Sample) -> Vec<String> {
        let mut names = vec![sanitize(&sample.comm)];
        for &loc in sample.locations.iter().rev() {
            names.extend(self.names_of(&self.locations[loc]));
        }
        names
    }

    /// Whether `location` is JIT code: in a mapping named after a perf map.
    fn is_jit(&self, location: &Location) -> bool {
        location
            .mapping
            .and_then(|m| self.mappings.get(m))
            .is_some_and(|m| is_perf_map(&m.path))
    }

    fn names_of(&self, location: &Location) -> Vec<String> {
        frames_of(location, self.is_jit(location))
            .map(|(function, suffix)| format!("{}{suffix}", sanitize(&function)))
            .collect()
    }

    /// The frame names of every location (indexed like `locations`),
    /// outermost first, as [`Profile::frame_names`] gives them. Outputs that
    /// walk many samples name each location once with this.
    pub fn location_frame_names(&self) -> Vec<Vec<String>> {
        self.locations.iter().map(|l| self.names_of(l)).collect()
    }

    /// As [`Profile::location_frame_names`], with each distinct name made
    /// once and the locations holding indices into it. Locations far
    /// outnumber names: a function has many addresses, and an address in no
    /// mapping, or in a file without a build ID, is a location per process.
    pub fn location_frame_ids(&self) -> FrameNameIds {
        // foldhash, and one array of ids for all locations: SipHash plus a
        // Vec per location were 7% of a fork-heavy 999 Hz recording's CPU
        // when its locations were per process (14 000 of them).
        let mut ids: HashMap<(Cow<'_, str>, &'static str), u32> = Default::default();
        // Different functions can give one name (sanitized, suffixed): one id.
        let mut by_name: HashMap<String, u32> = Default::default();
        let mut names = Vec::new();
        let mut all = Vec::with_capacity(self.locations.len() * 2);
        let mut ends = Vec::with_capacity(self.locations.len());
        for location in &self.locations {
            all.extend(
                frames_of(location, self.is_jit(location)).map(|(function, suffix)| {
                    *ids.entry((function.clone(), suffix)).or_insert_with(|| {
                        let name = format!("{}{suffix}", sanitize(&function));
                        *by_name.entry(name).or_insert_with_key(|name| {
                            names.push(name.clone());
                            (names.len() - 1) as u32
                        })
                    })
                }),
            );
            ends.push(all.len() as u32);
        }
        FrameNameIds {
            names,
            ids: all,
            ends,
        }
    }

    /// The root frame of a sample of command `comm`: its name.
    pub fn root_frame_name(comm: &str) -> String {
        sanitize(comm)
    }
}

/// Whether a mapping's path names a JIT's perf map (`/tmp/perf-PID.map`),
/// as the profiler names the anonymous memory whose code it named from one
/// (and as perf does; `stackcollapse-perf` marks such frames `_[j]` too).
pub fn is_perf_map(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_prefix("perf-")
        .and_then(|rest| rest.strip_suffix(".map"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// A location's frames, outermost first: each line's function and the
/// suffix its name gets. A Python frame is named as py-spy names it,
/// `function (file:line)`.
fn frames_of(location: &Location, jit: bool) -> impl Iterator<Item = (Cow<'_, str>, &'static str)> {
    let last = location.lines.len().saturating_sub(1);
    let python = location.kind == FrameKind::Python;
    location
        .lines
        .iter()
        .enumerate()
        .rev()
        .map(move |(i, line)| {
            let name = if python {
                Cow::Owned(python_frame_name(line))
            } else {
                Cow::Borrowed(line.function.as_str())
            };
            (name, frame_suffix(location.kind, i == last, jit))
        })
}

/// `function (file:line)`, or `function (file)` when the line is unknown.
pub fn python_frame_name(line: &Line) -> String {
    match (&line.file, line.line) {
        (Some(file), Some(n)) => format!("{} ({file}:{n})", line.function),
        (Some(file), None) => format!("{} ({file})", line.function),
        (None, _) => line.function.clone(),
    }
}

/// The suffix of a frame's name: `_[k]` for the kernel, `_[i]` for a line
/// inlined into another (not the location's last), `_[j]` for JIT code.
fn frame_suffix(kind: FrameKind, last: bool, jit: bool) -> &'static str {
    match (kind, last) {
        (FrameKind::Kernel, _) => "_[k]",
        (_, false) => "_[i]",
        _ if jit => "_[j]",
        _ => "",
    }
}

/// Frame names, each once, and the names of every location as indices into
/// them ([`Profile::location_frame_ids`]).
pub struct FrameNameIds {
    pub names: Vec<String>,
    /// Every location's ids, one after the other.
    ids: Vec<u32>,
    /// Where each location's ids end in `ids`, indexed like
    /// `Profile::locations`.
    ends: Vec<u32>,
}

impl FrameNameIds {
    /// The names of location `index` (of `Profile::locations`), outermost
    /// first.
    pub fn location(&self, index: usize) -> &[u32] {
        let start = index.checked_sub(1).map_or(0, |i| self.ends[i] as usize);
        &self.ids[start..self.ends[index] as usize]
    }
}

/// Frame names may not hold the folded format's separators.
fn sanitize(name: &str) -> String {
    if name.is_empty() {
        return "[unknown]".to_string();
    }
    name.replace([';', '\n', '\r'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str) -> Line {
        Line {
            function: name.into(),
            file: None,
            line: None,
        }
    }

    #[test]
    fn jit_frames_end_in_j_where_the_mapping_is_a_perf_map() {
        assert!(is_perf_map("/tmp/perf-123.map"));
        assert!(is_perf_map("perf-1.map"));
        assert!(!is_perf_map("/tmp/perf-.map"));
        assert!(!is_perf_map("/tmp/perf-12x.map"));
        assert!(!is_perf_map("/usr/lib/libperf-1.map.so"));
        let location = |mapping| Location {
            kind: FrameKind::User,
            address: 1,
            mapping: Some(mapping),
            lines: vec![line("JS:*hot /x.js:1:2")],
        };
        let mapping = |path: &str| Mapping {
            start: 0,
            end: 0x1000,
            file_offset: 0,
            path: path.into(),
            build_id: None,
        };
        let profile = Profile {
            mappings: vec![mapping("/tmp/perf-42.map"), mapping("")],
            locations: vec![location(0), location(1)],
            ..Profile::default()
        };
        assert_eq!(
            profile.location_frame_names(),
            [vec!["JS:*hot /x.js:1:2_[j]"], vec!["JS:*hot /x.js:1:2"]]
        );
        let ids = profile.location_frame_ids();
        assert_eq!(ids.names, ["JS:*hot /x.js:1:2_[j]", "JS:*hot /x.js:1:2"]);
    }

    #[test]
    fn frame_names_are_root_first_with_kernel_and_inline_suffixes() {
        let profile = Profile {
            locations: vec![
                Location {
                    kind: FrameKind::Kernel,
                    address: 1,
                    mapping: None,
                    lines: vec![line("do_sys")],
                },
                Location {
                    kind: FrameKind::User,
                    address: 2,
                    mapping: None,
                    lines: vec![line("inl"), line("outer")],
                },
                Location {
                    kind: FrameKind::User,
                    address: 3,
                    mapping: None,
                    lines: vec![line("main")],
                },
            ],
            ..Default::default()
        };
        let sample = Sample {
            pid: 1,
            tid: 1,
            comm: "a;b".into(),
            locations: vec![0, 1, 2],
            count: 1,
            ..Default::default()
        };
        assert_eq!(
            profile.frame_names(&sample),
            ["a_b", "main", "outer", "inl_[i]", "do_sys_[k]"]
        );
    }
}

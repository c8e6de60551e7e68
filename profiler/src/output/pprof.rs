//! pprof's protobuf format (`profile.proto`), gzip-compressed, as `go tool
//! pprof` and other pprof readers take it. Encoded with the prost types the
//! `pprof` crate ships.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use ::pprof::protos::{self, Message};
use flate2::{Compression, read::GzDecoder, write::GzEncoder};

use crate::profile::{FrameKind, Line, Location, Profile, ProfileKind, Sample, ThreadState};

/// The name of the pseudo-mapping kernel locations without a mapping get.
pub const KERNEL_MAPPING: &str = "[kernel.kallsyms]";
/// The pseudo-mapping of Python frames (their function, file and line
/// are the Python function's; the address is the code object's).
pub const PYTHON_MAPPING: &str = "[python]";

/// Interns strings; index 0 is always "" as pprof requires.
struct StringTable {
    strings: Vec<String>,
    index: HashMap<String, i64>,
}

impl StringTable {
    fn new() -> Self {
        StringTable {
            strings: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_string());
        self.index.insert(s.to_string(), i);
        i
    }
}

/// Whether a frame name is the symbolizer's fallback (`module+0xoffset`,
/// `[unknown]`) rather than a function name.
fn is_symbolized(line: &Line) -> bool {
    if line.file.is_some() {
        return true;
    }
    if line.function == symbolizer::UNKNOWN_FRAME {
        return false;
    }
    match line.function.rsplit_once("+0x") {
        Some((_, hex)) => hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => true,
    }
}

/// The `has_*` flags of a mapping, from the locations in it.
fn set_symbol_flags<'a>(
    mapping: &mut protos::Mapping,
    locations: impl Iterator<Item = &'a Location>,
) {
    for location in locations {
        mapping.has_functions |= location.lines.iter().any(is_symbolized);
        mapping.has_filenames |= location.lines.iter().any(|l| l.file.is_some());
        mapping.has_line_numbers |= location.lines.iter().any(|l| l.line.is_some());
        mapping.has_inline_frames |= location.lines.len() > 1;
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The sample types of a profile of `kind`; the last one is the default.
/// CPU: `samples/count`, `cpu/nanoseconds`. Off-CPU: `blocks/count` (times a
/// thread went off CPU with that stack), `off_cpu/nanoseconds`. Wall:
/// `samples/count` (on-CPU samples), `blocks/count`, `wall/nanoseconds`.
pub fn sample_types(kind: ProfileKind) -> &'static [(&'static str, &'static str)] {
    match kind {
        ProfileKind::Cpu => &[("samples", "count"), ("cpu", "nanoseconds")],
        ProfileKind::OffCpu => &[("blocks", "count"), ("off_cpu", "nanoseconds")],
        ProfileKind::Wall => &[
            ("samples", "count"),
            ("blocks", "count"),
            ("wall", "nanoseconds"),
        ],
    }
}

/// The values of one sample, in the order of [`sample_types`].
fn sample_values(kind: ProfileKind, sample: &Sample, period: i64) -> Vec<i64> {
    let count = to_i64(sample.count);
    let on_cpu = sample.state == ThreadState::OnCpu;
    match kind {
        ProfileKind::Cpu => vec![count, count.saturating_mul(period)],
        ProfileKind::OffCpu => vec![count, to_i64(sample.nanos)],
        ProfileKind::Wall if on_cpu => vec![count, 0, to_i64(sample.nanos)],
        ProfileKind::Wall => vec![0, count, to_i64(sample.nanos)],
    }
}

/// The mapping pprof should take for the profile's main binary: among the
/// user mappings the samples of the process with the most weight pass
/// through, the one mapped lowest: the program's executable (mapped below its
/// libraries, PIE or not) when its stacks reach it, else its lowest library.
/// The first mapping in the profile's order could be any process's: in a
/// system-wide recording it was once a bystander's memfd. `None` without
/// user frames.
fn main_mapping(profile: &Profile) -> Option<usize> {
    // Only samples with a mapped user frame count: a kernel thread, busy as
    // it may be, has no binary to name.
    let mut weight: HashMap<u32, u64> = HashMap::new();
    for sample in &profile.samples {
        if user_mappings(profile, sample).next().is_some() {
            *weight.entry(sample.pid).or_default() += profile.value(sample);
        }
    }
    // Ties go to the lowest pid, so the choice does not depend on hashing.
    let (&pid, _) = weight
        .iter()
        .max_by_key(|&(&pid, &w)| (w, std::cmp::Reverse(pid)))?;
    profile
        .samples
        .iter()
        .filter(|s| s.pid == pid)
        .flat_map(|s| user_mappings(profile, s))
        .min_by_key(|&m| (profile.mappings.get(m).map_or(u64::MAX, |m| m.start), m))
}

/// The mappings of `sample`'s user frames, innermost first.
fn user_mappings<'a>(profile: &'a Profile, sample: &'a Sample) -> impl Iterator<Item = usize> + 'a {
    sample.locations.iter().filter_map(|&l| {
        let location = profile.locations.get(l)?;
        (location.kind == FrameKind::User).then_some(location.mapping?)
    })
}

/// The pprof message for `profile`.
///
/// Sample types are those of [`sample_types`] (the last one is what pprof
/// shows by default); every sample has `pid`, `tid` (numbers) and `comm`
/// (string) labels, and off-CPU and wall profiles a `thread_state` label
/// (`on-cpu`, `blocked`, `runnable`); samples with value 0 are left out.
/// Location ids are the indices in `profile` plus one. Mapping 1 is the
/// [`main_mapping`] (pprof's "main binary", the `File:` that `go tool pprof`
/// shows); the others follow in the profile's order; the kernel
/// pseudo-mapping, if any, comes last.
pub fn to_proto(profile: &Profile) -> protos::Profile {
    let mut strings = StringTable::new();
    let kind = profile.meta.kind;
    let period = match kind {
        ProfileKind::OffCpu => 1,
        _ => to_i64(profile.period_nanos()),
    };

    let mut value_type = |ty: &str, unit: &str| protos::ValueType {
        ty: strings.get(ty),
        unit: strings.get(unit),
    };
    let sample_type: Vec<protos::ValueType> = sample_types(kind)
        .iter()
        .map(|&(ty, unit)| value_type(ty, unit))
        .collect();
    let time_type = sample_types(kind).last().expect("a time type");
    let period_type = Some(value_type(time_type.0, time_type.1));
    let default_sample_type = sample_type.last().map_or(0, |t| t.ty);

    let main = main_mapping(profile);
    // The main mapping moves to the front; the rest keep their order.
    let mapping_id = |i: usize| -> u64 {
        match main {
            Some(m) if i == m => 1,
            Some(m) if i < m => i as u64 + 2,
            _ => i as u64 + 1,
        }
    };
    let mut mappings: Vec<protos::Mapping> = profile
        .mappings
        .iter()
        .enumerate()
        .map(|(i, m)| protos::Mapping {
            id: mapping_id(i),
            memory_start: m.start,
            memory_limit: m.end,
            file_offset: m.file_offset,
            filename: strings.get(&m.path),
            build_id: m.build_id.as_deref().map_or(0, |b| strings.get(b)),
            ..Default::default()
        })
        .collect();
    // One pass over the locations, not one per mapping: a recording of
    // thousands of processes has thousands of mappings.
    for location in &profile.locations {
        if let Some(mapping) = location.mapping.and_then(|i| mappings.get_mut(i)) {
            set_symbol_flags(mapping, std::iter::once(location));
        }
    }
    mappings.sort_by_key(|m| m.id);

    // Pseudo-mappings that only mark their frames: the kernel's (for kernel
    // frames without a module) and Python's.
    let mut pseudo_mapping = |path: &str, keep: &dyn Fn(&Location) -> bool| -> u64 {
        let of = || profile.locations.iter().filter(|l| keep(l));
        if of().next().is_none() {
            return 0;
        }
        let id = mappings.len() as u64 + 1;
        let mut mapping = protos::Mapping {
            id,
            memory_start: of().map(|l| l.address).min().unwrap_or(0),
            memory_limit: of().map(|l| l.address.saturating_add(1)).max().unwrap_or(0),
            filename: strings.get(path),
            ..Default::default()
        };
        set_symbol_flags(&mut mapping, of());
        mappings.push(mapping);
        id
    };
    let kernel_mapping_id = pseudo_mapping(KERNEL_MAPPING, &|l| {
        l.kind == FrameKind::Kernel && l.mapping.is_none()
    });
    let python_mapping_id = pseudo_mapping(PYTHON_MAPPING, &|l| l.kind == FrameKind::Python);

    let mut functions: Vec<protos::Function> = Vec::new();
    let mut function_ids: HashMap<(&str, Option<&str>), u64> = HashMap::new();
    let locations = profile
        .locations
        .iter()
        .enumerate()
        .map(|(i, location)| {
            let mapping_id = match (location.kind, location.mapping) {
                (FrameKind::Special, _) => 0,
                (_, Some(m)) => mapping_id(m),
                (FrameKind::Kernel, None) => kernel_mapping_id,
                (FrameKind::User, None) => 0,
                (FrameKind::Python, None) => python_mapping_id,
            };
            let line = location
                .lines
                .iter()
                .map(|line| {
                    let key = (line.function.as_str(), line.file.as_deref());
                    let function_id = *function_ids.entry(key).or_insert_with(|| {
                        let name = strings.get(&line.function);
                        functions.push(protos::Function {
                            id: functions.len() as u64 + 1,
                            name,
                            system_name: name,
                            filename: line.file.as_deref().map_or(0, |f| strings.get(f)),
                            start_line: 0,
                        });
                        functions.len() as u64
                    });
                    protos::Line {
                        function_id,
                        line: line.line.map_or(0, i64::from),
                    }
                })
                .collect();
            protos::Location {
                id: i as u64 + 1,
                mapping_id,
                address: location.address,
                line,
                is_folded: false,
            }
        })
        .collect();

    let (pid, tid, comm) = (strings.get("pid"), strings.get("tid"), strings.get("comm"));
    // Interned only for the kinds that have the label, so CPU profiles hold
    // no unused strings.
    let state_label = kind.is_time().then(|| {
        let values: Vec<i64> = [
            ThreadState::OnCpu,
            ThreadState::Blocked,
            ThreadState::Runnable,
        ]
        .iter()
        .map(|s| strings.get(s.label()))
        .collect();
        (strings.get("thread_state"), values)
    });
    let samples = profile
        .samples
        .iter()
        .filter(|s| profile.value(s) > 0)
        .map(|s| protos::Sample {
            location_id: s.locations.iter().map(|&l| l as u64 + 1).collect(),
            value: sample_values(kind, s, period),
            label: [
                protos::Label {
                    key: pid,
                    num: s.pid.into(),
                    ..Default::default()
                },
                protos::Label {
                    key: tid,
                    num: s.tid.into(),
                    ..Default::default()
                },
                protos::Label {
                    key: comm,
                    str: strings.get(&s.comm),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(state_label.as_ref().map(|(key, values)| protos::Label {
                key: *key,
                str: values[s.state as usize],
                ..Default::default()
            }))
            .collect(),
        })
        .collect();

    let comment = if profile.meta.target.is_empty() {
        vec![]
    } else {
        vec![strings.get(&profile.meta.target)]
    };

    protos::Profile {
        sample_type,
        sample: samples,
        mapping: mappings,
        location: locations,
        function: functions,
        time_nanos: to_i64(profile.meta.start_unix_nanos),
        duration_nanos: to_i64(profile.meta.duration_nanos),
        period_type,
        period,
        comment,
        default_sample_type,
        string_table: strings.strings,
        ..Default::default()
    }
}

/// Writes `profile` as a gzip-compressed pprof protobuf.
pub fn write_pprof<W: Write>(profile: &Profile, writer: W) -> io::Result<()> {
    let bytes = to_proto(profile).encode_to_vec();
    let mut gz = GzEncoder::new(writer, Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?.flush()
}

/// Reads a pprof profile: gzip-compressed (as [`write_pprof`] writes it) or,
/// like pprof itself accepts, uncompressed.
pub fn decode(bytes: &[u8]) -> io::Result<protos::Profile> {
    let mut raw = Vec::new();
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        GzDecoder::new(bytes).read_to_end(&mut raw)?;
        &raw[..]
    } else {
        bytes
    };
    protos::Profile::decode(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_profile::{DEMO_BUILD_ID, LIBC_BUILD_ID, demo_profile, locs};

    fn round_trip(profile: &Profile) -> protos::Profile {
        let mut out = Vec::new();
        write_pprof(profile, &mut out).unwrap();
        assert_eq!(&out[..2], [0x1f, 0x8b], "not gzip");
        decode(&out).unwrap()
    }

    fn s(p: &protos::Profile, i: i64) -> &str {
        &p.string_table[i as usize]
    }

    fn function_names(p: &protos::Profile, location_id: u64) -> Vec<&str> {
        let location = &p.location[location_id as usize - 1];
        assert_eq!(location.id, location_id);
        location
            .line
            .iter()
            .map(|l| s(p, p.function[l.function_id as usize - 1].name))
            .collect()
    }

    fn label<'a>(
        p: &'a protos::Profile,
        sample: &'a protos::Sample,
        key: &str,
    ) -> &'a protos::Label {
        sample
            .label
            .iter()
            .find(|l| s(p, l.key) == key)
            .unwrap_or_else(|| panic!("no label {key}"))
    }

    #[test]
    fn header_sample_types_and_period() {
        let profile = demo_profile();
        let p = round_trip(&profile);
        assert_eq!(p.string_table[0], "");
        let types: Vec<_> = p
            .sample_type
            .iter()
            .map(|t| (s(&p, t.ty), s(&p, t.unit)))
            .collect();
        assert_eq!(types, [("samples", "count"), ("cpu", "nanoseconds")]);
        let period_type = p.period_type.as_ref().unwrap();
        assert_eq!(
            (s(&p, period_type.ty), s(&p, period_type.unit)),
            ("cpu", "nanoseconds")
        );
        assert_eq!(p.period, 1_000_000_000 / 99);
        assert_eq!(p.time_nanos, 1_700_000_000_123_456_789);
        assert_eq!(p.duration_nanos, 12_000_000_000);
        assert_eq!(
            p.comment.iter().map(|&c| s(&p, c)).collect::<Vec<_>>(),
            ["pid 100 (demo)"]
        );
        // Strings are interned once.
        let mut sorted = p.string_table.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), p.string_table.len());
    }

    #[test]
    fn samples_values_labels_and_stacks() {
        let profile = demo_profile();
        let p = round_trip(&profile);
        // The count-0 sample is left out, the others kept in order.
        assert_eq!(p.sample.len(), profile.samples.len() - 1);
        let period = 1_000_000_000 / 99;
        for (sample, original) in p.sample.iter().zip(&profile.samples) {
            let count = original.count as i64;
            assert_eq!(sample.value, [count, count * period]);
            assert_eq!(label(&p, sample, "pid").num, i64::from(original.pid));
            assert_eq!(label(&p, sample, "tid").num, i64::from(original.tid));
            assert_eq!(s(&p, label(&p, sample, "comm").str), original.comm);
            assert_eq!(label(&p, sample, "comm").num, 0);
            let ids: Vec<u64> = original.locations.iter().map(|&l| l as u64 + 1).collect();
            assert_eq!(sample.location_id, ids, "leaf first, as in the profile");
        }
        let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(total as u64, profile.total_samples());
        // The syscall sample, leaf to root.
        let stack: Vec<Vec<&str>> = p.sample[3]
            .location_id
            .iter()
            .map(|&id| function_names(&p, id))
            .collect();
        assert_eq!(
            stack,
            [
                vec!["vfs_write"],
                vec!["ksys_write"],
                vec!["do_syscall_64"],
                vec!["entry_SYSCALL_64_after_hwframe"],
                vec!["libc.so.6+0x11a2b3"],
                vec!["main"],
                vec!["__libc_start_call_main"],
                vec!["_start"],
            ]
        );
        let kworker = &p.sample[5];
        assert_eq!(s(&p, label(&p, kworker, "comm").str), "kworker/0:1");
        assert_eq!(label(&p, kworker, "pid").num, 7);
    }

    #[test]
    fn locations_lines_and_function_dedup() {
        let profile = demo_profile();
        let p = round_trip(&profile);
        assert_eq!(p.location.len(), profile.locations.len());
        for (i, (location, original)) in p.location.iter().zip(&profile.locations).enumerate() {
            assert_eq!(location.id, i as u64 + 1);
            assert_eq!(location.address, original.address);
            assert_eq!(location.line.len(), original.lines.len());
            for (line, original) in location.line.iter().zip(&original.lines) {
                let function = &p.function[line.function_id as usize - 1];
                assert_eq!(function.id, line.function_id);
                assert_eq!(s(&p, function.name), original.function);
                assert_eq!(s(&p, function.system_name), original.function);
                assert_eq!(
                    s(&p, function.filename),
                    original.file.as_deref().unwrap_or("")
                );
                assert_eq!(line.line, original.line.map_or(0, i64::from));
            }
        }
        // Inlined: innermost first, the function it was inlined into last.
        assert_eq!(
            function_names(&p, locs::COMPUTE_MIX as u64 + 1),
            ["demo::hash::mix", "demo::compute"]
        );
        let mix = &p.location[locs::COMPUTE_MIX].line;
        assert_eq!((mix[0].line, mix[1].line), (7, 22));
        // Two addresses in demo::fib (lines 30 and 31): one function.
        let fib_1 = &p.location[locs::FIB].line[0];
        let fib_2 = &p.location[locs::FIB_2].line[0];
        assert_eq!(fib_1.function_id, fib_2.function_id);
        assert_eq!((fib_1.line, fib_2.line), (30, 31));
        let distinct: std::collections::HashSet<(&str, Option<&str>)> = profile
            .locations
            .iter()
            .flat_map(|l| &l.lines)
            .map(|l| (l.function.as_str(), l.file.as_deref()))
            .collect();
        assert_eq!(p.function.len(), distinct.len());
        for (i, f) in p.function.iter().enumerate() {
            assert_eq!(f.id, i as u64 + 1);
        }
    }

    #[test]
    fn functions_are_told_apart_by_file() {
        let mut profile = demo_profile();
        profile.locations[locs::FIB_2].lines[0].file = Some("src/other.rs".into());
        let p = round_trip(&profile);
        assert_ne!(
            p.location[locs::FIB].line[0].function_id,
            p.location[locs::FIB_2].line[0].function_id
        );
    }

    /// pprof takes mapping 1 for the main binary (`File:` in `go tool
    /// pprof`): it is the executable of the process with the most samples,
    /// not the library the first location happened to be in.
    #[test]
    fn main_binary_is_mapping_one() {
        let mapping = |path: &str, start: u64| crate::profile::Mapping {
            start,
            end: start + 0x1000,
            file_offset: 0,
            path: path.into(),
            build_id: None,
        };
        let user = |name: &str, mapping: usize, address: u64| Location {
            kind: FrameKind::User,
            address,
            mapping: Some(mapping),
            lines: vec![Line {
                function: name.into(),
                file: None,
                line: None,
            }],
        };
        let sample = |pid: u32, locations: &[usize], count: u64| Sample {
            pid,
            tid: pid,
            comm: "app".into(),
            locations: locations.to_vec(),
            count,
            ..Default::default()
        };
        let profile = Profile {
            mappings: vec![
                mapping("/usr/lib/libc.so.6", 0x7f00_0000_0000),
                mapping("/usr/bin/other", 0x5500_0000_0000),
                mapping("/usr/bin/app", 0x5600_0000_0000),
            ],
            locations: vec![
                user("write", 0, 0x7f00_0000_0010),
                user("main", 2, 0x5600_0000_0010),
                user("other_main", 1, 0x5500_0000_0010),
                Location {
                    kind: FrameKind::Kernel,
                    address: 0xffff_ffff_8100_0000,
                    mapping: None,
                    lines: vec![],
                },
            ],
            samples: vec![
                sample(7, &[0, 1], 5),
                sample(8, &[0, 2], 2),
                sample(7, &[0], 1),
                // The busiest of all, a kernel thread: no binary to name.
                sample(2, &[3], 100),
            ],
            ..Default::default()
        };
        let p = round_trip(&profile);
        let names: Vec<&str> = p.mapping.iter().map(|m| s(&p, m.filename)).collect();
        assert_eq!(
            names,
            [
                "/usr/bin/app",
                "/usr/lib/libc.so.6",
                "/usr/bin/other",
                KERNEL_MAPPING
            ]
        );
        let ids: Vec<u64> = p.mapping.iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let mapping_name = |location: usize| {
            let id = p.location[location].mapping_id;
            s(&p, p.mapping[id as usize - 1].filename)
        };
        assert_eq!(mapping_name(0), "/usr/lib/libc.so.6");
        assert_eq!(mapping_name(1), "/usr/bin/app");
        assert_eq!(mapping_name(2), "/usr/bin/other");
        // Read back, every location is in its own file still.
        let read = crate::report::read_pprof::from_proto(&p).unwrap();
        let path =
            |l: &Location, m: &[crate::profile::Mapping]| l.mapping.map(|i| m[i].path.clone());
        for (location, original) in read.locations.iter().zip(&profile.locations) {
            assert_eq!(
                path(location, &read.mappings),
                path(original, &profile.mappings)
            );
        }
        assert_eq!(read.locations.len(), profile.locations.len());
    }

    #[test]
    fn mappings_and_kernel_pseudo_mapping() {
        let profile = demo_profile();
        let p = round_trip(&profile);
        assert_eq!(p.mapping.len(), profile.mappings.len() + 1);
        for (i, (mapping, original)) in p.mapping.iter().zip(&profile.mappings).enumerate() {
            assert_eq!(mapping.id, i as u64 + 1);
            assert_eq!(s(&p, mapping.filename), original.path);
            assert_eq!(
                (mapping.memory_start, mapping.memory_limit),
                (original.start, original.end)
            );
            assert_eq!(mapping.file_offset, original.file_offset);
        }
        let [demo, libc, unknown, kernel] = &p.mapping[..] else {
            unreachable!()
        };
        assert_eq!(s(&p, demo.build_id), DEMO_BUILD_ID);
        assert_eq!(s(&p, libc.build_id), LIBC_BUILD_ID);
        assert_eq!(unknown.build_id, 0);
        assert!(
            demo.has_functions
                && demo.has_filenames
                && demo.has_line_numbers
                && demo.has_inline_frames
        );
        assert!(libc.has_functions && !libc.has_filenames && !libc.has_inline_frames);
        assert!(!unknown.has_functions, "only libunknown.so+0x1042 in it");
        assert_eq!(s(&p, kernel.filename), KERNEL_MAPPING);
        assert!(kernel.has_functions);
        assert_eq!(kernel.memory_start, 0xffff_ffff_8100_2000);
        assert_eq!(kernel.memory_limit, 0xffff_ffff_8200_009a);

        let mapping_of = |i: usize| p.location[i].mapping_id;
        assert_eq!(mapping_of(locs::MAIN), demo.id);
        assert_eq!(mapping_of(locs::LIBC_WRITE), libc.id);
        assert_eq!(mapping_of(locs::UNKNOWN_LIB), unknown.id);
        for i in [
            locs::VFS_WRITE,
            locs::ENTRY_SYSCALL,
            locs::WORKER_THREAD,
            locs::RET_FROM_FORK,
        ] {
            assert_eq!(mapping_of(i), kernel.id);
        }
        assert_eq!(mapping_of(locs::LOST), 0, "special frames have no mapping");
        assert_eq!(function_names(&p, locs::LOST as u64 + 1), ["[lost stack]"]);
    }

    #[test]
    fn no_kernel_pseudo_mapping_without_kernel_frames() {
        let mut profile = demo_profile();
        profile.locations.retain(|l| l.kind != FrameKind::Kernel);
        profile.samples.clear();
        let p = round_trip(&profile);
        assert_eq!(p.mapping.len(), profile.mappings.len());
        assert!(p.string_table.iter().all(|s| s != KERNEL_MAPPING));
    }

    #[test]
    fn empty_profile_round_trips() {
        let p = round_trip(&Profile::default());
        assert!(
            p.sample.is_empty()
                && p.location.is_empty()
                && p.mapping.is_empty()
                && p.function.is_empty()
        );
        assert_eq!(p.string_table[0], "");
        assert_eq!(p.sample_type.len(), 2);
    }

    #[test]
    fn decode_takes_uncompressed_and_rejects_garbage() {
        let proto = to_proto(&demo_profile());
        assert_eq!(decode(&proto.encode_to_vec()).unwrap(), proto);
        assert!(decode(&[0x1f, 0x8b, 1, 2, 3]).is_err());
        assert!(decode(b"\xff\xff\xff\xff").is_err());
    }

    #[test]
    fn symbolized_heuristic() {
        let line = |f: &str, file: Option<&str>| Line {
            function: f.into(),
            file: file.map(Into::into),
            line: None,
        };
        assert!(!is_symbolized(&line("libc.so.6+0x11a2b3", None)));
        assert!(!is_symbolized(&line("[unknown]", None)));
        assert!(is_symbolized(&line("main", None)));
        assert!(is_symbolized(&line("operator+0xyz", None)));
        assert!(is_symbolized(&line("f+0x10", Some("a.c"))));
    }

    fn str_label<'a>(
        p: &'a protos::Profile,
        sample: &protos::Sample,
        key: &str,
    ) -> Option<&'a str> {
        sample
            .label
            .iter()
            .find(|l| s(p, l.key) == key)
            .map(|l| s(p, l.str))
    }

    #[test]
    fn wall_profile_has_time_types_and_thread_states() {
        let profile = crate::output::test_profile::wall_profile();
        let p = round_trip(&profile);
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (s(&p, t.ty), s(&p, t.unit)))
            .collect();
        assert_eq!(
            types,
            [
                ("samples", "count"),
                ("blocks", "count"),
                ("wall", "nanoseconds")
            ]
        );
        assert_eq!(s(&p, p.default_sample_type), "wall");
        assert_eq!(p.period, 10_101_010);
        let by_state = |state: &str| -> Vec<&Vec<i64>> {
            p.sample
                .iter()
                .filter(|x| str_label(&p, x, "thread_state") == Some(state))
                .map(|x| &x.value)
                .collect()
        };
        assert_eq!(by_state("blocked"), [&vec![0, 4, 3_000_000_000]]);
        assert_eq!(by_state("runnable"), [&vec![0, 2, 500_000_000]]);
        let on_cpu = by_state("on-cpu");
        assert_eq!(
            on_cpu.len(),
            profile.samples.len() - 3,
            "count-0 sample left out"
        );
        assert!(
            on_cpu
                .iter()
                .all(|v| v[1] == 0 && v[2] == v[0] * 10_000_000)
        );
        // The wall total is what the samples' nanoseconds add up to.
        let total: i64 = p.sample.iter().map(|x| x.value[2]).sum();
        assert_eq!(total as u64, profile.total_value());
    }

    #[test]
    fn off_cpu_profile_has_off_cpu_types() {
        let p = round_trip(&crate::output::test_profile::off_cpu_profile());
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (s(&p, t.ty), s(&p, t.unit)))
            .collect();
        assert_eq!(types, [("blocks", "count"), ("off_cpu", "nanoseconds")]);
        assert_eq!(s(&p, p.default_sample_type), "off_cpu");
        let values: Vec<&Vec<i64>> = p.sample.iter().map(|x| &x.value).collect();
        assert_eq!(values, [&vec![4, 3_000_000_000], &vec![2, 500_000_000]]);
        // The state marker is the leaf location.
        assert_eq!(
            function_names(&p, p.sample[0].location_id[0]),
            ["[blocked]"]
        );
    }

    #[test]
    fn cpu_profiles_have_no_thread_state() {
        let p = round_trip(&demo_profile());
        assert!(p.string_table.iter().all(|x| x != "thread_state"));
        assert_eq!(s(&p, p.default_sample_type), "cpu");
    }
}

//! Reading a pprof message back into a [`Profile`]: the inverse of
//! [`crate::output::pprof::to_proto`], so that stored windows can be merged
//! and written in any output format.
//!
//! Sample types are found by name: a time type (`cpu/nanoseconds`,
//! `off_cpu/nanoseconds` or `wall/nanoseconds`) gives the kind and each
//! sample's nanoseconds; `samples/count` and `blocks/count` add up to its
//! count. Labels `pid`, `tid` (numbers), `comm` and `thread_state` (strings)
//! fill the sample. A location in the kernel pseudo-mapping
//! ([`KERNEL_MAPPING`]) is a kernel frame without a mapping; one without a
//! mapping whose function name starts with `[` is a marker the profiler
//! added; any other is a user frame.

use std::collections::HashMap;

use ::pprof::protos;

use crate::output::pprof::{KERNEL_MAPPING, PYTHON_MAPPING};
use crate::profile::{
    FrameKind, Line, Location, Mapping, Meta, Profile, ProfileKind, Sample, ThreadState,
};

#[derive(Debug, thiserror::Error)]
pub enum ReadPprofError {
    #[error(
        "no time sample type (cpu, off_cpu or wall in nanoseconds) among {found:?}; \
         only profiles written by this profiler can be read"
    )]
    NoTimeType { found: Vec<String> },
    #[error("more than one time sample type ({found:?}); cannot tell the kind of profile")]
    SeveralTimeTypes { found: Vec<String> },
    #[error("string index {index} is outside the string table ({len} strings)")]
    BadString { index: i64, len: usize },
    #[error("sample {sample} has {values} values for {types} sample types")]
    ValueCount {
        sample: usize,
        values: usize,
        types: usize,
    },
    #[error("{what} refers to {target} id {id}, which does not exist")]
    BadReference {
        what: String,
        target: &'static str,
        id: u64,
    },
    #[error("sample {sample} has a negative value {value}")]
    NegativeValue { sample: usize, value: i64 },
    #[error("sample {sample} has label {key}={value:?}, expected {expected}")]
    BadLabel {
        sample: usize,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

type Result<T> = std::result::Result<T, ReadPprofError>;

struct Strings<'a>(&'a [String]);

impl Strings<'_> {
    fn get(&self, index: i64) -> Result<&str> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(String::as_str)
            .ok_or(ReadPprofError::BadString {
                index,
                len: self.0.len(),
            })
    }

    /// `None` for index 0, pprof's "not set".
    fn optional(&self, index: i64) -> Result<Option<String>> {
        Ok(match index {
            0 => None,
            i => Some(self.get(i)?.to_string()),
        })
    }
}

fn kind_of_time_type(ty: &str, unit: &str) -> Option<ProfileKind> {
    match (ty, unit) {
        ("cpu", "nanoseconds") => Some(ProfileKind::Cpu),
        ("off_cpu", "nanoseconds") => Some(ProfileKind::OffCpu),
        ("wall", "nanoseconds") => Some(ProfileKind::Wall),
        _ => None,
    }
}

fn thread_state(label: &str) -> Option<ThreadState> {
    [
        ThreadState::OnCpu,
        ThreadState::Blocked,
        ThreadState::Runnable,
    ]
    .into_iter()
    .find(|s| s.label() == label)
}

/// The profile `proto` holds.
pub fn from_proto(proto: &protos::Profile) -> Result<Profile> {
    let strings = Strings(&proto.string_table);

    // Sample types: which value is the time, which are counts.
    let mut time: Option<(usize, ProfileKind)> = None;
    let mut times_found = Vec::new();
    let mut count_indices = Vec::new();
    let mut type_names = Vec::new();
    for (i, t) in proto.sample_type.iter().enumerate() {
        let (ty, unit) = (strings.get(t.ty)?, strings.get(t.unit)?);
        type_names.push(format!("{ty}/{unit}"));
        if let Some(kind) = kind_of_time_type(ty, unit) {
            times_found.push(format!("{ty}/{unit}"));
            time = Some((i, kind));
        } else if unit == "count" && matches!(ty, "samples" | "blocks") {
            count_indices.push(i);
        }
    }
    if times_found.len() > 1 {
        return Err(ReadPprofError::SeveralTimeTypes { found: times_found });
    }
    let (time_index, kind) = time.ok_or(ReadPprofError::NoTimeType { found: type_names })?;

    // The frequency comes back from the period of sampled kinds; off-CPU
    // time is not sampled (its period is 1) and has none.
    let frequency_hz = match proto.period {
        period if kind != ProfileKind::OffCpu && period > 1 => {
            let period = period as u64;
            (1_000_000_000 + period / 2) / period
        }
        _ => 0,
    };
    let meta = Meta {
        kind,
        target: match proto.comment.first() {
            Some(&c) => strings.get(c)?.to_string(),
            None => String::new(),
        },
        start_unix_nanos: u64::try_from(proto.time_nanos).unwrap_or(0),
        duration_nanos: u64::try_from(proto.duration_nanos).unwrap_or(0),
        frequency_hz,
    };

    // Mappings, except the kernel and Python pseudo-mappings, which only
    // mark frames.
    let mut mappings = Vec::new();
    let mut mapping_by_id: HashMap<u64, Option<usize>> = HashMap::new();
    let mut python_mappings: Vec<u64> = Vec::new();
    for m in &proto.mapping {
        let path = strings.get(m.filename)?;
        if path == KERNEL_MAPPING {
            mapping_by_id.insert(m.id, None);
            continue;
        }
        if path == PYTHON_MAPPING {
            python_mappings.push(m.id);
            continue;
        }
        mapping_by_id.insert(m.id, Some(mappings.len()));
        mappings.push(Mapping {
            start: m.memory_start,
            end: m.memory_limit,
            file_offset: m.file_offset,
            path: path.to_string(),
            build_id: strings.optional(m.build_id)?,
        });
    }

    let functions: HashMap<u64, &protos::Function> =
        proto.function.iter().map(|f| (f.id, f)).collect();
    let mut locations = Vec::with_capacity(proto.location.len());
    let mut location_by_id = HashMap::with_capacity(proto.location.len());
    for l in &proto.location {
        let lines = l
            .line
            .iter()
            .map(|line| {
                let function = functions.get(&line.function_id).ok_or_else(|| {
                    ReadPprofError::BadReference {
                        what: format!("location {}", l.id),
                        target: "function",
                        id: line.function_id,
                    }
                })?;
                Ok(Line {
                    function: strings.get(function.name)?.to_string(),
                    file: strings.optional(function.filename)?,
                    line: u32::try_from(line.line).ok().filter(|&n| n > 0),
                })
            })
            .collect::<Result<Vec<Line>>>()?;
        let (kind, mapping) = match l.mapping_id {
            0 if lines.first().is_some_and(|l| l.function.starts_with('[')) => {
                (FrameKind::Special, None)
            }
            0 => (FrameKind::User, None),
            id if python_mappings.contains(&id) => (FrameKind::Python, None),
            id => match mapping_by_id.get(&id) {
                Some(None) => (FrameKind::Kernel, None),
                Some(&Some(index)) => (FrameKind::User, Some(index)),
                None => {
                    return Err(ReadPprofError::BadReference {
                        what: format!("location {}", l.id),
                        target: "mapping",
                        id,
                    });
                }
            },
        };
        location_by_id.insert(l.id, locations.len());
        locations.push(Location {
            kind,
            address: l.address,
            mapping,
            lines,
        });
    }

    let mut samples = Vec::with_capacity(proto.sample.len());
    for (i, s) in proto.sample.iter().enumerate() {
        if s.value.len() != proto.sample_type.len() {
            return Err(ReadPprofError::ValueCount {
                sample: i,
                values: s.value.len(),
                types: proto.sample_type.len(),
            });
        }
        let value = |index: usize| {
            u64::try_from(s.value[index]).map_err(|_| ReadPprofError::NegativeValue {
                sample: i,
                value: s.value[index],
            })
        };
        let nanos = value(time_index)?;
        let count = if count_indices.is_empty() {
            // A profile without counts: each sample is one event.
            1
        } else {
            count_indices
                .iter()
                .map(|&c| value(c))
                .sum::<Result<u64>>()?
        };
        let mut sample = Sample {
            locations: s
                .location_id
                .iter()
                .map(|id| {
                    location_by_id
                        .get(id)
                        .copied()
                        .ok_or(ReadPprofError::BadReference {
                            what: format!("sample {i}"),
                            target: "location",
                            id: *id,
                        })
                })
                .collect::<Result<Vec<usize>>>()?,
            count,
            nanos,
            ..Default::default()
        };
        for label in &s.label {
            let number = |key: &'static str| {
                u32::try_from(label.num).map_err(|_| ReadPprofError::BadLabel {
                    sample: i,
                    key,
                    value: label.num.to_string(),
                    expected: "a 32-bit process or thread id",
                })
            };
            match strings.get(label.key)? {
                "pid" => sample.pid = number("pid")?,
                "tid" => sample.tid = number("tid")?,
                "comm" => sample.comm = strings.get(label.str)?.to_string(),
                "thread_state" => {
                    let value = strings.get(label.str)?;
                    sample.state = thread_state(value).ok_or_else(|| ReadPprofError::BadLabel {
                        sample: i,
                        key: "thread_state",
                        value: value.to_string(),
                        expected: "on-cpu, blocked or runnable",
                    })?;
                }
                // Labels other tools add are not part of the model.
                _ => {}
            }
        }
        samples.push(sample);
    }

    Ok(Profile {
        meta,
        mappings,
        locations,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::pprof::{decode, to_proto, write_pprof};
    use crate::output::test_profile::{demo_profile, off_cpu_profile, wall_profile};

    /// What `to_proto` keeps of `profile`: samples worth nothing are left
    /// out; on CPU, a sample's time is its count times the period; off-CPU
    /// profiles have no frequency.
    fn kept(mut profile: Profile) -> Profile {
        let period = profile.period_nanos();
        let kind = profile.meta.kind;
        profile.samples.retain(|s| match kind {
            ProfileKind::Cpu => s.count > 0,
            _ => s.nanos > 0,
        });
        if kind == ProfileKind::Cpu {
            for s in &mut profile.samples {
                s.nanos = s.count * period;
            }
        }
        if kind == ProfileKind::OffCpu {
            profile.meta.frequency_hz = 0;
        }
        profile
    }

    #[test]
    fn round_trips_cpu_off_cpu_and_wall_profiles() {
        for profile in [demo_profile(), wall_profile(), off_cpu_profile()] {
            let kind = profile.meta.kind;
            let read = from_proto(&to_proto(&profile)).unwrap();
            assert_eq!(read, kept(profile.clone()), "{kind:?}");
            // Through the gzip file format too.
            let mut bytes = Vec::new();
            write_pprof(&profile, &mut bytes).unwrap();
            assert_eq!(from_proto(&decode(&bytes).unwrap()).unwrap(), read);
        }
    }

    #[test]
    fn round_trip_keeps_frame_kinds() {
        let profile = wall_profile();
        let read = from_proto(&to_proto(&profile)).unwrap();
        let kinds = |p: &Profile| p.locations.iter().map(|l| l.kind).collect::<Vec<_>>();
        assert_eq!(kinds(&read), kinds(&profile));
        assert!(kinds(&read).contains(&FrameKind::Kernel));
        assert!(kinds(&read).contains(&FrameKind::Special));
        assert_eq!(read.mappings, profile.mappings, "no kernel pseudo-mapping");
        let states: Vec<ThreadState> = read.samples.iter().map(|s| s.state).collect();
        assert!(states.contains(&ThreadState::Blocked) && states.contains(&ThreadState::Runnable));
    }

    #[test]
    fn python_frames_round_trip_with_their_file_and_line() {
        let mut profile = demo_profile();
        profile.locations.push(Location {
            kind: FrameKind::Python,
            address: 0x7f00_1234_0000,
            mapping: None,
            lines: vec![Line {
                function: "Worker.run".into(),
                file: Some("/app/worker.py".into()),
                line: Some(42),
            }],
        });
        let python = profile.locations.len() - 1;
        profile.samples[0].locations.push(python);
        let read = from_proto(&to_proto(&profile)).unwrap();
        let found: Vec<&Location> = read
            .locations
            .iter()
            .filter(|l| l.kind == FrameKind::Python)
            .collect();
        assert_eq!(found.len(), 1, "{:?}", read.locations);
        assert_eq!(found[0].lines, profile.locations[python].lines);
        assert_eq!(read.mappings, profile.mappings, "no Python pseudo-mapping");
        assert!(
            read.frame_names(&read.samples[0])
                .contains(&"Worker.run (/app/worker.py:42)".to_string())
        );
    }

    fn strings(p: &mut protos::Profile, s: &str) -> i64 {
        if let Some(i) = p.string_table.iter().position(|x| x == s) {
            return i as i64;
        }
        p.string_table.push(s.to_string());
        p.string_table.len() as i64 - 1
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let mut proto = to_proto(&demo_profile());
        proto.sample_type.pop();
        proto.sample.iter_mut().for_each(|s| {
            s.value.pop();
        });
        let err = from_proto(&proto).unwrap_err();
        assert!(
            err.to_string().contains("no time sample type")
                && err.to_string().contains("samples/count"),
            "{err}"
        );

        let mut proto = to_proto(&demo_profile());
        let (ty, unit) = (
            strings(&mut proto, "wall"),
            strings(&mut proto, "nanoseconds"),
        );
        proto.sample_type.push(protos::ValueType { ty, unit });
        assert!(matches!(
            from_proto(&proto),
            Err(ReadPprofError::SeveralTimeTypes { .. })
        ));

        let mut proto = to_proto(&wall_profile());
        let bad = strings(&mut proto, "sleeping");
        let key = strings(&mut proto, "thread_state");
        let label = proto.sample[0]
            .label
            .iter_mut()
            .find(|l| l.key == key)
            .unwrap();
        label.str = bad;
        let err = from_proto(&proto).unwrap_err().to_string();
        assert!(err.contains("thread_state=\"sleeping\""), "{err}");

        let mut proto = to_proto(&demo_profile());
        proto.sample[0].location_id.push(999);
        assert!(matches!(
            from_proto(&proto),
            Err(ReadPprofError::BadReference { id: 999, .. })
        ));

        let mut proto = to_proto(&demo_profile());
        proto.sample[0].value[0] = -1;
        assert!(matches!(
            from_proto(&proto),
            Err(ReadPprofError::NegativeValue { .. })
        ));

        let mut proto = to_proto(&demo_profile());
        proto.mapping[0].filename = 10_000;
        assert!(matches!(
            from_proto(&proto),
            Err(ReadPprofError::BadString { index: 10_000, .. })
        ));
    }

    #[test]
    fn foreign_labels_are_ignored_and_missing_counts_are_one() {
        let mut proto = to_proto(&demo_profile());
        let key = strings(&mut proto, "span_id");
        let value = strings(&mut proto, "abc");
        proto.sample[0].label.push(protos::Label {
            key,
            str: value,
            ..Default::default()
        });
        // Only the time type left.
        proto.sample_type.remove(0);
        for s in &mut proto.sample {
            s.value.remove(0);
        }
        let read = from_proto(&proto).unwrap();
        assert!(read.samples.iter().all(|s| s.count == 1));
        assert_eq!(read.samples[0].nanos, 50 * (1_000_000_000 / 99));
    }
}

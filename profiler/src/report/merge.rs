//! Merging profiles (stored windows) into one: equal mappings and
//! locations are kept once, samples of the same thread, stack and state are
//! added up, and the time range spans every window. Profiles of different
//! kinds measure different things and are never merged.

use std::collections::{BTreeSet, HashMap};

use crate::profile::{FrameKind, Line, Profile, ProfileKind, ThreadState};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(
        "cannot merge a {} profile ({origin}) with {} profiles: they measure different things; \
         choose one kind (e.g. report cpu, off-cpu or wall windows separately)",
        kind_label(*.found), kind_label(*.expected)
    )]
    KindMismatch {
        expected: ProfileKind,
        found: ProfileKind,
        origin: String,
    },
}

fn kind_label(kind: ProfileKind) -> &'static str {
    crate::agent::store::kind_name(kind)
}

type MappingKey = (u64, u64, u64, String, Option<String>);
type LocationKey = (FrameKind, u64, Option<usize>, Vec<Line>);
type SampleKey = (u32, u32, String, Vec<usize>, ThreadState);

/// Merges profiles one at a time, so that many windows need not be held in
/// memory together.
#[derive(Debug, Default)]
pub struct Merger {
    profile: Profile,
    /// Kind of the first profile added.
    kind: Option<ProfileKind>,
    end_unix_nanos: u64,
    frequencies: BTreeSet<u64>,
    mappings: HashMap<MappingKey, usize>,
    locations: HashMap<LocationKey, usize>,
    samples: HashMap<SampleKey, usize>,
    added: usize,
}

impl Merger {
    pub fn new() -> Merger {
        Merger::default()
    }

    /// Adds `profile`; `origin` names it in errors (e.g. its file).
    pub fn add(&mut self, profile: Profile, origin: &str) -> Result<(), MergeError> {
        let meta = &profile.meta;
        match self.kind {
            None => self.kind = Some(meta.kind),
            Some(expected) if expected != meta.kind => {
                return Err(MergeError::KindMismatch {
                    expected,
                    found: meta.kind,
                    origin: origin.to_string(),
                });
            }
            Some(_) => {}
        }
        let out = &mut self.profile.meta;
        if self.added == 0 || meta.start_unix_nanos < out.start_unix_nanos {
            out.start_unix_nanos = meta.start_unix_nanos;
        }
        self.end_unix_nanos = self
            .end_unix_nanos
            .max(meta.start_unix_nanos.saturating_add(meta.duration_nanos));
        if meta.frequency_hz != 0 {
            self.frequencies.insert(meta.frequency_hz);
        }
        self.added += 1;

        let mapping_index: Vec<usize> = profile
            .mappings
            .into_iter()
            .map(|m| {
                let key = (
                    m.start,
                    m.end,
                    m.file_offset,
                    m.path.clone(),
                    m.build_id.clone(),
                );
                *self.mappings.entry(key).or_insert_with(|| {
                    self.profile.mappings.push(m);
                    self.profile.mappings.len() - 1
                })
            })
            .collect();
        let location_index: Vec<usize> = profile
            .locations
            .into_iter()
            .map(|l| {
                let mapping = l.mapping.map(|m| mapping_index[m]);
                let key = (l.kind, l.address, mapping, l.lines.clone());
                *self.locations.entry(key).or_insert_with(|| {
                    self.profile
                        .locations
                        .push(crate::profile::Location { mapping, ..l });
                    self.profile.locations.len() - 1
                })
            })
            .collect();
        for mut sample in profile.samples {
            for l in &mut sample.locations {
                *l = location_index[*l];
            }
            let key = (
                sample.pid,
                sample.tid,
                sample.comm.clone(),
                sample.locations.clone(),
                sample.state,
            );
            match self.samples.get(&key) {
                Some(&i) => {
                    let existing = &mut self.profile.samples[i];
                    existing.count = existing.count.saturating_add(sample.count);
                    existing.nanos = existing.nanos.saturating_add(sample.nanos);
                }
                None => {
                    self.samples.insert(key, self.profile.samples.len());
                    self.profile.samples.push(sample);
                }
            }
        }
        Ok(())
    }

    /// Profiles added so far.
    pub fn len(&self) -> usize {
        self.added
    }

    pub fn is_empty(&self) -> bool {
        self.added == 0
    }

    /// The distinct sampling frequencies of the profiles added (off-CPU
    /// profiles have none). More than one makes CPU sample counts from
    /// different windows weigh differently; times stay exact.
    pub fn frequencies(&self) -> &BTreeSet<u64> {
        &self.frequencies
    }

    /// The merged profile. Its frequency is the highest of the windows';
    /// its target is left for the caller to name.
    pub fn finish(mut self) -> Profile {
        let meta = &mut self.profile.meta;
        meta.kind = self.kind.unwrap_or_default();
        meta.duration_nanos = self.end_unix_nanos.saturating_sub(meta.start_unix_nanos);
        meta.frequency_hz = self.frequencies.last().copied().unwrap_or(0);
        self.profile
    }
}

/// Merges `profiles` in order; see [`Merger`].
pub fn merge(profiles: impl IntoIterator<Item = Profile>) -> Result<Profile, MergeError> {
    let mut merger = Merger::new();
    for (i, profile) in profiles.into_iter().enumerate() {
        merger.add(profile, &format!("profile {}", i + 1))?;
    }
    Ok(merger.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_profile::{demo_profile, off_cpu_profile, wall_profile};
    use crate::profile::{Location, Mapping, Sample};

    #[test]
    fn merging_a_profile_with_itself_doubles_values_and_keeps_the_rest() {
        let profile = demo_profile();
        let merged = merge([profile.clone(), profile.clone()]).unwrap();
        assert_eq!(merged.mappings, profile.mappings);
        assert_eq!(merged.locations, profile.locations);
        assert_eq!(merged.samples.len(), profile.samples.len());
        for (m, p) in merged.samples.iter().zip(&profile.samples) {
            assert_eq!((m.count, m.nanos), (2 * p.count, 2 * p.nanos));
            assert_eq!(
                (m.pid, m.tid, &m.comm, &m.locations),
                (p.pid, p.tid, &p.comm, &p.locations)
            );
        }
        assert_eq!(merged.total_samples(), 2 * profile.total_samples());
        assert_eq!(merged.meta.start_unix_nanos, profile.meta.start_unix_nanos);
        assert_eq!(merged.meta.duration_nanos, profile.meta.duration_nanos);
        assert_eq!(merged.meta.frequency_hz, 99);
    }

    #[test]
    fn windows_of_different_processes_share_equal_frames_only() {
        let first = demo_profile();
        // A second window: later, another process running the same binary
        // at the same address, plus a library at a different address.
        let mut second = demo_profile();
        second.meta.start_unix_nanos += 20_000_000_000;
        second.mappings[1].start += 0x1000_0000;
        second.mappings[1].end += 0x1000_0000;
        for s in &mut second.samples {
            s.pid += 1000;
        }
        let merged = merge([first.clone(), second.clone()]).unwrap();
        assert_eq!(
            merged.mappings.len(),
            first.mappings.len() + 1,
            "libc twice"
        );
        // Locations in the moved libc mapping are new; the others are shared.
        let in_libc = first
            .locations
            .iter()
            .filter(|l| l.mapping == Some(1))
            .count();
        assert_eq!(merged.locations.len(), first.locations.len() + in_libc);
        assert_eq!(merged.samples.len(), 2 * first.samples.len());
        assert_eq!(merged.total_samples(), 2 * first.total_samples());
        // The time range spans both windows.
        assert_eq!(merged.meta.start_unix_nanos, first.meta.start_unix_nanos);
        assert_eq!(merged.meta.duration_nanos, 32_000_000_000);
        // Every sample still names the same frames.
        let frames = |p: &Profile| {
            let mut all: Vec<Vec<String>> = p.samples.iter().map(|s| p.frame_names(s)).collect();
            all.sort();
            all
        };
        let mut expected = frames(&first);
        expected.extend(frames(&second));
        expected.sort();
        assert_eq!(frames(&merged), expected);
    }

    #[test]
    fn samples_are_told_apart_by_state() {
        let merged = merge([wall_profile(), wall_profile()]).unwrap();
        assert_eq!(merged.meta.kind, ProfileKind::Wall);
        assert_eq!(merged.samples.len(), wall_profile().samples.len());
        assert_eq!(merged.total_value(), 2 * wall_profile().total_value());
        let blocked: u64 = merged
            .samples
            .iter()
            .filter(|s| s.state == ThreadState::Blocked)
            .map(|s| s.nanos)
            .sum();
        assert_eq!(blocked, 6_000_000_000);
    }

    #[test]
    fn kinds_are_not_mixed() {
        let err = merge([demo_profile(), off_cpu_profile()]).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cannot merge a off-cpu profile (profile 2) with cpu profiles"),
            "{message}"
        );
    }

    #[test]
    fn unmapped_locations_and_remapped_indices() {
        let line = |f: &str| Line {
            function: f.into(),
            file: None,
            line: None,
        };
        let mapping = |path: &str| Mapping {
            start: 0x1000,
            end: 0x2000,
            file_offset: 0,
            path: path.into(),
            build_id: None,
        };
        let a = Profile {
            mappings: vec![mapping("/a")],
            locations: vec![Location {
                kind: FrameKind::User,
                address: 0x1100,
                mapping: Some(0),
                lines: vec![line("fa")],
            }],
            samples: vec![Sample {
                pid: 1,
                tid: 1,
                comm: "a".into(),
                locations: vec![0],
                count: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        // Same address, another file: another location.
        let b = Profile {
            mappings: vec![mapping("/b")],
            locations: vec![Location {
                mapping: Some(0),
                lines: vec![line("fb")],
                ..a.locations[0].clone()
            }],
            samples: a.samples.clone(),
            ..Default::default()
        };
        let merged = merge([a, b]).unwrap();
        assert_eq!(merged.mappings.len(), 2);
        assert_eq!(merged.locations[1].mapping, Some(1));
        assert_eq!(merged.samples[1].locations, [1]);
        assert_eq!(merged.samples.len(), 2);
        assert_eq!(merge([]).unwrap(), Profile::default());
    }
}

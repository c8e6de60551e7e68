//! The folded ("collapsed") stack format of Brendan Gregg's FlameGraph tools:
//! one line per distinct stack, `root;...;leaf COUNT`, as `stackcollapse-*.pl`
//! and `inferno-collapse-*` write it and `flamegraph.pl` and
//! `inferno-flamegraph` read it.

use foldhash::HashMap;
use std::io::{self, Write};

use crate::profile::Profile;

/// The folded lines of `profile`: frames root first (the command name is the
/// root, see [`Profile::frame_names`]), equal stacks summed, samples with
/// value 0 left out, lines sorted lexicographically. Values are sample counts
/// in a CPU profile and nanoseconds in an off-CPU or wall profile
/// ([`Profile::value`]).
pub fn folded_lines(profile: &Profile) -> Vec<String> {
    // Stacks are merged by their names' ids before any line is built: with
    // many short-lived processes every sample is one process's own, yet
    // there are far fewer stacks of names.
    let ids = profile.location_frame_ids();
    let mut by_ids: HashMap<(&str, Vec<u32>), u64> = Default::default();
    for sample in profile.samples.iter().filter(|s| profile.value(s) > 0) {
        let names: Vec<u32> = sample
            .locations
            .iter()
            .rev()
            .flat_map(|&loc| ids.location(loc).iter().copied())
            .collect();
        *by_ids.entry((&sample.comm, names)).or_default() += profile.value(sample);
    }
    // Distinct commands can share a root name once sanitized: merge again.
    let mut counts: HashMap<String, u64> =
        HashMap::with_capacity_and_hasher(by_ids.len(), Default::default());
    for ((comm, names), value) in by_ids {
        let mut stack = Profile::root_frame_name(comm);
        for id in names {
            stack.push(';');
            stack.push_str(&ids.names[id as usize]);
        }
        *counts.entry(stack).or_default() += value;
    }
    let mut lines: Vec<String> = counts
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect();
    // Sorting whole lines is what inferno-flamegraph does with its input, so
    // the file is already in the order it would draw it in.
    lines.sort_unstable();
    lines
}

/// Writes [`folded_lines`], each ended by a newline.
pub fn write_folded<W: Write>(profile: &Profile, writer: W) -> io::Result<()> {
    write_lines(&folded_lines(profile), writer)
}

/// Writes folded lines made already, one per line.
pub fn write_lines<W: Write>(lines: &[String], mut writer: W) -> io::Result<()> {
    for line in lines {
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_profile::{check_golden, demo_profile};
    use crate::profile::{FrameKind, Line, Location, Sample};

    fn user(name: &str) -> Location {
        Location {
            kind: FrameKind::User,
            address: 0,
            mapping: None,
            lines: vec![Line {
                function: name.into(),
                file: None,
                line: None,
            }],
        }
    }

    fn sample(comm: &str, locations: &[usize], count: u64) -> Sample {
        Sample {
            pid: 1,
            tid: 1,
            comm: comm.into(),
            locations: locations.to_vec(),
            count,
            ..Default::default()
        }
    }

    #[test]
    fn equal_stacks_are_merged_and_lines_sorted() {
        let profile = Profile {
            locations: vec![user("main"), user("b"), user("a")],
            samples: vec![
                sample("p", &[1, 0], 2),
                sample("p", &[2, 0], 1),
                sample("p", &[1, 0], 3),
                sample("p", &[0], 4),
                sample("o", &[0], 1),
                sample("p", &[2, 0], 0),
            ],
            ..Default::default()
        };
        assert_eq!(
            folded_lines(&profile),
            ["o;main 1", "p;main 4", "p;main;a 1", "p;main;b 5"]
        );
    }

    #[test]
    fn zero_count_samples_are_skipped() {
        let profile = Profile {
            locations: vec![user("main")],
            samples: vec![sample("p", &[0], 0)],
            ..Default::default()
        };
        assert!(folded_lines(&profile).is_empty());
    }

    #[test]
    fn empty_profile_gives_no_lines() {
        assert!(folded_lines(&Profile::default()).is_empty());
        let mut out = Vec::new();
        write_folded(&Profile::default(), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn write_folded_ends_each_line_with_newline() {
        let profile = Profile {
            locations: vec![user("main")],
            samples: vec![sample("p", &[0], 7)],
            ..Default::default()
        };
        let mut out = Vec::new();
        write_folded(&profile, &mut out).unwrap();
        assert_eq!(out, b"p;main 7\n");
    }

    #[test]
    fn demo_profile_matches_golden_file() {
        let profile = demo_profile();
        let mut out = Vec::new();
        write_folded(&profile, &mut out).unwrap();
        // The total is kept: every non-zero sample is in exactly one line.
        let text = String::from_utf8(out.clone()).unwrap();
        let total: u64 = text
            .lines()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, profile.total_samples());
        check_golden("stacks.folded", &out);
    }
}

//! One window's samples into one pprof per process: the cap on unique
//! stacks, the split by process, symbolization and encoding. Plain data in
//! and out (the symbolizer behind [`Resolve`]), so it is tested without root.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use ::pprof::protos::Message;

use crate::agent::store::{WindowKey, unix_millis};
use crate::aggregate::{AggregateOptions, ERRNO_OVER_STACK_CAP, Resolve, aggregate_with};
use crate::profile::{Meta, ProfileKind, ThreadState};
use crate::raw::{KernelStats, RawProfile, RawSample, RawStack};

/// What [`cap_stacks`] folded away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow {
    pub stacks: u64,
    pub samples: u64,
}

/// Keeps the `max` heaviest unique stacks of a window; the others are
/// folded, per thread, into one sample whose stack is the over-the-cap
/// marker, so their samples still count (and are counted here).
pub fn cap_stacks(samples: &mut Vec<RawSample>, max: usize) -> Overflow {
    if samples.len() <= max {
        return Overflow::default();
    }
    samples.sort_by_key(|s| std::cmp::Reverse((s.count, s.nanos)));
    let rest = samples.split_off(max);
    let mut overflow = Overflow::default();
    let mut folded: BTreeMap<(u32, u32, String), (u64, u64)> = BTreeMap::new();
    for sample in rest {
        overflow.stacks += 1;
        overflow.samples += sample.count;
        let entry = folded
            .entry((sample.tgid, sample.tid, sample.comm))
            .or_default();
        entry.0 += sample.count;
        entry.1 += sample.nanos;
    }
    for ((tgid, tid, comm), (count, nanos)) in folded {
        samples.push(RawSample {
            tgid,
            tid,
            comm,
            user_stack: RawStack::Lost {
                errno: -ERRNO_OVER_STACK_CAP,
            },
            kernel_stack: RawStack::Absent,
            count,
            nanos,
            state: Default::default(),
        });
    }
    overflow
}

/// The samples of each process (tgid).
pub fn split_by_process(samples: Vec<RawSample>) -> BTreeMap<u32, Vec<RawSample>> {
    let mut by_process: BTreeMap<u32, Vec<RawSample>> = BTreeMap::new();
    for sample in samples {
        by_process.entry(sample.tgid).or_default().push(sample);
    }
    by_process
}

/// A process's command name: its main thread's, else its busiest thread's.
pub fn process_comm(tgid: u32, samples: &[RawSample]) -> String {
    if let Some(main) = samples.iter().find(|s| s.tid == tgid) {
        return main.comm.clone();
    }
    let mut by_comm: HashMap<&str, u64> = HashMap::new();
    for s in samples {
        *by_comm.entry(&s.comm).or_default() += s.count.max(1);
    }
    by_comm
        .into_iter()
        .max_by_key(|(comm, n)| (*n, std::cmp::Reverse(*comm)))
        .map_or_else(|| "unknown".to_string(), |(c, _)| c.to_string())
}

/// One process's profile of one window, encoded.
#[derive(Clone, Debug)]
pub struct WindowProfile {
    pub key: WindowKey,
    /// The uncompressed pprof message.
    pub pprof: Vec<u8>,
    pub samples: u64,
    pub unique_stacks: usize,
}

/// The window `[start, end)`: one profile per process and kind (on-CPU
/// samples, and off-CPU intervals when the agent records them).
pub fn build(
    samples: Vec<RawSample>,
    start: SystemTime,
    end: SystemTime,
    frequency_hz: u64,
    resolver: &mut dyn Resolve,
    options: &AggregateOptions,
) -> Vec<WindowProfile> {
    let (on_cpu, off_cpu): (Vec<RawSample>, Vec<RawSample>) = samples
        .into_iter()
        .partition(|s| s.state == ThreadState::OnCpu);
    let mut out = Vec::new();
    for (kind, samples) in [(ProfileKind::Cpu, on_cpu), (ProfileKind::OffCpu, off_cpu)] {
        for (tgid, samples) in split_by_process(samples) {
            out.extend(build_one(
                kind,
                tgid,
                samples,
                (start, end),
                frequency_hz,
                resolver,
                options,
            ));
        }
    }
    out
}

fn build_one(
    kind: ProfileKind,
    tgid: u32,
    samples: Vec<RawSample>,
    (start, end): (SystemTime, SystemTime),
    frequency_hz: u64,
    resolver: &mut dyn Resolve,
    options: &AggregateOptions,
) -> Option<WindowProfile> {
    let comm = process_comm(tgid, &samples);
    let raw = RawProfile {
        samples,
        stats: KernelStats::default(),
    };
    let meta = Meta {
        kind,
        target: format!("pid {tgid} ({comm})"),
        start_unix_nanos: start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        duration_nanos: end.duration_since(start).map_or(0, |d| d.as_nanos() as u64),
        frequency_hz,
    };
    let profile = aggregate_with(&raw, resolver, meta, options);
    if profile.total_value() == 0 {
        return None;
    }
    Some(WindowProfile {
        key: WindowKey {
            start_unix_millis: unix_millis(start),
            end_unix_millis: unix_millis(end).max(unix_millis(start)),
            pid: tgid,
            comm,
            kind,
        },
        pprof: crate::output::pprof::to_proto(&profile).encode_to_vec(),
        samples: profile.total_samples(),
        unique_stacks: profile.samples.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use symbolizer::{Frame, Symbol};

    struct Names;

    impl Resolve for Names {
        fn user(&mut self, _pid: u32, addrs: &[u64]) -> Vec<Symbol> {
            addrs
                .iter()
                .map(|a| Symbol {
                    frames: [Frame {
                        function: format!("fn_{a:x}"),
                        file: None,
                        line: None,
                    }]
                    .into(),
                    symbolized: true,
                    mapping: None,
                })
                .collect()
        }
        fn kernel(&mut self, addrs: &[u64]) -> Vec<Symbol> {
            self.user(0, addrs)
        }
        fn mapping(&self, _pid: u32, _index: usize) -> Option<crate::profile::Mapping> {
            None
        }
    }

    fn sample(tgid: u32, tid: u32, comm: &str, leaf: u64, count: u64) -> RawSample {
        RawSample {
            tgid,
            tid,
            comm: comm.into(),
            user_stack: RawStack::Frames(vec![leaf, 0x1000]),
            kernel_stack: RawStack::Absent,
            count,
            nanos: 0,
            state: Default::default(),
        }
    }

    #[test]
    fn caps_unique_stacks_and_keeps_their_samples() {
        let mut samples: Vec<RawSample> = (0..10)
            .map(|i| sample(7, 7, "app", 0x2000 + i, i + 1))
            .collect();
        let overflow = cap_stacks(&mut samples, 4);
        assert_eq!(overflow.stacks, 6);
        assert_eq!(overflow.samples, 1 + 2 + 3 + 4 + 5 + 6);
        // 4 kept (the heaviest) and 1 marker.
        assert_eq!(samples.len(), 5);
        assert_eq!(samples.iter().map(|s| s.count).sum::<u64>(), 55);
        assert!(samples[..4].iter().all(|s| s.count >= 7));
        assert_eq!(
            samples[4].user_stack,
            RawStack::Lost {
                errno: -ERRNO_OVER_STACK_CAP
            }
        );
        let mut few = vec![sample(1, 1, "a", 1, 1)];
        assert_eq!(cap_stacks(&mut few, 4), Overflow::default());
    }

    #[test]
    fn one_profile_per_process_named_by_its_main_thread() {
        let samples = vec![
            sample(10, 11, "worker", 0x2000, 3),
            sample(10, 10, "server", 0x2100, 1),
            sample(20, 21, "batch", 0x2200, 5),
        ];
        let start = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let end = start + std::time::Duration::from_secs(10);
        let profiles = build(
            samples,
            start,
            end,
            19,
            &mut Names,
            &AggregateOptions::default(),
        );
        assert_eq!(profiles.len(), 2);
        assert_eq!(
            (profiles[0].key.pid, profiles[0].key.comm.as_str()),
            (10, "server")
        );
        assert_eq!(
            (profiles[1].key.pid, profiles[1].key.comm.as_str()),
            (20, "batch")
        );
        assert_eq!(profiles[0].samples, 4);
        assert_eq!(profiles[0].key.start_unix_millis, 1_700_000_000_000);
        assert_eq!(profiles[0].key.end_unix_millis, 1_700_000_010_000);
        let decoded = crate::output::pprof::decode(&profiles[1].pprof).unwrap();
        assert_eq!(decoded.sample.len(), 1);
        assert!(decoded.string_table.iter().any(|s| s == "fn_2200"));
    }

    #[test]
    fn off_cpu_intervals_make_their_own_profile_in_nanoseconds() {
        let mut blocked = sample(10, 10, "server", 0x2300, 2);
        blocked.state = ThreadState::Blocked;
        blocked.nanos = 1_500_000_000;
        let samples = vec![sample(10, 10, "server", 0x2000, 3), blocked];
        let start = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let end = start + std::time::Duration::from_secs(10);
        let profiles = build(
            samples,
            start,
            end,
            19,
            &mut Names,
            &AggregateOptions::default(),
        );
        let kinds: Vec<(ProfileKind, u32, u64)> = profiles
            .iter()
            .map(|p| (p.key.kind, p.key.pid, p.samples))
            .collect();
        assert_eq!(
            kinds,
            [(ProfileKind::Cpu, 10, 3), (ProfileKind::OffCpu, 10, 2)]
        );
        let off = crate::output::pprof::decode(&profiles[1].pprof).unwrap();
        let types: Vec<&str> = off
            .sample_type
            .iter()
            .map(|t| off.string_table[t.ty as usize].as_str())
            .collect();
        assert_eq!(types, ["blocks", "off_cpu"]);
        assert_eq!(off.sample[0].value, [2, 1_500_000_000]);
        assert!(off.string_table.iter().any(|s| s == "fn_2300"));
        assert!(!off.string_table.iter().any(|s| s == "fn_2000"));
    }
}

//! The ways each workload is run: alone, and under each tool in each scope.
//! Each round runs the workload alone first (the baseline of that round's
//! slowdowns), then under each tool, in an order that turns by one place each
//! round ([`round_order`]), so that no tool always runs in the same place
//! after the run alone: on this kind of shared VM, where the workload's time
//! drifts within a round, a fixed order favoured whichever tool ran where
//! the drift was low.

use anyhow::{Result, bail};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Setup {
    /// The workload with no tool running: the baseline.
    #[serde(rename = "alone")]
    Alone,
    /// `profiler record -F HZ -o out.svg -- WORKLOAD`: the workload's processes only.
    #[serde(rename = "profiler")]
    Profiler,
    /// `profiler record -a -F HZ -o out.svg -o out.folded`, ended with SIGINT.
    #[serde(rename = "profiler-a")]
    ProfilerAll,
    /// `perf record -F HZ -g -- WORKLOAD`, then `perf script | inferno-collapse-perf | inferno-flamegraph`.
    #[serde(rename = "perf")]
    Perf,
    /// `perf record -a -F HZ -g`, ended with SIGINT, then the same pipeline.
    #[serde(rename = "perf-a")]
    PerfAll,
    /// `perf record -F HZ --call-graph dwarf -- WORKLOAD` (a copy of 8 KiB of
    /// user stack per sample, unwound by `perf script`), then the same
    /// pipeline as `perf`.
    #[serde(rename = "perf-dwarf")]
    PerfDwarf,
    /// `bpftrace -e 'profile:hz:HZ { @[ustack, kstack] = count(); }'` (always system-wide).
    #[serde(rename = "bpftrace")]
    Bpftrace,
}

impl Setup {
    pub const ALL: [Setup; 7] = [
        Setup::Alone,
        Setup::Profiler,
        Setup::ProfilerAll,
        Setup::Perf,
        Setup::PerfAll,
        Setup::PerfDwarf,
        Setup::Bpftrace,
    ];

    /// The name on the command line (`--setups`) and in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Setup::Alone => "alone",
            Setup::Profiler => "profiler",
            Setup::ProfilerAll => "profiler-a",
            Setup::Perf => "perf",
            Setup::PerfAll => "perf-a",
            Setup::PerfDwarf => "perf-dwarf",
            Setup::Bpftrace => "bpftrace",
        }
    }

    /// The name in the table and the chart.
    pub fn label(self) -> &'static str {
        match self {
            Setup::Alone => "alone",
            Setup::Profiler => "profiler",
            Setup::ProfilerAll => "profiler -a",
            Setup::Perf => "perf",
            Setup::PerfAll => "perf -a",
            Setup::PerfDwarf => "perf dwarf",
            Setup::Bpftrace => "bpftrace",
        }
    }

    /// Samples every process on the system, so it is started before the
    /// workload and stopped with SIGINT after it.
    pub fn system_wide(self) -> bool {
        matches!(self, Setup::ProfilerAll | Setup::PerfAll | Setup::Bpftrace)
    }

    pub fn is_ours(self) -> bool {
        matches!(self, Setup::Profiler | Setup::ProfilerAll)
    }

    /// The setup of a competing tool with the same scope, to compare with.
    pub fn perf_counterpart(self) -> Option<Setup> {
        match self {
            Setup::Profiler => Some(Setup::Perf),
            Setup::ProfilerAll => Some(Setup::PerfAll),
            _ => None,
        }
    }

    /// perf with the same scope unwinding without frame pointers
    /// (`--call-graph dwarf`), to compare with (issue 22).
    pub fn dwarf_counterpart(self) -> Option<Setup> {
        match self {
            Setup::Profiler => Some(Setup::PerfDwarf),
            _ => None,
        }
    }

    /// Parses a comma-separated list; `alone` is always added, first, as
    /// every slowdown is measured against it.
    pub fn parse_list(list: &str) -> Result<Vec<Setup>> {
        let mut setups = vec![Setup::Alone];
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(setup) = Setup::ALL.into_iter().find(|s| s.key() == name) else {
                bail!(
                    "unknown setup {name:?}: one of {}",
                    Setup::ALL.map(Setup::key).join(", ")
                );
            };
            if !setups.contains(&setup) {
                setups.push(setup);
            }
        }
        setups.sort();
        Ok(setups)
    }
}

/// The order of `round` (from 0): `alone` first, then the other setups of
/// `setups` (in [`Setup::parse_list`]'s order) turned left by `round` places,
/// so that over as many rounds as there are tools each takes every place once.
pub fn round_order(setups: &[Setup], round: u32) -> Vec<Setup> {
    let mut tools: Vec<Setup> = setups
        .iter()
        .copied()
        .filter(|&s| s != Setup::Alone)
        .collect();
    if !tools.is_empty() {
        let turn = round as usize % tools.len();
        tools.rotate_left(turn);
    }
    let alone = setups.contains(&Setup::Alone).then_some(Setup::Alone);
    alone.into_iter().chain(tools).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_turn_the_tools_order_and_keep_alone_first() {
        let setups = Setup::parse_list("profiler,perf-a,bpftrace").unwrap();
        assert_eq!(
            round_order(&setups, 0),
            [
                Setup::Alone,
                Setup::Profiler,
                Setup::PerfAll,
                Setup::Bpftrace
            ]
        );
        assert_eq!(
            round_order(&setups, 1),
            [
                Setup::Alone,
                Setup::PerfAll,
                Setup::Bpftrace,
                Setup::Profiler
            ]
        );
        assert_eq!(round_order(&setups, 3), round_order(&setups, 0));
        // Over three rounds each tool runs once in each of the three places.
        for place in 1..4 {
            let mut seen: Vec<Setup> = (0..3).map(|r| round_order(&setups, r)[place]).collect();
            seen.sort();
            assert_eq!(seen, [Setup::Profiler, Setup::PerfAll, Setup::Bpftrace]);
        }
        assert_eq!(round_order(&[Setup::Alone], 5), [Setup::Alone]);
    }

    #[test]
    fn parses_lists_keeping_alone_first_and_round_order() {
        assert_eq!(
            Setup::parse_list("bpftrace,profiler").unwrap(),
            vec![Setup::Alone, Setup::Profiler, Setup::Bpftrace]
        );
        assert_eq!(Setup::parse_list("").unwrap(), vec![Setup::Alone]);
        assert!(Setup::parse_list("perf,dtrace").is_err());
        let all = Setup::ALL.map(Setup::key).join(",");
        assert_eq!(Setup::parse_list(&all).unwrap(), Setup::ALL.to_vec());
    }

    #[test]
    fn json_names_are_the_keys() {
        for setup in Setup::ALL {
            assert_eq!(
                serde_json::to_string(&setup).unwrap(),
                format!("\"{}\"", setup.key())
            );
        }
    }
}

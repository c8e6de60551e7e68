//! Profiles the Pyroscope tests push (`ingest.rs`, `upload.rs`), shared as a
//! module of each test file (`#[path]`): the `profiler` crate is only a
//! dev-dependency of the tests package, so `profiler_tests` cannot hold it.

use profiler::profile::{FrameKind, Line, Location, Meta, Profile, ProfileKind, Sample};

/// A CPU profile of one stack (`main`) of process `pid`, `shop-worker`:
/// `count` samples at `frequency_hz`, over `duration_nanos` from
/// `start_unix_nanos`, for target `target`.
pub fn one_stack_profile(
    pid: u32,
    target: String,
    start_unix_nanos: u64,
    duration_nanos: u64,
    frequency_hz: u64,
    count: u64,
) -> Profile {
    Profile {
        meta: Meta {
            kind: ProfileKind::Cpu,
            target,
            start_unix_nanos,
            duration_nanos,
            frequency_hz,
        },
        mappings: vec![],
        locations: vec![Location {
            kind: FrameKind::User,
            address: 0x401000,
            mapping: None,
            lines: vec![Line {
                function: "main".into(),
                file: None,
                line: None,
            }],
        }],
        samples: vec![Sample {
            pid,
            tid: pid,
            comm: "shop-worker".into(),
            locations: vec![0],
            count,
            nanos: count * (1_000_000_000 / frequency_hz),
            ..Default::default()
        }],
    }
}

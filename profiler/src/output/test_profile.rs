//! A fixed, hand-made profile shared by the output and summary tests, and the
//! golden-file helper.
//!
//! The profile has, on purpose: user frames in the main binary and in libc,
//! an inlined frame, recursion, kernel frames (a syscall under a user stack,
//! and a kernel-only thread), an unsymbolized `module+0xoffset` frame, a
//! mapping nothing was symbolized in, a special marker frame, two samples
//! with equal stacks (different threads), two addresses in one function, and
//! a sample with count 0.

use std::path::PathBuf;

use crate::profile::{
    FrameKind, Line, Location, Mapping, Meta, Profile, ProfileKind, Sample, ThreadState,
};

pub const DEMO_BUILD_ID: &str = "0123456789abcdef0123456789abcdef01234567";
pub const LIBC_BUILD_ID: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn line(function: &str, file: Option<&str>, line: Option<u32>) -> Line {
    Line {
        function: function.into(),
        file: file.map(Into::into),
        line,
    }
}

fn loc(kind: FrameKind, address: u64, mapping: Option<usize>, lines: Vec<Line>) -> Location {
    Location {
        kind,
        address,
        mapping,
        lines,
    }
}

fn sample(pid: u32, tid: u32, comm: &str, locations: &[usize], count: u64) -> Sample {
    Sample {
        pid,
        tid,
        comm: comm.into(),
        locations: locations.to_vec(),
        count,
        ..Default::default()
    }
}

/// Location indices of [`demo_profile`], for tests that look at them.
pub mod locs {
    pub const START: usize = 0;
    pub const LIBC_START: usize = 1;
    pub const MAIN: usize = 2;
    pub const COMPUTE_MIX: usize = 3;
    pub const FIB: usize = 4;
    pub const LIBC_WRITE: usize = 5;
    pub const ENTRY_SYSCALL: usize = 6;
    pub const DO_SYSCALL: usize = 7;
    pub const KSYS_WRITE: usize = 8;
    pub const VFS_WRITE: usize = 9;
    pub const LOST: usize = 10;
    pub const RET_FROM_FORK: usize = 11;
    pub const WORKER_THREAD: usize = 12;
    pub const PROCESS_ONE_WORK: usize = 13;
    pub const FIB_2: usize = 14;
    pub const UNKNOWN_LIB: usize = 15;
}

pub fn demo_profile() -> Profile {
    use FrameKind::{Kernel, Special, User};
    use locs::*;

    let mappings = vec![
        Mapping {
            start: 0x400000,
            end: 0x500000,
            file_offset: 0,
            path: "/usr/bin/demo".into(),
            build_id: Some(DEMO_BUILD_ID.into()),
        },
        Mapping {
            start: 0x7f00_0002_8000,
            end: 0x7f00_001b_0000,
            file_offset: 0x28000,
            path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
            build_id: Some(LIBC_BUILD_ID.into()),
        },
        Mapping {
            start: 0x7f00_1000_0000,
            end: 0x7f00_1001_0000,
            file_offset: 0x1000,
            path: "/opt/vendor/libunknown.so".into(),
            build_id: None,
        },
    ];
    let locations = vec![
        loc(User, 0x401000, Some(0), vec![line("_start", None, None)]),
        loc(
            User,
            0x7f00_0002_9d90,
            Some(1),
            vec![line("__libc_start_call_main", None, None)],
        ),
        loc(
            User,
            0x401200,
            Some(0),
            vec![line("main", Some("src/main.rs"), Some(10))],
        ),
        loc(
            User,
            0x401300,
            Some(0),
            vec![
                line("demo::hash::mix", Some("src/hash.rs"), Some(7)),
                line("demo::compute", Some("src/main.rs"), Some(22)),
            ],
        ),
        loc(
            User,
            0x401400,
            Some(0),
            vec![line("demo::fib", Some("src/main.rs"), Some(30))],
        ),
        loc(
            User,
            0x7f00_0011_a2b3,
            Some(1),
            vec![line("libc.so.6+0x11a2b3", None, None)],
        ),
        loc(
            Kernel,
            0xffff_ffff_8200_0099,
            None,
            vec![line("entry_SYSCALL_64_after_hwframe", None, None)],
        ),
        loc(
            Kernel,
            0xffff_ffff_81e0_1234,
            None,
            vec![line("do_syscall_64", None, None)],
        ),
        loc(
            Kernel,
            0xffff_ffff_8140_5678,
            None,
            vec![line("ksys_write", None, None)],
        ),
        loc(
            Kernel,
            0xffff_ffff_8140_1111,
            None,
            vec![line("vfs_write", None, None)],
        ),
        loc(Special, 0, None, vec![line("[lost stack]", None, None)]),
        loc(
            Kernel,
            0xffff_ffff_8100_2000,
            None,
            vec![line("ret_from_fork", None, None)],
        ),
        loc(
            Kernel,
            0xffff_ffff_8110_3000,
            None,
            vec![line("worker_thread", None, None)],
        ),
        loc(
            Kernel,
            0xffff_ffff_8110_4000,
            None,
            vec![line("process_one_work", None, None)],
        ),
        loc(
            User,
            0x401410,
            Some(0),
            vec![line("demo::fib", Some("src/main.rs"), Some(31))],
        ),
        loc(
            User,
            0x7f00_1000_0042,
            Some(2),
            vec![line("libunknown.so+0x1042", None, None)],
        ),
    ];
    let user_base = [MAIN, LIBC_START, START];
    let with_base =
        |leaf: &[usize]| -> Vec<usize> { leaf.iter().chain(&user_base).copied().collect() };
    let samples = vec![
        sample(100, 100, "demo", &with_base(&[COMPUTE_MIX]), 50),
        sample(100, 101, "demo", &with_base(&[COMPUTE_MIX]), 20),
        // Recursion: fib appears three times in one stack.
        sample(100, 100, "demo", &with_base(&[FIB_2, FIB, FIB]), 30),
        sample(
            100,
            100,
            "demo",
            &with_base(&[VFS_WRITE, KSYS_WRITE, DO_SYSCALL, ENTRY_SYSCALL, LIBC_WRITE]),
            15,
        ),
        sample(100, 101, "demo", &[LOST], 3),
        sample(
            7,
            7,
            "kworker/0:1",
            &[PROCESS_ONE_WORK, WORKER_THREAD, RET_FROM_FORK],
            5,
        ),
        sample(100, 100, "demo", &with_base(&[UNKNOWN_LIB]), 2),
        sample(100, 100, "demo", &with_base(&[FIB]), 0),
    ];
    Profile {
        meta: Meta {
            target: "pid 100 (demo)".into(),
            start_unix_nanos: 1_700_000_000_123_456_789,
            duration_nanos: 12_000_000_000,
            frequency_hz: 99,
            ..Default::default()
        },
        mappings,
        locations,
        samples,
    }
}

/// Compares `actual` with `profiler/tests/golden/<name>`, or rewrites that
/// file when `PROFILER_BLESS=1` is set.
/// The demo profile as a wall-clock profile: its on-CPU samples are worth
/// 10 ms each, and two off-CPU samples are added on top of `main`: 3 s
/// blocked (4 times) and 0.5 s waiting for a CPU (2 times), each with its
/// state marker as the leaf location.
pub fn wall_profile() -> Profile {
    let mut profile = demo_profile();
    profile.meta.kind = ProfileKind::Wall;
    for sample in &mut profile.samples {
        sample.nanos = sample.count * 10_000_000;
    }
    let mut marker = |name: &str| {
        profile.locations.push(loc(
            FrameKind::Special,
            0,
            None,
            vec![line(name, None, None)],
        ));
        profile.locations.len() - 1
    };
    let blocked = marker("[blocked]");
    let runnable = marker("[waiting for CPU]");
    for (marker, state, count, nanos) in [
        (blocked, ThreadState::Blocked, 4, 3_000_000_000),
        (runnable, ThreadState::Runnable, 2, 500_000_000),
    ] {
        profile.samples.push(Sample {
            pid: 100,
            tid: 101,
            comm: "demo".into(),
            locations: vec![marker, locs::MAIN, locs::LIBC_START, locs::START],
            count,
            nanos,
            state,
        });
    }
    profile
}

/// [`wall_profile`] without its on-CPU samples, as an off-CPU profile.
pub fn off_cpu_profile() -> Profile {
    let mut profile = wall_profile();
    profile.meta.kind = ProfileKind::OffCpu;
    profile.samples.retain(|s| s.state != ThreadState::OnCpu);
    profile
}

pub fn check_golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("PROFILER_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {}: {e}; run the test with PROFILER_BLESS=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let actual_path = std::env::temp_dir().join(format!("profiler-golden-actual-{name}"));
        let _ = std::fs::write(&actual_path, actual);
        panic!(
            "output differs from golden file {} (actual output written to {}); \
             if the change is intended, rerun with PROFILER_BLESS=1",
            path.display(),
            actual_path.display()
        );
    }
}

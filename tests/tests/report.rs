//! `profiler report` over a data directory written with the agent's store
//! (no agent, no root): several `-o` files, as `record` takes them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use profiler::agent::store::{Store, WindowKey};
use profiler::profile::{FrameKind, Line, Location, Meta, Profile, ProfileKind, Sample};
use profiler_tests::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// One window of process 4242, ending a minute ago, with `count` samples
/// of `main;work`.
fn store_window(store: &Store, count: u64) {
    let end_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;
    let start_ms = end_ms - 10_000;
    let frame = |function: &str| Location {
        kind: FrameKind::User,
        address: 0x401000,
        mapping: None,
        lines: vec![Line {
            function: function.into(),
            file: None,
            line: None,
        }],
    };
    let profile = Profile {
        meta: Meta {
            kind: ProfileKind::Cpu,
            target: "pid 4242".into(),
            start_unix_nanos: start_ms * 1_000_000,
            duration_nanos: 10_000_000_000,
            frequency_hz: 19,
        },
        mappings: vec![],
        locations: vec![frame("work"), frame("main")],
        samples: vec![Sample {
            pid: 4242,
            tid: 4242,
            comm: "worker".into(),
            locations: vec![0, 1],
            count,
            nanos: count * (1_000_000_000 / 19),
            ..Default::default()
        }],
    };
    let key = WindowKey {
        start_unix_millis: start_ms,
        end_unix_millis: end_ms,
        pid: 4242,
        comm: "worker".into(),
        kind: ProfileKind::Cpu,
    };
    store.write(&key, &profile).unwrap();
}

#[test]
fn report_writes_every_output_file() {
    let tmp = temp_dir("report_outputs");
    let data = tmp.path().join("data");
    store_window(&Store::open(&data).unwrap(), 5);
    let (svg, pprof) = (tmp.path().join("a.svg"), tmp.path().join("b.pb.gz"));
    let run = run_profiler_ok(
        &[
            "report",
            "--data-dir",
            data.to_str().unwrap(),
            "-o",
            svg.to_str().unwrap(),
            "-o",
            pprof.to_str().unwrap(),
        ],
        TIMEOUT,
    );
    assert!(
        run.stderr
            .contains(&format!("wrote {}, {}", svg.display(), pprof.display())),
        "{}",
        run.stderr
    );
    let flame = std::fs::read_to_string(&svg).unwrap();
    assert!(
        flame.contains("<svg") && flame.contains("work"),
        "not the flame graph"
    );
    let profile = read_pprof(&pprof);
    assert_eq!(pprof_total(&profile, 0), 5);

    // A bad destination among them: nothing is written.
    let bad = run_profiler(
        &[
            "report",
            "--data-dir",
            data.to_str().unwrap(),
            "-o",
            tmp.path().join("c.folded").to_str().unwrap(),
            "-o",
            tmp.path().join("missing/d.svg").to_str().unwrap(),
        ],
        TIMEOUT,
    );
    assert_failed_cleanly(&bad, "report with a missing output directory");
    assert!(!tmp.path().join("c.folded").exists());
}

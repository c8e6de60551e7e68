//! `profiler report`: merges the windows the agent stored in its data
//! directory (a time range, some processes, one kind) into one profile and
//! writes it as a flame graph, folded stacks or pprof, like `profiler record`.

pub mod merge;
pub mod read_pprof;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::agent::config::DEFAULT_DATA_DIR;
use crate::agent::store::{Store, StoreError, WindowFilter, kind_name, millis_ago};
use crate::output::{self, Format, OutputError, OutputOptions, OutputSpec};
use crate::profile::ProfileKind;

pub use merge::{MergeError, Merger};
pub use read_pprof::{ReadPprofError, from_proto};

/// What to report on and where to write it.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    pub data_dir: PathBuf,
    /// Windows that ended within this long before `now`; `None`: all.
    pub since: Option<Duration>,
    /// Windows that started more than this long before `now`; `None`: up to now.
    pub until: Option<Duration>,
    /// The time `since` and `until` count back from; `None`: the current time.
    pub now: Option<SystemTime>,
    /// Empty: every process.
    pub pids: Vec<u32>,
    /// `None`: the kind of the windows found, which must all be of one kind.
    pub kind: Option<ProfileKind>,
    /// Every file is written, each in its format.
    pub outputs: Vec<PathBuf>,
    /// `None`: each output's from its extension.
    pub format: Option<Format>,
    pub options: OutputOptions,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            since: None,
            until: None,
            now: None,
            pids: Vec::new(),
            kind: None,
            outputs: Vec::new(),
            format: None,
            options: OutputOptions::default(),
        }
    }
}

/// What [`report`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSummary {
    /// The files written, in order.
    pub outputs: Vec<OutputSpec>,
    pub kind: ProfileKind,
    /// Windows merged.
    pub windows: usize,
    /// Windows that could not be read (path and why), left out.
    pub skipped: Vec<(PathBuf, String)>,
    pub pids: BTreeSet<u32>,
    pub start_unix_nanos: u64,
    pub duration_nanos: u64,
    pub samples: u64,
    /// The merged profile's total value (samples, or nanoseconds).
    pub total_value: u64,
    /// More than one: the windows were sampled at different frequencies.
    pub frequencies: BTreeSet<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read the data directory {}: {source}; check --data-dir", .dir.display())]
    DataDir { dir: PathBuf, source: StoreError },
    #[error(
        "no stored window in {} matches {what}; check --data-dir, --since and --pid \
         (the agent writes a window every few seconds while it runs)",
        .dir.display()
    )]
    NoWindows { dir: PathBuf, what: String },
    #[error(
        "no stored window could be read ({} damaged, first: {}: {}); remove the damaged files",
        .skipped.len(), .skipped[0].0.display(), .skipped[0].1
    )]
    AllDamaged { skipped: Vec<(PathBuf, String)> },
    #[error("{source}")]
    Merge { source: MergeError },
    #[error("{source}")]
    Output { source: OutputError },
    #[error("no output file given: add -o FILE (.svg, .folded or .pb.gz)")]
    NoOutput,
}

fn describe(config: &ReportConfig) -> String {
    let mut parts = Vec::new();
    if let Some(since) = config.since {
        parts.push(format!("--since {}", humantime::format_duration(since)));
    }
    if let Some(until) = config.until {
        parts.push(format!("--until {}", humantime::format_duration(until)));
    }
    if !config.pids.is_empty() {
        let pids: Vec<String> = config.pids.iter().map(u32::to_string).collect();
        parts.push(format!("--pid {}", pids.join(",")));
    }
    if let Some(kind) = config.kind {
        parts.push(format!("kind {}", kind_name(kind)));
    }
    if parts.is_empty() {
        "(any window)".into()
    } else {
        parts.join(", ")
    }
}

/// Merges the stored windows `config` selects and writes them to every
/// file of `config.outputs`, as `record` does.
///
/// The destinations are checked before anything is read. Damaged windows are
/// skipped and listed in the summary, unless no window could be read.
pub fn report(config: &ReportConfig) -> Result<ReportSummary, ReportError> {
    let output_error = |source| ReportError::Output { source };
    let outputs =
        output::specs(config.outputs.iter().cloned(), config.format).map_err(output_error)?;
    if outputs.is_empty() {
        return Err(ReportError::NoOutput);
    }
    output::check_destinations(&outputs).map_err(output_error)?;

    let store = Store::open_existing(&config.data_dir).map_err(|source| ReportError::DataDir {
        dir: config.data_dir.clone(),
        source,
    })?;
    let now = config.now.unwrap_or_else(SystemTime::now);
    let filter = WindowFilter {
        since_unix_millis: config.since.map(|age| millis_ago(now, age)),
        until_unix_millis: config.until.map(|age| millis_ago(now, age)),
        pids: config.pids.clone(),
        kind: config.kind,
    };
    let windows = store.list(&filter).map_err(|source| ReportError::DataDir {
        dir: config.data_dir.clone(),
        source,
    })?;
    if windows.is_empty() {
        return Err(ReportError::NoWindows {
            dir: config.data_dir.clone(),
            what: describe(config),
        });
    }

    let mut merger = Merger::new();
    let mut skipped = Vec::new();
    let mut pids = BTreeSet::new();
    for window in &windows {
        let profile = Store::read(window)
            .map_err(|e| e.to_string())
            .and_then(|proto| from_proto(&proto).map_err(|e| e.to_string()));
        match profile {
            Ok(profile) => {
                merger
                    .add(profile, &window.path.display().to_string())
                    .map_err(|source| ReportError::Merge { source })?;
                pids.insert(window.key.pid);
            }
            Err(message) => skipped.push((window.path.clone(), message)),
        }
    }
    if merger.is_empty() {
        return Err(ReportError::AllDamaged { skipped });
    }
    let merged_windows = merger.len();
    let frequencies = merger.frequencies().clone();
    let mut profile = merger.finish();
    let pid_list: Vec<String> = pids.iter().map(u32::to_string).collect();
    profile.meta.target = format!(
        "{} ({merged_windows} window{})",
        match pids.len() {
            1 => format!("pid {}", pid_list[0]),
            n if n <= 5 => format!("pids {}", pid_list.join(", ")),
            n => format!("{n} processes"),
        },
        if merged_windows == 1 { "" } else { "s" }
    );

    output::write_all(&profile, &outputs, &config.options).map_err(output_error)?;
    Ok(ReportSummary {
        outputs,
        kind: profile.meta.kind,
        windows: merged_windows,
        skipped,
        pids,
        start_unix_nanos: profile.meta.start_unix_nanos,
        duration_nanos: profile.meta.duration_nanos,
        samples: profile.total_samples(),
        total_value: profile.total_value(),
        frequencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::store::WindowKey;
    use crate::output::pprof::{decode, to_proto};
    use crate::output::test_profile::{demo_profile, off_cpu_profile};
    use crate::profile::Profile;

    const NOW_MS: u64 = 1_700_000_100_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(NOW_MS)
    }

    /// The demo profile as process `pid`'s window ending `age_s` seconds before [`now`].
    fn store_window(store: &Store, pid: u32, age_s: u64, profile: &Profile) {
        let end = NOW_MS - age_s * 1000;
        let mut profile = profile.clone();
        for s in &mut profile.samples {
            s.pid = pid;
        }
        profile.meta.start_unix_nanos = (end - 10_000) * 1_000_000;
        profile.meta.duration_nanos = 10_000_000_000;
        store
            .write(
                &WindowKey {
                    start_unix_millis: end - 10_000,
                    end_unix_millis: end,
                    pid,
                    comm: "demo".into(),
                    kind: profile.meta.kind,
                },
                &profile,
            )
            .unwrap();
    }

    fn config(dir: &std::path::Path, output: &str) -> ReportConfig {
        ReportConfig {
            data_dir: dir.join("data"),
            now: Some(now()),
            outputs: vec![dir.join(output)],
            ..Default::default()
        }
    }

    #[test]
    fn merges_the_selected_windows_into_pprof() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("data")).unwrap();
        let demo = demo_profile();
        // pid 1: three windows in the last hour, one older; pid 2: one recent.
        for age in [10, 600, 3000, 7200] {
            store_window(&store, 1, age, &demo);
        }
        store_window(&store, 2, 30, &demo);

        let summary = report(&ReportConfig {
            since: Some(Duration::from_secs(3600)),
            pids: vec![1],
            ..config(tmp.path(), "out.pb.gz")
        })
        .unwrap();
        assert_eq!(summary.windows, 3);
        assert_eq!(summary.pids, BTreeSet::from([1]));
        assert_eq!(summary.outputs[0].format, Format::Pprof);
        assert_eq!(summary.kind, ProfileKind::Cpu);
        assert!(summary.skipped.is_empty());
        assert_eq!(summary.samples, 3 * demo.total_samples());
        // From the start of the window that ended 3000 s ago to 10 s ago.
        assert_eq!(summary.start_unix_nanos, (NOW_MS - 3_010_000) * 1_000_000);
        assert_eq!(summary.duration_nanos, 3_000_000_000_000);

        let written =
            from_proto(&decode(&std::fs::read(&summary.outputs[0].path).unwrap()).unwrap())
                .unwrap();
        assert_eq!(written.total_samples(), 3 * demo.total_samples());
        assert!(written.samples.iter().all(|s| s.pid == 1));
        assert_eq!(
            written.locations.len(),
            demo.locations.len(),
            "shared frames kept once"
        );
        assert_eq!(written.meta.target, "pid 1 (3 windows)");

        // No filter: every window, both processes.
        let summary = report(&config(tmp.path(), "all.pb.gz")).unwrap();
        assert_eq!((summary.windows, summary.pids.len()), (5, 2));
    }

    #[test]
    fn writes_a_flame_graph() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("data")).unwrap();
        store_window(&store, 1, 10, &demo_profile());
        let summary = report(&config(tmp.path(), "flame.svg")).unwrap();
        assert_eq!(summary.outputs[0].format, Format::Svg);
        let svg = std::fs::read_to_string(tmp.path().join("flame.svg")).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("demo::fib"),
            "not a flame graph"
        );
    }

    #[test]
    fn writes_every_output() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("data")).unwrap();
        store_window(&store, 1, 10, &demo_profile());
        let summary = report(&ReportConfig {
            outputs: vec![tmp.path().join("a.svg"), tmp.path().join("b.pb.gz")],
            ..config(tmp.path(), "unused")
        })
        .unwrap();
        let formats: Vec<Format> = summary.outputs.iter().map(|o| o.format).collect();
        assert_eq!(formats, [Format::Svg, Format::Pprof]);
        let svg = std::fs::read_to_string(tmp.path().join("a.svg")).unwrap();
        assert!(svg.contains("demo::fib"), "not the flame graph");
        let pprof = decode(&std::fs::read(tmp.path().join("b.pb.gz")).unwrap()).unwrap();
        assert_eq!(from_proto(&pprof).unwrap().total_samples(), summary.samples);
        // A bad second destination fails before anything is written.
        let err = report(&ReportConfig {
            outputs: vec![tmp.path().join("c.svg"), tmp.path().join("missing/d.svg")],
            ..config(tmp.path(), "unused")
        })
        .unwrap_err();
        assert!(matches!(err, ReportError::Output { .. }), "{err}");
        assert!(!tmp.path().join("c.svg").exists());
        let err = report(&ReportConfig {
            outputs: vec![],
            ..config(tmp.path(), "unused")
        })
        .unwrap_err();
        assert!(matches!(err, ReportError::NoOutput), "{err}");
    }

    #[test]
    fn kinds_are_reported_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("data")).unwrap();
        store_window(&store, 1, 10, &demo_profile());
        store_window(&store, 1, 20, &off_cpu_profile());
        let err = report(&config(tmp.path(), "out.pb.gz")).unwrap_err();
        assert!(matches!(err, ReportError::Merge { .. }), "{err}");
        assert!(!tmp.path().join("out.pb.gz").exists());
        let summary = report(&ReportConfig {
            kind: Some(ProfileKind::OffCpu),
            ..config(tmp.path(), "out.pb.gz")
        })
        .unwrap();
        assert_eq!((summary.windows, summary.kind), (1, ProfileKind::OffCpu));
        let expected = to_proto(&off_cpu_profile());
        let written = decode(&std::fs::read(tmp.path().join("out.pb.gz")).unwrap()).unwrap();
        assert_eq!(written.sample_type.len(), expected.sample_type.len());
        assert_eq!(summary.total_value, off_cpu_profile().total_value());
    }

    #[test]
    fn damaged_windows_are_skipped_and_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("data")).unwrap();
        store_window(&store, 1, 10, &demo_profile());
        let bad = tmp
            .path()
            .join("data")
            .join("1699999000000-1699999010000_1_demo_cpu.pb.zst");
        std::fs::write(&bad, "damaged").unwrap();
        let summary = report(&config(tmp.path(), "out.folded")).unwrap();
        assert_eq!(summary.windows, 1);
        assert_eq!(summary.skipped.len(), 1);
        assert_eq!(summary.skipped[0].0, bad);
        for window in store.list(&WindowFilter::default()).unwrap() {
            if window.path != bad {
                std::fs::remove_file(&window.path).unwrap();
            }
        }
        let err = report(&config(tmp.path(), "out.folded")).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn errors_name_what_to_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let err = report(&config(tmp.path(), "out.pb.gz")).unwrap_err();
        assert!(matches!(err, ReportError::DataDir { .. }), "{err}");
        assert!(err.to_string().contains("--data-dir"), "{err}");

        let store = Store::open(tmp.path().join("data")).unwrap();
        store_window(&store, 1, 7200, &demo_profile());
        let err = report(&ReportConfig {
            since: Some(Duration::from_secs(3600)),
            pids: vec![1, 2],
            ..config(tmp.path(), "out.pb.gz")
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no stored window in {} matches --since 1h, --pid 1,2; check --data-dir, --since and --pid \
                 (the agent writes a window every few seconds while it runs)",
                tmp.path().join("data").display()
            )
        );
        // A bad destination fails before any window is read.
        let err = report(&config(tmp.path(), "out.png")).unwrap_err();
        assert!(
            matches!(
                err,
                ReportError::Output {
                    source: OutputError::UnknownExtension { .. }
                }
            ),
            "{err}"
        );
        let err = report(&config(tmp.path(), "missing/out.svg")).unwrap_err();
        assert!(
            matches!(
                err,
                ReportError::Output {
                    source: OutputError::MissingDirectory { .. }
                }
            ),
            "{err}"
        );
    }
}

//! `profiler record` refuses bad input before it starts sampling: a non-zero
//! exit, an `error: ...` message naming the problem, and no output file.
//! The profiler validates everything before it loads its eBPF programs, so
//! these tests run without root too.

use std::path::Path;
use std::time::Duration;

use profiler_tests::*;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the profiler and checks that it fails cleanly (see
/// [`assert_failed_cleanly`]) with every string of `mentions` on stderr, and
/// none of `must_not_exist` created. Returns stderr.
fn expect_failure(record: Record, mentions: &[&str], must_not_exist: &[&Path]) -> String {
    let run = record.run(TIMEOUT);
    let shown = format!("profiler {record}");
    assert_failed_cleanly(&run, &shown);
    for m in mentions {
        assert!(
            run.stderr.contains(m),
            "{shown}: the error does not mention {m:?}\n--- stderr ---\n{}",
            run.stderr
        );
    }
    for path in must_not_exist {
        assert!(!path.exists(), "{shown} failed but left {}", path.display());
    }
    eprintln!("{shown}\n  -> {}: {}", run.status, run.stderr.trim());
    run.stderr
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A pid with no process.
fn free_pid() -> u32 {
    (1..4_000_000u32)
        .map(|i| 4_194_304 - i)
        .find(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        .unwrap()
}

/// A pid that exists for the whole test: this test process.
fn live_pid() -> String {
    std::process::id().to_string()
}

/// Asserts that nothing, not even a temporary, was left in `dir`.
fn assert_nothing_left(dir: &Path) {
    let files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.is_empty(), "left {files:?}");
}

#[test]
fn nonexistent_pid() {
    let dir = temp_dir("bad_pid");
    let out = dir.path().join("out.folded");
    let pid = free_pid().to_string();
    expect_failure(
        record().pid(&pid).duration("1").output(&out),
        &[&pid],
        &[&out],
    );
    // One bad pid among good ones is still an error.
    let both = format!("{},{pid}", live_pid());
    expect_failure(
        record().pid(&both).duration("1").output(&out),
        &[&pid],
        &[&out],
    );
    assert_nothing_left(dir.path());
}

#[test]
fn bad_frequency() {
    let dir = temp_dir("bad_freq");
    let out = dir.path().join("out.svg");
    let pid = live_pid();
    for hz in ["0", "100000000"] {
        let err = expect_failure(
            record().freq(hz).pid(&pid).duration("1").output(&out),
            &[],
            &[&out],
        );
        assert!(
            err.to_lowercase().contains("frequency"),
            "-F {hz}: the error does not mention the frequency\n{err}"
        );
    }
    assert_nothing_left(dir.path());
}

#[test]
fn unknown_output_extension() {
    let dir = temp_dir("bad_ext");
    let out = dir.path().join("out.png");
    expect_failure(
        record().pid(live_pid()).duration("1").output(&out),
        &[".svg"],
        &[&out],
    );
    assert_nothing_left(dir.path());
}

#[test]
fn nonexistent_output_directory() {
    let out = Path::new("/nonexistent/dir/x.svg");
    expect_failure(
        record().pid(live_pid()).duration("1").output(out),
        &["/nonexistent/dir"],
        &[out],
    );
}

#[test]
fn output_is_a_directory() {
    let dir = temp_dir("out_is_dir");
    let out = dir.path().join("x.svg");
    std::fs::create_dir(&out).unwrap();
    expect_failure(
        record().pid(live_pid()).duration("1").output(&out),
        &[s(&out)],
        &[],
    );
    assert!(out.is_dir());
}

#[test]
fn nonexistent_command() {
    let dir = temp_dir("bad_cmd");
    let out = dir.path().join("out.folded");
    expect_failure(
        record()
            .duration("1")
            .output(&out)
            .command("/no/such/cmd", &["arg"]),
        &["/no/such/cmd"],
        &[&out],
    );
    expect_failure(
        record()
            .duration("1")
            .output(&out)
            .command("no-such-cmd-in-path-xyz", &[]),
        &["no-such-cmd-in-path-xyz"],
        &[&out],
    );
    assert_nothing_left(dir.path());
}

#[test]
fn one_bad_output_means_no_output_at_all() {
    let dir = temp_dir("partial");
    let (folded, svg) = (dir.path().join("good.folded"), dir.path().join("good.svg"));
    let pid = live_pid();
    expect_failure(
        record()
            .pid(&pid)
            .duration("1")
            .output(&folded)
            .output(&svg)
            .output("/nonexistent/dir/x.svg"),
        &["/nonexistent/dir"],
        &[&folded, &svg],
    );
    let png = dir.path().join("bad.png");
    expect_failure(
        record()
            .pid(&pid)
            .duration("1")
            .output(&folded)
            .output(&png),
        &[".svg"],
        &[&folded, &png],
    );
    assert_nothing_left(dir.path());
}

#[test]
fn bad_usage() {
    let dir = temp_dir("usage");
    let out = dir.path().join("out.folded");
    let pid = live_pid();
    // Nothing to profile.
    expect_failure(record().output(&out), &[], &[&out]);
    // Two targets at once.
    expect_failure(record().pid(&pid).all_cpus().output(&out), &[], &[&out]);
    // No output.
    let run = record().pid(&pid).duration("1").run(TIMEOUT);
    assert!(
        !run.status.success() && run.status.code().is_some(),
        "no -o: {}\n{}",
        run.status,
        run.stderr
    );
    // Bad duration.
    expect_failure(
        record().pid(&pid).duration("soon").output(&out),
        &["soon"],
        &[&out],
    );
    expect_failure(record().pid(&pid).duration("0").output(&out), &[], &[&out]);
    assert_nothing_left(dir.path());
}

//! `profiler upload FILE... --pyroscope-url URL` and `profiler record
//! --upload URL` against the test Pyroscope receiver
//! (`profiler_tests::ingest`): what arrives (the pprof, its labels and time
//! range, the credentials), and the errors when the server refuses the
//! profile or cannot be reached. Only the `record --upload` test needs root
//! (it prints `SKIPPED ...` without it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use profiler::output::pprof::{to_proto, write_pprof};
use profiler::profile::Profile;
use profiler_tests::ingest::{Behavior, IngestReceiver};
use profiler_tests::*;

#[path = "support/profiles.rs"]
mod profiles;
const TIMEOUT: Duration = Duration::from_secs(60);
/// 2023-11-14 22:13:20.250 UTC.
const START_NANOS: u64 = 1_700_000_000_250_000_000;

/// A CPU profile of one process, `shop-worker` (pid 4242), taken for 10 s
/// from [`START_NANOS`].
fn one_process_profile() -> Profile {
    profiles::one_stack_profile(
        4242,
        "pid 4242 (shop-worker)".into(),
        START_NANOS,
        10_000_000_000,
        99,
        7,
    )
}

/// Writes `profile` as `record -o NAME.pb.gz` would.
fn write_file(dir: &Path, name: &str, profile: &Profile) -> PathBuf {
    let path = dir.join(name);
    let mut bytes = Vec::new();
    write_pprof(profile, &mut bytes).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `profiler ARGS...` with extra environment variables.
fn run(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut cmd = profiler_command(args);
    cmd.envs(env.iter().copied());
    Proc::spawn(cmd).wait(TIMEOUT)
}

fn ok(run: Finished, what: &str) -> Finished {
    assert!(
        run.status.success(),
        "{what} failed: {}\n--- stderr ---\n{}",
        run.status,
        run.stderr
    );
    run
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn upload_sends_the_pprof_with_its_labels_time_range_and_basic_auth() {
    let tmp = temp_dir("upload_basic");
    let receiver = IngestReceiver::start();
    let profile = one_process_profile();
    let file = write_file(tmp.path(), "shop.pb.gz", &profile);
    let password = tmp.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let run = ok(
        run(
            &[
                "upload",
                file.to_str().unwrap(),
                "--pyroscope-url",
                &receiver.url(),
                "--pyroscope-user",
                "ci",
                "--pyroscope-password-file",
                password.to_str().unwrap(),
                "--pyroscope-tenant-id",
                "team-a",
                "--label",
                "env=test",
            ],
            &[],
        ),
        "upload",
    );
    assert!(
        run.stderr.contains("uploaded") && run.stderr.contains(&receiver.url()),
        "{}",
        run.stderr
    );

    let received = receiver.received();
    assert_eq!(received.len(), 1, "invalid: {:?}", receiver.invalid());
    let r = &received[0];
    assert!(r.gzip, "the file's bytes are sent as they are");
    assert_eq!(r.profile, to_proto(&profile));
    // service_name: the profile's single process's command name.
    assert_eq!(r.app_name, "shop-worker");
    assert_eq!(
        r.labels,
        labels(&[
            ("pid", "4242"),
            ("comm", "shop-worker"),
            ("profile_type", "cpu"),
            ("env", "test"),
        ])
    );
    // [START, START + 10 s), START at .25 s: from rounds down, until up.
    assert_eq!((r.from, r.until), (1_700_000_000, 1_700_000_011));
    assert_eq!(r.query["sampleRate"], "99");
    assert_eq!(r.authorization.as_deref(), Some("Basic Y2k6czNjcmV0"));
    assert_eq!(r.tenant.as_deref(), Some("team-a"));
    assert!(file.exists());
}

#[test]
fn upload_with_a_bearer_token_from_the_environment_and_several_files() {
    let tmp = temp_dir("upload_bearer");
    let receiver = IngestReceiver::start();
    let first = write_file(tmp.path(), "first.pb.gz", &one_process_profile());
    // Two processes: no single comm, so the file's stem names the service
    // unless --service-name does.
    let mut two = one_process_profile();
    let mut other = two.samples[0].clone();
    (other.pid, other.tid, other.comm) = (7, 7, "other".into());
    two.samples.push(other);
    let second = write_file(tmp.path(), "nightly-batch.pprof", &two);
    let env = [("PROFILER_UPLOAD_TEST_TOKEN", "t0ken")];
    ok(
        run(
            &[
                "upload",
                first.to_str().unwrap(),
                second.to_str().unwrap(),
                "--pyroscope-url",
                &receiver.url(),
                "--pyroscope-token-env",
                "PROFILER_UPLOAD_TEST_TOKEN",
            ],
            &env,
        ),
        "upload of two files",
    );
    ok(
        run(
            &[
                "upload",
                second.to_str().unwrap(),
                "--pyroscope-url",
                &receiver.url(),
                "--pyroscope-token-env",
                "PROFILER_UPLOAD_TEST_TOKEN",
                "--service-name",
                "batch",
            ],
            &env,
        ),
        "upload with --service-name",
    );
    let received = receiver.received();
    assert_eq!(received.len(), 3, "invalid: {:?}", receiver.invalid());
    let names: Vec<&str> = received.iter().map(|r| r.app_name.as_str()).collect();
    assert_eq!(names, ["shop-worker", "nightly-batch", "batch"]);
    assert_eq!(received[1].labels, labels(&[("profile_type", "cpu")]));
    for r in &received {
        assert_eq!(r.authorization.as_deref(), Some("Bearer t0ken"));
    }
}

#[test]
fn a_401_is_a_clear_error_and_the_file_is_kept() {
    let tmp = temp_dir("upload_401");
    let receiver = IngestReceiver::start();
    receiver.set_behavior(Behavior::Status(401));
    let file = write_file(tmp.path(), "cpu.pb.gz", &one_process_profile());
    let before = std::fs::read(&file).unwrap();
    let run = run(
        &[
            "upload",
            file.to_str().unwrap(),
            "--pyroscope-url",
            &receiver.url(),
        ],
        &[],
    );
    assert_failed_cleanly(&run, "upload to a server answering 401");
    for part in [
        &format!("Pyroscope at {} refused", receiver.url()),
        "HTTP 401",
        "check the credentials",
        "--pyroscope-user",
        "the file is unchanged",
        "profiler upload",
    ] {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.stderr);
    }
    // Refused for good: not retried.
    assert_eq!(receiver.requests(), 1);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn connection_refused_is_a_clear_error() {
    let tmp = temp_dir("upload_refused");
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let file = write_file(tmp.path(), "cpu.pb.gz", &one_process_profile());
    let run = run(
        &[
            "upload",
            file.to_str().unwrap(),
            "--pyroscope-url",
            &url,
            "--max-attempts",
            "2",
        ],
        &[],
    );
    assert_failed_cleanly(&run, "upload to a closed port");
    for part in [
        &format!("cannot reach Pyroscope at {url}"),
        "2 attempt(s)",
        "check that the server is running",
        "the file is unchanged",
    ] {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.stderr);
    }
    assert!(file.exists());
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let tmp = temp_dir("upload_bad_input");
    let receiver = IngestReceiver::start();
    let good = write_file(tmp.path(), "good.pb.gz", &one_process_profile());
    let svg = tmp.path().join("flame.svg");
    std::fs::write(&svg, "<svg/>").unwrap();
    let run = run(
        &[
            "upload",
            good.to_str().unwrap(),
            svg.to_str().unwrap(),
            "--pyroscope-url",
            &receiver.url(),
        ],
        &[],
    );
    assert_failed_cleanly(&run, "upload of an SVG");
    assert!(
        run.stderr.contains("flame.svg is not a pprof profile"),
        "{}",
        run.stderr
    );
    let run = profiler_tests::run_profiler(
        &[
            "upload",
            good.to_str().unwrap(),
            "--pyroscope-url",
            &receiver.url(),
            "--pyroscope-password-env",
            "PROFILER_UPLOAD_TEST_UNSET",
        ],
        TIMEOUT,
    );
    assert_failed_cleanly(&run, "upload with a password but no user");
    assert_eq!(receiver.requests(), 0);
}

#[test]
fn record_upload_pushes_the_recording_and_keeps_it_when_the_push_fails() {
    let test = "record_upload_pushes_the_recording_and_keeps_it_when_the_push_fails";
    if !require_root(test) {
        return;
    }
    let _guard = shared_recording();
    let tmp = temp_dir("record_upload");
    let receiver = IngestReceiver::start();
    let svg = tmp.path().join("flame.svg");
    // Only an SVG asked for: the pprof is made in memory for the push.
    let run = record()
        .freq(199)
        .output(&svg)
        .args(&[
            "--upload",
            &receiver.url(),
            "--service-name",
            "ratio",
            "--label",
            "env=ci",
        ])
        .command(workload("cpu_ratio"), &["2"])
        .run_ok(TIMEOUT);
    assert!(
        run.stderr
            .contains(&format!("uploaded to Pyroscope at {}", receiver.url())),
        "{}",
        run.stderr
    );
    assert!(svg.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only the SVG"
    );
    let received = receiver.received();
    assert_eq!(received.len(), 1, "invalid: {:?}", receiver.invalid());
    let r = &received[0];
    assert_eq!(r.app_name, "ratio");
    assert_eq!(r.labels["env"], "ci");
    assert_eq!(r.labels["comm"], "cpu_ratio");
    assert_eq!(r.labels["profile_type"], "cpu");
    assert!(r.labels.contains_key("hostname"), "{:?}", r.labels);
    assert!(pprof_total(&r.profile, 0) > 0, "no samples pushed");
    assert!(
        r.profile
            .sample
            .iter()
            .any(|s| pprof_functions(&r.profile, s).iter().any(|f| f == "hot_a")),
        "hot_a is not in the pushed profile"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        r.from <= r.until && r.until <= now + 1 && r.from + 60 >= now,
        "time range {}..{} is not the recording's (now {now})",
        r.from,
        r.until
    );

    // The server refuses: the SVG is written, the pprof saved beside it,
    // and the exit is non-zero.
    receiver.set_behavior(Behavior::Status(401));
    let svg = tmp.path().join("refused.svg");
    let run = record()
        .freq(199)
        .output(&svg)
        .args(&["--upload", &receiver.url()])
        .command(workload("cpu_ratio"), &["1"])
        .run(TIMEOUT);
    assert_failed_cleanly(&run, "record --upload to a server answering 401");
    let saved = tmp.path().join("refused.pb.gz");
    for part in [
        &format!("Pyroscope at {} refused the recording", receiver.url()),
        "HTTP 401",
        &format!("profiler upload {}", saved.display()),
    ] {
        assert!(run.stderr.contains(part), "no {part:?} in:\n{}", run.stderr);
    }
    assert!(svg.exists() && saved.exists());
    assert!(
        run.stderr.contains("Samples:"),
        "the summary is printed before the error:\n{}",
        run.stderr
    );
}

#[test]
fn ctrl_c_stops_a_hanging_record_upload_and_keeps_the_recording() {
    let test = "ctrl_c_stops_a_hanging_record_upload_and_keeps_the_recording";
    if !require_root(test) {
        return;
    }
    let _guard = shared_recording();
    let tmp = temp_dir("record_upload_interrupt");
    let receiver = IngestReceiver::start();
    receiver.set_behavior(Behavior::Hang);
    let folded = tmp.path().join("stacks.folded");
    let profiler = record()
        .freq(199)
        .output(&folded)
        .args(&["--upload", &receiver.url(), "--pyroscope-timeout", "60s"])
        .command(workload("cpu_ratio"), &["1"])
        .spawn();
    // The recording is over once the server has the request.
    let deadline = std::time::Instant::now() + TIMEOUT;
    while receiver.requests() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no push within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = std::time::Instant::now();
    profiler.signal(libc::SIGINT);
    let run = profiler.wait(TIMEOUT);
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?} to stop after SIGINT",
        sent.elapsed()
    );
    assert_failed_cleanly(&run, "record --upload interrupted during the push");
    let saved = tmp.path().join("stacks.pb.gz");
    assert!(
        run.stderr
            .contains("interrupted while uploading the recording")
            && run
                .stderr
                .contains(&format!("profiler upload {}", saved.display())),
        "{}",
        run.stderr
    );
    assert!(folded.exists() && saved.exists());
}

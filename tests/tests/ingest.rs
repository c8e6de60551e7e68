//! The agent's Pyroscope client and upload spool against a real HTTP ingest
//! receiver (`profiler_tests::ingest`). No root needed.
//!
//! Durations are scaled down so that the whole file runs in a few seconds:
//! backoffs of milliseconds instead of seconds, and the outage in
//! `spool_delivers_in_order_after_an_outage_and_a_restart` lasts 2 s (the
//! issue's 20 s), during which the receiver is really stopped (its port
//! closed) and then started again on the same port.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use profiler::agent::config::SecretSource;
use profiler::agent::deliver::deliver;
use profiler::agent::pyroscope::{
    AttemptError, Auth, ClientOptions, PushError, PyroscopeClient, RetryOptions, Upload,
};
use profiler::agent::spool::Spool;
use profiler::agent::store::WindowKey;
use profiler::output::pprof::{to_proto, write_pprof};
use profiler::profile::{Profile, ProfileKind};
use profiler_tests::ingest::{Behavior, IngestReceiver};
use profiler_tests::{Message, PprofProfile};

#[path = "support/profiles.rs"]
mod profiles;
const START_MS: u64 = 1_700_000_000_500;
const WINDOW_MS: u64 = 10_000;

/// A one-stack profile of process `pid` for window number `n`; its sample
/// count is `n + 1`, so windows can be told apart after decoding.
fn window_profile(pid: u32, n: u64) -> Profile {
    profiles::one_stack_profile(
        pid,
        format!("pid {pid}"),
        (START_MS + n * WINDOW_MS) * 1_000_000,
        WINDOW_MS * 1_000_000,
        19,
        n + 1,
    )
}

fn window_key(pid: u32, n: u64) -> WindowKey {
    WindowKey {
        start_unix_millis: START_MS + n * WINDOW_MS,
        end_unix_millis: START_MS + (n + 1) * WINDOW_MS,
        pid,
        comm: "shop-worker".into(),
        kind: ProfileKind::Cpu,
    }
}

/// Window `n` of `pid` as the agent pushes it: gzip-compressed pprof.
fn window_upload(pid: u32, n: u64) -> Upload {
    let mut body = Vec::new();
    write_pprof(&window_profile(pid, n), &mut body).unwrap();
    Upload::window("shop", "host-1", &window_key(pid, n), 19, body)
}

/// Options with fast retries: waits of at most 20 ms.
fn options(url: String, max_attempts: u32) -> ClientOptions {
    ClientOptions {
        url,
        timeout: Duration::from_secs(2),
        retry: RetryOptions {
            max_attempts,
            backoff_initial: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
        },
        ..Default::default()
    }
}

/// The sample count of a received profile: which window it was.
fn window_number(profile: &PprofProfile) -> u64 {
    profile.sample[0].value[0] as u64 - 1
}

#[tokio::test]
async fn a_window_arrives_decoded_with_its_labels_and_time_range() {
    let receiver = IngestReceiver::start();
    let client = PyroscopeClient::new(options(receiver.url(), 1)).unwrap();
    assert_eq!(client.push(&window_upload(42, 3)).await.unwrap(), 1);

    let received = receiver.received();
    assert_eq!(received.len(), 1, "invalid: {:?}", receiver.invalid());
    let r = &received[0];
    assert_eq!(r.app_name, "shop");
    assert_eq!(
        r.labels,
        BTreeMap::from(
            [
                ("hostname", "host-1"),
                ("pid", "42"),
                ("comm", "shop-worker"),
                ("profile_type", "cpu"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        )
    );
    // The window is [START + 30 s, START + 40 s), START at .5 s: from rounds
    // down, until up.
    assert_eq!(r.from, 1_700_000_030);
    assert_eq!(r.until, 1_700_000_041);
    assert_eq!(r.query["format"], "pprof");
    assert_eq!(r.query["sampleRate"], "19");
    assert_eq!(r.query["spyName"], "ebpfspy");
    assert!(r.gzip);
    assert_eq!(r.profile, to_proto(&window_profile(42, 3)));
    assert_eq!(
        (r.authorization.as_deref(), r.tenant.as_deref()),
        (None, None)
    );
    assert_eq!(client.counters().successes, 1);
}

#[tokio::test]
async fn uncompressed_bodies_labels_needing_escapes_and_credentials() {
    let receiver = IngestReceiver::start();
    let tmp = tempfile::tempdir().unwrap();
    let password = tmp.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let basic = PyroscopeClient::new(ClientOptions {
        auth: Some(
            Auth::read(&profiler::agent::config::AuthConfig::Basic {
                user: "agent".into(),
                password: SecretSource::File(password),
            })
            .unwrap(),
        ),
        tenant_id: Some("team-a".into()),
        ..options(receiver.url(), 1)
    })
    .unwrap();
    let mut upload = window_upload(7, 0);
    upload.body = to_proto(&window_profile(7, 0)).encode_to_vec();
    upload.app_name = "my shop/api".into();
    upload.labels.push(("note".into(), "a,b}c = d {e}".into()));
    upload.labels.push(("k8s.pod".into(), "web-0".into()));
    basic.push(&upload).await.unwrap();

    let bearer_env = "PROFILER_INGEST_TEST_TOKEN";
    // SAFETY: only this test reads or writes this variable.
    unsafe { std::env::set_var(bearer_env, "t0ken") };
    let bearer = PyroscopeClient::new(ClientOptions {
        auth: Some(
            Auth::read(&profiler::agent::config::AuthConfig::Bearer {
                token: SecretSource::Env(bearer_env.into()),
            })
            .unwrap(),
        ),
        ..options(receiver.url(), 1)
    })
    .unwrap();
    bearer.push(&window_upload(7, 1)).await.unwrap();

    let received = receiver.received();
    assert_eq!(received.len(), 2, "invalid: {:?}", receiver.invalid());
    let r = &received[0];
    assert!(!r.gzip);
    assert_eq!(r.profile, to_proto(&window_profile(7, 0)));
    assert_eq!(r.app_name, "my_shop_api");
    assert_eq!(r.labels["note"], "a_b_c _ d _e_");
    assert_eq!(r.labels["k8s_pod"], "web-0");
    assert_eq!(r.labels.len(), 6);
    assert_eq!(r.authorization.as_deref(), Some("Basic YWdlbnQ6czNjcmV0"));
    assert_eq!(r.tenant.as_deref(), Some("team-a"));
    assert_eq!(received[1].authorization.as_deref(), Some("Bearer t0ken"));
}

#[tokio::test]
async fn server_errors_are_retried_until_the_server_takes_the_window() {
    let receiver = IngestReceiver::start();
    receiver.fail_next(2, 500);
    receiver.fail_next(1, 429);
    let client = PyroscopeClient::new(options(receiver.url(), 5)).unwrap();
    assert_eq!(client.push(&window_upload(1, 0)).await.unwrap(), 4);
    assert_eq!(receiver.requests(), 4);
    assert_eq!(receiver.received().len(), 1);
    let counters = client.counters();
    assert_eq!(
        (counters.successes, counters.retries, counters.failures),
        (1, 3, 0)
    );

    // Always failing: gives up after max_attempts, with the last status.
    receiver.set_behavior(Behavior::Status(503));
    let err = client.push(&window_upload(1, 1)).await.unwrap_err();
    match &err {
        PushError::GaveUp {
            attempts: 5, last, ..
        } => {
            assert!(
                matches!(last, AttemptError::Status { status: 503, .. }),
                "{last}"
            )
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("after 5 attempt(s)"), "{err}");
    assert_eq!(receiver.requests(), 9);
    assert_eq!(client.counters().failures, 1);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let receiver = IngestReceiver::start();
    receiver.fail_next(1, 400);
    let client = PyroscopeClient::new(options(receiver.url(), 5)).unwrap();
    let err = client.push(&window_upload(1, 0)).await.unwrap_err();
    assert!(matches!(err, PushError::Rejected { .. }), "{err}");
    assert!(err.is_about_the_profile());
    assert!(err.to_string().contains("HTTP 400: told to fail"), "{err}");
    assert_eq!(receiver.requests(), 1);
    let counters = client.counters();
    assert_eq!((counters.rejected, counters.retries), (1, 0));
}

#[tokio::test]
async fn a_hanging_server_times_out_without_blocking_other_work() {
    let receiver = IngestReceiver::start();
    receiver.set_behavior(Behavior::Hang);
    let client = PyroscopeClient::new(ClientOptions {
        timeout: Duration::from_millis(300),
        ..options(receiver.url(), 2)
    })
    .unwrap();
    // Sampling goes on beside the push: a ticker on the same runtime.
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let started = Instant::now();
    let err = client.push(&window_upload(1, 0)).await.unwrap_err();
    let elapsed = started.elapsed();
    ticker.abort();
    match &err {
        PushError::GaveUp {
            attempts: 2,
            last: AttemptError::Timeout,
            ..
        } => {}
        other => panic!("{other}"),
    }
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert_eq!(receiver.requests(), 2);
    assert!(
        ticks.load(Ordering::Relaxed) >= 20,
        "the ticker stalled while the push hung: {} ticks",
        ticks.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn spool_delivers_in_order_after_an_outage_and_a_restart() {
    const OUTAGE: Duration = Duration::from_secs(2);
    let mut receiver = IngestReceiver::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool_dir = tmp.path().join("spool");
    let client = PyroscopeClient::new(options(receiver.url(), 3)).unwrap();

    // Before the outage: delivered as they come.
    let spool = Spool::open(&spool_dir, 1 << 20).unwrap();
    for n in 0..3 {
        spool.push(&window_upload(5, n).encode()).unwrap();
        let report = deliver(&spool, &client).await.unwrap();
        assert_eq!((report.delivered, report.stopped.is_none()), (1, true));
    }

    receiver.stop();
    let outage = Instant::now();
    // Windows keep coming while the server is down; each delivery attempt
    // fails and leaves them spooled.
    let mut n = 3;
    while outage.elapsed() < OUTAGE / 2 {
        spool.push(&window_upload(5, n).encode()).unwrap();
        n += 1;
        let report = deliver(&spool, &client).await.unwrap();
        assert_eq!(report.delivered, 0);
        match report.stopped {
            Some(PushError::GaveUp {
                last: AttemptError::Connect { .. },
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The agent restarts in the middle of the outage: the spool is reopened.
    let waiting = spool.len();
    drop(spool);
    let spool = Spool::open(&spool_dir, 1 << 20).unwrap();
    assert_eq!(spool.len(), waiting);
    while outage.elapsed() < OUTAGE {
        spool.push(&window_upload(5, n).encode()).unwrap();
        n += 1;
        assert_eq!(deliver(&spool, &client).await.unwrap().delivered, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(spool.len() as u64, n - 3);

    receiver.restart();
    let report = deliver(&spool, &client).await.unwrap();
    assert!(report.stopped.is_none(), "{:?}", report.stopped);
    assert_eq!(report.delivered, n - 3);
    assert!(spool.is_empty());
    assert_eq!(spool.dropped(), 0);

    let received = receiver.received();
    assert!(receiver.invalid().is_empty(), "{:?}", receiver.invalid());
    let order: Vec<u64> = received.iter().map(|r| window_number(&r.profile)).collect();
    assert_eq!(order, (0..n).collect::<Vec<_>>(), "every window, in order");
    for (r, i) in received.iter().zip(0..) {
        assert_eq!(r.from, (START_MS + i * WINDOW_MS) / 1000);
        assert_eq!(r.labels["pid"], "5");
    }
}

#[tokio::test]
async fn a_full_spool_drops_the_oldest_windows_and_delivers_the_rest_in_order() {
    let mut receiver = IngestReceiver::start();
    receiver.stop();
    let tmp = tempfile::tempdir().unwrap();
    let item_size = window_upload(9, 0).encode().len() as u64;
    // Room for 4 windows (they are about the same size).
    let spool = Spool::open(tmp.path(), item_size * 4 + item_size / 2).unwrap();
    let client = PyroscopeClient::new(options(receiver.url(), 1)).unwrap();
    for n in 0..10 {
        spool.push(&window_upload(9, n).encode()).unwrap();
    }
    assert_eq!(deliver(&spool, &client).await.unwrap().delivered, 0);
    assert_eq!((spool.len(), spool.dropped()), (4, 6));

    receiver.restart();
    let report = deliver(&spool, &client).await.unwrap();
    assert_eq!(report.delivered, 4);
    let order: Vec<u64> = receiver
        .received()
        .iter()
        .map(|r| window_number(&r.profile))
        .collect();
    assert_eq!(order, [6, 7, 8, 9]);
}

#[tokio::test]
async fn refused_windows_leave_the_spool_but_bad_credentials_keep_it() {
    let receiver = IngestReceiver::start();
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::open(tmp.path(), 1 << 20).unwrap();
    let client = PyroscopeClient::new(options(receiver.url(), 3)).unwrap();
    for n in 0..3 {
        spool.push(&window_upload(3, n).encode()).unwrap();
    }
    spool.push(b"damaged item").unwrap();
    spool.push(&window_upload(3, 3).encode()).unwrap();

    // Bad credentials: about the agent, not the window; nothing is lost.
    receiver.fail_next(1, 401);
    let report = deliver(&spool, &client).await.unwrap();
    assert_eq!(report.delivered, 0);
    assert!(
        report
            .stopped
            .as_ref()
            .is_some_and(|e| e.to_string().contains("check the credentials")),
        "{:?}",
        report.stopped
    );
    assert_eq!(spool.len(), 5);

    // A window the server refuses for good is dropped; the others go on.
    receiver.fail_next(1, 422);
    let report = deliver(&spool, &client).await.unwrap();
    assert_eq!(
        (report.rejected, report.delivered, report.damaged),
        (1, 3, 1)
    );
    assert!(report.stopped.is_none());
    assert!(spool.is_empty());
    let order: Vec<u64> = receiver
        .received()
        .iter()
        .map(|r| window_number(&r.profile))
        .collect();
    assert_eq!(order, [1, 2, 3]);
}

/// A test CA and a server certificate it signed for 127.0.0.1 and localhost
/// (ECDSA P-256, valid until 2126), made with openssl for these tests only.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBnDCCAUOgAwIBAgIULEV0pN3NXgL2GDNCNY50QjfbC8swCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcHJvZmlsZXIgdGVzdCBDQTAgFw0yNjExMjQxMjA5MTRaGA8y
MTI2MTAzMTEyMDkxNFowGzEZMBcGA1UEAwwQcHJvZmlsZXIgdGVzdCBDQTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABAZphK8cBgdLxYCSDI9MTuSoeLRNqNNdHvoT
Zp4wfcrSNIocoeCggbXxmC6UhYwUzqGDEdxj+7bSBOpSQNgfYWajYzBhMB0GA1Ud
DgQWBBSXqUo4twn0hSISnNMeroWAstKxPjAfBgNVHSMEGDAWgBSXqUo4twn0hSIS
nNMeroWAstKxPjAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIBBjAKBggq
hkjOPQQDAgNHADBEAiBfnLlgujnCSN16oXj/RwqU5k8aURL7HM9EQ/2BqIGNuAIg
GbrWfw/TljsC/FrLGKjS1zdy6/arSyZE3MTLVjZmXkU=
-----END CERTIFICATE-----
";
const TEST_SERVER_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBxjCCAWygAwIBAgIUdLAOJYGRHwQB47+PvvUG3d6bSSAwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQcHJvZmlsZXIgdGVzdCBDQTAgFw0yNjExMjQxMjA5MTRaGA8y
MTI2MTAzMTEyMDkxNFowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAE5ol/m8TXBiut4CloNVHcXLsAqb25WNABoWbQbycJvImI
0b0UEfFTz9tt25RjX1D8Zcy7QAFIfS4VnA7oADyI0KOBkjCBjzAMBgNVHRMBAf8E
AjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAaBgNVHREE
EzARgglsb2NhbGhvc3SHBH8AAAEwHQYDVR0OBBYEFB3dvGRIAWHIGclVhjzDLzZh
H9EfMB8GA1UdIwQYMBaAFJepSji3CfSFIhKc0x6uhYCy0rE+MAoGCCqGSM49BAMC
A0gAMEUCIQCr8BRPSfz3NvIAVaAvRfgfbMhfsjCEXKNzlQWhykw1pQIgC8mlFrLP
ZhqQ3Dv00pieldshHYNfEjSK+mWu5nyYmPI=
-----END CERTIFICATE-----
";
const TEST_SERVER_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVwzgfemzNs7u2Tb1
DjD6gk/OZIaeYq52v2wi6+8bj0yhRANCAATmiX+bxNcGK63gKWg1UdxcuwCpvblY
0AGhZtBvJwm8iYjRvRQR8VPP223blGNfUPxlzLtAAUh9LhWcDugAPIjQ
-----END PRIVATE KEY-----
";

#[tokio::test]
async fn https_with_rustls_and_a_private_ca() {
    let receiver = IngestReceiver::start_tls(TEST_SERVER_CERT_PEM, TEST_SERVER_KEY_PEM);
    assert!(receiver.url().starts_with("https://127.0.0.1:"));
    let tmp = tempfile::tempdir().unwrap();
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, TEST_CA_PEM).unwrap();

    // Without the CA, the server's certificate is not trusted: a connect
    // error, retried like any other (the CA may be installed meanwhile).
    let untrusting = PyroscopeClient::new(options(receiver.url(), 1)).unwrap();
    let err = untrusting.push(&window_upload(1, 0)).await.unwrap_err();
    match &err {
        PushError::GaveUp {
            last: AttemptError::Connect { message },
            ..
        } => assert!(message.to_lowercase().contains("certificate"), "{message}"),
        other => panic!("{other}"),
    }
    assert!(receiver.received().is_empty());

    let client = PyroscopeClient::new(ClientOptions {
        ca_file: Some(ca_file),
        ..options(receiver.url(), 1)
    })
    .unwrap();
    client.push(&window_upload(1, 0)).await.unwrap();
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].profile, to_proto(&window_profile(1, 0)));
}

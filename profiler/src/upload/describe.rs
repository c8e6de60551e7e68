//! What a pprof profile says about itself that a push to Pyroscope needs:
//! when it was taken, its kind, and the labels it carries; and the
//! [`Upload`] made of that, the command line's settings and defaults.
//!
//! Read from the profile:
//! - the time range: `time_nanos` and `duration_nanos` (a profile without
//!   `time_nanos` is refused: Pyroscope could not place it in time);
//! - `profile_type`: `cpu`, `off-cpu` or `wall` when a sample type is
//!   `cpu`, `off_cpu` or `wall` in nanoseconds (as `profiler record` writes);
//! - `pid` and `comm`: the sample labels of those names, when every sample
//!   has the same value (one process); and `service_name`, likewise;
//! - comments of the form `key=value` (a label name, `=`, a value without
//!   spaces around it) as labels. The comments `profiler record` writes
//!   (what was profiled: `pid 42 (nginx)`, a command line) are free text
//!   and never match;
//! - the sample rate: one second over the period, when the period is a CPU
//!   or wall time in nanoseconds; else Pyroscope's default of 100 Hz.

use std::collections::BTreeSet;

use ::pprof::protos;

use crate::agent::pyroscope::{SPY_NAME, Upload};
use crate::output::pprof::decode;

use super::{UploadConfig, UploadError};

/// The sample rate sent when the profile does not tell one.
pub const DEFAULT_SAMPLE_RATE_HZ: u64 = 100;

/// What a pprof profile says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PprofFacts {
    pub start_unix_nanos: u64,
    pub duration_nanos: u64,
    /// `cpu`, `off-cpu` or `wall`.
    pub profile_type: Option<&'static str>,
    /// The `pid` label, when every sample has the same.
    pub pid: Option<i64>,
    /// The `comm` label, when every sample has the same.
    pub comm: Option<String>,
    /// The `service_name` label or comment.
    pub service_name: Option<String>,
    /// Labels from `key=value` comments (other than `service_name`).
    pub comment_labels: Vec<(String, String)>,
    pub sample_rate_hz: Option<u64>,
}

/// Reads what `bytes` (a pprof profile, gzip-compressed or not) says about
/// itself; `what` names it in errors.
pub fn facts(bytes: &[u8], what: &str) -> Result<PprofFacts, UploadError> {
    let profile = decode(bytes).map_err(|e| UploadError::NotPprof {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    let not_pprof = |message: &str| UploadError::NotPprof {
        what: what.to_string(),
        message: message.to_string(),
    };
    let strings = &profile.string_table;
    if strings.first().is_none_or(|s| !s.is_empty()) {
        return Err(not_pprof("its string table does not start with \"\""));
    }
    let string = |i: i64| -> Option<&str> {
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i))
            .map(String::as_str)
    };
    let start_unix_nanos = u64::try_from(profile.time_nanos)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| UploadError::NoStartTime {
            what: what.to_string(),
        })?;
    let profile_type =
        profile
            .sample_type
            .iter()
            .find_map(|t| match (string(t.ty)?, string(t.unit)?) {
                ("cpu", "nanoseconds") => Some("cpu"),
                ("off_cpu", "nanoseconds") => Some("off-cpu"),
                ("wall", "nanoseconds") => Some("wall"),
                _ => None,
            });
    let sample_rate_hz = profile.period_type.as_ref().and_then(|t| {
        let time = matches!(string(t.ty)?, "cpu" | "wall") && string(t.unit)? == "nanoseconds";
        (time && profile.period > 0).then(|| (1_000_000_000 / profile.period as u64).max(1))
    });

    let mut service_name = single_str_label(&profile, "service_name");
    let mut comment_labels = Vec::new();
    for (key, value) in profile
        .comment
        .iter()
        .filter_map(|&c| string(c)?.split_once('='))
    {
        if !is_label_name(key) || value.is_empty() || value.trim() != value {
            continue;
        }
        if key == "service_name" {
            service_name.get_or_insert_with(|| value.to_string());
        } else {
            comment_labels.push((key.to_string(), value.to_string()));
        }
    }
    Ok(PprofFacts {
        start_unix_nanos,
        duration_nanos: u64::try_from(profile.duration_nanos).unwrap_or(0),
        profile_type,
        pid: single_num_label(&profile, "pid"),
        comm: single_str_label(&profile, "comm"),
        service_name,
        comment_labels,
        sample_rate_hz,
    })
}

/// A label name as Prometheus (and Pyroscope) has them.
fn is_label_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn label_key(profile: &protos::Profile, key: &str) -> Option<i64> {
    profile
        .string_table
        .iter()
        .position(|s| s == key)
        .map(|i| i as i64)
}

/// The value of string label `key` when every sample has it, the same.
fn single_str_label(profile: &protos::Profile, key: &str) -> Option<String> {
    let key = label_key(profile, key)?;
    let values: BTreeSet<Option<i64>> = profile
        .sample
        .iter()
        .map(|s| s.label.iter().find(|l| l.key == key).map(|l| l.str))
        .collect();
    match values.into_iter().collect::<Vec<_>>()[..] {
        [Some(index)] if index > 0 => profile.string_table.get(index as usize).cloned(),
        _ => None,
    }
}

/// The value of number label `key` when every sample has it, the same.
fn single_num_label(profile: &protos::Profile, key: &str) -> Option<i64> {
    let key = label_key(profile, key)?;
    let values: BTreeSet<Option<i64>> = profile
        .sample
        .iter()
        .map(|s| s.label.iter().find(|l| l.key == key).map(|l| l.num))
        .collect();
    match values.into_iter().collect::<Vec<_>>()[..] {
        [Some(num)] => Some(num),
        _ => None,
    }
}

/// The push of a profile: `body` as it is, described by `facts`.
///
/// The service name is, first found: `--service-name`, a `--label
/// service_name=...`, the profile's `service_name`, its single `comm`, then
/// `default_name` (the file's stem). Labels: `defaults` (the caller's, e.g.
/// `record`'s host name), then the profile's (`pid`, `comm`,
/// `profile_type`, comments), then `--label`; a later one of the same name
/// replaces an earlier one.
pub fn upload(
    config: &UploadConfig,
    facts: &PprofFacts,
    default_name: &str,
    defaults: &[(String, String)],
    body: Vec<u8>,
) -> Upload {
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| match labels.iter_mut().find(|(k, _)| k == key) {
        Some(label) => label.1 = value,
        None => labels.push((key.to_string(), value)),
    };
    for (key, value) in defaults {
        set(key, value.clone());
    }
    if let Some(pid) = facts.pid {
        set("pid", pid.to_string());
    }
    if let Some(comm) = &facts.comm {
        set("comm", comm.clone());
    }
    if let Some(profile_type) = facts.profile_type {
        set("profile_type", profile_type.to_string());
    }
    for (key, value) in &facts.comment_labels {
        set(key, value.clone());
    }
    let mut flag_service_name = None;
    for (key, value) in &config.labels {
        if key == "service_name" {
            flag_service_name = Some(value.clone());
        } else {
            set(key, value.clone());
        }
    }
    let app_name = config
        .service_name
        .clone()
        .or(flag_service_name)
        .or_else(|| facts.service_name.clone())
        .or_else(|| facts.comm.clone())
        .unwrap_or_else(|| default_name.to_string());
    let until_nanos = facts.start_unix_nanos.saturating_add(facts.duration_nanos);
    Upload {
        app_name,
        labels,
        from_unix_millis: facts.start_unix_nanos / 1_000_000,
        until_unix_millis: until_nanos.div_ceil(1_000_000),
        sample_rate_hz: facts.sample_rate_hz.unwrap_or(DEFAULT_SAMPLE_RATE_HZ),
        spy_name: SPY_NAME.into(),
        body,
    }
}

/// The name a file gives a profile: its name without the extensions the
/// profiler writes (`cpu.pb.gz` → `cpu`).
pub fn file_stem(path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let ext = [
        ".pb.gz",
        ".pprof.gz",
        ".pprof",
        ".pb",
        ".gz",
        ".svg",
        ".folded",
        ".txt",
    ]
    .into_iter()
    .find(|ext| lower.ends_with(ext));
    if let Some(ext) = ext
        && name.len() > ext.len()
    {
        return name[..name.len() - ext.len()].to_string();
    }
    if name.is_empty() {
        "profile".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::pprof::{to_proto, write_pprof};
    use crate::output::test_profile::{demo_profile, off_cpu_profile};
    use ::pprof::protos::Message;

    fn gz(profile: &crate::profile::Profile) -> Vec<u8> {
        let mut out = Vec::new();
        write_pprof(profile, &mut out).unwrap();
        out
    }

    fn one_process(mut profile: crate::profile::Profile) -> crate::profile::Profile {
        for s in &mut profile.samples {
            s.pid = 42;
            s.comm = "shop".into();
        }
        profile.meta.start_unix_nanos = 1_700_000_000_250_000_000;
        profile.meta.duration_nanos = 10_000_000_000;
        profile
    }

    #[test]
    fn a_recording_of_one_process() {
        let profile = one_process(demo_profile());
        let facts = facts(&gz(&profile), "x").unwrap();
        assert_eq!(facts.pid, Some(42));
        assert_eq!(facts.comm.as_deref(), Some("shop"));
        assert_eq!(facts.profile_type, Some("cpu"));
        assert_eq!(facts.sample_rate_hz, Some(profile.meta.frequency_hz));
        assert_eq!(facts.start_unix_nanos, 1_700_000_000_250_000_000);
        let upload = upload(
            &UploadConfig::new("http://x"),
            &facts,
            "stem",
            &[("hostname".into(), "h".into())],
            vec![1, 2],
        );
        assert_eq!(
            upload.ingest_name(),
            "shop{hostname=h,pid=42,comm=shop,profile_type=cpu}"
        );
        assert_eq!(
            (upload.from_secs(), upload.until_secs()),
            (1_700_000_000, 1_700_000_011)
        );
        assert_eq!(upload.body, [1, 2]);
    }

    #[test]
    fn flags_win_and_the_stem_is_the_last_resort() {
        let mut profile = demo_profile();
        profile.meta.start_unix_nanos = 1;
        profile.samples[0].comm = "other".into();
        let bytes = to_proto(&profile).encode_to_vec();
        let facts = facts(&bytes, "x").unwrap();
        assert_eq!((facts.pid, facts.comm.as_deref()), (None, None));
        let config = UploadConfig::new("http://x");
        assert_eq!(
            upload(&config, &facts, "stem", &[], vec![]).app_name,
            "stem"
        );
        let config = UploadConfig {
            labels: vec![
                ("env".into(), "prod".into()),
                ("profile_type".into(), "mine".into()),
                ("service_name".into(), "from-label".into()),
            ],
            ..UploadConfig::new("http://x")
        };
        let u = upload(&config, &facts, "stem", &[], vec![]);
        assert_eq!(u.ingest_name(), "from-label{profile_type=mine,env=prod}");
        let config = UploadConfig {
            service_name: Some("flag".into()),
            ..config
        };
        assert_eq!(
            upload(&config, &facts, "stem", &[], vec![]).app_name,
            "flag"
        );
    }

    #[test]
    fn comments_and_service_name_labels() {
        let mut proto = to_proto(&one_process(off_cpu_profile()));
        for comment in [
            "service_name=api",
            "team=infra",
            "pid 42 (x)",
            "a = b",
            "9x=y",
        ] {
            proto.string_table.push(comment.into());
            proto.comment.push(proto.string_table.len() as i64 - 1);
        }
        let facts = facts(&proto.encode_to_vec(), "x").unwrap();
        assert_eq!(facts.service_name.as_deref(), Some("api"));
        assert_eq!(
            facts.comment_labels,
            [("team".to_string(), "infra".to_string())]
        );
        assert_eq!(facts.profile_type, Some("off-cpu"));
        assert_eq!(facts.sample_rate_hz, None);
        let u = upload(&UploadConfig::new("http://x"), &facts, "stem", &[], vec![]);
        assert_eq!(u.app_name, "api");
        assert_eq!(u.sample_rate_hz, DEFAULT_SAMPLE_RATE_HZ);
    }

    #[test]
    fn refuses_what_is_not_a_dated_pprof() {
        let err = facts(b"<svg>", "flame.svg").unwrap_err();
        assert!(matches!(err, UploadError::NotPprof { .. }), "{err}");
        assert!(err.to_string().contains("flame.svg"), "{err}");
        let mut profile = demo_profile();
        profile.meta.start_unix_nanos = 0;
        let err = facts(&gz(&profile), "old.pb.gz").unwrap_err();
        assert!(matches!(err, UploadError::NoStartTime { .. }), "{err}");
    }

    #[test]
    fn stems() {
        for (path, stem) in [
            ("/tmp/cpu.pb.gz", "cpu"),
            ("a.b.pprof", "a.b"),
            ("flame.SVG", "flame"),
            ("noext", "noext"),
            (".pb.gz", ".pb.gz"),
            ("/", "profile"),
        ] {
            assert_eq!(file_stem(std::path::Path::new(path)), stem, "{path}");
        }
    }
}

//! `record --upload URL`: pushing the recording to Pyroscope once its
//! outputs are written. The pprof is made in memory, whatever the outputs
//! are; when the push fails (or Ctrl-C stops it) and no output is a pprof,
//! it is saved next to the first output so that `profiler upload` can push
//! it later.

use std::path::{Path, PathBuf};

use crate::{
    agent::config::machine_hostname,
    output::{self, Format, OutputOptions, OutputSpec, pprof::write_pprof},
    profile::Profile,
    upload::{UploadConfig, UploadError, Uploader, describe},
};

/// A push the server took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The server's base URL.
    pub url: String,
    /// The `name` of the ingest request: `service{labels}`.
    pub name: String,
    pub attempts: u32,
}

/// Pushes `profile` (already written to `outputs`). Labels besides the
/// profile's own: `hostname`, this machine's, as the agent sends it.
pub(super) async fn push_recording(
    profile: &Profile,
    outputs: &[OutputSpec],
    config: &UploadConfig,
    uploader: &Uploader,
) -> Result<Pushed, UploadError> {
    let mut body = Vec::new();
    write_pprof(profile, &mut body).expect("writing to memory does not fail");
    let facts = describe::facts(&body, "the recording")?;
    let default_name = outputs
        .first()
        .map_or_else(|| "profile".to_string(), |o| describe::file_stem(&o.path));
    let defaults: Vec<(String, String)> = machine_hostname()
        .ok()
        .filter(|h| !h.is_empty())
        .map(|h| ("hostname".to_string(), h))
        .into_iter()
        .collect();
    let upload = describe::upload(config, &facts, &default_name, &defaults, body);
    let what = "the recording";
    let push = uploader.push(&upload, what, || kept(profile, outputs, uploader.url()));
    // The recording's signal handlers stay installed, so Ctrl-C would
    // otherwise do nothing until the last attempt is over.
    let attempts = tokio::select! {
        attempts = push => attempts?,
        () = interrupted() => {
            return Err(UploadError::Interrupted {
                what: what.into(),
                url: uploader.url().into(),
                next: kept(profile, outputs, uploader.url()),
            });
        }
    };
    Ok(Pushed {
        url: uploader.url().to_string(),
        name: upload.ingest_name(),
        attempts,
    })
}

/// Resolves at SIGINT or SIGTERM; never if they cannot be listened to.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// After a failed push: where the recording is and how to push it again,
/// saving it as pprof when no output is one.
fn kept(profile: &Profile, outputs: &[OutputSpec], url: &str) -> String {
    let again = |path: &Path| {
        format!(
            "push it again with `profiler upload {} --pyroscope-url {url}`",
            path.display()
        )
    };
    let written: Vec<String> = outputs
        .iter()
        .map(|o| o.path.display().to_string())
        .collect();
    let written = written.join(", ");
    if let Some(pprof) = outputs.iter().find(|o| o.format == Format::Pprof) {
        return format!("the recording is kept in {written}: {}", again(&pprof.path));
    }
    let Some(path) = outputs.first().map(|o| fallback_path(&o.path)) else {
        return "the recording was not written anywhere".into();
    };
    match output::write(profile, &path, Format::Pprof, &OutputOptions::default()) {
        Ok(()) => format!(
            "the recording is kept in {written}, and as pprof in {}: {}",
            path.display(),
            again(&path)
        ),
        Err(e) => format!(
            "the recording is kept in {written}, but could not be saved as pprof ({e}); \
             record with -o FILE.pb.gz to keep one for `profiler upload`"
        ),
    }
}

/// `<stem>.pb.gz` beside `output`, or `<stem>.<unix seconds>.pb.gz` when
/// that exists: an existing file is never replaced.
fn fallback_path(output: &Path) -> PathBuf {
    let stem = describe::file_stem(output);
    let path = output.with_file_name(format!("{stem}.pb.gz"));
    if !path.exists() {
        return path;
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    output.with_file_name(format!("{stem}.{secs}.pb.gz"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_profile::demo_profile;

    #[test]
    fn a_failed_push_keeps_a_pprof_for_profiler_upload() {
        let tmp = tempfile::tempdir().unwrap();
        let svg = OutputSpec {
            path: tmp.path().join("flame.svg"),
            format: Format::Svg,
        };
        let profile = demo_profile();
        let note = kept(&profile, std::slice::from_ref(&svg), "http://p:4040");
        let saved = tmp.path().join("flame.pb.gz");
        assert!(saved.exists(), "{note}");
        assert!(
            note.contains(&format!(
                "profiler upload {} --pyroscope-url http://p:4040",
                saved.display()
            )),
            "{note}"
        );
        // A second time, the first save is not replaced.
        let note = kept(&profile, std::slice::from_ref(&svg), "http://p:4040");
        assert!(
            !note.contains(&format!("in {}:", saved.display())),
            "{note}"
        );
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);

        let pprof = OutputSpec {
            path: tmp.path().join("out.pprof"),
            format: Format::Pprof,
        };
        let note = kept(&profile, &[svg, pprof.clone()], "u");
        assert!(
            note.contains("profiler upload") && note.contains("out.pprof"),
            "{note}"
        );
        assert!(
            !pprof.path.exists(),
            "nothing is written when a pprof output exists"
        );
    }
}

//! `profiler upload` and `record --upload`: pushing pprof profiles to
//! Grafana Pyroscope, one ingest request each, with the agent's client
//! ([`crate::agent::pyroscope`]): the same authentication (basic or
//! bearer, secrets read from a file or an environment variable), TLS,
//! timeout and retries.
//!
//! The push's service name, labels and time range come from the command
//! line and from the profile itself ([`describe`]). Files are never
//! changed or removed, whether the server takes them or not.

pub mod describe;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::config::{ConfigError, PyroscopeConfig};
use crate::agent::pyroscope::{
    AttemptError, ClientError, ClientOptions, PushError, PyroscopeClient, Upload,
};

/// Attempts per profile: fewer than the agent's, as someone is waiting.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Longest wait between attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where and how to push, and what to call the profiles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadConfig {
    /// The server, credentials, TLS, timeout and retries, as the agent's
    /// `[pyroscope]` (the spool bound is not used).
    pub pyroscope: PyroscopeConfig,
    /// `None`: from the profile, else the file's stem ([`describe::upload`]).
    pub service_name: Option<String>,
    /// Labels that win over the profile's, in order (`--label KEY=VALUE`).
    pub labels: Vec<(String, String)>,
}

impl UploadConfig {
    /// Pushing to `url` with [`DEFAULT_MAX_ATTEMPTS`] and
    /// [`DEFAULT_BACKOFF_MAX`], and the agent's other defaults.
    pub fn new(url: impl Into<String>) -> UploadConfig {
        UploadConfig {
            pyroscope: PyroscopeConfig {
                max_attempts: DEFAULT_MAX_ATTEMPTS,
                backoff_max: DEFAULT_BACKOFF_MAX,
                ..PyroscopeConfig::new(url)
            },
            service_name: None,
            labels: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what} is not a pprof profile ({message}); upload takes pprof files such as \
         `profiler record -o out.pb.gz` writes"
    )]
    NotPprof { what: String, message: String },
    #[error(
        "{what} does not say when it was taken (its time_nanos is 0), so Pyroscope could not \
         place it in time; only profiles with a start time can be uploaded"
    )]
    NoStartTime { what: String },
    #[error(transparent)]
    Config { source: ConfigError },
    #[error(transparent)]
    Client { source: ClientError },
    /// The server refused the profile, or could not be reached.
    #[error("{}; {next}", push_failure(.what, .url, .error))]
    Push {
        /// The profile, e.g. its file name.
        what: String,
        /// The base URL as given.
        url: String,
        error: PushError,
        /// What became of the profile and how to push it again.
        next: String,
    },
    #[error("interrupted while uploading {what} to Pyroscope at {url}; {next}")]
    Interrupted {
        what: String,
        url: String,
        next: String,
    },
}

/// What went wrong with a push, and what to check.
fn push_failure(what: &str, url: &str, error: &PushError) -> String {
    match error {
        PushError::Rejected { error, .. } => {
            let hint = match error {
                AttemptError::Status {
                    status: 401 | 403 | 407,
                    ..
                } => {
                    "check the credentials: --pyroscope-user with --pyroscope-password-file or \
                     --pyroscope-password-env, or --pyroscope-token-file or --pyroscope-token-env"
                }
                AttemptError::Status {
                    status: 300..=399 | 404,
                    ..
                } => "check the URL: it is the server's base URL, such as http://localhost:4040",
                _ => "the server does not take this profile",
            };
            format!("Pyroscope at {url} refused {what} ({error}); {hint}")
        }
        PushError::GaveUp { attempts, last, .. } => match last {
            // The chain's last part says why (refused, no such host); the
            // rest repeats the request's URL.
            AttemptError::Connect { message } => format!(
                "cannot reach Pyroscope at {url} to upload {what} ({attempts} attempt(s); last: {}); \
                 check that the server is running and that the URL's host and port are right",
                message.rsplit(": ").next().unwrap_or(message)
            ),
            _ => format!(
                "Pyroscope at {url} did not take {what} after {attempts} attempt(s) (last: {last}); \
                 the server may be down or overloaded: try again later"
            ),
        },
    }
}

/// A client for one server, made from the settings once they are checked
/// and their secrets read.
#[derive(Clone, Debug)]
pub struct Uploader {
    client: PyroscopeClient,
    url: String,
}

impl Uploader {
    pub fn new(config: &PyroscopeConfig) -> Result<Uploader, UploadError> {
        let config_error = |source| UploadError::Config { source };
        config.validate().map_err(config_error)?;
        let options = ClientOptions::from_config(config).map_err(config_error)?;
        let client =
            PyroscopeClient::new(options).map_err(|source| UploadError::Client { source })?;
        Ok(Uploader {
            client,
            url: config.url.clone(),
        })
    }

    /// The server's base URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Pushes `upload` (named `what` in errors), retrying what may pass.
    /// `next` says, in an error, what became of the profile and how to
    /// push it again. Returns the number of attempts.
    pub async fn push(
        &self,
        upload: &Upload,
        what: &str,
        next: impl FnOnce() -> String,
    ) -> Result<u32, UploadError> {
        self.client
            .push(upload)
            .await
            .map_err(|error| UploadError::Push {
                what: what.to_string(),
                url: self.url.clone(),
                error,
                next: next(),
            })
    }
}

/// Reads the pprof file at `path` and makes its push (see
/// [`describe::upload`]; the default service name is the file's stem).
pub fn prepare_file(config: &UploadConfig, path: &Path) -> Result<Upload, UploadError> {
    let body = std::fs::read(path).map_err(|source| UploadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let facts = describe::facts(&body, &path.display().to_string())?;
    Ok(describe::upload(
        config,
        &facts,
        &describe::file_stem(path),
        &[],
        body,
    ))
}

/// `profiler upload FILE...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadFiles {
    pub config: UploadConfig,
    pub files: Vec<PathBuf>,
}

/// Pushes every file, in order, after reading and checking them all; stops
/// at the first push that fails. `pushed` is told of each file the server
/// took, with its push and the attempts it took.
pub async fn upload_files(
    upload: &UploadFiles,
    mut pushed: impl FnMut(&Path, &Upload, u32),
) -> Result<(), UploadError> {
    let uploads = upload
        .files
        .iter()
        .map(|path| prepare_file(&upload.config, path))
        .collect::<Result<Vec<_>, _>>()?;
    let uploader = Uploader::new(&upload.config.pyroscope)?;
    for (i, (path, push)) in upload.files.iter().zip(&uploads).enumerate() {
        let next = || {
            let list = |paths: &[PathBuf]| {
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let mut next = format!(
                "the file is unchanged: push it again with `profiler upload {} --pyroscope-url {}`",
                list(&upload.files[i..]),
                upload.config.pyroscope.url
            );
            if i > 0 {
                next.push_str(&format!(
                    " (uploaded before it: {})",
                    list(&upload.files[..i])
                ));
            }
            next
        };
        let attempts = uploader
            .push(push, &path.display().to_string(), next)
            .await?;
        pushed(path, push, attempts);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_check() {
        let status = |status| AttemptError::Status {
            status,
            body: "no".into(),
        };
        let rejected = |s| PushError::Rejected {
            url: "http://p:4040/ingest".into(),
            error: status(s),
        };
        let message = push_failure("a.pb.gz", "http://p:4040", &rejected(401));
        assert_eq!(
            message,
            "Pyroscope at http://p:4040 refused a.pb.gz (HTTP 401: no); check the credentials: \
             --pyroscope-user with --pyroscope-password-file or --pyroscope-password-env, or \
             --pyroscope-token-file or --pyroscope-token-env"
        );
        assert!(push_failure("a", "u", &rejected(404)).contains("base URL"));
        assert!(push_failure("a", "u", &rejected(413)).contains("does not take this profile"));
        let refused = PushError::GaveUp {
            url: "u".into(),
            attempts: 3,
            last: AttemptError::Connect {
                message: "connection refused".into(),
            },
        };
        let message = push_failure("a", "http://127.0.0.1:1", &refused);
        assert!(
            message.starts_with("cannot reach Pyroscope at http://127.0.0.1:1"),
            "{message}"
        );
        assert!(message.contains("is running"), "{message}");
        assert!(
            message.contains("(3 attempt(s); last: connection refused)"),
            "{message}"
        );
        let down = PushError::GaveUp {
            url: "u".into(),
            attempts: 3,
            last: status(503),
        };
        assert!(push_failure("a", "u", &down).contains("try again later"));
    }

    #[test]
    fn bad_settings_and_files_are_refused_before_any_push() {
        let err = Uploader::new(&UploadConfig::new("localhost:4040").pyroscope).unwrap_err();
        assert!(matches!(err, UploadError::Config { .. }), "{err}");
        let err = Uploader::new(&UploadConfig::new("http://user:pw@host").pyroscope).unwrap_err();
        assert!(matches!(err, UploadError::Config { .. }), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let config = UploadConfig::new("http://127.0.0.1:1");
        let err = prepare_file(&config, &tmp.path().join("missing.pb.gz")).unwrap_err();
        assert!(matches!(err, UploadError::Read { .. }), "{err}");
        let svg = tmp.path().join("flame.svg");
        std::fs::write(&svg, "<svg/>").unwrap();
        let err = prepare_file(&config, &svg).unwrap_err();
        assert!(matches!(err, UploadError::NotPprof { .. }), "{err}");
    }
}

//! The Pyroscope push client: one window's pprof per request to Pyroscope's
//! HTTP ingest API,
//!
//! `POST {url}/ingest?name=<app>{k=v,...}&from=<unix s>&until=<unix s>&format=pprof&sampleRate=<hz>&spyName=<spy>`
//!
//! with the pprof profile (gzip-compressed or not) as the raw request body.
//! That is what Pyroscope reads for `format=pprof`: its ingest handler
//! takes the whole body as the profile when `format=pprof` (grafana/pyroscope
//! `pkg/og/server/ingest.go`, `pkg/og/convert/pprof/profile.go`); the
//! multipart form with a `profile` field is the documented way to send a
//! custom `sample_type_config`, which this client does not need.
//!
//! TLS is rustls with the ring provider (no OpenSSL, no aws-lc-rs), trusting
//! the system's certificates and optionally a CA file. Requests time out;
//! failures that may pass (connection errors, timeouts, HTTP 5xx, 408, 429)
//! are retried with exponential backoff and full jitter, others (4xx) are not.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use retry_policies::policies::ExponentialBackoff;
use retry_policies::{Jitter, RetryDecision, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::agent::config::{AuthConfig, ConfigError, PyroscopeConfig, Secret};
use crate::agent::store::{WindowKey, kind_name};

/// The `spyName` the agent reports. Pyroscope's own eBPF profiler uses it
/// too; it marks native code, whose function names Pyroscope leaves as they
/// are (it rewrites them for the Python and Ruby spies).
pub const SPY_NAME: &str = "ebpfspy";

/// Longest error body kept in messages.
const MAX_BODY_IN_ERROR: usize = 512;

/// One profile to push, with what the ingest request says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The application name; Pyroscope makes it the `service_name` label.
    pub app_name: String,
    /// Labels besides the service name, in the order they are sent.
    pub labels: Vec<(String, String)>,
    pub from_unix_millis: u64,
    pub until_unix_millis: u64,
    pub sample_rate_hz: u64,
    pub spy_name: String,
    /// The pprof profile, gzip-compressed or not.
    #[serde(skip)]
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a spooled upload: {message}")]
pub struct UploadDecodeError {
    pub message: String,
}

/// Start of an encoded [`Upload`] (version 1).
const UPLOAD_MAGIC: &[u8; 8] = b"PRFUPL1\n";

impl Upload {
    /// The upload of one stored window: app name `service_name`, labels
    /// `hostname`, `pid`, `comm` and `profile_type` (`cpu`, `off-cpu`, `wall`).
    pub fn window(
        service_name: &str,
        hostname: &str,
        key: &WindowKey,
        frequency_hz: u64,
        pprof: Vec<u8>,
    ) -> Upload {
        Upload {
            app_name: service_name.to_string(),
            labels: vec![
                ("hostname".into(), hostname.into()),
                ("pid".into(), key.pid.to_string()),
                ("comm".into(), key.comm.clone()),
                ("profile_type".into(), kind_name(key.kind).into()),
            ],
            from_unix_millis: key.start_unix_millis,
            until_unix_millis: key.end_unix_millis,
            sample_rate_hz: frequency_hz,
            spy_name: SPY_NAME.into(),
            body: pprof,
        }
    }

    /// The `name` query parameter: `app{k=v,...}`, escaped for Pyroscope.
    pub fn ingest_name(&self) -> String {
        ingest_name(&self.app_name, &self.labels)
    }

    /// `from` in Unix seconds (rounded down).
    pub fn from_secs(&self) -> u64 {
        self.from_unix_millis / 1000
    }

    /// `until` in Unix seconds (rounded up, so the range covers the window).
    pub fn until_secs(&self) -> u64 {
        self.until_unix_millis.div_ceil(1000)
    }

    /// The bytes a spool keeps: a magic line, the header's length (u32, little
    /// endian), the header in JSON, then the body.
    pub fn encode(&self) -> Vec<u8> {
        let header = serde_json::to_vec(self).expect("an upload header serializes");
        let mut out = Vec::with_capacity(UPLOAD_MAGIC.len() + 4 + header.len() + self.body.len());
        out.extend_from_slice(UPLOAD_MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Upload, UploadDecodeError> {
        let error = |message: &str| UploadDecodeError {
            message: message.to_string(),
        };
        let rest = bytes
            .strip_prefix(UPLOAD_MAGIC)
            .ok_or_else(|| error("bad magic"))?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| error("truncated header length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(error("truncated header"));
        }
        let (header, body) = rest.split_at(len);
        let mut upload: Upload = serde_json::from_slice(header).map_err(|e| UploadDecodeError {
            message: format!("bad header: {e}"),
        })?;
        upload.body = body.to_vec();
        Ok(upload)
    }
}

/// Pyroscope's application names: ASCII letters, digits, `_`, `-`, `.`.
fn sanitize_app_name(name: &str) -> String {
    let clean: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "unknown".into()
    } else {
        clean
    }
}

/// Label names: ASCII letters, digits and `_`, not starting with a digit
/// (Prometheus' rule, which Pyroscope applies), and not `__`-prefixed
/// (reserved: Pyroscope drops such labels).
fn sanitize_label_key(key: &str) -> String {
    let mut clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() || clean.starts_with(|c: char| c.is_ascii_digit()) {
        clean.insert(0, '_');
    }
    if clean.starts_with("__") {
        clean.insert(0, 'l');
    }
    clean
}

/// Label values. Pyroscope's key parser has no escapes: a value ends at
/// `,` or `}` and is trimmed of white space, so those cannot be sent. `{`
/// and `=` would parse but read ambiguously; control characters are
/// replaced too. An empty value becomes `unknown` (empty labels are dropped).
fn sanitize_label_value(value: &str) -> String {
    let clean: String = value
        .trim()
        .chars()
        .map(|c| {
            if matches!(c, ',' | '}' | '{' | '=') || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if clean.is_empty() {
        "unknown".into()
    } else {
        clean
    }
}

/// `app{k=v,...}` with every part made acceptable to Pyroscope's parser
/// (the query string encoding is the HTTP client's).
pub fn ingest_name(app_name: &str, labels: &[(String, String)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}={}", sanitize_label_key(k), sanitize_label_value(v)))
        .collect();
    format!("{}{{{}}}", sanitize_app_name(app_name), labels.join(","))
}

/// Credentials, read from their sources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Basic { user: String, password: Secret },
    Bearer { token: Secret },
}

impl Auth {
    /// Reads the secret `config` points to.
    pub fn read(config: &AuthConfig) -> Result<Auth, ConfigError> {
        Ok(match config {
            AuthConfig::Basic { user, password } => Auth::Basic {
                user: user.clone(),
                password: password.read("pyroscope.auth.password")?,
            },
            AuthConfig::Bearer { token } => Auth::Bearer {
                token: token.read("pyroscope.auth.token")?,
            },
        })
    }
}

/// Retries of one push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryOptions {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Cap of the first wait; each next cap doubles, up to `backoff_max`.
    /// The wait is drawn uniformly below the cap (full jitter).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            max_attempts: crate::agent::config::DEFAULT_MAX_ATTEMPTS,
            backoff_initial: crate::agent::config::DEFAULT_BACKOFF_INITIAL,
            backoff_max: crate::agent::config::DEFAULT_BACKOFF_MAX,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// The server's base URL; requests go to `{url}/ingest`.
    pub url: String,
    pub auth: Option<Auth>,
    /// Sent as `X-Scope-OrgID`.
    pub tenant_id: Option<String>,
    /// PEM certificates to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Per attempt, connecting included.
    pub timeout: Duration,
    pub retry: RetryOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            url: String::new(),
            auth: None,
            tenant_id: None,
            ca_file: None,
            timeout: crate::agent::config::DEFAULT_TIMEOUT,
            retry: RetryOptions::default(),
        }
    }
}

impl ClientOptions {
    /// The options `config` gives, with its secrets read.
    pub fn from_config(config: &PyroscopeConfig) -> Result<ClientOptions, ConfigError> {
        Ok(ClientOptions {
            url: config.url.clone(),
            auth: config.auth.as_ref().map(Auth::read).transpose()?,
            tenant_id: config.tenant_id.clone(),
            ca_file: config.ca_file.clone(),
            timeout: config.timeout,
            retry: RetryOptions {
                max_attempts: config.max_attempts,
                backoff_initial: config.backoff_initial,
                backoff_max: config.backoff_max,
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "invalid Pyroscope URL {url:?}: {message}; give the server's base URL, e.g. http://localhost:4040"
    )]
    Url { url: String, message: String },
    #[error("cannot read the CA file {}: {source}", .path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {} holds no usable PEM certificate: {message}", .path.display())]
    CaCertificates { path: PathBuf, message: String },
    #[error("invalid Pyroscope setting: {message}")]
    Setting { message: String },
    #[error("cannot set up the HTTP client: {message}")]
    Build { message: String },
}

/// Why one attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptError {
    /// The server answered with an error status.
    Status { status: u16, body: String },
    /// No answer within the timeout.
    Timeout,
    /// Could not connect (refused, unreachable, TLS handshake...).
    Connect { message: String },
    /// The exchange broke off (connection reset, bad response...).
    Transport { message: String },
}

impl AttemptError {
    /// Whether trying again later may succeed: no answer, or an answer
    /// saying so (5xx, 408 Request Timeout, 429 Too Many Requests).
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
            _ => true,
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> AttemptError {
        // The source chain says what happened; reqwest's own message is generic.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        if e.is_timeout() {
            AttemptError::Timeout
        } else if e.is_connect() {
            AttemptError::Connect { message }
        } else {
            AttemptError::Transport { message }
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Status { status, body } if body.is_empty() => write!(f, "HTTP {status}"),
            AttemptError::Status { status, body } => write!(f, "HTTP {status}: {body}"),
            AttemptError::Timeout => f.write_str("no answer within the timeout"),
            AttemptError::Connect { message } => write!(f, "cannot connect: {message}"),
            AttemptError::Transport { message } => write!(f, "{message}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The server refused the request; sending it again would not help.
    #[error(
        "Pyroscope at {url} refused the profile ({error}){}",
        if matches!(.error, AttemptError::Status { status: 401 | 403, .. }) {
            "; check the credentials in [pyroscope.auth]"
        } else {
            ""
        }
    )]
    Rejected { url: String, error: AttemptError },
    /// Every attempt failed in a way that may pass; try again later.
    #[error(
        "Pyroscope at {url} did not take the profile after {attempts} attempt(s); last error: {last}"
    )]
    GaveUp {
        url: String,
        attempts: u32,
        last: AttemptError,
    },
}

impl PushError {
    /// Whether the failure is about this profile (it will never be taken,
    /// so it may be discarded) rather than about the agent or the server
    /// (credentials, redirects, outage), where it should be kept for later.
    pub fn is_about_the_profile(&self) -> bool {
        match self {
            PushError::Rejected {
                error: AttemptError::Status { status, .. },
                ..
            } => !matches!(status, 300..=399 | 401 | 403 | 404 | 407),
            _ => false,
        }
    }
}

/// What the client has done since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// Profiles the server took.
    pub successes: u64,
    /// Profiles given up on: refused, or every attempt failed.
    pub failures: u64,
    /// Of the failures, those refused (not retried).
    pub rejected: u64,
    /// Attempts after a first one.
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    successes: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    retries: AtomicU64,
}

/// A Pyroscope ingest client; cheap to clone (clones share the connection
/// pool and the counters).
#[derive(Clone, Debug)]
pub struct PyroscopeClient {
    http: reqwest::Client,
    ingest_url: reqwest::Url,
    options: Arc<ClientOptions>,
    backoff: ExponentialBackoff,
    counters: Arc<Counters>,
}

impl PyroscopeClient {
    pub fn new(options: ClientOptions) -> Result<PyroscopeClient, ClientError> {
        let url_error = |message: String| ClientError::Url {
            url: options.url.clone(),
            message,
        };
        let base = reqwest::Url::parse(&options.url).map_err(|e| url_error(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(url_error("the scheme must be http or https".into()));
        }
        let ingest_url =
            reqwest::Url::parse(&format!("{}/ingest", base.as_str().trim_end_matches('/')))
                .map_err(|e| url_error(e.to_string()))?;
        let retry = options.retry;
        if retry.max_attempts == 0 || retry.backoff_initial > retry.backoff_max {
            return Err(ClientError::Setting {
                message: format!(
                    "retries need at least 1 attempt and backoff_initial ({:?}) at most backoff_max ({:?})",
                    retry.backoff_initial, retry.backoff_max
                ),
            });
        }

        // reqwest is built without a crypto provider so that ring is used
        // (aws-lc-rs needs a C toolchain build); install ring unless the
        // process already chose one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("profiler/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.timeout)
            // A POST redirected would lose its body or method; say so instead.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::CaCertificates {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(ClientError::CaCertificates {
                    path: path.clone(),
                    message: "no certificate found".into(),
                });
            }
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| ClientError::Build {
            message: e.to_string(),
        })?;
        let backoff = ExponentialBackoff::builder()
            .retry_bounds(retry.backoff_initial, retry.backoff_max)
            .jitter(Jitter::Full)
            .base(2)
            .build_with_max_retries(retry.max_attempts - 1);
        Ok(PyroscopeClient {
            http,
            ingest_url,
            options: Arc::new(options),
            backoff,
            counters: Arc::default(),
        })
    }

    /// The URL of the ingest request for `upload`.
    pub fn request_url(&self, upload: &Upload) -> reqwest::Url {
        let mut url = self.ingest_url.clone();
        url.query_pairs_mut()
            .append_pair("name", &upload.ingest_name())
            .append_pair("from", &upload.from_secs().to_string())
            .append_pair("until", &upload.until_secs().to_string())
            .append_pair("format", "pprof")
            .append_pair("sampleRate", &upload.sample_rate_hz.to_string())
            .append_pair("spyName", &upload.spy_name);
        url
    }

    /// One attempt, without retries.
    pub async fn push_once(&self, upload: &Upload) -> Result<(), AttemptError> {
        let mut request = self
            .http
            .post(self.request_url(upload))
            .timeout(self.options.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(upload.body.clone());
        match &self.options.auth {
            Some(Auth::Basic { user, password }) => {
                request = request.basic_auth(user, Some(password.expose()));
            }
            Some(Auth::Bearer { token }) => request = request.bearer_auth(token.expose()),
            None => {}
        }
        if let Some(tenant) = &self.options.tenant_id {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AttemptError::from_reqwest(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let mut body = response.text().await.unwrap_or_default();
        if let Some(location) = location.filter(|_| status.is_redirection()) {
            body = format!("redirected to {location}; set the Pyroscope URL to the final one");
        }
        body = body.trim().to_string();
        if body.len() > MAX_BODY_IN_ERROR {
            let cut = body.floor_char_boundary(MAX_BODY_IN_ERROR);
            body.truncate(cut);
            body.push('…');
        }
        Err(AttemptError::Status {
            status: status.as_u16(),
            body,
        })
    }

    /// Pushes `upload`, retrying what may pass with exponential backoff and
    /// full jitter. Returns the number of attempts made.
    pub async fn push(&self, upload: &Upload) -> Result<u32, PushError> {
        let started = SystemTime::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match self.push_once(upload).await {
                Ok(()) => {
                    self.counters.successes.fetch_add(1, Ordering::Relaxed);
                    return Ok(attempts);
                }
                Err(error) => error,
            };
            if !error.is_retryable() {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                return Err(PushError::Rejected {
                    url: self.ingest_url.to_string(),
                    error,
                });
            }
            match self.backoff.should_retry(started, attempts - 1) {
                RetryDecision::Retry { execute_after } => {
                    let wait = execute_after
                        .duration_since(SystemTime::now())
                        .unwrap_or_default();
                    tokio::time::sleep(wait).await;
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                }
                RetryDecision::DoNotRetry => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(PushError::GaveUp {
                        url: self.ingest_url.to_string(),
                        attempts,
                        last: error,
                    });
                }
            }
        }
    }

    pub fn counters(&self) -> ClientCounters {
        let c = &self.counters;
        ClientCounters {
            successes: c.successes.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileKind;

    fn upload() -> Upload {
        Upload::window(
            "shop",
            "host-1",
            &WindowKey {
                start_unix_millis: 1_700_000_000_250,
                end_unix_millis: 1_700_000_010_250,
                pid: 42,
                comm: "nginx: worker".into(),
                kind: ProfileKind::OffCpu,
            },
            19,
            b"\x1f\x8bpprof".to_vec(),
        )
    }

    #[test]
    fn window_upload_labels_and_time_range() {
        let u = upload();
        assert_eq!(
            u.ingest_name(),
            "shop{hostname=host-1,pid=42,comm=nginx: worker,profile_type=off-cpu}"
        );
        assert_eq!(
            (u.from_secs(), u.until_secs()),
            (1_700_000_000, 1_700_000_011)
        );
        let exact = Upload {
            until_unix_millis: 1_700_000_010_000,
            ..u
        };
        assert_eq!(exact.until_secs(), 1_700_000_010);
    }

    #[test]
    fn names_are_escaped_for_pyroscopes_parser() {
        let labels = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(ingest_name("app", &[]), "app{}");
        assert_eq!(
            ingest_name(
                "my app/{x}",
                &labels(&[
                    ("comm", "a,b}c{d=e"),
                    ("host name", "  padded  "),
                    ("9lives", ""),
                    ("__name__", "x"),
                    ("tab", "a\tb\n"),
                    ("ünï", "ünïcode ok"),
                ])
            ),
            "my_app__x_{comm=a_b_c_d_e,host_name=padded,_9lives=unknown,l__name__=x,tab=a_b,_n_=ünïcode ok}"
        );
        assert_eq!(ingest_name("  ", &[]), "unknown{}");
        assert_eq!(ingest_name("a.b-c_d", &[]), "a.b-c_d{}");
    }

    #[test]
    fn request_url_encodes_every_parameter() {
        let client = PyroscopeClient::new(ClientOptions {
            url: "http://127.0.0.1:4040/base/".into(),
            ..Default::default()
        })
        .unwrap();
        let url = client.request_url(&upload());
        assert_eq!(url.path(), "/base/ingest");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                (
                    "name",
                    "shop{hostname=host-1,pid=42,comm=nginx: worker,profile_type=off-cpu}"
                ),
                ("from", "1700000000"),
                ("until", "1700000011"),
                ("format", "pprof"),
                ("sampleRate", "19"),
                ("spyName", "ebpfspy"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let query = url.query().unwrap();
        assert!(!query.contains('{') && !query.contains(' '), "{query}");
    }

    #[test]
    fn upload_encoding_round_trips() {
        let u = upload();
        let bytes = u.encode();
        assert_eq!(Upload::decode(&bytes).unwrap(), u);
        let empty = Upload {
            body: Vec::new(),
            ..upload()
        };
        assert_eq!(Upload::decode(&empty.encode()).unwrap(), empty);
        for bad in [
            &b""[..],
            b"PRFUPL1\n",
            b"PRFUPL1\n\xff\0\0\0{}",
            b"garbage!garbage",
        ] {
            assert!(Upload::decode(bad).is_err(), "{bad:?}");
        }
        let mut bytes = u.encode();
        bytes[12] = b'[';
        assert!(
            Upload::decode(&bytes)
                .unwrap_err()
                .to_string()
                .contains("bad header")
        );
    }

    #[test]
    fn retryable_and_permanent_failures() {
        let status = |status| AttemptError::Status {
            status,
            body: String::new(),
        };
        for retryable in [500, 502, 503, 504, 408, 429] {
            assert!(status(retryable).is_retryable(), "{retryable}");
        }
        for permanent in [400, 401, 403, 404, 413, 422, 301] {
            assert!(!status(permanent).is_retryable(), "{permanent}");
        }
        assert!(AttemptError::Timeout.is_retryable());
        assert!(
            AttemptError::Connect {
                message: "refused".into()
            }
            .is_retryable()
        );
        let rejected = |s| PushError::Rejected {
            url: "u".into(),
            error: status(s),
        };
        assert!(rejected(400).is_about_the_profile());
        assert!(rejected(413).is_about_the_profile());
        assert!(!rejected(401).is_about_the_profile());
        assert!(!rejected(308).is_about_the_profile());
        assert!(rejected(401).to_string().contains("check the credentials"));
    }

    #[test]
    fn bad_options_are_refused() {
        for url in ["", "localhost:4040", "ftp://x"] {
            let err = PyroscopeClient::new(ClientOptions {
                url: url.into(),
                ..Default::default()
            })
            .unwrap_err();
            assert!(matches!(err, ClientError::Url { .. }), "{url}: {err}");
        }
        let err = PyroscopeClient::new(ClientOptions {
            url: "http://x".into(),
            retry: RetryOptions {
                max_attempts: 0,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ClientError::Setting { .. }), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = PyroscopeClient::new(ClientOptions {
            url: "https://x".into(),
            ca_file: Some(ca),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ClientError::CaCertificates { .. }), "{err}");
    }

    #[test]
    fn options_from_config_read_the_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("token");
        std::fs::write(&path, "t0ken\n").unwrap();
        let mut config = PyroscopeConfig::new("https://p.example.com");
        config.auth = Some(AuthConfig::Bearer {
            token: crate::agent::config::SecretSource::File(path),
        });
        let options = ClientOptions::from_config(&config).unwrap();
        match &options.auth {
            Some(Auth::Bearer { token }) => assert_eq!(token.expose(), "t0ken"),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{options:?}").contains("t0ken"));
        assert_eq!(options.retry, RetryOptions::default());
    }
}

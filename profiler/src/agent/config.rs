//! The agent's configuration: a TOML file (`profiler agent --config FILE`)
//! whose every key can be overridden by a command-line flag
//! ([`AgentOverrides`]), with defaults for everything but the Pyroscope URL.
//!
//! ```toml
//! frequency = 19              # Hz
//! window = "10s"
//! pids = [1234]               # or comm_regex = "^nginx", or cgroup = "/sys/fs/cgroup/x"; none: system-wide
//! service_name = "shop"       # default: each process's command name
//! data_dir = "/var/lib/profiler"
//! max_stacks = 20000         # unique stacks per window; more are counted and folded
//! memory_target = "128MiB"    # above it, symbol files are let go after each window
//! off_cpu = false             # also profile time off CPU (one more profile per process)
//! min_block = "1us"           # shorter off-CPU intervals are counted, not profiled
//! unwind = "auto"             # user stacks: "auto" (unwind tables, else frame pointers), "fp", "dwarf"
//! unwind_memory = "32MiB"     # kernel memory for unwind tables (least recently used evicted)
//! python = true               # CPython 3.11-3.13 frames by name (needs unwind "auto" or "dwarf")
//! interpreter_frames = false  # keep CPython's eval-loop frames under the Python frames
//!
//! [retention]
//! max_age = "24h"
//! max_bytes = "1GiB"
//!
//! [pyroscope]
//! url = "https://pyroscope.example.com"
//! timeout = "10s"
//! spool_max_bytes = "256MiB"
//! [pyroscope.auth]
//! type = "basic"              # or "bearer" with token_file / token_env
//! user = "agent"
//! password_file = "/etc/profiler/pyroscope-password"   # or password_env = "VAR"
//!
//! [metrics]
//! listen = "127.0.0.1:9464"
//! ```
//!
//! Secrets are never taken from the file itself (nor from argv): only the
//! path of a file holding them, or the name of an environment variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tracer::UnwindMode;

pub const DEFAULT_FREQUENCY_HZ: u64 = 19;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Unique stacks kept per process and window; the rest are counted and
/// folded into one marker stack, so a window's memory stays bounded.
pub const DEFAULT_MAX_STACKS: usize = 20_000;
/// Resident memory above which the agent lets go of every symbol file it
/// holds after a window (it re-reads what it needs next time): a soft
/// bound, paid for in CPU only when it is reached.
pub const DEFAULT_MEMORY_TARGET: u64 = 128 << 20;
/// Off-CPU intervals shorter than this are counted but left out (as in `record`).
pub const DEFAULT_MIN_BLOCK: Duration = Duration::from_micros(1);
/// Kernel memory for unwind tables: 4 Mi rows, more than every file of a
/// busy machine here needs (`record -a` loaded ~2 MiB).
pub const DEFAULT_UNWIND_MEMORY: u64 = 32 << 20;
pub const DEFAULT_DATA_DIR: &str = "/var/lib/profiler";
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 << 20;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Loopback only: the metrics say which processes run, which is not for
/// the whole network unless asked for.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// Highest sampling frequency the agent accepts; continuous profiling is
/// meant to be cheap, and the kernel caps it anyway.
const MAX_FREQUENCY_HZ: u64 = 10_000;
/// Below this a memory target could never be met.
const MIN_MEMORY_TARGET: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}; check the --config path", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("invalid `{key}` = {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error(
        "`{key}` may not hold a secret in the config file: write the secret to a file readable only by \
         the agent and set `{key}_file` to its path, or put it in an environment variable and set \
         `{key}_env` to the variable's name"
    )]
    SecretInConfig { key: String },
    #[error(
        "`{key}` needs exactly one of `{key}_file` (a file holding the secret) or `{key}_env` (an environment variable's name)"
    )]
    SecretSource { key: String },
    #[error("cannot read `{key}` from {}: {source}; check that the file exists and is readable by the profiler", .path.display())]
    SecretFile {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot read `{key}` from the environment variable {var}: it is {problem}; set it in the profiler's environment"
    )]
    SecretEnv {
        key: String,
        var: String,
        problem: &'static str,
    },
    #[error("`{key}` is empty in {origin}; the secret must not be empty")]
    EmptySecret { key: String, origin: String },
    #[error("cannot tell the machine's host name ({source}); set `hostname` in the config")]
    Hostname { source: std::io::Error },
}

fn invalid(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses a duration such as `10s`, `500ms`, `24h`, `1h 30m` (a bare number
/// is seconds). Usable as a clap value parser.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; expected a duration such as 10s, 500ms, 5m or 24h"))
}

/// Parses a size such as `1GiB`, `512MiB`, `100MB` or a number of bytes.
/// Usable as a clap value parser.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|e| {
            format!("{e}; expected a size such as 1GiB, 512MiB, 100MB or a number of bytes")
        })
}

/// Where a secret comes from: never the config file or argv themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A file holding the secret (a trailing newline is ignored).
    File(PathBuf),
    /// The name of an environment variable holding the secret.
    Env(String),
}

/// A secret read from its [`SecretSource`]; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl SecretSource {
    /// Reads the secret; `key` names it in errors (e.g. `pyroscope.auth.password`).
    pub fn read(&self, key: &str) -> Result<Secret, ConfigError> {
        let (text, origin) = match self {
            SecretSource::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                        key: key.to_string(),
                        path: path.clone(),
                        source,
                    })?;
                (text, path.display().to_string())
            }
            SecretSource::Env(var) => {
                let text = std::env::var(var).map_err(|e| ConfigError::SecretEnv {
                    key: key.to_string(),
                    var: var.clone(),
                    problem: match e {
                        std::env::VarError::NotPresent => "not set",
                        std::env::VarError::NotUnicode(_) => "not valid UTF-8",
                    },
                })?;
                (text, format!("environment variable {var}"))
            }
        };
        // Files written with `echo` end in a newline that is not part of the secret.
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            return Err(ConfigError::EmptySecret {
                key: key.to_string(),
                origin,
            });
        }
        Ok(Secret(secret.to_string()))
    }

    /// The source given by a `<name>_file` / `<name>_env` pair, exactly one of which must be set.
    fn from_pair(
        key: &str,
        file: Option<PathBuf>,
        env: Option<String>,
    ) -> Result<SecretSource, ConfigError> {
        match (file, env) {
            (Some(file), None) => Ok(SecretSource::File(file)),
            (None, Some(env)) if !env.is_empty() => Ok(SecretSource::Env(env)),
            _ => Err(ConfigError::SecretSource {
                key: key.to_string(),
            }),
        }
    }
}

/// How the agent authenticates to Pyroscope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthConfig {
    /// HTTP basic authentication.
    Basic {
        user: String,
        password: SecretSource,
    },
    /// `Authorization: Bearer <token>`.
    Bearer { token: SecretSource },
}

impl AuthConfig {
    /// The authentication the command-line flags ask for, if any: a user
    /// with a password file or variable, or a token file or variable.
    pub fn from_flags(
        user: Option<String>,
        password_file: Option<PathBuf>,
        password_env: Option<String>,
        token_file: Option<PathBuf>,
        token_env: Option<String>,
    ) -> Result<Option<AuthConfig>, ConfigError> {
        let basic = user.is_some() || password_file.is_some() || password_env.is_some();
        let bearer = token_file.is_some() || token_env.is_some();
        match (basic, bearer) {
            (false, false) => Ok(None),
            (true, true) => Err(invalid(
                "pyroscope.auth",
                "basic and bearer",
                "give either a user and password or a token, not both",
            )),
            (true, false) => basic_auth(user, password_file, password_env).map(Some),
            (false, true) => Ok(Some(AuthConfig::Bearer {
                token: SecretSource::from_pair("pyroscope.auth.token", token_file, token_env)?,
            })),
        }
    }
}

fn basic_auth(
    user: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
) -> Result<AuthConfig, ConfigError> {
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
        invalid(
            "pyroscope.auth.user",
            "",
            "basic authentication needs a user name",
        )
    })?;
    if user.contains(':') {
        return Err(invalid(
            "pyroscope.auth.user",
            &user,
            "a basic-auth user name cannot contain ':'",
        ));
    }
    Ok(AuthConfig::Basic {
        user,
        password: SecretSource::from_pair("pyroscope.auth.password", password_file, password_env)?,
    })
}

/// Which processes are profiled. Nothing set: every process on the system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    pub pids: Vec<u32>,
    /// A regular expression matched against each process's command name.
    pub comm_regex: Option<String>,
    /// A cgroup (v2) directory; its processes and those of its descendants.
    pub cgroup: Option<PathBuf>,
}

impl Targets {
    pub fn is_system_wide(&self) -> bool {
        self.pids.is_empty() && self.comm_regex.is_none() && self.cgroup.is_none()
    }

    /// The compiled `comm_regex` (already checked when the config was loaded).
    pub fn comm_regex(&self) -> Option<regex::Regex> {
        self.comm_regex
            .as_deref()
            .map(|r| regex::Regex::new(r).expect("comm_regex is checked when the config is loaded"))
    }
}

/// How long, and how much, the local store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Windows that ended longer ago are removed.
    pub max_age: Duration,
    /// Above this total, the oldest windows are removed.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyroscopeConfig {
    /// Base URL of the server; profiles go to `{url}/ingest`.
    pub url: String,
    pub auth: Option<AuthConfig>,
    /// Sent as `X-Scope-OrgID` (multi-tenant Pyroscope).
    pub tenant_id: Option<String>,
    /// A PEM file of extra CA certificates to trust, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Per request, connecting included.
    pub timeout: Duration,
    /// Bound of the on-disk spool of windows waiting to be pushed.
    pub spool_max_bytes: u64,
    /// Attempts per window before it is left in the spool for later.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl PyroscopeConfig {
    /// A configuration for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> PyroscopeConfig {
        PyroscopeConfig {
            url: url.into(),
            auth: None,
            tenant_id: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: DEFAULT_METRICS_LISTEN.parse().expect("a valid address"),
        }
    }
}

/// The agent's settings, defaults filled in and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    pub frequency_hz: u64,
    /// Length of a window: each window becomes one profile per process.
    pub window: Duration,
    pub targets: Targets,
    /// The `service_name` of every profile; `None`: each process's command name.
    pub service_name: Option<String>,
    pub hostname: String,
    /// The local store; the upload spool is its `spool` subdirectory.
    pub data_dir: PathBuf,
    pub retention: Retention,
    /// `None`: profiles are only stored locally.
    pub pyroscope: Option<PyroscopeConfig>,
    pub metrics: MetricsConfig,
    /// Unique stacks kept per window (over all processes).
    pub max_stacks: usize,
    /// Resident memory in bytes above which symbol files are released after
    /// each window ([`DEFAULT_MEMORY_TARGET`]).
    pub memory_target: u64,
    /// Also record off-CPU intervals: an `off-cpu` profile per process and window.
    pub off_cpu: bool,
    /// Off-CPU intervals shorter than this are counted, not profiled.
    pub min_block: Duration,
    /// How user stacks are walked.
    pub unwind: UnwindMode,
    /// Kernel memory for unwind tables, in bytes.
    pub unwind_memory: u64,
    /// Walk CPython frames.
    pub python: bool,
    /// Keep CPython's eval-loop frames under the Python frames they run.
    pub interpreter_frames: bool,
}

/// Command-line values that replace the config file's. `None` (or `false`)
/// leaves the file's value, or the default, in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentOverrides {
    pub frequency_hz: Option<u64>,
    pub window: Option<Duration>,
    /// Profile every process, whatever targets the file names.
    pub system_wide: bool,
    pub pids: Option<Vec<u32>>,
    pub comm_regex: Option<String>,
    pub cgroup: Option<PathBuf>,
    pub service_name: Option<String>,
    pub hostname: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
    /// Do not push, even if the file configures Pyroscope.
    pub no_pyroscope: bool,
    pub pyroscope_url: Option<String>,
    /// From [`AuthConfig::from_flags`].
    pub pyroscope_auth: Option<AuthConfig>,
    pub pyroscope_tenant_id: Option<String>,
    pub pyroscope_ca_file: Option<PathBuf>,
    pub pyroscope_timeout: Option<Duration>,
    pub spool_max_bytes: Option<u64>,
    pub max_attempts: Option<u32>,
    pub backoff_initial: Option<Duration>,
    pub backoff_max: Option<Duration>,
    pub metrics_listen: Option<SocketAddr>,
    pub max_stacks: Option<usize>,
    pub memory_target: Option<u64>,
    /// Turn off-CPU profiling on (a flag can only turn it on).
    pub off_cpu: bool,
    pub min_block: Option<Duration>,
    pub unwind: Option<UnwindMode>,
    pub unwind_memory: Option<u64>,
    pub python: Option<bool>,
    pub interpreter_frames: Option<bool>,
}

impl AgentConfig {
    /// Reads the config file (if any), applies `overrides` and checks the result.
    pub fn load(
        path: Option<&Path>,
        overrides: &AgentOverrides,
    ) -> Result<AgentConfig, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                AgentConfig::from_toml(&text, &path.display().to_string())?
            }
            None => AgentConfig::from_toml("", "(defaults)")?,
        };
        config.apply(overrides)?;
        Ok(config)
    }

    /// Parses a config file's text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<AgentConfig, ConfigError> {
        let raw: raw::Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let config = raw.resolve()?;
        config.validate()?;
        Ok(config)
    }

    /// Replaces values with the command line's, then checks the result.
    pub fn apply(&mut self, o: &AgentOverrides) -> Result<(), ConfigError> {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        set(&mut self.frequency_hz, &o.frequency_hz);
        set(&mut self.window, &o.window);
        if o.system_wide {
            self.targets = Targets::default();
        }
        set(&mut self.targets.pids, &o.pids);
        if o.comm_regex.is_some() {
            self.targets.comm_regex = o.comm_regex.clone();
        }
        if o.cgroup.is_some() {
            self.targets.cgroup = o.cgroup.clone();
        }
        if o.service_name.is_some() {
            self.service_name = o.service_name.clone();
        }
        set(&mut self.hostname, &o.hostname);
        set(&mut self.data_dir, &o.data_dir);
        set(&mut self.retention.max_age, &o.max_age);
        set(&mut self.retention.max_bytes, &o.max_bytes);
        set(&mut self.metrics.listen, &o.metrics_listen);
        set(&mut self.max_stacks, &o.max_stacks);
        set(&mut self.memory_target, &o.memory_target);
        self.off_cpu |= o.off_cpu;
        set(&mut self.min_block, &o.min_block);
        set(&mut self.unwind, &o.unwind);
        set(&mut self.unwind_memory, &o.unwind_memory);
        set(&mut self.python, &o.python);
        set(&mut self.interpreter_frames, &o.interpreter_frames);

        if o.no_pyroscope {
            self.pyroscope = None;
        } else {
            if let Some(url) = &o.pyroscope_url {
                match &mut self.pyroscope {
                    Some(p) => p.url = url.clone(),
                    None => self.pyroscope = Some(PyroscopeConfig::new(url.clone())),
                }
            }
            let pyroscope_flags = o.pyroscope_auth.is_some()
                || o.pyroscope_tenant_id.is_some()
                || o.pyroscope_ca_file.is_some()
                || o.pyroscope_timeout.is_some()
                || o.spool_max_bytes.is_some()
                || o.max_attempts.is_some()
                || o.backoff_initial.is_some()
                || o.backoff_max.is_some();
            match &mut self.pyroscope {
                Some(p) => {
                    if o.pyroscope_auth.is_some() {
                        p.auth = o.pyroscope_auth.clone();
                    }
                    if o.pyroscope_tenant_id.is_some() {
                        p.tenant_id = o.pyroscope_tenant_id.clone();
                    }
                    if o.pyroscope_ca_file.is_some() {
                        p.ca_file = o.pyroscope_ca_file.clone();
                    }
                    set(&mut p.timeout, &o.pyroscope_timeout);
                    set(&mut p.spool_max_bytes, &o.spool_max_bytes);
                    set(&mut p.max_attempts, &o.max_attempts);
                    set(&mut p.backoff_initial, &o.backoff_initial);
                    set(&mut p.backoff_max, &o.backoff_max);
                }
                None if pyroscope_flags => {
                    return Err(invalid(
                        "pyroscope.url",
                        "",
                        "Pyroscope settings were given but no server URL; set `url` in the [pyroscope] \
                         section or give the URL on the command line",
                    ));
                }
                None => {}
            }
        }
        self.validate()
    }

    /// The `service_name` of a process's profiles.
    pub fn service_name_for<'a>(&'a self, comm: &'a str) -> &'a str {
        self.service_name.as_deref().unwrap_or(comm)
    }

    /// Where windows wait to be pushed.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.frequency_hz == 0 || self.frequency_hz > MAX_FREQUENCY_HZ {
            return Err(invalid(
                "frequency",
                self.frequency_hz,
                format!("must be between 1 and {MAX_FREQUENCY_HZ} Hz"),
            ));
        }
        if self.window < Duration::from_secs(1) {
            return Err(invalid(
                "window",
                humantime::format_duration(self.window),
                "must be at least 1s",
            ));
        }
        if let Some(pid) = self.targets.pids.iter().find(|&&p| p == 0) {
            return Err(invalid("pids", pid, "0 is not a process id"));
        }
        if let Some(re) = &self.targets.comm_regex
            && let Err(e) = regex::Regex::new(re)
        {
            return Err(invalid("comm_regex", re, e.to_string()));
        }
        if let Some(name) = &self.service_name
            && name.trim().is_empty()
        {
            return Err(invalid(
                "service_name",
                name,
                "must not be empty; leave it out to use each process's command name",
            ));
        }
        if self.max_stacks == 0 {
            return Err(invalid(
                "max_stacks",
                0,
                "must be at least 1 (unique stacks kept per window)",
            ));
        }
        if self.memory_target < MIN_MEMORY_TARGET {
            return Err(invalid(
                "memory_target",
                bytesize::ByteSize(self.memory_target),
                format!(
                    "must be at least {} (the agent needs about that much before it symbolizes anything)",
                    bytesize::ByteSize(MIN_MEMORY_TARGET)
                ),
            ));
        }
        if self.hostname.trim().is_empty() {
            return Err(invalid("hostname", &self.hostname, "must not be empty"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "", "must be a directory path"));
        }
        if self.retention.max_age.is_zero() {
            return Err(invalid(
                "retention.max_age",
                "0s",
                "must be longer than 0, or nothing would be kept",
            ));
        }
        if self.retention.max_bytes == 0 {
            return Err(invalid(
                "retention.max_bytes",
                0,
                "must be more than 0 bytes, or nothing would be kept",
            ));
        }
        if let Some(p) = &self.pyroscope {
            p.validate()?;
        }
        Ok(())
    }
}

impl PyroscopeConfig {
    /// Checks the settings (the URL, timeout, retries), as loading the
    /// agent's config does; `profiler upload` checks its own with it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| {
            invalid(
                "pyroscope.url",
                &self.url,
                format!("{e}; expected e.g. https://pyroscope.example.com:4040"),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "pyroscope.url",
                &self.url,
                "the scheme must be http or https",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::SecretInConfig {
                key: "pyroscope.url".into(),
            });
        }
        if url.query().is_some() {
            return Err(invalid(
                "pyroscope.url",
                &self.url,
                "must not have a query string; give the server's base URL",
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("pyroscope.timeout", "0s", "must be longer than 0"));
        }
        if self.spool_max_bytes == 0 {
            return Err(invalid(
                "pyroscope.spool_max_bytes",
                0,
                "must be more than 0 bytes",
            ));
        }
        if self.max_attempts == 0 {
            return Err(invalid("pyroscope.max_attempts", 0, "must be at least 1"));
        }
        if self.backoff_initial.is_zero() || self.backoff_initial > self.backoff_max {
            return Err(invalid(
                "pyroscope.backoff_initial",
                humantime::format_duration(self.backoff_initial),
                format!(
                    "must be longer than 0 and at most pyroscope.backoff_max ({})",
                    humantime::format_duration(self.backoff_max)
                ),
            ));
        }
        Ok(())
    }
}

/// The machine's host name, as `uname -n` gives it.
pub fn machine_hostname() -> Result<String, ConfigError> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .map_err(|source| ConfigError::Hostname { source })
}

/// The file's shape, as serde reads it; turned into [`AgentConfig`] by
/// [`raw::Config::resolve`], which names the key of every bad value.
mod raw {
    use super::*;

    /// A duration or size: a string (`"10s"`, `"1GiB"`) or a plain number
    /// (seconds, bytes).
    #[derive(Deserialize, Debug)]
    #[serde(untagged)]
    pub enum Human {
        Number(u64),
        Text(String),
    }

    impl Human {
        fn duration(&self, key: &str) -> Result<Duration, ConfigError> {
            match self {
                Human::Number(secs) => Ok(Duration::from_secs(*secs)),
                Human::Text(text) => parse_duration(text).map_err(|e| invalid(key, text, e)),
            }
        }

        fn size(&self, key: &str) -> Result<u64, ConfigError> {
            match self {
                Human::Number(bytes) => Ok(*bytes),
                Human::Text(text) => parse_size(text).map_err(|e| invalid(key, text, e)),
            }
        }
    }

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields)]
    pub struct Config {
        frequency: Option<u64>,
        window: Option<Human>,
        pids: Option<Vec<u32>>,
        comm_regex: Option<String>,
        cgroup: Option<PathBuf>,
        service_name: Option<String>,
        hostname: Option<String>,
        data_dir: Option<PathBuf>,
        retention: Option<Retention>,
        pyroscope: Option<Pyroscope>,
        metrics: Option<Metrics>,
        max_stacks: Option<usize>,
        memory_target: Option<Human>,
        off_cpu: Option<bool>,
        min_block: Option<Human>,
        unwind: Option<String>,
        unwind_memory: Option<Human>,
        python: Option<bool>,
        interpreter_frames: Option<bool>,
    }

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields)]
    struct Retention {
        max_age: Option<Human>,
        max_bytes: Option<Human>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Pyroscope {
        url: Option<String>,
        auth: Option<Auth>,
        tenant_id: Option<String>,
        ca_file: Option<PathBuf>,
        timeout: Option<Human>,
        spool_max_bytes: Option<Human>,
        max_attempts: Option<u32>,
        backoff_initial: Option<Human>,
        backoff_max: Option<Human>,
    }

    /// `password` and `token` are read only to refuse them with a clear message.
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Auth {
        #[serde(rename = "type")]
        kind: String,
        user: Option<String>,
        password: Option<toml::Value>,
        password_file: Option<PathBuf>,
        password_env: Option<String>,
        token: Option<toml::Value>,
        token_file: Option<PathBuf>,
        token_env: Option<String>,
    }

    #[derive(Deserialize, Debug, Default)]
    #[serde(deny_unknown_fields)]
    struct Metrics {
        listen: Option<String>,
    }

    impl Config {
        pub fn resolve(self) -> Result<AgentConfig, ConfigError> {
            let hostname = match self.hostname {
                Some(h) => h,
                None => machine_hostname()?,
            };
            let retention = self.retention.unwrap_or_default();
            let metrics = self.metrics.unwrap_or_default();
            Ok(AgentConfig {
                max_stacks: self.max_stacks.unwrap_or(DEFAULT_MAX_STACKS),
                memory_target: opt_size(self.memory_target, "memory_target")?
                    .unwrap_or(DEFAULT_MEMORY_TARGET),
                off_cpu: self.off_cpu.unwrap_or(false),
                min_block: opt_duration(self.min_block, "min_block")?.unwrap_or(DEFAULT_MIN_BLOCK),
                unwind: match self.unwind.as_deref() {
                    None | Some("auto") => UnwindMode::Auto,
                    Some("fp") => UnwindMode::Fp,
                    Some("dwarf") => UnwindMode::Dwarf,
                    Some(other) => {
                        return Err(invalid(
                            "unwind",
                            other,
                            "use \"auto\", \"fp\" or \"dwarf\"",
                        ));
                    }
                },
                unwind_memory: match opt_size(self.unwind_memory, "unwind_memory")? {
                    None => DEFAULT_UNWIND_MEMORY,
                    Some(bytes) if (8 << 10..=16 << 30).contains(&bytes) => bytes,
                    Some(bytes) => {
                        return Err(invalid(
                            "unwind_memory",
                            bytes,
                            "give between 8KiB and 16GiB (e.g. \"32MiB\")",
                        ));
                    }
                },
                python: self.python.unwrap_or(true),
                interpreter_frames: self.interpreter_frames.unwrap_or(false),
                frequency_hz: self.frequency.unwrap_or(DEFAULT_FREQUENCY_HZ),
                window: opt_duration(self.window, "window")?.unwrap_or(DEFAULT_WINDOW),
                targets: Targets {
                    pids: self.pids.unwrap_or_default(),
                    comm_regex: self.comm_regex,
                    cgroup: self.cgroup,
                },
                service_name: self.service_name,
                hostname,
                data_dir: self
                    .data_dir
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
                retention: super::Retention {
                    max_age: opt_duration(retention.max_age, "retention.max_age")?
                        .unwrap_or(DEFAULT_MAX_AGE),
                    max_bytes: opt_size(retention.max_bytes, "retention.max_bytes")?
                        .unwrap_or(DEFAULT_MAX_BYTES),
                },
                pyroscope: self.pyroscope.map(Pyroscope::resolve).transpose()?,
                metrics: MetricsConfig {
                    listen: match metrics.listen {
                        Some(listen) => listen.parse().map_err(|e| {
                            invalid(
                                "metrics.listen",
                                &listen,
                                format!("{e}; expected an address and port such as 127.0.0.1:9464"),
                            )
                        })?,
                        None => MetricsConfig::default().listen,
                    },
                },
            })
        }
    }

    fn opt_duration(value: Option<Human>, key: &str) -> Result<Option<Duration>, ConfigError> {
        value.map(|v| v.duration(key)).transpose()
    }

    fn opt_size(value: Option<Human>, key: &str) -> Result<Option<u64>, ConfigError> {
        value.map(|v| v.size(key)).transpose()
    }

    impl Pyroscope {
        fn resolve(self) -> Result<PyroscopeConfig, ConfigError> {
            let url = self.url.ok_or_else(|| {
                invalid(
                    "pyroscope.url",
                    "",
                    "the [pyroscope] section needs the server's URL, e.g. url = \"http://localhost:4040\"",
                )
            })?;
            let mut config = PyroscopeConfig::new(url);
            config.auth = self.auth.map(Auth::resolve).transpose()?;
            config.tenant_id = self.tenant_id;
            config.ca_file = self.ca_file;
            if let Some(v) = opt_duration(self.timeout, "pyroscope.timeout")? {
                config.timeout = v;
            }
            if let Some(v) = opt_size(self.spool_max_bytes, "pyroscope.spool_max_bytes")? {
                config.spool_max_bytes = v;
            }
            if let Some(v) = self.max_attempts {
                config.max_attempts = v;
            }
            if let Some(v) = opt_duration(self.backoff_initial, "pyroscope.backoff_initial")? {
                config.backoff_initial = v;
            }
            if let Some(v) = opt_duration(self.backoff_max, "pyroscope.backoff_max")? {
                config.backoff_max = v;
            }
            Ok(config)
        }
    }

    impl Auth {
        fn resolve(self) -> Result<AuthConfig, ConfigError> {
            if self.password.is_some() {
                return Err(ConfigError::SecretInConfig {
                    key: "pyroscope.auth.password".into(),
                });
            }
            if self.token.is_some() {
                return Err(ConfigError::SecretInConfig {
                    key: "pyroscope.auth.token".into(),
                });
            }
            let only = |kind: &str, stray: &[(&str, bool)]| match stray.iter().find(|(_, set)| *set)
            {
                Some((name, _)) => Err(invalid(
                    &format!("pyroscope.auth.{name}"),
                    "",
                    format!("does not apply to type = \"{kind}\""),
                )),
                None => Ok(()),
            };
            match self.kind.as_str() {
                "basic" => {
                    only(
                        "basic",
                        &[
                            ("token_file", self.token_file.is_some()),
                            ("token_env", self.token_env.is_some()),
                        ],
                    )?;
                    basic_auth(self.user, self.password_file, self.password_env)
                }
                "bearer" => {
                    only(
                        "bearer",
                        &[
                            ("user", self.user.is_some()),
                            ("password_file", self.password_file.is_some()),
                            ("password_env", self.password_env.is_some()),
                        ],
                    )?;
                    Ok(AuthConfig::Bearer {
                        token: SecretSource::from_pair(
                            "pyroscope.auth.token",
                            self.token_file,
                            self.token_env,
                        )?,
                    })
                }
                other => Err(invalid(
                    "pyroscope.auth.type",
                    other,
                    "expected \"basic\" or \"bearer\"",
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::from_toml(text, "test.toml")
    }

    /// A config with a host name, so tests do not depend on the machine's.
    fn parse_ok(text: &str) -> AgentConfig {
        parse(&format!("hostname = \"host-1\"\n{text}")).unwrap()
    }

    fn err(text: &str) -> String {
        parse(&format!("hostname = \"host-1\"\n{text}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults() {
        let config = parse_ok("");
        assert_eq!(
            config,
            AgentConfig {
                frequency_hz: 19,
                window: Duration::from_secs(10),
                targets: Targets::default(),
                service_name: None,
                hostname: "host-1".into(),
                data_dir: PathBuf::from("/var/lib/profiler"),
                retention: Retention {
                    max_age: Duration::from_secs(86_400),
                    max_bytes: 1 << 30,
                },
                pyroscope: None,
                metrics: MetricsConfig {
                    listen: "127.0.0.1:9464".parse().unwrap(),
                },
                max_stacks: DEFAULT_MAX_STACKS,
                memory_target: DEFAULT_MEMORY_TARGET,
                off_cpu: false,
                min_block: DEFAULT_MIN_BLOCK,
                unwind: UnwindMode::Auto,
                unwind_memory: DEFAULT_UNWIND_MEMORY,
                python: true,
                interpreter_frames: false,
            }
        );
        assert!(config.targets.is_system_wide());
        assert!(config.metrics.listen.ip().is_loopback());
        assert_eq!(config.service_name_for("nginx"), "nginx");
        assert_eq!(config.spool_dir(), PathBuf::from("/var/lib/profiler/spool"));
    }

    #[test]
    fn the_packaged_example_is_valid_with_and_without_its_optional_settings() {
        let text = include_str!("../../../packaging/agent.toml");
        let config = AgentConfig::from_toml(text, "packaging/agent.toml").unwrap();
        assert_eq!(
            (config.frequency_hz, config.window, config.retention),
            (DEFAULT_FREQUENCY_HZ, DEFAULT_WINDOW, Retention::default())
        );
        assert!(config.targets.is_system_wide() && config.pyroscope.is_none());

        // Every setting left commented out ("# key = ...") is valid too.
        let all: String = text
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let config = AgentConfig::from_toml(&all, "packaging/agent.toml, uncommented").unwrap();
        assert_eq!(config.targets.pids, [1234, 5678]);
        assert_eq!(config.hostname, "web-1");
        let p = config.pyroscope.unwrap();
        assert_eq!(p.url, "https://pyroscope.example.com:4040");
        assert_eq!(p.spool_max_bytes, DEFAULT_SPOOL_MAX_BYTES);
        assert_eq!(p.tenant_id.as_deref(), Some("team-a"));
        assert!(matches!(p.auth, Some(AuthConfig::Basic { .. })));
    }

    #[test]
    fn hostname_defaults_to_the_machines() {
        let config = parse("").unwrap();
        let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(config.hostname, expected.trim());
        assert!(!config.hostname.is_empty());
    }

    #[test]
    fn every_key() {
        let config = parse_ok(
            r#"
            frequency = 49
            window = "30s"
            pids = [10, 20]
            comm_regex = "^(nginx|php)"
            cgroup = "/sys/fs/cgroup/system.slice/shop.service"
            service_name = "shop"
            data_dir = "/srv/profiles"
            memory_target = "200MiB"
            off_cpu = true
            min_block = "2ms"
            unwind = "dwarf"
            unwind_memory = "64MiB"

            [retention]
            max_age = "7d"
            max_bytes = "512MiB"

            [pyroscope]
            url = "https://pyro.example.com:4040/base"
            tenant_id = "team-a"
            ca_file = "/etc/ssl/private-ca.pem"
            timeout = "5s"
            spool_max_bytes = 1048576
            max_attempts = 7
            backoff_initial = "250ms"
            backoff_max = "30s"

            [pyroscope.auth]
            type = "basic"
            user = "agent"
            password_file = "/etc/profiler/password"

            [metrics]
            listen = "0.0.0.0:9999"
            "#,
        );
        assert_eq!(config.memory_target, 200 << 20);
        assert!(config.off_cpu);
        assert_eq!(config.min_block, Duration::from_millis(2));
        assert_eq!(config.unwind, UnwindMode::Dwarf);
        assert_eq!(config.unwind_memory, 64 << 20);
        assert_eq!(config.frequency_hz, 49);
        assert_eq!(config.window, Duration::from_secs(30));
        assert_eq!(
            config.targets,
            Targets {
                pids: vec![10, 20],
                comm_regex: Some("^(nginx|php)".into()),
                cgroup: Some("/sys/fs/cgroup/system.slice/shop.service".into()),
            }
        );
        assert!(config.targets.comm_regex().unwrap().is_match("nginx"));
        assert_eq!(config.service_name_for("nginx"), "shop");
        assert_eq!(config.data_dir, PathBuf::from("/srv/profiles"));
        assert_eq!(config.retention.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(config.retention.max_bytes, 512 << 20);
        assert_eq!(
            config.pyroscope,
            Some(PyroscopeConfig {
                url: "https://pyro.example.com:4040/base".into(),
                auth: Some(AuthConfig::Basic {
                    user: "agent".into(),
                    password: SecretSource::File("/etc/profiler/password".into()),
                }),
                tenant_id: Some("team-a".into()),
                ca_file: Some("/etc/ssl/private-ca.pem".into()),
                timeout: Duration::from_secs(5),
                spool_max_bytes: 1 << 20,
                max_attempts: 7,
                backoff_initial: Duration::from_millis(250),
                backoff_max: Duration::from_secs(30),
            })
        );
        assert_eq!(config.metrics.listen, "0.0.0.0:9999".parse().unwrap());
    }

    #[test]
    fn bearer_from_env_and_pyroscope_defaults() {
        let config = parse_ok(
            "[pyroscope]\nurl = \"http://localhost:4040\"\n[pyroscope.auth]\ntype = \"bearer\"\ntoken_env = \"PYRO_TOKEN\"\n",
        );
        let mut expected = PyroscopeConfig::new("http://localhost:4040");
        expected.auth = Some(AuthConfig::Bearer {
            token: SecretSource::Env("PYRO_TOKEN".into()),
        });
        assert_eq!(config.pyroscope, Some(expected));
        let p = config.pyroscope.unwrap();
        assert_eq!(
            (p.timeout, p.spool_max_bytes, p.max_attempts),
            (Duration::from_secs(10), 256 << 20, 5)
        );
    }

    #[test]
    fn humane_durations_and_sizes() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("soon").unwrap_err().contains("10s"));
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1 GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").unwrap_err().contains("1GiB"));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, expected) in [
            (
                "frequency = 0",
                "invalid `frequency` = \"0\": must be between 1 and 10000 Hz",
            ),
            ("window = \"0s\"", "invalid `window`"),
            ("window = \"later\"", "invalid `window` = \"later\""),
            ("pids = [0]", "invalid `pids`"),
            ("memory_target = \"1MiB\"", "invalid `memory_target`"),
            (
                "min_block = \"a while\"",
                "invalid `min_block` = \"a while\"",
            ),
            ("off_cpu = \"yes\"", "invalid config file"),
            ("unwind = \"orc\"", "invalid `unwind` = \"orc\""),
            (
                "unwind_memory = \"4KiB\"",
                "invalid `unwind_memory` = \"4096\"",
            ),
            (
                "memory_target = \"much\"",
                "invalid `memory_target` = \"much\"",
            ),
            ("comm_regex = \"(\"", "invalid `comm_regex` = \"(\""),
            ("service_name = \" \"", "invalid `service_name`"),
            (
                "[retention]\nmax_bytes = \"big\"",
                "invalid `retention.max_bytes` = \"big\"",
            ),
            ("[retention]\nmax_age = 0", "invalid `retention.max_age`"),
            (
                "[metrics]\nlisten = \"localhost\"",
                "invalid `metrics.listen` = \"localhost\"",
            ),
            ("[pyroscope]\ntimeout = \"1s\"", "invalid `pyroscope.url`"),
            (
                "[pyroscope]\nurl = \"ftp://x\"",
                "the scheme must be http or https",
            ),
            (
                "[pyroscope]\nurl = \"not a url\"",
                "invalid `pyroscope.url` = \"not a url\"",
            ),
            (
                "[pyroscope]\nurl = \"http://x\"\nmax_attempts = 0",
                "invalid `pyroscope.max_attempts`",
            ),
            (
                "[pyroscope]\nurl = \"http://x\"\nbackoff_initial = \"2m\"\nbackoff_max = \"1m\"",
                "invalid `pyroscope.backoff_initial`",
            ),
            (
                "[pyroscope]\nurl = \"http://x\"\n[pyroscope.auth]\ntype = \"digest\"",
                "invalid `pyroscope.auth.type`",
            ),
            (
                "[pyroscope]\nurl = \"http://x\"\n[pyroscope.auth]\ntype = \"basic\"\npassword_file = \"/p\"",
                "basic authentication needs a user name",
            ),
            (
                "[pyroscope]\nurl = \"http://x\"\n[pyroscope.auth]\ntype = \"bearer\"\ntoken_env = \"T\"\nuser = \"u\"",
                "invalid `pyroscope.auth.user`",
            ),
        ] {
            let message = err(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let message = err("frequncy = 99");
        assert!(
            message.starts_with("invalid config file test.toml:"),
            "{message}"
        );
        assert!(message.contains("frequncy"), "{message}");
        let message = err("[pyroscope]\nurl = \"http://x\"\nretries = 3");
        assert!(message.contains("retries"), "{message}");
        let message = err("frequency = \"fast\"");
        assert!(message.contains("frequency"), "{message}");
    }

    #[test]
    fn secrets_are_refused_in_the_file() {
        for (text, key) in [
            (
                "[pyroscope]\nurl = \"http://x\"\n[pyroscope.auth]\ntype = \"basic\"\nuser = \"u\"\npassword = \"hunter2\"",
                "pyroscope.auth.password",
            ),
            (
                "[pyroscope]\nurl = \"http://x\"\n[pyroscope.auth]\ntype = \"bearer\"\ntoken = \"abc\"",
                "pyroscope.auth.token",
            ),
            ("[pyroscope]\nurl = \"http://u:hunter2@x\"", "pyroscope.url"),
        ] {
            let message = err(text);
            assert!(
                message.starts_with(&format!("`{key}` may not hold a secret in the config file")),
                "{message}"
            );
            assert!(
                !message.contains("hunter2") && !message.contains("abc\""),
                "{message}"
            );
        }
        let message = err(
            "[pyroscope]\nurl = \"http://x\"\n[pyroscope.auth]\ntype = \"basic\"\nuser = \"u\"\npassword_file = \"/a\"\npassword_env = \"B\"",
        );
        assert!(
            message.contains("needs exactly one of `pyroscope.auth.password_file`"),
            "{message}"
        );
    }

    #[test]
    fn secrets_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = SecretSource::File(path.clone())
            .read("pyroscope.auth.password")
            .unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert_eq!(format!("{secret:?}"), "Secret(***)");

        std::fs::write(&path, "\n").unwrap();
        let message = SecretSource::File(path.clone())
            .read("k")
            .unwrap_err()
            .to_string();
        assert!(message.contains("`k` is empty"), "{message}");
        let missing = dir.path().join("missing");
        let message = SecretSource::File(missing)
            .read("k")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("cannot read `k` from "), "{message}");

        // PATH is set in any test environment; its value is beside the point.
        assert!(
            !SecretSource::Env("PATH".into())
                .read("k")
                .unwrap()
                .expose()
                .is_empty()
        );
        let message = SecretSource::Env("PROFILER_TEST_SURELY_UNSET_VARIABLE".into())
            .read("k")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("PROFILER_TEST_SURELY_UNSET_VARIABLE: it is not set"),
            "{message}"
        );
    }

    #[test]
    fn overrides_replace_file_values() {
        let mut config = parse_ok(
            "pids = [1]\nservice_name = \"a\"\n[pyroscope]\nurl = \"http://x\"\ntimeout = \"3s\"",
        );
        config
            .apply(&AgentOverrides {
                frequency_hz: Some(99),
                window: Some(Duration::from_secs(60)),
                pids: Some(vec![7, 8]),
                service_name: Some("b".into()),
                hostname: Some("h2".into()),
                data_dir: Some("/tmp/d".into()),
                max_age: Some(Duration::from_secs(3600)),
                max_bytes: Some(1000),
                pyroscope_url: Some("https://y".into()),
                pyroscope_auth: AuthConfig::from_flags(
                    None,
                    None,
                    None,
                    Some("/run/token".into()),
                    None,
                )
                .unwrap(),
                max_attempts: Some(2),
                metrics_listen: Some("127.0.0.1:1".parse().unwrap()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(config.frequency_hz, 99);
        assert_eq!(config.window, Duration::from_secs(60));
        assert_eq!(config.targets.pids, [7, 8]);
        assert_eq!(config.service_name.as_deref(), Some("b"));
        assert_eq!(config.hostname, "h2");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(
            config.retention,
            Retention {
                max_age: Duration::from_secs(3600),
                max_bytes: 1000
            }
        );
        let p = config.pyroscope.as_ref().unwrap();
        assert_eq!(p.url, "https://y");
        assert_eq!(p.timeout, Duration::from_secs(3), "kept from the file");
        assert_eq!(p.max_attempts, 2);
        assert_eq!(
            p.auth,
            Some(AuthConfig::Bearer {
                token: SecretSource::File("/run/token".into())
            })
        );
        assert_eq!(config.metrics.listen.port(), 1);

        config
            .apply(&AgentOverrides {
                system_wide: true,
                no_pyroscope: true,
                ..Default::default()
            })
            .unwrap();
        assert!(config.targets.is_system_wide());
        assert_eq!(config.pyroscope, None);
    }

    #[test]
    fn overrides_are_checked() {
        let mut config = parse_ok("");
        let message = config
            .apply(&AgentOverrides {
                frequency_hz: Some(0),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(message.contains("`frequency`"), "{message}");
        let message = parse_ok("")
            .apply(&AgentOverrides {
                max_attempts: Some(3),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(message.contains("no server URL"), "{message}");
        let mut config = parse_ok("");
        config
            .apply(&AgentOverrides {
                pyroscope_url: Some("http://localhost:4040".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            config.pyroscope,
            Some(PyroscopeConfig::new("http://localhost:4040"))
        );
    }

    #[test]
    fn auth_from_flags() {
        assert_eq!(
            AuthConfig::from_flags(None, None, None, None, None).unwrap(),
            None
        );
        assert_eq!(
            AuthConfig::from_flags(Some("u".into()), None, Some("PW".into()), None, None).unwrap(),
            Some(AuthConfig::Basic {
                user: "u".into(),
                password: SecretSource::Env("PW".into())
            })
        );
        let message = AuthConfig::from_flags(Some("u".into()), None, None, None, Some("T".into()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("not both"), "{message}");
        let message = AuthConfig::from_flags(Some("u".into()), None, None, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("pyroscope.auth.password_file"),
            "{message}"
        );
    }

    #[test]
    fn load_reads_the_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "hostname = \"h\"\nfrequency = 7\n").unwrap();
        let config = AgentConfig::load(
            Some(&path),
            &AgentOverrides {
                window: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (config.frequency_hz, config.window),
            (7, Duration::from_secs(5))
        );

        std::fs::write(&path, "frequency = [").unwrap();
        let message = AgentConfig::load(Some(&path), &AgentOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        let missing = dir.path().join("missing.toml");
        let message = AgentConfig::load(Some(&missing), &AgentOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("cannot read the config file"),
            "{message}"
        );
    }
}

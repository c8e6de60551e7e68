//! The command line (clap derive), converted into the library's plain config
//! structs; nothing here does any work.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use profiler::{
    agent::config::{
        AgentOverrides, AuthConfig, DEFAULT_DATA_DIR, parse_duration as parse_agent_duration,
        parse_size,
    },
    agent::run::AgentArgs as AgentSettings,
    output::{self, Format},
    profile::ProfileKind,
    record::{RecordConfig, RecordTarget},
    report::ReportConfig,
    tracer::UnwindMode,
    upload::{UploadConfig, UploadFiles},
};

#[derive(Parser, Debug)]
#[command(
    name = "profiler",
    version,
    about = "A CPU profiler for Linux on eBPF: flame graphs, folded stacks and pprof"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sample stacks of processes (or the whole system) and write a flame graph, folded stacks or pprof.
    Record(RecordArgs),
    /// Profile continuously: cut windows, store them locally and push them to Grafana Pyroscope.
    Agent(Box<AgentArgs>),
    /// Merge windows stored by the agent into one flame graph, folded stacks or pprof.
    Report(ReportArgs),
    /// Push pprof files (such as `record -o out.pb.gz` writes) to Grafana Pyroscope.
    Upload(UploadArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) on stdout.
    Completions(CompletionsArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    profiler completions bash > /etc/bash_completion.d/profiler\n  \
    profiler completions zsh > \"${fpath[1]}/_profiler\"\n  \
    profiler completions fish > ~/.config/fish/completions/profiler.fish")]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Every setting of the config file can be given as a flag, which wins.\n\
    Examples:\n  \
    profiler agent --config /etc/profiler/agent.toml\n  \
    profiler agent --data-dir /tmp/prof --window 10s --pyroscope-url http://localhost:4040\n  \
    profiler agent --comm-regex '^nginx' --no-pyroscope\n\
    Signals: SIGINT/SIGTERM store the current window and exit; SIGHUP reads the config again.\n\
    Logs: RUST_LOG=debug (default info)."
)]
pub struct AgentArgs {
    /// The TOML config file (see packaging/agent.toml).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Samples per second per CPU [default: 19].
    #[arg(short = 'F', long = "frequency")]
    pub frequency: Option<u64>,
    /// Length of a window, e.g. 10s [default: 10s].
    #[arg(long = "window", value_parser = parse_agent_duration)]
    pub window: Option<Duration>,
    /// Profile every process, whatever targets the config names.
    #[arg(short = 'a', long = "all", conflicts_with_all = ["pids", "comm_regex", "cgroup"])]
    pub all: bool,
    /// Processes to profile (comma-separated or repeated).
    #[arg(short = 'p', long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Profile processes whose command name matches this regular expression.
    #[arg(long = "comm-regex")]
    pub comm_regex: Option<String>,
    /// Profile the processes of this cgroup (v2) directory and its descendants.
    #[arg(long = "cgroup")]
    pub cgroup: Option<PathBuf>,
    /// service_name label of every profile [default: each process's command name].
    #[arg(long = "service-name")]
    pub service_name: Option<String>,
    /// hostname label [default: the machine's host name].
    #[arg(long = "hostname")]
    pub hostname: Option<String>,
    /// Where windows are stored [default: /var/lib/profiler].
    #[arg(long = "data-dir")]
    pub data_dir: Option<PathBuf>,
    /// Stored windows older than this are removed, e.g. 24h.
    #[arg(long = "max-age", value_parser = parse_agent_duration)]
    pub max_age: Option<Duration>,
    /// The store is kept below this size, e.g. 1GiB.
    #[arg(long = "max-bytes", value_parser = parse_size)]
    pub max_bytes: Option<u64>,
    /// Unique stacks kept per window; more are counted and folded into one marker stack.
    #[arg(long = "max-stacks")]
    pub max_stacks: Option<usize>,
    /// Resident memory above which symbol files are let go after each window
    /// (e.g. 128MiB); a soft bound paid for in CPU when reached.
    #[arg(long = "memory-target", value_parser = parse_size)]
    pub memory_target: Option<u64>,
    /// Also record off-CPU time (blocked, or waiting for a CPU): one more profile per process and window.
    /// Costs about 4 µs per context switch of a profiled thread.
    #[arg(long = "off-cpu")]
    pub off_cpu: bool,
    /// Off-CPU intervals shorter than this are counted but left out (e.g. 1us, 1ms) [default: 1us].
    #[arg(long = "min-block", value_parser = parse_min_block)]
    pub min_block: Option<Duration>,
    #[command(flatten)]
    pub unwind: UnwindArgs,
    /// Do not push to Pyroscope, even if the config says to.
    #[arg(long = "no-pyroscope", conflicts_with = "pyroscope_url")]
    pub no_pyroscope: bool,
    /// Pyroscope's base URL, e.g. http://localhost:4040.
    #[arg(long = "pyroscope-url")]
    pub pyroscope_url: Option<String>,
    #[command(flatten)]
    pub pyroscope: PyroscopeClientArgs,
    /// Bound of the on-disk upload spool, e.g. 256MiB.
    #[arg(long = "spool-max-bytes", value_parser = parse_size)]
    pub spool_max_bytes: Option<u64>,
    /// First backoff between attempts, e.g. 1s.
    #[arg(long = "backoff-initial", value_parser = parse_agent_duration)]
    pub backoff_initial: Option<Duration>,
    /// Longest backoff between attempts, e.g. 60s.
    #[arg(long = "backoff-max", value_parser = parse_agent_duration)]
    pub backoff_max: Option<Duration>,
    /// Address of the Prometheus /metrics listener [default: 127.0.0.1:9464].
    #[arg(long = "metrics-listen")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl AgentArgs {
    pub fn into_settings(self) -> Result<AgentSettings> {
        let p = self.pyroscope;
        let auth = p.auth()?;
        Ok(AgentSettings {
            config_path: self.config,
            overrides: AgentOverrides {
                frequency_hz: self.frequency,
                window: self.window,
                system_wide: self.all,
                pids: (!self.pids.is_empty()).then_some(self.pids),
                comm_regex: self.comm_regex,
                cgroup: self.cgroup,
                service_name: self.service_name,
                hostname: self.hostname,
                data_dir: self.data_dir,
                max_age: self.max_age,
                max_bytes: self.max_bytes,
                no_pyroscope: self.no_pyroscope,
                pyroscope_url: self.pyroscope_url,
                pyroscope_auth: auth,
                pyroscope_tenant_id: p.pyroscope_tenant_id,
                pyroscope_ca_file: p.pyroscope_ca_file,
                pyroscope_timeout: p.pyroscope_timeout,
                spool_max_bytes: self.spool_max_bytes,
                max_attempts: p.max_attempts,
                backoff_initial: self.backoff_initial,
                backoff_max: self.backoff_max,
                metrics_listen: self.metrics_listen,
                max_stacks: self.max_stacks,
                memory_target: self.memory_target,
                off_cpu: self.off_cpu,
                min_block: self.min_block,
                unwind: self.unwind.unwind.map(UnwindMode::from),
                unwind_memory: self.unwind.unwind_memory,
                python: self.unwind.no_python.then_some(false),
                interpreter_frames: self.unwind.interpreter_frames.then_some(true),
            },
        })
    }
}

/// How to reach Pyroscope: the agent's, `upload`'s and `record --upload`'s
/// flags. Secrets are read from a file or an environment variable, never
/// taken from the command line.
#[derive(Args, Debug, Default)]
pub struct PyroscopeClientArgs {
    /// Basic-auth user name.
    #[arg(long = "pyroscope-user")]
    pub pyroscope_user: Option<String>,
    /// A file holding the basic-auth password.
    #[arg(long = "pyroscope-password-file")]
    pub pyroscope_password_file: Option<PathBuf>,
    /// An environment variable holding the basic-auth password.
    #[arg(long = "pyroscope-password-env")]
    pub pyroscope_password_env: Option<String>,
    /// A file holding a bearer token.
    #[arg(long = "pyroscope-token-file")]
    pub pyroscope_token_file: Option<PathBuf>,
    /// An environment variable holding a bearer token.
    #[arg(long = "pyroscope-token-env")]
    pub pyroscope_token_env: Option<String>,
    /// Tenant (X-Scope-OrgID) of a multi-tenant Pyroscope.
    #[arg(long = "pyroscope-tenant-id")]
    pub pyroscope_tenant_id: Option<String>,
    /// Extra CA certificates (PEM) to trust.
    #[arg(long = "pyroscope-ca-file")]
    pub pyroscope_ca_file: Option<PathBuf>,
    /// Timeout of one push attempt, e.g. 10s.
    #[arg(long = "pyroscope-timeout", value_parser = parse_agent_duration)]
    pub pyroscope_timeout: Option<Duration>,
    /// Attempts per push (connection errors, timeouts and 5xx are retried)
    /// [default: 5 for the agent, which then keeps the window for later; 3 otherwise].
    #[arg(long = "max-attempts")]
    pub max_attempts: Option<u32>,
}

impl PyroscopeClientArgs {
    fn auth(&self) -> Result<Option<AuthConfig>> {
        Ok(AuthConfig::from_flags(
            self.pyroscope_user.clone(),
            self.pyroscope_password_file.clone(),
            self.pyroscope_password_env.clone(),
            self.pyroscope_token_file.clone(),
            self.pyroscope_token_env.clone(),
        )?)
    }

    fn is_empty(&self) -> bool {
        let PyroscopeClientArgs {
            pyroscope_user,
            pyroscope_password_file,
            pyroscope_password_env,
            pyroscope_token_file,
            pyroscope_token_env,
            pyroscope_tenant_id,
            pyroscope_ca_file,
            pyroscope_timeout,
            max_attempts,
        } = self;
        pyroscope_user.is_none()
            && pyroscope_password_file.is_none()
            && pyroscope_password_env.is_none()
            && pyroscope_token_file.is_none()
            && pyroscope_token_env.is_none()
            && pyroscope_tenant_id.is_none()
            && pyroscope_ca_file.is_none()
            && pyroscope_timeout.is_none()
            && max_attempts.is_none()
    }

    /// The push settings of `upload` and `record --upload` for `url`.
    fn upload_config(self, url: String, labels: PushLabelArgs) -> Result<UploadConfig> {
        let mut config = UploadConfig::new(url);
        let p = &mut config.pyroscope;
        p.auth = self.auth()?;
        p.tenant_id = self.pyroscope_tenant_id;
        p.ca_file = self.pyroscope_ca_file;
        if let Some(timeout) = self.pyroscope_timeout {
            p.timeout = timeout;
        }
        if let Some(attempts) = self.max_attempts {
            p.max_attempts = attempts;
        }
        config.service_name = labels.service_name;
        config.labels = labels.labels;
        Ok(config)
    }
}

/// What profiles pushed by `upload` and `record --upload` are called.
#[derive(Args, Debug, Default)]
pub struct PushLabelArgs {
    /// service_name of the pushed profiles [default: the profile's, or its single
    /// process's command name, else the file name without extension].
    #[arg(long = "service-name")]
    pub service_name: Option<String>,
    /// A label of the pushed profiles, e.g. env=prod; repeat for several. Wins
    /// over the labels read from the profile (pid, comm, profile_type).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

impl PushLabelArgs {
    fn is_empty(&self) -> bool {
        self.service_name.is_none() && self.labels.is_empty()
    }
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() && !value.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err("expected KEY=VALUE, e.g. env=prod".into()),
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    profiler upload out.pb.gz --pyroscope-url http://localhost:4040\n  \
    profiler upload a.pb.gz b.pb.gz --pyroscope-url https://p.example.com \\\n      \
    --pyroscope-user me --pyroscope-password-env PYROSCOPE_PASSWORD --label env=staging\n\
    The time range is the profile's own (time_nanos, duration_nanos); labels pid, comm and\n\
    profile_type are read from the profile when it has them. Files are never changed.")]
pub struct UploadArgs {
    /// pprof files, gzip-compressed or not, such as `profiler record -o out.pb.gz` writes.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Pyroscope's base URL, e.g. http://localhost:4040.
    #[arg(long = "pyroscope-url", value_name = "URL", required = true)]
    pub pyroscope_url: String,
    #[command(flatten)]
    pub pyroscope: PyroscopeClientArgs,
    #[command(flatten)]
    pub labels: PushLabelArgs,
}

impl UploadArgs {
    pub fn into_config(self) -> Result<UploadFiles> {
        Ok(UploadFiles {
            config: self
                .pyroscope
                .upload_config(self.pyroscope_url, self.labels)?,
            files: self.files,
        })
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    profiler report --data-dir /var/lib/profiler --since 1h -o flame.svg\n  \
    profiler report --since 30m --pid 1234 -o flame.svg -o out.pb.gz\n  \
    profiler report --mode off-cpu --since 10m -o waits.svg   (agent run with --off-cpu)")]
pub struct ReportArgs {
    /// The agent's data directory.
    #[arg(long = "data-dir", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Windows that ended within this long before now, e.g. 1h, 30m [default: all].
    #[arg(long = "since", value_parser = parse_agent_duration)]
    pub since: Option<Duration>,
    /// Windows that started more than this long before now [default: up to now].
    #[arg(long = "until", value_parser = parse_agent_duration)]
    pub until: Option<Duration>,
    /// Only these processes (comma-separated or repeated).
    #[arg(short = 'p', long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Output file; repeat for several. Format from the extension: .svg, .folded/.txt, .pb.gz/.pprof.
    #[arg(short = 'o', long = "output", required = true)]
    pub outputs: Vec<PathBuf>,
    /// Output format for every -o file, overriding the extension: svg, folded or pprof.
    #[arg(long = "format")]
    pub format: Option<Format>,
    /// Which windows: on-CPU samples (cpu) or off-CPU time (off-cpu, from an agent run with --off-cpu).
    #[arg(long = "mode", value_enum, default_value_t = Mode::Cpu)]
    pub mode: Mode,
    /// Flame graph title.
    #[arg(long = "title")]
    pub title: Option<String>,
}

impl ReportArgs {
    pub fn into_config(self) -> ReportConfig {
        let mut config = ReportConfig {
            data_dir: self.data_dir,
            since: self.since,
            until: self.until,
            pids: self.pids,
            kind: Some(self.mode.kind()),
            outputs: self.outputs,
            format: self.format,
            ..ReportConfig::default()
        };
        config.options.svg.title = self.title;
        config
    }
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    profiler record -p 1234 -o flame.svg\n  \
    profiler record -p 1234,5678 -d 30s -o flame.svg -o profile.pb.gz\n  \
    profiler record -a -F 999 -d 10 -o system.folded\n  \
    profiler record -o out.pb.gz -- ./my-program args\n  \
    profiler record --mode off-cpu -p 1234 -d 10 -o waits.svg\n  \
    profiler record --mode wall -o wall.pb.gz -- ./my-server\n  \
    profiler record -p 1234 -d 30s -o flame.svg --upload http://localhost:4040")]
pub struct RecordArgs {
    /// What to profile: on-CPU samples (cpu), time blocked or waiting for a CPU (off-cpu), or both in one profile in nanoseconds (wall).
    #[arg(long = "mode", value_enum, default_value_t = Mode::Cpu)]
    pub mode: Mode,
    /// Same as --mode off-cpu.
    #[arg(long = "off-cpu", conflicts_with = "mode")]
    pub off_cpu: bool,
    /// Off-CPU intervals shorter than this are counted but left out of the profile (e.g. 1us, 50us, 1ms) [default: 1us for off-cpu, 0 for wall so that it adds up].
    #[arg(long = "min-block", value_parser = parse_min_block)]
    pub min_block: Option<Duration>,
    /// Processes to profile (comma-separated or repeated); their children are followed.
    #[arg(
        short = 'p',
        long = "pid",
        value_delimiter = ',',
        conflicts_with = "all"
    )]
    pub pids: Vec<u32>,
    /// Profile every process on the system.
    #[arg(short = 'a', long = "all-cpus")]
    pub all: bool,
    /// Samples per second per CPU.
    #[arg(short = 'F', long = "frequency", default_value_t = 99)]
    pub frequency: u64,
    /// How long to record (e.g. 10, 10s, 500ms, 2m); default: until Ctrl-C or the targets exit.
    #[arg(short = 'd', long = "duration", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Output file; repeat for several. Format from the extension: .svg, .folded/.txt, .pb.gz/.pprof.
    #[arg(short = 'o', long = "output", required = true)]
    pub outputs: Vec<PathBuf>,
    /// Output format for every -o file, overriding the extension: svg, folded or pprof.
    #[arg(long = "format")]
    pub format: Option<Format>,
    /// Flame graph title (default: what was profiled).
    #[arg(long = "title")]
    pub title: Option<String>,
    /// No live status line while recording.
    #[arg(long = "no-status")]
    pub no_status: bool,
    /// Unique stacks the kernel can hold; raise it when the summary reports the stack map full.
    #[arg(long = "stack-map-size", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(256..=1_048_576))]
    pub stack_map_size: u32,
    #[command(flatten)]
    pub unwind: UnwindArgs,
    /// Also push the recording to Pyroscope at this base URL when it ends (as
    /// pprof, whatever the -o files are), e.g. http://localhost:4040.
    #[arg(long = "upload", value_name = "URL")]
    pub upload: Option<String>,
    #[command(flatten)]
    pub pyroscope: PyroscopeClientArgs,
    #[command(flatten)]
    pub push_labels: PushLabelArgs,
    /// The command to run and profile, after `--`.
    #[arg(last = true)]
    pub command: Vec<OsString>,
}

/// How user stacks are walked; shared by `record` and `agent`.
#[derive(Args, Debug)]
pub struct UnwindArgs {
    /// How user stacks are walked: `auto` uses the files' unwind tables
    /// (.eh_frame) where they have them and frame pointers elsewhere; `fp`
    /// frame pointers only; `dwarf` tables only [default: auto].
    #[arg(long = "unwind", value_enum)]
    pub unwind: Option<Unwind>,
    /// Kernel memory for unwind tables (e.g. 32MiB); the least recently
    /// used files' tables are evicted beyond it [default: 32MiB].
    #[arg(long = "unwind-memory", value_parser = parse_size)]
    pub unwind_memory: Option<u64>,
    /// Do not walk CPython frames (by default, Python 3.11-3.13 functions
    /// are shown by name in place of the interpreter's eval loop).
    #[arg(long = "no-python")]
    pub no_python: bool,
    /// Keep CPython's eval-loop frames (`_PyEval_EvalFrameDefault`) under
    /// the Python frames they run.
    #[arg(long = "interpreter-frames")]
    pub interpreter_frames: bool,
}

/// `--unwind` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Unwind {
    Auto,
    Fp,
    Dwarf,
}

impl From<Unwind> for UnwindMode {
    fn from(unwind: Unwind) -> UnwindMode {
        match unwind {
            Unwind::Auto => UnwindMode::Auto,
            Unwind::Fp => UnwindMode::Fp,
            Unwind::Dwarf => UnwindMode::Dwarf,
        }
    }
}

/// `--unwind-memory`'s rows of unwind tables.
pub fn unwind_rows(bytes: u64) -> Result<u32> {
    match profiler::unwind::rows_in(bytes) {
        Some(rows) => Ok(rows),
        None => bail!(
            "--unwind-memory {bytes} bytes is out of range: give between 8KiB and 16GiB (e.g. 32MiB)"
        ),
    }
}

/// `--mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Cpu,
    OffCpu,
    Wall,
}

impl Mode {
    pub fn kind(self) -> ProfileKind {
        match self {
            Mode::Cpu => ProfileKind::Cpu,
            Mode::OffCpu => ProfileKind::OffCpu,
            Mode::Wall => ProfileKind::Wall,
        }
    }
}

fn parse_min_block(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 0, 1us, 50us, 1ms)"))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs)),
        Ok(_) => Err("must be greater than zero".to_string()),
        Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(d) if d.is_zero() => Err("must be greater than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (examples: 10, 10s, 500ms, 2m)")),
    }
}

impl RecordArgs {
    pub fn into_config(self) -> Result<RecordConfig> {
        let target = match (self.pids.is_empty(), self.all, self.command.is_empty()) {
            (false, false, true) => RecordTarget::Pids(self.pids),
            (true, true, true) => RecordTarget::All,
            (true, false, false) => RecordTarget::Command(self.command),
            (true, false, true) => {
                bail!("nothing to profile: give -p PID, -a, or a command after --")
            }
            _ => bail!("give only one of -p PID, -a, or a command after --"),
        };
        let outputs = output::specs(self.outputs, self.format)?;
        let mode = if self.off_cpu {
            ProfileKind::OffCpu
        } else {
            self.mode.kind()
        };
        let min_block = self.min_block.unwrap_or(match mode {
            ProfileKind::OffCpu => Duration::from_micros(1),
            _ => Duration::ZERO,
        });
        let upload = match self.upload {
            Some(url) => Some(self.pyroscope.upload_config(url, self.push_labels)?),
            None if !self.pyroscope.is_empty() || !self.push_labels.is_empty() => bail!(
                "the --pyroscope-* flags, --max-attempts, --service-name and --label go with \
                 --upload URL: add it, or leave them out"
            ),
            None => None,
        };
        let mut config = RecordConfig {
            target,
            mode,
            min_block,
            frequency_hz: self.frequency,
            duration: self.duration,
            outputs,
            live_status: !self.no_status,
            stack_map_entries: self.stack_map_size,
            // `profiler record` exits once the recording is written.
            exit_after: true,
            upload,
            ..RecordConfig::default()
        };
        if let Some(unwind) = self.unwind.unwind {
            config.unwind = unwind.into();
        }
        if let Some(bytes) = self.unwind.unwind_memory {
            config.unwind_rows = unwind_rows(bytes)?;
        }
        config.python = !self.unwind.no_python;
        config.interpreter_frames = self.unwind.interpreter_frames;
        config.output_options.svg.title = self.title;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RecordConfig> {
        let cli = Cli::try_parse_from(args)?;
        let Command::Record(record) = cli.command else {
            panic!("not a record command");
        };
        record.into_config()
    }

    #[test]
    fn pids_frequency_duration_and_outputs() {
        let config = parse(&[
            "profiler", "record", "-p", "1,2", "-p", "3", "-F", "999", "-d", "1.5", "-o", "a.svg",
            "-o", "b.pb.gz",
        ])
        .unwrap();
        assert_eq!(config.target, RecordTarget::Pids(vec![1, 2, 3]));
        assert_eq!(config.frequency_hz, 999);
        assert_eq!(config.duration, Some(Duration::from_millis(1500)));
        assert_eq!(config.outputs[0].format, Format::Svg);
        assert_eq!(config.outputs[1].format, Format::Pprof);
    }

    #[test]
    fn command_after_double_dash_and_durations_with_units() {
        let config = parse(&[
            "profiler", "record", "-d", "500ms", "-o", "x.folded", "--", "./prog", "-v", "arg",
        ])
        .unwrap();
        assert_eq!(
            config.target,
            RecordTarget::Command(vec!["./prog".into(), "-v".into(), "arg".into()])
        );
        assert_eq!(config.duration, Some(Duration::from_millis(500)));
        assert_eq!(config.outputs[0].format, Format::Folded);
    }

    #[test]
    fn rejects_bad_combinations_and_values() {
        assert!(
            parse(&["profiler", "record", "-o", "x.svg"])
                .unwrap_err()
                .to_string()
                .contains("nothing to profile")
        );
        assert!(parse(&["profiler", "record", "-p", "1", "-o", "x.svg", "--", "ls"]).is_err());
        assert!(parse(&["profiler", "record", "-p", "1", "-a", "-o", "x.svg"]).is_err());
        assert!(parse(&["profiler", "record", "-p", "1", "-o", "x.png"]).is_err());
        assert!(parse(&["profiler", "record", "-p", "1", "-d", "0", "-o", "x.svg"]).is_err());
        assert!(parse(&["profiler", "record", "-p", "1", "-d", "soon", "-o", "x.svg"]).is_err());
        let config = parse(&[
            "profiler", "record", "-a", "--format", "folded", "-o", "x.png",
        ])
        .unwrap();
        assert_eq!(config.outputs[0].format, Format::Folded);
    }

    #[test]
    fn modes_and_min_block() {
        let config = parse(&["profiler", "record", "-a", "-o", "x.svg"]).unwrap();
        assert_eq!(
            (config.mode, config.min_block),
            (ProfileKind::Cpu, Duration::ZERO)
        );
        let config = parse(&["profiler", "record", "-a", "--off-cpu", "-o", "x.svg"]).unwrap();
        assert_eq!(
            (config.mode, config.min_block),
            (ProfileKind::OffCpu, Duration::from_micros(1))
        );
        let config = parse(&[
            "profiler",
            "record",
            "-a",
            "--mode",
            "off-cpu",
            "--min-block",
            "50us",
            "-o",
            "x.svg",
        ])
        .unwrap();
        assert_eq!(
            (config.mode, config.min_block),
            (ProfileKind::OffCpu, Duration::from_micros(50))
        );
        let config = parse(&["profiler", "record", "-a", "--mode", "wall", "-o", "x.svg"]).unwrap();
        assert_eq!(
            (config.mode, config.min_block),
            (ProfileKind::Wall, Duration::ZERO)
        );
        assert!(parse(&["profiler", "record", "-a", "--mode", "io", "-o", "x.svg"]).is_err());
        assert!(
            parse(&[
                "profiler",
                "record",
                "-a",
                "--min-block",
                "fast",
                "-o",
                "x.svg"
            ])
            .is_err()
        );
        assert!(
            parse(&[
                "profiler",
                "record",
                "-a",
                "--mode",
                "wall",
                "--off-cpu",
                "-o",
                "x.svg"
            ])
            .is_err()
        );
    }

    #[test]
    fn agent_flags_become_overrides() {
        let cli = Cli::try_parse_from([
            "profiler",
            "agent",
            "--config",
            "a.toml",
            "--window",
            "2s",
            "-p",
            "5,6",
            "--pyroscope-url",
            "http://localhost:4040",
            "--pyroscope-user",
            "u",
            "--pyroscope-password-env",
            "PW",
            "--max-attempts",
            "2",
            "--max-stacks",
            "100",
            "--memory-target",
            "64MiB",
            "--off-cpu",
            "--min-block",
            "50us",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .unwrap();
        let Command::Agent(agent) = cli.command else {
            panic!("not an agent command");
        };
        let settings = agent.into_settings().unwrap();
        assert_eq!(settings.config_path, Some(PathBuf::from("a.toml")));
        let o = settings.overrides;
        assert_eq!(o.window, Some(Duration::from_secs(2)));
        assert_eq!(o.pids, Some(vec![5, 6]));
        assert_eq!(o.max_stacks, Some(100));
        assert_eq!(o.memory_target, Some(64 << 20));
        assert!(o.off_cpu);
        assert_eq!(o.min_block, Some(Duration::from_micros(50)));
        assert!(matches!(o.pyroscope_auth, Some(AuthConfig::Basic { .. })));
        assert_eq!(o.max_attempts, Some(2));
        assert!(Cli::try_parse_from(["profiler", "agent", "-a", "-p", "1"]).is_err());
        assert!(Cli::try_parse_from(["profiler", "agent", "--window", "soon"]).is_err());
    }

    #[test]
    fn report_flags() {
        let cli = Cli::try_parse_from([
            "profiler",
            "report",
            "--data-dir",
            "/d",
            "--since",
            "1h",
            "-p",
            "7",
            "-o",
            "f.svg",
        ])
        .unwrap();
        let Command::Report(report) = cli.command else {
            panic!("not a report command");
        };
        let config = report.into_config();
        assert_eq!(config.data_dir, PathBuf::from("/d"));
        assert_eq!(config.since, Some(Duration::from_secs(3600)));
        assert_eq!(config.pids, vec![7]);
        assert_eq!(config.outputs, [PathBuf::from("f.svg")]);
        // On-CPU windows unless told otherwise: an agent with --off-cpu stores both kinds.
        assert_eq!(config.kind, Some(ProfileKind::Cpu));
        assert!(Cli::try_parse_from(["profiler", "report", "--since", "1h"]).is_err());
        let cli = Cli::try_parse_from(["profiler", "report", "--mode", "off-cpu", "-o", "w.svg"])
            .unwrap();
        let Command::Report(report) = cli.command else {
            panic!("not a report command");
        };
        assert_eq!(report.into_config().kind, Some(ProfileKind::OffCpu));
        let cli =
            Cli::try_parse_from(["profiler", "report", "-o", "a.svg", "-o", "b.pb.gz"]).unwrap();
        let Command::Report(report) = cli.command else {
            panic!("not a report command");
        };
        assert_eq!(
            report.into_config().outputs,
            [PathBuf::from("a.svg"), PathBuf::from("b.pb.gz")]
        );
    }

    #[test]
    fn upload_flags() {
        let cli = Cli::try_parse_from([
            "profiler",
            "upload",
            "a.pb.gz",
            "b.pprof",
            "--pyroscope-url",
            "http://localhost:4040",
            "--pyroscope-token-env",
            "TOKEN",
            "--pyroscope-timeout",
            "3s",
            "--max-attempts",
            "1",
            "--label",
            "env=prod",
            "--label",
            " team = infra ",
            "--service-name",
            "shop",
        ])
        .unwrap();
        let Command::Upload(upload) = cli.command else {
            panic!("not an upload command");
        };
        let upload = upload.into_config().unwrap();
        assert_eq!(
            upload.files,
            [PathBuf::from("a.pb.gz"), PathBuf::from("b.pprof")]
        );
        let c = &upload.config;
        assert_eq!(c.pyroscope.url, "http://localhost:4040");
        assert!(matches!(c.pyroscope.auth, Some(AuthConfig::Bearer { .. })));
        assert_eq!(c.pyroscope.timeout, Duration::from_secs(3));
        assert_eq!(c.pyroscope.max_attempts, 1);
        assert_eq!(c.service_name.as_deref(), Some("shop"));
        assert_eq!(
            c.labels,
            [("env", "prod"), ("team", "infra")].map(|(k, v)| (k.to_string(), v.to_string()))
        );
        // Files and the URL are required; labels are KEY=VALUE; no secret on argv.
        for bad in [
            &["profiler", "upload", "--pyroscope-url", "http://x"][..],
            &["profiler", "upload", "a.pb.gz"],
            &[
                "profiler",
                "upload",
                "a.pb.gz",
                "--pyroscope-url",
                "http://x",
                "--label",
                "env",
            ],
            &[
                "profiler",
                "upload",
                "a",
                "--pyroscope-url",
                "http://x",
                "--pyroscope-password",
                "pw",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let cli = Cli::try_parse_from([
            "profiler",
            "upload",
            "a",
            "--pyroscope-url",
            "http://x",
            "--pyroscope-user",
            "u",
        ])
        .unwrap();
        let Command::Upload(upload) = cli.command else {
            panic!("not an upload command");
        };
        assert!(
            upload.into_config().is_err(),
            "a user without a password source"
        );
    }

    #[test]
    fn record_upload_flags() {
        let config = parse(&[
            "profiler",
            "record",
            "-a",
            "-o",
            "x.svg",
            "--upload",
            "http://localhost:4040",
            "--pyroscope-user",
            "u",
            "--pyroscope-password-file",
            "/etc/pw",
            "--label",
            "env=ci",
        ])
        .unwrap();
        let upload = config.upload.unwrap();
        assert_eq!(upload.pyroscope.url, "http://localhost:4040");
        assert!(matches!(
            upload.pyroscope.auth,
            Some(AuthConfig::Basic { .. })
        ));
        assert_eq!(upload.labels, [("env".to_string(), "ci".to_string())]);
        assert_eq!(
            upload.pyroscope.max_attempts,
            profiler::upload::DEFAULT_MAX_ATTEMPTS
        );
        assert!(
            parse(&["profiler", "record", "-a", "-o", "x.svg"])
                .unwrap()
                .upload
                .is_none()
        );
        let err = parse(&[
            "profiler", "record", "-a", "-o", "x.svg", "--label", "env=ci",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("--upload URL"), "{err}");
    }

    #[test]
    fn completions_for_each_shell() {
        for shell in ["bash", "zsh", "fish"] {
            let cli = Cli::try_parse_from(["profiler", "completions", shell]).unwrap();
            assert!(matches!(cli.command, Command::Completions(_)), "{shell}");
        }
        assert!(Cli::try_parse_from(["profiler", "completions", "cmd.exe"]).is_err());
        assert!(Cli::try_parse_from(["profiler", "completions"]).is_err());
        // clap's own consistency checks over every subcommand and flag.
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}

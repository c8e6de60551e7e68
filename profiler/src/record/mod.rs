//! `profiler record`: validate, start the tracer, follow the targets until the
//! duration, Ctrl-C/SIGTERM, the command's exit or every target's exit; then
//! drain, symbolize and write every output. Validation happens before any
//! sampling, so a bad flag never costs a recording.

mod upload;
mod validate;
pub(crate) mod watch;

use std::{
    ffi::OsString,
    io::IsTerminal,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::{
    maps::{MapData, RingBuf},
    util::online_cpus,
};
use symbolizer::Symbolizer;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

pub use crate::output::OutputSpec;
pub use upload::Pushed;
use validate::{target_processes, validate};
use watch::{all_exited, any_readable, end_command, handle_events, pidfd_open, status_line};

use crate::{
    aggregate::{AggregateOptions, aggregate_with},
    follow::follow_walker,
    output::{self, OutputError, OutputOptions},
    phases,
    pid_alive::process_exists,
    process_events::ProcessEvents,
    processes::{ProcessTable, Resolver, SETTLE_AFTER},
    profile::{Meta, Profile, ProfileKind},
    python::{PythonStats, Pythons},
    raw::{HiddenTime, KernelStats},
    ticker::Ticker,
    tracer::{Targets, Tracer, TracerError, TracerOptions, UnwindMode},
    unwind::{Tables, UnwindStats},
    upload::{UploadConfig, UploadError, Uploader},
};

/// What to profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordTarget {
    Pids(Vec<u32>),
    All,
    /// A command to start; it and its children are profiled.
    Command(Vec<OsString>),
}

#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub target: RecordTarget,
    /// On-CPU samples, off-CPU time, or both (wall).
    pub mode: ProfileKind,
    /// Off-CPU intervals shorter than this are counted but not profiled.
    pub min_block: Duration,
    pub frequency_hz: u64,
    /// `None`: until interrupted or the targets exit.
    pub duration: Option<Duration>,
    pub outputs: Vec<OutputSpec>,
    /// Print a live status line on stderr (when it is a terminal).
    pub live_status: bool,
    pub stack_map_entries: u32,
    pub counts_map_entries: u32,
    /// How user stacks are walked.
    pub unwind: UnwindMode,
    /// Kernel memory for unwind tables, in rows (8 bytes each).
    pub unwind_rows: u32,
    /// Walk CPython frames (with unwind tables only).
    pub python: bool,
    /// Keep the interpreter's eval-loop frames under the Python frames
    /// they run (else they are replaced by them).
    pub interpreter_frames: bool,
    pub output_options: OutputOptions,
    /// The caller exits once `record` returns (the CLI): the process table
    /// and the symbolizer's caches are left for the exit to reclaim rather
    /// than freed piece by piece. On a fork-heavy system `-a` holds the
    /// mappings of thousands of processes, and freeing them and the
    /// symbolizer was 8% of the recording's CPU. Leave it off in a process
    /// that goes on (tests, an embedding program): that memory would leak.
    pub exit_after: bool,
    /// Push the recording to Pyroscope once it is written (`--upload URL`).
    pub upload: Option<UploadConfig>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        let tracer = TracerOptions::default();
        RecordConfig {
            target: RecordTarget::All,
            mode: ProfileKind::Cpu,
            min_block: Duration::ZERO,
            frequency_hz: tracer.frequency_hz,
            duration: None,
            outputs: Vec::new(),
            live_status: true,
            stack_map_entries: tracer.stack_map_entries,
            counts_map_entries: tracer.counts_map_entries,
            unwind: tracer.unwind,
            unwind_rows: tracer.unwind_rows,
            python: true,
            interpreter_frames: false,
            output_options: OutputOptions::default(),
            exit_after: false,
            upload: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "invalid frequency {hz} Hz: give -F between 1 and {max} (the kernel's perf_event_max_sample_rate)"
    )]
    Frequency { hz: u64, max: u64 },
    #[error("no process with pid {pid}: check the pid (ps -p {pid})")]
    NoSuchProcess { pid: u32 },
    #[error("cannot run `{command}`: {reason}")]
    Command { command: String, reason: String },
    #[error("no output file given: add -o FILE (.svg, .folded or .pb.gz)")]
    NoOutput,
    #[error(
        "no samples in {secs:.1} s: the target never ran on a CPU while recording (idle, sleeping or \
         blocked), so nothing was written. Record longer, while it is busy, or use --mode off-cpu \
         or --mode wall to see where it waits"
    )]
    NoSamples { secs: f64 },
    #[error(
        "the target process{} {} exited before the recording started, so nothing was recorded; \
         profile a process that is running, or start it with `profiler record -- COMMAND`",
        if .pids.len() > 1 { "es" } else { "" },
        .pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    ExitedBeforeStart { pids: Vec<u32> },
    #[error(
        "no off-CPU time in {secs:.1} s: the target never left a CPU for longer than --min-block \
         while recording, so nothing was written. Record longer, lower --min-block, or use \
         --mode cpu"
    )]
    NoOffCpu { secs: f64 },
    #[error(
        "no off-CPU time with a known stack in {secs:.1} s: {} of {} threads already off CPU when \
         the recording started left out (they blocked before the profiler attached, so their stacks are unknown), so nothing was \
         written. Use --mode wall to include that time, or record while the target runs",
        crate::summary::format_duration(hidden.nanos),
        hidden.threads
    )]
    OnlyOffCpuBeforeStart { secs: f64, hidden: HiddenTime },
    #[error(transparent)]
    Tracer(#[from] TracerError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why recording stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Duration,
    Interrupted,
    CommandExited,
    TargetsExited,
}

/// Everything the end-of-run summary shows.
pub struct RecordReport {
    pub profile: Profile,
    pub kernel: KernelStats,
    pub symbolizer: symbolizer::Stats,
    /// Processes with samples whose maps could not be read before they exited.
    pub processes_missed: usize,
    /// Processes whose maps came from the kernel's records, not from `/proc`.
    pub processes_followed: usize,
    /// The unwind tables loaded (`None`: stacks walked with frame pointers).
    pub unwind: Option<UnwindStats>,
    /// The Python interpreters found (`None`: Python frames not walked).
    pub python: Option<PythonStats>,
    /// Process records the kernel dropped (buffer full); `None` when the
    /// records could not be opened. Either way, processes were read from `/proc`.
    pub process_records_lost: Option<u64>,
    pub stop: StopReason,
    pub command_status: Option<ExitStatus>,
    pub written: Vec<PathBuf>,
    /// Off-CPU mode only: time of threads already off CPU when the recording
    /// started, until they first ran, left out of the profile.
    pub hidden_before_start: HiddenTime,
    /// `--upload`: the push, or why it failed (the outputs are written
    /// either way).
    pub upload: Option<Result<Pushed, UploadError>>,
}

fn describe(target: &RecordTarget) -> String {
    match target {
        RecordTarget::All => "all processes".into(),
        RecordTarget::Pids(pids) => {
            let parts: Vec<String> = pids
                .iter()
                .map(|pid| {
                    let comm =
                        std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                    format!("pid {pid} ({})", comm.trim())
                })
                .collect();
            parts.join(", ")
        }
        RecordTarget::Command(argv) => argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// How the watched part of a recording ended.
struct Watched {
    stop: StopReason,
    command_status: Option<ExitStatus>,
    /// From the start of sampling to the stop, before any teardown.
    duration: Duration,
}

/// What a recording watches once sampling has started.
struct Session {
    tracer: Tracer,
    processes: ProcessTable,
    /// The kernel's fork/exec/mmap records, when they could be opened.
    process_events: Option<ProcessEvents>,
    ring: Option<AsyncFd<RingBuf<MapData>>>,
    /// The announcements, read on the records' tick instead of on every
    /// wake-up when the records are followed: they rarely need a `/proc`
    /// read then, and a fork-heavy program announced ~2 000 processes a
    /// second, each a wake-up of the profiler.
    polled_ring: Option<RingBuf<MapData>>,
    child: Option<tokio::process::Child>,
    pidfds: Vec<AsyncFd<OwnedFd>>,
    /// Every `-p` target exited while sampling was being set up: there is
    /// no pidfd to wait on, and nothing left to record (`record` fails
    /// before watching).
    targets_gone_at_start: bool,
    start: Instant,
    start_wall: SystemTime,
    /// The unwind tables, kept in step with `processes` (`--unwind auto|dwarf`).
    unwind: Option<Tables>,
    /// The Python interpreters, kept in step with `processes` too.
    pythons: Option<Pythons>,
}

/// How often the watch loop wakes up while anything happens: the kernel's
/// process records are applied at every tick, and processes announced by the
/// kernel wait for them.
const TICK: Duration = Duration::from_millis(100);

/// The longest tick, reached by doubling while nothing happens (a CPU-bound
/// program). In a VM each wake-up cost ~80 us: 30 of them were 2.5 ms of a 3 s
/// recording's ~20 ms of CPU.
const IDLE_TICK: Duration = Duration::from_millis(800);

/// How often unsettled processes are read again, exited targets pruned and
/// the status line redrawn (at the next tick after that).
const HOUSEKEEPING: Duration = Duration::from_millis(250);

impl Session {
    /// Starts sampling, then the command if there is one, and captures the
    /// targets' maps.
    fn start(config: &RecordConfig) -> Result<Session, RecordError> {
        let self_pid = std::process::id();
        let targets = match &config.target {
            RecordTarget::All => Targets::All,
            RecordTarget::Pids(pids) => Targets::Pids(pids.clone()),
            // Following our own fork puts the child in the targets before it execs.
            RecordTarget::Command(_) => Targets::Pids(vec![self_pid]),
        };
        // Opened before sampling starts, so that no mapping of a sampled
        // process is made before the records begin.
        let process_events = match online_cpus().map(|cpus| ProcessEvents::open(&cpus)) {
            Ok(Ok(events)) => Some(events),
            Ok(Err(e)) => {
                eprintln!(
                    "note: the kernel's process records are unavailable ({e}): new processes are read from /proc at their first sample, and one that exits first stays unsymbolized"
                );
                None
            }
            Err(_) => None,
        };
        let mut processes = ProcessTable::default();
        if process_events.is_some() {
            processes.follow_records(config.target == RecordTarget::All);
        }
        let mut tracer = Tracer::start(TracerOptions {
            on_cpu: config.mode != ProfileKind::OffCpu,
            off_cpu: config.mode != ProfileKind::Cpu,
            min_block_ns: config.min_block.as_nanos().try_into().unwrap_or(u64::MAX),
            frequency_hz: config.frequency_hz,
            targets,
            follow_forks: true,
            stack_map_entries: config.stack_map_entries,
            counts_map_entries: config.counts_map_entries,
            unwind: config.unwind,
            unwind_rows: config.unwind_rows,
            python: config.python,
            ..TracerOptions::default()
        })?;
        let unwind = Tables::of(&mut tracer);
        let pythons = Pythons::of(&mut tracer);
        if unwind.is_some() {
            processes.track_changes();
        }
        // With unwind tables, a process of the targets is read at its first
        // sample (see `UnwindManager::follow`): the announcements wake us up.
        // System-wide they stay polled: a fork-heavy machine announced ~2 000
        // processes a second, most gone by the time they were read, and
        // waking for each tripled the profiler's CPU (fork workload, 999 Hz
        // -a: 1.14x of perf record's own CPU, against 0.21x).
        let wake_on_announce = unwind.is_some() && config.target != RecordTarget::All;
        let (ring, polled_ring) = match tracer.take_events() {
            Some(ring) if process_events.is_some() && !wake_on_announce => (None, Some(ring)),
            // SAFETY: the AsyncFd owns the ring buffer and so its fd.
            Some(ring) => (
                Some(
                    unsafe { AsyncFd::register(ring) }
                        .map_err(|e| std::io::Error::other(e.to_string()))?,
                ),
                None,
            ),
            None => (None, None),
        };
        let mut session = Session {
            tracer,
            processes,
            process_events,
            ring,
            polled_ring,
            child: None,
            pidfds: Vec::new(),
            targets_gone_at_start: false,
            start: Instant::now(),
            start_wall: SystemTime::now(),
            unwind,
            pythons,
        };
        match &config.target {
            RecordTarget::Command(argv) => {
                let spawned = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .spawn();
                session.tracer.remove_target(self_pid)?;
                let spawned = spawned.map_err(|e| RecordError::Command {
                    command: argv[0].to_string_lossy().into_owned(),
                    reason: e.to_string(),
                })?;
                if let Some(pid) = spawned.id() {
                    session.processes.capture(pid);
                }
                session.child = Some(spawned);
            }
            RecordTarget::Pids(pids) => {
                let mut gone = 0;
                for &pid in pids {
                    session.processes.capture(pid);
                    match pidfd_open(pid) {
                        Some(fd) => session.pidfds.push(fd),
                        // Exited between the check and now (pidfd_open: ESRCH).
                        None if !Path::new(&format!("/proc/{pid}")).exists() => gone += 1,
                        None => {}
                    }
                }
                session.targets_gone_at_start = gone == pids.len();
            }
            RecordTarget::All => {}
        }
        session.sync_unwind();
        Ok(session)
    }

    /// Brings the kernel's unwind tables and Python interpreters up to
    /// date with the processes held, and reads the Python code objects the
    /// kernel announced.
    fn sync_unwind(&mut self) {
        follow_walker(
            &mut self.processes,
            self.unwind.as_mut(),
            self.pythons.as_mut(),
        );
    }

    /// Follows the targets until the recording should stop, then stops
    /// sampling (and a command the profiler started).
    async fn watch(&mut self, config: &RecordConfig) -> Result<Watched, RecordError> {
        let live = config.live_status && std::io::stderr().is_terminal();
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        // One wake-up per tick (see `ticker`), and longer ticks while
        // nothing happens; a burst of process records wakes it sooner.
        let mut period = TICK;
        let mut ticker = Ticker::new(period)?;
        let mut last_housekeeping = Instant::now();
        let mut records_seen = 0;
        let record_fds = match &self.process_events {
            // SAFETY: the fds belong to `self.process_events`, which is not
            // dropped before these registrations are, at the end of `watch`.
            Some(events) => events
                .raw_fds()
                .into_iter()
                .map(|fd| unsafe { AsyncFd::register(fd) })
                .collect::<Result<Vec<_>, _>>()
                .map_err(std::io::Error::from)?,
            None => Vec::new(),
        };
        let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
        let mut command_status = None;
        let stop = loop {
            tokio::select! {
                _ = sigint.recv() => break StopReason::Interrupted,
                _ = sigterm.recv() => break StopReason::Interrupted,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                    break StopReason::Duration
                }
                status = async { self.child.as_mut().unwrap().wait().await }, if self.child.is_some() => {
                    command_status = status.ok();
                    break StopReason::CommandExited;
                }
                _ = all_exited(&self.pidfds), if !self.pidfds.is_empty() => break StopReason::TargetsExited,
                guard = async { self.ring.as_mut().unwrap().readable_mut().await }, if self.ring.is_some() => {
                    let mut guard = guard?;
                    handle_events(guard.get_inner_mut(), &mut self.processes);
                    guard.clear_ready();
                    self.sync_unwind();
                }
                _ = any_readable(&record_fds), if !record_fds.is_empty() => {
                    self.apply_process_records(false);
                }
                ticks = ticker.tick() => {
                    ticks?;
                    self.apply_process_records(false);
                    let records = self.process_events.as_ref().map_or(0, ProcessEvents::records_read);
                    let busy = live || records != records_seen || self.processes.has_pending();
                    records_seen = records;
                    let next = if busy { TICK } else { (period * 2).min(IDLE_TICK) };
                    if next != period {
                        ticker.set_period(next)?;
                        period = next;
                    }
                    if last_housekeeping.elapsed() < HOUSEKEEPING {
                        continue;
                    }
                    last_housekeeping = Instant::now();
                    self.processes.settle(SETTLE_AFTER);
                    self.sync_unwind();
                    if self.process_events.is_none()
                        && let Some(unwind) = self.unwind.as_mut()
                    {
                        unwind.prune(process_exists);
                    }
                    if config.target != RecordTarget::All {
                        let _ = self.tracer.prune_targets();
                    }
                    if !live {
                        continue;
                    }
                    let stats = self.tracer.stats().unwrap_or_default();
                    let progress = match config.mode {
                        ProfileKind::Cpu => format!("{} samples", stats.samples),
                        ProfileKind::OffCpu => format!("{} context switches", stats.off_cpu_switches),
                        ProfileKind::Wall => format!(
                            "{} samples, {} context switches",
                            stats.samples, stats.off_cpu_switches
                        ),
                    };
                    status_line(self.start, &progress)
                }
            }
        };
        let duration = self.start.elapsed();
        self.tracer.stop();
        // A command the profiler started ends with the recording, rather than
        // living on, orphaned and unprofiled.
        if let Some(child) = self.child.as_mut()
            && stop != StopReason::CommandExited
        {
            command_status = end_command(child).await;
        }
        if live {
            eprint!("\r\x1b[2K");
        }
        if let Some(ring) = self.ring.as_mut() {
            handle_events(ring.get_mut(), &mut self.processes);
        }
        if let Some(ring) = self.polled_ring.as_mut() {
            handle_events(ring, &mut self.processes);
        }
        if let Some(events) = self.process_events.as_mut() {
            events.disable();
        }
        self.apply_process_records(true);
        Ok(Watched {
            stop,
            command_status,
            duration,
        })
    }

    /// Applies the kernel's process records that are due (all of them when
    /// `everything`); any record lost sends every process back to `/proc`.
    fn apply_process_records(&mut self, everything: bool) {
        let Some(events) = self.process_events.as_mut() else {
            return;
        };
        self.processes
            .announced_until(crate::process_events::monotonic_ns());
        if let Some(ring) = self.polled_ring.as_mut() {
            handle_events(ring, &mut self.processes);
        }
        let tracer = &self.tracer;
        self.processes.follow(events, everything, || {
            tracer.announcements_lost().unwrap_or(u64::MAX)
        });
        self.sync_unwind();
    }

    /// Drains the maps and symbolizes what they hold.
    fn profile(
        &mut self,
        config: &RecordConfig,
        duration: Duration,
    ) -> Result<(Profile, KernelStats, symbolizer::Stats, usize, HiddenTime), RecordError> {
        let mut raw = self.tracer.drain()?;
        phases::mark("drain");
        let hidden = if config.mode == ProfileKind::OffCpu {
            crate::raw::hide_before_start(&mut raw.samples)
        } else {
            HiddenTime::default()
        };
        let mut pids: Vec<u32> = raw.samples.iter().map(|s| s.tgid).collect();
        pids.sort_unstable();
        pids.dedup();
        // Live processes are read again for libraries loaded since they were first seen.
        self.processes.refresh(pids.iter().copied());
        phases::mark("refresh");
        let meta = Meta {
            kind: config.mode,
            target: describe(&config.target),
            start_unix_nanos: self
                .start_wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            duration_nanos: duration.as_nanos() as u64,
            frequency_hz: config.frequency_hz,
        };
        // Names found now are kept for the boot, by build ID, so the next
        // recording of the same binaries need not parse their DWARF again
        // (symbolizer::frame_cache; /run/profiler/frames).
        // Root only, as the other caches there (README, Requirements).
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let mut symbolizer = Symbolizer::new()
            .with_frame_cache_dir(as_root.then(|| Path::new(symbolizer::kallsyms::CACHE_DIR)));
        let profile = aggregate_with(
            &raw,
            &mut Resolver {
                symbolizer: &mut symbolizer,
                processes: &self.processes,
                pythons: self.pythons.as_mut(),
            },
            meta,
            &AggregateOptions {
                interpreter_frames: config.interpreter_frames,
            },
        );
        symbolizer.flush_frame_cache();
        phases::mark("frame-cache");
        phases::note(|| format!("symbolizer {:?}", symbolizer.stats()));
        let missed = pids
            .iter()
            .filter(|&&pid| self.processes.get(pid).is_none())
            .count();
        let stats = symbolizer.stats();
        if config.exit_after {
            std::mem::forget(symbolizer);
        }
        Ok((profile, raw.stats, stats, missed, hidden))
    }
}

pub async fn record(config: RecordConfig) -> Result<RecordReport, RecordError> {
    phases::mark("startup");
    validate(&config)?;
    // The server's settings and secrets are checked before sampling too.
    let uploader = match &config.upload {
        Some(upload) => Some(Uploader::new(&upload.pyroscope)?),
        None => None,
    };
    let mut config = config;
    if let RecordTarget::Pids(pids) = &config.target {
        config.target = RecordTarget::Pids(target_processes(pids));
    }
    let mut session = Session::start(&config)?;
    phases::mark("load");
    if session.targets_gone_at_start
        && let RecordTarget::Pids(pids) = &config.target
    {
        return Err(RecordError::ExitedBeforeStart { pids: pids.clone() });
    }
    let Watched {
        stop,
        command_status,
        duration,
    } = session.watch(&config).await?;
    phases::mark("watch");
    let (profile, kernel, symbolizer, processes_missed, hidden_before_start) =
        session.profile(&config, duration)?;
    if profile.total_value() == 0 {
        let secs = duration.as_secs_f64();
        return Err(match config.mode {
            ProfileKind::OffCpu if hidden_before_start.threads > 0 => {
                RecordError::OnlyOffCpuBeforeStart {
                    secs,
                    hidden: hidden_before_start,
                }
            }
            ProfileKind::OffCpu => RecordError::NoOffCpu { secs },
            _ => RecordError::NoSamples { secs },
        });
    }
    let written = output::write_all(&profile, &config.outputs, &config.output_options)?;
    phases::mark("write");
    let upload = match (&config.upload, &uploader) {
        (Some(upload), Some(uploader)) => {
            let outcome = upload::push_recording(&profile, &config.outputs, upload, uploader).await;
            phases::mark("upload");
            Some(outcome)
        }
        _ => None,
    };
    let processes_followed = session.processes.followed();
    if config.exit_after {
        std::mem::forget(std::mem::take(&mut session.processes));
    }
    Ok(RecordReport {
        profile,
        kernel,
        symbolizer,
        processes_missed,
        processes_followed,
        unwind: session.unwind.as_ref().map(Tables::stats),
        python: session.pythons.as_ref().map(Pythons::stats),
        process_records_lost: session.process_events.as_ref().map(ProcessEvents::lost),
        stop,
        command_status,
        written,
        hidden_before_start,
        upload,
    })
}

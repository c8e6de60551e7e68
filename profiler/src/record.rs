//! `profiler record`: validate, start the tracer, follow the targets until the
//! duration, Ctrl-C/SIGTERM, the command's exit or every target's exit; then
//! drain, symbolize and write every output. Validation happens before any
//! sampling, so a bad flag never costs a recording.

use std::{
    ffi::OsString,
    io::{IsTerminal, Write},
    os::fd::{FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::ExitStatus,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::maps::{MapData, RingBuf};
use profiler_common::ProcessEvent;
use symbolizer::Symbolizer;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    aggregate::aggregate,
    output::{self, Format, OutputError, OutputOptions},
    processes::{ProcessTable, Resolver},
    profile::{Meta, Profile},
    raw::KernelStats,
    tracer::{Targets, Tracer, TracerError, TracerOptions, max_sample_rate},
};

/// What to profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordTarget {
    Pids(Vec<u32>),
    All,
    /// A command to start; it and its children are profiled.
    Command(Vec<OsString>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub path: PathBuf,
    pub format: Format,
}

#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub target: RecordTarget,
    pub frequency_hz: u64,
    /// `None`: until interrupted or the targets exit.
    pub duration: Option<Duration>,
    pub outputs: Vec<OutputSpec>,
    /// Print a live status line on stderr (when it is a terminal).
    pub live_status: bool,
    pub stack_map_entries: u32,
    pub counts_map_entries: u32,
    pub output_options: OutputOptions,
}

impl Default for RecordConfig {
    fn default() -> Self {
        let tracer = TracerOptions::default();
        RecordConfig {
            target: RecordTarget::All,
            frequency_hz: tracer.frequency_hz,
            duration: None,
            outputs: Vec::new(),
            live_status: true,
            stack_map_entries: tracer.stack_map_entries,
            counts_map_entries: tracer.counts_map_entries,
            output_options: OutputOptions::default(),
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
         blocked), so nothing was written. Record longer, or while it is busy"
    )]
    NoSamples { secs: f64 },
    #[error(transparent)]
    Tracer(#[from] TracerError),
    #[error(transparent)]
    Output(#[from] OutputError),
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
    pub stop: StopReason,
    pub command_status: Option<ExitStatus>,
    pub written: Vec<PathBuf>,
}

fn validate(config: &RecordConfig) -> Result<(), RecordError> {
    let max = max_sample_rate().unwrap_or(100_000);
    if config.frequency_hz == 0 || config.frequency_hz > max {
        return Err(RecordError::Frequency {
            hz: config.frequency_hz,
            max,
        });
    }
    if config.outputs.is_empty() {
        return Err(RecordError::NoOutput);
    }
    for output in &config.outputs {
        output::check_destination(&output.path)?;
    }
    match &config.target {
        RecordTarget::Pids(pids) => {
            for &pid in pids {
                if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(RecordError::NoSuchProcess { pid });
                }
            }
        }
        RecordTarget::Command(argv) => {
            let program = argv.first().ok_or_else(|| RecordError::Command {
                command: String::new(),
                reason: "no command given after --".into(),
            })?;
            if find_executable(Path::new(program)).is_none() {
                return Err(RecordError::Command {
                    command: program.to_string_lossy().into_owned(),
                    reason: "no such executable file (not found, or not executable, in PATH)"
                        .into(),
                });
            }
        }
        RecordTarget::All => {}
    }
    Ok(())
}

/// The process a pid belongs to: a thread id given with `-p` means its process.
fn tgid_of(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|t| t.trim().parse().ok())
        })
        .unwrap_or(pid)
}

/// `-p` pids as processes, each once, in the order given.
fn target_processes(pids: &[u32]) -> Vec<u32> {
    let mut tgids: Vec<u32> = Vec::with_capacity(pids.len());
    for tgid in pids.iter().map(|&pid| tgid_of(pid)) {
        if !tgids.contains(&tgid) {
            tgids.push(tgid);
        }
    }
    tgids
}

fn find_executable(program: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return is_exec(program).then(|| program.to_path_buf());
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| is_exec(p))
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

fn pidfd_open(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the fd, so it stays open while registered.
    unsafe { AsyncFd::register(fd) }.ok()
}

async fn all_exited(pidfds: &[AsyncFd<OwnedFd>]) {
    if pidfds.is_empty() {
        return std::future::pending().await;
    }
    for fd in pidfds {
        // A pidfd becomes readable when its process exits, and stays so.
        let _ = fd.readable().await;
    }
}

fn handle_events(ring: &mut RingBuf<MapData>, processes: &mut ProcessTable) {
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<ProcessEvent>() {
            // SAFETY: the kernel side writes exactly a ProcessEvent; read unaligned to be safe.
            let event: ProcessEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            processes.capture(event.tgid);
        }
    }
}

/// SIGTERM, then SIGKILL if the command has not exited within two seconds.
async fn end_command(child: &mut tokio::process::Child) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            child.try_wait().ok().flatten()
        }
    }
}

fn status_line(start: Instant, samples: u64) {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r\x1b[2Krecording: {:.1} s, {samples} samples (Ctrl-C to stop)",
        start.elapsed().as_secs_f64()
    );
    let _ = err.flush();
}

pub async fn record(config: RecordConfig) -> Result<RecordReport, RecordError> {
    validate(&config)?;
    let self_pid = std::process::id();
    let mut config = config;
    if let RecordTarget::Pids(pids) = &config.target {
        config.target = RecordTarget::Pids(target_processes(pids));
    }
    let targets = match &config.target {
        RecordTarget::All => Targets::All,
        RecordTarget::Pids(pids) => Targets::Pids(pids.clone()),
        // Following our own fork puts the child in the targets before it execs.
        RecordTarget::Command(_) => Targets::Pids(vec![self_pid]),
    };
    let mut tracer = Tracer::start(TracerOptions {
        frequency_hz: config.frequency_hz,
        targets,
        follow_forks: true,
        stack_map_entries: config.stack_map_entries,
        counts_map_entries: config.counts_map_entries,
    })?;
    let start_wall = SystemTime::now();
    let start = Instant::now();
    let mut processes = ProcessTable::default();
    let mut ring = match tracer.take_events() {
        // SAFETY: the AsyncFd owns the ring buffer and so its fd.
        Some(ring) => Some(
            unsafe { AsyncFd::register(ring) }.map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
        None => None,
    };

    let mut child = None;
    let mut pidfds = Vec::new();
    match &config.target {
        RecordTarget::Command(argv) => {
            let spawned = tokio::process::Command::new(&argv[0])
                .args(&argv[1..])
                .spawn();
            tracer.remove_target(self_pid)?;
            let spawned = spawned.map_err(|e| RecordError::Command {
                command: argv[0].to_string_lossy().into_owned(),
                reason: e.to_string(),
            })?;
            if let Some(pid) = spawned.id() {
                processes.capture(pid);
            }
            child = Some(spawned);
        }
        RecordTarget::Pids(pids) => {
            for &pid in pids {
                processes.capture(pid);
                pidfds.extend(pidfd_open(pid));
            }
        }
        RecordTarget::All => {}
    }

    let live = config.live_status && std::io::stderr().is_terminal();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut command_status = None;
    let stop = loop {
        tokio::select! {
            _ = sigint.recv() => break StopReason::Interrupted,
            _ = sigterm.recv() => break StopReason::Interrupted,
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                break StopReason::Duration
            }
            status = async { child.as_mut().unwrap().wait().await }, if child.is_some() => {
                command_status = status.ok();
                break StopReason::CommandExited;
            }
            _ = all_exited(&pidfds), if !pidfds.is_empty() => break StopReason::TargetsExited,
            guard = async { ring.as_mut().unwrap().readable_mut().await }, if ring.is_some() => {
                let mut guard = guard?;
                handle_events(guard.get_inner_mut(), &mut processes);
                guard.clear_ready();
            }
            _ = tick.tick(), if live => status_line(start, tracer.stats().map(|s| s.samples).unwrap_or(0)),
        }
    };
    let duration = start.elapsed();
    tracer.stop();
    // A command the profiler started ends with the recording, rather than
    // living on, orphaned and unprofiled.
    if let Some(child) = child.as_mut()
        && stop != StopReason::CommandExited
    {
        command_status = end_command(child).await;
    }
    if live {
        eprint!("\r\x1b[2K");
    }
    if let Some(ring) = ring.as_mut() {
        handle_events(ring.get_mut(), &mut processes);
    }

    let raw = tracer.drain()?;
    let mut pids: Vec<u32> = raw.samples.iter().map(|s| s.tgid).collect();
    pids.sort_unstable();
    pids.dedup();
    // Live processes are read again for libraries loaded since they were first seen.
    processes.refresh(
        pids.iter()
            .copied()
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists()),
    );

    let mut symbolizer = Symbolizer::new();
    let meta = Meta {
        target: describe(&config.target),
        start_unix_nanos: start_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        duration_nanos: duration.as_nanos() as u64,
        frequency_hz: config.frequency_hz,
    };
    let profile = aggregate(
        &raw,
        &mut Resolver {
            symbolizer: &mut symbolizer,
            processes: &processes,
        },
        meta,
    );

    if profile.total_samples() == 0 {
        return Err(RecordError::NoSamples {
            secs: duration.as_secs_f64(),
        });
    }
    let mut written = Vec::new();
    for spec in &config.outputs {
        output::write(&profile, &spec.path, spec.format, &config.output_options)?;
        written.push(spec.path.clone());
    }
    Ok(RecordReport {
        processes_missed: pids
            .iter()
            .filter(|&&pid| processes.get(pid).is_none())
            .count(),
        profile,
        kernel: raw.stats,
        symbolizer: symbolizer.stats(),
        stop,
        command_status,
        written,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_id_means_its_process() {
        let me = std::process::id();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let live = std::thread::spawn(move || {
            tx.send(unsafe { libc::gettid() } as u32).unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert_ne!(tid, me);
        assert_eq!(target_processes(&[tid, me, tid]), vec![me]);
        done_tx.send(()).unwrap();
        live.join().unwrap();
        // A pid with no /proc entry (pid_max is at most 2^22) is kept as given;
        // validation reports it.
        assert_eq!(tgid_of(5_000_000), 5_000_000);
    }
}

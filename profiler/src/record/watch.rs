//! What `record` watches while it records: the targets' exits (pidfds), the
//! kernel's process events (to capture maps while processes live), the live
//! status line, and ending a command the profiler started.

use std::{
    io::Write,
    os::fd::{FromRawFd, OwnedFd, RawFd},
    process::ExitStatus,
    task::Poll,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use profiler_common::{
    EVENT_NEW_PROCESS, EVENT_PYTHON_CODE, EVENT_UNWIND_MISS, ProcessEvent, PythonCodeEvent,
};
use tokio::io::unix::AsyncFd;

use crate::processes::ProcessTable;

pub(super) fn pidfd_open(pid: u32) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags; a non-negative result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the fd, so it stays open while registered.
    unsafe { AsyncFd::register(fd) }.ok()
}

pub(super) async fn all_exited(pidfds: &[AsyncFd<OwnedFd>]) {
    if pidfds.is_empty() {
        return std::future::pending().await;
    }
    for fd in pidfds {
        // A pidfd becomes readable when its process exits, and stays so.
        let _ = fd.readable().await;
    }
}

pub(crate) fn handle_events(ring: &mut RingBuf<MapData>, processes: &mut ProcessTable) {
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<ProcessEvent>() {
            // SAFETY: the kernel side writes exactly a ProcessEvent; read unaligned to be safe.
            let event: ProcessEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            // The kernel announces a process at its first sample (and first
            // since an exec); forks are not announced: capturing every child,
            // most never sampled, and waking up for each, slowed a fork-heavy
            // program by a third. Other kinds, if any, are ignored.
            match event.kind {
                EVENT_NEW_PROCESS => processes.announce(event.tgid),
                EVENT_UNWIND_MISS => processes.unwind_missed(event.tgid),
                EVENT_PYTHON_CODE if item.len() >= size_of::<PythonCodeEvent>() => {
                    // SAFETY: the kernel side writes a PythonCodeEvent for this kind.
                    let event: PythonCodeEvent =
                        unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                    processes.python_code(event.tgid, event.code, event.id);
                }
                _ => {}
            }
        }
    }
}

/// SIGTERM, then SIGKILL if the command has not exited within two seconds.
pub(super) async fn end_command(child: &mut tokio::process::Child) -> Option<ExitStatus> {
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

/// `progress` says what was seen so far, e.g. `120 samples`.
pub(super) fn status_line(start: Instant, progress: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r\x1b[2Krecording: {:.1} s, {progress} (Ctrl-C to stop)",
        start.elapsed().as_secs_f64()
    );
    let _ = err.flush();
}

/// Resolves once any of `fds` is readable, clearing that readiness: the
/// caller then reads every buffer.
pub(super) async fn any_readable(fds: &[AsyncFd<RawFd>]) {
    std::future::poll_fn(|cx| {
        let mut ready = false;
        for fd in fds {
            if let Poll::Ready(Ok(mut guard)) = fd.poll_read_ready(cx) {
                guard.clear_ready();
                ready = true;
            }
        }
        if ready {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

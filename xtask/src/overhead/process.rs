//! Running one process and measuring it: `wait4` for its exit status, CPU time
//! and peak RSS (of it and every descendant it waited for), the monotonic
//! clock the workloads also read, SIGINT to end a recording, and waiting until
//! a tool has its perf events open.

use std::{
    fs,
    process::Child,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// CPU and memory of a process that exited, from `wait4`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub user_s: f64,
    pub sys_s: f64,
    /// The largest peak RSS of the process and its waited-for descendants.
    pub maxrss_kib: u64,
}

impl Usage {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }

    /// Sums the CPU of two processes (a pipeline) and keeps the larger peak.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            user_s: self.user_s + other.user_s,
            sys_s: self.sys_s + other.sys_s,
            maxrss_kib: self.maxrss_kib.max(other.maxrss_kib),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// `wait4`'s raw status.
    pub status: i32,
    pub usage: Usage,
    /// [`now`] right after `wait4` returned.
    pub at: f64,
}

impl Exit {
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    /// Exited with 0, or was ended by SIGINT or exited 130 (what some tools
    /// do on the SIGINT the harness sends to end a recording).
    pub fn success_or_interrupted(&self) -> bool {
        self.success()
            || (libc::WIFSIGNALED(self.status) && libc::WTERMSIG(self.status) == libc::SIGINT)
            || (libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 130)
    }

    pub fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

/// CLOCK_MONOTONIC in seconds: the clock of the workloads' own reports, so
/// their end and a tool's exit can be subtracted.
pub fn now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the local struct.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn seconds(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

/// Waits for `child` with `wait4`, which, unlike `Child::wait`, also returns
/// its resource usage. The `Child` must not be waited for again.
pub fn wait(child: &Child) -> Result<Exit> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child, writing to the locals.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if ret == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("wait4({pid})"));
        }
    }
    Ok(Exit {
        status,
        usage: Usage {
            user_s: seconds(usage.ru_utime),
            sys_s: seconds(usage.ru_stime),
            maxrss_kib: usage.ru_maxrss as u64,
        },
        at: now(),
    })
}

/// Sends SIGINT (Ctrl-C), how a user ends `perf record -a`, bpftrace and
/// `profiler record -a`; returns the time it was sent.
pub fn interrupt(child: &Child) -> Result<f64> {
    let at = now();
    // SAFETY: a signal to our own child, which has not been reaped yet.
    if unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) } != 0 {
        return Err(std::io::Error::last_os_error()).context("kill(SIGINT)");
    }
    Ok(at)
}

/// Kills a child that is being abandoned after an error, and reaps it.
pub fn kill(child: &Child) {
    // SAFETY: as in `interrupt`.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = wait(child);
}

/// Perf events `pid` holds open: `anon_inode:[perf_event]` descriptors
/// (perf, bpftrace), or BPF links to a perf event (aya keeps only the link;
/// tracepoint links say `event_type: tracepoint` instead).
fn perf_events(pid: u32) -> usize {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.flatten()
        .filter(|e| {
            let target = fs::read_link(e.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            target.contains("[perf_event]")
                || (target.contains("bpf_link")
                    && fs::read_to_string(format!(
                        "/proc/{pid}/fdinfo/{}",
                        e.file_name().to_string_lossy()
                    ))
                    .is_ok_and(|info| is_perf_event_link(&info)))
        })
        .count()
}

fn is_perf_event_link(fdinfo: &str) -> bool {
    fdinfo.lines().any(|l| {
        l.strip_prefix("event_type:")
            .is_some_and(|v| v.trim() == "event")
    })
}

/// Waits until `child` has at least `cpus` perf events open (one per CPU: the
/// sampler of a system-wide tool), then `settle` more for it to enable them.
/// Returns the time it was found ready. Fails if the tool exits or takes
/// longer than `timeout`.
pub fn wait_until_sampling(
    child: &mut Child,
    cpus: usize,
    settle: Duration,
    timeout: Duration,
) -> Result<f64> {
    let start = Instant::now();
    loop {
        if perf_events(child.id()) >= cpus {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!("the tool exited before it started sampling ({status})");
        }
        if start.elapsed() > timeout {
            bail!(
                "the tool opened no perf events within {timeout:?} (pid {})",
                child.id()
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    let ready = now();
    thread::sleep(settle);
    Ok(ready)
}

#[cfg(test)]
// The children are reaped by `wait`'s wait4, which clippy cannot see.
#[allow(clippy::zombie_processes)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn wait_reports_status_and_cpu() {
        let child = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exit 3",
            ])
            .spawn()
            .unwrap();
        let before = now();
        let exit = wait(&child).unwrap();
        assert!(!exit.success());
        assert_eq!(exit.describe(), "exit status 3");
        assert!(exit.usage.cpu_s() > 0.0, "{:?}", exit.usage);
        assert!(exit.usage.maxrss_kib > 0);
        assert!(exit.at >= before);
    }

    #[test]
    fn interrupted_counts_as_an_ordinary_end() {
        let child = Command::new("sleep").arg("10").spawn().unwrap();
        interrupt(&child).unwrap();
        let exit = wait(&child).unwrap();
        assert!(!exit.success());
        assert!(exit.success_or_interrupted(), "{}", exit.describe());
    }

    #[test]
    fn tells_perf_event_links_from_tracepoint_links() {
        let event = "link_type:\tperf\nlink_id:\t1644\ntype:\t6\nconfig:\t0\nevent_type:\tevent\n";
        let tracepoint =
            "link_type:\tperf\ntp_name:\tsched_process_fork\nevent_type:\ttracepoint\n";
        assert!(is_perf_event_link(event));
        assert!(!is_perf_event_link(tracepoint));
        assert!(!is_perf_event_link("link_type:\tkprobe_multi\n"));
    }

    #[test]
    fn plus_adds_cpu_and_keeps_the_larger_peak() {
        let a = Usage {
            user_s: 1.0,
            sys_s: 0.5,
            maxrss_kib: 10,
        };
        let b = Usage {
            user_s: 0.25,
            sys_s: 0.25,
            maxrss_kib: 30,
        };
        let sum = a.plus(b);
        assert_eq!((sum.cpu_s(), sum.maxrss_kib), (2.0, 30));
    }
}

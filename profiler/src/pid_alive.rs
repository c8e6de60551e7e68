//! Whether a process still exists, for the loops that drop what is kept for
//! processes that have gone (followed targets, process snapshots).
//!
//! `kill(pid, 0)` sends nothing and answers from the pid table. It replaces
//! `stat("/proc/PID")`, whose path walk was 7% of `record`'s CPU on a
//! fork-heavy command (thousands of exited children checked a second).
//! Both say the same: a zombie exists until it is reaped.

/// Whether the process (thread group) `pid` exists, zombies included.
/// Pid 0 is never a process of ours, and `kill(0, …)` would mean our own
/// process group: it is reported as existing, so that nothing is dropped
/// on its account.
pub fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid == 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists and may be
    // signalled; nothing is sent.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // Only ESRCH says it is gone. EPERM (not ours to signal, without root)
    // and EACCES (SELinux's signull, AppArmor's profile of a container)
    // say nothing about whether it lives: dropping a live target would
    // stop following it.
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_a_zombie_and_a_reaped_one() {
        assert!(process_exists(std::process::id()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("running true");
        let pid = child.id();
        // Exited, not yet reaped: a zombie, which still exists.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let state = stat.rsplit(')').next().unwrap().split_whitespace().next();
            if state == Some("Z") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "`true` never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(process_exists(pid), "a zombie exists until reaped");
        child.wait().unwrap();
        assert!(!process_exists(pid), "a reaped process is gone");
        assert!(!process_exists(u32::MAX), "not a pid");
    }
}

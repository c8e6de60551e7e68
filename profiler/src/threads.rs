//! The threads of a process (or of every process), read from `/proc`, with
//! the scheduler state of each: off-CPU profiling starts by counting the
//! threads that are already off CPU, whose switch-out it never saw.

use std::fs;

/// One thread, as `/proc/PID/task/TID` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    /// The state letter of `/proc/PID/task/TID/stat`: `R` running or
    /// runnable, `S` asleep, `D` in uninterruptible sleep, ...
    pub state: char,
}

impl ThreadInfo {
    /// Whether the thread may be on a CPU right now (`R`). Anything else is
    /// asleep; `X`/`Z` (exiting) never run again.
    pub fn is_runnable(&self) -> bool {
        self.state == 'R'
    }

    pub fn is_exiting(&self) -> bool {
        matches!(self.state, 'X' | 'x' | 'Z')
    }
}

/// The state letter of a `stat` line: the field after the command name,
/// which is in parentheses and may itself hold spaces and parentheses.
pub fn parse_stat_state(stat: &str) -> Option<char> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// The threads of process `tgid`; empty when it has exited.
pub fn threads_of(tgid: u32) -> Vec<ThreadInfo> {
    let Ok(dir) = fs::read_dir(format!("/proc/{tgid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let tid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let base = format!("/proc/{tgid}/task/{tid}");
        let state = parse_stat_state(&fs::read_to_string(format!("{base}/stat")).ok()?)?;
        let comm = fs::read_to_string(format!("{base}/comm")).unwrap_or_default();
        Some(ThreadInfo {
            tgid,
            tid,
            comm: comm.trim_end_matches('\n').to_string(),
            state,
        })
    })
    .collect()
}

/// Every process's tgid.
pub fn all_processes() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_follows_the_last_parenthesis() {
        assert_eq!(parse_stat_state("42 (sleepy) S 1 42 42 0"), Some('S'));
        assert_eq!(parse_stat_state("42 (a) (b) R 1 42"), Some('R'));
        assert_eq!(parse_stat_state("42 (no close"), None);
    }

    #[test]
    fn reads_this_process_threads() {
        let me = std::process::id();
        let threads = threads_of(me);
        let main = threads.iter().find(|t| t.tid == me).expect("main thread");
        assert_eq!(main.tgid, me);
        assert!(!main.comm.is_empty());
        assert!(all_processes().contains(&me));
        assert!(threads_of(u32::MAX).is_empty());
    }
}

//! Checks made before any sampling starts, so that a bad flag never costs a
//! recording: frequency, outputs, pids, the command.

use std::path::{Path, PathBuf};

use super::{RecordConfig, RecordError, RecordTarget};
use crate::{output, tracer::max_sample_rate};

pub(super) fn validate(config: &RecordConfig) -> Result<(), RecordError> {
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
    output::check_destinations(&config.outputs)?;
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
pub(super) fn target_processes(pids: &[u32]) -> Vec<u32> {
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

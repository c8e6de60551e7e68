//! What the figures were measured on: CPU, kernel, memory, the perf sampling
//! limits, the tools' versions and the profiler's commit, saved with every
//! result so that runs can be compared.

use std::{collections::BTreeMap, fs, path::Path, process::Command};

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub kernel: String,
    pub memory_mib: u64,
    /// `systemd-detect-virt --vm` and `--container`.
    pub virtualization: String,
    pub perf_event_max_sample_rate: String,
    pub perf_event_paranoid: String,
    pub versions: BTreeMap<String, String>,
    /// `git describe --always --dirty` of the workspace.
    pub workspace_commit: String,
    /// Uncommitted changes under the profiler's source directories.
    pub profiler_sources_dirty: bool,
}

fn read(path: &str) -> String {
    fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The first line of a command's output (stdout, else stderr).
fn first_line(program: &Path, args: &[&str]) -> String {
    let Ok(out) = Command::new(program).args(args).output() else {
        return "not found".into();
    };
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// inferno's binaries have no `--version`: ask cargo what it installed.
fn inferno_version() -> String {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["install", "--list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .find(|l| l.starts_with("inferno "))
        .map_or("unknown".into(), |l| l.trim_end_matches(':').to_string())
}

pub fn sample_rate() -> String {
    read("/proc/sys/kernel/perf_event_max_sample_rate")
}

pub fn describe(workspace: &Path, tools: &[(&str, &Path)], cpus: usize) -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_string());
    let memory_mib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let virtualization = format!(
        "vm: {}, container: {}",
        first_line(Path::new("systemd-detect-virt"), &["--vm"]),
        first_line(Path::new("systemd-detect-virt"), &["--container"])
    );
    let versions = tools
        .iter()
        .map(|(name, path)| (name.to_string(), first_line(path, &["--version"])))
        .chain([
            (
                "clang".to_string(),
                first_line(Path::new("clang"), &["--version"]),
            ),
            ("inferno".to_string(), inferno_version()),
        ])
        .collect();
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    Machine {
        cpu_model,
        cpus,
        kernel: read("/proc/sys/kernel/osrelease"),
        memory_mib,
        virtualization,
        perf_event_max_sample_rate: sample_rate(),
        perf_event_paranoid: read("/proc/sys/kernel/perf_event_paranoid"),
        versions,
        workspace_commit: git(&["describe", "--always", "--dirty"]),
        profiler_sources_dirty: !git(&[
            "status",
            "--porcelain",
            "--",
            "profiler",
            "profiler-ebpf",
            "profiler-common",
            "symbolizer",
        ])
        .is_empty(),
    }
}

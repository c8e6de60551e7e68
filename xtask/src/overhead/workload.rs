//! The fixed-work C workloads of `benches/overhead-workloads/`: building them
//! (with frame pointers, but one without), the command line of one run, and
//! calibrating the amount of work so that a run alone takes about the
//! requested time.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{parse, process};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// One thread per core down 40-deep stacks: fixed multiply-add work.
    Cpu,
    /// One thread per core reading /dev/zero and writing /dev/null, 4 KiB each.
    Syscall,
    /// One lane per core forking and exec'ing 1 ms children one after another.
    Fork,
    /// One thread per core down ~20-frame stacks, built without frame
    /// pointers (issue 22): stacks only unwind with the unwind tables.
    CpuNofp,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Cpu,
        Workload::Syscall,
        Workload::Fork,
        Workload::CpuNofp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Cpu => "cpu",
            Workload::Syscall => "syscall",
            Workload::Fork => "fork",
            Workload::CpuNofp => "cpu-nofp",
        }
    }

    pub fn parse(name: &str) -> Result<Workload> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .with_context(|| format!("unknown workload {name:?}: cpu, syscall, fork or cpu-nofp"))
    }

    fn source(self) -> &'static str {
        match self {
            Workload::Cpu => "cpu_fixed.c",
            Workload::Syscall => "syscall_fixed.c",
            Workload::Fork => "fork_fixed.c",
            Workload::CpuNofp => "cpu_nofp.c",
        }
    }

    /// The binary's name, and so its processes' comm: the root frame of its
    /// stacks in folded output, by which its samples are told from others'.
    pub fn comm(self) -> &'static str {
        match self {
            Workload::Cpu => "ovh_cpu",
            Workload::Syscall => "ovh_syscall",
            Workload::Fork => "ovh_fork",
            Workload::CpuNofp => "ovh_cpu_nofp",
        }
    }

    /// Work units of a probe run in calibration (a few tens of milliseconds).
    fn probe_units(self) -> u64 {
        match self {
            Workload::Cpu => 1000,
            Workload::Syscall => 20_000,
            Workload::Fork => 20,
            Workload::CpuNofp => 2000,
        }
    }

    /// How the workload is compiled besides `-O2 -g -pthread`: frame pointers
    /// in every function (leaves too) and no sibling calls, so that every tool
    /// can unwind full stacks with frame pointers, as the integration tests
    /// build theirs; or, for `cpu-nofp`, no frame pointers (clang's and gcc's
    /// default at -O2 on x86-64; the flag makes it explicit), as most
    /// distributions' binaries are built. Its source needs no
    /// `-fno-optimize-sibling-calls`: every function works after its call.
    fn cflags(self) -> &'static [&'static str] {
        match self {
            Workload::CpuNofp => &["-fomit-frame-pointer"],
            _ => &[
                "-fno-omit-frame-pointer",
                "-mno-omit-leaf-frame-pointer",
                "-fno-optimize-sibling-calls",
            ],
        }
    }

    /// A frame every full stack of the workload's samples holds (its
    /// threads' start routine): the share of samples whose stack reaches it
    /// tells full stacks from cut ones. Only for the workload built without
    /// frame pointers, where tools unwind differently.
    pub fn full_stack_frame(self) -> Option<&'static str> {
        match self {
            Workload::CpuNofp => Some("worker"),
            _ => None,
        }
    }
}

/// Where the workloads' sources are: `benches/overhead-workloads/`.
pub fn source_dir(workspace: &Path) -> PathBuf {
    workspace.join("benches/overhead-workloads")
}

/// Compiles every workload into `bin_dir` with clang -O2 and its
/// [`Workload::cflags`].
pub fn build_all(workspace: &Path, bin_dir: &Path) -> Result<()> {
    fs::create_dir_all(bin_dir)?;
    let src = source_dir(workspace);
    for workload in Workload::ALL {
        let out = bin_dir.join(workload.comm());
        let status = Command::new("clang")
            .args(["-O2", "-g"])
            .args(workload.cflags())
            .args(["-pthread", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(src.join(workload.source()))
            .status()
            .context("running clang (apt-get install clang)")?;
        if !status.success() {
            bail!("clang failed to build {} ({status})", workload.source());
        }
    }
    Ok(())
}

/// One run's command line: `BIN REPORT UNITS PARALLEL`.
#[derive(Clone, Debug, Serialize)]
pub struct Job {
    pub workload: Workload,
    #[serde(skip)]
    pub bin: PathBuf,
    /// Iterations per thread, or children per lane.
    pub units: u64,
    /// Threads or lanes: one per CPU.
    pub parallel: usize,
}

impl Job {
    pub fn argv(&self, report: &Path) -> Vec<String> {
        vec![
            self.bin.display().to_string(),
            report.display().to_string(),
            self.units.to_string(),
            self.parallel.to_string(),
        ]
    }
}

/// Reads and removes the report a run left in `path`.
pub fn take_report(path: &Path) -> Result<parse::WorkloadReport> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("the workload wrote no report to {}", path.display()))?;
    fs::remove_file(path)?;
    parse::workload_report(&text)
}

/// Runs `job` alone once and returns its own report and the exit measured by
/// the harness.
pub fn run_alone(job: &Job, report: &Path) -> Result<(parse::WorkloadReport, process::Exit)> {
    let _ = fs::remove_file(report);
    let argv = job.argv(report);
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", argv[0]))?;
    let exit = process::wait(&child)?;
    if !exit.success() {
        bail!("{:?} failed ({})", argv, exit.describe());
    }
    Ok((take_report(report)?, exit))
}

/// Work units so that `job` alone takes about `seconds`: doubles a probe
/// until it runs for at least a quarter of a second, then scales linearly
/// (the work is a loop of identical steps). Done once per harness run, so
/// every round and tool then runs exactly the same work.
pub fn calibrate(mut job: Job, seconds: f64, report: &Path) -> Result<Job> {
    job.units = job.workload.probe_units();
    loop {
        let (r, _) = run_alone(&job, report)?;
        let wall = r.wall_s();
        if wall >= 0.25 || job.units > 1 << 40 {
            job.units = units_for(job.units, wall, seconds);
            return Ok(job);
        }
        job.units *= 2;
    }
}

/// Linear scaling of a probe of `units` that took `wall` seconds.
fn units_for(units: u64, wall: f64, seconds: f64) -> u64 {
    ((units as f64 * seconds / wall.max(1e-6)).round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_units_linearly() {
        assert_eq!(units_for(1000, 0.5, 3.0), 6000);
        assert_eq!(units_for(1000, 0.0, 3.0), 3_000_000_000);
        assert_eq!(units_for(1, 10.0, 0.1), 1);
    }

    #[test]
    fn names_round_trip_and_argv_has_the_report() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()).unwrap(), w);
            assert!(w.comm().len() <= 15, "comm is cut at 15 bytes");
        }
        assert!(Workload::parse("io").is_err());
        let job = Job {
            workload: Workload::Cpu,
            bin: "/b/ovh_cpu".into(),
            units: 7,
            parallel: 2,
        };
        assert_eq!(job.argv(Path::new("/r")), ["/b/ovh_cpu", "/r", "7", "2"]);
    }

    #[test]
    fn every_workload_has_its_source() {
        let dir = source_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap());
        for w in Workload::ALL {
            assert!(dir.join(w.source()).is_file(), "{}", w.source());
        }
    }
}

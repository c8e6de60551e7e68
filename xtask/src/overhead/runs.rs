//! One measured run: the workload alone, or under one tool. Each run records
//! the workload's own wall and CPU time, and for a tool its CPU and peak RSS
//! (recording and post-processing apart), the samples it kept, and the time
//! from the end of recording to the flame graph (or bpftrace's map) on disk.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{
    parse,
    process::{self, Usage},
    setup::Setup,
    workload::{self, Job, Workload},
};

/// The programs the runs start.
#[derive(Clone, Debug, Serialize)]
pub struct Tools {
    pub profiler: PathBuf,
    pub perf: PathBuf,
    pub bpftrace: PathBuf,
    pub collapse_perf: PathBuf,
    pub flamegraph: PathBuf,
}

pub struct Harness {
    pub tools: Tools,
    /// Scratch files of the current run (outputs, reports, tool logs).
    pub work: PathBuf,
    pub cpus: usize,
    /// How long a system-wide tool is left sampling before the workload starts.
    pub settle: Duration,
    /// Empty the profiler's frame cache before each of its runs.
    pub cold_frame_cache: bool,
}

/// The profiler's names of addresses by build ID, kept between recordings
/// (symbolizer's `frame_cache`).
const FRAME_CACHE_DIR: &str = "/run/profiler/frames";

#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub workload: Workload,
    pub hz: u32,
    pub round: u32,
    pub setup: Setup,
    /// The workload's own wall time (from `main` to its end).
    pub wall_s: f64,
    /// The workload's user+sys CPU time, children included.
    pub workload_cpu_s: f64,
    /// 1-minute load average just before the run (the machine is shared).
    pub loadavg_before: f64,
    pub tool: Option<ToolRun>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ToolRun {
    /// CPU of the recording process (for `-- CMD`, minus the workload's).
    pub record_cpu_s: f64,
    pub record_maxrss_kib: u64,
    /// CPU of what turns the recording into a flame graph afterwards (perf's
    /// pipeline; 0 for the profiler and bpftrace, which do it in process).
    pub post_cpu_s: f64,
    pub post_maxrss_kib: u64,
    /// From the end of recording (the workload's exit, or SIGINT) to the
    /// flame graph on disk (bpftrace: its map printed).
    pub stop_to_output_s: f64,
    /// How long the tool sampled.
    pub window_s: f64,
    /// Every sample the tool recorded (for CPU per sample).
    pub samples_total: u64,
    /// Samples of the workload's processes, when they can be told apart.
    pub samples_workload: Option<u64>,
    /// `hz` × the workload's CPU seconds: a sample per period of CPU time.
    pub expected_workload: f64,
    /// `hz` × the sampling window × CPUs (system-wide tools that sample idle CPUs too).
    pub expected_all_cpus: f64,
    /// Losses the profiler's summary lists, `(count, cause)`.
    pub losses: Vec<(u64, String)>,
    /// Size of the flame graph (or bpftrace's output).
    pub output_bytes: u64,
    /// The share of the workload's samples, in percent, whose stack reaches
    /// [`Workload::full_stack_frame`] (workloads that have one; not bpftrace).
    pub full_stacks_pct: Option<f64>,
}

fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

impl Harness {
    fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// Starts a tool with its stdout and stderr in files of the work dir.
    fn spawn_tool(&self, argv: &[String], name: &str) -> Result<Child> {
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(File::create(self.path(&format!("{name}.stdout")))?)
            .stderr(File::create(self.path(&format!("{name}.stderr")))?)
            .spawn()
            .with_context(|| format!("starting {}", argv[0]))
    }

    fn tool_log(&self, name: &str, stream: &str) -> String {
        fs::read_to_string(self.path(&format!("{name}.{stream}"))).unwrap_or_default()
    }

    /// The last lines of a tool's stderr, for error messages.
    fn tool_error(&self, name: &str) -> String {
        let err = self.tool_log(name, "stderr");
        let lines: Vec<&str> = err.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Removes the previous run's outputs so that a stale file is never read.
    fn clean(&self) -> Result<()> {
        if self.work.exists() {
            fs::remove_dir_all(&self.work)?;
        }
        fs::create_dir_all(&self.work)?;
        Ok(())
    }

    pub fn run(&self, setup: Setup, job: &Job, hz: u32, round: u32) -> Result<Run> {
        self.clean()?;
        if self.cold_frame_cache && matches!(setup, Setup::Profiler | Setup::ProfilerAll) {
            match fs::remove_dir_all(FRAME_CACHE_DIR) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("emptying {FRAME_CACHE_DIR}"));
                }
                _ => {}
            }
        }
        let loadavg_before = loadavg();
        let report_path = self.path("workload.report");
        let (report, tool) = if setup == Setup::Alone {
            (workload::run_alone(job, &report_path)?.0, None)
        } else if setup.system_wide() {
            let (report, tool) = self.run_system_tool(setup, job, hz, &report_path)?;
            (report, Some(tool))
        } else {
            let (report, tool) = self.run_command_tool(setup, job, hz, &report_path)?;
            (report, Some(tool))
        };
        Ok(Run {
            workload: job.workload,
            hz,
            round,
            setup,
            wall_s: report.wall_s(),
            workload_cpu_s: report.cpu_s(),
            loadavg_before,
            tool,
        })
    }

    /// The tool starts the workload (`-- CMD`) and ends when it exits: it
    /// profiles the workload's processes only, from their first instruction.
    fn run_command_tool(
        &self,
        setup: Setup,
        job: &Job,
        hz: u32,
        report_path: &Path,
    ) -> Result<(parse::WorkloadReport, ToolRun)> {
        let hz_arg = hz.to_string();
        let mut argv: Vec<String> = match setup {
            Setup::Profiler => vec![
                self.tools.profiler.display().to_string(),
                "record".into(),
                "-F".into(),
                hz_arg,
                "--no-status".into(),
                "-o".into(),
                self.path("profiler.svg").display().to_string(),
            ],
            Setup::Perf | Setup::PerfDwarf => vec![
                self.tools.perf.display().to_string(),
                "record".into(),
                "-F".into(),
                hz_arg,
                if setup == Setup::Perf {
                    "-g"
                } else {
                    "--call-graph=dwarf"
                }
                .into(),
                "-o".into(),
                self.path("perf.data").display().to_string(),
            ],
            _ => unreachable!("not a -- CMD setup"),
        };
        if setup == Setup::Profiler && job.workload.full_stack_frame().is_some() {
            // Folded too, to count the full stacks (only on the workloads
            // that have a frame to look for: it adds a little to end → SVG).
            argv.push("-o".into());
            argv.push(self.path("profiler.folded").display().to_string());
        }
        argv.push("--".into());
        argv.extend(job.argv(report_path));
        let name = setup.key();
        let child = self.spawn_tool(&argv, name)?;
        let exit = process::wait(&child)?;
        if !exit.success() {
            bail!(
                "{} failed ({}):\n{}",
                argv.join(" "),
                exit.describe(),
                self.tool_error(name)
            );
        }
        let report = workload::take_report(report_path)?;
        let mut tool = ToolRun {
            // The workload is the tool's child: its CPU is in the tool's rusage.
            record_cpu_s: (exit.usage.cpu_s() - report.cpu_s()).max(0.0),
            record_maxrss_kib: exit.usage.maxrss_kib,
            window_s: report.wall_s(),
            expected_workload: hz as f64 * report.cpu_s(),
            ..ToolRun::default()
        };
        let end = report.end_s;
        match setup {
            Setup::Profiler => {
                let summary = parse::profiler_summary(&self.tool_log(name, "stderr"))?;
                tool.stop_to_output_s = exit.at - end;
                tool.samples_total = summary.taken;
                // Every sample in the profile is of the workload's processes.
                tool.samples_workload = Some(summary.counted);
                tool.losses = summary.lost;
                tool.output_bytes = file_size(&self.path("profiler.svg"))?;
                tool.full_stacks_pct = self.full_stacks("profiler.folded", job.workload)?;
            }
            Setup::Perf | Setup::PerfDwarf => {
                let (usage, done) = self.perf_pipeline()?;
                let (total, _) = self.perf_counts(job.workload)?;
                tool.post_cpu_s = usage.cpu_s();
                tool.post_maxrss_kib = usage.maxrss_kib;
                tool.stop_to_output_s = done - end;
                tool.samples_total = total;
                tool.samples_workload = Some(total);
                tool.output_bytes = file_size(&self.path("perf.svg")).unwrap_or(0);
                tool.full_stacks_pct = self.full_stacks("perf.folded", job.workload)?;
            }
            _ => unreachable!(),
        }
        Ok((report, tool))
    }

    /// The tool samples the whole system: started first, the workload run
    /// once it samples, then SIGINT.
    fn run_system_tool(
        &self,
        setup: Setup,
        job: &Job,
        hz: u32,
        report_path: &Path,
    ) -> Result<(parse::WorkloadReport, ToolRun)> {
        let hz_arg = hz.to_string();
        let argv: Vec<String> = match setup {
            Setup::ProfilerAll => vec![
                self.tools.profiler.display().to_string(),
                "record".into(),
                "-a".into(),
                "-F".into(),
                hz_arg,
                "--no-status".into(),
                "-o".into(),
                self.path("profiler.svg").display().to_string(),
                // Folded too: its root frames tell the workload's samples from the rest.
                "-o".into(),
                self.path("profiler.folded").display().to_string(),
            ],
            Setup::PerfAll => vec![
                self.tools.perf.display().to_string(),
                "record".into(),
                "-a".into(),
                "-F".into(),
                hz_arg,
                "-g".into(),
                "-o".into(),
                self.path("perf.data").display().to_string(),
            ],
            Setup::Bpftrace => vec![
                self.tools.bpftrace.display().to_string(),
                "-e".into(),
                format!("profile:hz:{hz} {{ @[ustack, kstack] = count(); }}"),
            ],
            _ => unreachable!("not a system-wide setup"),
        };
        let name = setup.key();
        let mut child = self.spawn_tool(&argv, name)?;
        let measured = (|| {
            let ready = process::wait_until_sampling(
                &mut child,
                self.cpus,
                self.settle,
                Duration::from_secs(20),
            )?;
            let (report, _) = workload::run_alone(job, report_path)?;
            let stop = process::interrupt(&child)?;
            Ok::<_, anyhow::Error>((ready, report, stop))
        })();
        let (ready, report, stop) = match measured {
            Ok(m) => m,
            Err(err) => {
                process::kill(&child);
                return Err(err.context(format!("{}:\n{}", argv[0], self.tool_error(name))));
            }
        };
        let exit = process::wait(&child)?;
        if !exit.success_or_interrupted() {
            bail!(
                "{} failed ({}):\n{}",
                argv.join(" "),
                exit.describe(),
                self.tool_error(name)
            );
        }
        let window = stop - ready;
        let mut tool = ToolRun {
            record_cpu_s: exit.usage.cpu_s(),
            record_maxrss_kib: exit.usage.maxrss_kib,
            window_s: window,
            expected_workload: hz as f64 * report.cpu_s(),
            expected_all_cpus: hz as f64 * window * self.cpus as f64,
            ..ToolRun::default()
        };
        match setup {
            Setup::ProfilerAll => {
                let summary = parse::profiler_summary(&self.tool_log(name, "stderr"))?;
                let folded = fs::read_to_string(self.path("profiler.folded"))?;
                let (_, mine) = parse::folded_counts(&folded, job.workload.comm())?;
                tool.stop_to_output_s = exit.at - stop;
                tool.samples_total = summary.taken;
                tool.samples_workload = Some(mine);
                tool.losses = summary.lost;
                tool.output_bytes = file_size(&self.path("profiler.svg"))?;
                tool.full_stacks_pct = self.full_stacks("profiler.folded", job.workload)?;
            }
            Setup::PerfAll => {
                let (usage, done) = self.perf_pipeline()?;
                let (total, mine) = self.perf_counts(job.workload)?;
                tool.post_cpu_s = usage.cpu_s();
                tool.post_maxrss_kib = usage.maxrss_kib;
                tool.stop_to_output_s = done - stop;
                tool.samples_total = total;
                tool.samples_workload = Some(mine);
                tool.output_bytes = file_size(&self.path("perf.svg")).unwrap_or(0);
                tool.full_stacks_pct = self.full_stacks("perf.folded", job.workload)?;
            }
            Setup::Bpftrace => {
                let out = self.tool_log(name, "stdout");
                tool.stop_to_output_s = exit.at - stop;
                // Its map has no comm: only the total can be compared, with
                // every CPU's samples (bpftrace samples idle CPUs too).
                tool.samples_total = parse::bpftrace_total(&out);
                tool.output_bytes = out.len() as u64;
            }
            _ => unreachable!(),
        }
        Ok((report, tool))
    }

    /// `perf script | inferno-collapse-perf > perf.folded`, then
    /// `inferno-flamegraph perf.folded > perf.svg`: returns the pipeline's
    /// CPU and peak RSS and when the SVG was complete. (flamegraph reads all
    /// its input before drawing, so running it after the pipe costs nothing.)
    fn perf_pipeline(&self) -> Result<(Usage, f64)> {
        let data = self.path("perf.data");
        let mut script = Command::new(&self.tools.perf)
            .arg("script")
            .arg("-i")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(self.path("perf-script.stderr"))?)
            .spawn()
            .context("starting perf script")?;
        let pipe = script.stdout.take().expect("piped");
        let collapse = Command::new(&self.tools.collapse_perf)
            .stdin(Stdio::from(pipe))
            .stdout(File::create(self.path("perf.folded"))?)
            .spawn();
        let collapse = match collapse {
            Ok(c) => c,
            Err(err) => {
                process::kill(&script);
                return Err(err).context("starting inferno-collapse-perf");
            }
        };
        let script_exit = process::wait(&script)?;
        let collapse_exit = process::wait(&collapse)?;
        if !script_exit.success() || !collapse_exit.success() {
            bail!(
                "perf script ({}) | inferno-collapse-perf ({}) failed:\n{}",
                script_exit.describe(),
                collapse_exit.describe(),
                fs::read_to_string(self.path("perf-script.stderr")).unwrap_or_default()
            );
        }
        // No samples at all (perf follows short-lived children poorly): no
        // flame graph to draw, and inferno-flamegraph fails on empty input.
        if fs::metadata(self.path("perf.folded"))?.len() == 0 {
            let usage = script_exit.usage.plus(collapse_exit.usage);
            return Ok((usage, collapse_exit.at));
        }
        let flame = Command::new(&self.tools.flamegraph)
            .arg(self.path("perf.folded"))
            .stdout(File::create(self.path("perf.svg"))?)
            .spawn()
            .context("starting inferno-flamegraph")?;
        let flame_exit = process::wait(&flame)?;
        if !flame_exit.success() {
            bail!("inferno-flamegraph failed ({})", flame_exit.describe());
        }
        let usage = script_exit
            .usage
            .plus(collapse_exit.usage)
            .plus(flame_exit.usage);
        Ok((usage, flame_exit.at))
    }

    /// The share of the workload's samples in the folded file `name` whose
    /// stack reaches the workload's [`Workload::full_stack_frame`], in percent.
    fn full_stacks(&self, name: &str, workload: Workload) -> Result<Option<f64>> {
        let Some(frame) = workload.full_stack_frame() else {
            return Ok(None);
        };
        let folded = fs::read_to_string(self.path(name)).unwrap_or_default();
        parse::reaching_share(&folded, workload.comm(), frame)
    }

    /// All samples in perf.data, and the workload's: `perf script -F comm`,
    /// run after the timed pipeline.
    fn perf_counts(&self, workload: Workload) -> Result<(u64, u64)> {
        let out = Command::new(&self.tools.perf)
            .args(["script", "-F", "comm", "-i"])
            .arg(self.path("perf.data"))
            .stderr(Stdio::null())
            .output()
            .context("running perf script -F comm")?;
        if !out.status.success() {
            bail!("perf script -F comm failed ({})", out.status);
        }
        Ok(parse::perf_comm_counts(
            &String::from_utf8_lossy(&out.stdout),
            workload.comm(),
        ))
    }
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("{} was not written", path.display()))?
        .len())
}

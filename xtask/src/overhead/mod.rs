//! `cargo xtask bench-overhead`: what the profiler costs the program it
//! watches, side by side with `perf record -g`, `perf record --call-graph
//! dwarf` and bpftrace, on the same machine in one run. Builds fixed-work C
//! workloads (CPU-bound with deep stacks and a thread per core, the same
//! without frame pointers, system-call-heavy, fork-heavy), calibrates
//! them once, then for each workload and frequency runs every setup in turn,
//! round after round (alone first, then the tools in an order that turns by
//! one place each round), and reports slowdown, tool CPU per 1000 samples, peak RSS,
//! samples captured against expected, and end of recording to flame graph;
//! writes JSON, an SVG chart and a Markdown table under
//! `<target dir>/bench-overhead/`.

mod build;
mod chart;
mod install;
mod machine;
mod output;
mod parse;
mod process;
mod runs;
mod setup;
mod stats;
mod summary;
mod table;
mod workload;

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};

use crate::{ebpf::workspace_root, tools};
use runs::{Harness, Run, Tools};
use setup::Setup;
use workload::{Job, Workload};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Rounds of every setup (default 5; 1 with --quick).
    #[arg(long)]
    rounds: Option<u32>,
    /// A smoke run: one round of 1-second workloads.
    #[arg(long)]
    quick: bool,
    /// How long each workload runs alone; its work is calibrated to this
    /// once, then fixed (default 3; 1 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Sampling frequencies, Hz.
    #[arg(long, value_delimiter = ',', default_value = "99,999")]
    freqs: Vec<u32>,
    /// Workloads: cpu, syscall, fork, cpu-nofp (built without frame pointers).
    #[arg(long, default_value = "cpu,syscall,fork")]
    workloads: String,
    /// Setups besides `alone` (always run): profiler, profiler-a, perf, perf-a,
    /// perf-dwarf (`perf record --call-graph dwarf`), bpftrace.
    #[arg(
        long,
        default_value = "profiler,profiler-a,perf,perf-a,perf-dwarf,bpftrace"
    )]
    setups: String,
    /// Measure this profiler binary instead of building the workspace's.
    #[arg(long)]
    profiler_bin: Option<PathBuf>,
    /// Fail rather than install missing tools.
    #[arg(long)]
    no_install: bool,
    /// How long a system-wide tool samples before the workload starts, ms.
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
    /// Names the output files (overhead-LABEL.json/svg/md), e.g. before/after.
    #[arg(long, default_value = "latest")]
    label: String,
    /// Output directory (default: <cargo target dir>/bench-overhead).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Remove the profiler's frame cache (/run/profiler/frames) before each
    /// of its runs: a recording of binaries not symbolized before. Without
    /// it, every run but the first finds the names of call sites seen before.
    #[arg(long)]
    cold_frame_cache: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if !tools::is_root() {
        bail!("bench-overhead loads eBPF programs and runs perf system-wide: run it as root");
    }
    if args.label.contains('/') || args.label.is_empty() {
        bail!("--label must be a plain file-name part");
    }
    let workloads = args
        .workloads
        .split(',')
        .map(|w| Workload::parse(w.trim()))
        .collect::<Result<Vec<_>>>()?;
    let setups = Setup::parse_list(&args.setups)?;
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 5 });
    let seconds = args.seconds.unwrap_or(if args.quick { 1.0 } else { 3.0 });
    let seconds_valid = seconds.is_finite() && seconds > 0.0;
    if rounds == 0 || args.freqs.is_empty() || !seconds_valid {
        bail!("--rounds, --freqs and --seconds must be positive");
    }

    install::ensure(!args.no_install)?;
    let workspace = workspace_root();
    let profiler = build::profiler(&workspace, args.profiler_bin.as_deref())?;
    let out_dir = match &args.out_dir {
        Some(dir) => dir.clone(),
        None => build::target_dir(&workspace)?.join("bench-overhead"),
    };
    let tools = Tools {
        profiler,
        perf: install::which("perf").context("perf is not on PATH")?,
        bpftrace: install::which("bpftrace").context("bpftrace is not on PATH")?,
        collapse_perf: install::cargo_bin(install::INFERNO[0]).context("no inferno")?,
        flamegraph: install::cargo_bin(install::INFERNO[1]).context("no inferno")?,
    };
    let cpus = std::thread::available_parallelism()?.get();
    let machine = machine::describe(
        &workspace,
        &[
            ("profiler", &tools.profiler),
            ("perf", &tools.perf),
            ("bpftrace", &tools.bpftrace),
        ],
        cpus,
    );
    let bin_dir = out_dir.join("bin");
    workload::build_all(&workspace, &bin_dir)?;
    let ctx = Harness {
        tools,
        work: out_dir.join("work"),
        cpus,
        settle: Duration::from_millis(args.settle_ms),
        cold_frame_cache: args.cold_frame_cache,
    };
    std::fs::create_dir_all(&ctx.work)?;

    let jobs = calibrate(&workloads, &bin_dir, cpus, seconds, &ctx.work)?;
    let total = jobs.len() * args.freqs.len() * rounds as usize * setups.len();
    eprintln!(
        "bench-overhead: {total} runs ({} workloads x {:?} Hz x {rounds} rounds x {} setups)",
        jobs.len(),
        args.freqs,
        setups.len()
    );
    let mut all: Vec<Run> = Vec::new();
    let mut failures = Vec::new();
    let mut done = 0;
    for job in &jobs {
        for &hz in &args.freqs {
            for round in 0..rounds {
                for setup in setup::round_order(&setups, round) {
                    done += 1;
                    let what = format!(
                        "{} {hz} Hz round {}/{rounds} {}",
                        job.workload.name(),
                        round + 1,
                        setup.label()
                    );
                    match ctx.run(setup, job, hz, round) {
                        Ok(run) => {
                            eprintln!("[{done}/{total}] {what}: {}", progress(&run, &all));
                            all.push(run);
                        }
                        Err(err) => {
                            eprintln!("[{done}/{total}] {what}: FAILED: {err:#}");
                            failures.push(format!("{what}: {err:#}"));
                        }
                    }
                }
            }
        }
    }

    let rows = summary::rows(&all);
    let verdicts = summary::verdicts(&rows);
    let marginals = summary::marginals(&all);
    let command = format!(
        "cargo xtask bench-overhead {}",
        std::env::args().skip(2).collect::<Vec<_>>().join(" ")
    );
    let doc = output::Document {
        label: &args.label,
        command: command.trim_end().to_string(),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        machine: &machine,
        perf_event_max_sample_rate_after: machine::sample_rate(),
        rounds,
        frequencies_hz: &args.freqs,
        jobs: &jobs,
        tools: &ctx.tools,
        rows: &rows,
        marginals: &marginals,
        verdicts: &verdicts,
        runs: &all,
        failures: &failures,
    };
    println!("{}", output::markdown(&doc));
    for path in output::write(&out_dir, &doc)? {
        println!("Wrote {}", path.display());
    }
    if !failures.is_empty() {
        bail!("{} runs failed (listed above)", failures.len());
    }
    Ok(())
}

/// Calibrates every workload to `seconds` alone, with one thread or lane per CPU.
fn calibrate(
    workloads: &[Workload],
    bin_dir: &Path,
    cpus: usize,
    seconds: f64,
    work: &Path,
) -> Result<Vec<Job>> {
    workloads
        .iter()
        .map(|&w| {
            let job = Job {
                workload: w,
                bin: bin_dir.join(w.comm()),
                units: 0,
                parallel: cpus,
            };
            let job = workload::calibrate(job, seconds, &work.join("calibrate.report"))?;
            eprintln!(
                "bench-overhead: {} workload: {} units x {} for ~{seconds} s",
                w.name(),
                job.units,
                job.parallel
            );
            Ok(job)
        })
        .collect()
}

/// One line about a finished run, with its slowdown against this round's run alone.
fn progress(run: &Run, before: &[Run]) -> String {
    let alone = before.iter().rev().find(|r| {
        (r.workload, r.hz, r.round, r.setup) == (run.workload, run.hz, run.round, Setup::Alone)
    });
    let mut line = format!(
        "wall {:.3} s, cpu {:.3} s, load {:.2}",
        run.wall_s, run.workload_cpu_s, run.loadavg_before
    );
    if let (Some(alone), true) = (alone, run.setup != Setup::Alone) {
        line += &format!(" ({:+.1}%)", (run.wall_s / alone.wall_s - 1.0) * 100.0);
    }
    if let Some(t) = &run.tool {
        line += &format!(
            "; tool cpu {:.3}+{:.3} s, rss {} MiB, samples {} (workload {}) / expected {:.0}, end->output {:.3} s",
            t.record_cpu_s,
            t.post_cpu_s,
            t.record_maxrss_kib / 1024,
            t.samples_total,
            t.samples_workload.map_or("-".into(), |n| n.to_string()),
            if t.samples_workload.is_some() {
                t.expected_workload
            } else {
                t.expected_all_cpus
            },
            t.stop_to_output_s
        );
    }
    line
}

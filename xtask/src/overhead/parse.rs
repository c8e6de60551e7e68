//! Reading what the tools print: the profiler's end-of-run summary, folded
//! stacks (the profiler's `.folded` output and `inferno-collapse-perf`'s),
//! bpftrace's map dump, and the line each workload writes about itself.

use anyhow::{Context, Result, bail};

/// The sample figures of `profiler record`'s summary on stderr
/// (`profiler/src/end_summary.rs`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfilerSummary {
    /// Samples in the profile written.
    pub counted: u64,
    /// Samples the kernel program took for the targets.
    pub taken: u64,
    /// `(count, cause)` for every loss or degradation listed.
    pub lost: Vec<(u64, String)>,
}

/// Parses the summary; fails when its `Samples:` line is missing (the
/// profiler failed, or its wording changed and this parser must follow).
pub fn profiler_summary(stderr: &str) -> Result<ProfilerSummary> {
    let mut summary = None;
    let mut in_lost = false;
    let mut lost = Vec::new();
    for line in stderr.lines() {
        // `Samples: 1234 counted of 1240 taken; 1 processes, 56 unique stacks`
        if let Some(rest) = line.strip_prefix("Samples: ") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [counted, "counted", "of", taken, "taken;" | "taken", ..] => {
                    summary = Some((counted.parse()?, taken.parse()?));
                }
                _ => bail!("unexpected profiler summary line: {line:?}"),
            }
            continue;
        }
        if line.starts_with("Lost or degraded:") {
            in_lost = true;
            continue;
        }
        if in_lost {
            // `      12  stack map full` (two spaces between count and cause)
            let trimmed = line.trim_start();
            match trimmed.split_once(char::is_whitespace) {
                Some((n, what)) if line.starts_with(' ') && n.parse::<u64>().is_ok() => {
                    lost.push((n.parse()?, what.trim().to_string()));
                }
                _ => in_lost = false,
            }
        }
    }
    let Some((counted, taken)) = summary else {
        bail!("no `Samples:` line in the profiler's output:\n{stderr}");
    };
    Ok(ProfilerSummary {
        counted,
        taken,
        lost,
    })
}

/// The stacks of folded output (`root;...;leaf COUNT` per line) and their
/// counts; an error names a line without a count or with a bad one.
fn folded_stacks(folded: &str) -> impl Iterator<Item = Result<(&str, u64)>> {
    folded.lines().filter(|l| !l.trim().is_empty()).map(|line| {
        let (stack, count) = line
            .rsplit_once(' ')
            .with_context(|| format!("folded line without a count: {line:?}"))?;
        let count: u64 = count
            .trim()
            .parse()
            .with_context(|| format!("folded line with a bad count: {line:?}"))?;
        Ok((stack, count))
    })
}

/// Samples in folded stacks: all of them, and those whose root frame (the
/// command name) is `comm`.
pub fn folded_counts(folded: &str, comm: &str) -> Result<(u64, u64)> {
    let (mut total, mut matching) = (0, 0);
    for entry in folded_stacks(folded) {
        let (stack, count) = entry?;
        total += count;
        if stack.split(';').next() == Some(comm) {
            matching += count;
        }
    }
    Ok((total, matching))
}

/// Of the samples in folded stacks whose root frame is `comm`, the share in
/// percent whose stack holds the frame `frame` (inferno's `perf` folding
/// weights each stack by its period, constant at a fixed frequency, so the
/// share is the same); `None` when there are none.
pub fn reaching_share(folded: &str, comm: &str, frame: &str) -> Result<Option<f64>> {
    let (mut mine, mut reaching) = (0u64, 0u64);
    for entry in folded_stacks(folded) {
        let (stack, count) = entry?;
        let mut frames = stack.split(';');
        if frames.next() != Some(comm) {
            continue;
        }
        mine += count;
        if frames.any(|f| f == frame) {
            reaching += count;
        }
    }
    Ok((mine > 0).then(|| reaching as f64 * 100.0 / mine as f64))
}

/// Samples in `perf script -F comm` output (one line per sample): all of
/// them, and those of `comm`. (inferno-collapse-perf weights each stack by the
/// sample's period, in nanoseconds for cpu-clock, so its counts are not samples.)
pub fn perf_comm_counts(script: &str, comm: &str) -> (u64, u64) {
    let lines = script.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.fold((0, 0), |(total, mine), l| {
        (total + 1, mine + u64::from(l == comm))
    })
}

/// The sum of the counts of bpftrace's map dump at exit: each entry ends
/// with `]: COUNT`, on its own line when the key holds stacks.
pub fn bpftrace_total(output: &str) -> u64 {
    output
        .lines()
        .filter_map(|line| line.rsplit_once("]: "))
        .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
        .sum()
}

/// What a workload says about its own run (`benches/overhead-workloads/report.h`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkloadReport {
    /// CLOCK_MONOTONIC, seconds.
    pub start_s: f64,
    pub end_s: f64,
    /// User and system CPU of the workload and every descendant it waited for.
    pub user_s: f64,
    pub sys_s: f64,
    pub maxrss_kib: u64,
}

impl WorkloadReport {
    pub fn wall_s(&self) -> f64 {
        self.end_s - self.start_s
    }

    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

pub fn workload_report(text: &str) -> Result<WorkloadReport> {
    let field = |name: &str| -> Result<f64> {
        let value = text
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name}= in the workload report {text:?}"))?;
        Ok(value.parse::<i64>()? as f64)
    };
    let report = WorkloadReport {
        start_s: field("start_ns")? / 1e9,
        end_s: field("end_ns")? / 1e9,
        user_s: field("user_us")? / 1e6,
        sys_s: field("sys_us")? / 1e6,
        maxrss_kib: field("maxrss_kb")? as u64,
    };
    if report.end_s < report.start_s {
        bail!("workload report ends before it starts: {text:?}");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "\
Recorded ovh_cpu /tmp/r 100 2 for 3.1 s at 99 Hz (command exited)
Command exit status: 0
Samples: 612 counted of 615 taken; 1 processes, 64 unique stacks
Lost or degraded:
         3  user stack read failed
         1  stacks cut at 127 frames
Top functions by self time
  95.1%  spin
Wrote /tmp/out.svg
";

    #[test]
    fn reads_the_profiler_summary() {
        let s = profiler_summary(SUMMARY).unwrap();
        assert_eq!((s.counted, s.taken), (612, 615));
        assert_eq!(
            s.lost,
            vec![
                (3, "user stack read failed".to_string()),
                (1, "stacks cut at 127 frames".to_string())
            ]
        );
        let none =
            profiler_summary("Samples: 5 counted of 5 taken; 1 processes\nLost: none\n").unwrap();
        assert!(none.lost.is_empty());
    }

    #[test]
    fn a_summary_without_samples_is_an_error() {
        assert!(profiler_summary("error: no samples in 1.0 s").is_err());
        assert!(profiler_summary("Samples: many counted").is_err());
    }

    #[test]
    fn counts_folded_samples_by_root() {
        let folded = "ovh_cpu;main;spin 10\novh_cpu;worker 5\nbash;main 7\n\nswapper;[k] 1\n";
        assert_eq!(folded_counts(folded, "ovh_cpu").unwrap(), (23, 15));
        assert_eq!(folded_counts(folded, "ovh").unwrap(), (23, 0));
        assert!(folded_counts("no count here", "x").is_err());
    }

    #[test]
    fn shares_of_stacks_reaching_a_frame() {
        let folded = "ovh;start_thread;worker;a;spin 6\novh;a;spin 2\n\
                      ovh;worker_2;spin 2\nbash;worker 7\n";
        let share = reaching_share(folded, "ovh", "worker").unwrap().unwrap();
        assert!((share - 60.0).abs() < 1e-9, "{share}");
        assert_eq!(reaching_share(folded, "none", "worker").unwrap(), None);
        assert!(reaching_share("ovh;worker x", "ovh", "worker").is_err());
    }

    #[test]
    fn counts_perf_script_samples_by_comm() {
        let script =
            "        ovh_fork \n         swapper \n        ovh_fork \n\n            bash \n";
        assert_eq!(perf_comm_counts(script, "ovh_fork"), (4, 2));
        assert_eq!(perf_comm_counts("", "ovh_fork"), (0, 0));
    }

    #[test]
    fn sums_bpftrace_map_entries() {
        let out = "Attaching 1 probe...\n\n\n@[\n    spin+12\n    main+30\n, \n    \
                   asm_sysvec_apic_timer_interrupt+26\n]: 40\n@[\n\n, \n    default_idle+5\n]: 1200\n\
                   @[a, b]: 3\n";
        assert_eq!(bpftrace_total(out), 1243);
        assert_eq!(bpftrace_total("Attaching 1 probe...\n"), 0);
    }

    #[test]
    fn reads_a_workload_report() {
        let r = workload_report(
            "start_ns=1000000000 end_ns=4500000000 user_us=6000000 sys_us=500000 maxrss_kb=1400\n",
        )
        .unwrap();
        assert_eq!(r.wall_s(), 3.5);
        assert_eq!(r.cpu_s(), 6.5);
        assert_eq!(r.maxrss_kib, 1400);
        assert!(workload_report("start_ns=1 end_ns=2").is_err());
        assert!(workload_report("start_ns=5 end_ns=2 user_us=0 sys_us=0 maxrss_kb=0").is_err());
    }
}

//! The summary printed when a recording ends: samples, every loss by cause,
//! processes, unique stacks, top functions, and the files written.

use std::fmt::Write;

use profiler::{
    record::{RecordReport, StopReason},
    summary::{format_table, top_functions},
};

pub fn render(report: &RecordReport) -> String {
    let profile = &report.profile;
    let total = profile.total_samples();
    let mut out = String::new();
    let secs = profile.meta.duration_nanos as f64 / 1e9;
    let why = match report.stop {
        StopReason::Duration => "duration reached",
        StopReason::Interrupted => "interrupted",
        StopReason::CommandExited => "command exited",
        StopReason::TargetsExited => "all target processes exited",
    };
    let _ = writeln!(
        out,
        "Recorded {} for {secs:.1} s at {} Hz ({why})",
        profile.meta.target, profile.meta.frequency_hz
    );
    match (report.command_status, report.stop) {
        (Some(status), StopReason::CommandExited) => {
            let _ = writeln!(out, "Command {status}");
        }
        (Some(status), _) => {
            let _ = writeln!(
                out,
                "Command stopped at the end of the recording ({status})"
            );
        }
        (None, _) => {}
    }
    let mut pids: Vec<u32> = profile.samples.iter().map(|s| s.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    let stacks = profile.samples.len();
    let _ = writeln!(
        out,
        "Samples: {total} counted of {} taken; {} processes, {stacks} unique stacks",
        report.kernel.samples,
        pids.len()
    );
    let failures = report.kernel.failures();
    if failures.is_empty() {
        let _ = writeln!(out, "Lost: none");
    } else {
        let _ = writeln!(out, "Lost or degraded:");
        for (what, n) in failures {
            let _ = writeln!(out, "  {n:>8}  {what}");
        }
    }
    if report.processes_missed > 0 {
        let _ = writeln!(
            out,
            "  {:>8}  process(es) exited before their memory maps were read (frames shown as addresses)",
            report.processes_missed
        );
    }
    let sym = report.symbolizer;
    if sym.unknown > 0 || sym.failed_lookups > 0 {
        let _ = writeln!(
            out,
            "Symbolization: {} addresses without a symbol (kept as module+offset), {} failed lookups",
            sym.unknown, sym.failed_lookups
        );
    }
    if total > 0 {
        let (by_self, by_total) = top_functions(profile, 10);
        out.push_str(&format_table(
            "Top functions by self time",
            &by_self,
            total,
            true,
        ));
        out.push_str(&format_table(
            "Top functions by total time",
            &by_total,
            total,
            false,
        ));
    }
    for path in &report.written {
        let _ = writeln!(out, "Wrote {}", path.display());
    }
    out
}

//! The summary printed when a recording ends: samples, every loss by cause,
//! processes, unique stacks, top functions, and the files written.

use std::fmt::Write;

use profiler::{
    profile::{ProfileKind, ThreadState},
    record::{RecordReport, StopReason},
    summary::{
        Unit, format_duration, format_stacks, format_table, top_functions, top_off_cpu_stacks,
    },
};

pub fn render(report: &RecordReport) -> String {
    let profile = &report.profile;
    let kind = profile.meta.kind;
    let total = profile.total_value();
    let unit = Unit::of(profile);
    let mut out = String::new();
    let secs = profile.meta.duration_nanos as f64 / 1e9;
    let why = match report.stop {
        StopReason::Duration => "duration reached",
        StopReason::Interrupted => "interrupted",
        StopReason::CommandExited => "command exited",
        StopReason::TargetsExited => "all target processes exited",
    };
    let what = match kind {
        ProfileKind::Cpu => format!("at {} Hz", profile.meta.frequency_hz),
        ProfileKind::OffCpu => "off-CPU time".to_string(),
        ProfileKind::Wall => format!(
            "wall-clock time (on-CPU samples at {} Hz and off-CPU time)",
            profile.meta.frequency_hz
        ),
    };
    let _ = writeln!(
        out,
        "Recorded {} for {secs:.1} s, {what} ({why})",
        profile.meta.target
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
    let mut tids: Vec<(u32, u32)> = profile.samples.iter().map(|s| (s.pid, s.tid)).collect();
    tids.sort_unstable();
    tids.dedup();
    let count_in = |f: fn(ThreadState) -> bool| -> (u64, u64) {
        profile
            .samples
            .iter()
            .filter(|s| f(s.state))
            .fold((0, 0), |(c, n), s| (c + s.count, n + s.nanos))
    };
    if kind != ProfileKind::OffCpu {
        let (on_cpu, _) = count_in(|s| s == ThreadState::OnCpu);
        let _ = writeln!(
            out,
            "Samples: {on_cpu} counted of {} taken",
            report.kernel.samples,
        );
    }
    if kind.is_time() {
        let (blocks, off_nanos) = count_in(|s| s != ThreadState::OnCpu);
        let (_, runnable) = count_in(|s| s == ThreadState::Runnable);
        let _ = writeln!(
            out,
            "Off CPU: {} in {blocks} intervals ({} of it waiting for a CPU), from {} context switches",
            format_duration(off_nanos),
            format_duration(runnable),
            report.kernel.off_cpu_switches
        );
        let hidden = report.hidden_before_start;
        if hidden.threads > 0 {
            let _ = writeln!(
                out,
                "  {} of {} threads already off CPU when the recording started left out (stack unknown; --mode wall includes it)",
                format_duration(hidden.nanos),
                hidden.threads
            );
        }
        if report.kernel.off_cpu_short > 0 {
            let _ = writeln!(
                out,
                "  {} intervals shorter than --min-block left out ({} in all)",
                report.kernel.off_cpu_short,
                format_duration(report.kernel.off_cpu_short_nanos)
            );
        }
    }
    let _ = writeln!(
        out,
        "{} processes, {} threads, {stacks} unique stacks",
        pids.len(),
        tids.len()
    );
    let mut failures: Vec<(String, u64)> = report
        .kernel
        .failures()
        .into_iter()
        .map(|(what, n)| (what.to_string(), n))
        .collect();
    if report.processes_missed > 0 {
        failures.push((
            "process(es) exited before their memory maps were read (frames shown as addresses)"
                .into(),
            report.processes_missed as u64,
        ));
    }
    if let Some(lost) = report.process_records_lost.filter(|&n| n > 0) {
        failures.push((
            "process records the kernel dropped (buffer full): live processes read from /proc again"
                .into(),
            lost,
        ));
    }
    if failures.is_empty() {
        let _ = writeln!(out, "Lost: none");
    } else {
        let _ = writeln!(out, "Lost or degraded:");
        for (what, n) in failures {
            let _ = writeln!(out, "  {n:>8}  {what}");
        }
    }
    if let Some(tables) = report.unwind {
        let k = &report.kernel;
        let _ = writeln!(
            out,
            "Unwinding: {} user stacks, {} frames from unwind tables and {} from frame pointers; \
             {} files' tables loaded ({} rows, {} KiB of kernel memory; {} built in {} ms, {} from \
             the cache), {} files without a table{}",
            k.unwind_stacks,
            k.unwind_frames_table,
            k.unwind_frames_fp,
            tables.files_loaded,
            tables.rows_loaded,
            tables.bytes_loaded / 1024,
            tables.tables_built,
            tables.build_ms,
            tables.tables_cached,
            tables.files_without_table,
            [
                (tables.files_evicted, "evicted for room"),
                (tables.files_too_big, "larger than --unwind-memory"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!(", {n} {what}"))
            .collect::<String>()
        );
        for (why, n) in k.unwind_cuts() {
            let _ = writeln!(out, "  {n:>8}  stacks cut short: {why}");
        }
    }
    if let Some(python) = &report.python {
        let k = &report.kernel;
        let found = python.versions.iter().map(|(_, n)| n).sum::<u64>();
        let unsupported = python.unsupported.iter().map(|(_, n)| n).sum::<u64>();
        if found + unsupported + python.inspect_failed > 0 || k.python_eval_frames > 0 {
            let versions = python
                .versions
                .iter()
                .map(|(v, n)| format!("{n} x {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "Python: {found} processes ({versions}); {} Python frames in {} eval-loop frames; \
                 {} code objects named, {} not (freed or process gone first), {} unreadable, {} \
                 never announced",
                k.python_frames,
                k.python_eval_frames,
                python.codes_read,
                python.codes_gone,
                python.codes_failed,
                python.codes_unannounced,
            );
            for (version, n) in &python.unsupported {
                let _ = writeln!(
                    out,
                    "  {n:>8}  processes of Python {version}, not walked (3.11, 3.12 and 3.13 are)"
                );
            }
            if python.writes_failed > 0 {
                let _ = writeln!(
                    out,
                    "  {:>8}  Python process writes the kernel refused (its map full): those processes not walked",
                    python.writes_failed
                );
            }
            if python.inspect_failed > 0 {
                let _ = writeln!(
                    out,
                    "  {:>8}  Python processes whose interpreter could not be read",
                    python.inspect_failed
                );
            }
            for (why, n) in k.python_losses() {
                let _ = writeln!(out, "  {n:>8}  stacks with Python frames lost: {why}");
            }
        }
    }
    let sym = report.symbolizer;
    if sym.unknown > 0 || sym.failed_lookups > 0 {
        let _ = writeln!(
            out,
            "Symbolization: {} addresses without a symbol (kept as module+offset), {} failed lookups",
            sym.unknown, sym.failed_lookups
        );
    }
    let perf_maps = sym.perf_maps;
    if sym.jit_named + sym.jit_unnamed > 0 || perf_maps.read + perf_maps.refused > 0 {
        let _ = writeln!(
            out,
            "JIT code: {} addresses named from perf maps, {} not named; {} perf map reads, {} malformed lines skipped{}",
            sym.jit_named,
            sym.jit_unnamed,
            perf_maps.read,
            perf_maps.lines_skipped,
            if perf_maps.refused > 0 {
                format!(", {} perf maps refused", perf_maps.refused)
            } else {
                String::new()
            }
        );
    }
    if total > 0 {
        let (by_self, by_total) = top_functions(profile, 10);
        out.push_str(&format_table(
            "Top functions by self time",
            &by_self,
            total,
            true,
            unit,
        ));
        out.push_str(&format_table(
            "Top functions by total time",
            &by_total,
            total,
            false,
            unit,
        ));
    }
    if kind.is_time() {
        let (_, off_nanos) = count_in(|s| s != ThreadState::OnCpu);
        out.push_str(&format_stacks(
            "Top off-CPU stacks (share of all off-CPU time)",
            &top_off_cpu_stacks(profile, 10),
            off_nanos,
        ));
    }
    for path in &report.written {
        let _ = writeln!(out, "Wrote {}", path.display());
    }
    out
}

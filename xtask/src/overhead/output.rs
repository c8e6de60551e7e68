//! Writing the results: JSON (every run and every figure, for tracking over
//! time), the SVG chart, and the Markdown table with the verdicts.

use std::{fs, path::Path, path::PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    chart,
    machine::Machine,
    runs::{Run, Tools},
    summary::{Marginal, Row, Verdict},
    table,
    workload::Job,
};

#[derive(Serialize)]
pub struct Document<'a> {
    pub label: &'a str,
    /// The command that produced this file.
    pub command: String,
    pub unix_time: u64,
    pub machine: &'a Machine,
    /// `perf_event_max_sample_rate` at the end (the kernel lowers it when
    /// sampling interrupts take too long).
    pub perf_event_max_sample_rate_after: String,
    pub rounds: u32,
    pub frequencies_hz: &'a [u32],
    pub jobs: &'a [Job],
    pub tools: &'a Tools,
    pub rows: &'a [Row],
    pub marginals: &'a [Marginal],
    pub verdicts: &'a [Verdict],
    pub runs: &'a [Run],
    pub failures: &'a [String],
}

/// The Markdown report: what ran where, the table, the verdicts.
pub fn markdown(doc: &Document) -> String {
    let m = doc.machine;
    let mut out = format!(
        "Machine: {} CPUs, {} ({}), kernel {}, {} MiB; {}; workspace {}{}\n\n\
         Command: `{}`\n\n",
        m.cpus,
        m.cpu_model,
        m.virtualization,
        m.kernel,
        m.memory_mib,
        m.versions
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; "),
        m.workspace_commit,
        if m.profiler_sources_dirty {
            " (profiler sources modified)"
        } else {
            ""
        },
        doc.command
    );
    out.push_str(&table::markdown(doc.rows));
    out.push('\n');
    if !doc.marginals.is_empty() {
        out.push_str(&table::marginals(doc.marginals));
        out.push('\n');
    }
    out.push_str(&table::verdicts(doc.verdicts));
    if !doc.failures.is_empty() {
        out.push_str("\nFailed runs:\n");
        for f in doc.failures {
            out.push_str(&format!("- {f}\n"));
        }
    }
    out
}

/// Writes `overhead-LABEL.{json,svg,md}` into `dir`; returns their paths.
pub fn write(dir: &Path, doc: &Document) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let base = dir.join(format!("overhead-{}", doc.label));
    let paths = [
        base.with_extension("json"),
        base.with_extension("svg"),
        base.with_extension("md"),
    ];
    let title = format!(
        "Overhead: profiler vs perf vs bpftrace ({}, {} CPUs, {} rounds)",
        doc.label, doc.machine.cpus, doc.rounds
    );
    let contents = [
        serde_json::to_string_pretty(doc)? + "\n",
        chart::svg(doc.rows, &title),
        markdown(doc),
    ];
    for (path, text) in paths.iter().zip(contents) {
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(paths.to_vec())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::overhead::{runs::ToolRun, setup::Setup, summary, workload::Workload};

    #[test]
    fn writes_json_chart_and_table_that_read_back() {
        let machine = Machine {
            cpu_model: "Test CPU".into(),
            cpus: 2,
            kernel: "6.18".into(),
            memory_mib: 1024,
            virtualization: "kvm".into(),
            perf_event_max_sample_rate: "100000".into(),
            perf_event_paranoid: "2".into(),
            versions: BTreeMap::from([("perf".into(), "perf version 6.1".into())]),
            workspace_commit: "abc123".into(),
            profiler_sources_dirty: false,
        };
        let run = |setup, wall, tool| Run {
            workload: Workload::Fork,
            hz: 999,
            round: 0,
            setup,
            wall_s: wall,
            workload_cpu_s: 1.0,
            loadavg_before: 0.5,
            tool,
        };
        let runs = vec![
            run(Setup::Alone, 2.0, None),
            run(
                Setup::Profiler,
                2.02,
                Some(ToolRun {
                    record_cpu_s: 0.05,
                    samples_total: 1000,
                    samples_workload: Some(990),
                    expected_workload: 999.0,
                    stop_to_output_s: 0.2,
                    ..ToolRun::default()
                }),
            ),
        ];
        let rows = summary::rows(&runs);
        let verdicts = summary::verdicts(&rows);
        let tools = Tools {
            profiler: "/p".into(),
            perf: "perf".into(),
            bpftrace: "bpftrace".into(),
            collapse_perf: "c".into(),
            flamegraph: "f".into(),
        };
        let doc = Document {
            label: "unit",
            command: "cargo xtask bench-overhead --quick".into(),
            unix_time: 1,
            machine: &machine,
            perf_event_max_sample_rate_after: "100000".into(),
            rounds: 1,
            frequencies_hz: &[999],
            jobs: &[],
            tools: &tools,
            rows: &rows,
            marginals: &summary::marginals(&runs),
            verdicts: &verdicts,
            runs: &runs,
            failures: &["bpftrace: exploded".to_string()],
        };
        let dir = std::env::temp_dir().join(format!("xtask-overhead-{}", std::process::id()));
        let paths = write(&dir, &doc).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&paths[0]).unwrap()).unwrap();
        assert_eq!(json["machine"]["cpu_model"], "Test CPU");
        assert_eq!(json["runs"].as_array().unwrap().len(), 2);
        assert_eq!(json["rows"][1]["setup"], "profiler");
        assert_eq!(json["rows"][1]["workload"], "fork");
        let slow = json["rows"][1]["slowdown_pct"]["median"].as_f64().unwrap();
        assert!((slow - 1.0).abs() < 1e-9, "{slow}");
        assert_eq!(json["rows"][1]["samples"]["median"], 990.0);
        let svg = fs::read_to_string(&paths[1]).unwrap();
        assert!(svg.contains("fork @ 999 Hz profiler"));
        let md = fs::read_to_string(&paths[2]).unwrap();
        assert!(md.contains("| fork | 999 | profiler |"), "{md}");
        assert!(md.contains("Failed runs:\n- bpftrace: exploded"));
        fs::remove_dir_all(dir).unwrap();
    }
}

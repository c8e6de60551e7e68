//! The figures as a Markdown table (readable in a terminal, pasted as is in
//! benches/README.md) and the verdicts as a list.

use std::fmt::Write;

use super::{
    stats::Spread,
    summary::{Marginal, Row, Verdict},
};

/// `median [min..max]` with `digits` decimals, or `-`.
fn spread(s: Option<Spread>, digits: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!(
            "{:.digits$} [{:.digits$}..{:.digits$}]",
            s.median, s.min, s.max
        ),
        Some(s) => format!("{:.digits$}", s.median),
        None => "-".into(),
    }
}

fn signed(s: Option<Spread>) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:+.1} [{:+.1}..{:+.1}]", s.median, s.min, s.max),
        Some(s) => format!("{:+.1}", s.median),
        None => "-".into(),
    }
}

fn median(s: Option<Spread>, digits: usize) -> String {
    s.map_or("-".into(), |s| format!("{:.digits$}", s.median))
}

pub const HEADER: [&str; 11] = [
    "workload",
    "Hz",
    "tool",
    "wall s",
    "slowdown % (wall) med [min..max]",
    "workload CPU %",
    "tool CPU ms / 1k samples: record (+post)",
    "peak RSS MiB: record (post)",
    "samples / expected",
    "end → SVG s",
    "full stacks %",
];

/// One Markdown row per [`Row`], every figure a median over the rounds,
/// with [min..max] where the spread matters most.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
    for r in rows {
        let cpu = match (r.record_cpu_ms_per_1k, r.total_cpu_ms_per_1k) {
            (Some(rec), Some(tot)) if (tot.median - rec.median).abs() > 1e-9 => {
                format!("{} ({})", spread(Some(rec), 1), median(Some(tot), 1))
            }
            (rec, _) => spread(rec, 1),
        };
        let rss = match r.post_rss_mib {
            Some(post) => format!(
                "{} ({})",
                median(r.record_rss_mib, 1),
                median(Some(post), 1)
            ),
            None => median(r.record_rss_mib, 1),
        };
        let captured = match (r.samples, r.expected, r.captured_pct) {
            (Some(s), Some(e), Some(p)) => format!(
                "{:.0} / {:.0} = {:.1}%{}",
                s.median,
                e.median,
                p.median,
                if r.capture_basis == Some("all CPUs") {
                    " (all CPUs)"
                } else {
                    ""
                }
            ),
            _ => "-".into(),
        };
        let cells = [
            r.workload.name().to_string(),
            r.hz.to_string(),
            r.setup.label().to_string(),
            median(Some(r.wall_s), 2),
            signed(r.slowdown_pct),
            r.cpu_slowdown_pct
                .map_or("-".into(), |s| format!("{:+.1}", s.median)),
            cpu,
            rss,
            captured,
            spread(r.stop_to_output_s, 3),
            median(r.full_stacks_pct, 1),
        ];
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// The marginal CPU per 1000 samples of each tool.
pub fn marginals(marginals: &[Marginal]) -> String {
    let mut out = String::from(
        "| workload | tool | marginal CPU ms / 1k more samples: record | with post-processing |\n\
         |---|---|---|---|\n",
    );
    for m in marginals {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} |",
            m.workload.name(),
            m.setup.label(),
            m.record_ms_per_1k,
            m.total_ms_per_1k
        );
    }
    out
}

/// `MET`/`MISSED` per target, workload, frequency and scope.
pub fn verdicts(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        let _ = writeln!(
            out,
            "{:<6} {} — {} {} Hz {}: {}",
            if v.met { "MET" } else { "MISSED" },
            v.target,
            v.workload.name(),
            v.hz,
            v.setup.label(),
            v.detail
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overhead::{setup::Setup, workload::Workload};

    fn s(values: &[f64]) -> Option<Spread> {
        Spread::of(values)
    }

    #[test]
    fn renders_one_row_per_setup_with_medians_and_spreads() {
        let row = Row {
            workload: Workload::Cpu,
            hz: 999,
            setup: Setup::Perf,
            rounds: 3,
            wall_s: s(&[3.0, 3.1, 3.2]).unwrap(),
            slowdown_pct: s(&[1.0, 2.0, 4.0]),
            cpu_slowdown_pct: s(&[0.5]),
            busy_cpus: s(&[2.0]).unwrap(),
            record_cpu_ms_per_1k: s(&[10.0, 12.0, 14.0]),
            total_cpu_ms_per_1k: s(&[110.0, 112.0, 114.0]),
            record_rss_mib: s(&[20.0]),
            post_rss_mib: s(&[50.0]),
            samples: s(&[5990.0]),
            expected: s(&[6000.0]),
            captured_pct: s(&[99.83]),
            capture_basis: Some("workload"),
            stop_to_output_s: s(&[1.5, 1.6, 1.7]),
            full_stacks_pct: s(&[12.5]),
        };
        let table = markdown(&[row]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[2],
            "| cpu | 999 | perf | 3.10 | +2.0 [+1.0..+4.0] | +0.5 | 12.0 [10.0..14.0] (112.0) \
             | 20.0 (50.0) | 5990 / 6000 = 99.8% | 1.600 [1.500..1.700] | 12.5 |"
        );
        assert_eq!(lines[1].matches('|').count(), HEADER.len() + 1);
    }
}

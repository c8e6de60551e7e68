//! A small SVG chart of the figures: one panel per figure (slowdown, tool CPU
//! per sample, end of recording to flame graph, samples captured), one group
//! of bars per workload and frequency, one bar per tool, with min–max
//! whiskers. Written by hand (a few rectangles and lines) rather than with a
//! plotting crate, to keep xtask's dependencies small.

use std::fmt::Write;

use super::{setup::Setup, stats::Spread, summary::Row};

const WIDTH: f64 = 980.0;
const PANEL_HEIGHT: f64 = 230.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 60.0;
const PLOT_TOP: f64 = 28.0;
const PLOT_BOTTOM: f64 = 40.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#6baed6", "#d62728", "#ff9896", "#8c564b", "#2ca02c",
];

struct Panel {
    title: &'static str,
    log: bool,
    value: fn(&Row) -> Option<Spread>,
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "Workload slowdown, wall time (%)",
        log: false,
        value: |r| r.slowdown_pct,
    },
    Panel {
        title: "Tool CPU per 1000 samples, recording + post-processing (ms, log scale)",
        log: true,
        value: |r| r.total_cpu_ms_per_1k,
    },
    Panel {
        title: "End of recording to flame graph on disk (s, log scale; bpftrace: map printed)",
        log: true,
        value: |r| r.stop_to_output_s,
    },
    Panel {
        title: "Samples captured / expected (%)",
        log: false,
        value: |r| r.captured_pct,
    },
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Maps values to the vertical pixels of a plot area.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    top: f64,
    bottom: f64,
}

impl Axis {
    fn new(values: &[f64], log: bool, top: f64, bottom: f64) -> Axis {
        let (mut lo, mut hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if log {
            lo = lo.max(1e-4).log10().floor();
            hi = hi.max(1e-4).log10().ceil().max(lo + 1.0);
        } else {
            lo = lo.min(0.0);
            hi = hi.max(0.0);
            let pad = ((hi - lo) * 0.08).max(1e-9);
            (lo, hi) = (if lo < 0.0 { lo - pad } else { lo }, hi + pad);
        }
        Axis {
            lo,
            hi,
            log,
            top,
            bottom,
        }
    }

    fn y(&self, value: f64) -> f64 {
        let v = if self.log {
            value.max(1e-4).log10()
        } else {
            value
        };
        let v = v.clamp(self.lo, self.hi);
        self.bottom - (v - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)
    }

    /// `(value, label)` of the grid lines: decades, or about six steps of a round size.
    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            return (self.lo as i32..=self.hi as i32)
                .map(|e| {
                    let v = 10f64.powi(e);
                    (v, format!("{v}"))
                })
                .collect();
        }
        let raw = (self.hi - self.lo) / 6.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(raw);
        let mut v = (self.lo / step).ceil() * step;
        let mut out = Vec::new();
        while v <= self.hi + 1e-9 {
            // `+ 0.0` turns the -0 of rounding into 0.
            out.push((v, format!("{}", (v * 1e6).round() / 1e6 + 0.0)));
            v += step;
        }
        out
    }
}

/// The chart of `rows` (every setup but `alone`).
pub fn svg(rows: &[Row], title: &str) -> String {
    let mut groups: Vec<(String, Vec<&Row>)> = Vec::new();
    for row in rows.iter().filter(|r| r.setup != Setup::Alone) {
        let name = format!("{} @ {} Hz", row.workload.name(), row.hz);
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, g)) => g.push(row),
            None => groups.push((name, vec![row])),
        }
    }
    let setups: Vec<Setup> = Setup::ALL
        .into_iter()
        .filter(|s| rows.iter().any(|r| r.setup == *s) && *s != Setup::Alone)
        .collect();
    let height = TOP + PANEL_HEIGHT * PANELS.len() as f64 + 10.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, setup) in setups.iter().enumerate() {
        let x = LEFT + i as f64 * 130.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="32" width="12" height="12" fill="{}"/><text x="{}" y="42">{}</text>"#,
            COLORS[i % COLORS.len()],
            x + 16.0,
            escape(setup.label())
        );
    }
    for (p, panel) in PANELS.iter().enumerate() {
        let y0 = TOP + p as f64 * PANEL_HEIGHT;
        let (top, bottom) = (y0 + PLOT_TOP, y0 + PANEL_HEIGHT - PLOT_BOTTOM);
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.setup != Setup::Alone)
            .filter_map(|r| (panel.value)(r))
            .flat_map(|s| [s.min, s.max])
            .collect();
        let axis = Axis::new(&values, panel.log, top, bottom);
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}" font-size="13">{}</text>"#,
            y0 + 16.0,
            escape(panel.title)
        );
        for (v, label) in axis.ticks() {
            let y = axis.y(v);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0
            );
        }
        if !panel.log {
            let y = axis.y(0.0);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#444"/>"##,
                WIDTH - RIGHT
            );
        }
        let group_width = (WIDTH - LEFT - RIGHT) / groups.len().max(1) as f64;
        let bar_width = group_width * 0.8 / setups.len().max(1) as f64;
        for (g, (name, members)) in groups.iter().enumerate() {
            let gx = LEFT + g as f64 * group_width;
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                gx + group_width / 2.0,
                bottom + 16.0,
                escape(name)
            );
            for (i, setup) in setups.iter().enumerate() {
                let Some(s) = members
                    .iter()
                    .find(|r| r.setup == *setup)
                    .and_then(|r| (panel.value)(r))
                else {
                    continue;
                };
                let x = gx + group_width * 0.1 + i as f64 * bar_width;
                let base = if panel.log {
                    axis.y(10f64.powf(axis.lo))
                } else {
                    axis.y(0.0)
                };
                let y = axis.y(s.median);
                let cx = x + bar_width / 2.0;
                let _ = writeln!(
                    out,
                    r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {:.3} (min {:.3}, max {:.3})</title></rect><line x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{:.1}" stroke="#000"/>"##,
                    y.min(base),
                    bar_width * 0.9,
                    (y - base).abs().max(0.5),
                    COLORS[i % COLORS.len()],
                    escape(name),
                    escape(setup.label()),
                    s.median,
                    s.min,
                    s.max,
                    axis.y(s.min),
                    axis.y(s.max)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overhead::workload::Workload;

    fn row(setup: Setup, slowdown: f64) -> Row {
        let s = |v: f64| Spread::of(&[v]);
        Row {
            workload: Workload::Syscall,
            hz: 99,
            setup,
            rounds: 1,
            wall_s: s(3.0).unwrap(),
            slowdown_pct: (setup != Setup::Alone).then(|| s(slowdown)).flatten(),
            cpu_slowdown_pct: None,
            busy_cpus: s(2.0).unwrap(),
            record_cpu_ms_per_1k: s(5.0),
            total_cpu_ms_per_1k: s(5.0),
            record_rss_mib: None,
            post_rss_mib: None,
            samples: None,
            expected: None,
            captured_pct: s(99.5),
            capture_basis: None,
            stop_to_output_s: s(0.2),
            full_stacks_pct: None,
        }
    }

    #[test]
    fn draws_a_bar_per_tool_and_group_in_every_panel() {
        let rows = [
            row(Setup::Alone, 0.0),
            row(Setup::Profiler, 0.5),
            row(Setup::Perf, -2.0),
        ];
        let svg = svg(&rows, "overhead <test>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("overhead &lt;test&gt;"));
        // Two tools (alone is not drawn), four panels.
        assert_eq!(svg.matches("<title>").count(), 2 * PANELS.len());
        assert!(svg.contains("syscall @ 99 Hz profiler: 0.500"));
        assert!(svg.contains("syscall @ 99 Hz perf: -2.000"));
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn axes_cover_the_values() {
        let axis = Axis::new(&[-2.0, 7.0], false, 0.0, 100.0);
        assert!(axis.lo < -2.0 && axis.hi > 7.0);
        assert!(axis.y(7.0) < axis.y(0.0) && axis.y(0.0) < axis.y(-2.0));
        let labels: Vec<String> = axis.ticks().into_iter().map(|t| t.1).collect();
        assert!(labels.contains(&"0".to_string()), "{labels:?}");
        let log = Axis::new(&[0.05, 300.0], true, 0.0, 100.0);
        assert_eq!((log.lo, log.hi), (-2.0, 3.0));
        assert_eq!(log.ticks().len(), 6);
        assert_eq!(log.y(1000.0), 0.0);
    }
}

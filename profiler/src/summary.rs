//! The text summary printed after recording: the functions with the most
//! samples (or time), by self and by total, and the stacks where threads
//! waited longest.

use std::collections::HashMap;
use std::fmt::Write;

use crate::profile::{FrameKind, Line, Profile, Sample, ThreadState};

/// What the numbers in a table are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Samples,
    /// Nanoseconds, shown as seconds or milliseconds.
    Nanos,
}

impl Unit {
    pub fn of(profile: &Profile) -> Unit {
        if profile.meta.kind.is_time() {
            Unit::Nanos
        } else {
            Unit::Samples
        }
    }

    pub fn format(self, value: u64) -> String {
        match self {
            Unit::Samples => value.to_string(),
            Unit::Nanos => format_duration(value),
        }
    }
}

/// `1.234s`, `12.3ms`, `45us`: short, for tables.
pub fn format_duration(nanos: u64) -> String {
    if nanos >= 1_000_000_000 {
        format!("{:.3}s", nanos as f64 / 1e9)
    } else if nanos >= 1_000_000 {
        format!("{:.1}ms", nanos as f64 / 1e6)
    } else {
        format!("{}us", nanos / 1000)
    }
}

/// How many samples a function was in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionShare {
    /// As in [`Profile::frame_names`]: kernel functions end in `_[k]`,
    /// inlined ones in `_[i]`.
    pub name: String,
    /// Samples in which it was the innermost frame.
    pub self_count: u64,
    /// Samples in which it was anywhere in the stack (once per sample, even
    /// when it recursed).
    pub total_count: u64,
}

/// The `n` functions with the most self samples and the `n` with the most
/// total samples, each list in descending order, ties by name. The command
/// name (the root of [`Profile::frame_names`]) is not a function and is not
/// counted.
pub fn top_functions(profile: &Profile, n: usize) -> (Vec<FunctionShare>, Vec<FunctionShare>) {
    let ids = profile.location_frame_ids();
    // A Python function counts as one, whatever line it was at: its
    // names (`f (file:line)`) are counted as `f (file)`.
    let mut names = ids.names.clone();
    let mut counted_as: Vec<usize> = (0..names.len()).collect();
    let mut python_functions: foldhash::HashMap<String, usize> = Default::default();
    for (index, location) in profile.locations.iter().enumerate() {
        if location.kind != FrameKind::Python {
            continue;
        }
        let (Some(&id), Some(line)) = (ids.location(index).first(), location.lines.first()) else {
            continue;
        };
        let function = crate::profile::python_frame_name(&Line {
            line: None,
            ..line.clone()
        });
        let next = names.len();
        let merged = *python_functions.entry(function).or_insert_with_key(|name| {
            names.push(name.clone());
            counted_as.push(next);
            next
        });
        counted_as[id as usize] = merged;
    }
    // Self and total count by name id; `seen` holds the last sample that
    // counted a name's total, so that recursion counts once per sample.
    let mut counts = vec![(0u64, 0u64); names.len()];
    let mut seen = vec![usize::MAX; names.len()];
    for (index, sample) in profile.samples.iter().enumerate() {
        let value = profile.value(sample);
        if value == 0 {
            continue;
        }
        let frames = sample
            .locations
            .iter()
            .flat_map(|&loc| ids.location(loc).iter().rev());
        // Leaf first: the first name of the leaf location's innermost line.
        for (n, &id) in frames.enumerate() {
            let id = counted_as[id as usize];
            if n == 0 {
                counts[id].0 += value;
            }
            if seen[id] != index {
                seen[id] = index;
                counts[id].1 += value;
            }
        }
    }
    let shares: Vec<FunctionShare> = counts
        .into_iter()
        .zip(names)
        .filter(|&((_, total_count), _)| total_count > 0)
        .map(|((self_count, total_count), name)| FunctionShare {
            name,
            self_count,
            total_count,
        })
        .collect();

    let mut by_self: Vec<FunctionShare> = shares
        .iter()
        .filter(|s| s.self_count > 0)
        .cloned()
        .collect();
    by_self.sort_by(|a, b| {
        b.self_count
            .cmp(&a.self_count)
            .then_with(|| a.name.cmp(&b.name))
    });
    by_self.truncate(n);
    let mut by_total = shares;
    by_total.sort_by(|a, b| {
        b.total_count
            .cmp(&a.total_count)
            .then_with(|| a.name.cmp(&b.name))
    });
    by_total.truncate(n);
    (by_self, by_total)
}

/// One stack and the time (or samples) spent in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackShare {
    pub value: u64,
    pub state: ThreadState,
    /// User frames, root first.
    pub user: Vec<String>,
    /// The kernel function the thread waited in: the innermost kernel frame
    /// that is not part of the scheduler itself (`do_nanosleep`, `pipe_read`,
    /// `futex_wait_queue`...).
    pub kernel_reason: Option<String>,
}

/// Kernel frames that only say "the thread left the CPU".
fn is_scheduler_frame(name: &str) -> bool {
    let name = name.trim_end_matches("_[k]");
    name.contains("schedule")
        || name.starts_with("__switch_to")
        || name == "finish_task_switch"
        || name.starts_with("__cond_resched")
}

/// The `n` off-CPU stacks (blocked or waiting for a CPU) with the most time,
/// largest first, equal stacks of different threads merged.
pub fn top_off_cpu_stacks(profile: &Profile, n: usize) -> Vec<StackShare> {
    let location_names = profile.location_frame_names();
    let mut merged: HashMap<(ThreadState, Vec<String>, Option<String>), u64> = HashMap::new();
    let off_cpu = |s: &&Sample| s.state != ThreadState::OnCpu && s.nanos > 0;
    for sample in profile.samples.iter().filter(off_cpu) {
        let mut user = Vec::new();
        let mut kernel_reason = None;
        for &loc in &sample.locations {
            let location = &profile.locations[loc];
            match location.kind {
                FrameKind::Kernel => {
                    if kernel_reason.is_none()
                        && let Some(name) = location_names[loc].last()
                        && !is_scheduler_frame(name)
                    {
                        kernel_reason = Some(name.trim_end_matches("_[k]").to_string());
                    }
                }
                FrameKind::User | FrameKind::Python => {
                    user.extend(location_names[loc].iter().rev().cloned())
                }
                // The state marker is shown as the state; lost stacks stay visible.
                FrameKind::Special => {
                    if sample.state.marker_frame() != location_names[loc].last().map(|s| s.as_str())
                    {
                        user.extend(location_names[loc].iter().cloned());
                    }
                }
            }
        }
        user.reverse();
        *merged
            .entry((sample.state, user, kernel_reason))
            .or_default() += sample.nanos;
    }
    let mut stacks: Vec<StackShare> = merged
        .into_iter()
        .map(|((state, user, kernel_reason), value)| StackShare {
            value,
            state,
            user,
            kernel_reason,
        })
        .collect();
    stacks.sort_by(|a, b| {
        b.value
            .cmp(&a.value)
            .then_with(|| (&a.user, &a.kernel_reason).cmp(&(&b.user, &b.kernel_reason)))
    });
    stacks.truncate(n);
    stacks
}

/// `rows` as lines: time, share of `total`, state, and the stack as
/// `main > wait_pipe > read [pipe_read]` (at most the six innermost user frames).
pub fn format_stacks(title: &str, rows: &[StackShare], total: u64) -> String {
    let mut out = format!("{title}\n");
    if rows.is_empty() {
        out.push_str("  (none)\n");
        return out;
    }
    for row in rows {
        const SHOWN: usize = 6;
        let skip = row.user.len().saturating_sub(SHOWN);
        let mut stack = if skip > 0 {
            "... > ".to_string()
        } else {
            String::new()
        };
        stack.push_str(&row.user[skip..].join(" > "));
        if let Some(reason) = &row.kernel_reason {
            if !stack.is_empty() {
                stack.push(' ');
            }
            let _ = write!(stack, "[{reason}]");
        }
        let state = match row.state {
            ThreadState::Runnable => "waiting for CPU",
            _ => "blocked",
        };
        let _ = writeln!(
            out,
            "{:>9}  {:>6}  {state:<15}  {stack}",
            format_duration(row.value),
            percent(row.value, total)
        );
    }
    out
}

fn percent(count: u64, total: u64) -> String {
    let pct = if total == 0 {
        0.0
    } else {
        count as f64 * 100.0 / total as f64
    };
    format!("{pct:.1}%")
}

/// A small aligned table of `rows`, with percentages of `total` to one
/// decimal. The column the rows are sorted by (self when `by_self`, else
/// total) comes first.
///
/// ```text
/// Top functions by self samples
/// self      %  total      %  function
///   70  56.0%     70  56.0%  demo::hash::mix_[i]
///   30  24.0%     30  24.0%  demo::fib
/// ```
pub fn format_table(
    title: &str,
    rows: &[FunctionShare],
    total: u64,
    by_self: bool,
    unit: Unit,
) -> String {
    let mut out = format!("{title}\n");
    if rows.is_empty() {
        out.push_str("  (no samples)\n");
        return out;
    }
    let columns = |row: &FunctionShare| {
        if by_self {
            (row.self_count, row.total_count)
        } else {
            (row.total_count, row.self_count)
        }
    };
    let (first, second) = if by_self {
        ("self", "total")
    } else {
        ("total", "self")
    };
    let digits = |n: u64| unit.format(n).len();
    let width = |label: &str, pick: fn((u64, u64)) -> u64| {
        rows.iter()
            .map(|r| digits(pick(columns(r))))
            .max()
            .unwrap_or(0)
            .max(label.len())
    };
    let (w1, w2) = (width(first, |c| c.0), width(second, |c| c.1));
    let pct_width = rows
        .iter()
        .flat_map(|r| {
            let (a, b) = columns(r);
            [percent(a, total).len(), percent(b, total).len()]
        })
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "{first:>w1$}  {:>pct_width$}  {second:>w2$}  {:>pct_width$}  function",
        "%", "%"
    );
    for row in rows {
        let (a, b) = columns(row);
        let _ = writeln!(
            out,
            "{:>w1$}  {:>pct_width$}  {:>w2$}  {:>pct_width$}  {}",
            unit.format(a),
            percent(a, total),
            unit.format(b),
            percent(b, total),
            row.name
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_profile::demo_profile;
    use crate::profile::{FrameKind, Line, Location, Sample};

    fn share(name: &str, self_count: u64, total_count: u64) -> FunctionShare {
        FunctionShare {
            name: name.into(),
            self_count,
            total_count,
        }
    }

    fn location(kind: FrameKind, names: &[&str]) -> Location {
        Location {
            kind,
            address: 0,
            mapping: None,
            lines: names
                .iter()
                .map(|n| Line {
                    function: (*n).into(),
                    file: None,
                    line: None,
                })
                .collect(),
        }
    }

    fn python(function: &str, line: u32) -> Location {
        Location {
            kind: FrameKind::Python,
            address: 0,
            mapping: None,
            lines: vec![Line {
                function: function.into(),
                file: Some("/app/x.py".into()),
                line: Some(line),
            }],
        }
    }

    #[test]
    fn a_python_function_counts_once_whatever_its_lines() {
        // 0 main, 1 a:3, 2 a:4, 3 b:9
        let profile = Profile {
            locations: vec![
                location(FrameKind::User, &["main"]),
                python("a", 3),
                python("a", 4),
                python("b", 9),
            ],
            samples: vec![
                Sample {
                    locations: vec![1, 0],
                    count: 2,
                    ..Default::default()
                },
                Sample {
                    locations: vec![2, 0],
                    count: 3,
                    ..Default::default()
                },
                // a calls b on line 4.
                Sample {
                    locations: vec![3, 2, 0],
                    count: 1,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let (by_self, by_total) = top_functions(&profile, 10);
        let of = |v: &[FunctionShare], name: &str| {
            v.iter()
                .find(|s| s.name == name)
                .map(|s| (s.self_count, s.total_count))
        };
        assert_eq!(of(&by_self, "a (/app/x.py)"), Some((5, 6)), "{by_self:?}");
        assert_eq!(of(&by_total, "b (/app/x.py)"), Some((1, 1)), "{by_total:?}");
        assert!(
            by_total.iter().all(|s| !s.name.contains(":3)")),
            "{by_total:?}"
        );
    }

    #[test]
    fn self_and_total_with_recursion() {
        // 0 main, 1 f, 2 g, 3 [inl, h] (inl inlined into h), 4 kernel k
        let profile = Profile {
            locations: vec![
                location(FrameKind::User, &["main"]),
                location(FrameKind::User, &["f"]),
                location(FrameKind::User, &["g"]),
                location(FrameKind::User, &["inl", "h"]),
                location(FrameKind::Kernel, &["k"]),
            ],
            samples: vec![
                // main > f > f > f (recursion): f self 4, total 4, not 12.
                Sample {
                    pid: 1,
                    tid: 1,
                    comm: "main".into(),
                    locations: vec![1, 1, 1, 0],
                    count: 4,
                    ..Default::default()
                },
                // main > f > g > f
                Sample {
                    pid: 1,
                    tid: 2,
                    comm: "x".into(),
                    locations: vec![1, 2, 1, 0],
                    count: 2,
                    ..Default::default()
                },
                // main > h > inl (innermost line of the leaf location) > k
                Sample {
                    pid: 1,
                    tid: 1,
                    comm: "x".into(),
                    locations: vec![4, 3, 0],
                    count: 3,
                    ..Default::default()
                },
                Sample {
                    pid: 1,
                    tid: 1,
                    comm: "x".into(),
                    locations: vec![3, 0],
                    count: 1,
                    ..Default::default()
                },
                Sample {
                    pid: 1,
                    tid: 1,
                    comm: "x".into(),
                    locations: vec![2, 0],
                    count: 0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let (by_self, by_total) = top_functions(&profile, 10);
        assert_eq!(
            by_self,
            [
                share("f", 6, 6),
                share("k_[k]", 3, 3),
                share("inl_[i]", 1, 4)
            ]
        );
        assert_eq!(
            by_total,
            [
                share("main", 0, 10),
                share("f", 6, 6),
                share("h", 0, 4),
                share("inl_[i]", 1, 4),
                share("k_[k]", 3, 3),
                share("g", 0, 2),
            ]
        );
        // The command name ("main" for the first sample, "x" otherwise) is not a function.
        assert!(by_total.iter().all(|s| s.name != "x"));

        let (by_self, by_total) = top_functions(&profile, 2);
        assert_eq!(by_self, [share("f", 6, 6), share("k_[k]", 3, 3)]);
        assert_eq!(by_total, [share("main", 0, 10), share("f", 6, 6)]);
    }

    #[test]
    fn demo_profile_top_functions() {
        let profile = demo_profile();
        let (by_self, by_total) = top_functions(&profile, 3);
        assert_eq!(
            by_self,
            [
                share("demo::hash::mix_[i]", 70, 70),
                share("demo::fib", 30, 30),
                share("vfs_write_[k]", 15, 15)
            ]
        );
        assert_eq!(
            by_total,
            [
                share("__libc_start_call_main", 0, 117),
                share("_start", 0, 117),
                share("main", 0, 117)
            ]
        );
    }

    #[test]
    fn empty_profile() {
        assert_eq!(top_functions(&Profile::default(), 5), (vec![], vec![]));
        assert_eq!(
            format_table("Top", &[], 0, true, Unit::Samples),
            "Top\n  (no samples)\n"
        );
    }

    #[test]
    fn table_is_aligned_with_percentages() {
        let rows = [share("hot", 1000, 1200), share("warm", 5, 12000)];
        let table = format_table("By self", &rows, 12000, true, Unit::Samples);
        assert_eq!(
            table,
            "By self\n\
             self       %  total       %  function\n\
             1000    8.3%   1200   10.0%  hot\n   \
                5    0.0%  12000  100.0%  warm\n"
        );
        let table = format_table("By total", &rows[1..], 12000, false, Unit::Samples);
        assert_eq!(
            table,
            "By total\ntotal       %  self       %  function\n12000  100.0%     5    0.0%  warm\n"
        );
    }

    #[test]
    fn demo_table_as_documented() {
        let profile = demo_profile();
        let (by_self, _) = top_functions(&profile, 2);
        assert_eq!(
            format_table(
                "Top functions by self samples",
                &by_self,
                profile.total_samples(),
                true,
                Unit::Samples
            ),
            "Top functions by self samples\n\
             self      %  total      %  function\n  \
               70  56.0%     70  56.0%  demo::hash::mix_[i]\n  \
               30  24.0%     30  24.0%  demo::fib\n"
        );
    }

    #[test]
    fn zero_total_gives_zero_percent() {
        let table = format_table("T", &[share("f", 0, 0)], 0, true, Unit::Samples);
        assert!(table.contains("0.0%"), "{table}");
        assert!(!table.contains("NaN"), "{table}");
    }

    #[test]
    fn time_tables_show_durations() {
        let rows = [
            share("wait", 2_500_000_000, 3_000_000_000),
            share("poll", 1_500_000, 40_000),
        ];
        let table = format_table("By self", &rows, 5_000_000_000, true, Unit::Nanos);
        let expected = [
            "By self",
            "  self      %   total      %  function",
            "2.500s  50.0%  3.000s  60.0%  wait",
            " 1.5ms   0.0%    40us   0.0%  poll",
            "",
        ];
        assert_eq!(table, expected.join("\n"));
    }

    #[test]
    fn off_cpu_stacks_merge_threads_and_name_the_kernel_reason() {
        // 0 [blocked], 1 [waiting for CPU], 2 schedule, 3 do_nanosleep,
        // 4 nanosleep (libc), 5 wait_sleep, 6 main, 7 spin
        let marker = |name: &str| location(FrameKind::Special, &[name]);
        let profile = Profile {
            locations: vec![
                marker("[blocked]"),
                marker("[waiting for CPU]"),
                location(FrameKind::Kernel, &["schedule"]),
                location(FrameKind::Kernel, &["do_nanosleep"]),
                location(FrameKind::User, &["nanosleep"]),
                location(FrameKind::User, &["wait_sleep"]),
                location(FrameKind::User, &["main"]),
                location(FrameKind::User, &["spin"]),
            ],
            samples: vec![
                Sample {
                    tid: 1,
                    locations: vec![0, 2, 3, 4, 5, 6],
                    count: 10,
                    nanos: 100_000_000,
                    state: ThreadState::Blocked,
                    ..Default::default()
                },
                Sample {
                    tid: 2,
                    locations: vec![0, 2, 3, 4, 5, 6],
                    count: 5,
                    nanos: 50_000_000,
                    state: ThreadState::Blocked,
                    ..Default::default()
                },
                Sample {
                    tid: 1,
                    locations: vec![1, 2, 7, 6],
                    count: 3,
                    nanos: 70_000_000,
                    state: ThreadState::Runnable,
                    ..Default::default()
                },
                // On CPU: not a blocking stack.
                Sample {
                    tid: 1,
                    locations: vec![7, 6],
                    count: 9,
                    nanos: 900_000_000,
                    state: ThreadState::OnCpu,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let stacks = top_off_cpu_stacks(&profile, 5);
        assert_eq!(stacks.len(), 2);
        assert_eq!(stacks[0].value, 150_000_000);
        assert_eq!(stacks[0].user, ["main", "wait_sleep", "nanosleep"]);
        assert_eq!(stacks[0].kernel_reason.as_deref(), Some("do_nanosleep"));
        assert_eq!(stacks[1].state, ThreadState::Runnable);
        assert_eq!(stacks[1].kernel_reason, None);
        let text = format_stacks("Top", &stacks, 220_000_000);
        assert_eq!(
            text,
            "Top\n\
             \x20 150.0ms   68.2%  blocked          main > wait_sleep > nanosleep [do_nanosleep]\n\
             \x20  70.0ms   31.8%  waiting for CPU  main > spin\n"
        );
        assert_eq!(top_off_cpu_stacks(&profile, 1).len(), 1);
    }
}

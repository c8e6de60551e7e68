//! The text summary printed after recording: the functions with the most
//! samples, by self and by total.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::profile::Profile;

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
    let location_names = profile.location_frame_names();
    let mut counts: HashMap<&str, (u64, u64)> = HashMap::new();
    for sample in profile.samples.iter().filter(|s| s.count > 0) {
        // Leaf first: the first name of the leaf location's innermost line.
        let mut frames = sample
            .locations
            .iter()
            .flat_map(|&loc| location_names[loc].iter().rev());
        if let Some(leaf) = frames.next() {
            counts.entry(leaf).or_default().0 += sample.count;
        }
        let distinct: HashSet<&str> = sample
            .locations
            .iter()
            .flat_map(|&loc| location_names[loc].iter().map(String::as_str))
            .collect();
        for name in distinct {
            counts.entry(name).or_default().1 += sample.count;
        }
    }
    let shares: Vec<FunctionShare> = counts
        .into_iter()
        .map(|(name, (self_count, total_count))| FunctionShare {
            name: name.to_string(),
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
pub fn format_table(title: &str, rows: &[FunctionShare], total: u64, by_self: bool) -> String {
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
    let digits = |n: u64| n.to_string().len();
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
            "{a:>w1$}  {:>pct_width$}  {b:>w2$}  {:>pct_width$}  {}",
            percent(a, total),
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
        assert_eq!(format_table("Top", &[], 0, true), "Top\n  (no samples)\n");
    }

    #[test]
    fn table_is_aligned_with_percentages() {
        let rows = [share("hot", 1000, 1200), share("warm", 5, 12000)];
        let table = format_table("By self", &rows, 12000, true);
        assert_eq!(
            table,
            "By self\n\
             self       %  total       %  function\n\
             1000    8.3%   1200   10.0%  hot\n   \
                5    0.0%  12000  100.0%  warm\n"
        );
        let table = format_table("By total", &rows[1..], 12000, false);
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
                true
            ),
            "Top functions by self samples\n\
             self      %  total      %  function\n  \
               70  56.0%     70  56.0%  demo::hash::mix_[i]\n  \
               30  24.0%     30  24.0%  demo::fib\n"
        );
    }

    #[test]
    fn zero_total_gives_zero_percent() {
        let table = format_table("T", &[share("f", 0, 0)], 0, true);
        assert!(table.contains("0.0%"), "{table}");
        assert!(!table.contains("NaN"), "{table}");
    }
}

//! Joins the FDEs of one file into a single sorted table: picks one FDE
//! where several cover the same code, marks the gaps between FDEs, and
//! merges neighbouring rows with the same rule (the kernel's binary search
//! gets shorter, and the table smaller).

use profiler_common::UnwindRow;

use crate::TableStats;
use crate::convert::Fde;

/// The table of `eh_frame` FDEs completed with `debug_frame` FDEs for code
/// `.eh_frame` does not cover.
pub(crate) fn assemble(
    eh_frame: Vec<Fde>,
    debug_frame: Vec<Fde>,
    stats: &mut TableStats,
) -> Vec<UnwindRow> {
    let eh_frame = without_overlaps(eh_frame, stats);
    let debug_frame = without_overlaps(debug_frame, stats);
    let mut fdes = Vec::with_capacity(eh_frame.len() + debug_frame.len());
    for fde in debug_frame {
        if overlaps_any(&eh_frame, &fde) {
            stats.fdes_dropped += 1;
        } else {
            stats.fdes_debug_frame += 1;
            fdes.push(fde);
        }
    }
    fdes.extend(eh_frame);
    fdes.sort_unstable_by_key(|f| f.start);
    emit(&fdes, stats)
}

/// `fdes` sorted by start, each overlapping none before it. Of overlapping
/// FDEs the one starting first is kept; at the same start the longer, then
/// the one earlier in its section, so that the result does not depend on
/// the order the linker happened to write them in.
fn without_overlaps(mut fdes: Vec<Fde>, stats: &mut TableStats) -> Vec<Fde> {
    fdes.sort_unstable_by(|a, b| {
        (a.start, b.end, a.section_offset).cmp(&(b.start, a.end, b.section_offset))
    });
    let mut kept: Vec<Fde> = Vec::with_capacity(fdes.len());
    for fde in fdes {
        if kept.last().is_some_and(|last| fde.start < last.end) {
            stats.fdes_dropped += 1;
        } else {
            kept.push(fde);
        }
    }
    kept
}

/// Whether `fde` overlaps one of `sorted` (sorted by start, not overlapping).
fn overlaps_any(sorted: &[Fde], fde: &Fde) -> bool {
    // The last FDE starting before `fde` ends is the only candidate.
    let i = sorted.partition_point(|f| f.start < fde.end);
    i > 0 && sorted[i - 1].end > fde.start
}

/// The rows of `fdes` (sorted, not overlapping), with a `NONE` row where
/// an FDE ends and the next does not start right there, merged.
fn emit(fdes: &[Fde], stats: &mut TableStats) -> Vec<UnwindRow> {
    let mut rows = Vec::with_capacity(fdes.iter().map(|f| f.rows.len()).sum::<usize>() / 2);
    for (i, fde) in fdes.iter().enumerate() {
        for row in fde.rows.iter().filter(|r| r.pc < fde.end) {
            push(&mut rows, *row);
        }
        if fdes.get(i + 1).is_none_or(|next| next.start != fde.end) {
            stats.rows_before_merge += 1;
            push(
                &mut rows,
                UnwindRow {
                    pc: fde.end,
                    ..UnwindRow::default()
                },
            );
        }
    }
    rows
}

/// Appends `row` unless it repeats the rule in force; a row at the same pc
/// as the last replaces it (the last one applied to no instruction).
fn push(rows: &mut Vec<UnwindRow>, row: UnwindRow) {
    if rows.last().is_some_and(|last| last.pc == row.pc) {
        rows.pop();
    }
    if rows.last().is_some_and(|last| same_rule(last, &row)) {
        return;
    }
    rows.push(row);
}

fn same_rule(a: &UnwindRow, b: &UnwindRow) -> bool {
    (a.kind, a.cfa_offset, a.rbp_offset) == (b.kind, b.cfa_offset, b.rbp_offset)
}

/// Rows per CFA kind (`cfa::*`, indexed by the low nibble).
pub(crate) fn count_kinds(rows: &[UnwindRow]) -> [usize; 16] {
    let mut counts = [0; 16];
    for row in rows {
        counts[row.cfa_kind() as usize] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::{cfa, rbp_rule};

    fn rsp(pc: u32, offset: u16) -> UnwindRow {
        UnwindRow {
            pc,
            cfa_offset: offset,
            kind: UnwindRow::make_kind(cfa::RSP, rbp_rule::SAME),
            rbp_offset: 0,
        }
    }

    fn none(pc: u32) -> UnwindRow {
        UnwindRow {
            pc,
            ..UnwindRow::default()
        }
    }

    fn fde(start: u32, end: u32, section_offset: usize, rows: Vec<UnwindRow>) -> Fde {
        Fde {
            start,
            end,
            section_offset,
            rows,
        }
    }

    #[test]
    fn gaps_get_none_rows_and_equal_neighbours_merge() {
        let mut stats = TableStats::default();
        let rows = assemble(
            vec![
                fde(0x30, 0x40, 2, vec![rsp(0x30, 8)]),
                fde(
                    0x10,
                    0x20,
                    0,
                    vec![rsp(0x10, 8), rsp(0x11, 16), rsp(0x1f, 8)],
                ),
                // Right after the first: its rsp+8 continues the previous row.
                fde(0x20, 0x30, 1, vec![rsp(0x20, 8), rsp(0x24, 16)]),
            ],
            vec![],
            &mut stats,
        );
        assert_eq!(
            rows,
            vec![
                rsp(0x10, 8),
                rsp(0x11, 16),
                rsp(0x1f, 8),
                rsp(0x24, 16),
                rsp(0x30, 8),
                none(0x40)
            ]
        );
        assert_eq!(stats.fdes_dropped, 0);
        assert_eq!(stats.rows_before_merge, 1);
    }

    #[test]
    fn overlapping_fdes_keep_one_deterministically() {
        let input = vec![
            fde(0x10, 0x20, 5, vec![rsp(0x10, 16)]),
            fde(0x10, 0x20, 1, vec![rsp(0x10, 8)]),
            fde(0x18, 0x28, 0, vec![rsp(0x18, 32)]),
        ];
        for order in [input.clone(), input.into_iter().rev().collect()] {
            let mut stats = TableStats::default();
            let rows = assemble(order, vec![], &mut stats);
            assert_eq!(rows, vec![rsp(0x10, 8), none(0x20)]);
            assert_eq!(stats.fdes_dropped, 2);
        }
    }

    #[test]
    fn debug_frame_fills_only_what_eh_frame_leaves() {
        let mut stats = TableStats::default();
        let rows = assemble(
            vec![fde(0x10, 0x20, 0, vec![rsp(0x10, 8)])],
            vec![
                fde(0x10, 0x20, 0, vec![rsp(0x10, 24)]),
                fde(0x20, 0x30, 1, vec![rsp(0x20, 16)]),
            ],
            &mut stats,
        );
        assert_eq!(rows, vec![rsp(0x10, 8), rsp(0x20, 16), none(0x30)]);
        assert_eq!(stats.fdes_dropped, 1);
        assert_eq!(stats.fdes_debug_frame, 1);
    }
}

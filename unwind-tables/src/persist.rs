//! An on-disk cache of built tables, one file per key (say, a build ID), so
//! that a restarted profiler need not parse every library again.
//!
//! Format, little-endian: magic `PUWT`, `u32` version, `u64` row count,
//! the [`TableStats`] as `u64`s, a `u64` FNV-1a checksum of the stats and
//! rows, then 8 bytes per row (`pc` u32, `cfa_offset` u16, `kind` u8,
//! `rbp_offset` i8). A file that does not check out in every respect is
//! ignored: the kernel follows these rows without questioning them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use profiler_common::UnwindRow;

use crate::{Error, TableStats, UnsupportedCauses, UnwindTable};

const MAGIC: [u8; 4] = *b"PUWT";
/// Bumped whenever the layout or the meaning of a row changes.
const VERSION: u32 = 2;
const STATS_WORDS: usize = 7 + 16 + 5;
const HEADER: usize = 4 + 4 + 8 + 8 * STATS_WORDS + 8;
const ROW: usize = 8;

/// The cached table for `key` in `dir`, or `None` when there is none or it
/// is unreadable, of another version, short, or fails its checksum.
pub fn load(dir: &Path, key: &str) -> Option<UnwindTable> {
    let data = std::fs::read(path(dir, key).ok()?).ok()?;
    decode(&data)
}

/// Writes `table` for `key` into `dir` (created if missing). The file is
/// written under a temporary name and renamed, so that a reader sees either
/// the old file or the whole new one.
pub fn store(dir: &Path, key: &str, table: &UnwindTable) -> Result<(), Error> {
    let target = path(dir, key)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{key}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&encode(table))?;
        file.sync_all()
    })();
    if let Err(source) = written.and_then(|()| std::fs::rename(&temp, &target)) {
        let _ = std::fs::remove_file(&temp);
        return Err(io(&target)(source));
    }
    Ok(())
}

fn path(dir: &Path, key: &str) -> Result<PathBuf, Error> {
    let valid = !key.is_empty()
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        return Err(Error::InvalidKey {
            key: key.to_string(),
        });
    }
    Ok(dir.join(format!("{key}.uwt")))
}

fn stats_words(stats: &TableStats) -> [u64; STATS_WORDS] {
    let u = &stats.unsupported;
    let mut words = [0u64; STATS_WORDS];
    let fixed = [
        stats.fdes,
        stats.fdes_debug_frame,
        stats.fdes_dropped,
        stats.fdes_skipped,
        stats.rows_before_merge,
        stats.eh_frame_bytes,
        stats.debug_frame_bytes,
    ];
    let causes = [
        u.cfa_register,
        u.cfa_expression,
        u.cfa_offset,
        u.return_address,
        u.rbp,
    ];
    for (word, value) in words
        .iter_mut()
        .zip(fixed.iter().chain(&stats.kinds).chain(&causes))
    {
        *word = *value as u64;
    }
    words
}

fn stats_from_words(words: &[u64; STATS_WORDS]) -> TableStats {
    let w = |i: usize| words[i] as usize;
    let mut kinds = [0; 16];
    for (i, kind) in kinds.iter_mut().enumerate() {
        *kind = w(7 + i);
    }
    TableStats {
        fdes: w(0),
        fdes_debug_frame: w(1),
        fdes_dropped: w(2),
        fdes_skipped: w(3),
        rows_before_merge: w(4),
        eh_frame_bytes: w(5),
        debug_frame_bytes: w(6),
        kinds,
        unsupported_rows: kinds[profiler_common::cfa::UNSUPPORTED as usize],
        unsupported: UnsupportedCauses {
            cfa_register: w(23),
            cfa_expression: w(24),
            cfa_offset: w(25),
            return_address: w(26),
            rbp: w(27),
        },
    }
}

fn encode(table: &UnwindTable) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 * STATS_WORDS + ROW * table.rows.len());
    for word in stats_words(&table.stats) {
        body.extend_from_slice(&word.to_le_bytes());
    }
    for row in &table.rows {
        body.extend_from_slice(&row.pc.to_le_bytes());
        body.extend_from_slice(&row.cfa_offset.to_le_bytes());
        body.push(row.kind);
        body.push(row.rbp_offset as u8);
    }
    let stats_end = 8 * STATS_WORDS;
    let mut out = Vec::with_capacity(HEADER + body.len() - stats_end);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(table.rows.len() as u64).to_le_bytes());
    out.extend_from_slice(&body[..stats_end]);
    out.extend_from_slice(&checksum(&body).to_le_bytes());
    out.extend_from_slice(&body[stats_end..]);
    out
}

fn decode(data: &[u8]) -> Option<UnwindTable> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?));
    if data.get(..4)? != MAGIC || u32_at(4)? != VERSION {
        return None;
    }
    let count = usize::try_from(u64_at(8)?).ok()?;
    if data.len() != HEADER.checked_add(count.checked_mul(ROW)?)? {
        return None;
    }
    let stats_bytes = &data[16..16 + 8 * STATS_WORDS];
    let rows_bytes = &data[HEADER..];
    let mut hash = Fnv::default();
    hash.write(stats_bytes);
    hash.write(rows_bytes);
    if hash.0 != u64_at(HEADER - 8)? {
        return None;
    }
    let mut words = [0u64; STATS_WORDS];
    for (i, word) in words.iter_mut().enumerate() {
        *word = u64_at(16 + 8 * i)?;
    }
    let rows: Vec<UnwindRow> = rows_bytes
        .chunks_exact(ROW)
        .map(|b| UnwindRow {
            pc: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            cfa_offset: u16::from_le_bytes([b[4], b[5]]),
            kind: b[6],
            rbp_offset: b[7] as i8,
        })
        .collect();
    // A table out of order would send the kernel's binary search astray.
    if !rows.windows(2).all(|w| w[0].pc < w[1].pc) {
        return None;
    }
    Some(UnwindTable {
        rows,
        stats: stats_from_words(&words),
    })
}

fn checksum(data: &[u8]) -> u64 {
    let mut hash = Fnv::default();
    hash.write(data);
    hash.0
}

/// 64-bit FNV-1a: enough to catch a torn or damaged file, with no dependency.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::{cfa, rbp_rule};

    fn table() -> UnwindTable {
        let rows = vec![
            UnwindRow {
                pc: 0x1000,
                cfa_offset: 8,
                kind: UnwindRow::make_kind(cfa::RSP, rbp_rule::SAME),
                rbp_offset: 0,
            },
            UnwindRow {
                pc: 0x1004,
                cfa_offset: 16,
                kind: UnwindRow::make_kind(cfa::RBP, rbp_rule::AT_CFA),
                rbp_offset: -2,
            },
            UnwindRow {
                pc: 0x1010,
                cfa_offset: -8i16 as u16,
                kind: UnwindRow::make_kind(cfa::DEREF_RBP, rbp_rule::UNSUPPORTED),
                rbp_offset: 0,
            },
            UnwindRow {
                pc: 0x1020,
                ..UnwindRow::default()
            },
        ];
        let mut stats = TableStats {
            fdes: 3,
            fdes_debug_frame: 1,
            fdes_dropped: 2,
            fdes_skipped: 4,
            rows_before_merge: 9,
            kinds: optimize_kinds(&rows),
            unsupported: UnsupportedCauses {
                cfa_register: 1,
                cfa_expression: 2,
                cfa_offset: 3,
                return_address: 4,
                rbp: 5,
            },
            eh_frame_bytes: 1234,
            debug_frame_bytes: 567,
            ..TableStats::default()
        };
        stats.unsupported_rows = stats.kinds[cfa::UNSUPPORTED as usize];
        UnwindTable { rows, stats }
    }

    fn optimize_kinds(rows: &[UnwindRow]) -> [usize; 16] {
        crate::optimize::count_kinds(rows)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "unwind-tables-persist-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trip() {
        let dir = temp_dir("round-trip");
        let t = table();
        assert_eq!(load(&dir, "abc"), None);
        store(&dir, "abc", &t).unwrap();
        assert_eq!(load(&dir, "abc"), Some(t.clone()));
        // Replacing an entry leaves no temporary file behind.
        store(&dir, "abc", &UnwindTable::default()).unwrap();
        assert_eq!(load(&dir, "abc"), Some(UnwindTable::default()));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("abc.uwt")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_files_are_ignored() {
        let dir = temp_dir("damaged");
        let t = table();
        store(&dir, "k", &t).unwrap();
        let file = dir.join("k.uwt");
        let good = std::fs::read(&file).unwrap();
        assert_eq!(decode(&good), Some(t));

        let mut cases: Vec<(String, Vec<u8>)> = vec![
            ("empty".into(), vec![]),
            ("short".into(), good[..good.len() - 1].to_vec()),
            ("header only".into(), good[..HEADER].to_vec()),
            ("longer".into(), [&good[..], &[0u8; 8]].concat()),
        ];
        // Every single flipped byte must be caught: header, stats and rows.
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            cases.push((format!("byte {at} flipped"), bad));
        }
        for (what, bytes) in cases {
            std::fs::write(&file, &bytes).unwrap();
            assert_eq!(load(&dir, "k"), None, "{what}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_cannot_leave_the_directory() {
        let dir = temp_dir("keys");
        for key in ["", "../x", "a/b", ".hidden"] {
            assert!(matches!(
                store(&dir, key, &UnwindTable::default()),
                Err(Error::InvalidKey { .. })
            ));
            assert_eq!(load(&dir, key), None);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

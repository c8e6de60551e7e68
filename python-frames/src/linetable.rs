//! Decoding CPython 3.11+'s location table (`co_linetable`, PEP 626/657;
//! `Objects/locations.md` in CPython's sources) to the line of an
//! instruction.
//!
//! The table is a run of entries, each starting with a byte whose top bit
//! is set: `code = (byte >> 3) & 15`, and the entry covers
//! `(byte & 7) + 1` code units. By code:
//! - 15: no location;
//! - 14: long form: line delta (svarint), end-line delta, column + 1 and
//!   end column + 1 (varints);
//! - 13: no column: line delta (svarint);
//! - 10-12: one-line form: line delta `code - 10`, then column and end
//!   column bytes;
//! - 0-9: short form: same line, one byte of columns.
//!
//! Varints are 6-bit chunks, least significant first, `0x40` meaning more
//! follow; an svarint `v` is `-(v >> 1)` when `v & 1`, else `v >> 1`. The
//! line starts at `co_firstlineno`; deltas accumulate.

/// The line of the instruction at code unit `index` in `table` (first line
/// `first_line`), or `None` when it has no line (code 15) or is beyond the
/// table, or the table is malformed there.
pub fn line_at(table: &[u8], first_line: u32, index: u32) -> Option<u32> {
    let mut reader = Reader { bytes: table };
    let mut line = i64::from(first_line);
    let mut start = 0u64;
    while let Some(first) = reader.byte() {
        if first & 0x80 == 0 {
            return None;
        }
        let code = (first >> 3) & 15;
        let length = u64::from(first & 7) + 1;
        let has_line = match code {
            15 => false,
            14 => {
                line += reader.svarint()?;
                reader.varint()?; // end line delta
                reader.varint()?; // column + 1
                reader.varint()?; // end column + 1
                true
            }
            13 => {
                line += reader.svarint()?;
                true
            }
            10..=12 => {
                line += i64::from(code - 10);
                reader.byte()?;
                reader.byte()?;
                true
            }
            _ => {
                reader.byte()?;
                true
            }
        };
        if u64::from(index) < start + length {
            return has_line.then(|| u32::try_from(line).ok()).flatten();
        }
        start += length;
    }
    None
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    /// A byte inside an entry (never one with the entry-start bit).
    fn inner_byte(&mut self) -> Option<u8> {
        self.byte().filter(|b| b & 0x80 == 0)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut read = self.inner_byte()?;
        let mut value = u64::from(read & 63);
        let mut shift = 0;
        while read & 64 != 0 {
            read = self.inner_byte()?;
            shift += 6;
            if shift > 42 {
                return None;
            }
            value |= u64::from(read & 63) << shift;
        }
        Some(value)
    }

    fn svarint(&mut self) -> Option<i64> {
        let value = self.varint()?;
        let magnitude = (value >> 1) as i64;
        Some(if value & 1 != 0 {
            -magnitude
        } else {
            magnitude
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry's first byte.
    fn entry(code: u8, length: u8) -> u8 {
        0x80 | (code << 3) | (length - 1)
    }

    #[test]
    fn each_form() {
        let table = [
            // 2 units on the first line (short form 0: one column byte).
            entry(0, 2),
            0x05,
            // 1 unit one line down (one-line form 11: two column bytes).
            entry(11, 1),
            4,
            9,
            // 3 units 300 lines further (no-column form: svarint 600 = 0x18 | 0x40, 0x09).
            entry(13, 3),
            0x58,
            0x09,
            // 1 unit without a location.
            entry(15, 1),
            // 1 unit 5 lines back (long form: svarint 11, end delta 0, columns 1 and 2).
            entry(14, 1),
            11,
            0,
            1,
            2,
            // 8 units on that line (one-line form 10).
            entry(10, 8),
            0,
            0,
        ];
        let lines: Vec<Option<u32>> = (0..17).map(|i| line_at(&table, 10, i)).collect();
        assert_eq!(
            lines,
            [
                Some(10),
                Some(10),
                Some(11),
                Some(311),
                Some(311),
                Some(311),
                None,
                Some(306),
                Some(306),
                Some(306),
                Some(306),
                Some(306),
                Some(306),
                Some(306),
                Some(306),
                Some(306),
                None,
            ]
        );
    }

    #[test]
    fn malformed_tables_end_the_lines() {
        // A continuation byte where an entry should start.
        assert_eq!(line_at(&[entry(0, 1), 0, 0x05], 1, 1), None);
        // A varint cut short.
        assert_eq!(line_at(&[entry(13, 1), 0x40], 1, 0), None);
        // An entry start inside a varint.
        assert_eq!(line_at(&[entry(13, 1), 0x80], 1, 0), None);
        // A line below 0.
        assert_eq!(line_at(&[entry(13, 1), 0x05], 1, 0), None);
        assert_eq!(line_at(&[], 1, 0), None);
    }
}

//! `profiler-demo`: a small CPU-bound program for a first flame graph.
//!
//! It stands in for "real code" with a known shape: for about three seconds
//! (or the number of seconds given as its only argument) it parses a batch
//! of CSV records and renders them as justified text, over and over:
//!
//! ```text
//! main
//! └─ run
//!    ├─ parse_records   ~40% of the CPU time: ~30% in checksum, the rest its own
//!    │  └─ checksum
//!    └─ render          ~45%: ~35% in layout, the rest its own
//!       └─ layout
//! ```
//!
//! (the rest: copying bytes, and the kernel handing out memory for each
//! batch's buffers),
//! so a flame graph of it should show those names, in that nesting, in about
//! those widths. Every function on the path is `#[inline(never)]` and does
//! some work after each call it makes: an inlined function has no frame of
//! its own, and a call in tail position becomes a jump that leaves its
//! caller off the stack. `black_box` keeps the optimizer from hoisting the
//! repeated work out of the loop, since the input is the same every batch.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Records per batch.
const RECORDS: usize = 2_000;
/// Width of the rendered text, in bytes.
const WIDTH: usize = 72;

fn main() {
    let seconds: f64 = match std::env::args().nth(1) {
        None => 3.0,
        Some(arg) => match arg.parse() {
            Ok(s) if s >= 0.0 => s,
            _ => {
                eprintln!("usage: profiler-demo [SECONDS]   (default 3)");
                std::process::exit(2);
            }
        },
    };
    let summary = run(Duration::from_secs_f64(seconds));
    println!(
        "profiler-demo: {} batches of {RECORDS} records, checksum {:016x}, {} lines rendered",
        summary.batches, summary.checksum, summary.lines
    );
}

struct Summary {
    batches: u64,
    checksum: u64,
    lines: u64,
}

/// Parses and renders the same input until `duration` has passed.
#[inline(never)]
fn run(duration: Duration) -> Summary {
    let input = make_input(RECORDS);
    let start = Instant::now();
    let mut summary = Summary {
        batches: 0,
        checksum: 0,
        lines: 0,
    };
    while start.elapsed() < duration {
        let sum = parse_records(black_box(&input));
        summary.checksum = summary.checksum.rotate_left(7) ^ sum;
        let lines = render(black_box(&input));
        summary.lines += lines as u64;
        summary.batches += 1;
    }
    summary
}

/// `RECORDS` lines of `id,name,value`, the same every run.
fn make_input(records: usize) -> String {
    const NAMES: [&str; 8] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut out = String::new();
    for id in 0..records {
        // xorshift: deterministic values without a dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let name = NAMES[(seed % NAMES.len() as u64) as usize];
        let value = (seed >> 20) as i64 % 100_000 - 50_000;
        out.push_str(&format!("{id},{name},{value}\n"));
    }
    out
}

/// Parses every record by hand (no allocation per field), sums its fields,
/// and checksums the whole input.
#[inline(never)]
fn parse_records(input: &str) -> u64 {
    let mut records = Vec::with_capacity(RECORDS);
    let (mut field, mut number, mut negative) = (0, 0i64, false);
    let (mut id, mut name_hash) = (0u64, 0u64);
    for &byte in input.as_bytes() {
        match byte {
            b',' | b'\n' => {
                match field {
                    0 => id = number as u64,
                    1 => {}
                    _ => {
                        let value = if negative { -number } else { number };
                        records.push((id, name_hash, value));
                    }
                }
                field = if byte == b'\n' { 0 } else { field + 1 };
                (number, negative, name_hash) = (0, false, 0);
            }
            b'-' => negative = true,
            b'0'..=b'9' => number = number * 10 + i64::from(byte - b'0'),
            _ => name_hash = name_hash.wrapping_mul(0x100_0000_01b3) ^ u64::from(byte),
        }
    }
    let crc = checksum(input.as_bytes());
    records.iter().fold(crc, |acc, &(id, name, value)| {
        acc.rotate_left(5) ^ id ^ name ^ value as u64
    })
}

/// CRC-64/XZ, four bits at a time from a 16-entry table: the widest frame
/// under `parse_records`.
#[inline(never)]
fn checksum(bytes: &[u8]) -> u64 {
    const POLY: u64 = 0xc96c_5795_d787_0f42;
    const TABLE: [u64; 16] = {
        let mut table = [0u64; 16];
        let mut i = 0;
        while i < 16 {
            let mut crc = i as u64;
            let mut bit = 0;
            while bit < 4 {
                crc = (crc >> 1) ^ (POLY & (crc & 1).wrapping_neg());
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u64;
    for &byte in bytes {
        crc ^= u64::from(byte);
        crc = (crc >> 4) ^ TABLE[(crc & 15) as usize];
        crc = (crc >> 4) ^ TABLE[(crc & 15) as usize];
    }
    !crc
}

/// Splits the input into words, breaks them into lines, and draws the lines
/// into a text buffer; returns the number of lines.
#[inline(never)]
fn render(input: &str) -> usize {
    let mut words = Vec::new();
    let mut start = 0;
    for (i, byte) in input.bytes().enumerate() {
        if byte == b',' || byte == b'\n' {
            if i > start {
                words.push(&input[start..i]);
            }
            start = i + 1;
        }
    }
    let breaks = layout(&words, WIDTH);
    let mut text = Vec::with_capacity(input.len() * 2);
    let mut first = 0;
    for &end in &breaks {
        for (i, word) in words[first..end].iter().enumerate() {
            if i > 0 {
                text.push(b' ');
            }
            text.extend_from_slice(word.as_bytes());
        }
        text.push(b'\n');
        first = end;
    }
    black_box(&text);
    breaks.len()
}

/// Breaks `words` into lines at most `width` bytes wide with the least
/// raggedness (the sum of the squares of each line's slack but the last):
/// the dynamic program of Knuth and Plass without stretch. Returns the
/// index after each line's last word.
#[inline(never)]
fn layout(words: &[&str], width: usize) -> Vec<usize> {
    let n = words.len();
    // cost[i]: least cost of setting words[i..]; next[i]: where its first
    // line ends.
    let mut cost = vec![0u64; n + 1];
    let mut next = vec![n; n + 1];
    for i in (0..n).rev() {
        let mut best = u64::MAX;
        let mut len = 0usize;
        for j in i..n {
            len += words[j].len() + usize::from(j > i);
            if len > width && j > i {
                break;
            }
            let slack = width.saturating_sub(len) as u64;
            let line = if j + 1 == n { 0 } else { slack * slack };
            let total = line.saturating_add(cost[j + 1]);
            if total < best {
                best = total;
                next[i] = j + 1;
            }
        }
        cost[i] = best;
    }
    let mut breaks = Vec::new();
    let mut i = 0;
    while i < n {
        i = next[i];
        breaks.push(i);
    }
    breaks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_crc64_xz() {
        // The CRC-64/XZ check value of "123456789".
        assert_eq!(checksum(b"123456789"), 0x995d_c9bb_df19_39fa);
    }

    #[test]
    fn layout_fits_every_line_and_keeps_every_word() {
        let input = make_input(50);
        let words: Vec<&str> = input.split([',', '\n']).filter(|w| !w.is_empty()).collect();
        let breaks = layout(&words, 20);
        assert_eq!(breaks.last(), Some(&words.len()));
        let mut first = 0;
        for &end in &breaks {
            assert!(end > first);
            let line = words[first..end].join(" ");
            assert!(line.len() <= 20 || end - first == 1, "{line:?}");
            first = end;
        }
    }
}

//! The location-table decoder against CPython itself: each installed
//! interpreter compiles a source with every kind of entry (far line jumps,
//! multi-line expressions, wide columns, loops jumping back, exception
//! handlers without a location), prints each code object's `co_linetable`
//! and the line `co_positions()` gives every code unit (and `co_lines()`'s
//! ranges), and the decoder must give the same lines.

mod support;

use std::process::Command;

use python_frames::CodeInfo;
use support::python;

/// Run by the interpreter: prints, for each code object,
/// `CODE <qualname> <co_firstlineno> <co_linetable hex>`, then
/// `POSITIONS` and `LINES` with the line of every code unit (`-` for none).
const DUMP: &str = r#"
import sys

SOURCE = '''
import os

def simple(a, b):
    return a + b

class Thing:
    def method(self, items):
        total = 0
        for item in items:
            if item % 2:
                total += item
            else:
                total -= item
        return total

    @property
    def prop(self):
        return [x * 2 for x in range(10) if x]

def handlers():
    try:
        x = 1 / 0
    except ZeroDivisionError as error:
        x = str(error)
    finally:
        y = 2
    with open(os.devnull) as f:
        f.read()
    return x, y

def multi_line(a):
    value = (a +
             a *
             2)
    call = simple(
        value,
        a,
    )
    return value, call
''' + '\n' * 700 + '''
def far_away(n):
    while n > 0:
        n -= 1
    return lambda q: q + n
''' + '\n' * 70000 + '''
def farther(x):
    result = "' + 'x' * 300 + '" + str(x) + "' + 'y' * 300 + '"
    return result

async def coroutine(x):
    await x
    async for y in x:
        yield y

def gen():
    yield 1
    yield from range(3)
'''

def walk(code):
    yield code
    for const in code.co_consts:
        if hasattr(const, 'co_code'):
            yield from walk(const)

top = compile(SOURCE, 'dump.py', 'exec')
for code in walk(top):
    units = len(code.co_code) // 2
    positions = list(code.co_positions())
    assert len(positions) == units, (len(positions), units)
    by_lines = ['-'] * units
    for start, end, line in code.co_lines():
        for unit in range(start // 2, end // 2):
            by_lines[unit] = '-' if line is None else str(line)
    print('CODE', code.co_qualname, code.co_firstlineno, code.co_linetable.hex())
    print('POSITIONS', ' '.join('-' if p[0] is None else str(p[0]) for p in positions))
    print('LINES', ' '.join(by_lines))
"#;

fn lines(text: &str) -> Vec<Option<u32>> {
    text.split_whitespace()
        .map(|l| {
            if l == "-" {
                None
            } else {
                Some(l.parse().unwrap())
            }
        })
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn decode_like(label: &'static str) {
    let Some(python) = python(label) else { return };
    let output = Command::new(&python.binary)
        .arg("-c")
        .arg(DUMP)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = String::from_utf8(output.stdout).unwrap();
    let mut rows = output.lines();
    let (mut codes, mut units, mut forms) = (0, 0, [0usize; 16]);
    while let Some(code) = rows.next() {
        let mut fields = code.strip_prefix("CODE ").unwrap().split(' ');
        let qualname = fields.next().unwrap().to_owned();
        let first_line: u32 = fields.next().unwrap().parse().unwrap();
        let line_table = hex(fields.next().unwrap_or(""));
        let positions = lines(rows.next().unwrap().strip_prefix("POSITIONS").unwrap());
        let by_ranges = lines(rows.next().unwrap().strip_prefix("LINES").unwrap());
        let info = CodeInfo {
            qualname,
            filename: "dump.py".into(),
            first_line,
            line_table,
        };
        let decoded: Vec<Option<u32>> = (0..positions.len() as u32).map(|i| info.line(i)).collect();
        assert_eq!(
            decoded, positions,
            "{label}: {}'s co_positions()",
            info.qualname
        );
        assert_eq!(
            decoded, by_ranges,
            "{label}: {}'s co_lines()",
            info.qualname
        );
        assert_eq!(info.line(positions.len() as u32), None, "past the end");
        // Which entry forms the table has (each entry's first byte has bit 7).
        for &byte in info.line_table.iter().filter(|b| *b & 0x80 != 0) {
            forms[usize::from((byte >> 3) & 15)] += 1;
        }
        codes += 1;
        units += positions.len();
    }
    eprintln!("{label}: {codes} code objects, {units} code units; entries by code: {forms:?}");
    assert!(codes >= 12, "{label}: only {codes} code objects");
    // Every kind of entry was decoded: short (0-9), one-line (10-12),
    // no-column (13), long (14), none (15).
    for (what, codes) in [
        ("short", 0..=9),
        ("one-line", 10..=12),
        ("no-column", 13..=13),
        ("long", 14..=14),
        ("no-location", 15..=15),
    ] {
        assert!(
            forms[codes].iter().sum::<usize>() > 0,
            "{label}: no {what} entry in the tables: {forms:?}"
        );
    }
}

#[test]
fn decodes_like_debian_3_11() {
    decode_like("debian-3.11");
}

#[test]
fn decodes_like_pyenv_3_11() {
    decode_like("pyenv-3.11.7");
}

#[test]
fn decodes_like_pyenv_3_12() {
    decode_like("pyenv-3.12.1");
}

#[test]
fn decodes_like_pyenv_3_13() {
    decode_like("pyenv-3.13.0");
}

//! Names of JIT-compiled code from the perf map a runtime writes:
//! `/tmp/perf-PID.map`, one `START SIZE NAME` line per piece of code (Node.js
//! `--perf-basic-prof`, Python 3.12+ `-X perf`, Java `jcmd PID
//! Compiler.perfmap`, .NET `DOTNET_PerfMapEnabled=1`). Code in anonymous
//! memory has no file to look names up in; this is the only place they are.
//!
//! The file is read through `/proc/PID/root`, as the process sees it, and
//! named with the pid the process has in its own pid namespace, so that a
//! process in a container is named too. The runtime writes the file while we
//! read it and no line is trusted: a line that does not parse (the last one,
//! half written, most often) is skipped and counted, never an error.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Read},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    sync::Arc,
};

/// The largest perf map read. A long-running JIT appends to its map for as
/// long as it runs; a file this large is refused rather than read into memory
/// at every refresh (Node.js writes ~80 bytes per compiled function).
pub const MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PerfMapError {
    /// The process wrote no perf map (the usual case), or has exited.
    #[error("no perf map for process {pid}")]
    Missing { pid: u32 },
    #[error("perf map of process {pid} refused: {why}")]
    Refused { pid: u32, why: String },
    #[error("cannot read the perf map of process {pid}: {source}")]
    Io { pid: u32, source: io::Error },
}

/// One piece of JIT code: `[start, end)` and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub start: u64,
    pub end: u64,
    /// Shared by the pieces an overlapping later entry cut an entry into.
    pub name: Arc<str>,
}

/// What identifies one version of the file: a map whose stamp is unchanged
/// need not be parsed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    inode: u64,
    len: u64,
    mtime_ns: i64,
}

/// A process's perf map, parsed: non-overlapping entries sorted by start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerfMap {
    entries: Vec<Entry>,
    /// Malformed or unfinished lines skipped.
    pub lines_skipped: u64,
    /// The pid in the file's name (the process's pid in its own namespace).
    pub ns_pid: u32,
    stamp: Option<Stamp>,
}

/// What [`read`] found.
#[derive(Debug)]
pub enum Outcome {
    New(PerfMap),
    /// The file is the one `previous` was read from, unchanged.
    Unchanged,
}

/// Counts of perf map reads, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Perf maps read and parsed (a map re-read as the JIT appends to it
    /// counts at each read).
    pub read: u64,
    /// Malformed or unfinished lines skipped, in the reads kept.
    pub lines_skipped: u64,
    /// Files refused: not a regular file, too large, not the process's own.
    pub refused: u64,
}

impl PerfMap {
    /// Parses a perf map's text. Later entries win where they overlap
    /// earlier ones: a JIT reuses the memory of code it freed.
    pub fn parse(text: &[u8]) -> PerfMap {
        let mut ranges: BTreeMap<u64, (u64, Arc<str>)> = BTreeMap::new();
        let mut skipped = 0;
        let mut lines = text.split(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            // The piece after the last newline is a line still being
            // written (its name may be cut short): never trusted.
            if lines.peek().is_none() {
                skipped += u64::from(!line.is_empty());
                break;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_line(line) {
                Some((start, end, name)) if end > start => {
                    insert(&mut ranges, start, end, name.into())
                }
                // A zero-length entry names nothing.
                Some(_) => {}
                None => skipped += 1,
            }
        }
        PerfMap {
            entries: ranges
                .into_iter()
                .map(|(start, (end, name))| Entry { start, end, name })
                .collect(),
            lines_skipped: skipped,
            ns_pid: 0,
            stamp: None,
        }
    }

    /// The name of the code holding `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&Entry> {
        let at = self.entries.partition_point(|e| e.start <= addr);
        let entry = &self.entries[at.checked_sub(1)?];
        (addr < entry.end).then_some(entry)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's path as the process sees it.
    pub fn path(&self) -> String {
        format!("/tmp/perf-{}.map", self.ns_pid)
    }
}

/// `START SIZE NAME`: START and SIZE in hex, with or without `0x`; NAME the
/// rest of the line (it may hold spaces), not empty.
fn parse_line(line: &[u8]) -> Option<(u64, u64, String)> {
    let line = std::str::from_utf8(line).ok()?;
    let (start, rest) = line.split_once(' ')?;
    let (size, name) = rest.split_once(' ')?;
    let hex = |s: &str| {
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        // from_str_radix takes a leading `+`; a perf map never has one.
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(digits, 16).ok()
    };
    let start = hex(start)?;
    let end = start.checked_add(hex(size)?)?;
    let name = name.trim_end();
    (!name.is_empty()).then(|| (start, end, name.to_string()))
}

/// Adds `[start, end)`, cutting away what it overlaps of the ranges there.
fn insert(ranges: &mut BTreeMap<u64, (u64, Arc<str>)>, start: u64, end: u64, name: Arc<str>) {
    // A range starting before `start` and reaching into the new one keeps
    // its part before, and its part after if it reaches past `end`.
    if let Some((&before, (before_end, before_name))) = ranges.range(..start).next_back()
        && *before_end > start
    {
        let (before_end, before_name) = (*before_end, before_name.clone());
        ranges.insert(before, (start, before_name.clone()));
        if before_end > end {
            ranges.insert(end, (before_end, before_name));
        }
    }
    // Ranges starting inside the new one go, but for a part past its end.
    let inside: Vec<u64> = ranges.range(start..end).map(|(&s, _)| s).collect();
    for s in inside {
        let (e, n) = ranges.remove(&s).expect("listed above");
        if e > end {
            ranges.insert(end, (e, n));
        }
    }
    ranges.insert(start, (end, name));
}

/// The pid of process `pid` in its own pid namespace: the last `NSpid:`
/// field of its status (the same as `pid` outside containers, and on
/// kernels before 4.1, which have no such line).
fn ns_pid(status: &str, pid: u32) -> u32 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|ids| ids.split_whitespace().last()?.parse().ok())
        .unwrap_or(pid)
}

/// The uids of the process (real, effective, saved, filesystem).
fn uids(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|ids| {
            ids.split_whitespace()
                .filter_map(|u| u.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the perf map of process `pid` while it lives; `previous` (the last
/// read) spares parsing a file that has not changed since.
///
/// `/tmp` and the file are opened without following a symlink: `/tmp` of a
/// container could otherwise lead out of its root, into our own files. The
/// file must be a regular file owned by root or by the process (as perf
/// requires: anyone can create `/tmp/perf-PID.map` for a pid to come), no
/// larger than [`MAX_BYTES`].
pub fn read(pid: u32, previous: Option<&PerfMap>) -> Result<Outcome, PerfMapError> {
    let missing_or = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => PerfMapError::Missing { pid },
        _ => PerfMapError::Io { pid, source },
    };
    let refused = |why: String| PerfMapError::Refused { pid, why };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(missing_or)?;
    let ns_pid = ns_pid(&status, pid);
    let tmp = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(format!("/proc/{pid}/root/tmp"))
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => refused("/tmp is not a directory".into()),
            _ => missing_or(e),
        })?;
    let name = std::ffi::CString::new(format!("perf-{ns_pid}.map")).expect("no NUL");
    // SAFETY: a valid directory fd and C string; a non-negative result is a new fd we own.
    let fd = unsafe {
        libc::openat(
            tmp.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ELOOP) => refused("a symbolic link".into()),
            _ => missing_or(e),
        });
    }
    // SAFETY: fd is a new descriptor owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata().map_err(missing_or)?;
    if !meta.is_file() {
        return Err(refused("not a regular file".into()));
    }
    if meta.uid() != 0 && !uids(&status).contains(&meta.uid()) {
        return Err(refused(format!(
            "owned by uid {}, not by root or the process",
            meta.uid()
        )));
    }
    if meta.len() > MAX_BYTES {
        return Err(refused(format!(
            "{} bytes, more than {MAX_BYTES}",
            meta.len()
        )));
    }
    let stamp = Stamp {
        dev: meta.dev(),
        inode: meta.ino(),
        len: meta.len(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
    };
    if previous.is_some_and(|p| p.stamp == Some(stamp) && p.ns_pid == ns_pid) {
        return Ok(Outcome::Unchanged);
    }
    // It may have grown since: what is past the limit is left for the next read.
    let mut text = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_BYTES)
        .read_to_end(&mut text)
        .map_err(|source| PerfMapError::Io { pid, source })?;
    let mut map = PerfMap::parse(&text);
    map.ns_pid = ns_pid;
    map.stamp = Some(stamp);
    Ok(Outcome::New(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(map: &PerfMap) -> Vec<(u64, u64, &str)> {
        map.entries
            .iter()
            .map(|e| (e.start, e.end, &*e.name))
            .collect()
    }

    #[test]
    fn parses_plain_and_0x_lines_and_names_with_spaces() {
        let map = PerfMap::parse(
            b"7f2175fc5b80 2c8 JS:*hot_function /tmp/hot.js:1:22\n\
              0x7f0000001000 0x40 Lcom/example/Foo;::bar (compiled)\n\
              1000 10 py::f:/x.py\r\n",
        );
        assert_eq!(
            names(&map),
            [
                (0x1000, 0x1010, "py::f:/x.py"),
                (
                    0x7f00_0000_1000,
                    0x7f00_0000_1040,
                    "Lcom/example/Foo;::bar (compiled)"
                ),
                (
                    0x7f21_75fc_5b80,
                    0x7f21_75fc_5e48,
                    "JS:*hot_function /tmp/hot.js:1:22"
                ),
            ]
        );
        assert_eq!(map.lines_skipped, 0);
    }

    #[test]
    fn garbage_and_a_half_written_last_line_are_skipped_and_counted() {
        let map = PerfMap::parse(
            b"1000 10 good\n\
              not a line at all\n\
              2000 zz bad size\n\
              3000 10\n\
              +3000 10 signed\n\
              ffffffffffffffff 10 overflows\n\
              \xff\xfe 10 not utf-8\n\
              \n\
              4000 0 empty\n\
              5000 10 also good\n\
              6000 2",
        );
        assert_eq!(
            names(&map),
            [(0x1000, 0x1010, "good"), (0x5000, 0x5010, "also good")]
        );
        // Six bad lines and the unfinished last one; blank and empty ones are not errors.
        assert_eq!(map.lines_skipped, 7);
        assert_eq!(PerfMap::parse(b"").lines_skipped, 0);
        assert!(PerfMap::parse(b"").is_empty());
    }

    #[test]
    fn later_entries_win_where_they_overlap() {
        let map = PerfMap::parse(
            b"1000 100 old\n\
              1040 10 inside\n\
              10f0 20 across-end\n\
              2000 10 a\n\
              2010 10 b\n\
              1ff8 30 covers-a-and-b\n\
              3000 10 same\n\
              3000 10 same-again\n",
        );
        assert_eq!(
            names(&map),
            [
                (0x1000, 0x1040, "old"),
                (0x1040, 0x1050, "inside"),
                (0x1050, 0x10f0, "old"),
                (0x10f0, 0x1110, "across-end"),
                (0x1ff8, 0x2028, "covers-a-and-b"),
                (0x3000, 0x3010, "same-again"),
            ]
        );
    }

    #[test]
    fn looks_up_by_address() {
        let map = PerfMap::parse(b"1000 10 a\n1010 10 b\n2000 8 c\n");
        let at = |addr| map.lookup(addr).map(|e| &*e.name);
        assert_eq!(at(0xfff), None);
        assert_eq!(at(0x1000), Some("a"));
        assert_eq!(at(0x100f), Some("a"));
        assert_eq!(at(0x1010), Some("b"));
        assert_eq!(at(0x1020), None);
        assert_eq!(at(0x2007), Some("c"));
        assert_eq!(at(0x2008), None);
        assert_eq!(at(u64::MAX), None);
        assert_eq!(PerfMap::default().lookup(0x1000), None);
    }

    #[test]
    fn the_pid_in_the_namespace_is_the_last_nspid_field() {
        assert_eq!(ns_pid("Name:\tnode\nNSpid:\t4242\t17\n", 4242), 17);
        assert_eq!(ns_pid("NSpid:\t4242\n", 4242), 4242);
        assert_eq!(ns_pid("Name:\told kernel\n", 99), 99);
        assert_eq!(uids("Uid:\t1000\t1000\t0\t1000\n"), [1000, 1000, 0, 1000]);
    }

    /// This process's own perf map is read through /proc, and read again
    /// only when it changed; a symbolic link and a FIFO are refused.
    #[test]
    fn reads_this_process_s_perf_map_and_refuses_links_and_fifos() {
        let pid = std::process::id();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let path = format!("/tmp/perf-{}.map", ns_pid(&status, pid));
        let _ = std::fs::remove_file(&path);
        struct Remove<'a>(&'a str);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(self.0);
            }
        }
        let _remove = Remove(&path);
        assert!(matches!(read(pid, None), Err(PerfMapError::Missing { .. })));

        std::fs::write(&path, "1000 10 first\nbad\n2000 10 second\n3000 1").unwrap();
        let Ok(Outcome::New(map)) = read(pid, None) else {
            panic!("not read")
        };
        assert_eq!(map.len(), 2);
        assert_eq!(map.lines_skipped, 2);
        assert!(matches!(read(pid, Some(&map)), Ok(Outcome::Unchanged)));
        std::fs::write(&path, "1000 10 first\nbad\n2000 10 second\n3000 10 third\n").unwrap();
        let Ok(Outcome::New(again)) = read(pid, Some(&map)) else {
            panic!("a changed file not read again")
        };
        assert_eq!(again.lookup(0x3004).map(|e| &*e.name), Some("third"));

        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        assert!(
            matches!(read(pid, None), Err(PerfMapError::Refused { .. })),
            "a link was followed"
        );
        std::fs::remove_file(&path).unwrap();
        let fifo = std::ffi::CString::new(path.clone()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(
            matches!(read(pid, None), Err(PerfMapError::Refused { .. })),
            "a FIFO was read"
        );
    }
}

//! Reading the four kinds of record the tracking events are opened for
//! (`FORK`, `COMM`, `MMAP2`, `LOST`) straight from their bytes.
//!
//! Written by hand rather than with perf-event-data's parser (which the
//! perf-event2 crate provides): that one is generic over every record kind
//! and every `sample_type`, and on a fork+exec-heavy system (~10 000 records
//! a second) it was 11% of `record -a`'s CPU, most of it working out a
//! layout that is fixed here. The events are opened with `sample_id_all` and
//! `sample_type = TID | TIME` ([`super::ProcessEvents::open`]), so every
//! record ends in the same 16 bytes, `{ u32 pid, tid; u64 time; }`, and the
//! layouts below are those of `enum perf_event_type` in
//! `linux/perf_event.h`.

use std::sync::Arc;

use perf_event_open_sys::bindings::{
    PERF_RECORD_COMM, PERF_RECORD_EXIT, PERF_RECORD_FORK, PERF_RECORD_LOST,
    PERF_RECORD_MISC_COMM_EXEC, PERF_RECORD_MISC_MMAP_BUILD_ID, PERF_RECORD_MMAP2,
};

use symbolizer::maps::MapEntry;

use super::{Change, Timed};

/// What one record says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    Change(Timed),
    /// The kernel dropped this many records (a `LOST` record).
    Lost(u64),
}

/// The paths of mapped files, one shared string each: a fork+exec-heavy
/// system maps the same few files thousands of times a second, and a string
/// made for each record was 6% of `record -a`'s CPU.
#[derive(Default)]
pub(super) struct Paths {
    /// The path each file (device, inode) was last mapped by: hashing those
    /// is cheaper than hashing the path.
    files: foldhash::HashMap<((u32, u32), u64), Arc<str>>,
    /// Pseudo-names (`[vdso]`, `//anon`), which have no inode.
    other: foldhash::HashSet<Arc<str>>,
    /// How many were held after the last pruning.
    pruned_to: usize,
}

impl Paths {
    fn get(&mut self, dev: (u32, u32), inode: u64, bytes: &[u8]) -> Arc<str> {
        if inode != 0 {
            // The same file under another name (a hard link, another mount
            // namespace's path) gets its own string, which stays its name.
            if let Some(held) = self.files.get(&(dev, inode))
                && held.as_bytes() == bytes
            {
                return Arc::clone(held);
            }
        } else if let Some(held) = std::str::from_utf8(bytes)
            .ok()
            .and_then(|path| self.other.get(path))
        {
            return Arc::clone(held);
        }
        // Paths no pending record or mapping holds any more go, once the
        // sets have doubled since they were last pruned: a program that maps
        // files of new names all the time (a JIT's dumps, `memfd:` names)
        // cannot make them grow without bound.
        if self.files.len() + self.other.len() >= 2 * self.pruned_to.max(256) {
            self.files.retain(|_, held| Arc::strong_count(held) > 1);
            self.other.retain(|held| Arc::strong_count(held) > 1);
            self.pruned_to = self.files.len() + self.other.len();
        }
        let held: Arc<str> = Arc::from(&*String::from_utf8_lossy(bytes));
        if inode != 0 {
            self.files.insert((dev, inode), Arc::clone(&held));
        } else {
            self.other.insert(Arc::clone(&held));
        }
        held
    }
}

/// `PROT_READ` in an `MMAP2` record's `prot`.
const PROT_READ: u32 = libc::PROT_READ as u32;

/// The `sample_id` every record ends with: `{ u32 pid, tid; u64 time; }`.
const SAMPLE_ID_LEN: usize = 16;

/// The record of type `ty` with header flags `misc` and `body` (the bytes
/// after the header), if it is one that says something about mappings.
/// `None` for other kinds (exit, throttle) and for a body too short for its
/// kind.
pub(super) fn parse(ty: u32, misc: u16, body: &[u8], paths: &mut Paths) -> Option<Parsed> {
    let fields_len = body.len().checked_sub(SAMPLE_ID_LEN)?;
    let (fields, sample_id) = body.split_at(fields_len);
    let at_ns = u64_at(sample_id, 8)?;
    let change = match ty {
        PERF_RECORD_LOST => return Some(Parsed::Lost(u64_at(fields, 8)?)),
        // `{ u32 pid, tid; char comm[]; }`: an exec when flagged so.
        PERF_RECORD_COMM if u32::from(misc) & PERF_RECORD_MISC_COMM_EXEC != 0 => Change::Exec {
            pid: u32_at(fields, 0)?,
        },
        // `{ u32 pid, ppid, tid, ptid; u64 time; }`. A new thread of the
        // same process is a fork record too.
        PERF_RECORD_FORK => {
            let (pid, parent) = (u32_at(fields, 0)?, u32_at(fields, 4)?);
            if pid == parent {
                return None;
            }
            Change::Fork { pid, parent }
        }
        // Same layout as a fork; a thread's exit says nothing about the
        // process (its leader's does, whichever thread is last).
        PERF_RECORD_EXIT => {
            let (pid, tid) = (u32_at(fields, 0)?, u32_at(fields, 8)?);
            if pid != tid {
                return None;
            }
            Change::Exit { pid }
        }
        PERF_RECORD_MMAP2 => {
            let (pid, mapping) = mmap2(misc, fields, paths)?;
            Change::Map { pid, mapping }
        }
        _ => return None,
    };
    Some(Parsed::Change(Timed { at_ns, change }))
}

/// `{ u32 pid, tid; u64 addr, len, pgoff; u32 maj, min; u64 ino,
/// ino_generation; u32 prot, flags; char filename[]; }`, where a record
/// flagged `MMAP_BUILD_ID` has a build ID in place of the device and inode
/// (not asked for; read as no file identity).
fn mmap2(misc: u16, fields: &[u8], paths: &mut Paths) -> Option<(u32, MapEntry)> {
    const FILENAME_AT: usize = 64;
    let pid = u32_at(fields, 0)?;
    let start = u64_at(fields, 8)?;
    let end = start.checked_add(u64_at(fields, 16)?)?;
    let file_offset = u64_at(fields, 24)?;
    let (dev, inode) = if u32::from(misc) & PERF_RECORD_MISC_MMAP_BUILD_ID != 0 {
        ((0, 0), 0)
    } else {
        (
            (u32_at(fields, 32)?, u32_at(fields, 36)?),
            u64_at(fields, 40)?,
        )
    };
    // Only executable mappings are announced (no `mmap_data`).
    let prot = u32_at(fields, 56)?;
    // NUL-terminated, padded to 8 bytes.
    let name = fields.get(FILENAME_AT..)?;
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    let path = paths.get(dev, inode, name);
    Some((
        pid,
        MapEntry {
            start,
            end,
            readable: prot & PROT_READ != 0,
            executable: true,
            file_offset,
            dev,
            inode,
            path,
        },
    ))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(ty: u32, misc: u16, body: &[u8]) -> Option<Parsed> {
        parse(ty, misc, body, &mut Paths::default())
    }

    /// A record body: `fields`, then the sample_id (pid, tid, time).
    fn body(fields: &[&[u8]], time: u64) -> Vec<u8> {
        let mut bytes: Vec<u8> = fields.concat();
        bytes.extend_from_slice(&7u32.to_ne_bytes());
        bytes.extend_from_slice(&7u32.to_ne_bytes());
        bytes.extend_from_slice(&time.to_ne_bytes());
        bytes
    }

    fn change(parsed: Option<Parsed>) -> Option<(u64, Change)> {
        match parsed? {
            Parsed::Change(Timed { at_ns, change }) => Some((at_ns, change)),
            Parsed::Lost(_) => None,
        }
    }

    #[test]
    fn reads_an_mmap2_record_and_its_time() {
        let name = b"/usr/lib/libc.so.6\0\0\0\0\0\0";
        let bytes = body(
            &[
                &42u32.to_ne_bytes(),
                &43u32.to_ne_bytes(),
                &0x7f00_0000_1000u64.to_ne_bytes(),
                &0x2000u64.to_ne_bytes(),
                &0x3000u64.to_ne_bytes(),
                &0xfeu32.to_ne_bytes(),
                &1u32.to_ne_bytes(),
                &123_456u64.to_ne_bytes(),
                &9u64.to_ne_bytes(),
                &5u32.to_ne_bytes(),
                &2u32.to_ne_bytes(),
                name,
            ],
            1_000,
        );
        let expected = Change::Map {
            pid: 42,
            mapping: MapEntry {
                start: 0x7f00_0000_1000,
                end: 0x7f00_0000_3000,
                readable: true,
                executable: true,
                file_offset: 0x3000,
                dev: (0xfe, 1),
                inode: 123_456,
                path: "/usr/lib/libc.so.6".into(),
            },
        };
        assert_eq!(
            change(read(PERF_RECORD_MMAP2, 0, &bytes)),
            Some((1_000, expected))
        );
        // Flagged as carrying a build ID: no device or inode.
        let Some((_, Change::Map { mapping, .. })) = change(read(
            PERF_RECORD_MMAP2,
            PERF_RECORD_MISC_MMAP_BUILD_ID as u16,
            &bytes,
        )) else {
            panic!("not read as a mapping");
        };
        assert_eq!((mapping.dev, mapping.inode), ((0, 0), 0));
        // Cut short: not read at all, rather than read wrong.
        assert_eq!(read(PERF_RECORD_MMAP2, 0, &bytes[..40]), None);
    }

    #[test]
    fn reads_forks_execs_exits_and_losses_and_skips_the_rest() {
        let fork = |pid: u32, ppid: u32| {
            body(
                &[
                    &pid.to_ne_bytes(),
                    &ppid.to_ne_bytes(),
                    &pid.to_ne_bytes(),
                    &ppid.to_ne_bytes(),
                    &5u64.to_ne_bytes(),
                ],
                2_000,
            )
        };
        assert_eq!(
            change(read(PERF_RECORD_FORK, 0, &fork(11, 10))),
            Some((
                2_000,
                Change::Fork {
                    pid: 11,
                    parent: 10
                }
            ))
        );
        // A thread: same process.
        assert_eq!(read(PERF_RECORD_FORK, 0, &fork(10, 10)), None);
        let comm = body(
            &[&11u32.to_ne_bytes(), &12u32.to_ne_bytes(), b"true\0\0\0\0"],
            3_000,
        );
        let exec = PERF_RECORD_MISC_COMM_EXEC as u16;
        assert_eq!(
            change(read(PERF_RECORD_COMM, exec, &comm)),
            Some((3_000, Change::Exec { pid: 11 }))
        );
        // A rename (prctl), not an exec.
        assert_eq!(read(PERF_RECORD_COMM, 0, &comm), None);
        let lost = body(&[&1u64.to_ne_bytes(), &17u64.to_ne_bytes()], 4_000);
        assert_eq!(read(PERF_RECORD_LOST, 0, &lost), Some(Parsed::Lost(17)));
        // An exit has a fork's layout; only the main thread's says the
        // process exited.
        let exit = |pid: u32, tid: u32| {
            body(
                &[
                    &pid.to_ne_bytes(),
                    &1u32.to_ne_bytes(),
                    &tid.to_ne_bytes(),
                    &1u32.to_ne_bytes(),
                    &5u64.to_ne_bytes(),
                ],
                5_000,
            )
        };
        assert_eq!(
            change(read(PERF_RECORD_EXIT, 0, &exit(11, 11))),
            Some((5_000, Change::Exit { pid: 11 }))
        );
        assert_eq!(read(PERF_RECORD_EXIT, 0, &exit(11, 12)), None);
        // Other kinds (a throttle, 5) say nothing here.
        assert_eq!(read(5, 0, &fork(11, 10)), None);
        assert_eq!(read(PERF_RECORD_FORK, 0, &[0; 8]), None);
    }

    /// A path mapped again is the string already held; one held by nothing
    /// else any more goes at a pruning.
    #[test]
    fn paths_are_shared_and_pruned() {
        let mut paths = Paths::default();
        let libc_id = ((254, 1), 77);
        let libc = paths.get(libc_id.0, libc_id.1, b"/usr/lib/libc.so.6");
        let again = paths.get(libc_id.0, libc_id.1, b"/usr/lib/libc.so.6");
        assert!(Arc::ptr_eq(&libc, &again));
        // The same file by another path keeps that path.
        let linked = paths.get(libc_id.0, libc_id.1, b"/lib/libc.so.6");
        assert_eq!(&*linked, "/lib/libc.so.6");
        let vdso = paths.get((0, 0), 0, b"[vdso]");
        assert!(Arc::ptr_eq(&vdso, &paths.get((0, 0), 0, b"[vdso]")));
        for n in 0..1000 {
            paths.get((254, 1), 1000 + n, format!("/tmp/jit-{n}.so").as_bytes());
            paths.get((0, 0), 0, format!("memfd:jit-{n}").as_bytes());
        }
        let held = paths.files.len() + paths.other.len();
        assert!(held < 600, "{held} paths held, nearly all unused");
        assert!(paths.other.contains("[vdso]"));
    }
}

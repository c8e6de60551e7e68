//! The upload spool: windows waiting to be pushed, kept on disk so that they
//! survive an agent restart, delivered oldest first, and bounded in bytes.
//!
//! Each item is one file, `<sequence number, 20 digits>.item`, written to a
//! temporary file and renamed into place; the sequence numbers (so the
//! order) come back from the file names when the spool is reopened. When a
//! new item would take the spool over its bound, the oldest items are
//! dropped (and counted) to make room: the newest data is the most useful
//! once the backend is back.
//!
//! Items are opaque bytes here; [`crate::agent::pyroscope::Upload`] encodes
//! a window as one.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

const SUFFIX: &str = ".item";
const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot create the spool directory {}: {source}; check `data_dir` and the agent's permissions", .dir.display())]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error("cannot list the spool directory {}: {source}", .dir.display())]
    List { dir: PathBuf, source: io::Error },
    #[error("cannot write the spool item {}: {source}; check free space in the data directory", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the spool item {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot remove the spool item {}: {source}", .path.display())]
    Remove { path: PathBuf, source: io::Error },
}

/// An item's sequence number: items are delivered in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpoolId(pub u64);

/// What [`Spool::push`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// The new item; `None` when it alone is larger than the bound, in
    /// which case it was dropped (and counted) instead of the others.
    pub id: Option<SpoolId>,
    /// Older items dropped to make room, oldest first.
    pub dropped: Vec<SpoolId>,
}

#[derive(Debug)]
struct State {
    /// Sequence number → size in bytes.
    items: BTreeMap<u64, u64>,
    bytes: u64,
    next: u64,
    dropped: u64,
}

/// The spool in one directory. Its methods take `&self` (the state is
/// behind a mutex), so the sampling loop can push while an uploader peeks
/// and acknowledges; share it with an `Arc`.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

fn item_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{SUFFIX}"))
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, bounded by
    /// `max_bytes`, with the items a previous run left. Temporary files of
    /// an interrupted push are removed. If the items left exceed the bound
    /// (it was lowered), the oldest are dropped now.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Spool, SpoolError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| SpoolError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        let list_error = |source| SpoolError::List {
            dir: dir.clone(),
            source,
        };
        let mut items = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(list_error)? {
            let entry = entry.map_err(list_error)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TEMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(seq) = parse_name(&name) else {
                continue;
            };
            let metadata = entry.metadata().map_err(list_error)?;
            if metadata.is_file() {
                items.insert(seq, metadata.len());
            }
        }
        let bytes = items.values().sum();
        let next = items.keys().next_back().map_or(0, |&last| last + 1);
        let spool = Spool {
            dir,
            max_bytes,
            state: Mutex::new(State {
                items,
                bytes,
                next,
                dropped: 0,
            }),
        };
        {
            let mut state = spool.lock();
            spool.make_room(&mut state, 0)?;
        }
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent with
        // the files at worst one item off; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Drops the oldest items until `incoming` more bytes fit; returns them.
    fn make_room(&self, state: &mut State, incoming: u64) -> Result<Vec<SpoolId>, SpoolError> {
        let mut dropped = Vec::new();
        while state.bytes + incoming > self.max_bytes {
            let Some((&seq, &size)) = state.items.iter().next() else {
                break;
            };
            self.remove_file(seq)?;
            state.items.remove(&seq);
            state.bytes -= size;
            state.dropped += 1;
            dropped.push(SpoolId(seq));
        }
        Ok(dropped)
    }

    fn remove_file(&self, seq: u64) -> Result<(), SpoolError> {
        let path = item_path(&self.dir, seq);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SpoolError::Remove { path, source }),
        }
    }

    /// Adds an item after all others, dropping the oldest if needed to stay
    /// within the bound. The item is on disk when this returns.
    pub fn push(&self, item: &[u8]) -> Result<Pushed, SpoolError> {
        let size = item.len() as u64;
        let mut state = self.lock();
        if size > self.max_bytes {
            state.dropped += 1;
            return Ok(Pushed::default());
        }
        let dropped = self.make_room(&mut state, size)?;
        let seq = state.next;
        let path = item_path(&self.dir, seq);
        let write_error = |source| SpoolError::Write {
            path: path.clone(),
            source,
        };
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".tmp")
            .tempfile_in(&self.dir)
            .map_err(write_error)?;
        temp.write_all(item).map_err(write_error)?;
        // On disk before the rename, so a crash leaves either the whole
        // item or none of it.
        temp.as_file().sync_all().map_err(write_error)?;
        temp.persist(&path).map_err(|e| write_error(e.error))?;
        state.next += 1;
        state.items.insert(seq, size);
        state.bytes += size;
        Ok(Pushed {
            id: Some(SpoolId(seq)),
            dropped,
        })
    }

    /// The oldest item, left in the spool until [`Spool::ack`]ed. Items
    /// whose file disappeared (removed by hand) are skipped.
    pub fn peek_oldest(&self) -> Result<Option<(SpoolId, Vec<u8>)>, SpoolError> {
        let mut state = self.lock();
        while let Some((&seq, &size)) = state.items.iter().next() {
            let path = item_path(&self.dir, seq);
            match std::fs::read(&path) {
                Ok(bytes) => return Ok(Some((SpoolId(seq), bytes))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    state.items.remove(&seq);
                    state.bytes -= size;
                }
                Err(source) => return Err(SpoolError::Read { path, source }),
            }
        }
        Ok(None)
    }

    /// Removes a delivered (or undeliverable) item. An item already gone
    /// (dropped to make room meanwhile) is not an error.
    pub fn ack(&self, id: SpoolId) -> Result<(), SpoolError> {
        let mut state = self.lock();
        if let Some(size) = state.items.get(&id.0).copied() {
            self.remove_file(id.0)?;
            state.items.remove(&id.0);
            state.bytes -= size;
        }
        Ok(())
    }

    /// Items dropped because of the bound since the spool was opened.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Bytes of the items waiting.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Number of items waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn drain(spool: &Spool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((id, item)) = spool.peek_oldest().unwrap() {
            spool.ack(id).unwrap();
            out.push(item);
        }
        out
    }

    #[test]
    fn fifo_with_peek_and_ack() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), 1000).unwrap();
        assert!(spool.peek_oldest().unwrap().is_none());
        let a = spool.push(b"first").unwrap().id.unwrap();
        let b = spool.push(b"second").unwrap().id.unwrap();
        assert!(a < b);
        assert_eq!((spool.len(), spool.bytes()), (2, 11));
        // Peeking does not remove.
        assert_eq!(spool.peek_oldest().unwrap(), Some((a, b"first".to_vec())));
        assert_eq!(spool.peek_oldest().unwrap(), Some((a, b"first".to_vec())));
        spool.ack(a).unwrap();
        spool.ack(a).unwrap();
        assert_eq!(spool.peek_oldest().unwrap(), Some((b, b"second".to_vec())));
        spool.ack(b).unwrap();
        assert!(spool.is_empty());
        assert_eq!((spool.bytes(), spool.dropped()), (0, 0));
        assert!(files(tmp.path()).is_empty());
    }

    #[test]
    fn items_survive_a_restart_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(tmp.path(), 1000).unwrap();
            for i in 0..12u8 {
                spool.push(&[i; 3]).unwrap();
            }
            let (id, _) = spool.peek_oldest().unwrap().unwrap();
            spool.ack(id).unwrap();
        }
        // A crash in the middle of a push leaves a temporary file.
        std::fs::write(tmp.path().join(".tmp-x.tmp"), "half").unwrap();
        std::fs::write(tmp.path().join("README"), "not an item").unwrap();
        let spool = Spool::open(tmp.path(), 1000).unwrap();
        assert_eq!((spool.len(), spool.bytes()), (11, 33));
        // New items go after the old ones, even past 10 (names sort as numbers).
        let id = spool.push(b"new").unwrap().id.unwrap();
        assert_eq!(id, SpoolId(12));
        let items = drain(&spool);
        let expected: Vec<Vec<u8>> = (1..12u8)
            .map(|i| vec![i; 3])
            .chain([b"new".to_vec()])
            .collect();
        assert_eq!(items, expected);
        assert_eq!(files(tmp.path()), ["README"]);
    }

    #[test]
    fn the_bound_drops_the_oldest_and_counts_them() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), 25).unwrap();
        for i in 0..5u8 {
            let pushed = spool.push(&[i; 10]).unwrap();
            assert!(pushed.id.is_some());
            match i {
                0 | 1 => assert!(pushed.dropped.is_empty()),
                _ => assert_eq!(pushed.dropped, [SpoolId(i as u64 - 2)]),
            }
            assert!(spool.bytes() <= 25);
        }
        assert_eq!(spool.dropped(), 3);
        assert_eq!(spool.bytes(), 20);
        // Larger than the whole bound: dropped itself, the others kept.
        let pushed = spool.push(&[9; 26]).unwrap();
        assert_eq!(pushed, Pushed::default());
        assert_eq!(spool.dropped(), 4);
        // Exactly the bound: everything else goes.
        let pushed = spool.push(&[7; 25]).unwrap();
        assert_eq!(pushed.dropped, [SpoolId(3), SpoolId(4)]);
        assert_eq!(spool.dropped(), 6);
        assert_eq!(drain(&spool), [vec![7; 25]]);
        assert_eq!(files(tmp.path()).len(), 0);
    }

    #[test]
    fn a_lower_bound_on_reopen_drops_the_oldest() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let spool = Spool::open(tmp.path(), 100).unwrap();
            for i in 0..4u8 {
                spool.push(&[i; 10]).unwrap();
            }
        }
        let spool = Spool::open(tmp.path(), 20).unwrap();
        assert_eq!((spool.dropped(), spool.bytes()), (2, 20));
        assert_eq!(drain(&spool), [vec![2; 10], vec![3; 10]]);
    }

    #[test]
    fn ack_of_an_item_dropped_meanwhile_is_fine() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), 10).unwrap();
        spool.push(&[1; 10]).unwrap();
        let (id, _) = spool.peek_oldest().unwrap().unwrap();
        // While the uploader holds `id`, a push drops it.
        spool.push(&[2; 10]).unwrap();
        spool.ack(id).unwrap();
        assert_eq!(drain(&spool), [vec![2; 10]]);
    }

    #[test]
    fn items_removed_by_hand_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::open(tmp.path(), 100).unwrap();
        let a = spool.push(b"a").unwrap().id.unwrap();
        spool.push(b"b").unwrap();
        std::fs::remove_file(item_path(tmp.path(), a.0)).unwrap();
        assert_eq!(drain(&spool), [b"b".to_vec()]);
        assert_eq!(spool.bytes(), 0);
    }
}

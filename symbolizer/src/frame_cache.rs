//! Names of addresses in files with a build ID, kept for the boot.
//!
//! Symbolizing one address in a file means blazesym parsing the file's DWARF
//! unit headers and abbreviations first: for libc with its debug file that
//! is ~2.5 ms of CPU, at every `profiler record` with a libc frame, for the
//! same few call sites every time. A build ID names the file's contents, so
//! the answers can be kept: after a recording, the frames found for each
//! file offset are written to `/run/profiler/frames/<build ID>-<size>.<source>.json`
//! (root-only; /run is a tmpfs cleared at boot on most systems, and a build
//! ID's answers stay right across boots where it is not), and the next
//! recording looks there before asking blazesym, which then never opens a
//! file whose addresses were all seen before. `rm -r /run/profiler/frames`
//! empties it.
//!
//! The size is there because stripping a file keeps its build ID: a
//! stripped copy names fewer addresses than the original. The `<source>`
//! part is `own`, or `debug<size>` when a separate debug file with that
//! build ID is installed (`/usr/lib/debug/.build-id/...`, which blazesym
//! reads): installing, removing or updating one changes the name, so
//! answers made without it are not served with it. A debug file found only
//! through a `.gnu_debuglink` outside the build-ID tree is not told apart:
//! one installed later is used for addresses not cached yet only. Each file
//! also records the build ID of the profiler that wrote it: a new profiler
//! (another blazesym, other naming) starts afresh.
//!
//! Unknown addresses are kept too (as "no symbol"); their `module+0xoffset`
//! name is made again from the path the process used. Failed lookups are not
//! kept. Bounds: at most [`MAX_ENTRIES`] addresses a file, files over
//! [`MAX_FILE_BYTES`] are not read, and no file is written or grown once the
//! directory holds [`MAX_DIR_BYTES`].

use std::{
    collections::HashMap,
    fs,
    io::Read,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    Frame,
    private_files::{private_dir, write_new},
};

/// Addresses kept for one file.
pub const MAX_ENTRIES: usize = 65_536;
/// Files smaller than this (with no separate debug file) are not cached:
/// parsing their DWARF again costs less than reading and rewriting a cache
/// file (which a small program's varying hot addresses caused at every run).
pub const MIN_FILE_BYTES: u64 = 1 << 20;
/// Cache files larger than this are ignored (and replaced when written).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// No file is written or grown once the directory holds this much (tmpfs is memory).
pub const MAX_DIR_BYTES: u64 = 32 << 20;

/// What one file offset resolved to: its frames, innermost first, or none
/// when the file has no symbol there.
pub(crate) type Resolved = Option<Vec<Frame>>;

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    /// The build ID of the profiler that wrote the file.
    producer: String,
    /// (file offset, frames or none), in offset order.
    entries: Vec<(u64, Resolved)>,
}

const VERSION: u32 = 2;

/// This executable's build ID; empty if it has none, and then no cache is
/// used ([`FrameCache::open`]), as its answers could not be told apart.
fn producer() -> &'static str {
    static PRODUCER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PRODUCER.get_or_init(|| {
        fs::File::open("/proc/self/exe")
            .ok()
            .and_then(|exe| crate::process::build_id_of(&exe))
            .unwrap_or_default()
    })
}

#[derive(Default)]
struct CachedFile {
    entries: HashMap<u64, Resolved>,
    /// New entries not written yet.
    added: bool,
}

/// The cache directory and the files read from it so far.
pub(crate) struct FrameCache {
    dir: PathBuf,
    files: HashMap<String, CachedFile>,
}

impl FrameCache {
    /// `root/frames`, created root-only if missing; `None` if it is unusable
    /// (a link, someone else's, open to others).
    pub(crate) fn open(root: &Path) -> Option<Self> {
        if producer().is_empty() {
            return None;
        }
        private_dir(root)?;
        let dir = root.join("frames");
        private_dir(&dir)?;
        Some(FrameCache {
            dir,
            files: HashMap::new(),
        })
    }

    /// The cache file's name for a file of `size` bytes with a hex build
    /// ID, and a separate debug file of `debug_size` bytes if one is
    /// installed; `None` if the build ID is not hex or the file is not
    /// worth caching ([`MIN_FILE_BYTES`]).
    pub(crate) fn file_name(build_id: &str, size: u64, debug_size: Option<u64>) -> Option<String> {
        if size < MIN_FILE_BYTES && debug_size.is_none() {
            return None;
        }
        let hex = build_id.len() >= 16
            && build_id.len() <= 128
            && build_id.bytes().all(|b| b.is_ascii_hexdigit());
        let source = match debug_size {
            Some(debug) => format!("debug{debug}"),
            None => "own".into(),
        };
        hex.then(|| format!("{}-{size}.{source}.json", build_id.to_ascii_lowercase()))
    }

    /// The answer kept for `offset` in the file `name`.
    pub(crate) fn get(&mut self, name: &str, offset: u64) -> Option<&Resolved> {
        self.loaded(name).entries.get(&offset)
    }

    /// The file `name`, read at its first use.
    fn loaded(&mut self, name: &str) -> &mut CachedFile {
        if !self.files.contains_key(name) {
            let loaded = self.load(name);
            self.files.insert(name.to_string(), loaded);
        }
        self.files.get_mut(name).expect("inserted above")
    }

    /// Keeps an answer, written by [`FrameCache::flush`] with those the
    /// file already holds.
    pub(crate) fn insert(&mut self, name: &str, offset: u64, resolved: Resolved) {
        let file = self.loaded(name);
        if file.entries.len() < MAX_ENTRIES && !file.entries.contains_key(&offset) {
            file.entries.insert(offset, resolved);
            file.added = true;
        }
    }

    /// Writes the files that gained entries; returns how many were written.
    pub(crate) fn flush(&mut self) -> usize {
        let mut written = 0;
        let mut held = dir_bytes(&self.dir);
        for (name, file) in &mut self.files {
            if !file.added {
                continue;
            }
            file.added = false;
            let mut entries: Vec<(u64, Resolved)> = file
                .entries
                .iter()
                .map(|(offset, resolved)| (*offset, resolved.clone()))
                .collect();
            entries.sort_unstable_by_key(|(offset, _)| *offset);
            let Ok(bytes) = serde_json::to_vec(&Stored {
                version: VERSION,
                producer: producer().to_string(),
                entries,
            }) else {
                continue;
            };
            let len = bytes.len() as u64;
            let path = self.dir.join(name.as_str());
            let replaced = file_len(&path).unwrap_or(0);
            // Not written if it could not be read back, or would overfill the directory.
            if len > MAX_FILE_BYTES || held + len > MAX_DIR_BYTES + replaced {
                continue;
            }
            if write_new(&path, &bytes).is_ok() {
                held = held + len - replaced;
                written += 1;
            }
        }
        written
    }

    /// A file's entries; empty if it is missing, too large, not a regular
    /// file, or not one we wrote (it is then replaced at the next flush).
    fn load(&self, name: &str) -> CachedFile {
        let read = || -> Option<Stored> {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(self.dir.join(name))
                .ok()?;
            let meta = file.metadata().ok()?;
            if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
                return None;
            }
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut bytes).ok()?;
            serde_json::from_slice::<Stored>(&bytes)
                .ok()
                .filter(|stored| stored.version == VERSION && stored.producer == producer())
        };
        let entries = read()
            .map(|stored| stored.entries.into_iter().take(MAX_ENTRIES).collect())
            .unwrap_or_default();
        CachedFile {
            entries,
            added: false,
        }
    }
}

fn file_len(path: &Path) -> Option<u64> {
    fs::symlink_metadata(path).ok().map(|m| m.len())
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Frame {
        Frame {
            function: name.into(),
            file: Some("/src/a.c".into()),
            line: Some(12),
        }
    }

    #[test]
    fn names_tell_build_ids_sizes_and_sources_apart_and_refuse_non_hex() {
        let id = "93ac61ec5a8eb1396f9fbd350e3169a558528a40";
        let big = 4 << 20;
        let debug = FrameCache::file_name(id, 1000, Some(5000)).unwrap();
        let updated_debug = FrameCache::file_name(id, 1000, Some(5001)).unwrap();
        let own = FrameCache::file_name(id, big, None).unwrap();
        let stripped = FrameCache::file_name(id, big - 4096, None).unwrap();
        let other = FrameCache::file_name("93ac61ec5a8eb1396f9fbd350e3169a558528a41", big, None);
        let names = [
            &debug,
            &updated_debug,
            &own,
            &stripped,
            other.as_ref().unwrap(),
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(debug.starts_with(id) && own.starts_with(id));
        assert_eq!(FrameCache::file_name("../../etc/passwd", big, None), None);
        assert_eq!(FrameCache::file_name("abc", big, None), None);
        // Small files are parsed again rather than cached, unless a debug file is.
        assert_eq!(FrameCache::file_name(id, MIN_FILE_BYTES - 1, None), None);
        assert!(FrameCache::file_name(id, MIN_FILE_BYTES - 1, Some(1)).is_some());
    }

    #[test]
    fn entries_survive_a_flush_and_a_fresh_cache_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let name = FrameCache::file_name("00112233445566778899", 4 << 20, Some(9000)).unwrap();
        let mut cache = FrameCache::open(&tmp.path().join("cache")).unwrap();
        assert_eq!(cache.get(&name, 0x10), None);
        cache.insert(&name, 0x10, Some(vec![frame("inner"), frame("outer")]));
        cache.insert(&name, 0x20, None);
        assert_eq!(cache.flush(), 1);
        assert_eq!(cache.flush(), 0, "nothing new to write");

        let mut fresh = FrameCache::open(&tmp.path().join("cache")).unwrap();
        assert_eq!(
            fresh.get(&name, 0x10),
            Some(&Some(vec![frame("inner"), frame("outer")]))
        );
        assert_eq!(fresh.get(&name, 0x20), Some(&None));
        assert_eq!(fresh.get(&name, 0x30), None);
    }

    #[test]
    fn a_damaged_file_reads_as_empty_and_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let name = FrameCache::file_name("00112233445566778899", 4 << 20, None).unwrap();
        let mut cache = FrameCache::open(&tmp.path().join("cache")).unwrap();
        std::fs::write(
            tmp.path().join("cache").join("frames").join(&name),
            b"{\"version\":1,\"entr",
        )
        .unwrap();
        assert_eq!(cache.get(&name, 0x10), None);
        cache.insert(&name, 0x10, Some(vec![frame("f")]));
        assert_eq!(cache.flush(), 1);
        let mut fresh = FrameCache::open(&tmp.path().join("cache")).unwrap();
        assert_eq!(fresh.get(&name, 0x10), Some(&Some(vec![frame("f")])));
    }

    #[test]
    fn a_file_another_profiler_build_wrote_is_not_served() {
        let tmp = tempfile::tempdir().unwrap();
        let name = FrameCache::file_name("00112233445566778899", 4 << 20, None).unwrap();
        let mut cache = FrameCache::open(&tmp.path().join("cache")).unwrap();
        cache.insert(&name, 0x10, Some(vec![frame("f")]));
        assert_eq!(cache.flush(), 1);
        let path = tmp.path().join("cache").join("frames").join(&name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(producer()), "{text}");
        std::fs::write(&path, text.replace(producer(), "0000")).unwrap();
        let mut fresh = FrameCache::open(&tmp.path().join("cache")).unwrap();
        assert_eq!(fresh.get(&name, 0x10), None);
    }

    #[test]
    fn a_link_in_place_of_a_file_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let name = FrameCache::file_name("00112233445566778899", 4 << 20, None).unwrap();
        let elsewhere = tmp.path().join("elsewhere.json");
        let mut cache = FrameCache::open(&tmp.path().join("cache")).unwrap();
        cache.insert(&name, 0x10, Some(vec![frame("f")]));
        cache.flush();
        std::fs::rename(
            tmp.path().join("cache").join("frames").join(&name),
            &elsewhere,
        )
        .unwrap();
        std::os::unix::fs::symlink(
            &elsewhere,
            tmp.path().join("cache").join("frames").join(&name),
        )
        .unwrap();
        let mut fresh = FrameCache::open(&tmp.path().join("cache")).unwrap();
        assert_eq!(fresh.get(&name, 0x10), None);
    }
}

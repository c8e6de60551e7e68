//! The agent's local store: one zstd-compressed pprof file per window and
//! process in a directory, named
//! `<start unix ms>-<end unix ms>_<pid>_<comm>_<kind>.pb.zst` so that windows
//! can be listed, filtered and expired from their names alone, without
//! opening them. Files are written to a temporary file and renamed into
//! place, so a reader (`profiler report`) never sees a partial window.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::pprof::protos::{self, Message};

use crate::agent::config::Retention;
use crate::profile::{Profile, ProfileKind};

const SUFFIX: &str = ".pb.zst";
/// Temporary files start with this; listing ignores them and opening the
/// store removes those a crash left behind.
const TEMP_PREFIX: &str = ".tmp-";
/// zstd's default level: fast, and pprof compresses well at it.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {}: {source}; check `data_dir` and the agent's permissions", .dir.display())]
    CreateDir { dir: PathBuf, source: io::Error },
    #[error("cannot list the data directory {}: {source}", .dir.display())]
    List { dir: PathBuf, source: io::Error },
    #[error("cannot write {}: {source}; check free space and permissions of the data directory", .path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not a valid stored window ({message}); remove it if it is damaged", .path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("cannot remove {}: {source}", .path.display())]
    Remove { path: PathBuf, source: io::Error },
    #[error("window ends before it starts ({start_unix_millis} > {end_unix_millis} ms)")]
    BadRange {
        start_unix_millis: u64,
        end_unix_millis: u64,
    },
}

/// The file name of a [`ProfileKind`] in the store.
pub fn kind_name(kind: ProfileKind) -> &'static str {
    match kind {
        ProfileKind::Cpu => "cpu",
        ProfileKind::OffCpu => "off-cpu",
        ProfileKind::Wall => "wall",
    }
}

fn kind_from_name(name: &str) -> Option<ProfileKind> {
    [ProfileKind::Cpu, ProfileKind::OffCpu, ProfileKind::Wall]
        .into_iter()
        .find(|&k| kind_name(k) == name)
}

/// A command name made safe for a file name: ASCII letters, digits, `.`,
/// `_` and `-` are kept, anything else becomes `_`; empty becomes `unknown`.
pub fn sanitize_comm(comm: &str) -> String {
    let clean: String = comm
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A name of dots only would be `.` or `..`-like and hidden; never mind
    // the directory entries, keep names visible.
    if clean.is_empty() || clean.starts_with('.') {
        format!("unknown{clean}")
    } else {
        clean
    }
}

/// What a stored window holds: its time range, its process and its kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WindowKey {
    pub start_unix_millis: u64,
    pub end_unix_millis: u64,
    pub pid: u32,
    /// The command name; sanitized ([`sanitize_comm`]) in file names.
    pub comm: String,
    pub kind: ProfileKind,
}

impl WindowKey {
    /// The file name of this window.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}_{}_{}_{}{SUFFIX}",
            self.start_unix_millis,
            self.end_unix_millis,
            self.pid,
            sanitize_comm(&self.comm),
            kind_name(self.kind)
        )
    }

    /// The key a file name stands for (its comm sanitized), if it is a window's.
    pub fn from_file_name(name: &str) -> Option<WindowKey> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (times, rest) = stem.split_once('_')?;
        let (pid, rest) = rest.split_once('_')?;
        // The comm may hold `_`; the kind never does.
        let (comm, kind) = rest.rsplit_once('_')?;
        let (start, end) = times.split_once('-')?;
        Some(WindowKey {
            start_unix_millis: parse_digits(start)?,
            end_unix_millis: parse_digits(end)?,
            pid: parse_digits(pid)?,
            comm: comm.to_string(),
            kind: kind_from_name(kind)?,
        })
    }
}

/// A number written in ASCII digits only (no sign, no spaces).
fn parse_digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// One window file in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWindow {
    pub path: PathBuf,
    pub key: WindowKey,
    /// Size on disk (compressed).
    pub bytes: u64,
}

/// Which windows to list: those overlapping `[since, until)` of the given
/// processes. Default: all of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowFilter {
    pub since_unix_millis: Option<u64>,
    pub until_unix_millis: Option<u64>,
    /// Empty: every process.
    pub pids: Vec<u32>,
    /// `None`: every kind.
    pub kind: Option<ProfileKind>,
}

impl WindowFilter {
    pub fn matches(&self, key: &WindowKey) -> bool {
        self.since_unix_millis
            .is_none_or(|since| key.end_unix_millis > since)
            && self
                .until_unix_millis
                .is_none_or(|until| key.start_unix_millis < until)
            && (self.pids.is_empty() || self.pids.contains(&key.pid))
            && self.kind.is_none_or(|kind| kind == key.kind)
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The store in one directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens the store in `dir`, creating the directory if needed and
    /// removing temporary files an interrupted write left behind.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        let store = Store { dir };
        for entry in store.entries()? {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                // Best effort: a leftover that cannot be removed is only ignored.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(store)
    }

    /// Opens an existing store for reading, without creating or cleaning anything.
    pub fn open_existing(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        std::fs::read_dir(&dir).map_err(|source| StoreError::List {
            dir: dir.clone(),
            source,
        })?;
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entries(&self) -> Result<Vec<std::fs::DirEntry>, StoreError> {
        let list_error = |source| StoreError::List {
            dir: self.dir.clone(),
            source,
        };
        std::fs::read_dir(&self.dir)
            .map_err(list_error)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(list_error)
    }

    /// Stores `profile` as the window `key`.
    pub fn write(&self, key: &WindowKey, profile: &Profile) -> Result<StoredWindow, StoreError> {
        let encoded = crate::output::pprof::to_proto(profile).encode_to_vec();
        self.write_encoded(key, &encoded)
    }

    /// Stores an already encoded (uncompressed) pprof message as the window
    /// `key`, so a window encoded once can be both stored and pushed.
    pub fn write_encoded(&self, key: &WindowKey, pprof: &[u8]) -> Result<StoredWindow, StoreError> {
        if key.start_unix_millis > key.end_unix_millis {
            return Err(StoreError::BadRange {
                start_unix_millis: key.start_unix_millis,
                end_unix_millis: key.end_unix_millis,
            });
        }
        let path = self.dir.join(key.file_name());
        let write_error = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX).suffix(".tmp");
        {
            use std::os::unix::fs::PermissionsExt;
            // Like `profiler record`'s outputs: readable by others (less the
            // umask), so `profiler report` need not run as the agent's user.
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let mut temp = builder.tempfile_in(&self.dir).map_err(write_error)?;
        {
            let mut encoder =
                zstd::Encoder::new(temp.as_file_mut(), ZSTD_LEVEL).map_err(write_error)?;
            encoder.write_all(pprof).map_err(write_error)?;
            encoder.finish().map_err(write_error)?;
        }
        temp.as_file().sync_all().map_err(write_error)?;
        let file = temp.persist(&path).map_err(|e| write_error(e.error))?;
        let bytes = file.metadata().map_err(write_error)?.len();
        Ok(StoredWindow {
            key: WindowKey::from_file_name(&key.file_name()).expect("a name this store made"),
            path,
            bytes,
        })
    }

    /// The windows `filter` selects, oldest first (by start, then end, pid,
    /// kind and name). Files that are not windows are ignored.
    pub fn list(&self, filter: &WindowFilter) -> Result<Vec<StoredWindow>, StoreError> {
        let mut windows = Vec::new();
        for entry in self.entries()? {
            let name = entry.file_name();
            let Some(key) = WindowKey::from_file_name(&name.to_string_lossy()) else {
                continue;
            };
            if !filter.matches(&key) {
                continue;
            }
            // A window removed meanwhile (retention running concurrently) is skipped.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            windows.push(StoredWindow {
                path: entry.path(),
                key,
                bytes: metadata.len(),
            });
        }
        windows.sort_by(|a, b| {
            (a.key.start_unix_millis, a.key.end_unix_millis, a.key.pid)
                .cmp(&(b.key.start_unix_millis, b.key.end_unix_millis, b.key.pid))
                .then_with(|| a.path.cmp(&b.path))
        });
        Ok(windows)
    }

    /// Total size of the stored windows.
    pub fn total_bytes(&self) -> Result<u64, StoreError> {
        Ok(self
            .list(&WindowFilter::default())?
            .iter()
            .map(|w| w.bytes)
            .sum())
    }

    /// The uncompressed pprof message of a stored window.
    pub fn read_encoded(window: &StoredWindow) -> Result<Vec<u8>, StoreError> {
        let compressed = std::fs::read(&window.path).map_err(|source| StoreError::Read {
            path: window.path.clone(),
            source,
        })?;
        zstd::decode_all(&compressed[..]).map_err(|e| StoreError::Corrupt {
            path: window.path.clone(),
            message: format!("not zstd: {e}"),
        })
    }

    /// The pprof profile of a stored window.
    pub fn read(window: &StoredWindow) -> Result<protos::Profile, StoreError> {
        let bytes = Store::read_encoded(window)?;
        protos::Profile::decode(&bytes[..]).map_err(|e| StoreError::Corrupt {
            path: window.path.clone(),
            message: format!("not a pprof profile: {e}"),
        })
    }

    /// Removes windows that ended more than `retention.max_age` before
    /// `now`, then the oldest ones until the store holds at most
    /// `retention.max_bytes`. Returns what was removed, oldest first.
    pub fn enforce_retention(
        &self,
        retention: &Retention,
        now: SystemTime,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let windows = self.list(&WindowFilter::default())?;
        let cutoff = unix_millis(now.checked_sub(retention.max_age).unwrap_or(UNIX_EPOCH));
        let mut total: u64 = windows.iter().map(|w| w.bytes).sum();
        let mut removed = Vec::new();
        for window in windows {
            let expired = window.key.end_unix_millis < cutoff;
            if !expired && total <= retention.max_bytes {
                // Oldest first: once one window may stay, the newer ones may too.
                break;
            }
            match std::fs::remove_file(&window.path) {
                Ok(()) => {}
                // Already gone (another reader or a concurrent retention pass).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Remove {
                        path: window.path,
                        source,
                    });
                }
            }
            total -= window.bytes;
            removed.push(window);
        }
        Ok(removed)
    }
}

/// `now - age` in Unix milliseconds, for `--since`.
pub fn millis_ago(now: SystemTime, age: Duration) -> u64 {
    unix_millis(now.checked_sub(age).unwrap_or(UNIX_EPOCH))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_profile::demo_profile;

    fn key(start: u64, end: u64, pid: u32, comm: &str) -> WindowKey {
        WindowKey {
            start_unix_millis: start,
            end_unix_millis: end,
            pid,
            comm: comm.into(),
            kind: ProfileKind::Cpu,
        }
    }

    fn names(windows: &[StoredWindow]) -> Vec<String> {
        windows
            .iter()
            .map(|w| w.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn file_names_round_trip() {
        for (key, name) in [
            (
                key(1_700_000_000_000, 1_700_000_010_000, 42, "nginx"),
                "1700000000000-1700000010000_42_nginx_cpu.pb.zst",
            ),
            (
                WindowKey {
                    kind: ProfileKind::OffCpu,
                    ..key(1, 2, 7, "kworker/0:1")
                },
                "1-2_7_kworker_0_1_off-cpu.pb.zst",
            ),
            (
                WindowKey {
                    kind: ProfileKind::Wall,
                    ..key(1, 2, 7, "")
                },
                "1-2_7_unknown_wall.pb.zst",
            ),
            (key(1, 2, 7, "../x y"), "1-2_7_unknown.._x_y_cpu.pb.zst"),
        ] {
            assert_eq!(key.file_name(), name);
            let parsed = WindowKey::from_file_name(name).unwrap();
            assert_eq!(parsed.comm, sanitize_comm(&key.comm));
            assert_eq!(
                parsed,
                WindowKey {
                    comm: sanitize_comm(&key.comm),
                    ..key
                }
            );
        }
        for name in [
            "x.pb.zst",
            "1-2_7_a_cpu.pb",
            "1-2_7_a_gpu.pb.zst",
            "a-2_7_a_cpu.pb.zst",
            "1-2_-7_a_cpu.pb.zst",
            ".tmp-abc.tmp",
            "1-2_7_cpu.pb.zst",
        ] {
            assert_eq!(WindowKey::from_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn write_then_read_back_the_same_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let profile = demo_profile();
        let window = store
            .write(&key(1000, 11_000, 100, "demo"), &profile)
            .unwrap();
        assert_eq!(dir_names(tmp.path()), ["1000-11000_100_demo_cpu.pb.zst"]);
        let raw = std::fs::read(&window.path).unwrap();
        assert_eq!(&raw[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
        assert_eq!(window.bytes, raw.len() as u64);
        assert_eq!(
            Store::read(&window).unwrap(),
            crate::output::pprof::to_proto(&profile)
        );
    }

    #[test]
    fn writes_replace_atomically_and_leftovers_are_cleaned() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".tmp-crashed.tmp"), "partial").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "not a window").unwrap();
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(dir_names(tmp.path()), ["notes.txt"]);
        let k = key(1, 2, 3, "a");
        store.write_encoded(&k, b"first").unwrap();
        let window = store.write_encoded(&k, b"second").unwrap();
        assert_eq!(Store::read_encoded(&window).unwrap(), b"second");
        assert_eq!(dir_names(tmp.path()), ["1-2_3_a_cpu.pb.zst", "notes.txt"]);
        assert!(matches!(
            store.write_encoded(&key(5, 4, 3, "a"), b"x"),
            Err(StoreError::BadRange { .. })
        ));
    }

    #[test]
    fn corrupt_windows_are_reported_by_path() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let path = tmp.path().join(key(1, 2, 3, "a").file_name());
        std::fs::write(&path, "garbage").unwrap();
        let window = &store.list(&WindowFilter::default()).unwrap()[0];
        let message = Store::read(window).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("not zstd"), "{message}");
        let window = store
            .write_encoded(&key(1, 2, 3, "a"), b"\xff\xff")
            .unwrap();
        let message = Store::read(&window).unwrap_err().to_string();
        assert!(message.contains("not a pprof profile"), "{message}");
    }

    #[test]
    fn list_filters_by_time_pid_and_kind_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        for (start, pid) in [(30, 1), (10, 2), (20, 1), (10, 1)] {
            store
                .write_encoded(&key(start, start + 10, pid, "p"), b"")
                .unwrap();
        }
        store
            .write_encoded(
                &WindowKey {
                    kind: ProfileKind::Wall,
                    ..key(20, 30, 2, "p")
                },
                b"",
            )
            .unwrap();
        let all = store.list(&WindowFilter::default()).unwrap();
        assert_eq!(
            names(&all),
            [
                "10-20_1_p_cpu.pb.zst",
                "10-20_2_p_cpu.pb.zst",
                "20-30_1_p_cpu.pb.zst",
                "20-30_2_p_wall.pb.zst",
                "30-40_1_p_cpu.pb.zst",
            ]
        );
        let filter = WindowFilter {
            since_unix_millis: Some(20),
            until_unix_millis: Some(30),
            pids: vec![1],
            kind: None,
        };
        assert_eq!(
            names(&store.list(&filter).unwrap()),
            ["20-30_1_p_cpu.pb.zst"]
        );
        let filter = WindowFilter {
            since_unix_millis: Some(25),
            ..Default::default()
        };
        assert_eq!(
            store.list(&filter).unwrap().len(),
            3,
            "overlapping windows count"
        );
        let filter = WindowFilter {
            kind: Some(ProfileKind::Wall),
            ..Default::default()
        };
        assert_eq!(
            names(&store.list(&filter).unwrap()),
            ["20-30_2_p_wall.pb.zst"]
        );
    }

    #[test]
    fn retention_by_age_removes_expired_windows() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = 3_600_000;
        let now_ms = unix_millis(now);
        for (age_hours, pid) in [(30, 1), (25, 2), (23, 3), (1, 4)] {
            let end = now_ms - age_hours * hour;
            store
                .write_encoded(&key(end - 10_000, end, pid, "p"), b"data")
                .unwrap();
        }
        let retention = Retention {
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: u64::MAX,
        };
        let removed = store.enforce_retention(&retention, now).unwrap();
        assert_eq!(
            removed.iter().map(|w| w.key.pid).collect::<Vec<_>>(),
            [1, 2]
        );
        let left = store.list(&WindowFilter::default()).unwrap();
        assert_eq!(left.iter().map(|w| w.key.pid).collect::<Vec<_>>(), [3, 4]);
        assert!(store.enforce_retention(&retention, now).unwrap().is_empty());
    }

    #[test]
    fn retention_by_size_removes_the_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let now = SystemTime::now();
        let now_ms = unix_millis(now);
        for i in 0..5u64 {
            // Incompressible, so each file has a known, similar size.
            let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ i;
            let data: Vec<u8> = (0..1000)
                .map(|_| {
                    // xorshift64: no dependency needed for test noise.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            store
                .write_encoded(
                    &key(now_ms - 1000 + i * 10, now_ms - 990 + i * 10, i as u32, "p"),
                    &data,
                )
                .unwrap();
        }
        let windows = store.list(&WindowFilter::default()).unwrap();
        let sizes: Vec<u64> = windows.iter().map(|w| w.bytes).collect();
        let total: u64 = sizes.iter().sum();
        assert_eq!(store.total_bytes().unwrap(), total);
        // Room for the newest three only.
        let bound = sizes[2] + sizes[3] + sizes[4];
        let retention = Retention {
            max_age: Duration::from_secs(3600),
            max_bytes: bound,
        };
        let removed = store.enforce_retention(&retention, now).unwrap();
        assert_eq!(
            removed.iter().map(|w| w.key.pid).collect::<Vec<_>>(),
            [0, 1]
        );
        assert_eq!(store.total_bytes().unwrap(), bound);
        let left = store.list(&WindowFilter::default()).unwrap();
        assert_eq!(
            left.iter().map(|w| w.key.pid).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        // One byte less: the next oldest goes too.
        let retention = Retention {
            max_bytes: bound - 1,
            ..retention
        };
        let removed = store.enforce_retention(&retention, now).unwrap();
        assert_eq!(removed.iter().map(|w| w.key.pid).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn open_existing_does_not_create() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing");
        let message = Store::open_existing(&missing).unwrap_err().to_string();
        assert!(
            message.contains(&missing.display().to_string()),
            "{message}"
        );
        assert!(!missing.exists());
    }
}

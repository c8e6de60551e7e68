//! Capturing what symbolizing a process needs while it is alive: its executable
//! mappings and an open handle on each mapped file. A process (a `-- CMD`
//! child, a short-lived fork) often exits before its profile is symbolized;
//! with the handles kept, its frames are still named, even when the file was
//! deleted or replaced since.
//!
//! Files are opened through `/proc/PID/map_files/` (the very object mapped),
//! falling back to `/proc/PID/root/PATH` (the path as the process sees it,
//! which also resolves paths inside containers), never the path in our own
//! mount namespace.

use std::{
    collections::HashMap,
    fs::{self, File},
    io,
    os::fd::AsRawFd,
    path::PathBuf,
    sync::Arc,
};

use crate::{Error, maps};

/// A mapped ELF file held open for symbolization.
#[derive(Debug)]
pub struct ObjectFile {
    /// The path as the process saw it (for output).
    pub path: String,
    /// Hex GNU build ID, when present.
    pub build_id: Option<String>,
    /// `(device, inode)` as in the maps file; the cache key.
    pub key: (u32, u32, u64),
    file: File,
}

impl ObjectFile {
    /// A path through which this process can read the file.
    pub fn fd_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

/// One executable mapping of a process.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    /// The mapped file; `None` for anonymous and pseudo mappings (`[vdso]`, JIT code).
    pub object: Option<Arc<ObjectFile>>,
    /// The path column of the maps line (file path or pseudo-name).
    pub name: String,
}

/// A snapshot of one process's executable mappings.
#[derive(Clone, Debug)]
pub struct ProcessMaps {
    pub pid: u32,
    /// Sorted by start address.
    pub mappings: Vec<Mapping>,
}

impl ProcessMaps {
    /// The mapping containing `addr`, with its index.
    pub fn find(&self, addr: u64) -> Option<(usize, &Mapping)> {
        let idx = self.mappings.partition_point(|m| m.start <= addr);
        let idx = idx.checked_sub(1)?;
        let mapping = &self.mappings[idx];
        (addr < mapping.end).then_some((idx, mapping))
    }
}

/// Open files shared by all captured processes, so that a library mapped by a
/// hundred processes is opened and parsed once.
#[derive(Debug, Default)]
pub struct FileCache {
    files: HashMap<(u32, u32, u64), Arc<ObjectFile>>,
    /// The kernel's vDSO image; `Some(None)` once copying it failed.
    vdso: Option<Option<Arc<ObjectFile>>>,
}

/// The key the vDSO copy is cached under (no real file has inode 0).
const VDSO_KEY: (u32, u32, u64) = (0, 0, 0);

/// Copies this process's vDSO into a memfd so it can be read as an ELF file.
/// Every 64-bit process maps the same image, so ours names their frames too.
fn copy_own_vdso() -> Option<ObjectFile> {
    let maps = fs::read_to_string("/proc/self/maps").ok()?;
    let entry = maps::parse(&maps)
        .into_iter()
        .find(|e| e.path == "[vdso]")?;
    let len = (entry.end - entry.start) as usize;
    // SAFETY: the range is our own vDSO mapping, readable for the life of the process.
    let image = unsafe { std::slice::from_raw_parts(entry.start as *const u8, len) };
    // SAFETY: a valid C string and flags; a non-negative result is a new fd we own.
    let fd = unsafe { libc::memfd_create(c"vdso".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    std::io::Write::write_all(&mut file, image).ok()?;
    let mut object = ObjectFile {
        path: "[vdso]".into(),
        build_id: None,
        key: VDSO_KEY,
        file,
    };
    object.build_id = read_build_id(&object);
    Some(object)
}

fn read_build_id(object: &ObjectFile) -> Option<String> {
    blazesym::helper::read_elf_build_id(&object.fd_path())
        .ok()
        .flatten()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
}

impl FileCache {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Drops files no captured process refers to any more (the vDSO copy stays).
    pub fn prune(&mut self) {
        self.files.retain(|_, file| Arc::strong_count(file) > 1);
    }

    fn vdso(&mut self) -> Option<Arc<ObjectFile>> {
        self.vdso
            .get_or_insert_with(|| copy_own_vdso().map(Arc::new))
            .clone()
    }

    fn open(&mut self, pid: u32, entry: &maps::MapEntry) -> Option<Arc<ObjectFile>> {
        let key = (entry.dev.0, entry.dev.1, entry.inode);
        if let Some(file) = self.files.get(&key) {
            return Some(file.clone());
        }
        let by_map_files = format!("/proc/{pid}/map_files/{:x}-{:x}", entry.start, entry.end);
        let by_root = format!("/proc/{pid}/root{}", entry.file_path());
        let file = File::open(&by_map_files)
            .or_else(|_| File::open(&by_root))
            .ok()?;
        let mut object = ObjectFile {
            path: entry.file_path().to_string(),
            build_id: None,
            key,
            file,
        };
        object.build_id = read_build_id(&object);
        let object = Arc::new(object);
        self.files.insert(key, object.clone());
        Some(object)
    }
}

/// Reads `/proc/PID/maps` and opens every executable file mapping.
pub fn capture(pid: u32, cache: &mut FileCache) -> Result<ProcessMaps, Error> {
    let path = format!("/proc/{pid}/maps");
    let text = fs::read_to_string(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::ProcessGone { pid },
        _ => Error::ReadMaps { pid, source },
    })?;
    let mut mappings: Vec<Mapping> = maps::parse(&text)
        .into_iter()
        .filter(|entry| entry.executable)
        .map(|entry| Mapping {
            start: entry.start,
            end: entry.end,
            file_offset: entry.file_offset,
            object: if entry.is_file() {
                cache.open(pid, &entry)
            } else if entry.path == "[vdso]" {
                cache.vdso()
            } else {
                None
            },
            name: entry.file_path().to_string(),
        })
        .collect();
    if mappings.is_empty() && text.is_empty() {
        // A zombie or a kernel thread: nothing mapped.
        return Err(Error::ProcessGone { pid });
    }
    mappings.sort_by_key(|m| m.start);
    Ok(ProcessMaps { pid, mappings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_own_process_and_finds_a_function() {
        let mut cache = FileCache::default();
        let maps = capture(std::process::id(), &mut cache).expect("own maps");
        let addr = captures_own_process_and_finds_a_function as fn() as usize as u64;
        let (_, mapping) = maps.find(addr).expect("own code is mapped");
        let object = mapping.object.as_ref().expect("own binary is a file");
        assert!(object.path.contains("symbolizer"), "{}", object.path);
        assert!(!cache.is_empty());
        assert!(maps.find(0).is_none());
    }

    #[test]
    fn a_missing_process_is_reported_as_gone() {
        let mut cache = FileCache::default();
        // pid_max is at most 2^22, so this pid cannot exist.
        let err = capture(u32::MAX - 1, &mut cache).unwrap_err();
        assert!(matches!(err, Error::ProcessGone { .. }), "{err}");
    }
}

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
        fd_path(&self.file)
    }

    /// The file's size now; `None` if it cannot be read.
    pub fn size(&self) -> Option<u64> {
        self.file.metadata().ok().map(|m| m.len())
    }
}

/// `/proc/self/fd/N`: a path through which this process reads an open file.
pub(crate) fn fd_path(file: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// One executable mapping of a process.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    /// The mapped file; `None` for anonymous and pseudo mappings (`[vdso]`, JIT code).
    pub object: Option<Arc<ObjectFile>>,
    /// The path column of the maps line (file path or pseudo-name). Shared:
    /// a fork-heavy system has thousands of processes mapping the same few
    /// files, and a string each was a tenth of `record -a`'s CPU to make and
    /// free (the kernel's records come with their paths interned).
    pub name: Arc<str>,
}

impl Mapping {
    /// Memory where a JIT may have put code, to be named from its perf map:
    /// anonymous memory, named by `/proc/PID/maps` (nothing, or a name set
    /// with `PR_SET_VMA`) or the kernel's records (`//anon`); and the shared
    /// memory some JITs map code from twice, writable and executable
    /// (.NET's `/memfd:doublemapper`, `MAP_SHARED` anonymous memory, which
    /// is `/dev/zero`). Not a pseudo-mapping such as `[vdso]`.
    pub fn may_hold_jit_code(&self) -> bool {
        let name = &*self.name;
        match self.object {
            None => name.is_empty() || name.starts_with("//anon") || name.starts_with("[anon:"),
            Some(_) => name.starts_with("/memfd:") || name == "/dev/zero",
        }
    }
}

/// A snapshot of one process's executable mappings.
#[derive(Clone, Debug)]
pub struct ProcessMaps {
    pub pid: u32,
    /// Sorted by start address. Shared until changed: a forked child starts
    /// with its parent's list, and most children exec (and get a list of
    /// their own) before either changes it.
    pub mappings: Arc<Vec<Mapping>>,
}

impl ProcessMaps {
    /// Whether any of its executable mappings may hold JIT code (see
    /// [`Mapping::may_hold_jit_code`]).
    pub fn may_hold_jit_code(&self) -> bool {
        self.mappings.iter().any(Mapping::may_hold_jit_code)
    }

    /// The mapping containing `addr`, with its index.
    pub fn find(&self, addr: u64) -> Option<(usize, &Mapping)> {
        let idx = self.mappings.partition_point(|m| m.start <= addr);
        let idx = idx.checked_sub(1)?;
        let mapping = &self.mappings[idx];
        (addr < mapping.end).then_some((idx, mapping))
    }

    /// Adds the mappings of `older` (an earlier image of the process, before
    /// an exec) that overlap none of its own, so that a frame still in the
    /// old image (a sample taken inside `execve`, or in a fork's child
    /// before it exec'd) is named rather than left an address.
    pub fn fill_gaps(&mut self, older: &[Mapping]) {
        // The older image's mappings overlap none of each other, so each is
        // checked against this list alone, and the free ones merged in one
        // pass: inserted one by one, they were most of `refresh` at 999 Hz
        // (a shift and often a reallocation each).
        let free: Vec<&Mapping> = older
            .iter()
            .filter(|old| self.free_at(old).is_some())
            .collect();
        if free.is_empty() {
            return;
        }
        let mut free = free.into_iter().peekable();
        let own = Arc::unwrap_or_clone(std::mem::take(&mut self.mappings));
        let mut merged = Vec::with_capacity(own.len() + free.len());
        for mapping in own {
            while let Some(old) = free.next_if(|old| old.start < mapping.start) {
                merged.push(old.clone());
            }
            merged.push(mapping);
        }
        merged.extend(free.cloned());
        self.mappings = Arc::new(merged);
    }

    /// Where `mapping` goes in the list if it overlaps none of it.
    fn free_at(&self, mapping: &Mapping) -> Option<usize> {
        let at = self.mappings.partition_point(|m| m.start < mapping.start);
        let clear_before = at == 0 || self.mappings[at - 1].end <= mapping.start;
        let clear_after = self.mappings.get(at).is_none_or(|m| m.start >= mapping.end);
        (clear_before && clear_after).then_some(at)
    }

    /// Adds a mapping made after the snapshot. Whatever it overlaps was
    /// replaced in the process too: those parts are cut away, as the kernel
    /// did, keeping the pieces on either side.
    pub fn insert(&mut self, new: Mapping) {
        if let Some(at) = self.free_at(&new) {
            // The usual case (a loader mapping a library into free space):
            // no list rebuilt.
            Arc::make_mut(&mut self.mappings).insert(at, new);
            return;
        }
        let mut kept = Vec::with_capacity(self.mappings.len() + 2);
        for old in Arc::make_mut(&mut self.mappings).drain(..) {
            if old.end <= new.start || old.start >= new.end {
                kept.push(old);
                continue;
            }
            if old.start < new.start {
                kept.push(Mapping {
                    end: new.start,
                    ..old.clone()
                });
            }
            if old.end > new.end {
                kept.push(Mapping {
                    start: new.end,
                    file_offset: old.file_offset + (new.end - old.start),
                    ..old
                });
            }
        }
        let at = kept.partition_point(|m| m.start < new.start);
        kept.insert(at, new);
        self.mappings = Arc::new(kept);
    }
}

/// Open files shared by all captured processes, so that a library mapped by a
/// hundred processes is opened and parsed once.
#[derive(Debug, Default)]
pub struct FileCache {
    // foldhash: looked up for each mapping the kernel announces, thousands
    // a second on a fork-heavy system; the keys are the kernel's.
    files: foldhash::HashMap<(u32, u32, u64), Arc<ObjectFile>>,
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
        .find(|e| &*e.path == "[vdso]")?;
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
    build_id_of(&object.file)
}

/// The file's GNU build ID in hex. Read with `object`, which checks the
/// note's owner: blazesym's reader (0.2.7) takes the first note of type 3,
/// and a SystemTap probe note (`stapsdt`, as in libstdc++ and LLVM builds)
/// is type 3 too, so a file with probes and no build ID got its first
/// probe's bytes as one. Read through the descriptor, not mapped: the file
/// may be truncated under us. Only the headers and the notes are read:
/// `object::File::parse` also reads the whole symbol table, which for the
/// profiler's own 100 MB binary (its build ID keys the frame cache) was 5%
/// of a short recording's CPU.
pub(crate) fn build_id_of(file: &File) -> Option<String> {
    use object::{
        FileKind,
        elf::{FileHeader32, FileHeader64},
    };
    let cache = object::ReadCache::new(file);
    let id = match FileKind::parse(&cache).ok()? {
        FileKind::Elf64 => elf_build_id::<FileHeader64<object::Endianness>>(&cache)?,
        FileKind::Elf32 => elf_build_id::<FileHeader32<object::Endianness>>(&cache)?,
        _ => return None,
    };
    (!id.is_empty()).then(|| id.iter().map(|b| format!("{b:02x}")).collect())
}

/// The GNU build ID note's bytes, looked for as `object`'s `build_id()`
/// does: in the note sections, or without sections in the note segments.
fn elf_build_id<'data, Elf>(data: &'data object::ReadCache<&File>) -> Option<&'data [u8]>
where
    Elf: object::read::elf::FileHeader<Endian = object::Endianness>,
{
    use object::{
        elf::{ELF_NOTE_GNU, NT_GNU_BUILD_ID},
        read::elf::{NoteIterator, ProgramHeader, SectionHeader},
    };
    fn find<'data, Elf: object::read::elf::FileHeader>(
        mut notes: NoteIterator<'data, Elf>,
        endian: Elf::Endian,
    ) -> Option<&'data [u8]> {
        while let Ok(Some(note)) = notes.next() {
            if note.name() == ELF_NOTE_GNU && note.n_type(endian) == NT_GNU_BUILD_ID {
                return Some(note.desc());
            }
        }
        None
    }
    let header = Elf::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.section_headers(endian, data).ok()?;
    if !sections.is_empty() {
        return sections
            .iter()
            .filter_map(|section| section.notes(endian, data).ok().flatten())
            .find_map(|notes| find(notes, endian));
    }
    header
        .program_headers(endian, data)
        .ok()?
        .iter()
        .filter_map(|segment| segment.notes(endian, data).ok().flatten())
        .find_map(|notes| find(notes, endian))
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
            .ok()
            .or_else(|| open_if_same(entry.file_path(), key))?;
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

/// Opens `path` in our own mount namespace, only if it is still the file
/// `key` names (same device and inode) and a regular file: the last resort for
/// a process that has already exited, whose `/proc/PID/` paths are gone.
/// Non-blocking and without following a final symlink, so that a path swapped
/// for a FIFO or a link since cannot stall us or lead elsewhere.
fn open_if_same(path: &str, key: (u32, u32, u64)) -> Option<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let same = meta.is_file() && (libc::major(dev), libc::minor(dev), meta.ino()) == key;
    same.then_some(file)
}

/// The mapping of `entry` in process `pid`, its file opened (from the cache
/// when another process mapped it already). For mappings the kernel announced
/// as they were made (perf `MMAP2` records) rather than read from
/// `/proc/PID/maps`: the process may have exited since, and the file is then
/// found by its path if it is still the same file.
pub fn mapping(pid: u32, entry: &maps::MapEntry, cache: &mut FileCache) -> Mapping {
    Mapping {
        start: entry.start,
        end: entry.end,
        file_offset: entry.file_offset,
        object: if entry.is_file() {
            cache.open(pid, entry)
        } else if &*entry.path == "[vdso]" {
            cache.vdso()
        } else {
            None
        },
        name: match entry.file_path() {
            name if name.len() == entry.path.len() => Arc::clone(&entry.path),
            name => Arc::from(name),
        },
    }
}

/// `struct procmap_query` of `linux/fs.h` (Linux 6.11+).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: libc::c_ulong = (3 << 30)
    | ((std::mem::size_of::<ProcmapQuery>() as libc::c_ulong) << 16)
    | ((b'f' as libc::c_ulong) << 8)
    | 17;
const PROCMAP_QUERY_VMA_READABLE: u64 = 0x01;
const PROCMAP_QUERY_VMA_EXECUTABLE: u64 = 0x04;
const PROCMAP_QUERY_COVERING_OR_NEXT_VMA: u64 = 0x10;

/// The executable mappings of an open `/proc/PID/maps`, asked of the kernel
/// one by one (`PROCMAP_QUERY`), which spares it formatting every mapping
/// as text: a fork-heavy recording captured ~2 400 processes a second, and
/// formatting their maps was a third of the profiler's CPU while recording.
/// `None` when the kernel cannot answer (before 6.11, a process without
/// memory): the caller reads the text instead. The struct and the ioctl are
/// written by hand (the libc crate does not have them).
fn query_executable(maps: &fs::File) -> Option<Vec<maps::MapEntry>> {
    let mut entries = Vec::new();
    let mut name = vec![0u8; libc::PATH_MAX as usize + 64];
    let mut addr = 0u64;
    loop {
        let mut query = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_flags: PROCMAP_QUERY_COVERING_OR_NEXT_VMA | PROCMAP_QUERY_VMA_EXECUTABLE,
            query_addr: addr,
            vma_name_size: name.len() as u32,
            vma_name_addr: name.as_mut_ptr() as u64,
            ..ProcmapQuery::default()
        };
        // SAFETY: a valid fd, a struct of the size given in its `size`
        // field, and a name buffer of `vma_name_size` bytes that outlives the call.
        let ret = unsafe { libc::ioctl(maps.as_raw_fd(), PROCMAP_QUERY as _, &mut query) };
        if ret != 0 {
            let errno = io::Error::last_os_error().raw_os_error();
            // No executable mapping at or after `addr`: all found. Any other
            // failure, even after some were found: let the text say.
            return (errno == Some(libc::ENOENT) && addr != 0).then_some(entries);
        }
        let len = (query.vma_name_size as usize)
            .saturating_sub(1)
            .min(name.len());
        let path = Arc::from(&*String::from_utf8_lossy(&name[..len]));
        entries.push(maps::MapEntry {
            start: query.vma_start,
            end: query.vma_end,
            readable: query.vma_flags & PROCMAP_QUERY_VMA_READABLE != 0,
            executable: true,
            file_offset: query.vma_offset,
            dev: (query.dev_major, query.dev_minor),
            inode: query.inode,
            path,
        });
        if query.vma_end <= addr {
            return None;
        }
        addr = query.vma_end;
    }
}

/// The `[vsyscall]` page, which `/proc/PID/maps` lists but `PROCMAP_QUERY`
/// does not (it is not one of the process's own mappings): the same for
/// every 64-bit process, so taken once from our own maps. (A 32-bit process
/// gets it too, at an address its stacks cannot hold.)
fn vsyscall_entry() -> Option<maps::MapEntry> {
    static ENTRY: std::sync::OnceLock<Option<maps::MapEntry>> = std::sync::OnceLock::new();
    ENTRY
        .get_or_init(|| {
            let text = fs::read_to_string("/proc/self/maps").ok()?;
            maps::parse(&text)
                .into_iter()
                .find(|e| &*e.path == "[vsyscall]")
        })
        .clone()
}

/// Reads the executable mappings of `/proc/PID/maps` and opens every
/// executable file mapping.
pub fn capture(pid: u32, cache: &mut FileCache) -> Result<ProcessMaps, Error> {
    capture_with(pid, cache, true)
}

fn capture_with(pid: u32, cache: &mut FileCache, query: bool) -> Result<ProcessMaps, Error> {
    let path = format!("/proc/{pid}/maps");
    let gone = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => Error::ProcessGone { pid },
        _ => Error::ReadMaps { pid, source },
    };
    let mut file = fs::File::open(&path).map_err(gone)?;
    let (entries, text_empty) = match query.then(|| query_executable(&file)).flatten() {
        Some(mut entries) => {
            entries.extend(vsyscall_entry());
            (entries, false)
        }
        None => {
            let mut text = String::new();
            io::Read::read_to_string(&mut file, &mut text).map_err(gone)?;
            (maps::parse(&text), text.is_empty())
        }
    };
    let mut mappings: Vec<Mapping> = entries
        .into_iter()
        .filter(|entry| entry.executable)
        .map(|entry| mapping(pid, &entry, cache))
        .collect();
    if mappings.is_empty() && text_empty {
        // A zombie or a kernel thread: nothing mapped.
        return Err(Error::ProcessGone { pid });
    }
    mappings.sort_by_key(|m| m.start);
    Ok(ProcessMaps {
        pid,
        mappings: Arc::new(mappings),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build ID read from the notes alone is the one `object` finds
    /// parsing the whole file, for this test binary and for libc.
    #[test]
    fn build_ids_match_a_full_parse() {
        use object::Object;
        let libc = fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter_map(maps::parse_line)
            .find(|e| e.path.contains("/libc.so"))
            .map(|e| e.path.to_string());
        let paths: Vec<String> = ["/proc/self/exe".to_string()]
            .into_iter()
            .chain(libc)
            .collect();
        for path in paths {
            let file = File::open(&path).unwrap();
            let data = fs::read(&path).unwrap();
            let full = object::File::parse(&*data).unwrap();
            let expected = full
                .build_id()
                .unwrap()
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<String>());
            assert!(expected.is_some(), "{path} has no build ID to compare");
            assert_eq!(build_id_of(&file), expected, "{path}");
        }
    }

    /// A GNU build ID is read as `readelf -n` shows it; a SystemTap probe
    /// note (also type 3) in a file without one is not taken for one.
    #[test]
    fn only_the_gnu_note_is_a_build_id() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let source = dir.join("m.c");
        fs::write(&source, "int main(void) { return 0; }\n").unwrap();
        let run =
            |program: &str, args: &[&std::ffi::OsStr]| match std::process::Command::new(program)
                .args(args)
                .status()
            {
                Ok(status) => {
                    assert!(status.success(), "{program} {args:?} failed");
                    true
                }
                Err(e) => {
                    eprintln!("skipped: cannot run {program} ({e})");
                    false
                }
            };
        let (with_id, without_id, probes) =
            (dir.join("with"), dir.join("without"), dir.join("probes"));
        let id = "0123456789abcdef0123456789abcdef01234567";
        if !run(
            "cc",
            &[
                source.as_os_str(),
                "-o".as_ref(),
                with_id.as_os_str(),
                format!("-Wl,--build-id=0x{id}").as_ref(),
            ],
        ) || !run(
            "cc",
            &[
                source.as_os_str(),
                "-o".as_ref(),
                without_id.as_os_str(),
                "-Wl,--build-id=none".as_ref(),
            ],
        ) {
            return;
        }
        // A `stapsdt` note of type 3 with a 24-byte descriptor.
        let mut note = Vec::new();
        for word in [8u32, 24, 3] {
            note.extend_from_slice(&word.to_le_bytes());
        }
        note.extend_from_slice(b"stapsdt\0");
        note.extend_from_slice(&[0x11; 24]);
        let note_file = dir.join("note.bin");
        fs::write(&note_file, &note).unwrap();
        let section = format!(".note.stapsdt={}", note_file.display());
        // Aligned as the linker places notes (blazesym reads note headers
        // in place, and skips a misaligned section).
        let added = run(
            "objcopy",
            &[
                "--add-section".as_ref(),
                section.as_ref(),
                without_id.as_os_str(),
                probes.as_os_str(),
            ],
        ) && run(
            "objcopy",
            &[
                "--set-section-alignment".as_ref(),
                ".note.stapsdt=8".as_ref(),
                probes.as_os_str(),
            ],
        );
        if !added {
            return;
        }
        let read = |path: &std::path::Path| build_id_of(&File::open(path).unwrap());
        assert_eq!(read(&with_id).as_deref(), Some(id));
        assert_eq!(read(&without_id), None);
        assert_eq!(read(&probes), None, "a probe note was taken for a build ID");
    }

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

    /// The kernel's answers to `PROCMAP_QUERY` give the same mappings as
    /// the text of `/proc/PID/maps`, for this process and for a child.
    #[test]
    fn queried_mappings_equal_the_texts() {
        let own = fs::File::open("/proc/self/maps").unwrap();
        if query_executable(&own).is_none() {
            eprintln!("skipped: no PROCMAP_QUERY (Linux 6.11+)");
            return;
        }
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        for pid in [std::process::id(), child.id()] {
            let mut cache = FileCache::default();
            let describe = |maps: ProcessMaps| -> Vec<String> {
                maps.mappings
                    .iter()
                    .map(|m| {
                        format!(
                            "{:x}-{:x} {:x} {} {:?}",
                            m.start,
                            m.end,
                            m.file_offset,
                            m.name,
                            m.object.as_ref().map(|o| (o.key, o.path.clone()))
                        )
                    })
                    .collect()
            };
            let queried = describe(capture_with(pid, &mut cache, true).unwrap());
            let text = describe(capture_with(pid, &mut cache, false).unwrap());
            assert!(queried.len() >= 3, "{queried:?}");
            assert!(queried.iter().any(|m| m.contains("[vdso]")), "{queried:?}");
            assert_eq!(queried, text, "pid {pid}");
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn anon(start: u64, end: u64, file_offset: u64, name: &str) -> Mapping {
        Mapping {
            start,
            end,
            file_offset,
            object: None,
            name: name.into(),
        }
    }

    #[test]
    fn an_inserted_mapping_cuts_away_what_it_overlaps() {
        let mut maps = ProcessMaps {
            pid: 1,
            mappings: Arc::new(vec![
                anon(0x1000, 0x5000, 0, "a"),
                anon(0x8000, 0x9000, 0, "b"),
            ]),
        };
        maps.insert(anon(0x2000, 0x3000, 0x40, "c"));
        maps.insert(anon(0x8800, 0xa000, 0, "d"));
        maps.insert(anon(0x100, 0x200, 0, "e"));
        let got: Vec<_> = maps
            .mappings
            .iter()
            .map(|m| (m.start, m.end, m.file_offset, &*m.name))
            .collect();
        assert_eq!(
            got,
            vec![
                (0x100, 0x200, 0, "e"),
                (0x1000, 0x2000, 0, "a"),
                (0x2000, 0x3000, 0x40, "c"),
                (0x3000, 0x5000, 0x2000, "a"),
                (0x8000, 0x8800, 0, "b"),
                (0x8800, 0xa000, 0, "d"),
            ]
        );
        assert_eq!(maps.find(0x3500).unwrap().1.name.as_ref(), "a");
    }

    #[test]
    fn an_older_image_fills_only_the_gaps() {
        let mut maps = ProcessMaps {
            pid: 1,
            mappings: Arc::new(vec![
                anon(0x1000, 0x2000, 0, "new1"),
                anon(0x5000, 0x6000, 0, "new2"),
            ]),
        };
        maps.fill_gaps(&[
            anon(0x100, 0x1000, 0, "old-before"),
            anon(0x1800, 0x3000, 0, "old-overlapping"),
            anon(0x3000, 0x5000, 0, "old-between"),
            anon(0x5fff, 0x7000, 0, "old-overlapping-end"),
            anon(0x9000, 0xa000, 0, "old-after"),
        ]);
        let names: Vec<&str> = maps.mappings.iter().map(|m| &*m.name).collect();
        assert_eq!(
            names,
            ["old-before", "new1", "old-between", "new2", "old-after"]
        );
        // A list with nothing yet (an exec's first record not applied) takes all.
        let mut empty = ProcessMaps {
            pid: 1,
            mappings: Arc::default(),
        };
        empty.fill_gaps(&maps.mappings);
        let names: Vec<&str> = empty.mappings.iter().map(|m| &*m.name).collect();
        assert_eq!(
            names,
            ["old-before", "new1", "old-between", "new2", "old-after"]
        );
    }

    /// A file whose process has exited is opened by its path, but only while
    /// the path still names the same file.
    #[test]
    fn a_file_is_opened_by_path_only_while_it_is_the_same_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.so");
        fs::write(&path, b"first").unwrap();
        let meta = fs::metadata(&path).unwrap();
        let key = (libc::major(meta.dev()), libc::minor(meta.dev()), meta.ino());
        let path = path.to_str().unwrap();
        assert!(open_if_same(path, key).is_some());
        assert!(open_if_same(path, (key.0, key.1, key.2 + 1)).is_none());
        let replaced = dir.path().join("new.so");
        fs::write(&replaced, b"second").unwrap();
        fs::rename(&replaced, path).unwrap();
        assert!(open_if_same(path, key).is_none(), "replaced file opened");
        // A dead pid: the /proc paths fail, the path in our namespace is used.
        let meta = fs::metadata(path).unwrap();
        let entry = maps::MapEntry {
            start: 0x1000,
            end: 0x2000,
            readable: true,
            executable: true,
            file_offset: 0,
            dev: (libc::major(meta.dev()), libc::minor(meta.dev())),
            inode: meta.ino(),
            path: Arc::from(path),
        };
        let mut cache = FileCache::default();
        let mapped = mapping(u32::MAX - 1, &entry, &mut cache);
        assert_eq!(mapped.object.as_ref().map(|o| o.path.as_str()), Some(path));
    }

    #[test]
    fn a_missing_process_is_reported_as_gone() {
        let mut cache = FileCache::default();
        // pid_max is at most 2^22, so this pid cannot exist.
        let err = capture(u32::MAX - 1, &mut cache).unwrap_err();
        assert!(matches!(err, Error::ProcessGone { .. }), "{err}");
    }
}

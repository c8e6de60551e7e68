//! Names for sampled addresses: one long-lived blazesym symbolizer, with its
//! caches, for kernel frames (kallsyms) and user frames (ELF symbols and DWARF,
//! inlined frames expanded, Rust and C++ names demangled).
//!
//! User addresses are turned into file offsets with a [`ProcessMaps`] snapshot
//! taken while the process was alive, and looked up in the file it mapped, so
//! exited processes are symbolized too. An address that cannot be named is
//! data, not an error: it comes back as `module+0xoffset`.
//!
//! Code in anonymous executable memory (a JIT's) has no file: it is named
//! from the process's perf map ([`perf_map`]) when the caller has one.

mod bpf_names;
pub mod debug_cache;
mod frame_cache;
pub mod kallsyms;
pub mod maps;
pub mod perf_map;
mod private_files;
pub mod process;
mod segments;

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    io::Write,
    os::fd::FromRawFd,
    path::{Path, PathBuf},
    sync::Arc,
};

use blazesym::{
    MaybeDefault,
    symbolize::{
        CodeInfo, Input, Sym, Symbolized, Symbolizer as Blazesym,
        evict::{self, Evict},
        source::{Elf, Kernel, Source},
    },
};
use kallsyms::KernelTable;
pub use perf_map::PerfMap;
pub use process::{FileCache, Mapping, ObjectFile, ProcessMaps, capture};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("process {pid} has exited (or never existed)")]
    ProcessGone { pid: u32 },
    #[error("cannot read /proc/{pid}/maps: {source}")]
    ReadMaps { pid: u32, source: std::io::Error },
}

/// One function at an address; several for an address inside inlined code.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Frame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// What an address resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Innermost first (an inlined callee before its caller); never empty.
    /// Shared with the symbolizer's cache: an address is looked up once per
    /// process that sampled it, and most lookups find a location the
    /// profile has already (a library's code shared by many processes), so
    /// a copy of the names each time was made only to be dropped.
    pub frames: Arc<[Frame]>,
    /// False when the frame is only `module+0xoffset` or an address.
    pub symbolized: bool,
    /// Index into `ProcessMaps::mappings` of the mapping holding the address.
    pub mapping: Option<usize>,
}

/// The name of a frame whose address is in no mapping (perf's name for it).
pub const UNKNOWN_FRAME: &str = "[unknown]";

impl Symbol {
    fn unknown(name: String, mapping: Option<usize>) -> Self {
        Symbol {
            frames: Arc::new([Frame {
                function: name,
                file: None,
                line: None,
            }]),
            symbolized: false,
            mapping,
        }
    }
}

/// Counters for the summary and the agent's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// Addresses that were looked up and had no symbol.
    pub unknown: u64,
    /// Lookups that failed (unreadable or malformed file); their addresses are kept as unknown.
    pub failed_lookups: u64,
    /// Misses answered from the boot's frame cache (see [`Symbolizer::with_frame_cache_dir`]).
    pub frame_cache_hits: u64,
    /// Addresses in memory that may hold JIT code (anonymous executable
    /// memory; see [`Mapping::may_hold_jit_code`]) named from the process's
    /// perf map.
    pub jit_named: u64,
    /// Addresses there that no perf map named (kept as `[anon]+0xoffset`).
    pub jit_unnamed: u64,
    /// The perf maps read for the processes (see [`Symbolizer::note_perf_map_reads`]).
    pub perf_maps: perf_map::ReadStats,
}

/// A file's identity: device major and minor, inode.
type FileKey = (u32, u32, u64);

/// Where an address is: its mapping's index in the process, the mapping,
/// and the offset in the mapped file.
type Located<'a> = (usize, &'a Mapping, u64);

/// A file offset's frames, and whether they are names (not `module+0xoffset`).
type Named = (Arc<[Frame]>, bool);

pub struct Symbolizer {
    blazesym: Blazesym,
    kernel: HashMap<u64, Symbol>,
    /// Keyed by file identity and file offset, so every process mapping a
    /// library shares the names looked up once.
    user: HashMap<(FileKey, u64), Named>,
    /// Files blazesym has opened and parsed for us, with the windows they
    /// were last looked up in; see [`Symbolizer::release_idle_files`].
    held: HashMap<FileKey, HeldFile>,
    /// Counts calls to [`Symbolizer::next_window`].
    generation: u64,
    stats: Stats,
    files_released: u64,
    /// The core kernel's symbols for this boot, loaded at the first kernel
    /// lookup (`Some(None)`: unavailable, blazesym reads `/proc/kallsyms`).
    kernel_table: Option<Option<KernelTable>>,
    /// Where the kernel table is cached; `None`: not cached, nor used.
    kernel_cache_dir: Option<PathBuf>,
    /// Files whose debug file was given an uncompressed copy (or tried),
    /// with the copy if there is one.
    debug_copies: HashMap<FileKey, Option<PathBuf>>,
    /// Answers kept across recordings by build ID; `None`: not used.
    frame_cache: Option<frame_cache::FrameCache>,
    /// What looking up a file's misses needs to know of the file, found at
    /// its first miss: every process mapping it has misses of its own, and
    /// with `-a` on a fork-heavy system hundreds of processes map libc.
    facts: HashMap<FileKey, FileFacts>,
}

struct FileFacts {
    /// Its name in the frame cache; `None`: it has none.
    cache_name: Option<String>,
    /// Its loadable segments, read at its first lookup through a debug
    /// copy (`Some(None)`: it could not be read as ELF).
    segments: Option<Option<Vec<segments::Segment>>>,
}

/// A file blazesym keeps mapped (and its parsed symbols and DWARF in memory).
struct HeldFile {
    /// Every path blazesym knows the file by: the `/proc/self/fd/N` paths it
    /// was opened through and the separate debug file found by build ID.
    paths: Vec<PathBuf>,
    last_used: u64,
}

/// The cache of uncompressed debug files (see [`debug_cache`]), if usable.
fn debug_cache_dir() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| debug_cache::cache_dir(Path::new(kallsyms::CACHE_DIR)))
        .as_deref()
}

fn new_blazesym() -> Blazesym {
    Blazesym::builder()
        .set_debug_dirs(Some(debug_cache::debug_dirs(debug_cache_dir())))
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .build()
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        Symbolizer {
            blazesym: new_blazesym(),
            kernel: HashMap::new(),
            user: HashMap::new(),
            held: HashMap::new(),
            generation: 0,
            stats: Stats::default(),
            files_released: 0,
            kernel_table: None,
            kernel_cache_dir: Some(PathBuf::from(kallsyms::CACHE_DIR)),
            debug_copies: HashMap::new(),
            frame_cache: None,
            facts: HashMap::new(),
        }
    }

    /// Keeps the names of addresses in files with a build ID under
    /// `root/frames` for later symbolizers (see [`frame_cache`]), and looks
    /// there before parsing a file. `None`, the default: no such cache.
    /// Unusable directories (not ours, open to others, a link) are not used.
    pub fn with_frame_cache_dir(mut self, root: Option<&Path>) -> Self {
        self.frame_cache = root.and_then(frame_cache::FrameCache::open);
        // The files' cache names were found with or without a cache.
        self.facts.clear();
        self
    }

    /// Writes the names found since the last call to the frame cache;
    /// returns how many cache files were written.
    pub fn flush_frame_cache(&mut self) -> usize {
        self.frame_cache.as_mut().map_or(0, |cache| cache.flush())
    }

    /// Caches the core kernel's symbols in `dir` rather than
    /// [`kallsyms::CACHE_DIR`]; `None`: no table, every kernel address is
    /// looked up by blazesym in `/proc/kallsyms`.
    pub fn with_kernel_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.kernel_cache_dir = dir;
        self.kernel_table = None;
        self
    }

    fn kernel_table(&mut self) -> Option<&KernelTable> {
        if self.kernel_table.is_none() {
            let table = match &self.kernel_cache_dir {
                // blazesym prefers a vmlinux image when it finds one; then so do we.
                Some(dir) if !vmlinux_present() => kallsyms::load(dir),
                _ => None,
            };
            self.kernel_table = Some(table);
        }
        self.kernel_table.as_ref().and_then(|t| t.as_ref())
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Names cached (kernel and user addresses).
    pub fn cache_len(&self) -> usize {
        self.kernel.len() + self.user.len()
    }

    /// Forgets the names of files no longer mapped by a process kept (their
    /// file key is not in `live`), then, if the caches still hold more than
    /// `max_entries` names, all of them. Returns how many names were dropped.
    /// A long-running agent calls this between windows to bound its memory.
    pub fn evict(&mut self, live: &HashSet<FileKey>, max_entries: usize) -> u64 {
        let before = self.cache_len();
        self.user.retain(|(key, _), _| live.contains(key));
        self.facts.retain(|key, _| live.contains(key));
        if self.cache_len() > max_entries {
            self.user.clear();
            self.kernel.clear();
            self.facts.clear();
        }
        (before - self.cache_len()) as u64
    }

    /// Makes blazesym let go of every file it was not asked about in the
    /// last `windows` windows (see [`Symbolizer::next_window`]; 0: every
    /// file): its mapping, whose pages count in RSS, and the symbols and
    /// DWARF parsed from it. Names already looked up stay cached; a later
    /// miss in the file parses it again. Returns how many files were released.
    pub fn release_idle_files(&mut self, windows: u64) -> usize {
        let generation = self.generation;
        let idle: Vec<FileKey> = self
            .held
            .iter()
            .filter(|(_, held)| generation - held.last_used >= windows)
            .map(|(key, _)| *key)
            .collect();
        for key in &idle {
            // Found again at the file's next miss: a debug file installed
            // since (its frame-cache name) is then seen.
            self.facts.remove(key);
            let held = self.held.remove(key).expect("listed above");
            for path in held.paths {
                // Evicting what blazesym never cached is a no-op, not an error.
                let _ = self.blazesym.evict(&Evict::Elf(evict::Elf::new(path)));
            }
        }
        self.files_released += idle.len() as u64;
        idle.len()
    }

    /// Starts a new window for [`Symbolizer::release_idle_files`]'s count.
    pub fn next_window(&mut self) {
        self.generation += 1;
    }

    /// Files blazesym holds for us now.
    pub fn files_held(&self) -> usize {
        self.held.len()
    }

    /// Files released by [`Symbolizer::release_idle_files`] so far.
    pub fn files_released(&self) -> u64 {
        self.files_released
    }

    /// Notes that blazesym is about to open (or reuse) `object`.
    fn hold(&mut self, object: &ObjectFile) {
        let generation = self.generation;
        let held = self.held.entry(object.key).or_insert_with(|| HeldFile {
            paths: object
                .build_id
                .iter()
                .filter(|id| id.len() > 2)
                .flat_map(|id| {
                    // Wherever blazesym may have found it: the uncompressed copy first.
                    debug_cache::debug_dirs(debug_cache_dir())
                        .into_iter()
                        .map(move |dir| {
                            dir.join(".build-id")
                                .join(&id[..2])
                                .join(format!("{}.debug", &id[2..]))
                        })
                })
                .collect(),
            last_used: generation,
        });
        held.last_used = generation;
        let path = object.fd_path();
        if !held.paths.contains(&path) {
            held.paths.push(path);
        }
    }

    /// Kernel addresses, as looked up (callers adjust return addresses).
    pub fn symbolize_kernel(&mut self, addrs: &[u64]) -> Vec<Symbol> {
        let missing: Vec<u64> = {
            let mut seen: Vec<u64> = addrs
                .iter()
                .copied()
                .filter(|a| !self.kernel.contains_key(a))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen
        };
        self.stats.cache_hits += (addrs.len() - missing.len()) as u64;
        self.stats.cache_misses += missing.len() as u64;
        if !missing.is_empty() {
            // Addresses in the kernel image are named from the cached table,
            // those in BPF programs from bpf(2), the rest (modules,
            // trampolines) by blazesym on /proc/kallsyms.
            let (covered, rest, cheap): (Vec<u64>, Vec<u64>, bool) = match self.kernel_table() {
                Some(table) => {
                    let (covered, rest) = missing.iter().partition(|&&a| table.covers(a));
                    (covered, rest, true)
                }
                None => (Vec::new(), missing.clone(), false),
            };
            let mut named = Vec::with_capacity(missing.len());
            if !covered.is_empty() {
                let excerpt = self
                    .kernel_table()
                    .map(|t| t.excerpt(&covered))
                    .unwrap_or_default();
                let results = symbolize_excerpt(&excerpt, &covered);
                self.name_or_fail(&mut named, &covered, results);
            }
            // Without the table (a vmlinux image, or no cache), blazesym
            // names everything, as before.
            let functions = if cheap && !rest.is_empty() {
                bpf_names::functions_holding(&rest)
            } else {
                Vec::new()
            };
            let (in_bpf, rest): (Vec<u64>, Vec<u64>) = rest
                .iter()
                .partition(|&&a| functions.iter().any(|f| f.holds(a)));
            if !in_bpf.is_empty() {
                let results = symbolize_excerpt(&bpf_names::excerpt(&functions), &in_bpf);
                self.name_or_fail(&mut named, &in_bpf, results);
            }
            if !rest.is_empty() {
                let source = Source::Kernel(Kernel::default());
                let results = self
                    .blazesym
                    .symbolize(&source, Input::AbsAddr(&rest))
                    .map(|r| r.iter().map(to_frames).collect())
                    .ok();
                self.name_or_fail(&mut named, &rest, results);
            }
            for (addr, frames) in named {
                let symbol = match frames {
                    Some(frames) => Symbol {
                        frames: frames.into(),
                        symbolized: true,
                        mapping: None,
                    },
                    None => {
                        self.stats.unknown += 1;
                        Symbol::unknown(format!("[kernel]+0x{addr:x}"), None)
                    }
                };
                self.kernel.insert(addr, symbol);
            }
        }
        addrs.iter().map(|a| self.kernel[a].clone()).collect()
    }

    /// Pairs `addrs` with what a lookup found; `None` (the lookup failed):
    /// each is counted as a failed lookup and left unnamed.
    fn name_or_fail(
        &mut self,
        named: &mut Vec<(u64, Option<Vec<Frame>>)>,
        addrs: &[u64],
        results: Option<Vec<Option<Vec<Frame>>>>,
    ) {
        match results {
            Some(results) => named.extend(addrs.iter().copied().zip(results)),
            None => {
                self.stats.failed_lookups += addrs.len() as u64;
                named.extend(addrs.iter().map(|&a| (a, None)));
            }
        }
    }

    /// Keeps a file offset's answer: its frames, or if none the offset in
    /// the module (named by the path the process used), counted as unknown.
    fn remember(
        &mut self,
        key: FileKey,
        object: &ObjectFile,
        offset: u64,
        frames: Option<Vec<Frame>>,
    ) {
        let entry = match frames {
            Some(frames) => (frames.into(), true),
            None => {
                self.stats.unknown += 1;
                let name = format!("{}+0x{offset:x}", basename(&object.path));
                (Symbol::unknown(name, None).frames, false)
            }
        };
        self.user.insert((key, offset), entry);
    }

    /// Records how the perf maps given to [`Self::symbolize_users_with_perf_maps`]
    /// were read (by the caller, which reads them while the processes
    /// live), for [`Self::stats`]. Totals: each call replaces the last.
    pub fn note_perf_map_reads(&mut self, reads: perf_map::ReadStats) {
        self.stats.perf_maps = reads;
    }

    /// User addresses of one process, as looked up (callers adjust return addresses).
    pub fn symbolize_user(&mut self, process: &ProcessMaps, addrs: &[u64]) -> Vec<Symbol> {
        self.symbolize_users(&[(process, addrs)])
            .pop()
            .expect("one list per process")
    }

    /// User addresses of several processes, a list of symbols for each. The
    /// addresses not named yet are looked up once per file for all of them:
    /// a system-wide recording has hundreds of processes mapping libc, and a
    /// lookup of each one's few addresses apiece cost more than the lookups.
    pub fn symbolize_users(&mut self, processes: &[(&ProcessMaps, &[u64])]) -> Vec<Vec<Symbol>> {
        self.symbolize_users_with_perf_maps(processes, &[])
    }

    /// As [`Self::symbolize_users`], with each process's perf map, if it
    /// has one (`perf_maps[i]` for `processes[i]`; missing ones are `None`):
    /// an address in memory that may hold JIT code
    /// ([`Mapping::may_hold_jit_code`]) and has no symbol of a file is
    /// named from it.
    pub fn symbolize_users_with_perf_maps(
        &mut self,
        processes: &[(&ProcessMaps, &[u64])],
        perf_maps: &[Option<&PerfMap>],
    ) -> Vec<Vec<Symbol>> {
        // Each address's mapping (with its index) and file offset, found once.
        let located: Vec<Vec<Option<Located>>> = processes
            .iter()
            .map(|(process, addrs)| {
                addrs
                    .iter()
                    .map(|&addr| {
                        process
                            .find(addr)
                            .map(|(index, m)| (index, m, addr - m.start + m.file_offset))
                    })
                    .collect()
            })
            .collect();
        // Batch the misses per file, as blazesym works best with one call per source.
        let mut misses: HashMap<FileKey, (&ObjectFile, Vec<u64>)> = HashMap::new();
        for &(_, mapping, offset) in located.iter().flatten().flatten() {
            let Some(object) = &mapping.object else {
                continue;
            };
            if self.user.contains_key(&(object.key, offset)) {
                self.stats.cache_hits += 1;
            } else {
                misses
                    .entry(object.key)
                    .or_insert_with(|| (object, Vec::new()))
                    .1
                    .push(offset);
            }
        }
        for (key, (object, mut offsets)) in misses {
            let queued = offsets.len();
            offsets.sort_unstable();
            offsets.dedup();
            self.stats.cache_misses += offsets.len() as u64;
            self.stats.cache_hits += (queued - offsets.len()) as u64;
            let with_frame_cache = self.frame_cache.is_some();
            let facts = self.facts.entry(key).or_insert_with(|| FileFacts {
                cache_name: match (with_frame_cache, &object.build_id) {
                    (true, Some(build_id)) => object.size().and_then(|size| {
                        let debug_size = debug_cache::system_debug_file_size(build_id);
                        frame_cache::FrameCache::file_name(build_id, size, debug_size)
                    }),
                    _ => None,
                },
                segments: None,
            });
            let cache_name = facts.cache_name.clone();
            let mut kept = Vec::new();
            if let (Some(cache), Some(name)) = (&mut self.frame_cache, &cache_name) {
                offsets.retain(|&offset| match cache.get(name, offset) {
                    Some(resolved) => {
                        kept.push((offset, resolved.clone()));
                        false
                    }
                    None => true,
                });
            }
            self.stats.frame_cache_hits += kept.len() as u64;
            for (offset, frames) in kept {
                self.remember(key, object, offset, frames);
            }
            if offsets.is_empty() {
                continue;
            }
            // Only now: the copy is made (the debug file inflated) at its
            // first use in the boot, which the frame cache may spare.
            let copy = match (debug_cache_dir(), &object.build_id) {
                (Some(cache), Some(build_id)) => self
                    .debug_copies
                    .entry(key)
                    .or_insert_with(|| {
                        let system = Path::new(debug_cache::SYSTEM_DEBUG_DIR);
                        debug_cache::copy(cache, system, build_id)
                    })
                    .clone(),
                _ => None,
            };
            self.hold(object);
            // With an uncompressed copy of its debug file, the copy is read
            // directly (see `debug_cache::copy`); its segments have no file
            // offsets, so the addresses go as virtual offsets.
            let direct = copy.and_then(|copy| {
                let facts = self.facts.get_mut(&key)?;
                let segments = facts
                    .segments
                    .get_or_insert_with(|| segments::read(&object.fd_path()))
                    .as_ref()?;
                Some((copy, segments::translate(segments, &offsets)?))
            });
            let looked_up = match &direct {
                Some((copy, virtual_offsets)) => self.blazesym.symbolize(
                    &Source::Elf(Elf::new(copy)),
                    Input::VirtOffset(virtual_offsets),
                ),
                None => self.blazesym.symbolize(
                    &Source::Elf(Elf::new(object.fd_path())),
                    Input::FileOffset(&offsets),
                ),
            };
            let (results, failed) = match looked_up {
                Ok(results) => (results.into_iter().map(|r| to_frames(&r)).collect(), false),
                Err(_) => {
                    self.stats.failed_lookups += offsets.len() as u64;
                    (vec![None; offsets.len()], true)
                }
            };
            for (offset, frames) in offsets.into_iter().zip(results) {
                if let (Some(cache), Some(name), false) =
                    (&mut self.frame_cache, &cache_name, failed)
                {
                    cache.insert(name, offset, frames.clone());
                }
                self.remember(key, object, offset, frames);
            }
        }
        processes
            .iter()
            .zip(located)
            .enumerate()
            .map(|(i, ((_, addrs), located))| {
                let perf_map = perf_maps.get(i).copied().flatten();
                addrs
                    .iter()
                    .zip(located)
                    .map(|(&addr, found)| self.named(addr, found, perf_map))
                    .collect()
            })
            .collect()
    }

    /// The symbol of `addr`, located (mapping index, mapping, file offset)
    /// and looked up already; in anonymous memory, from `perf_map`.
    fn named(&mut self, addr: u64, located: Option<Located>, perf_map: Option<&PerfMap>) -> Symbol {
        match located {
            // In no mapping: most often a garbage return address from a
            // frame-pointer walk through code built without them. Named
            // `[unknown]` as perf does, so that such stacks merge in flame
            // graphs; the address stays the location's (pprof keeps it).
            None => Symbol::unknown(UNKNOWN_FRAME.to_string(), None),
            Some((index, mapping, offset)) => {
                let in_file = mapping.object.as_ref().map(|object| {
                    let (frames, symbolized) = self.user[&(object.key, offset)].clone();
                    Symbol {
                        frames,
                        symbolized,
                        mapping: Some(index),
                    }
                });
                if in_file.as_ref().is_some_and(|s| s.symbolized) || !mapping.may_hold_jit_code() {
                    return in_file.unwrap_or_else(|| anonymous(addr, index, mapping));
                }
                match perf_map.and_then(|map| map.lookup(addr)) {
                    Some(entry) => {
                        self.stats.jit_named += 1;
                        Symbol {
                            frames: Arc::new([Frame {
                                function: entry.name.to_string(),
                                file: None,
                                line: None,
                            }]),
                            symbolized: true,
                            mapping: Some(index),
                        }
                    }
                    None => {
                        self.stats.jit_unnamed += 1;
                        in_file.unwrap_or_else(|| anonymous(addr, index, mapping))
                    }
                }
            }
        }
    }
}

/// An address in a mapping without a file, unnamed: `[anon]+0xoffset` (or
/// the pseudo-name of the mapping, such as `[vsyscall]`).
fn anonymous(addr: u64, index: usize, mapping: &Mapping) -> Symbol {
    let name = if mapping.name.is_empty() {
        "[anon]"
    } else {
        &mapping.name
    };
    Symbol::unknown(format!("{name}+0x{:x}", addr - mapping.start), Some(index))
}

/// Whether blazesym would find a vmlinux image for the running kernel
/// (the paths it tries by default).
fn vmlinux_present() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return true;
    };
    let release = release.trim();
    ["/boot/", "/usr/lib/debug/boot/"]
        .iter()
        .any(|dir| Path::new(&format!("{dir}vmlinux-{release}")).exists())
}

/// Names `addrs` with blazesym reading `excerpt` as the kallsyms file, so
/// that it applies its own naming (demangling) as on `/proc/kallsyms`.
/// `None`: the lookup failed.
fn symbolize_excerpt(excerpt: &str, addrs: &[u64]) -> Option<Vec<Option<Vec<Frame>>>> {
    let file = memfd_with("kallsyms", excerpt.as_bytes())?;
    let source = Source::Kernel(Kernel {
        kallsyms: MaybeDefault::Some(process::fd_path(&file)),
        vmlinux: MaybeDefault::None,
        ..Kernel::default()
    });
    // Afresh: blazesym caches a kallsyms file by path.
    new_blazesym()
        .symbolize(&source, Input::AbsAddr(addrs))
        .map(|r| r.iter().map(to_frames).collect())
        .ok()
}

/// An anonymous file holding `bytes`.
fn memfd_with(name: &str, bytes: &[u8]) -> Option<File> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid C string and flags; a non-negative result is a new fd we own.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a new descriptor owned by nothing else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes).ok()?;
    Some(file)
}

fn basename(path: &str) -> &str {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}

fn code_location(info: Option<&CodeInfo<'_>>) -> (Option<String>, Option<u32>) {
    match info {
        None => (None, None),
        Some(info) => {
            let file = match &info.dir {
                Some(dir) if !dir.as_os_str().is_empty() => dir.join(&info.file),
                _ => Path::new(&info.file).to_path_buf(),
            };
            (Some(file.to_string_lossy().into_owned()), info.line)
        }
    }
}

/// blazesym's answer as frames, innermost first. blazesym lists inlined
/// functions outermost first, each with the line inside that function.
fn to_frames(result: &Symbolized<'_>) -> Option<Vec<Frame>> {
    let Symbolized::Sym(Sym {
        name,
        code_info,
        inlined,
        ..
    }) = result
    else {
        return None;
    };
    let mut frames = Vec::with_capacity(inlined.len() + 1);
    for inline in inlined.iter().rev() {
        let (file, line) = code_location(inline.code_info.as_ref());
        frames.push(Frame {
            function: inline.name.to_string(),
            file,
            line,
        });
    }
    let (file, line) = code_location(code_info.as_deref());
    frames.push(Frame {
        function: name.to_string(),
        file,
        line,
    });
    Some(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_with_a_known_name() -> u64 {
        std::hint::black_box(42)
    }

    #[test]
    fn names_a_function_of_this_process_by_file_offset() {
        let mut cache = FileCache::default();
        let maps = capture(std::process::id(), &mut cache).unwrap();
        let addr = a_function_with_a_known_name as fn() -> u64 as usize as u64;
        let mut symbolizer = Symbolizer::new();
        let symbols = symbolizer.symbolize_user(&maps, &[addr, addr]);
        assert!(symbols[0].symbolized, "{symbols:?}");
        let name = &symbols[0].frames.last().unwrap().function;
        assert!(name.ends_with("a_function_with_a_known_name"), "{name}");
        assert_eq!(symbolizer.stats().cache_misses, 1);
        assert_eq!(symbolizer.stats().cache_hits, 1);
        assert_eq!(symbols[0], symbols[1]);
    }

    /// Two processes mapping the same file: their addresses are looked up
    /// together, once, and each gets the symbols of its own addresses.
    #[test]
    fn several_processes_share_one_lookup_per_file() {
        let mut cache = FileCache::default();
        let maps = capture(std::process::id(), &mut cache).unwrap();
        let other = ProcessMaps {
            pid: 1,
            mappings: Arc::clone(&maps.mappings),
        };
        let first = a_function_with_a_known_name as fn() -> u64 as usize as u64;
        let second = another_function_with_a_known_name as fn() -> u64 as usize as u64;
        let mut symbolizer = Symbolizer::new();
        let symbols =
            symbolizer.symbolize_users(&[(&maps, &[first, second]), (&other, &[second, 1])]);
        let names: Vec<Vec<&str>> = symbols
            .iter()
            .map(|list| {
                list.iter()
                    .map(|s| s.frames.last().map_or("", |f| f.function.as_str()))
                    .collect()
            })
            .collect();
        assert!(
            names[0][0].ends_with("a_function_with_a_known_name"),
            "{names:?}"
        );
        assert!(
            names[0][1].ends_with("another_function_with_a_known_name"),
            "{names:?}"
        );
        assert_eq!(symbols[1][0], symbols[0][1]);
        // Address 1 is mapped by nothing.
        assert!(!symbols[1][1].symbolized && symbols[1][1].mapping.is_none());
        assert_eq!(
            (
                symbolizer.stats().cache_misses,
                symbolizer.stats().cache_hits
            ),
            (2, 1),
            "the shared address looked up once"
        );
    }

    #[inline(never)]
    fn another_function_with_a_known_name() -> u64 {
        std::hint::black_box(7)
    }

    #[test]
    fn idle_files_are_released_and_parsed_again_when_needed() {
        let mut cache = FileCache::default();
        let maps = capture(std::process::id(), &mut cache).unwrap();
        let first = a_function_with_a_known_name as fn() -> u64 as usize as u64;
        let second = another_function_with_a_known_name as fn() -> u64 as usize as u64;
        let mut symbolizer = Symbolizer::new();
        assert!(symbolizer.symbolize_user(&maps, &[first])[0].symbolized);
        assert_eq!(symbolizer.files_held(), 1);

        // Looked up in this window and the one before: kept.
        symbolizer.next_window();
        assert_eq!(symbolizer.release_idle_files(2), 0);
        assert_eq!(symbolizer.files_held(), 1);
        // A cache hit does not use the file.
        symbolizer.symbolize_user(&maps, &[first]);
        symbolizer.next_window();
        assert_eq!(symbolizer.release_idle_files(2), 1);
        assert_eq!(
            (symbolizer.files_held(), symbolizer.files_released()),
            (0, 1)
        );

        // The name stays cached, and a new address parses the file again.
        let again = symbolizer.symbolize_user(&maps, &[first, second]);
        assert!(again.iter().all(|s| s.symbolized), "{again:?}");
        let name = &again[1].frames.last().unwrap().function;
        assert!(
            name.ends_with("another_function_with_a_known_name"),
            "{name}"
        );
        assert_eq!(symbolizer.files_held(), 1);
        assert_eq!(symbolizer.release_idle_files(0), 1);
    }

    #[test]
    fn names_vdso_functions() {
        let mut cache = FileCache::default();
        let maps = capture(std::process::id(), &mut cache).unwrap();
        let vdso = maps
            .mappings
            .iter()
            .find(|m| &*m.name == "[vdso]")
            .expect("a vdso mapping");
        assert!(vdso.object.is_some(), "the vdso copy failed");
        // Find a named address by scanning the image's first pages.
        let addrs: Vec<u64> = (vdso.start..vdso.end).step_by(16).collect();
        let symbols = Symbolizer::new().symbolize_user(&maps, &addrs);
        let names: Vec<&str> = symbols
            .iter()
            .filter(|s| s.symbolized)
            .map(|s| s.frames[0].function.as_str())
            .collect();
        assert!(
            names
                .iter()
                .any(|n| n.contains("clock_gettime") || n.contains("gettimeofday")),
            "no vdso time function among {names:?}"
        );
    }

    /// Kernel frames are named the same from the cached table (and BPF
    /// programs from bpf(2)) as by blazesym on /proc/kallsyms, in and out
    /// of the cached range, from a fresh cache and from the file it wrote.
    #[test]
    fn kernel_names_from_the_cached_table_equal_blazesyms() {
        // BPF programs to name (from bpf(2) rather than /proc/kallsyms).
        let _programs = bpf_names::load_test_programs()
            .inspect_err(|why| eprintln!("BPF programs not covered: {why}"));
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap();
        let mut addrs: Vec<u64> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let Some(addr) = line
                .split_ascii_whitespace()
                .next()
                .and_then(|a| u64::from_str_radix(a, 16).ok())
            else {
                continue;
            };
            // Every 97th symbol, inside it and at its start; every BPF or
            // module symbol (outside the cached range).
            if addr != 0 && (i % 97 == 0 || line.contains('[')) {
                addrs.extend([addr, addr + 1, addr + 0x13]);
            }
        }
        if addrs.is_empty() {
            eprintln!("skipped: /proc/kallsyms shows no addresses (kptr_restrict)");
            return;
        }
        addrs.extend([1, u64::MAX]);
        let expected = Symbolizer::new()
            .with_kernel_cache_dir(None)
            .symbolize_kernel(&addrs);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        for round in ["building the cache", "reading the cache"] {
            let mut symbolizer = Symbolizer::new().with_kernel_cache_dir(Some(dir.clone()));
            let got = symbolizer.symbolize_kernel(&addrs);
            for ((addr, want), got) in addrs.iter().zip(&expected).zip(&got) {
                assert_eq!(want, got, "{round}: address {addr:#x}");
            }
            assert!(
                symbolizer.kernel_table().is_some(),
                "{round}: no kernel table"
            );
        }
        assert!(expected.iter().filter(|s| s.symbolized).count() > addrs.len() / 2);
    }

    #[test]
    fn a_later_symbolizer_answers_from_the_frame_cache_without_parsing_the_file() {
        let mut cache = FileCache::default();
        let maps = capture(std::process::id(), &mut cache).unwrap();
        let addr = a_function_with_a_known_name as fn() -> u64 as usize as u64;
        let (_, mapping) = maps.find(addr).unwrap();
        let object = mapping.object.as_ref().unwrap();
        assert!(
            object.build_id.is_some(),
            "the test binary {} has no build ID; the frame cache needs one",
            object.path
        );
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cache");

        let mut first = Symbolizer::new().with_frame_cache_dir(Some(&root));
        let want = first.symbolize_user(&maps, &[addr]);
        assert!(want[0].symbolized, "{want:?}");
        assert_eq!(first.stats().frame_cache_hits, 0);
        assert_eq!(first.flush_frame_cache(), 1);

        let mut second = Symbolizer::new().with_frame_cache_dir(Some(&root));
        assert_eq!(second.symbolize_user(&maps, &[addr]), want);
        assert_eq!(second.stats().frame_cache_hits, 1);
        assert_eq!(second.files_held(), 0, "the binary was opened anyway");
        assert_eq!(second.flush_frame_cache(), 0, "nothing new to write");

        // What comes back is what the file holds: edit it, and a fresh
        // symbolizer names the address as edited.
        let file = std::fs::read_dir(root.join("frames"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("a_function_with_a_known_name"), "{text}");
        std::fs::write(
            &file,
            text.replace("a_function_with_a_known_name", "edited"),
        )
        .unwrap();
        let mut third = Symbolizer::new().with_frame_cache_dir(Some(&root));
        let edited = third.symbolize_user(&maps, &[addr]);
        assert!(
            edited[0]
                .frames
                .last()
                .unwrap()
                .function
                .ends_with("edited"),
            "{edited:?}"
        );
    }

    /// Addresses in anonymous memory are named from the perf map where it
    /// has them, and stay `[anon]+0xoffset` where it has not (or without
    /// one); a pseudo-mapping is never looked up in it.
    #[test]
    fn anonymous_code_is_named_from_the_perf_map() {
        let anon = |start: u64, name: &str| Mapping {
            start,
            end: start + 0x1000,
            file_offset: 0,
            object: None,
            name: name.into(),
        };
        let maps = ProcessMaps {
            pid: 1,
            mappings: Arc::new(vec![
                anon(0x10000, ""),
                anon(0x20000, "//anon"),
                anon(0x30000, "[vsyscall]"),
            ]),
        };
        let perf_map = PerfMap::parse(
            b"10100 40 JS:*hot /x.js:1:2\n20000 10 py::f:/x.py\n30000 1000 not used\n",
        );
        let addrs = [0x10120, 0x20008, 0x10800, 0x30010, 0x5];
        let mut symbolizer = Symbolizer::new();
        let symbols =
            symbolizer.symbolize_users_with_perf_maps(&[(&maps, &addrs)], &[Some(&perf_map)]);
        let got: Vec<(&str, bool, Option<usize>)> = symbols[0]
            .iter()
            .map(|s| (s.frames[0].function.as_str(), s.symbolized, s.mapping))
            .collect();
        assert_eq!(
            got,
            [
                ("JS:*hot /x.js:1:2", true, Some(0)),
                ("py::f:/x.py", true, Some(1)),
                ("[anon]+0x800", false, Some(0)),
                ("[vsyscall]+0x10", false, Some(2)),
                (UNKNOWN_FRAME, false, None),
            ]
        );
        assert_eq!(
            (symbolizer.stats().jit_named, symbolizer.stats().jit_unnamed),
            (2, 1)
        );
        // Without a perf map, as before.
        let plain = Symbolizer::new().symbolize_user(&maps, &addrs[..1]);
        assert_eq!(plain[0].frames[0].function, "[anon]+0x120");
    }

    #[test]
    fn an_unmapped_address_stays_as_data() {
        let mut cache = FileCache::default();
        let maps = capture(std::process::id(), &mut cache).unwrap();
        let symbols = Symbolizer::new().symbolize_user(&maps, &[0x10]);
        assert!(!symbols[0].symbolized);
        assert_eq!(symbols[0].frames[0].function, UNKNOWN_FRAME);
    }
}

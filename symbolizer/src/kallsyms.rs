//! The core kernel's symbols, cached for the boot, so that a recording does
//! not make the kernel format all of `/proc/kallsyms` (120 000 lines, ~40 ms
//! of CPU, nearly all in the kernel) to name a few dozen kernel frames.
//!
//! The first lookup after boot reads `/proc/kallsyms`, keeps every entry
//! between the lowest core-kernel text address and the highest core-kernel
//! address (the kernel image: fixed for the whole boot), and writes them,
//! sorted, to `/run/profiler/kallsyms.cache` (root-only directory on tmpfs)
//! with the boot id. Later recordings map that file and binary-search it.
//!
//! Names come out exactly as blazesym's kallsyms resolver gives them. It
//! resolves an address to the entries at the greatest address at or below it
//! (it sorts the file stably by address) and picks one of them. Module, BPF
//! and trampoline symbols live outside the kernel image, so for an address
//! inside the cached range those entries are all in the cache; addresses
//! outside it are left to blazesym on `/proc/kallsyms`, as before. The
//! entries found are handed to blazesym as a small kallsyms file, every
//! entry at that address, in file order, after a sentinel entry below them
//! all, so that blazesym picks among them as it would in the whole file and
//! applies its own naming (demangling). (blazesym picks the first of them,
//! but the last when they are the lowest entries of the file and the address
//! is not theirs exactly: the sentinel keeps them from being the lowest, and
//! an address inside the lowest entries of the whole file goes to
//! `/proc/kallsyms`.)
//!
//! The sorted table with its binary search is written by hand: blazesym has
//! no persistent form of its kallsyms index.

use std::{
    fs::{self, File},
    io::{self, Read},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use memmap2::Mmap;

/// Where the cache lives: tmpfs, cleared at boot, root-only.
pub const CACHE_DIR: &str = "/run/profiler";
const CACHE_FILE: &str = "kallsyms.cache";
const KALLSYMS: &str = "/proc/kallsyms";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

const MAGIC: &[u8; 8] = b"PRFKSYM\x01";
const BOOT_ID_LEN: usize = 40;
/// magic, boot id, lo, hi, lowest address of the file, entries, string bytes.
const HEADER: usize = 8 + BOOT_ID_LEN + 5 * 8;

/// A sorted table of kernel symbols covering `lo..=hi`.
pub struct KernelTable {
    data: Data,
    lo: u64,
    hi: u64,
    /// The lowest address in the whole kallsyms file when the table was made.
    lowest: u64,
    /// The second-lowest address in the table.
    second: u64,
    n: usize,
    strings_len: usize,
}

enum Data {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Mapped(m) => m,
            Data::Owned(v) => v,
        }
    }
}

/// One `/proc/kallsyms` entry as blazesym reads it.
struct Entry<'a> {
    addr: u64,
    kind: &'a str,
    name: &'a str,
    /// A fourth token (`[module]`, `[bpf]`, …): not the core kernel.
    tagged: bool,
}

/// Splits a line the way blazesym's kallsyms parser does; `None` for lines
/// it skips (too few tokens, an unparsable or zero address).
fn parse_line(line: &str) -> Option<Entry<'_>> {
    let mut tokens = line.split_ascii_whitespace();
    let addr = u64::from_str_radix(tokens.next()?, 16).ok()?;
    let kind = tokens.next()?;
    let name = tokens.next()?;
    (addr != 0).then_some(Entry {
        addr,
        kind,
        name,
        tagged: tokens.next().is_some(),
    })
}

fn read_boot_id() -> Option<[u8; BOOT_ID_LEN]> {
    let text = fs::read_to_string(BOOT_ID).ok()?;
    let text = text.trim().as_bytes();
    if text.is_empty() || text.len() > BOOT_ID_LEN {
        return None;
    }
    let mut id = [0u8; BOOT_ID_LEN];
    id[..text.len()].copy_from_slice(text);
    Some(id)
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl KernelTable {
    /// Builds the table from the text of a kallsyms file; `None` when it has
    /// no core-kernel text symbol (e.g. addresses hidden by `kptr_restrict`).
    pub fn from_kallsyms(text: &str, boot_id: [u8; BOOT_ID_LEN]) -> Option<KernelTable> {
        let entries: Vec<Entry<'_>> = text.lines().filter_map(parse_line).collect();
        let is_text = |e: &Entry<'_>| matches!(e.kind, "t" | "T");
        let lo = entries
            .iter()
            .filter(|e| !e.tagged && is_text(e))
            .map(|e| e.addr)
            .min()?;
        let hi = entries.iter().filter(|e| !e.tagged).map(|e| e.addr).max()?;
        let lowest = entries.iter().map(|e| e.addr).min()?;
        let mut kept: Vec<&Entry<'_>> = entries
            .iter()
            .filter(|e| (lo..=hi).contains(&e.addr))
            .collect();
        // Stable: entries at one address stay in file order.
        kept.sort_by_key(|e| e.addr);
        let strings_len: usize = kept.iter().map(|e| e.kind.len() + 1 + e.name.len()).sum();
        let n = kept.len();
        let mut data = Vec::with_capacity(HEADER + 8 * n + 4 * (n + 1) + strings_len);
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&boot_id);
        for value in [lo, hi, lowest, n as u64, strings_len as u64] {
            data.extend_from_slice(&value.to_ne_bytes());
        }
        for e in &kept {
            data.extend_from_slice(&e.addr.to_ne_bytes());
        }
        let mut offset = 0u32;
        for e in &kept {
            data.extend_from_slice(&offset.to_ne_bytes());
            offset += (e.kind.len() + 1 + e.name.len()) as u32;
        }
        data.extend_from_slice(&offset.to_ne_bytes());
        for e in &kept {
            data.extend_from_slice(e.kind.as_bytes());
            data.push(b' ');
            data.extend_from_slice(e.name.as_bytes());
        }
        KernelTable::parse(Data::Owned(data), &boot_id)
    }

    /// Checks a serialized table; `None` if it is malformed or of another boot.
    fn parse(data: Data, boot_id: &[u8; BOOT_ID_LEN]) -> Option<KernelTable> {
        let bytes = data.bytes();
        if bytes.get(..8)? != MAGIC || bytes.get(8..8 + BOOT_ID_LEN)? != boot_id {
            return None;
        }
        let lo = u64_at(bytes, 8 + BOOT_ID_LEN)?;
        let hi = u64_at(bytes, 16 + BOOT_ID_LEN)?;
        let lowest = u64_at(bytes, 24 + BOOT_ID_LEN)?;
        let n = usize::try_from(u64_at(bytes, 32 + BOOT_ID_LEN)?).ok()?;
        let strings_len = usize::try_from(u64_at(bytes, 40 + BOOT_ID_LEN)?).ok()?;
        let expected = n
            .checked_mul(12)?
            .checked_add(HEADER + 4)?
            .checked_add(strings_len)?;
        if n == 0 || lo > hi || bytes.len() != expected {
            return None;
        }
        let mut table = KernelTable {
            data,
            lo,
            hi,
            lowest,
            second: u64::MAX,
            n,
            strings_len,
        };
        // The ends only: every entry is not checked for order, as that
        // touched all of a mapped cache (~1.4 MB of addresses and offsets,
        // ~0.5 ms) at every recording. The file is written whole by us
        // (temporary, then renamed) in a root-only directory; an entry out of
        // order could only misname an address, as every access is bounds-checked.
        let offsets = table.offset(0) == 0 && table.offset(n) as usize == strings_len;
        let in_range = table.addr(0) == lo && table.addr(n - 1) <= hi && lowest <= lo;
        if !(offsets && in_range) {
            return None;
        }
        table.second = (0..n)
            .map(|i| table.addr(i))
            .find(|&a| a > lo)
            .unwrap_or(u64::MAX);
        Some(table)
    }

    fn addr(&self, i: usize) -> u64 {
        u64_at(self.data.bytes(), HEADER + 8 * i).unwrap_or(u64::MAX)
    }

    fn offset(&self, i: usize) -> u32 {
        u32_at(self.data.bytes(), HEADER + 8 * self.n + 4 * i).unwrap_or(u32::MAX)
    }

    /// `"TYPE NAME"` of entry `i`.
    fn line(&self, i: usize) -> &str {
        let base = HEADER + 12 * self.n + 4;
        let (start, end) = (self.offset(i) as usize, self.offset(i + 1) as usize);
        if start > end || end > self.strings_len {
            return "";
        }
        std::str::from_utf8(&self.data.bytes()[base + start..base + end]).unwrap_or("")
    }

    /// Whether the table alone names `addr` as the whole kallsyms would.
    pub fn covers(&self, addr: u64) -> bool {
        // Inside the entries at the file's lowest address, blazesym's choice
        // depends on there being nothing below them, which a module loaded
        // since might have changed.
        let inside_lowest = self.lowest == self.lo && addr > self.lo && addr < self.second;
        (self.lo..=self.hi).contains(&addr) && !inside_lowest
    }

    /// The entries at the greatest address at or below `addr` (if covered),
    /// as the index of the first and one past the last, in file order.
    fn run(&self, addr: u64) -> Option<(usize, usize)> {
        if !self.covers(addr) {
            return None;
        }
        // First index with an address above `addr`, then back to the first
        // entry at the address just below.
        let (mut low, mut high) = (0, self.n);
        while low < high {
            let mid = (low + high) / 2;
            if self.addr(mid) <= addr {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let found = self.addr(low.checked_sub(1)?);
        let (mut first, mut high) = (0, low);
        while first < high {
            let mid = (first + high) / 2;
            if self.addr(mid) < found {
                first = mid + 1;
            } else {
                high = mid;
            }
        }
        Some((first, low))
    }

    /// The address and `"TYPE NAME"` lines of the entries that name `addr`.
    pub fn lookup(&self, addr: u64) -> Option<(u64, Vec<&str>)> {
        let (first, end) = self.run(addr)?;
        Some((
            self.addr(first),
            (first..end).map(|i| self.line(i)).collect(),
        ))
    }

    fn bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    /// A kallsyms file holding just the entries that name `addrs` (each
    /// covered), for blazesym to read: the entries naming an address are
    /// also the greatest at or below it among these, and a sentinel below
    /// them all stands for the rest of the file.
    pub fn excerpt(&self, addrs: &[u64]) -> String {
        let mut runs: Vec<(usize, usize)> = addrs.iter().filter_map(|&a| self.run(a)).collect();
        runs.sort_unstable();
        runs.dedup();
        let mut text = String::with_capacity(runs.len() * 48 + 32);
        if self.lowest < self.lo {
            text.push_str("0000000000000001 t [sentinel]\n");
        }
        for (first, end) in runs {
            for i in first..end {
                text.push_str(&format!("{:016x} {}\n", self.addr(i), self.line(i)));
            }
        }
        text
    }
}

/// The cache directory, created root-only if missing; `None` unless it is a
/// real directory owned by us (root) that no one else can enter.
fn cache_dir(dir: &Path) -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    crate::private_files::private_dir(dir)?;
    Some(dir.to_path_buf())
}

fn read_cache(dir: &Path, boot_id: &[u8; BOOT_ID_LEN]) -> Option<KernelTable> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(CACHE_FILE))
        .ok()?;
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions.
    let ours = meta.uid() == unsafe { libc::geteuid() };
    if !meta.file_type().is_file() || !ours || meta.permissions().mode() & 0o022 != 0 {
        return None;
    }
    // SAFETY: the file is ours, in a directory only we can write, and is
    // replaced by rename, never rewritten in place.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    KernelTable::parse(Data::Mapped(map), boot_id)
}

fn write_cache(dir: &Path, table: &KernelTable) -> io::Result<()> {
    crate::private_files::write_new(&dir.join(CACHE_FILE), table.bytes())
}

/// The first entry `/proc/kallsyms` lists, read without making the kernel
/// format the rest of the file.
fn first_live_entry() -> Option<(u64, String)> {
    let mut file = File::open(KALLSYMS).ok()?;
    let mut buf = [0u8; 4096];
    let len = file.read(&mut buf).ok()?;
    let text = std::str::from_utf8(&buf[..len]).ok()?;
    let line = text.lines().next()?;
    let entry = parse_line(line)?;
    Some((entry.addr, format!("{} {}", entry.kind, entry.name)))
}

/// Whether the kernel's first entry is still what the table says (it is not
/// when `kptr_restrict` now hides addresses, or the file is not this kernel's).
fn agrees_with_live(table: &KernelTable) -> bool {
    match (first_live_entry(), table.lo) {
        (Some((addr, line)), lo) if addr >= lo => table
            .run(addr)
            .is_some_and(|(first, _)| table.addr(first) == addr && table.line(first) == line),
        _ => false,
    }
}

/// The table for this boot: from the cache in `dir`, else built from
/// `/proc/kallsyms` and cached there. `None` when neither works; kernel
/// addresses then go to blazesym on `/proc/kallsyms` as before.
pub fn load(dir: &Path) -> Option<KernelTable> {
    let boot_id = read_boot_id()?;
    let dir = cache_dir(dir);
    if let Some(dir) = &dir
        && let Some(table) = read_cache(dir, &boot_id)
        && agrees_with_live(&table)
    {
        return Some(table);
    }
    let text = fs::read_to_string(KALLSYMS).ok()?;
    let table = KernelTable::from_kallsyms(&text, boot_id)?;
    if let Some(dir) = &dir {
        // A failed write only costs the next recording the read again.
        let _ = write_cache(dir, &table);
    }
    Some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
0000000000001000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000010 t first_fn
ffffffff81000040 T second_fn
ffffffff81000040 t second_alias
ffffffff82000000 D some_data
ffffffff81000020 t first_fn.cold
ffffffffc0001000 t mod_fn\t[mymod]
ffffffffc0002000 t bpf_prog_0123456789abcdef_prog\t[bpf]
";

    fn id(text: &str) -> [u8; BOOT_ID_LEN] {
        let mut id = [0u8; BOOT_ID_LEN];
        id[..text.len()].copy_from_slice(text.as_bytes());
        id
    }

    #[test]
    fn names_like_blazesym_ties_included() {
        let table = KernelTable::from_kallsyms(TEXT, id("boot")).unwrap();
        assert!(!table.covers(0xffffffff80ffffff));
        assert!(!table.covers(0xffffffff82000001));
        assert!(!table.covers(0xffffffffc0001000));
        let found = |addr| table.lookup(addr);
        assert_eq!(
            found(0xffffffff81000001),
            Some((0xffffffff81000000, vec!["T _stext", "T _text"]))
        );
        assert_eq!(
            found(0xffffffff81000015),
            Some((0xffffffff81000010, vec!["t first_fn"]))
        );
        assert_eq!(
            found(0xffffffff81000020),
            Some((0xffffffff81000020, vec!["t first_fn.cold"]))
        );
        assert_eq!(
            found(0xffffffff81000050),
            Some((0xffffffff81000040, vec!["T second_fn", "t second_alias"]))
        );
        assert_eq!(
            found(0xffffffff82000000),
            Some((0xffffffff82000000, vec!["D some_data"]))
        );
        assert_eq!(found(0xffffffff82000001), None);
        assert_eq!(
            table.excerpt(&[0xffffffff81000050, 0xffffffff81000041]),
            "0000000000000001 t [sentinel]\n\
             ffffffff81000040 T second_fn\n\
             ffffffff81000040 t second_alias\n"
        );
        // With nothing below the kernel image, addresses inside its first
        // symbols are left to /proc/kallsyms.
        let image_first = TEXT.replace("0000000000001000 A", "ffffffffc0003000 A");
        let table = KernelTable::from_kallsyms(&image_first, id("boot")).unwrap();
        assert!(table.covers(0xffffffff81000000));
        assert!(!table.covers(0xffffffff81000001));
        assert!(table.covers(0xffffffff81000010));
    }

    fn blazesym_names(kallsyms: &str, addrs: &[u64]) -> Vec<Option<String>> {
        use blazesym::symbolize::{
            Input, Symbolizer,
            source::{Kernel, Source},
        };
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), kallsyms).unwrap();
        let source = Source::Kernel(Kernel {
            kallsyms: blazesym::MaybeDefault::Some(file.path().to_path_buf()),
            vmlinux: blazesym::MaybeDefault::None,
            ..Kernel::default()
        });
        Symbolizer::new()
            .symbolize(&source, Input::AbsAddr(addrs))
            .unwrap()
            .iter()
            .map(|s| s.as_sym().map(|s| s.name.to_string()))
            .collect()
    }

    /// blazesym on the excerpt names every covered address as blazesym on
    /// the whole file, whether something lies below the kernel image or not.
    #[test]
    fn the_excerpt_gives_blazesyms_names_for_the_whole_file() {
        let image_first = TEXT.replace("0000000000001000 A", "ffffffffc0003000 A");
        for text in [TEXT, &image_first] {
            let table = KernelTable::from_kallsyms(text, id("boot")).unwrap();
            let addrs: Vec<u64> = (0xffffffff80ffffff..0xffffffff81000060)
                .chain([0xffffffff82000000, 0xffffffff82000001, 0xffffffffc0001004])
                .collect();
            let expected = blazesym_names(text, &addrs);
            let covered: Vec<(u64, Option<String>)> = addrs
                .iter()
                .zip(expected)
                .filter(|(a, _)| table.covers(**a))
                .map(|(a, e)| (*a, e))
                .collect();
            assert!(covered.len() > 80, "{}", covered.len());
            let only: Vec<u64> = covered.iter().map(|(a, _)| *a).collect();
            let got = blazesym_names(&table.excerpt(&only), &only);
            for ((addr, want), got) in covered.iter().zip(got) {
                assert_eq!(want, &got, "{addr:#x}");
            }
        }
    }

    #[test]
    fn rejects_another_boot_and_damage() {
        let table = KernelTable::from_kallsyms(TEXT, id("boot")).unwrap();
        let bytes = table.bytes().to_vec();
        assert!(KernelTable::parse(Data::Owned(bytes.clone()), &id("boot")).is_some());
        assert!(KernelTable::parse(Data::Owned(bytes.clone()), &id("other")).is_none());
        assert!(
            KernelTable::parse(Data::Owned(bytes[..bytes.len() - 1].to_vec()), &id("boot"))
                .is_none()
        );
        let mut unsorted = bytes.clone();
        unsorted[HEADER..HEADER + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert!(KernelTable::parse(Data::Owned(unsorted), &id("boot")).is_none());
        // Addresses hidden by kptr_restrict: nothing to cache.
        let hidden = "0000000000000000 T _stext\n0000000000000000 T _text\n";
        assert!(KernelTable::from_kallsyms(hidden, id("boot")).is_none());
    }

    #[test]
    fn cache_round_trip_and_unsafe_places_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the cache is root-only");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        let dir = cache_dir(&dir).expect("a fresh private directory");
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let table = KernelTable::from_kallsyms(TEXT, id("boot")).unwrap();
        write_cache(&dir, &table).unwrap();
        let read = read_cache(&dir, &id("boot")).expect("the cache just written");
        assert_eq!(read.bytes(), table.bytes());
        assert!(read_cache(&dir, &id("other")).is_none());

        // A symlinked cache file is not followed.
        let elsewhere = tmp.path().join("elsewhere");
        fs::write(&elsewhere, table.bytes()).unwrap();
        fs::remove_file(dir.join(CACHE_FILE)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join(CACHE_FILE)).unwrap();
        assert!(read_cache(&dir, &id("boot")).is_none());

        // A directory others can enter is not used.
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(cache_dir(&open).is_none());
        // Nor a symlink to a private one.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(cache_dir(&link).is_none());
    }
}

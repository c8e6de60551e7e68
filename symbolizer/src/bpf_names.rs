//! Names of loaded BPF programs, asked of the kernel with bpf(2) instead of
//! read from `/proc/kallsyms`, which the kernel would format whole (120 000
//! lines, ~40 ms of CPU) for the few BPF frames of a recording (our own
//! programs show up in the stacks of exec and exit).
//!
//! The kernel lists each JITed program (and each of its subprograms) in
//! kallsyms at its JITed address as `bpf_prog_<tag>_<name>`
//! (`bpf_get_prog_name` in kernel/bpf/core.c): the tag in hex (the
//! program's own tag for the main program, each subprogram's tag for the
//! others), then `_` and the function's name from the program's BTF when the
//! program has function info, else the name it was loaded with (`F` for a
//! subprogram), else nothing. BPF_OBJ_GET_INFO_BY_FD gives all of that:
//! `jited_ksyms` and `jited_func_lens` (one per function), `tag` and
//! `prog_tags`, `name`, and `func_info` with the BTF type of each function,
//! whose name is in the BTF object `btf_id` names.
//!
//! Only addresses inside a program's JITed code are named here: blazesym on
//! `/proc/kallsyms` names an address by the entry at the greatest address at
//! or below it, and no other entry lies inside a program's code, so the name
//! is the same. Everything else (trampolines, dispatchers, modules, programs
//! whose information cannot be read) is left to `/proc/kallsyms`.
//!
//! The calls are made with libc directly: aya's `ProgramInfo` does not give
//! the JITed addresses, lengths, subprogram tags nor function info.

use std::{
    ffi::c_void,
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_BTF_GET_FD_BY_ID: libc::c_long = 19;

const TAG_LEN: usize = 8;
/// The kernel's limit on a symbol name, terminating NUL included.
const KSYM_NAME_LEN: usize = 512;

/// `union bpf_attr` for the *_GET_NEXT_ID and *_GET_FD_BY_ID commands.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` (include/uapi/linux/bpf.h), up to the fields used;
/// the kernel fills what fits in the length given.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ProgInfo {
    type_: u32,
    id: u32,
    tag: [u8; TAG_LEN],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
}

/// `struct bpf_func_info`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FuncInfo {
    insn_off: u32,
    type_id: u32,
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Default)]
struct BtfInfo {
    btf: u64,
    btf_size: u32,
    id: u32,
    name: u64,
    name_len: u32,
    kernel_btf: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable `union bpf_attr` prefix of the size
    // passed; the kernel zero-extends the rest.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut c_void,
            size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn next_prog_id(after: u32) -> io::Result<u32> {
    let mut attr = IdAttr {
        id: after,
        ..IdAttr::default()
    };
    bpf(BPF_PROG_GET_NEXT_ID, &mut attr)?;
    Ok(attr.next_id)
}

fn fd_by_id(cmd: libc::c_long, id: u32) -> io::Result<OwnedFd> {
    let mut attr = IdAttr {
        id,
        ..IdAttr::default()
    };
    let fd = bpf(cmd, &mut attr)?;
    // SAFETY: a non-negative result of these commands is a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// BPF_OBJ_GET_INFO_BY_FD into `info` (its buffers set up by the caller).
fn obj_info<T>(fd: &OwnedFd, info: &mut T) -> io::Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<T>() as u32,
        info: info as *mut T as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(drop)
}

/// One JITed function of a program: where its code is and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BpfFunction {
    pub start: u64,
    pub len: u64,
    pub name: String,
}

impl BpfFunction {
    /// Whether `addr` is inside the function's code.
    pub fn holds(&self, addr: u64) -> bool {
        addr >= self.start && addr - self.start < self.len
    }
}

/// A kallsyms file listing `functions` as `/proc/kallsyms` does, for
/// blazesym to read: sorted, after a sentinel entry below them all so that
/// blazesym's choice among the lowest entries of a file does not come in.
pub fn excerpt(functions: &[BpfFunction]) -> String {
    let mut sorted: Vec<&BpfFunction> = functions.iter().collect();
    sorted.sort_by_key(|f| f.start);
    sorted.dedup();
    let mut text = String::from("0000000000000001 t [sentinel]\n");
    for f in sorted {
        text.push_str(&format!("{:016x} t {}\t[bpf]\n", f.start, f.name));
    }
    text
}

/// The JITed functions of one program, as the kernel lists them in kallsyms;
/// `None` when something needed cannot be read.
fn program_functions(fd: &OwnedFd, wanted: &dyn Fn(u64, u64) -> bool) -> Option<Vec<BpfFunction>> {
    // First the counts, then the arrays in a second call.
    let mut counts = ProgInfo::default();
    obj_info(fd, &mut counts).ok()?;
    let n = counts.nr_jited_ksyms as usize;
    if n == 0 || counts.nr_jited_func_lens as usize != n {
        return None;
    }
    let mut ksyms = vec![0u64; n];
    let mut lens = vec![0u32; n];
    let mut info = ProgInfo {
        nr_jited_ksyms: n as u32,
        nr_jited_func_lens: n as u32,
        jited_ksyms: ksyms.as_mut_ptr() as u64,
        jited_func_lens: lens.as_mut_ptr() as u64,
        ..ProgInfo::default()
    };
    obj_info(fd, &mut info).ok()?;
    if info.nr_jited_ksyms as usize != n || info.nr_jited_func_lens as usize != n {
        // Changed between the calls: not a program to guess about.
        return None;
    }
    // Addresses hidden (kptr_restrict, no CAP_SYSLOG) come back as zero.
    if ksyms.contains(&0) {
        return None;
    }
    // Names are needed only for programs holding a looked-up address.
    if !ksyms
        .iter()
        .zip(&lens)
        .any(|(&start, &len)| wanted(start, len as u64))
    {
        return Some(Vec::new());
    }

    let n_funcs = counts.nr_func_info as usize;
    let n_tags = counts.nr_prog_tags as usize;
    let mut funcs = vec![FuncInfo::default(); n_funcs];
    let mut tags = vec![[0u8; TAG_LEN]; n_tags];
    let mut info = ProgInfo {
        nr_func_info: n_funcs as u32,
        func_info_rec_size: size_of::<FuncInfo>() as u32,
        func_info: funcs.as_mut_ptr() as u64,
        nr_prog_tags: n_tags as u32,
        prog_tags: tags.as_mut_ptr() as u64,
        ..ProgInfo::default()
    };
    obj_info(fd, &mut info).ok()?;
    if info.nr_func_info as usize != n_funcs || info.nr_prog_tags as usize != n_tags {
        return None;
    }
    // The kernel names every function from BTF when the program has function
    // info for it; BTF is fetched only then.
    let btf = if n_funcs > 0 {
        Some(Btf::fetch(info.btf_id)?)
    } else {
        None
    };
    let loaded_name = {
        let end = info.name.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&info.name[..end]).into_owned()
    };

    let mut functions = Vec::with_capacity(n);
    for (i, (&start, &len)) in ksyms.iter().zip(&lens).enumerate() {
        // The main program is listed with the whole program's tag; each
        // subprogram with its own (prog_tags[0] is the main function's).
        let tag = if i == 0 { info.tag } else { *tags.get(i)? };
        let suffix = match (&btf, funcs.get(i)) {
            (Some(btf), Some(func)) => Some(btf.func_name(func.type_id)?.to_owned()),
            _ if i == 0 => Some(loaded_name.clone()).filter(|n| !n.is_empty()),
            _ => Some("F".to_owned()),
        };
        functions.push(BpfFunction {
            start,
            len: len as u64,
            name: kallsyms_name(&tag, suffix.as_deref()),
        });
    }
    Some(functions)
}

/// `bpf_prog_<tag>[_<name>]`, cut at the kernel's symbol length.
fn kallsyms_name(tag: &[u8; TAG_LEN], name: Option<&str>) -> String {
    let mut sym = String::from("bpf_prog_");
    for b in tag {
        sym.push_str(&format!("{b:02x}"));
    }
    if let Some(name) = name {
        sym.push('_');
        sym.push_str(name);
    }
    if sym.len() > KSYM_NAME_LEN - 1 {
        let mut end = KSYM_NAME_LEN - 1;
        while !sym.is_char_boundary(end) {
            end -= 1;
        }
        sym.truncate(end);
    }
    sym
}

/// A program's BTF, raw, with the offsets of its type and string sections.
struct Btf {
    data: Vec<u8>,
    /// Start of each type's record, by type id (index 0: void, unused).
    types: Vec<usize>,
    strings: std::ops::Range<usize>,
}

const BTF_MAGIC: u16 = 0xeb9f;
const BTF_KIND_FUNC: u32 = 12;

impl Btf {
    fn fetch(id: u32) -> Option<Btf> {
        let fd = fd_by_id(BPF_BTF_GET_FD_BY_ID, id).ok()?;
        let mut sizes = BtfInfo::default();
        obj_info(&fd, &mut sizes).ok()?;
        let mut data = vec![0u8; sizes.btf_size as usize];
        let mut info = BtfInfo {
            btf: data.as_mut_ptr() as u64,
            btf_size: data.len() as u32,
            ..BtfInfo::default()
        };
        obj_info(&fd, &mut info).ok()?;
        if info.btf_size as usize != data.len() {
            return None;
        }
        Btf::parse(data)
    }

    fn parse(data: Vec<u8>) -> Option<Btf> {
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(data.get(at..at + 4)?.try_into().ok()?))
        };
        let magic = u16::from_ne_bytes(data.get(0..2)?.try_into().ok()?);
        if magic != BTF_MAGIC {
            return None;
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let type_start = hdr_len.checked_add(type_off)?;
        let type_end = type_start.checked_add(type_len)?;
        let str_start = hdr_len.checked_add(str_off)?;
        let str_end = str_start.checked_add(str_len)?;
        if type_end > data.len() || str_end > data.len() {
            return None;
        }
        let mut types = vec![0];
        let mut at = type_start;
        while at < type_end {
            types.push(at);
            let info = u32_at(at + 4)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            // struct btf_type is 12 bytes, then data that depends on the kind.
            let extra = match kind {
                1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
                3 => 12,                      // ARRAY
                4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
                6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
                2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, ..., FUNC, FLOAT, TYPE_TAG
                _ => return None,
            };
            at += 12 + extra;
        }
        if at != type_end {
            return None;
        }
        Some(Btf {
            data,
            types,
            strings: str_start..str_end,
        })
    }

    /// The name of function type `id`.
    fn func_name(&self, id: u32) -> Option<&str> {
        let at = *self.types.get(id as usize).filter(|&&at| at != 0)?;
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(
                self.data.get(at..at + 4)?.try_into().ok()?,
            ))
        };
        if (word(at + 4)? >> 24) & 0x1f != BTF_KIND_FUNC {
            return None;
        }
        let name_off = word(at)? as usize;
        let strings = self.data.get(self.strings.clone())?;
        let name = strings.get(name_off..)?;
        let end = name.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&name[..end]).ok()
    }
}

/// The BPF functions holding some of `addrs`, each with its kallsyms name,
/// from every loaded program; empty when bpf(2) cannot be used (not root).
pub fn functions_holding(addrs: &[u64]) -> Vec<BpfFunction> {
    let holds = |start: u64, len: u64| addrs.iter().any(|&a| a >= start && a - start < len);
    let mut found = Vec::new();
    let mut id = 0;
    while let Ok(next) = next_prog_id(id) {
        id = next;
        // Unloaded since it was listed, or not ours to open: skipped.
        let Ok(fd) = fd_by_id(BPF_PROG_GET_FD_BY_ID, id) else {
            continue;
        };
        if let Some(functions) = program_functions(&fd, &holds) {
            found.extend(functions.into_iter().filter(|f| holds(f.start, f.len)));
        }
    }
    found
}

/// Loads small programs (socket filters) for tests to look for: one with
/// a subprogram and no BTF, one with a subprogram and function names longer
/// than a program name from BTF. `Err` (the reason) when they cannot
/// be loaded, e.g. without root.
#[cfg(test)]
pub(crate) fn load_test_programs() -> Result<Vec<OwnedFd>, String> {
    const BPF_BTF_LOAD: libc::c_long = 18;
    const BPF_PROG_LOAD: libc::c_long = 5;
    const SOCKET_FILTER: u32 = 1;

    #[repr(C)]
    #[derive(Default)]
    struct BtfLoadAttr {
        btf: u64,
        log_buf: u64,
        size: u32,
        log_size: u32,
        log_level: u32,
    }
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
        prog_btf_fd: u32,
        func_info_rec_size: u32,
        func_info: u64,
        func_info_cnt: u32,
    }

    // call +2 (a subprogram); r0 = 0; exit; subprogram: r0 = 0; exit.
    let insn = |code: u8, regs: u8, imm: i32| -> u64 {
        (code as u64) | ((regs as u64) << 8) | ((imm as u32 as u64) << 32)
    };
    let insns = [
        insn(0x85, 0x10, 2),
        insn(0xb7, 0, 0),
        insn(0x95, 0, 0),
        insn(0xb7, 0, 0),
        insn(0x95, 0, 0),
    ];
    let license = c"GPL";
    let load = |name: &str, btf_fd: Option<&OwnedFd>, funcs: &[FuncInfo]| {
        let mut attr = ProgLoadAttr {
            prog_type: SOCKET_FILTER,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..ProgLoadAttr::default()
        };
        attr.prog_name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(fd) = btf_fd {
            attr.prog_btf_fd = fd.as_raw_fd() as u32;
            attr.func_info_rec_size = size_of::<FuncInfo>() as u32;
            attr.func_info = funcs.as_ptr() as u64;
            attr.func_info_cnt = funcs.len() as u32;
        }
        bpf(BPF_PROG_LOAD, &mut attr)
            // SAFETY: a non-negative result is a new fd we own.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
            .map_err(|e| format!("cannot load a BPF program: {e}"))
    };

    // BTF: [1] void(void), [2] and [3] static functions of that type.
    let strings = b"\0a_function_name_longer_than_16\0sub_fn\0";
    let mut types = Vec::new();
    for (name_off, info, type_) in [
        (0u32, 13u32 << 24, 0u32),
        (1, 12 << 24, 1),
        (32, 12 << 24, 1),
    ] {
        for word in [name_off, info, type_] {
            types.extend_from_slice(&word.to_ne_bytes());
        }
    }
    let mut btf = Vec::new();
    btf.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
    btf.extend_from_slice(&[1, 0]);
    for word in [
        24u32,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        btf.extend_from_slice(&word.to_ne_bytes());
    }
    btf.extend_from_slice(&types);
    btf.extend_from_slice(strings);
    let mut attr = BtfLoadAttr {
        btf: btf.as_ptr() as u64,
        size: btf.len() as u32,
        ..BtfLoadAttr::default()
    };
    let btf_fd = bpf(BPF_BTF_LOAD, &mut attr)
        // SAFETY: a non-negative result is a new fd we own.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
        .map_err(|e| format!("cannot load BTF: {e}"))?;
    let funcs = [
        FuncInfo {
            insn_off: 0,
            type_id: 2,
        },
        FuncInfo {
            insn_off: 3,
            type_id: 3,
        },
    ];
    Ok(vec![
        load("knames_no_btf", None, &[])?,
        load("knames_btf", Some(&btf_fd), &funcs)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_layouts_match_the_kernels() {
        // Offsets from include/uapi/linux/bpf.h.
        assert_eq!(std::mem::offset_of!(ProgInfo, name), 64);
        assert_eq!(std::mem::offset_of!(ProgInfo, nr_jited_ksyms), 104);
        assert_eq!(std::mem::offset_of!(ProgInfo, btf_id), 128);
        assert_eq!(std::mem::offset_of!(ProgInfo, nr_prog_tags), 180);
        assert_eq!(std::mem::offset_of!(ProgInfo, prog_tags), 184);
        assert_eq!(size_of::<BtfInfo>(), 32);
    }

    #[test]
    fn names_are_built_like_the_kernels() {
        let tag = [0x4f, 0x93, 0x02, 0xba, 0x65, 0xb9, 0x0c, 0xcd];
        assert_eq!(
            kallsyms_name(&tag, Some("memset")),
            "bpf_prog_4f9302ba65b90ccd_memset"
        );
        assert_eq!(kallsyms_name(&tag, None), "bpf_prog_4f9302ba65b90ccd");
        assert_eq!(kallsyms_name(&tag, Some(&"x".repeat(600))).len(), 511);
    }

    /// Every program function /proc/kallsyms lists is found at its address
    /// with the same name: ours (with and without BTF, with a subprogram)
    /// and any other loaded.
    #[test]
    fn names_equal_proc_kallsyms() {
        let _programs = match load_test_programs() {
            Ok(fds) => fds,
            Err(why) => {
                eprintln!("SKIPPED names_equal_proc_kallsyms: {why} (needs root)");
                return;
            }
        };
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap();
        let listed: Vec<(u64, &str)> = text
            .lines()
            .filter(|l| l.ends_with("[bpf]"))
            .filter_map(|l| {
                let mut tokens = l.split_ascii_whitespace();
                let addr = u64::from_str_radix(tokens.next()?, 16).ok()?;
                let name = tokens.nth(1)?;
                name.starts_with("bpf_prog_").then_some((addr, name))
            })
            .collect();
        assert!(
            listed.iter().all(|(addr, _)| *addr != 0),
            "kallsyms hides addresses"
        );
        let ours: Vec<&str> = listed
            .iter()
            .map(|(_, n)| *n)
            .filter(|n| {
                n.contains("knames_") || n.contains("_function_name_") || n.ends_with("_sub_fn")
            })
            .collect();
        assert_eq!(ours.len(), 3, "{listed:?}");
        assert!(
            listed.iter().any(|(_, n)| n.ends_with("_F")),
            "no subprogram without BTF: {listed:?}"
        );
        let addrs: Vec<u64> = listed.iter().map(|(a, _)| *a).collect();
        let found = functions_holding(&addrs);
        for (addr, name) in &listed {
            let f = found
                .iter()
                .find(|f| f.start == *addr)
                .unwrap_or_else(|| panic!("{name} at {addr:#x} not found in {found:?}"));
            assert_eq!(&f.name, name);
            assert!(f.holds(addr + f.len - 1) && !f.holds(addr + f.len));
        }
    }
}

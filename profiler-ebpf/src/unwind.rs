//! User stacks walked with unwind tables (`--unwind auto|dwarf`): from the
//! thread's user registers, each frame's caller is found with the row of
//! its file's table that covers the instruction (user space builds the
//! tables from `.eh_frame` and loads them, see `profiler/src/unwind/`), or,
//! in code without a table, with the frame pointer.
//!
//! One `bpf_loop` callback walks one frame, so that the verifier checks the
//! frame's work (a binary search over the process's mappings, another over
//! the file's rows, each a `bpf_loop` of its own) once, not once per frame.
//! The walk's registers and counters live in a per-CPU map value
//! (`UNWIND_STATE`), not on the stack: the verifier tracks stack values, and
//! each distinct value (a search bound, a stop cause) made a state of its
//! own that it walked the rest of the program for (over 1M instructions,
//! rejected); it does not track what a map value holds.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_NOEXIST, pt_regs},
    cty::c_void,
    helpers::{
        bpf_get_current_task, bpf_loop, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use profiler_common::{
    MAX_STACK_DEPTH, StackTrace, UNWIND_FILES_MAX, UNWIND_MAPPINGS_MAX, UNWIND_MISS_INTERVAL_NS,
    UNWIND_ROWS_DEFAULT, UnwindFile, UnwindProcess, UnwindRow, cfa, rbp_rule, unwind_end,
    unwind_mode,
};

/// Every loaded file's rows, one contiguous run per file (`UNWIND_FILES`
/// says where). User space sizes it to the memory budget at load time, and
/// writes it through a shared mapping (a bpf call per row took ~25 ms for
/// libc's table alone).
#[map]
static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(UNWIND_ROWS_DEFAULT, BPF_F_MMAPABLE);

/// Loaded files by slot, written through a shared mapping too.
#[map]
static UNWIND_FILES: Array<UnwindFile> = Array::with_max_entries(UNWIND_FILES_MAX, BPF_F_MMAPABLE);

/// Each process's mappings with a table, by tgid.
#[map]
static UNWIND_PROCS: HashMap<u32, UnwindProcess> =
    HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// Tasks (by `task_struct` address) forked by a process whose mappings are
/// loaded, and that process's tgid. A forked child has its parent's
/// mappings until it execs: the first time its process is walked without
/// mappings of its own, it gets a copy (a fork's child is sampled long
/// before user space reads the fork's record). The fork program cannot
/// read the child's tgid without the kernel's struct layout, hence the
/// task address, as for `FORKED`.
#[map]
static UNWIND_INHERIT: HashMap<u64, u32> = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// When each process last sent `EVENT_UNWIND_MISS` (CLOCK_MONOTONIC ns).
#[map]
static UNWIND_MISSED: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// This CPU's walk in progress.
#[map]
static UNWIND_STATE: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

/// User addresses are below this on x86-64 (2^47 with 4-level page tables,
/// 2^56 with 5-level ones).
const USER_ADDRESS_END: u64 = 0x0100_0000_0000_0000;

/// `cs` of a user-mode register set has the requested privilege level 3.
const USER_RPL: u64 = 3;

/// Binary search steps over the rows of one file: 2^32 rows is more than
/// the rows array can hold (the search stops as soon as it is done).
const ROW_SEARCH_STEPS: u32 = 32;
/// Over a process's mappings: 2^8 > `UNWIND_MAPPINGS_MAX`.
const MAPPING_SEARCH_STEPS: u32 = 8;

/// Offsets in the `ucontext_t` a signal frame's rsp points at (glibc's
/// `__restore_rt`): `uc_mcontext.gregs[REG_RBP]`, `[REG_RSP]`, `[REG_RIP]`.
const SIGNAL_RBP: u64 = 40 + 10 * 8;
const SIGNAL_RSP: u64 = 40 + 15 * 8;
const SIGNAL_RIP: u64 = 40 + 16 * 8;

/// The walk's state across `bpf_loop` calls (in `UNWIND_STATE`).
#[repr(C)]
pub struct Walk {
    rip: u64,
    rsp: u64,
    rbp: u64,
    /// Addresses stored so far.
    pub len: u64,
    /// Frames unwound with a table row, and with the frame pointer.
    table_frames: u64,
    fp_frames: u64,
    /// `unwind_mode::*`.
    mode: u32,
    /// `unwind_end::*` once the walk stopped.
    end: u32,
    /// The last frame was a signal frame: `rip` is the interrupted
    /// instruction, not a return address, so it is looked up as it is.
    exact_pc: u32,
    /// Non-zero once a frame's address was in none of the process's mappings.
    missed: u32,
    /// A binary search's bounds and target (mapping index or row; file offset).
    lo: u32,
    hi: u32,
    /// The mapping search's answer so far: the last mapping starting at or
    /// below the target (`u32::MAX`: none).
    reserved: u32,
    pub target: u64,
    /// Python frames (`crate::python`): the next frame of the thread's
    /// chain, where the walk is in it (`python::STATE_*`), why frames were
    /// lost (`python::lost`, 0: none), eval frames met, frames stored.
    pub py_frame: u64,
    pub py_state: u32,
    pub py_lost: u32,
    pub py_evals: u64,
    pub py_frames: u64,
    /// The Python frame being stored, and its code object's names
    /// (`python::FRAME_READ`, `python::CODE_READ` bytes).
    pub py_frame_bytes: [u8; profiler_common::python::FRAME_READ],
    pub py_code_bytes: [u8; profiler_common::python::CODE_READ],
}

/// What the callbacks need besides the state: pointers, which a map value
/// cannot hold. They stay the same through the walk.
#[repr(C)]
pub struct WalkContext {
    /// This CPU's `STACK_SCRATCH` slot, where the addresses go.
    pub trace: *mut StackTrace,
    /// The process's mappings, or null (frame pointers only).
    process: *const UnwindProcess,
    /// The process's CPython interpreter, or null.
    pub python: *const profiler_common::python::Process,
    pub walk: *mut Walk,
}

/// The walk's result: how many addresses, why it ended, and how its frames were found.
pub struct Walked {
    pub len: usize,
    pub end: u32,
    pub table_frames: u64,
    pub fp_frames: u64,
    pub process_loaded: bool,
    /// An address was in none of the process's known mappings.
    pub missed: bool,
    /// Eval-loop frames met, Python frames stored, and why Python frames
    /// were lost (`python::lost`, 0: none).
    pub py_evals: u64,
    pub py_frames: u64,
    pub py_lost: u32,
}

/// The current thread's user registers (rip, rsp, rbp), if it has any:
/// `ctx_regs` (a perf_event program's interrupted registers) when they are
/// user mode, else the task's saved user registers (`bpf_task_pt_regs`).
#[inline(always)]
pub fn user_regs<C: EbpfContext>(ctx: &C, ctx_has_regs: bool) -> Option<(u64, u64, u64)> {
    if ctx_has_regs {
        let regs = ctx.as_ptr() as *const pt_regs;
        // SAFETY: a perf_event context starts with the interrupted registers.
        let (cs, rip, rsp, rbp) = unsafe { ((*regs).cs, (*regs).rip, (*regs).rsp, (*regs).rbp) };
        if cs & 3 == USER_RPL {
            return Some((rip, rsp, rbp));
        }
    }
    // SAFETY: helpers without memory arguments; the result is a kernel
    // address read only through bpf_probe_read_kernel.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) } as *const pt_regs;
    if regs.is_null() {
        return None;
    }
    // SAFETY: reads of kernel memory that may fail (then None).
    unsafe {
        let cs: u64 = read_kernel(&(*regs).cs)?;
        if cs & 3 != USER_RPL {
            return None;
        }
        Some((
            read_kernel(&(*regs).rip)?,
            read_kernel(&(*regs).rsp)?,
            read_kernel(&(*regs).rbp)?,
        ))
    }
}

#[inline(always)]
unsafe fn read_kernel(src: *const u64) -> Option<u64> {
    // SAFETY: the helper checks the source.
    unsafe { bpf_probe_read_kernel(src) }.ok()
}

#[inline(always)]
fn read_user(addr: u64) -> Option<u64> {
    // SAFETY: the helper checks the source.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

/// Called at a fork (the current task is the parent): the child may take
/// the parent's mappings (see `UNWIND_INHERIT`).
#[inline(always)]
pub fn inherit(child: u64, parent_tgid: u32) {
    if UNWIND_PROCS.get_ptr(parent_tgid).is_some() {
        // Full: the child waits for user space, as without this.
        let _ = UNWIND_INHERIT.insert(child, parent_tgid, 0);
    }
}

/// Whether process `tgid` may send `EVENT_UNWIND_MISS` now (and notes that it did).
#[inline(always)]
pub fn miss_allowed(tgid: u32, now: u64) -> bool {
    if let Some(last) = UNWIND_MISSED.get_ptr(tgid) {
        // SAFETY: a map value, valid during the program.
        if now.wrapping_sub(unsafe { *last }) < UNWIND_MISS_INTERVAL_NS {
            return false;
        }
    }
    UNWIND_MISSED.insert(tgid, now, 0).is_ok()
}

/// Called at a process's exit (its leader's): its mappings go.
#[inline(always)]
pub fn forget_process(tgid: u32) {
    let _ = UNWIND_PROCS.remove(tgid);
    crate::python::forget(tgid);
}

/// Called at an exec: the process's mappings, and those it would have
/// inherited, were the old image's.
#[inline(always)]
pub fn forget(tgid: u32) {
    let _ = UNWIND_PROCS.remove(tgid);
    crate::python::forget(tgid);
    exited();
}

/// Called at a task's exit: its inheritance, if never used (a thread, or
/// a child never sampled), goes (the address may be reused).
#[inline(always)]
pub fn exited() {
    // SAFETY: a helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let _ = UNWIND_INHERIT.remove(task);
}

/// The mappings of process `tgid`: its own, or a copy of its parent's if
/// the current task was forked since the parent's were loaded; null if neither.
#[inline(always)]
fn process_mappings(tgid: u32) -> *const UnwindProcess {
    if let Some(process) = UNWIND_PROCS.get_ptr(tgid) {
        return process;
    }
    // SAFETY: a helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    let Some(parent) = UNWIND_INHERIT.get_ptr(task) else {
        return core::ptr::null();
    };
    // SAFETY: a map value, copied out before the entry goes.
    let parent = unsafe { *parent };
    let _ = UNWIND_INHERIT.remove(task);
    crate::python::inherit(parent, tgid);
    let Some(source) = UNWIND_PROCS.get_ptr(parent) else {
        return core::ptr::null();
    };
    // SAFETY: a map value of the same map, valid during the program.
    if UNWIND_PROCS
        .insert(tgid, unsafe { &*source }, BPF_NOEXIST as u64)
        .is_err()
    {
        return core::ptr::null();
    }
    match UNWIND_PROCS.get_ptr(tgid) {
        Some(process) => process,
        None => core::ptr::null(),
    }
}

/// Walks the user stack of process `tgid` from `regs` into `trace` (this
/// CPU's scratch slot). `None` if this CPU's state slot is missing (cannot happen).
#[inline(always)]
pub fn walk(trace: *mut StackTrace, tgid: u32, regs: (u64, u64, u64), mode: u32) -> Option<Walked> {
    let process = process_mappings(tgid);
    let python = crate::python::process(tgid);
    let state = UNWIND_STATE.get_ptr_mut(0)?;
    let (rip, rsp, rbp) = regs;
    // SAFETY: `state` is this CPU's slot, which no other program uses meanwhile.
    unsafe {
        *state = Walk {
            rip,
            rsp,
            rbp,
            len: 0,
            table_frames: 0,
            fp_frames: 0,
            mode,
            end: unwind_end::DEPTH,
            exact_pc: 1,
            missed: 0,
            lo: 0,
            hi: 0,
            reserved: 0,
            target: 0,
            py_frame: 0,
            py_state: crate::python::STATE_UNKNOWN,
            py_lost: 0,
            py_evals: 0,
            py_frames: 0,
            py_frame_bytes: [0; profiler_common::python::FRAME_READ],
            py_code_bytes: [0; profiler_common::python::CODE_READ],
        };
    }
    let mut context = WalkContext {
        trace,
        process,
        python,
        walk: state,
    };
    if !python.is_null() {
        crate::python::start(&mut context);
    }
    // SAFETY: the callback is a static function of this object and
    // `context` outlives the calls.
    unsafe {
        bpf_loop(
            MAX_STACK_DEPTH as u32,
            step as *mut c_void,
            &mut context as *mut WalkContext as *mut c_void,
            0,
        );
        let walk = &*state;
        Some(Walked {
            len: (walk.len as usize).min(MAX_STACK_DEPTH),
            end: walk.end,
            table_frames: walk.table_frames,
            fp_frames: walk.fp_frames,
            process_loaded: !process.is_null(),
            missed: walk.missed != 0,
            py_evals: walk.py_evals,
            py_frames: walk.py_frames,
            py_lost: walk.py_lost,
        })
    }
}

/// The mapping of `process` that holds `pc`: its `(file slot, bias)`.
///
/// The binary searches run as `bpf_loop` callbacks: as open-coded loops
/// inside the frame callback, the verifier walked every step of every
/// path.
#[inline(always)]
fn find_mapping(context: &mut WalkContext, pc: u64) -> Option<(u32, u64)> {
    let process = context.process;
    // SAFETY: a map value, valid during the program; `walk` is this CPU's state.
    unsafe {
        let walk = &mut *context.walk;
        walk.lo = 0;
        walk.hi = ((*process).len).min(UNWIND_MAPPINGS_MAX as u32);
        walk.reserved = u32::MAX;
        walk.target = pc;
        bpf_loop(
            MAPPING_SEARCH_STEPS,
            mapping_step as *mut c_void,
            context as *mut WalkContext as *mut c_void,
            0,
        );
        // The last mapping starting at or below pc may hold it. Kept by the
        // search itself: indexing with `lo - 1` here let the compiler fold
        // the subtraction into the address, past the verifier's bounds.
        let index = (*context.walk).reserved as usize;
        let mapping = (*process).mappings.get(index)?;
        if pc >= mapping.end {
            return None;
        }
        Some((mapping.file, mapping.bias))
    }
}

#[inline(never)]
extern "C" fn mapping_step(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: `context` is the walk's context, on its stack; its pointers
    // are a map value and this CPU's state.
    unsafe {
        let context = &*(context as *const WalkContext);
        let walk = &mut *context.walk;
        if walk.lo >= walk.hi {
            return 1;
        }
        let mid = walk.lo + (walk.hi - walk.lo) / 2;
        let Some(mapping) = (*context.process).mappings.get(mid as usize) else {
            return 1;
        };
        if mapping.start <= walk.target {
            walk.reserved = mid;
            walk.lo = mid + 1;
        } else {
            walk.hi = mid;
        }
    }
    0
}

/// Slot `slot` of `UNWIND_FILES`, read in one load: user space rewrites
/// an entry with one 8-byte store when it evicts or loads a file, and two
/// loads could mix the old entry's first row with the new one's count.
#[inline(always)]
fn file_entry(slot: u32) -> Option<UnwindFile> {
    let entry = UNWIND_FILES.get_ptr(slot)?;
    // SAFETY: a map value of 8 bytes, aligned.
    let value = unsafe { core::ptr::read_volatile(entry as *const u64) };
    Some(UnwindFile {
        first_row: value as u32,
        rows: (value >> 32) as u32,
    })
}

/// The row of `file` that covers file offset `offset`: the last with `pc <= offset`.
#[inline(always)]
fn find_row(context: &mut WalkContext, file: &UnwindFile, offset: u32) -> Option<UnwindRow> {
    // SAFETY: this CPU's state.
    unsafe {
        let walk = &mut *context.walk;
        walk.lo = file.first_row;
        walk.hi = file.first_row.saturating_add(file.rows);
        walk.target = offset as u64;
        bpf_loop(
            ROW_SEARCH_STEPS,
            row_step as *mut c_void,
            context as *mut WalkContext as *mut c_void,
            0,
        );
        let walk = &*context.walk;
        if walk.lo == file.first_row || walk.lo < walk.hi {
            // Before the first row, or the search did not finish.
            return None;
        }
        UNWIND_ROWS.get(walk.lo - 1).copied()
    }
}

#[inline(never)]
extern "C" fn row_step(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: as in `mapping_step`.
    unsafe {
        let context = &*(context as *const WalkContext);
        let walk = &mut *context.walk;
        if walk.lo >= walk.hi {
            return 1;
        }
        let mid = walk.lo + (walk.hi - walk.lo) / 2;
        let Some(row) = UNWIND_ROWS.get(mid) else {
            return 1;
        };
        if row.pc as u64 <= walk.target {
            walk.lo = mid + 1;
        } else {
            walk.hi = mid;
        }
    }
    0
}

/// One frame: stores the frame at `rip` (the first call), or finds its
/// caller and stores that. Returns 1 (stop) once the walk ended.
#[inline(never)]
extern "C" fn step(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: `context` is `walk`'s context, on its stack.
    let context = unsafe { &mut *(context as *mut WalkContext) };
    // SAFETY: this CPU's state.
    let first = unsafe { (*context.walk).len } == 0;
    if !first {
        if let Err(end) = next_frame(context) {
            // SAFETY: this CPU's state.
            unsafe { (*context.walk).end = end };
            return 1;
        }
        // SAFETY: this CPU's state.
        let walk = unsafe { &mut *context.walk };
        if walk.rip == 0 {
            walk.end = unwind_end::COMPLETE;
            return 1;
        }
        // Not a user address: the walk read garbage.
        if walk.rip >= USER_ADDRESS_END {
            walk.end = unwind_end::BAD_FRAME;
            return 1;
        }
    }
    // SAFETY: this CPU's state.
    let rip = unsafe { (*context.walk).rip };
    // The Python frames an eval-loop frame runs go before it (a return
    // address is looked up at the call, as in `next_frame`).
    let pc = if first { rip } else { rip.wrapping_sub(1) };
    if !context.python.is_null()
        && crate::python::in_eval(context.python, pc)
        && !crate::python::store_frames(context)
    {
        // SAFETY: this CPU's state.
        unsafe { (*context.walk).end = unwind_end::DEPTH };
        return 1;
    }
    // SAFETY: this CPU's state and scratch slot; `get_mut` checks the index.
    unsafe {
        let walk = &mut *context.walk;
        match (*context.trace).ips.get_mut(walk.len as usize) {
            Some(slot) => *slot = rip,
            None => {
                walk.end = unwind_end::DEPTH;
                return 1;
            }
        }
        walk.len += 1;
    }
    0
}

/// Moves `walk`'s registers to the caller's frame, or says why it cannot.
#[inline(always)]
fn next_frame(context: &mut WalkContext) -> Result<(), u32> {
    // SAFETY: this CPU's state.
    let walk = unsafe { &mut *context.walk };
    let pc = if walk.exact_pc != 0 {
        walk.rip
    } else {
        // A return address is the instruction after the call, which may
        // belong to the next function (a call that does not return ends
        // its function): look up the call itself.
        walk.rip.wrapping_sub(1)
    };
    walk.exact_pc = 0;
    let row = if context.process.is_null() {
        None
    } else {
        match find_mapping(context, pc) {
            // A mapping of a file without a table (or of JIT code) has a
            // slot past the array: known, walked with frame pointers.
            Some((slot, bias)) => {
                let offset = pc.wrapping_sub(bias);
                match file_entry(slot) {
                    Some(file) if file.rows != 0 && offset <= u32::MAX as u64 => {
                        find_row(context, &file, offset as u32)
                    }
                    _ => None,
                }
            }
            None => {
                // SAFETY: this CPU's state.
                unsafe { (*context.walk).missed = 1 };
                None
            }
        }
    };
    // SAFETY: as above (the searches used the state meanwhile).
    let walk = unsafe { &mut *context.walk };
    let Some(row) = row.filter(|row| row.cfa_kind() != cfa::NONE) else {
        return frame_pointer(walk, !context.process.is_null());
    };
    let old_rsp = walk.rsp;
    let cfa = match row.cfa_kind() {
        cfa::RSP => walk.rsp.wrapping_add(row.cfa_offset as u64),
        cfa::RBP => walk.rbp.wrapping_add(row.cfa_offset as u64),
        cfa::RSP_WORDS => walk.rsp.wrapping_add(row.cfa_offset as u64 * 8),
        cfa::PLT => {
            let past = (walk.rip & 15) >= row.rbp_offset as u8 as u64;
            walk.rsp
                .wrapping_add(row.cfa_offset as u64)
                .wrapping_add(if past { 8 } else { 0 })
        }
        // A deref rule's offset is signed (gcc's realigned `main`: rbp - 8).
        cfa::DEREF_RSP => read_user(walk.rsp.wrapping_add(row.cfa_offset as i16 as i64 as u64))
            .ok_or(unwind_end::READ_FAULT)?,
        cfa::DEREF_RBP => read_user(walk.rbp.wrapping_add(row.cfa_offset as i16 as i64 as u64))
            .ok_or(unwind_end::READ_FAULT)?,
        cfa::SIGNAL => {
            let rsp = walk.rsp;
            walk.rip = read_user(rsp + SIGNAL_RIP).ok_or(unwind_end::READ_FAULT)?;
            walk.rbp = read_user(rsp + SIGNAL_RBP).ok_or(unwind_end::READ_FAULT)?;
            walk.rsp = read_user(rsp + SIGNAL_RSP).ok_or(unwind_end::READ_FAULT)?;
            walk.exact_pc = 1;
            walk.table_frames += 1;
            return Ok(());
        }
        cfa::END => return Err(unwind_end::COMPLETE),
        _ => return Err(unwind_end::UNSUPPORTED),
    };
    let ra = read_user(cfa.wrapping_sub(8)).ok_or(unwind_end::READ_FAULT)?;
    match row.rbp_kind() {
        rbp_rule::SAME => {}
        rbp_rule::AT_CFA => {
            let at = cfa.wrapping_add((row.rbp_offset as i64 * 8) as u64);
            walk.rbp = read_user(at).ok_or(unwind_end::READ_FAULT)?;
        }
        _ => walk.rbp = 0,
    }
    walk.rip = ra;
    walk.rsp = cfa;
    walk.table_frames += 1;
    if cfa <= old_rsp {
        return Err(unwind_end::BAD_FRAME);
    }
    Ok(())
}

/// The caller from the frame pointer (`--unwind auto`), for code without a table.
#[inline(always)]
fn frame_pointer(walk: &mut Walk, process_loaded: bool) -> Result<(), u32> {
    let cut = if process_loaded {
        unwind_end::NO_TABLE
    } else {
        unwind_end::NOT_LOADED
    };
    if walk.mode != unwind_mode::AUTO {
        return Err(cut);
    }
    let rbp = walk.rbp;
    // The outermost frame of a frame-pointer chain (`_start` and thread
    // entry points clear rbp), as the kernel's own walker ends.
    if rbp == 0 {
        return Err(unwind_end::COMPLETE);
    }
    // A frame pointer below the stack pointer is not one (code without
    // frame pointers uses rbp for data).
    if rbp < walk.rsp {
        return Err(cut);
    }
    let ra = read_user(rbp + 8).ok_or(unwind_end::READ_FAULT)?;
    walk.rbp = read_user(rbp).ok_or(unwind_end::READ_FAULT)?;
    walk.rip = ra;
    walk.rsp = rbp + 16;
    walk.fp_frames += 1;
    Ok(())
}

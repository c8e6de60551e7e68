//! CPython frames in user stacks (3.11+): where the table walk meets a
//! native frame in the interpreter's eval loop, the Python frames that loop
//! runs are stored before it, read from the interpreter's own state.
//!
//! Since 3.11 one call of `_PyEval_EvalFrameDefault` runs a run of Python
//! calls without recursing in C: the thread's `_PyInterpreterFrame` chain
//! (from its thread state) holds them, innermost first, down to the frame
//! that call was entered with (3.11: `is_entry`; 3.12+: a shim frame owned
//! by the C stack, pushed at entry). The walk keeps its place in the chain
//! across the eval frames of one stack, so each eval frame gets its own run.
//!
//! User space writes a process's struct offsets and addresses into
//! `PYTHON_PROCS` when it first sees the process (see `profiler/src/python/`);
//! the thread state of each thread is found in the interpreter's thread
//! list once and remembered in `PYTHON_THREADS`. A stored frame is the code
//! object's id (its address and its names' addresses, hashed: an address
//! is reused once its code object is freed) and the instruction's index
//! (`python::frame`); user space names it, reading the code object as
//! soon as the kernel announces an id it has not seen
//! (`EVENT_PYTHON_CODE`), while the process lives.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    cty::c_void,
    helpers::{bpf_get_current_pid_tgid, bpf_loop, bpf_probe_read_user, bpf_probe_read_user_buf},
    macros::map,
    maps::{Array, HashMap, LruHashMap},
};
use profiler_common::{
    EVENT_PYTHON_CODE, PythonCodeEvent, python,
    python::{NO_INDEX, NO_OFFSET, OWNED_BY_CSTACK, lost},
};

use crate::unwind::WalkContext;

/// Processes running CPython, by tgid (written by user space).
#[map]
static PYTHON_PROCS: HashMap<u32, python::Process> =
    HashMap::with_max_entries(4096, BPF_F_NO_PREALLOC);

/// Each thread's `PyThreadState` address, by tid: checked at every use
/// (the state's `native_thread_id` must still be the tid), searched for in
/// the interpreter's thread list when it is not.
#[map]
static PYTHON_THREADS: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16384, 0);

/// Code objects announced to user space, direct-mapped by a hash of
/// (tgid, address): a lookup is an array index where a hash map's would be
/// a hash and a bucket walk, at every Python frame. Two pairs that share a
/// slot announce each other again, which user space ignores.
#[map]
static PYTHON_CODES_SEEN: Array<u64> = Array::with_max_entries(CODES_SEEN, 0);
const CODES_SEEN: u32 = 1 << 16;

/// Threads looked at in the interpreter's list before giving up.
const THREAD_SEARCH_STEPS: u32 = 512;

/// `Walk::py_state`: the thread state was not found (`Walk::py_lost` says why).
pub const STATE_UNKNOWN: u32 = 0;
/// `Walk::py_frame` is the next Python frame to store.
pub const STATE_WALKING: u32 = 1;
/// Nothing more to store for this stack (lost, or the chain ended).
pub const STATE_DONE: u32 = 2;

/// The Python process `tgid`, if user space wrote it.
#[inline(always)]
pub fn process(tgid: u32) -> *const python::Process {
    match PYTHON_PROCS.get_ptr(tgid) {
        Some(process) => process,
        None => core::ptr::null(),
    }
}

/// A forked child runs its parent's interpreter at the same addresses.
#[inline(always)]
pub fn inherit(parent: u32, child: u32) {
    if let Some(process) = PYTHON_PROCS.get_ptr(parent) {
        // SAFETY: a map value, valid during the program.
        let _ = PYTHON_PROCS.insert(child, unsafe { &*process }, 0);
    }
}

/// At an exec or the leader's exit: the interpreter is gone.
#[inline(always)]
pub fn forget(tgid: u32) {
    let _ = PYTHON_PROCS.remove(tgid);
}

/// Whether `pc` (already adjusted for return addresses) is in the eval loop.
#[inline(always)]
pub fn in_eval(process: *const python::Process, pc: u64) -> bool {
    // SAFETY: a map value, valid during the program.
    let eval = unsafe { &(*process).eval };
    (pc >= eval[0][0] && pc < eval[0][1]) || (pc >= eval[1][0] && pc < eval[1][1])
}

#[inline(always)]
fn read_u64(addr: u64) -> Option<u64> {
    // SAFETY: the helper checks the source.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

/// The 8 bytes at `offset` of `bytes` (a read struct); a read fault if
/// they are not in it (user space checks that they are).
#[inline(always)]
fn field_u64<const N: usize>(bytes: &[u8; N], offset: u16) -> Result<u64, u32> {
    let at = offset as usize;
    if at > N - 8 {
        return Err(lost::READ_FAULT);
    }
    // SAFETY: in bounds (checked above); any bytes are a u64.
    Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().add(at) as *const u64) })
}

#[inline(always)]
fn field_u8<const N: usize>(bytes: &[u8; N], offset: u16) -> Result<u8, u32> {
    bytes.get(offset as usize).copied().ok_or(lost::READ_FAULT)
}

#[inline(always)]
fn at(base: u64, offset: u16) -> u64 {
    base.wrapping_add(offset as u64)
}

/// Finds the current thread's innermost Python frame before the walk
/// starts (in the program, not in the walk's per-frame callback, whose
/// every path the verifier walks again for each of this search's).
#[inline(always)]
pub fn start(context: &mut WalkContext) {
    let state = match thread_frame(context) {
        Ok(frame) => {
            // SAFETY: this CPU's state.
            unsafe { (*context.walk).py_frame = frame };
            STATE_WALKING
        }
        Err(cause) => {
            // SAFETY: this CPU's state.
            unsafe { (*context.walk).py_lost = cause };
            STATE_UNKNOWN
        }
    };
    // SAFETY: this CPU's state.
    unsafe { (*context.walk).py_state = state };
}

/// Stores the Python frames of the eval frame the walk is at (called
/// before the eval frame itself is stored). Returns false once the stack is full.
#[inline(always)]
pub fn store_frames(context: &mut WalkContext) -> bool {
    // SAFETY: this CPU's state.
    let walk = unsafe { &mut *context.walk };
    walk.py_evals += 1;
    match walk.py_state {
        STATE_WALKING => {}
        // The thread state was not found (`start`): said once, at the
        // first eval frame.
        STATE_UNKNOWN => {
            walk.py_state = STATE_DONE;
            let cause = walk.py_lost;
            return push_lost(context, cause);
        }
        _ => return true,
    }
    // SAFETY: the callback is a static function of this object, and
    // `context` outlives the calls.
    unsafe {
        bpf_loop(
            profiler_common::MAX_STACK_DEPTH as u32,
            frame_step as *mut c_void,
            context as *mut WalkContext as *mut c_void,
            0,
        );
        (*context.walk).py_lost != lost::DEPTH
    }
}

/// Stores a marker for Python frames lost to `cause`; false if the stack is full.
#[inline(always)]
fn push_lost(context: &mut WalkContext, cause: u32) -> bool {
    // SAFETY: this CPU's state.
    unsafe { (*context.walk).py_lost = cause };
    push(context, python::frame(0, cause))
}

/// Stores `entry` at the walk's next slot; false if the stack is full.
#[inline(always)]
fn push(context: &mut WalkContext, entry: u64) -> bool {
    // SAFETY: this CPU's state and scratch slot; `get_mut` checks the index.
    unsafe {
        let walk = &mut *context.walk;
        match (*context.trace).ips.get_mut(walk.len as usize) {
            Some(slot) => {
                *slot = entry;
                walk.len += 1;
                true
            }
            None => {
                walk.py_lost = lost::DEPTH;
                false
            }
        }
    }
}

/// The current thread's innermost Python frame (0 if it runs none).
#[inline(always)]
fn thread_frame(context: &mut WalkContext) -> Result<u64, u32> {
    let process = context.python;
    // SAFETY: a map value, valid during the program.
    let offsets = unsafe { &(*process).offsets };
    let tid = bpf_get_current_pid_tgid() as u32;
    let mut tstate = 0;
    if let Some(known) = PYTHON_THREADS.get_ptr(tid) {
        // SAFETY: a map value.
        let known = unsafe { *known };
        if read_u64(at(known, offsets.tstate_native_thread_id)).map(|t| t as u32) == Some(tid) {
            tstate = known;
        }
    }
    if tstate == 0 {
        // SAFETY: a map value.
        let head = read_u64(unsafe { (*process).main_interpreter }).ok_or(lost::READ_FAULT)?;
        let first = read_u64(at(head, offsets.interp_threads_head)).ok_or(lost::READ_FAULT)?;
        // SAFETY: this CPU's state.
        unsafe {
            let walk = &mut *context.walk;
            walk.py_frame = first;
            walk.target = tid as u64;
            walk.py_state = 0;
            bpf_loop(
                THREAD_SEARCH_STEPS,
                thread_step as *mut c_void,
                context as *mut WalkContext as *mut c_void,
                0,
            );
            tstate = (*context.walk).py_frame;
        }
        if tstate == 0 {
            return Err(lost::NO_THREAD);
        }
        let _ = PYTHON_THREADS.insert(tid, tstate, 0);
    }
    let mut frame = read_u64(at(tstate, offsets.tstate_frame)).ok_or(lost::READ_FAULT)?;
    if offsets.cframe_current_frame != NO_OFFSET && frame != 0 {
        frame = read_u64(at(frame, offsets.cframe_current_frame)).ok_or(lost::READ_FAULT)?;
    }
    Ok(frame)
}

/// One thread state of the search: `py_frame` is the candidate; left there
/// when it is the current thread's, else moved to the next (0: none).
#[inline(never)]
extern "C" fn thread_step(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: `context` is the walk's context; its pointers are this CPU's
    // state and a map value.
    unsafe {
        let context = &*(context as *const WalkContext);
        let walk = &mut *context.walk;
        let offsets = &(*context.python).offsets;
        let tstate = walk.py_frame;
        if tstate == 0 {
            return 1;
        }
        match read_u64(at(tstate, offsets.tstate_native_thread_id)) {
            Some(tid) if tid as u32 as u64 == walk.target => return 1,
            Some(_) => {}
            None => {
                walk.py_frame = 0;
                return 1;
            }
        }
        walk.py_frame = read_u64(at(tstate, offsets.tstate_next)).unwrap_or(0);
    }
    0
}

/// One Python frame: stores it and moves to the previous one. Returns 1
/// (stop) at the end of the eval loop's run of frames, of the chain, or
/// of the stack.
#[inline(never)]
extern "C" fn frame_step(_index: u64, context: *mut c_void) -> i64 {
    // SAFETY: as in `thread_step`.
    let context = unsafe { &mut *(context as *mut WalkContext) };
    match next_python_frame(context) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(cause) => {
            // SAFETY: this CPU's state.
            unsafe { (*context.walk).py_state = STATE_DONE };
            if cause != lost::DEPTH {
                push_lost(context, cause);
            } else {
                // SAFETY: this CPU's state.
                unsafe { (*context.walk).py_lost = lost::DEPTH };
            }
            1
        }
    }
}

/// Stores the frame at `py_frame` and moves on; `Ok(false)` when the eval
/// loop's run ended there.
#[inline(always)]
fn next_python_frame(context: &mut WalkContext) -> Result<bool, u32> {
    // SAFETY: this CPU's state and a map value.
    let (frame, offsets) = unsafe { ((*context.walk).py_frame, &(*context.python).offsets) };
    if frame == 0 {
        // SAFETY: this CPU's state.
        unsafe { (*context.walk).py_state = STATE_DONE };
        return Ok(false);
    }
    // SAFETY: this CPU's state; the helper checks the source and writes
    // the whole (constant-size) buffer.
    let walk = unsafe { &mut *context.walk };
    unsafe { bpf_probe_read_user_buf(frame as *const u8, &mut walk.py_frame_bytes) }
        .map_err(|_| lost::READ_FAULT)?;
    let previous = field_u64(&walk.py_frame_bytes, offsets.frame_previous)?;
    walk.py_frame = previous;
    let entry = if offsets.frame_is_entry == NO_OFFSET {
        // 3.12+: the shim frame an eval loop starts with ends its run.
        if field_u8(&walk.py_frame_bytes, offsets.frame_owner)? == OWNED_BY_CSTACK {
            return Ok(false);
        }
        false
    } else {
        field_u8(&walk.py_frame_bytes, offsets.frame_is_entry)? != 0
    };
    let code = field_u64(&walk.py_frame_bytes, offsets.frame_code)?;
    let instr = field_u64(&walk.py_frame_bytes, offsets.frame_instr)?;
    let start = offsets.code_read_start();
    // SAFETY: as above.
    unsafe { bpf_probe_read_user_buf(at(code, start) as *const u8, &mut walk.py_code_bytes) }
        .map_err(|_| lost::READ_FAULT)?;
    let filename = field_u64(
        &walk.py_code_bytes,
        offsets.code_filename.wrapping_sub(start),
    )?;
    let qualname = field_u64(
        &walk.py_code_bytes,
        offsets.code_qualname.wrapping_sub(start),
    )?;
    let hash = read_u64(qualname.wrapping_add(python::STR_HASH_OFFSET)).ok_or(lost::READ_FAULT)?;
    let id = python::code_id(code, filename, qualname, hash);
    let first = at(code, offsets.code_adaptive);
    let index = if instr >= first && instr - first < (NO_INDEX as u64) * 2 {
        ((instr - first) / 2) as u32
    } else {
        NO_INDEX
    };
    if !push(context, python::frame(id, index)) {
        return Err(lost::DEPTH);
    }
    // SAFETY: this CPU's state.
    unsafe { (*context.walk).py_frames += 1 };
    announce_code(code, id);
    Ok(!entry)
}

/// Tells user space about code object `code` (`id` in stacks) of the
/// current process if `PYTHON_CODES_SEEN` does not remember it.
#[inline(always)]
fn announce_code(code: u64, id: u64) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // Ids are below 2^47; the tgid's low 17 bits fill the rest.
    let key = id | ((tgid as u64) << python::CODE_ID_BITS);
    let slot = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48) as u32 & (CODES_SEEN - 1);
    let Some(seen) = PYTHON_CODES_SEEN.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: a map value; a racing writer on another CPU at worst
    // announces the code twice.
    unsafe {
        if *seen == key {
            return;
        }
        *seen = key;
    }
    // Written in place in the ring (reserve), not built on the BPF stack
    // and copied: this runs three calls deep, where the stack frames of
    // the whole chain must stay within 512 bytes.
    match crate::EVENTS.reserve::<PythonCodeEvent>(0) {
        Some(mut entry) => {
            let event = entry.as_mut_ptr();
            // SAFETY: the reserved entry holds a PythonCodeEvent.
            unsafe {
                (*event).kind = EVENT_PYTHON_CODE;
                (*event).tgid = tgid;
                (*event).code = code;
                (*event).id = id;
            }
            entry.submit(0);
            crate::bump(profiler_common::stat::PYTHON_CODES_ANNOUNCED);
        }
        None => {
            crate::bump(profiler_common::stat::EVENTS_LOST);
            // Announced again next time.
            // SAFETY: as above.
            unsafe { *seen = 0 };
        }
    }
}

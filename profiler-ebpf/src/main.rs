//! The kernel side of the profiler: a perf_event program sampling user and
//! kernel stacks on the software cpu-clock event, counting them in the kernel;
//! a `sched_switch` tracepoint program timing how long tracked threads stay
//! off CPU, by stack and state; and scheduler tracepoints that follow forked
//! children and tell user space about new processes while they are still alive.
//!
//! Every way a sample can be lost bumps a counter in `STATS`; user space
//! reports them at the end.
#![no_std]
#![no_main]

mod python;
mod unwind;

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_F_USER_STACK, BPF_NOEXIST},
    cty::c_void,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task, bpf_get_stack,
        bpf_ktime_get_ns, bpf_loop,
    },
    macros::{map, perf_event, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{PerfEventContext, RawTracePointContext, TracePointContext},
};
use profiler_common::{
    COMM_LEN, Config, EVENT_NEW_PROCESS, EVENT_UNWIND_MISS, FILTER_ALL, MAX_STACK_DEPTH,
    OFF_CPU_BLOCKED, OFF_CPU_RUNNABLE, OffCpuKey, OffCpuStart, OffCpuValue, ProcessEvent,
    SampleKey, StackTrace, stack_hash, stack_hash_finish, stack_hash_start, stack_hash_step, stat,
    unwind_end, unwind_mode,
};

const ENOENT: i32 = 2;
const E2BIG: i32 = 7;
const EFAULT: i32 = 14;
const EEXIST: i32 = 17;
const STACK_BYTES: u32 = (MAX_STACK_DEPTH * 8) as u32;

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// Tgids to sample when `Config::filter` is `FILTER_TARGETS`.
#[map]
static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// Tasks (by `task_struct` address) forked by a target or by another such
/// task, not yet seen running as a new process: the first time one is,
/// its tgid joins `TARGETS` (`is_target`). The fork program cannot read the
/// child's pid without the kernel's struct layout (BTF, which costs ~20 ms
/// to parse), and the classic tracepoint that has it in its record waits
/// for an RCU grace period when detached (~80 ms at the end of every
/// recording). A thread of a target lands here too, unused, until it exits.
#[map]
static FORKED: HashMap<u64, u8> = HashMap::with_max_entries(8192, BPF_F_NO_PREALLOC);

/// Tgids already announced to user space with `EVENT_NEW_PROCESS`.
#[map]
static KNOWN: HashMap<u32, u8> = HashMap::with_max_entries(32768, BPF_F_NO_PREALLOC);

// Hash maps are allocated on use (`BPF_F_NO_PREALLOC`): a preallocated map
// is allocated and zeroed in full at creation (~5 ms of a short recording),
// though a recording fills a few hundred entries. Kernels before 6.1 refuse
// it in perf_event programs: user space clears the flag in a copy of this
// object for them (`tracer/object_flags.rs`). OFF_CPU_START stays
// preallocated: an entry is added and removed at every context switch.

/// User and kernel stacks by hash. User space may resize it at load time.
/// `STACKS`, `COUNTS` and `OFF_CPU_COUNTS` are map set 0; the `_1` maps
/// are map set 1 (see `Config::active_set`).
#[map]
static STACKS: HashMap<u64, StackTrace> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);
#[map]
static STACKS_1: HashMap<u64, StackTrace> = HashMap::with_max_entries(16384, BPF_F_NO_PREALLOC);

/// Where `bpf_get_stack` writes before the stack is hashed (too big for the BPF stack).
#[map]
static STACK_SCRATCH: PerCpuArray<StackTrace> = PerCpuArray::with_max_entries(1, 0);

/// The user stack's hash and error while the kernel stack is taken: kept in
/// map memory, which the verifier does not track, rather than in registers,
/// where each way the user stack's walk can end (stored, none, lost) is a
/// distinct state and the kernel stack's hashing was verified again for
/// each (on_cpu_sample with the open-coded 127-step hash loop: 16 380
/// instructions verified without this map, 8 436 with it; with `bpf_loop`,
/// 1 962, and 1 433 for `on_cpu_sample_one_set`).
#[map]
static FIRST_STACK: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Sample counts aggregated in the kernel. User space may resize it at load time.
#[map]
static COUNTS: HashMap<SampleKey, u64> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);
#[map]
static COUNTS_1: HashMap<SampleKey, u64> = HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Nonzero once a process was sampled but not announced (`EVENTS_LOST` or
/// `KNOWN_FULL` counted). Memory-mapped by user space, which looks at it
/// whenever a process exits unannounced (most reads of the process records
/// on a fork-heavy system): reading `STATS` there took two bpf calls each
/// time. A plain store: the flag only ever goes from 0 to 1.
#[map]
static ANNOUNCE_LOST: Array<u64> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Tracked threads that are off CPU now, by tid. User space may resize it,
/// and seeds it with the threads already off CPU when recording starts.
#[map]
static OFF_CPU_START: HashMap<u32, OffCpuStart> = HashMap::with_max_entries(65536, 0);

/// Off-CPU time aggregated in the kernel. User space may resize it.
#[map]
static OFF_CPU_COUNTS: HashMap<OffCpuKey, OffCpuValue> =
    HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);
#[map]
static OFF_CPU_COUNTS_1: HashMap<OffCpuKey, OffCpuValue> =
    HashMap::with_max_entries(65536, BPF_F_NO_PREALLOC);

#[inline(always)]
fn stacks(set: u32) -> &'static HashMap<u64, StackTrace> {
    if set == 0 { &STACKS } else { &STACKS_1 }
}

#[inline(always)]
fn counts(set: u32) -> &'static HashMap<SampleKey, u64> {
    if set == 0 { &COUNTS } else { &COUNTS_1 }
}

#[inline(always)]
fn off_cpu_counts(set: u32) -> &'static HashMap<OffCpuKey, OffCpuValue> {
    if set == 0 {
        &OFF_CPU_COUNTS
    } else {
        &OFF_CPU_COUNTS_1
    }
}

/// The map set programs record into now.
#[inline(always)]
fn active_set() -> u32 {
    match CONFIG.get(0) {
        Some(config) => config.active_set,
        None => 0,
    }
}

/// `prev_state` bits of a task that is exiting (`X`, `Z`): it never comes back.
const STATE_DEAD: u64 = 0x10 | 0x20;
/// `prev_state` bits that mean asleep (`S D T t X Z P I`); none set (`R`, or
/// `R+` = preempted) means the task left the CPU still runnable.
const STATE_SLEEPING: u64 = 0xff;

#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; programs on one CPU do not preempt each other here.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
fn config() -> Config {
    match CONFIG.get(0) {
        Some(config) => *config,
        None => Config::default(),
    }
}

#[inline(always)]
fn send_event(kind: u32, tgid: u32) {
    if EVENTS
        .output::<ProcessEvent>(ProcessEvent { kind, tgid }, 0)
        .is_err()
    {
        bump(stat::EVENTS_LOST);
        // A lost unwind miss is only a hint lost (it is sent again).
        if kind != EVENT_UNWIND_MISS {
            announcement_lost();
        }
    }
}

/// Copies the current user (`BPF_F_USER_STACK`) or kernel stack into the
/// stacks map of map set `set` and returns `(hash, 0)`, `(0, 0)` when there is no such stack, or
/// `(0, -errno)` when it was lost (counted). `LOOP`: hash with `bpf_loop`
/// (Linux 5.17 and later), else with an open-coded loop.
#[inline(always)]
fn record_stack<C: EbpfContext, const LOOP: bool>(
    ctx: &C,
    set: u32,
    flags: u64,
    error_stat: u32,
) -> (u64, i32) {
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(0) else {
        return (0, -E2BIG);
    };
    // SAFETY: the scratch slot is this CPU's, and holds STACK_BYTES of addresses.
    let ret = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            (*scratch).ips.as_mut_ptr() as *mut c_void,
            STACK_BYTES,
            flags,
        )
    };
    if ret == -(EFAULT as i64) || ret == 0 {
        return (0, 0);
    }
    if ret < 0 {
        bump(error_stat);
        return (0, ret as i32);
    }
    let len = ret as usize / 8;
    // A full walk that ended in zeros went into memory that is not a frame
    // chain (user space drops those frames): it was not cut short.
    // SAFETY: as above; the index is in bounds.
    if len >= MAX_STACK_DEPTH && unsafe { (*scratch).ips[MAX_STACK_DEPTH - 1] } != 0 {
        bump(stat::STACKS_TRUNCATED);
    }
    store_scratch::<LOOP>(scratch, set, len, unwind_end::COMPLETE)
}

/// Stores the first `len` addresses of this CPU's scratch slot in the
/// stacks map of set `set`; `end` (an `unwind_end` cause, 0 for a
/// complete or frame-pointer stack) goes into the high half of the stored
/// `len` and into the hash. Returns what [`record_stack`] does.
#[inline(always)]
fn store_scratch<const LOOP: bool>(
    scratch: *mut StackTrace,
    set: u32,
    len: usize,
    end: u32,
) -> (u64, i32) {
    // SAFETY: this CPU's scratch slot.
    let trace = unsafe {
        (*scratch).len = len as u64 | ((end as u64) << 32);
        &*scratch
    };
    let mut hash = if LOOP {
        hash_scratch(trace, len)
    } else {
        stack_hash(&trace.ips, len)
    };
    if end != unwind_end::COMPLETE {
        hash = stack_hash_finish(hash ^ end as u64);
    }
    let stacks = stacks(set);
    if stacks.get_ptr(hash).is_none() {
        match stacks.insert(hash, trace, BPF_NOEXIST as u64) {
            Ok(()) => {}
            Err(err) if err == -EEXIST => {}
            Err(_) => {
                bump(stat::STACKS_FULL);
                return (0, -E2BIG);
            }
        }
    }
    (hash, 0)
}

/// `bpf_loop` state of [`hash_scratch`]: the stack, where the addresses
/// hashed one by one start, and the hash so far.
#[repr(C)]
struct HashLoop {
    /// This CPU's `STACK_SCRATCH` slot (the verifier keeps a pointer's type
    /// through the stack, so the callbacks need not look it up each time).
    trace: *const StackTrace,
    rest: u64,
    hash: u64,
}

/// Addresses hashed per call of [`hash_group`]: each call costs every
/// sample a little (one call per address cost ~0.3 us more per sample than
/// the open-coded loop), while the verifier checks the body once whatever
/// its size.
const HASH_GROUP: usize = 4;

/// `profiler_common::stack_hash` of the first `len` addresses of `trace`,
/// this CPU's `STACK_SCRATCH` slot. The addresses are hashed by `bpf_loop`
/// callbacks, [`HASH_GROUP`] at a time and then the last few one by one:
/// the verifier checks a callback's body once (until its states converge),
/// where an open-coded loop of up to `MAX_STACK_DEPTH` steps was walked
/// step by step, for both stacks of a sample: most of the ~7 ms that
/// verifying `on_cpu_sample` cost every recording.
#[inline(always)]
fn hash_scratch(trace: *const StackTrace, len: usize) -> u64 {
    let groups = len / HASH_GROUP;
    let mut state = HashLoop {
        trace,
        rest: (groups * HASH_GROUP) as u64,
        hash: stack_hash_start(len),
    };
    let state_ptr = &mut state as *mut HashLoop as *mut c_void;
    // SAFETY: the callbacks are static functions of this object and `state`
    // outlives the calls; bpf_loop calls each with 0..n.
    unsafe {
        bpf_loop(groups as u32, hash_group as *mut c_void, state_ptr, 0);
        bpf_loop(
            (len - groups * HASH_GROUP) as u32,
            hash_one as *mut c_void,
            state_ptr,
            0,
        );
    }
    stack_hash_finish(state.hash)
}

/// Call `index` of [`hash_scratch`]'s first loop: adds addresses
/// `index * HASH_GROUP` to `index * HASH_GROUP + HASH_GROUP - 1`, in order.
/// Returns 1 (stop) past the scratch's end, which the verifier needs to see.
#[inline(never)]
extern "C" fn hash_group(index: u64, state: *mut c_void) -> i64 {
    let state = state as *mut HashLoop;
    if index >= (MAX_STACK_DEPTH / HASH_GROUP) as u64 {
        return 1;
    }
    let first = index as usize * HASH_GROUP;
    // SAFETY: `state` is the caller's `HashLoop`, whose `trace` is this
    // CPU's scratch slot; the group is within it (checked above).
    unsafe {
        let ips = &(*(*state).trace).ips;
        let mut hash = (*state).hash;
        let mut j = 0;
        while j < HASH_GROUP {
            hash = stack_hash_step(hash, ips[first + j]);
            j += 1;
        }
        (*state).hash = hash;
    }
    0
}

/// Call `index` of [`hash_scratch`]'s second loop: adds address
/// `rest + index`, one of the last `len % HASH_GROUP`.
#[inline(never)]
extern "C" fn hash_one(index: u64, state: *mut c_void) -> i64 {
    let state = state as *mut HashLoop;
    // SAFETY: as in `hash_group`; the index is checked against the scratch's size.
    unsafe {
        let i = (*state).rest + index;
        if i >= MAX_STACK_DEPTH as u64 {
            return 1;
        }
        (*state).hash = stack_hash_step((*state).hash, (*(*state).trace).ips[i as usize]);
    }
    0
}

#[perf_event]
pub fn on_cpu_sample(ctx: PerfEventContext) -> u32 {
    cpu_sample::<_, true, true>(&ctx)
}

/// [`on_cpu_sample`] recording into map set 0 only, for `profiler record`:
/// with the set fixed, every map access has one map, where choosing the
/// set at run time makes the verifier check what follows once per set.
#[perf_event]
pub fn on_cpu_sample_one_set(ctx: PerfEventContext) -> u32 {
    cpu_sample::<_, true, false>(&ctx)
}

/// [`on_cpu_sample`] for kernels without `bpf_loop` (before 5.17), whose
/// verifier walks the stack hash's loop step by step.
#[perf_event]
pub fn on_cpu_sample_compat(ctx: PerfEventContext) -> u32 {
    cpu_sample::<_, false, true>(&ctx)
}

/// `LOOP`: hash stacks with `bpf_loop`. `SETS`: record into the map set
/// `Config::active_set` names (else set 0).
#[inline(always)]
fn cpu_sample<C: EbpfContext, const LOOP: bool, const SETS: bool>(ctx: &C) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    if tid == 0 {
        bump(stat::IDLE);
        return 0;
    }
    let config = config();
    if config.stopped != 0 {
        return 0;
    }
    // The profiler itself may be in TARGETS (to follow the fork of a `-- CMD`
    // child) but is never sampled.
    if tgid == config.self_tgid {
        return 0;
    }
    if config.filter != FILTER_ALL && !is_target(tgid) {
        return 0;
    }
    bump(stat::SAMPLES);
    announce(tgid);
    let set = if SETS { config.active_set } else { 0 };
    let key = sample_key::<_, LOOP, true>(ctx, tgid, tid, set, config.unwind);
    count(&key, set);
    // Switched meanwhile: this sample may land in a set user space is
    // reading or has read; it finds it when it reads the set again.
    if SETS && active_set() != set {
        bump(stat::FLIP_RACES);
    }
    0
}

/// Whether `tgid`, the current task's, is to be recorded (with
/// `FILTER_TARGETS`); a task forked by a target makes its process one.
#[inline(always)]
fn is_target(tgid: u32) -> bool {
    TARGETS.get_ptr(tgid).is_some() || adopt_forked(tgid)
}

/// If the current task was forked by a target and not seen since, forgets
/// its `FORKED` entry (the address may be reused) and makes its process,
/// `tgid`, a target. Returns whether it was such a task.
#[inline(always)]
fn adopt_forked(tgid: u32) -> bool {
    // SAFETY: a helper without arguments.
    let task = unsafe { bpf_get_current_task() };
    if FORKED.get_ptr(task).is_none() {
        return false;
    }
    let _ = FORKED.remove(task);
    if TARGETS.insert(tgid, 1, 0).is_err() {
        bump(stat::TARGETS_FULL);
    }
    true
}

#[inline(always)]
fn announcement_lost() {
    if let Some(flag) = ANNOUNCE_LOST.get_ptr_mut(0) {
        // SAFETY: a valid pointer into the map's only value.
        unsafe { *flag = 1 };
    }
}

/// Tells user space about a process the first time it is seen (or first since its exec).
#[inline(always)]
fn announce(tgid: u32) {
    if KNOWN.get_ptr(tgid).is_none() {
        match KNOWN.insert(tgid, 1, BPF_NOEXIST as u64) {
            Ok(()) => send_event(EVENT_NEW_PROCESS, tgid),
            Err(err) if err == -EEXIST => {}
            Err(_) => {
                bump(stat::KNOWN_FULL);
                announcement_lost();
            }
        }
    }
}

/// The current user stack, walked as `unwind` (`unwind_mode::*`) says,
/// stored as [`record_stack`] does. Unwind tables need `bpf_loop`: without
/// it (`LOOP` false) user space asks for frame pointers. `CTX_REGS`: the
/// context starts with the interrupted registers (perf_event).
#[inline(always)]
fn record_user_stack<C: EbpfContext, const LOOP: bool, const CTX_REGS: bool>(
    ctx: &C,
    set: u32,
    tgid: u32,
    unwind: u32,
) -> (u64, i32) {
    if !LOOP || unwind == unwind_mode::FP {
        return record_stack::<_, LOOP>(ctx, set, BPF_F_USER_STACK as u64, stat::USER_STACK_ERROR);
    }
    let Some(regs) = unwind::user_regs(ctx, CTX_REGS) else {
        // A kernel thread, or a task that has not been to user mode.
        return (0, 0);
    };
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(0) else {
        return (0, -E2BIG);
    };
    let Some(walked) = unwind::walk(scratch, tgid, regs, unwind) else {
        return (0, -E2BIG);
    };
    bump(stat::UNWIND_STACKS);
    add(stat::UNWIND_FRAMES_TABLE, walked.table_frames);
    add(stat::UNWIND_FRAMES_FP, walked.fp_frames);
    if !walked.process_loaded {
        bump(stat::UNWIND_PROCESS_NOT_LOADED);
    }
    if walked.py_evals != 0 {
        add(stat::PYTHON_EVAL_FRAMES, walked.py_evals);
        add(stat::PYTHON_FRAMES, walked.py_frames);
        if walked.py_lost != 0 {
            bump(stat::PYTHON_LOST_NO_THREAD - 1 + walked.py_lost);
        }
    }
    if walked.end != unwind_end::COMPLETE {
        bump(stat::UNWIND_END_NO_TABLE - 1 + walked.end);
    }
    // An address in none of the process's known mappings (a library
    // loaded since, or mappings read while the loader was at work). A
    // process without mappings is announced instead (at its first sample,
    // and again after an exec, which drops them).
    // SAFETY: a helper without arguments.
    if walked.missed && unwind::miss_allowed(tgid, unsafe { bpf_ktime_get_ns() }) {
        send_event(EVENT_UNWIND_MISS, tgid);
    }
    store_scratch::<LOOP>(scratch, set, walked.len, walked.end)
}

/// The current thread's stacks and command name (`CTX_REGS` as in [`record_user_stack`]).
#[inline(always)]
fn sample_key<C: EbpfContext, const LOOP: bool, const CTX_REGS: bool>(
    ctx: &C,
    tgid: u32,
    tid: u32,
    set: u32,
    unwind: u32,
) -> SampleKey {
    let comm = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    let (user_stack, user_error) = record_user_stack::<_, LOOP, CTX_REGS>(ctx, set, tgid, unwind);
    let Some(first) = FIRST_STACK.get_ptr_mut(0) else {
        // Cannot happen (index 0 of a per-CPU array); the kernel stack is lost.
        return SampleKey {
            tgid,
            tid,
            user_stack,
            kernel_stack: 0,
            user_error,
            kernel_error: -E2BIG,
            comm,
        };
    };
    // SAFETY: this CPU's slot; volatile so that the values are read back
    // from memory, not kept in registers.
    unsafe { core::ptr::write_volatile(first, [user_stack, user_error as i64 as u64]) };
    let (kernel_stack, kernel_error) =
        record_stack::<_, LOOP>(ctx, set, 0, stat::KERNEL_STACK_ERROR);
    // SAFETY: as above.
    let [user_stack, user_error] = unsafe { core::ptr::read_volatile(first) };
    let user_error = user_error as i64 as i32;
    SampleKey {
        tgid,
        tid,
        user_stack,
        kernel_stack,
        user_error,
        kernel_error,
        comm,
    }
}

/// `sched/sched_switch`: the current task is `prev`, leaving the CPU; `next`
/// is about to run. The classic tracepoint (not raw_tp/tp_btf) is used so
/// that kernel stacks start at `__schedule` without this program's own frames,
/// and so that no `task_struct` offsets are needed.
#[tracepoint]
pub fn on_sched_switch(ctx: TracePointContext) -> u32 {
    sched_switch::<true, true>(&ctx)
}

/// [`on_sched_switch`] recording into map set 0 only, for `profiler record`
/// (see [`on_cpu_sample_one_set`]).
#[tracepoint]
pub fn on_sched_switch_one_set(ctx: TracePointContext) -> u32 {
    sched_switch::<true, false>(&ctx)
}

/// [`on_sched_switch`] for kernels without `bpf_loop` (before 5.17).
#[tracepoint]
pub fn on_sched_switch_compat(ctx: TracePointContext) -> u32 {
    sched_switch::<false, true>(&ctx)
}

/// `LOOP` and `SETS` as in [`cpu_sample`]. Without `SETS`, every
/// `OFF_CPU_START` entry is of set 0 (user space seeds them so too).
#[inline(always)]
fn sched_switch<const LOOP: bool, const SETS: bool>(ctx: &TracePointContext) -> u32 {
    let config = config();
    if config.stopped != 0 {
        return 0;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    // Switch-in first: the cheapest test for untracked tasks is one lookup.
    // SAFETY: the offsets come from the tracepoint's format file.
    if let Ok(next) = unsafe { ctx.read_at::<u32>(config.switch_next_pid_offset as usize) }
        && let Some(start) = OFF_CPU_START.get_ptr(next)
    {
        // SAFETY: a map value; copied out before the entry is removed.
        let start = unsafe { *start };
        let _ = OFF_CPU_START.remove(next);
        let nanos = now.saturating_sub(start.start_ns);
        if nanos < config.min_block_ns {
            bump(stat::OFF_CPU_SHORT);
            add(stat::OFF_CPU_SHORT_NANOS, nanos);
        } else {
            let set = if SETS { config.active_set } else { 0 };
            let mut key = start.key;
            if SETS && start.set != set {
                // The thread left the CPU in an earlier window: its stacks
                // are in that window's set, which user space may be reading
                // or clearing. The interval goes to the active set, with its
                // stacks copied there (user space keeps the stacks of
                // threads off CPU when it clears a set).
                bump(stat::OFF_CPU_LATE);
                let (user_stack, user_error) =
                    move_stack(start.set, set, key.sample.user_stack, key.sample.user_error);
                let (kernel_stack, kernel_error) = move_stack(
                    start.set,
                    set,
                    key.sample.kernel_stack,
                    key.sample.kernel_error,
                );
                key.sample.user_stack = user_stack;
                key.sample.user_error = user_error;
                key.sample.kernel_stack = kernel_stack;
                key.sample.kernel_error = kernel_error;
            }
            add_off_cpu(&key, nanos, set);
            if SETS && active_set() != set {
                bump(stat::FLIP_RACES);
            }
        }
    }

    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    if tid == 0 || tgid == config.self_tgid {
        return 0;
    }
    if config.filter != FILTER_ALL && !is_target(tgid) {
        return 0;
    }
    // SAFETY: as above.
    let Ok(prev_state) = (unsafe { ctx.read_at::<u64>(config.switch_prev_state_offset as usize) })
    else {
        return 0;
    };
    if prev_state & STATE_DEAD != 0 {
        return 0;
    }
    bump(stat::OFF_CPU_SWITCHES);
    if config.switch_announces != 0 {
        announce(tgid);
    }
    let state = if prev_state & STATE_SLEEPING != 0 {
        OFF_CPU_BLOCKED
    } else {
        OFF_CPU_RUNNABLE
    };
    let set = if SETS { config.active_set } else { 0 };
    let start = OffCpuStart {
        key: OffCpuKey {
            sample: sample_key::<_, LOOP, false>(ctx, tgid, tid, set, config.unwind),
            state,
            reserved: 0,
        },
        start_ns: now,
        set,
        reserved: 0,
    };
    match OFF_CPU_START.insert(tid, &start, BPF_NOEXIST as u64) {
        Ok(()) => {}
        Err(err) if err == -EEXIST => {
            // The last switch-out's interval never ended: its switch-in was missed.
            bump(stat::OFF_CPU_SWITCH_IN_MISSED);
            if OFF_CPU_START.insert(tid, &start, 0).is_err() {
                bump(stat::OFF_CPU_START_FULL);
            }
        }
        Err(_) => bump(stat::OFF_CPU_START_FULL),
    }
    0
}

/// Copies stack `hash` from the stacks map of set `from` to that of set
/// `to`; returns the stack and error to record, like `record_stack`.
#[inline(always)]
fn move_stack(from: u32, to: u32, hash: u64, error: i32) -> (u64, i32) {
    if hash == 0 {
        return (hash, error);
    }
    let Some(trace) = stacks(from).get_ptr(hash) else {
        // Cannot happen while user space keeps these stacks; a visible loss if it does.
        return (0, -ENOENT);
    };
    let target = stacks(to);
    if target.get_ptr(hash).is_some() {
        return (hash, 0);
    }
    // SAFETY: a value of the stacks map, valid during this program.
    match target.insert(hash, unsafe { &*trace }, BPF_NOEXIST as u64) {
        Ok(()) => (hash, 0),
        Err(err) if err == -EEXIST => (hash, 0),
        Err(_) => {
            bump(stat::STACKS_FULL);
            (0, -E2BIG)
        }
    }
}

#[inline(always)]
fn add(index: u32, value: u64) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: as in `bump`.
        unsafe { *counter += value };
    }
}

#[inline(always)]
fn add_off_cpu(key: &OffCpuKey, nanos: u64, set: u32) {
    let off_cpu_counts = off_cpu_counts(set);
    if let Some(value) = off_cpu_counts.get_ptr_mut(key) {
        // SAFETY: the key holds the tid, and a thread switches in on one CPU
        // at a time, so no other program updates this value concurrently.
        unsafe {
            (*value).count += 1;
            (*value).nanos += nanos;
        }
        bump(stat::OFF_CPU_RECORDED);
        return;
    }
    let value = OffCpuValue { count: 1, nanos };
    match off_cpu_counts.insert(key, &value, BPF_NOEXIST as u64) {
        Ok(()) => bump(stat::OFF_CPU_RECORDED),
        Err(err) if err == -EEXIST => {
            if let Some(value) = off_cpu_counts.get_ptr_mut(key) {
                unsafe {
                    (*value).count += 1;
                    (*value).nanos += nanos;
                }
                bump(stat::OFF_CPU_RECORDED);
            }
        }
        Err(_) => bump(stat::OFF_CPU_COUNTS_FULL),
    }
}

#[inline(always)]
fn count(key: &SampleKey, set: u32) {
    let counts = counts(set);
    if let Some(value) = counts.get_ptr_mut(key) {
        // SAFETY: the key holds the tid, and a thread runs on one CPU at a time,
        // so no other program updates this value concurrently.
        unsafe { *value += 1 };
        return;
    }
    match counts.insert(key, 1, BPF_NOEXIST as u64) {
        Ok(()) => {}
        Err(err) if err == -EEXIST => {
            if let Some(value) = counts.get_ptr_mut(key) {
                unsafe { *value += 1 };
            }
        }
        Err(_) => bump(stat::COUNTS_FULL),
    }
}

/// `sched_process_fork` (raw): the current task is the parent, argument 1
/// the child's `task_struct`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn on_process_fork(ctx: RawTracePointContext) -> u32 {
    let config = config();
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let child: u64 = ctx.arg(1);
    if config.unwind != unwind_mode::FP {
        unwind::inherit(child, parent_tgid);
    }
    if config.filter == FILTER_ALL || config.follow_forks == 0 {
        return 0;
    }
    // SAFETY: a helper without arguments.
    let parent = unsafe { bpf_get_current_task() };
    if TARGETS.get_ptr(parent_tgid).is_none() && FORKED.get_ptr(parent).is_none() {
        return 0;
    }
    if FORKED.insert(child, 1, 0).is_err() {
        bump(stat::TARGETS_FULL);
    }
    // User space is not told: the child is captured when it is first sampled
    // (a wake-up per fork cost fork-heavy programs more than it gave).
    0
}

/// `sched_process_exec`: forget the process so that its next sample
/// announces it again and user space captures the new image's maps.
///
/// A raw tracepoint, like fork and exit: detaching one is immediate, where
/// each classic tracepoint's detach waits for an RCU grace period under a
/// global mutex (76 ms each here, most of the time from the end of a
/// recording to its flame graph).
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn on_process_exec(_ctx: RawTracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = KNOWN.remove(tgid);
    // The old image's mappings (user space writes the new image's).
    unwind::forget(tgid);
    0
}

/// `sched_process_exit` (raw, like exec): drop the entry a fork made for the
/// exiting task (its address may be reused), and forget an exiting process
/// so that a later process reusing its pid is announced. A followed
/// process's own `TARGETS` entry stays: the tracepoint fires before the
/// kernel tears the process's memory down, which is still the process's
/// time (a tenth of a short-lived child's); user space removes the entries
/// of processes gone (`Tracer::prune_targets`). A forked task not seen
/// running yet becomes a target here for the same reason: most children of
/// a fork-heavy program exit before their first sample.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn on_process_exit(_ctx: RawTracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    adopt_forked(tgid);
    unwind::exited();
    // The process's mappings go with its leader (also those the kernel
    // copied for a forked child that user space never wrote).
    if tid == tgid {
        unwind::forget_process(tgid);
    }
    if tid == tgid {
        let _ = KNOWN.remove(tgid);
    }
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

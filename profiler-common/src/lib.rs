//! Types shared by the eBPF programs and user space: map keys and values, the
//! config record, stat counter indices and process events. Each is `#[repr(C)]`
//! with no padding, so both sides read the same bytes; user space gets
//! `aya::Pod` impls behind the `user` feature.
#![no_std]

/// Length of a task's command name, as in the kernel (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// Deepest stack the kernel records (`PERF_MAX_STACK_DEPTH`).
pub const MAX_STACK_DEPTH: usize = 127;

/// Map names, shared so that a rename on one side cannot go unnoticed.
pub mod map_names {
    pub const CONFIG: &str = "CONFIG";
    pub const TARGETS: &str = "TARGETS";
    pub const FORKED: &str = "FORKED";
    pub const KNOWN: &str = "KNOWN";
    pub const STACKS: &str = "STACKS";
    pub const STACK_SCRATCH: &str = "STACK_SCRATCH";
    pub const COUNTS: &str = "COUNTS";
    pub const STATS: &str = "STATS";
    pub const EVENTS: &str = "EVENTS";
    pub const ANNOUNCE_LOST: &str = "ANNOUNCE_LOST";
    pub const OFF_CPU_START: &str = "OFF_CPU_START";
    pub const OFF_CPU_COUNTS: &str = "OFF_CPU_COUNTS";
    /// The second map set, used by windowed draining (`Config::active_set` 1).
    pub const STACKS_1: &str = "STACKS_1";
    pub const COUNTS_1: &str = "COUNTS_1";
    pub const OFF_CPU_COUNTS_1: &str = "OFF_CPU_COUNTS_1";
    /// Unwind tables (`--unwind auto|dwarf`).
    pub const UNWIND_ROWS: &str = "UNWIND_ROWS";
    pub const UNWIND_FILES: &str = "UNWIND_FILES";
    pub const UNWIND_PROCS: &str = "UNWIND_PROCS";
    pub const UNWIND_INHERIT: &str = "UNWIND_INHERIT";
    pub const UNWIND_MISSED: &str = "UNWIND_MISSED";
    /// CPython interpreters (`python::*`).
    pub const PYTHON_PROCS: &str = "PYTHON_PROCS";
    pub const PYTHON_THREADS: &str = "PYTHON_THREADS";
    pub const PYTHON_CODES_SEEN: &str = "PYTHON_CODES_SEEN";

    /// The stacks map of map set `set` (0 or 1).
    pub const fn stacks(set: u32) -> &'static str {
        if set == 0 { STACKS } else { STACKS_1 }
    }

    /// The on-CPU counts map of map set `set`.
    pub const fn counts(set: u32) -> &'static str {
        if set == 0 { COUNTS } else { COUNTS_1 }
    }

    /// The off-CPU counts map of map set `set`.
    pub const fn off_cpu_counts(set: u32) -> &'static str {
        if set == 0 {
            OFF_CPU_COUNTS
        } else {
            OFF_CPU_COUNTS_1
        }
    }
}

/// Map sets: the stacks, on-CPU counts and off-CPU counts maps come in two
/// copies. Programs record into the set `Config::active_set` names; user
/// space switches sets at a window boundary, then reads and clears the
/// other one while the programs go on recording.
pub const MAP_SETS: u32 = 2;

/// Program names (the function names in `profiler-ebpf`).
pub mod program_names {
    pub const ON_CPU: &str = "on_cpu_sample";
    /// `ON_CPU` recording into map set 0 only (`profiler record`).
    pub const ON_CPU_ONE_SET: &str = "on_cpu_sample_one_set";
    /// `ON_CPU` without `bpf_loop`, for kernels before 5.17.
    pub const ON_CPU_COMPAT: &str = "on_cpu_sample_compat";
    pub const FORK: &str = "on_process_fork";
    pub const EXEC: &str = "on_process_exec";
    pub const EXIT: &str = "on_process_exit";
    pub const SWITCH: &str = "on_sched_switch";
    /// `SWITCH` recording into map set 0 only (`profiler record`).
    pub const SWITCH_ONE_SET: &str = "on_sched_switch_one_set";
    /// `SWITCH` without `bpf_loop`, for kernels before 5.17.
    pub const SWITCH_COMPAT: &str = "on_sched_switch_compat";
}

/// `Config::filter` value: only tgids present in the `TARGETS` map are sampled.
pub const FILTER_TARGETS: u32 = 0;
/// `Config::filter` value: every process but the profiler itself is sampled.
pub const FILTER_ALL: u32 = 1;

/// Settings user space writes into the one-entry `CONFIG` array before attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `FILTER_TARGETS` or `FILTER_ALL`.
    pub filter: u32,
    /// The profiler's own tgid, never sampled.
    pub self_tgid: u32,
    /// Non-zero: children forked by a target become targets too.
    pub follow_forks: u32,
    /// Byte offsets of `prev_state` and `next_pid` in the `sched_switch`
    /// tracepoint record (read from tracefs, since the layout is the
    /// kernel's to change).
    pub switch_prev_state_offset: u32,
    pub switch_next_pid_offset: u32,
    /// Non-zero: the `sched_switch` program announces new processes (in
    /// off-CPU mode no cpu-clock sample does it).
    pub switch_announces: u32,
    /// Non-zero once user space stops the recording: programs still attached
    /// while they are being detached (which takes a while) record nothing, so
    /// no time after the stop is counted.
    pub stopped: u32,
    /// The map set (0 or 1) programs record into now. `profiler record`
    /// keeps 0; the agent switches it at every window boundary.
    pub active_set: u32,
    /// Off-CPU intervals shorter than this are counted in `stat::OFF_CPU_SHORT`
    /// but not recorded.
    pub min_block_ns: u64,
    /// `unwind_mode::*`: how user stacks are walked.
    pub unwind: u32,
    pub reserved: u32,
}

/// Key of the in-kernel on-CPU sample counts (`COUNTS` map).
///
/// Stacks are referred to by a 64-bit hash of their addresses (the key of the
/// `STACKS` map), not by a stack-trace-map id: such a map drops any stack
/// whose bucket is taken, and that loss grows with the number of stacks.
/// A stack of 0 with error 0 means "no such stack" (a kernel thread has no
/// user stack, a sample in user mode has no kernel stack); a non-zero error is
/// the negated errno of the failure (`-E2BIG`: the stack map was full), also
/// counted in `STATS`, and the sample is kept with its stack marked lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    pub tgid: u32,
    pub tid: u32,
    pub user_stack: u64,
    pub kernel_stack: u64,
    pub user_error: i32,
    pub kernel_error: i32,
    pub comm: [u8; COMM_LEN],
}

/// `OffCpuKey::state`: asleep (waiting for I/O, a lock, a timer...).
pub const OFF_CPU_BLOCKED: u32 = 1;
/// `OffCpuKey::state`: preempted or yielded while runnable, waiting for a CPU.
pub const OFF_CPU_RUNNABLE: u32 = 2;

/// `-ENODATA` as a stack error: the thread was already off CPU when the
/// recording started, so its stacks were never taken.
pub const STACK_ERROR_BEFORE_START: i32 = -61;

/// Key of the in-kernel off-CPU time (`OFF_CPU_COUNTS` map): the stacks and
/// state of a thread when it left the CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OffCpuKey {
    pub sample: SampleKey,
    /// `OFF_CPU_BLOCKED` or `OFF_CPU_RUNNABLE`.
    pub state: u32,
    pub reserved: u32,
}

/// Value of `OFF_CPU_COUNTS`: how often, and for how long, a thread was off
/// CPU with one key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffCpuValue {
    pub count: u64,
    pub nanos: u64,
}

/// Value of `OFF_CPU_START` (keyed by tid): a thread that is off CPU now,
/// since `start_ns` (`bpf_ktime_get_ns`, i.e. CLOCK_MONOTONIC).
///
/// The key's stacks are in the stacks map of map set `set`, the set active
/// at the switch-out. The interval is added to the set active at the
/// switch-in; when the sets were switched meanwhile, the stacks are copied
/// there first (user space keeps the stacks that entries refer to when it
/// clears a set).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffCpuStart {
    pub key: OffCpuKey,
    pub start_ns: u64,
    pub set: u32,
    pub reserved: u32,
}

/// A stack as stored in the `STACKS` map: `len` addresses, innermost first.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackTrace {
    pub len: u64,
    pub ips: [u64; MAX_STACK_DEPTH],
}

/// The hash that keys a stack in the `STACKS` map; never 0 (0 means "no stack").
/// Shared so that user space can check what the kernel stored.
///
/// The eBPF side runs the same three steps ([`stack_hash_start`], one
/// [`stack_hash_step`] per address, [`stack_hash_finish`]) from a `bpf_loop`
/// callback, which the verifier checks once rather than once per address.
#[inline(always)]
pub fn stack_hash(ips: &[u64; MAX_STACK_DEPTH], len: usize) -> u64 {
    let mut hash = stack_hash_start(len);
    let mut i = 0;
    while i < MAX_STACK_DEPTH {
        if i >= len {
            break;
        }
        hash = stack_hash_step(hash, ips[i]);
        i += 1;
    }
    stack_hash_finish(hash)
}

/// The hash of a stack of `len` addresses before any is added.
#[inline(always)]
pub fn stack_hash_start(len: usize) -> u64 {
    0xcbf2_9ce4_8422_2325 ^ len as u64
}

/// Adds the next address (innermost first) to `hash`.
#[inline(always)]
pub fn stack_hash_step(hash: u64, ip: u64) -> u64 {
    (hash ^ ip)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(31)
}

/// The final mix; never 0.
#[inline(always)]
pub fn stack_hash_finish(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    if hash == 0 { 1 } else { hash }
}

/// How user stacks are walked (`Config::unwind`).
pub mod unwind_mode {
    /// Frame pointers only (`bpf_get_stack`).
    pub const FP: u32 = 0;
    /// Unwind tables where the code's file has one, frame pointers elsewhere.
    pub const AUTO: u32 = 1;
    /// Unwind tables only: a frame in code without a table ends the stack.
    pub const DWARF: u32 = 2;
}

/// Rows the kernel's `UNWIND_ROWS` array holds by default (8 bytes each: 32 MiB).
pub const UNWIND_ROWS_DEFAULT: u32 = 4 * 1024 * 1024;
/// Files whose tables can be loaded at once (`UNWIND_FILES`).
pub const UNWIND_FILES_MAX: u32 = 4096;
/// Executable mappings with a table one process can have in `UNWIND_PROCS`.
pub const UNWIND_MAPPINGS_MAX: usize = 250;

/// `UnwindRow::kind` low nibble: how the canonical frame address (the
/// caller's stack pointer, CFA) is found at this row's instructions.
pub mod cfa {
    /// No unwind information here (a gap between FDEs): frame pointers, if allowed.
    pub const NONE: u8 = 0;
    /// The return address is undefined: this is the outermost frame (`_start`, `clone`).
    pub const END: u8 = 1;
    /// CFA = rsp + offset.
    pub const RSP: u8 = 2;
    /// CFA = rbp + offset.
    pub const RBP: u8 = 3;
    /// A PLT stub: CFA = rsp + offset, plus 8 when `(rip & 15) >= rbp_offset`
    /// (the DWARF expression GNU ld writes for `.plt`; the threshold is 11 or 10).
    pub const PLT: u8 = 4;
    /// CFA = *(rsp + offset) (a dereferencing DWARF expression).
    pub const DEREF_RSP: u8 = 5;
    /// CFA = *(rbp + offset) (gcc's realigned-stack `main`: `DW_OP_breg6 -8; DW_OP_deref`).
    pub const DEREF_RBP: u8 = 6;
    /// A signal frame (`__restore_rt`): rsp points at the `ucontext`'s
    /// signal frame; rip, rsp and rbp are read from its saved registers.
    pub const SIGNAL: u8 = 7;
    /// CFA = rsp + offset * 8: a frame too large for `RSP`'s 16 bits.
    pub const RSP_WORDS: u8 = 8;
    /// A rule the kernel cannot follow (another register, another expression).
    pub const UNSUPPORTED: u8 = 15;
}

/// `UnwindRow::kind` high nibble: where the caller's rbp is.
pub mod rbp_rule {
    /// Unchanged (not saved by this frame).
    pub const SAME: u8 = 0;
    /// Saved at CFA + `rbp_offset * 8`.
    pub const AT_CFA: u8 = 1;
    /// A rule the kernel cannot follow: rbp is taken as unknown (0) from here on.
    pub const UNSUPPORTED: u8 = 15;
}

/// One row of a file's unwind table: the rule from `pc` until the next
/// row's `pc`. A table is sorted by `pc`, with no two neighbours alike.
///
/// `pc` is the instruction's file offset (its ELF virtual address minus
/// the containing segment's `p_vaddr - p_offset`), so that the kernel gets
/// it from a runtime address with the mapping's start and file offset
/// alone. The return address is always at CFA - 8 (x86-64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnwindRow {
    pub pc: u32,
    /// Bytes added to the CFA's base register (`cfa::RSP`, `RBP`, `PLT`, `DEREF_*`).
    pub cfa_offset: u16,
    /// `cfa::*` in the low nibble, `rbp_rule::*` in the high one.
    pub kind: u8,
    /// With `rbp_rule::AT_CFA`: the saved rbp's offset from the CFA, in
    /// 8-byte words (-2: at CFA - 16). With `cfa::PLT`: the rip threshold.
    pub rbp_offset: i8,
}

impl UnwindRow {
    #[inline(always)]
    pub const fn cfa_kind(&self) -> u8 {
        self.kind & 0x0f
    }

    #[inline(always)]
    pub const fn rbp_kind(&self) -> u8 {
        self.kind >> 4
    }

    #[inline(always)]
    pub const fn make_kind(cfa: u8, rbp: u8) -> u8 {
        (cfa & 0x0f) | (rbp << 4)
    }
}

/// `UNWIND_FILES` value: where a loaded file's rows are in `UNWIND_ROWS`.
/// `rows == 0`: the slot is free or being (re)loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindFile {
    pub first_row: u32,
    pub rows: u32,
}

/// One executable mapping of a process whose file has a table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwindMapping {
    /// Runtime address range `[start, end)`.
    pub start: u64,
    pub end: u64,
    /// Subtracted from a runtime address to give the file offset the rows
    /// are keyed by (`start - file offset of the mapping`).
    pub bias: u64,
    /// Index into `UNWIND_FILES`.
    pub file: u32,
    pub reserved: u32,
}

/// `UNWIND_PROCS` value (keyed by tgid): the process's mappings with a
/// table, sorted by `start`, not overlapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnwindProcess {
    pub len: u32,
    pub reserved: u32,
    pub mappings: [UnwindMapping; UNWIND_MAPPINGS_MAX],
}

/// Why a user stack walked with tables ended before its outermost frame,
/// stored in the high 32 bits of `StackTrace::len` (the low 32 are the count).
pub mod unwind_end {
    /// Reached the outermost frame, or a return address of 0.
    pub const COMPLETE: u32 = 0;
    /// No table for a frame's code, and no frame pointer to follow (or `--unwind dwarf`).
    pub const NO_TABLE: u32 = 1;
    /// The process's mappings were not loaded yet (its first samples).
    pub const NOT_LOADED: u32 = 2;
    /// A rule the kernel cannot follow.
    pub const UNSUPPORTED: u32 = 3;
    /// Reading the stack failed (a page not present, or garbage addresses).
    pub const READ_FAULT: u32 = 4;
    /// `MAX_STACK_DEPTH` frames.
    pub const DEPTH: u32 = 5;
    /// The stack pointer went backwards: the walk went astray.
    pub const BAD_FRAME: u32 = 6;
}

/// Indices of the per-CPU counters in the `STATS` array.
pub mod stat {
    /// Samples taken for a tracked process (counted or not).
    pub const SAMPLES: u32 = 0;
    /// Samples that hit the idle task; not profiled, counted for the expected-sample arithmetic.
    pub const IDLE: u32 = 1;
    /// User stack lost: `bpf_get_stack` failed.
    pub const USER_STACK_ERROR: u32 = 2;
    /// Kernel stack lost: `bpf_get_stack` failed.
    pub const KERNEL_STACK_ERROR: u32 = 3;
    /// A stack lost: the `STACKS` map was full.
    pub const STACKS_FULL: u32 = 4;
    /// Stacks of `MAX_STACK_DEPTH` frames, which may have been cut at that depth.
    pub const STACKS_TRUNCATED: u32 = 5;
    /// Sample dropped: the `COUNTS` map was full.
    pub const COUNTS_FULL: u32 = 6;
    /// A process event could not be sent: the ring buffer was full.
    pub const EVENTS_LOST: u32 = 7;
    /// A forked child could not be followed: the `FORKED` or `TARGETS` map
    /// was full.
    pub const TARGETS_FULL: u32 = 8;
    /// A new process could not be recorded as seen: the `KNOWN` map was full.
    pub const KNOWN_FULL: u32 = 9;
    /// Tracked threads leaving the CPU (switch-outs seen).
    pub const OFF_CPU_SWITCHES: u32 = 10;
    /// A switch-out not recorded: the `OFF_CPU_START` map was full (its
    /// off-CPU interval is lost).
    pub const OFF_CPU_START_FULL: u32 = 11;
    /// An off-CPU interval dropped: the `OFF_CPU_COUNTS` map was full.
    pub const OFF_CPU_COUNTS_FULL: u32 = 12;
    /// Off-CPU intervals shorter than `Config::min_block_ns` (not recorded).
    pub const OFF_CPU_SHORT: u32 = 13;
    /// Nanoseconds in those short intervals.
    pub const OFF_CPU_SHORT_NANOS: u32 = 14;
    /// Samples and off-CPU intervals whose map set was switched while they
    /// were being recorded (they land in the set just switched away from, after or
    /// while user space reads it; user space finds them when it reads that
    /// set again, and counts them as between windows).
    pub const FLIP_RACES: u32 = 15;
    /// Off-CPU intervals of threads that left the CPU in an earlier window
    /// (their stacks were copied from that window's set to the active one).
    pub const OFF_CPU_LATE: u32 = 16;
    /// Off-CPU intervals recorded into a counts map (what user space
    /// should find in the maps, in all).
    pub const OFF_CPU_RECORDED: u32 = 17;
    /// A tracked thread left the CPU with its previous switch-out still
    /// open: its switch-in was not seen, because the tracepoint program was
    /// skipped on that CPU (the kernel runs one BPF program at a time per
    /// CPU, and a BPF map syscall counts as one). That interval is lost.
    pub const OFF_CPU_SWITCH_IN_MISSED: u32 = 18;
    /// User stacks walked with unwind tables (`--unwind auto|dwarf`).
    pub const UNWIND_STACKS: u32 = 19;
    /// Frames unwound with a table row, and with a frame pointer.
    pub const UNWIND_FRAMES_TABLE: u32 = 20;
    pub const UNWIND_FRAMES_FP: u32 = 21;
    /// Stacks that ended early, by `unwind_end` cause (index = 21 + cause).
    pub const UNWIND_END_NO_TABLE: u32 = 22;
    pub const UNWIND_END_NOT_LOADED: u32 = 23;
    pub const UNWIND_END_UNSUPPORTED: u32 = 24;
    pub const UNWIND_END_READ_FAULT: u32 = 25;
    pub const UNWIND_END_DEPTH: u32 = 26;
    pub const UNWIND_END_BAD_FRAME: u32 = 27;
    /// Samples of processes whose mappings were not loaded yet (walked with frame pointers).
    pub const UNWIND_PROCESS_NOT_LOADED: u32 = 28;
    /// Native frames in a CPython interpreter's eval loop (each stands for
    /// a run of Python frames).
    pub const PYTHON_EVAL_FRAMES: u32 = 29;
    /// Python frames stored.
    pub const PYTHON_FRAMES: u32 = 30;
    /// Python frames lost, by `python::lost` cause (index = 30 + cause).
    pub const PYTHON_LOST_NO_THREAD: u32 = 31;
    pub const PYTHON_LOST_READ_FAULT: u32 = 32;
    pub const PYTHON_LOST_DEPTH: u32 = 33;
    /// New code objects announced to user space (`EVENT_PYTHON_CODE`).
    pub const PYTHON_CODES_ANNOUNCED: u32 = 34;
    /// Number of counters.
    pub const COUNT: u32 = 35;
}

/// `ProcessEvent::kind`: first sample of a process (or first since its exec).
/// (Kind 2, a fork, is no longer sent.)
pub const EVENT_NEW_PROCESS: u32 = 1;
/// `ProcessEvent::kind`: a user stack walked with tables reached an address
/// in none of the process's known mappings (a library just loaded, or a
/// snapshot taken while the loader was still mapping): user space reads its
/// mappings again. At most one per process every `UNWIND_MISS_INTERVAL_NS`.
pub const EVENT_UNWIND_MISS: u32 = 3;
/// The least time between two `EVENT_UNWIND_MISS` of one process (JIT code
/// misses at every sample).
pub const UNWIND_MISS_INTERVAL_NS: u64 = 200_000_000;

/// `PythonCodeEvent::kind`: a Python frame of a code object the kernel had
/// not seen in that process (as far as `PYTHON_CODES_SEEN` remembers):
/// user space reads its name while the process lives.
pub const EVENT_PYTHON_CODE: u32 = 4;

/// Sent over the `EVENTS` ring buffer so that user space can capture a
/// process's memory maps while it is alive (it may exit before the profile is
/// symbolized).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessEvent {
    pub kind: u32,
    pub tgid: u32,
}

/// `EVENTS` record of kind `EVENT_PYTHON_CODE` (its first 8 bytes are a
/// [`ProcessEvent`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PythonCodeEvent {
    pub kind: u32,
    pub tgid: u32,
    /// The code object's address, and its id in stacks (`python::code_id`).
    pub code: u64,
    pub id: u64,
}

/// CPython frames in user stacks: where the walk meets a native frame in the
/// interpreter's eval loop (`_PyEval_EvalFrameDefault`), it stores the
/// Python frames that loop runs (the thread's `_PyInterpreterFrame` chain,
/// down to the loop's entry frame), then the eval frame itself.
pub mod python {
    /// A Python frame in a user stack: this bit, the instruction's index
    /// in the code object (15 bits, code units from `co_code_adaptive`;
    /// [`NO_INDEX`] when unknown) at bit 48, the code object's [`code_id`]
    /// in the low 48 bits. Native user addresses are below 2^47; unwind-stop
    /// markers (`0xffff_ffff_ffff_ffXX`) have an address no code object has.
    pub const FRAME_TAG: u64 = 1 << 63;
    pub const INDEX_SHIFT: u32 = 48;
    pub const INDEX_MASK: u64 = 0x7fff;
    pub const ADDRESS_MASK: u64 = (1 << 48) - 1;
    /// Index of an instruction that could not be placed.
    pub const NO_INDEX: u32 = 0x7fff;

    /// The stack entry of a Python frame running code `id` at instruction `index`.
    #[inline(always)]
    pub const fn frame(code: u64, index: u32) -> u64 {
        FRAME_TAG | ((index as u64 & INDEX_MASK) << INDEX_SHIFT) | (code & ADDRESS_MASK)
    }

    /// `(code id, index)` of a Python frame's stack entry, or `None` for any
    /// other entry. A code id of 0 is a [`lost`] marker (the index is its cause).
    #[inline(always)]
    pub const fn parse(entry: u64) -> Option<(u64, u32)> {
        if entry & FRAME_TAG == 0 || entry & !0xff == UNWIND_END_MARKER {
            return None;
        }
        Some((
            entry & ADDRESS_MASK,
            ((entry >> INDEX_SHIFT) & INDEX_MASK) as u32,
        ))
    }

    /// Why Python frames that should be there are not: stored as a frame
    /// with code address 0 and the cause as its index.
    pub mod lost {
        /// No thread state of the sampled thread in the interpreter's list.
        pub const NO_THREAD: u32 = 1;
        /// A frame or thread state could not be read.
        pub const READ_FAULT: u32 = 2;
        /// The stack was full.
        pub const DEPTH: u32 = 3;
    }

    /// The unwind-stop markers' prefix (user space's `raw::UNWIND_END_MARKER`).
    const UNWIND_END_MARKER: u64 = 0xffff_ffff_ffff_ff00;

    /// Eval-loop address ranges a process can have (the function and its
    /// `.cold` part).
    pub const EVAL_RANGES: usize = 2;

    /// An offset that does not apply to this version.
    pub const NO_OFFSET: u16 = u16::MAX;

    /// `_PyInterpreterFrame::owner` of the frame an eval loop pushes at its
    /// entry (`FRAME_OWNED_BY_CSTACK`, 3.12+).
    pub const OWNED_BY_CSTACK: u8 = 3;

    /// Byte offsets of the interpreter structures the kernel reads.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Offsets {
        /// `PyInterpreterState::threads.head`.
        pub interp_threads_head: u16,
        /// `PyThreadState::next`, `native_thread_id`.
        pub tstate_next: u16,
        pub tstate_native_thread_id: u16,
        /// `PyThreadState::cframe` (3.11, 3.12) or `current_frame` (3.13+).
        pub tstate_frame: u16,
        /// `_PyCFrame::current_frame` (3.11, 3.12); `NO_OFFSET` when
        /// `tstate_frame` is the frame itself.
        pub cframe_current_frame: u16,
        /// `_PyInterpreterFrame::f_code` (`f_executable` in 3.13+), `previous`,
        /// `prev_instr` (`instr_ptr` in 3.13+), `owner`.
        pub frame_code: u16,
        pub frame_previous: u16,
        pub frame_instr: u16,
        pub frame_owner: u16,
        /// `_PyInterpreterFrame::is_entry` (3.11); `NO_OFFSET` from 3.12,
        /// where an entry frame of owner `OWNED_BY_CSTACK` marks a loop's start.
        pub frame_is_entry: u16,
        /// `PyCodeObject::co_code_adaptive`: instruction indices count from it.
        pub code_adaptive: u16,
        /// `PY_VERSION_HEX >> 16` (0x030b for 3.11).
        pub version: u16,
        /// `PyCodeObject::co_filename`, `co_qualname`: their addresses make
        /// a code object's [`code_id`] with its own.
        pub code_filename: u16,
        pub code_qualname: u16,
        pub reserved: [u16; 2],
    }

    /// Bytes of a `_PyInterpreterFrame` the kernel reads in one go (every
    /// `frame_*` field must be in them), and of a code object from its
    /// first name field (`code_filename` and `code_qualname` within them):
    /// one read each rather than one per field, ~40% of the cost per
    /// Python frame (~60 ns a read).
    pub const FRAME_READ: usize = 80;
    pub const CODE_READ: usize = 32;

    impl Offsets {
        /// Whether the kernel can read these fields with [`FRAME_READ`]
        /// and [`CODE_READ`] bytes.
        pub const fn fit_kernel_reads(&self) -> bool {
            const fn frame(o: u16, size: usize) -> bool {
                o == NO_OFFSET || (o as usize) + size <= FRAME_READ
            }
            let (lo, hi) = if self.code_filename < self.code_qualname {
                (self.code_filename, self.code_qualname)
            } else {
                (self.code_qualname, self.code_filename)
            };
            frame(self.frame_code, 8)
                && frame(self.frame_previous, 8)
                && frame(self.frame_instr, 8)
                && frame(self.frame_owner, 1)
                && frame(self.frame_is_entry, 1)
                && (hi - lo) as usize + 8 <= CODE_READ
        }

        /// Where the kernel's code read starts (the lower name field).
        pub const fn code_read_start(&self) -> u16 {
            if self.code_filename < self.code_qualname {
                self.code_filename
            } else {
                self.code_qualname
            }
        }
    }

    /// `PyASCIIObject::hash` (3.11-3.13): a str's cached hash, part of a
    /// code id. Strings are freed and allocated again at one address as
    /// code objects are (3.11's generated functions: names and code both
    /// at the addresses of the last ones); their hashes tell them apart
    /// (names are hashed when they are stored in a namespace).
    pub const STR_HASH_OFFSET: u64 = 24;

    /// Bits of a code id ([`code_id`]).
    pub const CODE_ID_BITS: u32 = 47;

    /// What a Python frame's stack entry holds for its code object: a hash
    /// of the object's address, those of its file and qualified names, and
    /// the qualified name's own hash (`qualname_hash`, at [`STR_HASH_OFFSET`]),
    /// so that a code object freed and another allocated at its address
    /// (`exec`, generated functions, namedtuples) are two ids, each named
    /// apart, rather than the second taking the first one's name. Never 0
    /// (a [`lost`] marker), below 2^47 (never an unwind-stop marker).
    #[inline(always)]
    pub const fn code_id(code: u64, filename: u64, qualname: u64, qualname_hash: u64) -> u64 {
        let mut h = code ^ 0x9e37_79b9_7f4a_7c15;
        h = (h ^ filename).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h = (h ^ (h >> 29) ^ qualname).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h = (h ^ (h >> 31) ^ qualname_hash).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 32;
        let id = h & ((1 << CODE_ID_BITS) - 1);
        if id == 0 { 1 } else { id }
    }

    /// `PYTHON_PROCS` value (keyed by tgid): a process running CPython.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Process {
        /// Where the main interpreter's address is (`_PyRuntime.interpreters.main`;
        /// `interpreters.head` is the newest one, a subinterpreter's if any).
        pub main_interpreter: u64,
        /// The eval loop's code, `[start, end)` pairs (unused ones are 0, 0).
        pub eval: [[u64; 2]; EVAL_RANGES],
        pub offsets: Offsets,
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), hold only integers and arrays of integers, and
    // have no padding (checked by the size assertions below).
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::SampleKey {}
    unsafe impl aya::Pod for super::ProcessEvent {}
    unsafe impl aya::Pod for super::StackTrace {}
    unsafe impl aya::Pod for super::OffCpuKey {}
    unsafe impl aya::Pod for super::OffCpuValue {}
    unsafe impl aya::Pod for super::OffCpuStart {}
    unsafe impl aya::Pod for super::UnwindRow {}
    unsafe impl aya::Pod for super::UnwindFile {}
    unsafe impl aya::Pod for super::UnwindMapping {}
    unsafe impl aya::Pod for super::UnwindProcess {}
    unsafe impl aya::Pod for super::PythonCodeEvent {}
    unsafe impl aya::Pod for super::python::Process {}
    unsafe impl aya::Pod for super::python::Offsets {}
}

const _: () = assert!(core::mem::size_of::<Config>() == 48);
const _: () = assert!(core::mem::size_of::<OffCpuKey>() == core::mem::size_of::<SampleKey>() + 8);
const _: () = assert!(core::mem::size_of::<OffCpuValue>() == 16);
const _: () =
    assert!(core::mem::size_of::<OffCpuStart>() == core::mem::size_of::<OffCpuKey>() + 16);
const _: () = assert!(core::mem::size_of::<SampleKey>() == 32 + COMM_LEN);
const _: () = assert!(core::mem::size_of::<StackTrace>() == 8 * (1 + MAX_STACK_DEPTH));
const _: () = assert!(core::mem::size_of::<ProcessEvent>() == 8);
const _: () = assert!(core::mem::size_of::<UnwindRow>() == 8);
const _: () = assert!(core::mem::size_of::<UnwindFile>() == 8);
const _: () = assert!(core::mem::size_of::<UnwindMapping>() == 32);
const _: () = assert!(core::mem::size_of::<UnwindProcess>() == 8 + 32 * UNWIND_MAPPINGS_MAX);
const _: () = assert!(core::mem::size_of::<PythonCodeEvent>() == 24);
const _: () = assert!(core::mem::size_of::<python::Offsets>() == 32);
const _: () = assert!(core::mem::size_of::<python::Process>() == 72);

//! What a drain of the kernel maps yields: counts with their raw stacks (plain
//! addresses) and the kernel's failure counters. Plain data, so aggregation and
//! symbolization are tested without root.

use profiler_common::stat;

use crate::profile::ThreadState;

/// One side (user or kernel) of a sampled stack.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RawStack {
    /// Innermost address first, as the kernel records them.
    Frames(Vec<u64>),
    /// There is no such stack (a kernel thread has no user stack; a sample in
    /// user mode has no kernel stack).
    Absent,
    /// The stack was lost; `errno` says why (7 = E2BIG: the stack map was
    /// full; otherwise what `bpf_get_stack` returned).
    Lost { errno: i32 },
}

impl RawStack {
    /// The frames of a stack as the kernel walked it, innermost first, up to
    /// the first return address that is 0. A frame-pointer walk that
    /// enters code without frame pointers reads whatever the frame register
    /// points at; on zeroed memory it goes on storing 0s (up to the depth
    /// limit: a third of a fork-heavy program's samples here ended in
    /// chains of `[unknown]+0x0`). No code is at 0, and nothing read after
    /// such a frame can be trusted. The first address is the sampled
    /// instruction itself and is kept whatever it is.
    pub fn walked(addresses: &[u64]) -> RawStack {
        let len = match addresses.iter().skip(1).position(|&a| a == 0) {
            Some(zero) => zero + 1,
            None => addresses.len(),
        };
        RawStack::Frames(addresses[..len].to_vec())
    }
}

/// A user stack walked with unwind tables that ended before its outermost
/// frame ends in this pseudo-address plus the `unwind_end` cause, which the
/// outputs show as a frame naming why. No user code is there (it is in the
/// kernel's half of the address space).
pub const UNWIND_END_MARKER: u64 = 0xffff_ffff_ffff_ff00;

/// The `unwind_end` cause a user frame's address stands for, if it is a marker.
pub fn unwind_end_of(addr: u64) -> Option<u32> {
    (addr & !0xff == UNWIND_END_MARKER && addr != UNWIND_END_MARKER).then_some((addr & 0xff) as u32)
}

/// The frame name of an `unwind_end` cause.
pub fn unwind_end_name(end: u32) -> &'static str {
    use profiler_common::unwind_end;
    match end {
        unwind_end::NO_TABLE => "[unwind stopped: code without unwind table or frame pointer]",
        unwind_end::NOT_LOADED => "[unwind stopped: process tables not loaded yet]",
        unwind_end::UNSUPPORTED => "[unwind stopped: unsupported unwind rule]",
        unwind_end::READ_FAULT => "[unwind stopped: stack not readable]",
        unwind_end::DEPTH => "[unwind stopped: depth limit]",
        unwind_end::BAD_FRAME => "[unwind stopped: bad frame]",
        _ => "[unwind stopped]",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawSample {
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub user_stack: RawStack,
    pub kernel_stack: RawStack,
    /// On CPU: samples. Off CPU: times the thread blocked with these stacks.
    pub count: u64,
    /// Off CPU: nanoseconds blocked (on-CPU time is `count` periods).
    pub nanos: u64,
    pub state: ThreadState,
}

/// The kernel's counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub samples: u64,
    pub idle: u64,
    pub user_stack_errors: u64,
    pub kernel_stack_errors: u64,
    pub stacks_full: u64,
    pub stacks_truncated: u64,
    pub counts_map_full: u64,
    pub events_lost: u64,
    pub targets_full: u64,
    pub known_full: u64,
    pub off_cpu_switches: u64,
    pub off_cpu_start_full: u64,
    pub off_cpu_counts_full: u64,
    /// Off-CPU intervals shorter than `--min-block`, and their total time.
    pub off_cpu_short: u64,
    pub off_cpu_short_nanos: u64,
    /// Samples (and off-CPU intervals) recorded while the map sets were
    /// being switched: they land in the set just switched away from and are
    /// read with the next window (windowed draining only).
    pub flip_races: u64,
    /// Off-CPU intervals of threads that left the CPU in an earlier window
    /// (added to the window they came back in).
    pub off_cpu_late: u64,
    /// Off-CPU intervals recorded into the counts maps.
    pub off_cpu_recorded: u64,
    /// Off-CPU intervals lost because their switch-in was not seen.
    pub off_cpu_switch_in_missed: u64,
    /// User stacks walked with unwind tables, and their frames found with
    /// a table row and with a frame pointer.
    pub unwind_stacks: u64,
    pub unwind_frames_table: u64,
    pub unwind_frames_fp: u64,
    /// Stacks walked with tables that ended early, by `unwind_end` cause
    /// (index `cause - 1`: no table, not loaded, unsupported rule, read
    /// fault, depth, bad frame).
    pub unwind_ends: [u64; 6],
    /// Samples of processes whose mappings were not loaded yet.
    pub unwind_process_not_loaded: u64,
    /// CPython eval-loop frames met, and Python frames stored.
    pub python_eval_frames: u64,
    pub python_frames: u64,
    /// Stacks whose Python frames were lost, by `python::lost` cause
    /// (index `cause - 1`: thread state not found, read fault, depth).
    pub python_lost: [u64; 3],
    /// Code objects announced to user space.
    pub python_codes_announced: u64,
}

impl KernelStats {
    pub fn from_counters(values: &[u64; stat::COUNT as usize]) -> Self {
        let at = |i: u32| values[i as usize];
        KernelStats {
            samples: at(stat::SAMPLES),
            idle: at(stat::IDLE),
            user_stack_errors: at(stat::USER_STACK_ERROR),
            kernel_stack_errors: at(stat::KERNEL_STACK_ERROR),
            stacks_full: at(stat::STACKS_FULL),
            stacks_truncated: at(stat::STACKS_TRUNCATED),
            counts_map_full: at(stat::COUNTS_FULL),
            events_lost: at(stat::EVENTS_LOST),
            targets_full: at(stat::TARGETS_FULL),
            known_full: at(stat::KNOWN_FULL),
            off_cpu_switches: at(stat::OFF_CPU_SWITCHES),
            off_cpu_start_full: at(stat::OFF_CPU_START_FULL),
            off_cpu_counts_full: at(stat::OFF_CPU_COUNTS_FULL),
            off_cpu_short: at(stat::OFF_CPU_SHORT),
            off_cpu_short_nanos: at(stat::OFF_CPU_SHORT_NANOS),
            flip_races: at(stat::FLIP_RACES),
            off_cpu_late: at(stat::OFF_CPU_LATE),
            off_cpu_recorded: at(stat::OFF_CPU_RECORDED),
            off_cpu_switch_in_missed: at(stat::OFF_CPU_SWITCH_IN_MISSED),
            unwind_stacks: at(stat::UNWIND_STACKS),
            unwind_frames_table: at(stat::UNWIND_FRAMES_TABLE),
            unwind_frames_fp: at(stat::UNWIND_FRAMES_FP),
            unwind_ends: std::array::from_fn(|i| at(stat::UNWIND_END_NO_TABLE + i as u32)),
            unwind_process_not_loaded: at(stat::UNWIND_PROCESS_NOT_LOADED),
            python_eval_frames: at(stat::PYTHON_EVAL_FRAMES),
            python_frames: at(stat::PYTHON_FRAMES),
            python_lost: std::array::from_fn(|i| at(stat::PYTHON_LOST_NO_THREAD + i as u32)),
            python_codes_announced: at(stat::PYTHON_CODES_ANNOUNCED),
        }
    }

    /// User stacks walked with tables that were cut short, by cause; zero
    /// counts left out. (Not losses: the sample is kept, with the frames
    /// found and a marker frame naming the cause.)
    pub fn unwind_cuts(&self) -> Vec<(&'static str, u64)> {
        [
            "no unwind table or frame pointer (JIT code, stripped files; with --unwind dwarf, any code without a table)",
            "the process's tables not loaded yet (its first samples)",
            "an unwind rule the kernel cannot follow",
            "stack memory not readable (a page not present, or a wrong frame)",
            "127 frames",
            "a frame below the one before it (the walk went astray)",
        ]
        .into_iter()
        .zip(self.unwind_ends)
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    /// Stacks whose Python frames were lost, by cause; zero counts left
    /// out. (The sample is kept, with a marker frame naming the cause.)
    pub fn python_losses(&self) -> Vec<(&'static str, u64)> {
        [
            "the thread's state not found in the interpreter's thread list",
            "interpreter memory not readable",
            "127 frames",
        ]
        .into_iter()
        .zip(self.python_lost)
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    /// Every failure, by cause, for the end-of-run report; zero counts left out.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        [
            (
                "samples dropped: in-kernel counts map full, or no kernel memory for a new entry",
                self.counts_map_full,
            ),
            (
                "stacks lost: stack map full, or no kernel memory for a new entry (raise --stack-map-size)",
                self.stacks_full,
            ),
            (
                "user stacks lost: bpf_get_stack failed",
                self.user_stack_errors,
            ),
            (
                "kernel stacks lost: bpf_get_stack failed",
                self.kernel_stack_errors,
            ),
            (
                "stacks cut at 127 frames (the kernel's limit)",
                self.stacks_truncated,
            ),
            ("process events lost: ring buffer full", self.events_lost),
            (
                "forked children not followed: targets map full",
                self.targets_full,
            ),
            (
                "new processes not announced: known map full",
                self.known_full,
            ),
            (
                "off-CPU intervals lost: too many threads off CPU at once (start map full)",
                self.off_cpu_start_full,
            ),
            (
                "off-CPU intervals dropped: in-kernel off-CPU map full",
                self.off_cpu_counts_full,
            ),
            (
                "off-CPU intervals lost: switch-in not seen (another BPF program or a BPF map syscall was running on that CPU)",
                self.off_cpu_switch_in_missed,
            ),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawProfile {
    pub samples: Vec<RawSample>,
    pub stats: KernelStats,
}

/// Off-CPU time left out of a profile, and from how many threads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HiddenTime {
    pub threads: u64,
    pub nanos: u64,
}

/// Takes out the time threads spent off CPU since before the recording
/// (or the agent) started: its stack was never taken, so it says only
/// "idle", and system-wide it is most of the profile (every idle daemon
/// thread for the whole recording), which buries the blocking stacks the
/// off-CPU profile is for. libbpf-tools' offcputime leaves it out too.
/// Wall mode keeps it, since there each thread must add up to the
/// recording's length.
pub fn hide_before_start(samples: &mut Vec<RawSample>) -> HiddenTime {
    let mut hidden = HiddenTime::default();
    samples.retain(|sample| {
        let before = matches!(
            sample.user_stack,
            RawStack::Lost { errno } if errno == -profiler_common::STACK_ERROR_BEFORE_START
        );
        if before {
            hidden.threads += 1;
            hidden.nanos += sample.nanos;
        }
        !before
    });
    hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walked_stack_ends_at_its_first_zero_return_address() {
        assert_eq!(
            RawStack::walked(&[0x10, 0x20, 0, 0x30, 0]),
            RawStack::Frames(vec![0x10, 0x20])
        );
        assert_eq!(
            RawStack::walked(&[0x10, 0x20, 0x30]),
            RawStack::Frames(vec![0x10, 0x20, 0x30])
        );
        // The sampled instruction is kept even at 0 (a call through a null
        // pointer); the walk after it is not.
        assert_eq!(RawStack::walked(&[0, 0, 0x30]), RawStack::Frames(vec![0]));
        assert_eq!(RawStack::walked(&[]), RawStack::Frames(vec![]));
    }
}

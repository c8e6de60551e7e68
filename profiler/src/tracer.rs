//! The eBPF layer: loads the embedded object, attaches the cpu-clock sampler
//! on every online CPU and the process tracepoints, and drains the kernel maps
//! into a [`RawProfile`]. Nothing here symbolizes; everything after the drain
//! works on plain data and is tested without root.

mod announce_flag;
mod batch;
mod kernel_features;
mod object_flags;
mod windowed;

use std::{fs, io, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, Map, MapData, PerCpuArray, RingBuf},
    programs::{
        PerfEvent, RawTracePoint, TracePoint,
        perf_event::{
            PerfEventConfig, PerfEventLinkId, PerfEventScope, SamplePolicy, SoftwareEvent,
        },
        raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId,
    },
    util::online_cpus,
};
use profiler_common::{
    COMM_LEN, Config, FILTER_ALL, FILTER_TARGETS, OFF_CPU_BLOCKED, OFF_CPU_RUNNABLE, OffCpuKey,
    OffCpuStart, OffCpuValue, STACK_ERROR_BEFORE_START, SampleKey, StackTrace, UNWIND_FILES_MAX,
    UNWIND_ROWS_DEFAULT, map_names, program_names, stat, unwind_mode,
};

/// Processes whose mappings the kernel holds for unwinding (`UNWIND_PROCS`).
const UNWIND_PROCS_MAX: u32 = 8192;

pub use kernel_features::KernelFeatures;
pub use windowed::WindowDrain;

/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

use crate::{
    pid_alive::process_exists,
    profile::ThreadState,
    raw::{KernelStats, RawProfile, RawSample},
};

/// The eBPF object built by `cargo xtask build-ebpf` (committed, so building the
/// profiler needs no eBPF toolchain).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!("../ebpf/profiler.bpf.o");

const TRACEFS: &str = "/sys/kernel/tracing";
/// TARGETS and FORKED (as declared in the eBPF object) when targets are traced.
const TARGETS_ENTRIES: u32 = 8192;
/// KNOWN (as declared in the eBPF object) when every process is traced.
const KNOWN_ENTRIES: u32 = 32768;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Every process but the profiler.
    All,
    /// These tgids (more can be added while running).
    Pids(Vec<u32>),
}

#[derive(Clone, Debug)]
pub struct TracerOptions {
    /// Sample stacks on the cpu-clock event (on-CPU profiling).
    pub on_cpu: bool,
    /// Time how long tracked threads stay off CPU (the `sched_switch` program).
    pub off_cpu: bool,
    /// Off-CPU intervals shorter than this are counted, not recorded.
    pub min_block_ns: u64,
    pub frequency_hz: u64,
    pub targets: Targets,
    /// Children forked by a target are sampled too.
    pub follow_forks: bool,
    pub stack_map_entries: u32,
    pub counts_map_entries: u32,
    /// Threads that can be off CPU at once (`OFF_CPU_START`).
    pub off_cpu_threads: u32,
    /// Two map sets, switched at each [`Tracer::next_window`] (the agent).
    /// Without it the second set's maps hold one entry each and
    /// [`Tracer::drain`] reads the first set.
    pub windowed: bool,
    /// How user stacks are walked.
    pub unwind: UnwindMode,
    /// Rows of unwind tables the kernel holds at once (8 bytes each).
    pub unwind_rows: u32,
    /// Walk CPython frames (with unwind tables only; `--no-python` turns it off).
    pub python: bool,
}

/// How user stacks are walked (`--unwind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnwindMode {
    /// Frame pointers only, as the kernel's own walker does.
    Fp,
    /// Unwind tables (`.eh_frame`) where a file has them, frame pointers elsewhere.
    #[default]
    Auto,
    /// Unwind tables only: a frame in code without one ends the stack.
    Dwarf,
}

impl UnwindMode {
    fn kernel_value(self) -> u32 {
        match self {
            UnwindMode::Fp => unwind_mode::FP,
            UnwindMode::Auto => unwind_mode::AUTO,
            UnwindMode::Dwarf => unwind_mode::DWARF,
        }
    }

    /// Whether unwind tables are loaded at all.
    pub fn uses_tables(self) -> bool {
        self != UnwindMode::Fp
    }
}

impl Default for TracerOptions {
    fn default() -> Self {
        TracerOptions {
            on_cpu: true,
            off_cpu: false,
            min_block_ns: 0,
            off_cpu_threads: 65536,
            frequency_hz: 99,
            targets: Targets::All,
            follow_forks: true,
            stack_map_entries: 16384,
            counts_map_entries: 65536,
            windowed: false,
            unwind: UnwindMode::Auto,
            unwind_rows: UNWIND_ROWS_DEFAULT,
            python: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error(
        "permission denied ({action}): run as root (sudo), or give the binary CAP_BPF, CAP_PERFMON \
         and CAP_SYS_PTRACE (setcap cap_bpf,cap_perfmon,cap_sys_ptrace=ep $(which profiler))"
    )]
    PermissionDenied { action: String },
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): the profiler needs a kernel \
         built with CONFIG_DEBUG_INFO_BTF=y (5.8 or later)"
    )]
    NoBtf,
    #[error(
        "cannot open the cpu-clock perf event on CPU {cpu}: {source}. The kernel needs \
         CONFIG_PERF_EVENTS; in a container, perf_event_open may be blocked by seccomp"
    )]
    PerfEvent { cpu: u32, source: io::Error },
    #[error("cannot {action}: {message}")]
    Ebpf { action: String, message: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
}

/// The object's program `name` as a `T` (every name comes from
/// `program_names`, so a missing one is a build error of the object).
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, TracerError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .expect("program in the object")
        .try_into()
        .map_err(|e| ebpf_error(name, e))
}

fn ebpf_error(action: &str, err: impl std::fmt::Display + std::fmt::Debug) -> TracerError {
    let message = format!("{err}");
    let debug = format!("{err:?}");
    if std::env::var_os("PROFILER_VERIFIED").is_some() {
        eprintln!("{action}: {message}");
    }
    if debug.contains("PermissionDenied")
        || debug.contains("EPERM")
        || message.contains("Operation not permitted")
    {
        TracerError::PermissionDenied {
            action: action.to_string(),
        }
    } else {
        TracerError::Ebpf {
            action: action.to_string(),
            message: format!("{message} ({debug})"),
        }
    }
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Whether this process may load the programs: root, CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
fn has_privileges() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return true;
    };
    let Some(caps) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
    else {
        return true;
    };
    let has = |cap: u32| caps & (1 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// Mounts tracefs when it is not mounted (attaching tracepoints needs it).
fn ensure_tracefs() -> Result<(), TracerError> {
    if Path::new(TRACEFS).join("events").exists()
        || Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(());
    }
    let ret = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::PermissionDenied {
            return Err(TracerError::PermissionDenied {
                action: "mounting tracefs".into(),
            });
        }
        return Err(TracerError::Read {
            path: format!("{TRACEFS} (mount tracefs)"),
            source: err,
        });
    }
    Ok(())
}

/// Offset of `field` in the record of tracepoint `sched/event`, from its format file.
fn sched_field_offset(event: &str, field: &str) -> Result<u32, TracerError> {
    let candidates = [TRACEFS, "/sys/kernel/debug/tracing"];
    let mut last_err = None;
    for root in candidates {
        let path = format!("{root}/events/sched/{event}/format");
        match fs::read_to_string(&path) {
            Ok(text) => {
                return parse_field_offset(&text, field).ok_or_else(|| TracerError::Ebpf {
                    action: format!("find {field} in the {event} format"),
                    message: format!("no such field in {path}"),
                });
            }
            Err(source) => last_err = Some(TracerError::Read { path, source }),
        }
    }
    Err(last_err.expect("at least one candidate"))
}

/// Parses `field:pid_t child_pid;\toffset:44;\tsize:4;...` lines of a tracepoint format file.
pub fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let line = line.trim();
        let decl = line.strip_prefix("field:")?.split(';').next()?;
        if decl.split_whitespace().last()? != field {
            return None;
        }
        let offset = line.split("offset:").nth(1)?.split(';').next()?;
        offset.trim().parse().ok()
    })
}

/// The highest sampling frequency the kernel allows.
pub fn max_sample_rate() -> Option<u64> {
    fs::read_to_string("/proc/sys/kernel/perf_event_max_sample_rate")
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub struct Tracer {
    ebpf: Ebpf,
    options: TracerOptions,
    /// The on-CPU and `sched_switch` programs loaded: with or without
    /// `bpf_loop`, for one map set or two.
    on_cpu_program: &'static str,
    switch_program: &'static str,
    perf_links: Vec<PerfEventLinkId>,
    tracepoint_links: Vec<(&'static str, TracePointLinkId)>,
    raw_tracepoint_links: Vec<(&'static str, RawTracePointLinkId)>,
    /// Classic tracepoints being detached in the background (see `stop`).
    detaching: Option<std::thread::JoinHandle<()>>,
    /// When sampling stopped (CLOCK_MONOTONIC): threads still off CPU then
    /// are counted up to this instant.
    end_ns: Option<u64>,
    /// Windowed draining: the active map set and what was read of each set.
    windows: windowed::Windows,
    /// `ANNOUNCE_LOST`, memory-mapped (`None`: read `STATS` instead).
    announce_flag: Option<announce_flag::AnnounceFlag>,
    /// User stacks are walked with unwind tables.
    unwind_tables: bool,
}

/// CLOCK_MONOTONIC in nanoseconds, the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Tracer {
    /// Loads the programs, configures them and starts sampling.
    pub fn start(options: TracerOptions) -> Result<Tracer, TracerError> {
        if !has_privileges() {
            return Err(TracerError::PermissionDenied {
                action: "starting: not root, and no CAP_BPF+CAP_PERFMON".into(),
            });
        }
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(TracerError::NoBtf);
        }
        // Only the off-CPU program is a classic tracepoint, which needs tracefs.
        let (prev_state_offset, next_pid_offset) = if options.off_cpu {
            ensure_tracefs()?;
            (
                sched_field_offset("sched_switch", "prev_state")?,
                sched_field_offset("sched_switch", "next_pid")?,
            )
        } else {
            (0, 0)
        };

        // The second map set costs nothing unless windows are drained, nor
        // do the off-CPU maps unless off-CPU time is traced: hash maps are
        // preallocated, and in CPU mode these were 16 MiB of the ~40 MiB the
        // kernel zeroed at load (~4 ms of a short recording's CPU).
        let second = |entries: u32| if options.windowed { entries } else { 1 };
        let off_cpu = |entries: u32| if options.off_cpu { entries } else { 1 };
        // Every hash map bucket is initialized at creation (~6 ns each here,
        // with a cond_resched per bucket), so maps a mode does not use get
        // one entry. With targets, only targets are announced, so KNOWN
        // needs no more room than TARGETS.
        let all = options.targets == Targets::All;
        let (targets_entries, known_entries) = if all {
            (1, KNOWN_ENTRIES)
        } else {
            (TARGETS_ENTRIES, TARGETS_ENTRIES)
        };
        let features = KernelFeatures::current();
        // Walking with tables needs `bpf_loop` (the programs without it
        // walk frame pointers) and `bpf_task_pt_regs` (5.15).
        let unwind = if features.bpf_loop {
            options.unwind
        } else {
            UnwindMode::Fp
        };
        let tables = unwind.uses_tables();
        let mut loader = EbpfLoader::without_btf();
        // The object's hash maps are allocated on use, which kernels before
        // 6.1 refuse in perf_event programs (see `object_flags`).
        let object = if features.no_prealloc {
            std::borrow::Cow::Borrowed(EBPF_OBJECT)
        } else {
            object_flags::without_map_flags(EBPF_OBJECT, object_flags::BPF_F_NO_PREALLOC)
                .ok_or_else(|| TracerError::Ebpf {
                    action: "prepare the eBPF object for this kernel".into(),
                    message: "no maps section in the embedded object".into(),
                })?
        };
        // No CO-RE relocations to apply (the programs read only tracepoint
        // records, whose offsets come from tracefs), so the kernel's BTF need
        // not be parsed: ~20 ms of a short recording's CPU. `EbpfLoader::new`
        // parses it even when `.btf(None)` follows; `without_btf` is added by
        // the vendored aya (vendor/README.md).
        let mut ebpf = loader
            .map_max_entries(map_names::STACKS, options.stack_map_entries)
            .map_max_entries(map_names::COUNTS, options.counts_map_entries)
            .map_max_entries(
                map_names::OFF_CPU_COUNTS,
                off_cpu(options.counts_map_entries),
            )
            .map_max_entries(map_names::STACKS_1, second(options.stack_map_entries))
            .map_max_entries(map_names::COUNTS_1, second(options.counts_map_entries))
            .map_max_entries(
                map_names::OFF_CPU_COUNTS_1,
                off_cpu(second(options.counts_map_entries)),
            )
            .map_max_entries(map_names::OFF_CPU_START, off_cpu(options.off_cpu_threads))
            .map_max_entries(map_names::TARGETS, targets_entries)
            .map_max_entries(map_names::FORKED, targets_entries)
            .map_max_entries(map_names::KNOWN, known_entries)
            // An array is allocated in full at creation: only when used.
            .map_max_entries(
                map_names::UNWIND_ROWS,
                if tables {
                    options.unwind_rows.max(1)
                } else {
                    1
                },
            )
            .map_max_entries(
                map_names::UNWIND_FILES,
                if tables { UNWIND_FILES_MAX } else { 1 },
            )
            // 8 KiB a process: preallocated (before 6.1), a few hundred.
            .map_max_entries(
                map_names::UNWIND_PROCS,
                match (tables, features.no_prealloc, all) {
                    (false, _, _) => 1,
                    (true, true, _) => UNWIND_PROCS_MAX,
                    (true, false, true) => 1024,
                    (true, false, false) => 256,
                },
            )
            .map_max_entries(
                map_names::UNWIND_INHERIT,
                if tables { TARGETS_ENTRIES } else { 1 },
            )
            // An LRU map is preallocated whatever its flags.
            .map_max_entries(map_names::UNWIND_MISSED, if tables { 4096 } else { 1 })
            .load(&object)
            .map_err(|e| ebpf_error("load the eBPF object", e))?;

        let config = Config {
            filter: if all { FILTER_ALL } else { FILTER_TARGETS },
            self_tgid: std::process::id(),
            follow_forks: options.follow_forks as u32,
            switch_prev_state_offset: prev_state_offset,
            switch_next_pid_offset: next_pid_offset,
            switch_announces: (options.off_cpu && !options.on_cpu) as u32,
            stopped: 0,
            active_set: 0,
            min_block_ns: options.min_block_ns,
            unwind: unwind.kernel_value(),
            reserved: 0,
        };
        let mut config_map: Array<_, Config> =
            Array::try_from(ebpf.map_mut(map_names::CONFIG).unwrap())
                .map_err(|e| ebpf_error("open the CONFIG map", e))?;
        config_map
            .set(0, config, 0)
            .map_err(|e| ebpf_error("write the CONFIG map", e))?;

        if features.no_prealloc && options.on_cpu | options.off_cpu {
            let cpus = online_cpus().map_err(|(what, source)| TracerError::Read {
                path: what.to_string(),
                source,
            })?;
            let mut sets = Vec::new();
            for (name, map) in ebpf.maps_mut() {
                let wanted =
                    name == map_names::STACKS || (options.windowed && name == map_names::STACKS_1);
                if wanted {
                    sets.push(
                        HashMap::<_, u64, StackTrace>::try_from(map)
                            .map_err(|e| ebpf_error("open the STACKS map", e))?,
                    );
                }
            }
            let mut sets: Vec<_> = sets.iter_mut().collect();
            kernel_features::warm_stack_caches(&mut sets, &cpus).map_err(|source| {
                TracerError::Read {
                    path: "this thread's CPU affinity".into(),
                    source,
                }
            })?;
        }

        let announce_flag = ebpf
            .map(map_names::ANNOUNCE_LOST)
            .and_then(announce_flag::AnnounceFlag::of);
        let windowed = options.windowed;
        let mut tracer = Tracer {
            ebpf,
            options,
            // Without windows only map set 0 is used: the programs that
            // know it have less to verify.
            on_cpu_program: match (features.bpf_loop, windowed) {
                (false, _) => program_names::ON_CPU_COMPAT,
                (true, false) => program_names::ON_CPU_ONE_SET,
                (true, true) => program_names::ON_CPU,
            },
            switch_program: match (features.bpf_loop, windowed) {
                (false, _) => program_names::SWITCH_COMPAT,
                (true, false) => program_names::SWITCH_ONE_SET,
                (true, true) => program_names::SWITCH,
            },
            perf_links: Vec::new(),
            tracepoint_links: Vec::new(),
            raw_tracepoint_links: Vec::new(),
            detaching: None,
            end_ns: None,
            windows: windowed::Windows::default(),
            announce_flag,
            unwind_tables: tables,
        };
        if let Targets::Pids(pids) = tracer.options.targets.clone() {
            for pid in pids {
                tracer.add_target(pid)?;
            }
        }

        // Fork, exec and exit are raw tracepoints, whose detach does not
        // wait for an RCU grace period (76 ms each here); sched_switch reads
        // its record's fields at offsets from tracefs.
        let mut tracepoints = Vec::new();
        let mut raw_tracepoints = vec![
            (program_names::EXEC, "sched_process_exec"),
            (program_names::EXIT, "sched_process_exit"),
        ];
        // The fork program only marks the children of targets: system-wide,
        // or without following forks, it would return at once on every fork
        // of the machine, after costing its verification at every start.
        // It also hands a parent's unwind mappings to its forked children.
        if (!all && tracer.options.follow_forks) || tables {
            raw_tracepoints.push((program_names::FORK, "sched_process_fork"));
        }
        if tracer.options.off_cpu {
            tracepoints.push((tracer.switch_program, "sched", "sched_switch"));
        }
        // Every program is loaded (verified) before any is attached, so that
        // off-CPU and on-CPU accounting start together, and as close as can be
        // to the moment `start` returns, which is when the recording's
        // duration starts.
        for &(name, _, _) in &tracepoints {
            program::<TracePoint>(&mut tracer.ebpf, name)?
                .load()
                .map_err(|e| ebpf_error(&format!("load {name}"), e))?;
        }
        for &(name, _) in &raw_tracepoints {
            program::<RawTracePoint>(&mut tracer.ebpf, name)?
                .load()
                .map_err(|e| ebpf_error(&format!("load {name}"), e))?;
        }
        if tracer.options.on_cpu {
            let program = program::<PerfEvent>(&mut tracer.ebpf, tracer.on_cpu_program)?;
            program
                .load()
                .map_err(|e| ebpf_error("load the perf_event program", e))?;
            // A development aid: what the verifier had to walk.
            if std::env::var_os("PROFILER_VERIFIED").is_some()
                && let Ok(info) = program.info()
            {
                eprintln!(
                    "{}: {:?} instructions verified",
                    tracer.on_cpu_program,
                    info.verified_instruction_count()
                );
            }
        }
        for (name, category, event) in tracepoints {
            let program = program::<TracePoint>(&mut tracer.ebpf, name)?;
            let link = program.attach(category, event).map_err(|e| {
                ebpf_error(&format!("attach to the {category}/{event} tracepoint"), e)
            })?;
            tracer.tracepoint_links.push((name, link));
        }
        for (name, event) in raw_tracepoints {
            let link = program::<RawTracePoint>(&mut tracer.ebpf, name)?
                .attach(event)
                .map_err(|e| ebpf_error(&format!("attach to the {event} raw tracepoint"), e))?;
            tracer.raw_tracepoint_links.push((name, link));
        }
        if tracer.options.on_cpu {
            tracer.attach_perf_events()?;
        }
        if tracer.options.off_cpu {
            tracer.seed_off_cpu();
        }
        Ok(tracer)
    }

    /// Opens the cpu-clock event on every online CPU, with the loaded program.
    fn attach_perf_events(&mut self) -> Result<(), TracerError> {
        let frequency_hz = self.options.frequency_hz;
        let program = program::<PerfEvent>(&mut self.ebpf, self.on_cpu_program)?;
        let cpus = online_cpus().map_err(|(what, source)| TracerError::Read {
            path: what.to_string(),
            source,
        })?;
        for cpu in cpus {
            let link = program
                .attach(
                    PerfEventConfig::Software(SoftwareEvent::CpuClock),
                    PerfEventScope::AllProcessesOneCpu { cpu },
                    SamplePolicy::Frequency(frequency_hz),
                    false,
                )
                .map_err(|e| {
                    let debug = format!("{e:?}");
                    if debug.contains("PermissionDenied") {
                        TracerError::PermissionDenied {
                            action: "opening perf events".into(),
                        }
                    } else {
                        TracerError::PerfEvent {
                            cpu,
                            source: io::Error::other(format!("{e}")),
                        }
                    }
                })?;
            self.perf_links.push(link);
        }
        Ok(())
    }

    /// Puts the tracked threads that are off CPU now into `OFF_CPU_START`:
    /// their switch-out happened before the program was attached, so without
    /// this their time until they next run would be lost. Their stacks were
    /// never taken; they show as "off CPU since before the recording".
    fn seed_off_cpu(&mut self) {
        let tgids = match &self.options.targets {
            Targets::All => crate::threads::all_processes(),
            Targets::Pids(pids) => pids.clone(),
        };
        let now = monotonic_ns();
        let self_tgid = std::process::id();
        let Ok(mut start) = HashMap::<_, u32, OffCpuStart>::try_from(
            self.ebpf.map_mut(map_names::OFF_CPU_START).unwrap(),
        ) else {
            return;
        };
        for tgid in tgids.into_iter().filter(|&t| t != self_tgid) {
            for thread in crate::threads::threads_of(tgid) {
                if thread.is_exiting() {
                    continue;
                }
                let mut comm = [0u8; COMM_LEN];
                let bytes = thread.comm.as_bytes();
                let len = bytes.len().min(COMM_LEN - 1);
                comm[..len].copy_from_slice(&bytes[..len]);
                let value = OffCpuStart {
                    key: OffCpuKey {
                        sample: SampleKey {
                            tgid,
                            tid: thread.tid,
                            user_stack: 0,
                            kernel_stack: 0,
                            user_error: STACK_ERROR_BEFORE_START,
                            kernel_error: 0,
                            comm,
                        },
                        state: if thread.is_runnable() {
                            OFF_CPU_RUNNABLE
                        } else {
                            OFF_CPU_BLOCKED
                        },
                        reserved: 0,
                    },
                    start_ns: now,
                    set: 0,
                    reserved: 0,
                };
                // NOEXIST: a switch-out recorded since attaching has the real stacks. A thread
                // running now is overwritten by its next switch-out.
                let _ = start.insert(thread.tid, value, BPF_NOEXIST);
            }
        }
    }

    /// Starts sampling one more process.
    pub fn add_target(&mut self, pid: u32) -> Result<(), TracerError> {
        let mut targets: HashMap<_, u32, u8> =
            HashMap::try_from(self.ebpf.map_mut(map_names::TARGETS).unwrap())
                .map_err(|e| ebpf_error("open the TARGETS map", e))?;
        targets
            .insert(pid, 1, 0)
            .map_err(|e| ebpf_error("add a target pid", e))
    }

    /// Stops sampling a process (its already-followed children stay).
    pub fn remove_target(&mut self, pid: u32) -> Result<(), TracerError> {
        let mut targets: HashMap<_, u32, u8> =
            HashMap::try_from(self.ebpf.map_mut(map_names::TARGETS).unwrap())
                .map_err(|e| ebpf_error("open the TARGETS map", e))?;
        targets
            .remove(&pid)
            .map_err(|e| ebpf_error("remove a target pid", e))
    }

    /// Removes the targets whose process (or thread) is gone, and returns
    /// how many. The kernel keeps a followed process's entry past its exit
    /// tracepoint so that its memory teardown is still sampled; without this
    /// a fork-heavy command (`-- make -j`) would fill the map (8192 entries)
    /// with processes long gone, and the next children would not be followed.
    /// A zombie keeps its entry until reaped.
    pub fn prune_targets(&mut self) -> Result<usize, TracerError> {
        // One batch read, not a next-key call per entry: a fork-heavy
        // command leaves ~1 500 exited children a second here.
        let gone: Vec<u32> = self
            .entries::<u32, u8>(map_names::TARGETS, 1024)?
            .into_iter()
            .map(|(pid, _)| pid)
            .filter(|&pid| !process_exists(pid))
            .collect();
        self.delete_keys::<u32, u8>(map_names::TARGETS, &gone)?;
        Ok(gone.len())
    }

    /// The unwind-table maps, for the unwind manager (`None` when stacks
    /// are walked with frame pointers, or when taken already).
    pub fn take_unwind_maps(&mut self) -> Option<crate::unwind::KernelMaps> {
        if !self.unwind_tables {
            return None;
        }
        crate::unwind::KernelMaps::take(&mut self.ebpf)
    }

    /// The Python interpreters' map, for [`crate::python::Pythons`] (`None`
    /// when Python frames are off, or stacks are walked with frame pointers:
    /// only the table walker walks Python frames).
    pub fn take_python_map(&mut self) -> Option<crate::python::KernelPythonMap> {
        if !self.options.python || !self.unwind_tables {
            return None;
        }
        crate::python::KernelPythonMap::take(&mut self.ebpf)
    }

    /// How user stacks are walked (frame pointers where the kernel cannot use tables).
    pub fn unwind_mode(&self) -> UnwindMode {
        if self.unwind_tables {
            self.options.unwind
        } else {
            UnwindMode::Fp
        }
    }

    /// The ring buffer of process events, for the process manager to poll.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        RingBuf::try_from(self.ebpf.take_map(map_names::EVENTS)?).ok()
    }

    /// Stops sampling: detaches every program. The maps stay readable.
    pub fn stop(&mut self) {
        if self.end_ns.is_some() {
            return;
        }
        self.end_ns = Some(monotonic_ns());
        // Detaching takes a while (about 0.2 s here); the programs see this
        // flag at once and record nothing more.
        if let Ok(mut config_map) =
            Array::<_, Config>::try_from(self.ebpf.map_mut(map_names::CONFIG).unwrap())
            && let Ok(mut config) = config_map.get(&0, 0)
        {
            config.stopped = 1;
            let _ = config_map.set(0, config, 0);
        }
        if let Some(Ok(program)) = self
            .ebpf
            .program_mut(self.on_cpu_program)
            .map(<&mut PerfEvent>::try_from)
        {
            for link in self.perf_links.drain(..) {
                let _ = program.detach(link);
            }
        }
        // A classic tracepoint's detach waits for an RCU grace period (about
        // 80 ms each here): it runs on another thread while the maps are
        // drained and the outputs written, and `Drop` waits for it.
        let mut owned = Vec::new();
        for (name, link) in self.tracepoint_links.drain(..) {
            if let Some(Ok(program)) = self.ebpf.program_mut(name).map(<&mut TracePoint>::try_from)
                && let Ok(link) = program.take_link(link)
            {
                owned.push(link);
            }
        }
        if !owned.is_empty() {
            self.detaching = Some(std::thread::spawn(move || drop(owned)));
        }
        for (name, link) in self.raw_tracepoint_links.drain(..) {
            if let Some(Ok(program)) = self
                .ebpf
                .program_mut(name)
                .map(<&mut RawTracePoint>::try_from)
            {
                let _ = program.detach(link);
            }
        }
    }

    pub fn stats(&self) -> Result<KernelStats, TracerError> {
        let mut values = [0u64; stat::COUNT as usize];
        for (index, value) in values.iter_mut().enumerate() {
            *value = self.stat(index as u32)?;
        }
        Ok(KernelStats::from_counters(&values))
    }

    /// Nonzero once a process was sampled but not announced: the ring
    /// buffer was full, or `KNOWN` was. Asked by the process table at a read
    /// of the process records in which a process exited unannounced (most
    /// reads, on a fork-heavy system), so read from the memory-mapped flag;
    /// where it could not be mapped, the two counters (two bpf calls).
    pub fn announcements_lost(&self) -> Result<u64, TracerError> {
        if let Some(flag) = &self.announce_flag {
            return Ok(flag.is_set() as u64);
        }
        Ok(self.stat(stat::EVENTS_LOST)? + self.stat(stat::KNOWN_FULL)?)
    }

    /// Counter `index` of `STATS`, summed over the CPUs.
    fn stat(&self, index: u32) -> Result<u64, TracerError> {
        let stats: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map(map_names::STATS).unwrap())
                .map_err(|e| ebpf_error("open the STATS map", e))?;
        let per_cpu = stats
            .get(&index, 0)
            .map_err(|e| ebpf_error("read the STATS map", e))?;
        Ok(per_cpu.iter().sum())
    }

    /// Every entry of the hash map `name`, read in batches of `chunk`
    /// where the kernel can (see [`batch`]), else one by one.
    fn entries<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &str,
        chunk: usize,
    ) -> Result<Vec<(K, V)>, TracerError> {
        let mut entries = Vec::new();
        self.for_each_entry(name, chunk, |key: &K, value: &V| {
            entries.push((*key, *value))
        })?;
        Ok(entries)
    }

    /// As [`Self::entries`], handing each entry to `visit` in place of a
    /// copy: for maps of large values.
    fn for_each_entry<K: aya::Pod, V: aya::Pod>(
        &self,
        name: &str,
        chunk: usize,
        mut visit: impl FnMut(&K, &V),
    ) -> Result<(), TracerError> {
        let map = self.ebpf.map(name).ok_or_else(|| TracerError::Ebpf {
            action: format!("open the {name} map"),
            message: "no such map in the eBPF object".into(),
        })?;
        // aya checks the key and value sizes against the map's: the batch
        // call relies on them to size its buffers.
        let typed: HashMap<_, K, V> =
            HashMap::try_from(map).map_err(|e| ebpf_error(&format!("open the {name} map"), e))?;
        if let Map::HashMap(data) = map {
            use std::os::fd::AsFd;
            // SAFETY: `typed` above checked the key and value sizes.
            let batched = unsafe {
                batch::for_each_chunk::<K, V>(data.fd().as_fd(), chunk, |keys, values| {
                    keys.iter().zip(values).for_each(|(k, v)| visit(k, v))
                })
            }
            .map_err(|e| TracerError::Ebpf {
                action: format!("read the {name} map"),
                message: e.to_string(),
            })?;
            if batched {
                return Ok(());
            }
        }
        for entry in typed.iter() {
            let (key, value) = entry.map_err(|e| ebpf_error(&format!("read the {name} map"), e))?;
            visit(&key, &value);
        }
        Ok(())
    }

    /// Deletes `keys` from the hash map `name` (values of type `V`), in one
    /// batch where the kernel can (see [`batch`]), else one by one. A key
    /// already gone is fine.
    fn delete_keys<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &str,
        keys: &[K],
    ) -> Result<(), TracerError> {
        let open = |e| ebpf_error(&format!("open the {name} map"), e);
        let map = self.ebpf.map(name).ok_or_else(|| TracerError::Ebpf {
            action: format!("open the {name} map"),
            message: "no such map in the eBPF object".into(),
        })?;
        // aya checks the key size, which the batch call relies on.
        HashMap::<_, K, V>::try_from(map).map_err(open)?;
        if let Map::HashMap(data) = map {
            use std::os::fd::AsFd;
            // SAFETY: the key size was checked above.
            if let Ok(true) = unsafe { batch::delete_all(data.fd().as_fd(), keys) } {
                return Ok(());
            }
        }
        let mut typed: HashMap<_, K, V> =
            HashMap::try_from(self.ebpf.map_mut(name).unwrap()).map_err(open)?;
        for key in keys {
            let _ = typed.remove(key);
        }
        Ok(())
    }

    /// Reads every count and its stacks.
    pub fn drain(&self) -> Result<RawProfile, TracerError> {
        let stacks: HashMap<_, u64, StackTrace> =
            HashMap::try_from(self.ebpf.map(map_names::STACKS).unwrap())
                .map_err(|e| ebpf_error("open the STACKS map", e))?;
        // Every stored stack is some count's (but for failed count inserts):
        // read them all at once rather than one lookup each.
        let mut stack_cache = std::collections::HashMap::new();
        self.for_each_entry(map_names::STACKS, 64, |&hash: &u64, trace: &StackTrace| {
            // Hash 0 means "no stack" in a count's key (`windowed::raw_stack`).
            if hash != 0 {
                stack_cache.insert((hash, 0), windowed::walked(trace));
            }
        })?;
        let mut read_stack =
            |hash: u64, error: i32| windowed::raw_stack(&stacks, &mut stack_cache, hash, error);
        let mut samples = Vec::new();
        let mut raw_sample =
            |key: &SampleKey, count: u64, nanos: u64, state: ThreadState| RawSample {
                tgid: key.tgid,
                tid: key.tid,
                comm: comm_to_string(&key.comm),
                user_stack: read_stack(key.user_stack, key.user_error),
                kernel_stack: read_stack(key.kernel_stack, key.kernel_error),
                count,
                nanos,
                state,
            };
        if self.options.on_cpu {
            for (key, count) in self.entries::<SampleKey, u64>(map_names::COUNTS, 1024)? {
                samples.push(raw_sample(&key, count, 0, ThreadState::OnCpu));
            }
        }
        if self.options.off_cpu {
            let off_counts =
                self.entries::<OffCpuKey, OffCpuValue>(map_names::OFF_CPU_COUNTS, 1024)?;
            for (key, value) in off_counts {
                samples.push(raw_sample(
                    &key.sample,
                    value.count,
                    value.nanos,
                    off_cpu_state(key.state),
                ));
            }
            // Threads still off CPU when sampling stopped: their time so far.
            let end = self.end_ns.unwrap_or_else(monotonic_ns);
            let start: HashMap<_, u32, OffCpuStart> =
                HashMap::try_from(self.ebpf.map(map_names::OFF_CPU_START).unwrap())
                    .map_err(|e| ebpf_error("open the OFF_CPU_START map", e))?;
            for entry in start.iter() {
                let (_, value) = entry.map_err(|e| ebpf_error("read the OFF_CPU_START map", e))?;
                let nanos = end.saturating_sub(value.start_ns);
                if nanos >= self.options.min_block_ns && nanos > 0 {
                    samples.push(raw_sample(
                        &value.key.sample,
                        1,
                        nanos,
                        off_cpu_state(value.key.state),
                    ));
                }
            }
        }
        Ok(RawProfile {
            samples,
            stats: self.stats()?,
        })
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(detaching) = self.detaching.take() {
            let _ = detaching.join();
        }
    }
}

fn off_cpu_state(state: u32) -> ThreadState {
    if state == OFF_CPU_RUNNABLE {
        ThreadState::Runnable
    } else {
        ThreadState::Blocked
    }
}

fn comm_to_string(comm: &[u8; COMM_LEN]) -> String {
    let len = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_field_offsets_in_a_tracepoint_format() {
        let format = "name: sched_process_fork\nID: 312\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
            \tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
            \tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_field_offset(format, "child_pid"), Some(44));
        assert_eq!(parse_field_offset(format, "parent_pid"), Some(24));
        assert_eq!(parse_field_offset(format, "pid"), None);
    }

    #[test]
    fn comm_stops_at_nul() {
        let mut comm = [0u8; COMM_LEN];
        comm[..4].copy_from_slice(b"bash");
        assert_eq!(comm_to_string(&comm), "bash");
        assert_eq!(comm_to_string(&[b'x'; COMM_LEN]), "x".repeat(COMM_LEN));
    }
}

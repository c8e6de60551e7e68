//! The agent's self-observability: counters and gauges updated by the
//! sampler thread and the delivery task, rendered in the Prometheus text
//! exposition format (version 0.0.4) by hand: a few dozen lines of
//! `# HELP`/`# TYPE`/value, with no need for a metrics crate.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::raw::KernelStats;

/// Everything `/metrics` shows. Shared (`Arc`) between the threads; every
/// field is a relaxed atomic.
#[derive(Debug, Default)]
pub struct Metrics {
    /// The kernel's counters, as of the last window (cumulative).
    pub kernel: KernelCounters,
    pub windows_written: AtomicU64,
    pub profiles_written: AtomicU64,
    pub store_errors: AtomicU64,
    pub store_bytes: AtomicU64,
    pub retention_removed: AtomicU64,
    /// Samples found in a map set after it was read (recorded during a
    /// switch), given to the next window.
    pub samples_between_windows: AtomicU64,
    pub off_cpu_between_windows: AtomicU64,
    /// Off-CPU time of threads asleep since before the agent started, left
    /// out because its stack is unknown.
    pub off_cpu_before_start_nanos: AtomicU64,
    /// Unique stacks (samples after aggregation) of the last window.
    pub last_window_stacks: AtomicU64,
    /// Stacks folded into the overflow marker because of `max_stacks`, and
    /// the samples they held.
    pub stacks_over_cap: AtomicU64,
    pub samples_over_cap: AtomicU64,
    /// Fill of the counts and stacks maps at the last window, in entries,
    /// and their sizes.
    pub counts_map_entries: AtomicU64,
    pub counts_map_capacity: AtomicU64,
    pub stacks_map_entries: AtomicU64,
    pub stacks_map_capacity: AtomicU64,
    pub symbol_cache_hits: AtomicU64,
    pub symbol_cache_misses: AtomicU64,
    pub symbol_cache_entries: AtomicU64,
    pub symbol_cache_evicted: AtomicU64,
    /// Files the symbolizer keeps mapped and parsed, and those it let go.
    pub symbol_files_held: AtomicU64,
    pub symbol_files_released: AtomicU64,
    /// Windows after which every symbol file was let go because the agent's
    /// RSS was above `memory_target`.
    pub memory_target_releases: AtomicU64,
    pub processes_cached: AtomicU64,
    pub processes_evicted: AtomicU64,
    /// Processes whose maps the kernel's records keep (no /proc read).
    pub processes_followed: AtomicU64,
    /// Process records the kernel dropped (buffer full).
    pub process_records_lost: AtomicU64,
    pub spool_pushed: AtomicU64,
    pub spool_errors: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_items: AtomicU64,
    pub spool_dropped: AtomicU64,
    pub uploads_succeeded: AtomicU64,
    pub uploads_failed: AtomicU64,
    pub uploads_rejected: AtomicU64,
    pub upload_retries: AtomicU64,
    pub window_seconds: AtomicU64,
    pub last_window_millis: AtomicU64,
    /// The unwind tables loaded into the kernel now, and files evicted.
    pub unwind_files_loaded: AtomicU64,
    pub unwind_rows_loaded: AtomicU64,
    pub unwind_bytes_loaded: AtomicU64,
    pub unwind_files_evicted: AtomicU64,
    /// Python processes found (supported), not walked (unsupported version
    /// or not inspectable), and code objects that could not be named.
    pub python_processes: AtomicU64,
    pub python_unsupported: AtomicU64,
    pub python_codes_unnamed: AtomicU64,
}

impl Metrics {
    /// The Python processes' figures.
    pub fn set_python(&self, stats: &crate::python::PythonStats) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(
            &self.python_processes,
            stats.versions.iter().map(|(_, n)| n).sum(),
        );
        set(
            &self.python_unsupported,
            stats.unsupported.iter().map(|(_, n)| n).sum::<u64>()
                + stats.inspect_failed
                + stats.writes_failed,
        );
        set(
            &self.python_codes_unnamed,
            stats.codes_gone + stats.codes_failed + stats.codes_unannounced,
        );
    }

    /// The unwind tables' figures.
    pub fn set_unwind(&self, stats: &crate::unwind::UnwindStats) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.unwind_files_loaded, stats.files_loaded);
        set(&self.unwind_rows_loaded, stats.rows_loaded);
        set(&self.unwind_bytes_loaded, stats.bytes_loaded);
        set(&self.unwind_files_evicted, stats.files_evicted);
    }
}

/// The kernel's counters (see [`KernelStats`]).
#[derive(Debug, Default)]
pub struct KernelCounters {
    pub samples: AtomicU64,
    pub user_stack_errors: AtomicU64,
    pub kernel_stack_errors: AtomicU64,
    pub stacks_full: AtomicU64,
    pub stacks_truncated: AtomicU64,
    pub counts_full: AtomicU64,
    pub events_lost: AtomicU64,
    pub targets_full: AtomicU64,
    pub known_full: AtomicU64,
    pub flip_races: AtomicU64,
    pub off_cpu_switches: AtomicU64,
    pub off_cpu_recorded: AtomicU64,
    pub off_cpu_start_full: AtomicU64,
    pub off_cpu_counts_full: AtomicU64,
    pub off_cpu_switch_in_missed: AtomicU64,
    pub off_cpu_short: AtomicU64,
    pub unwind_stacks: AtomicU64,
    /// Stacks walked with tables that stopped early, by `unwind_end` cause.
    pub unwind_ends: [AtomicU64; 6],
    pub python_frames: AtomicU64,
    /// Stacks whose Python frames were lost, by `python::lost` cause.
    pub python_lost: [AtomicU64; 3],
}

impl KernelCounters {
    pub fn set(&self, stats: &KernelStats) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.samples, stats.samples);
        set(&self.user_stack_errors, stats.user_stack_errors);
        set(&self.kernel_stack_errors, stats.kernel_stack_errors);
        set(&self.stacks_full, stats.stacks_full);
        set(&self.stacks_truncated, stats.stacks_truncated);
        set(&self.counts_full, stats.counts_map_full);
        set(&self.events_lost, stats.events_lost);
        set(&self.targets_full, stats.targets_full);
        set(&self.known_full, stats.known_full);
        set(&self.flip_races, stats.flip_races);
        set(&self.off_cpu_switches, stats.off_cpu_switches);
        set(&self.off_cpu_recorded, stats.off_cpu_recorded);
        set(&self.off_cpu_start_full, stats.off_cpu_start_full);
        set(&self.off_cpu_counts_full, stats.off_cpu_counts_full);
        set(
            &self.off_cpu_switch_in_missed,
            stats.off_cpu_switch_in_missed,
        );
        set(&self.off_cpu_short, stats.off_cpu_short);
        set(&self.unwind_stacks, stats.unwind_stacks);
        for (counter, &value) in self.unwind_ends.iter().zip(&stats.unwind_ends) {
            set(counter, value);
        }
        set(&self.python_frames, stats.python_frames);
        for (counter, &value) in self.python_lost.iter().zip(&stats.python_lost) {
            set(counter, value);
        }
    }
}

/// The agent's own CPU time and memory, from `/proc/self`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SelfUsage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

impl SelfUsage {
    pub fn read() -> SelfUsage {
        let mut usage = SelfUsage::default();
        // utime and stime are fields 14 and 15, after the `(comm)` field.
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r)
        {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
            // SAFETY: sysconf has no preconditions.
            let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
                usage.cpu_seconds = (user + system) as f64 / hz;
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let kib = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                    .map_or(0, |k| k * 1024)
            };
            usage.rss_bytes = kib("VmRSS:");
            usage.peak_rss_bytes = kib("VmHWM:");
        }
        usage
    }
}

struct Writer(String);

impl Writer {
    fn metric(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        let _ = writeln!(self.0, "{name} {value}");
    }

    /// One metric with one label, several values.
    fn labelled(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        values: &[(&str, u64)],
    ) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (value_label, value) in values {
            let _ = writeln!(self.0, "{name}{{{label}=\"{value_label}\"}} {value}");
        }
    }
}

impl Metrics {
    /// The Prometheus text format of every metric.
    pub fn render(&self, usage: &SelfUsage) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let k = &self.kernel;
        let mut w = Writer(String::new());
        w.metric(
            "profiler_samples_total",
            "counter",
            "Samples the kernel took of profiled processes.",
            get(&k.samples),
        );
        w.labelled(
            "profiler_failed_samples_total",
            "counter",
            "Samples (or parts of them) lost, by cause; a sample whose stack was lost is still counted with its stack marked.",
            "cause",
            &[
                ("counts_map_full", get(&k.counts_full)),
                ("stack_map_full", get(&k.stacks_full)),
                ("user_stack_error", get(&k.user_stack_errors)),
                ("kernel_stack_error", get(&k.kernel_stack_errors)),
                ("stack_truncated", get(&k.stacks_truncated)),
                ("process_events_lost", get(&k.events_lost)),
                ("targets_map_full", get(&k.targets_full)),
                ("known_map_full", get(&k.known_full)),
            ],
        );
        w.metric(
            "profiler_off_cpu_switches_total",
            "counter",
            "Profiled threads leaving a CPU (off_cpu only).",
            get(&k.off_cpu_switches),
        );
        w.metric(
            "profiler_off_cpu_intervals_total",
            "counter",
            "Off-CPU intervals recorded (a thread's time from leaving a CPU to running again).",
            get(&k.off_cpu_recorded),
        );
        w.metric(
            "profiler_unwind_stacks_total",
            "counter",
            "User stacks walked with unwind tables.",
            get(&k.unwind_stacks),
        );
        let ends: Vec<(&str, u64)> = [
            "no_table",
            "not_loaded",
            "unsupported_rule",
            "read_fault",
            "depth",
            "bad_frame",
        ]
        .into_iter()
        .zip(k.unwind_ends.iter().map(get))
        .collect();
        w.labelled(
            "profiler_unwind_stopped_total",
            "counter",
            "User stacks walked with unwind tables that stopped before their outermost frame, by cause.",
            "cause",
            &ends,
        );
        w.metric(
            "profiler_python_frames_total",
            "counter",
            "Python frames walked in the kernel (CPython 3.11-3.13).",
            get(&k.python_frames),
        );
        let lost: Vec<(&str, u64)> = ["no_thread_state", "read_fault", "depth"]
            .into_iter()
            .zip(k.python_lost.iter().map(get))
            .collect();
        w.labelled(
            "profiler_python_frames_lost_total",
            "counter",
            "Stacks whose Python frames were lost, by cause.",
            "cause",
            &lost,
        );
        w.metric(
            "profiler_python_processes_total",
            "counter",
            "Python processes whose frames are walked.",
            get(&self.python_processes),
        );
        w.metric(
            "profiler_python_processes_unsupported_total",
            "counter",
            "Python processes whose frames are not walked (version not supported, or interpreter not readable).",
            get(&self.python_unsupported),
        );
        w.metric(
            "profiler_python_codes_unnamed_total",
            "counter",
            "Python code objects that could not be named (process gone first, or read failed).",
            get(&self.python_codes_unnamed),
        );
        w.metric(
            "profiler_unwind_files_loaded",
            "gauge",
            "Files whose unwind tables are loaded in the kernel.",
            get(&self.unwind_files_loaded),
        );
        w.metric(
            "profiler_unwind_rows_loaded",
            "gauge",
            "Unwind table rows loaded in the kernel.",
            get(&self.unwind_rows_loaded),
        );
        w.metric(
            "profiler_unwind_bytes_loaded",
            "gauge",
            "Kernel memory holding unwind tables, in bytes.",
            get(&self.unwind_bytes_loaded),
        );
        w.metric(
            "profiler_unwind_files_evicted_total",
            "counter",
            "Files whose unwind tables were evicted to stay within unwind_memory.",
            get(&self.unwind_files_evicted),
        );
        w.metric(
            "profiler_off_cpu_short_intervals_total",
            "counter",
            "Off-CPU intervals shorter than min_block, counted and left out.",
            get(&k.off_cpu_short),
        );
        w.labelled(
            "profiler_failed_off_cpu_intervals_total",
            "counter",
            "Off-CPU intervals lost, by cause.",
            "cause",
            &[
                ("start_map_full", get(&k.off_cpu_start_full)),
                ("counts_map_full", get(&k.off_cpu_counts_full)),
                ("switch_in_missed", get(&k.off_cpu_switch_in_missed)),
            ],
        );
        w.metric(
            "profiler_samples_during_switch_total",
            "counter",
            "Samples recorded while the map sets were being switched at a window boundary (the kernel's count).",
            get(&k.flip_races),
        );
        w.metric(
            "profiler_samples_between_windows_total",
            "counter",
            "Samples found in a map set after it was read (recorded during a switch), given to the next window.",
            get(&self.samples_between_windows),
        );
        w.metric(
            "profiler_off_cpu_between_windows_total",
            "counter",
            "Off-CPU intervals found in a map set after it was read, given to the next window.",
            get(&self.off_cpu_between_windows),
        );
        w.metric(
            "profiler_off_cpu_before_start_seconds_total",
            "counter",
            "Off-CPU time of threads asleep since before the agent started, left out (stack unknown).",
            get(&self.off_cpu_before_start_nanos) as f64 / 1e9,
        );
        w.labelled(
            "profiler_map_entries",
            "gauge",
            "Entries of the kernel maps at the last window boundary.",
            "map",
            &[
                ("counts", get(&self.counts_map_entries)),
                ("stacks", get(&self.stacks_map_entries)),
            ],
        );
        w.labelled(
            "profiler_map_capacity",
            "gauge",
            "Capacity of the kernel maps, in entries.",
            "map",
            &[
                ("counts", get(&self.counts_map_capacity)),
                ("stacks", get(&self.stacks_map_capacity)),
            ],
        );
        w.metric(
            "profiler_window_unique_stacks",
            "gauge",
            "Unique stacks in the last window (all processes).",
            get(&self.last_window_stacks),
        );
        w.metric(
            "profiler_stacks_over_cap_total",
            "counter",
            "Unique stacks beyond max_stacks, folded into one marker stack per process.",
            get(&self.stacks_over_cap),
        );
        w.metric(
            "profiler_samples_over_cap_total",
            "counter",
            "Samples of the stacks beyond max_stacks (kept under the marker stack).",
            get(&self.samples_over_cap),
        );
        w.metric(
            "profiler_symbol_cache_hits_total",
            "counter",
            "Addresses named from the symbolization cache.",
            get(&self.symbol_cache_hits),
        );
        w.metric(
            "profiler_symbol_cache_misses_total",
            "counter",
            "Addresses looked up in their files.",
            get(&self.symbol_cache_misses),
        );
        w.metric(
            "profiler_symbol_cache_entries",
            "gauge",
            "Names held in the symbolization cache.",
            get(&self.symbol_cache_entries),
        );
        w.metric(
            "profiler_symbol_cache_evicted_total",
            "counter",
            "Names dropped from the symbolization cache (files no longer mapped, or over the bound).",
            get(&self.symbol_cache_evicted),
        );
        w.metric(
            "profiler_symbol_files_held",
            "gauge",
            "Executables and debug files kept mapped and parsed for symbolization.",
            get(&self.symbol_files_held),
        );
        w.metric(
            "profiler_symbol_files_released_total",
            "counter",
            "Symbol files let go (idle for 3 windows, or over memory_target); parsed again when needed.",
            get(&self.symbol_files_released),
        );
        w.metric(
            "profiler_memory_target_releases_total",
            "counter",
            "Windows after which every symbol file was let go because RSS was above memory_target.",
            get(&self.memory_target_releases),
        );
        w.metric(
            "profiler_processes_cached",
            "gauge",
            "Processes whose memory maps are held for symbolization.",
            get(&self.processes_cached),
        );
        w.metric(
            "profiler_processes_evicted_total",
            "counter",
            "Exited processes whose maps were dropped.",
            get(&self.processes_evicted),
        );
        w.metric(
            "profiler_processes_followed",
            "gauge",
            "Processes whose maps come from the kernel's fork/exec/mmap records rather than /proc.",
            get(&self.processes_followed),
        );
        w.metric(
            "profiler_process_records_lost_total",
            "counter",
            "Fork/exec/mmap records the kernel dropped; after any, live processes are read from /proc again.",
            get(&self.process_records_lost),
        );
        w.metric(
            "profiler_windows_written_total",
            "counter",
            "Windows cut and stored.",
            get(&self.windows_written),
        );
        w.metric(
            "profiler_profiles_written_total",
            "counter",
            "Profiles (one per process and window) written to the store.",
            get(&self.profiles_written),
        );
        w.metric(
            "profiler_store_errors_total",
            "counter",
            "Profiles that could not be written to the store.",
            get(&self.store_errors),
        );
        w.metric(
            "profiler_store_bytes",
            "gauge",
            "Bytes in the local store after the last retention pass.",
            get(&self.store_bytes),
        );
        w.metric(
            "profiler_store_removed_total",
            "counter",
            "Stored profiles removed by retention.",
            get(&self.retention_removed),
        );
        w.metric(
            "profiler_uploads_succeeded_total",
            "counter",
            "Profiles Pyroscope took.",
            get(&self.uploads_succeeded),
        );
        w.metric(
            "profiler_uploads_failed_total",
            "counter",
            "Pushes given up on (every attempt failed, or refused); failed ones stay in the spool.",
            get(&self.uploads_failed),
        );
        w.metric(
            "profiler_uploads_rejected_total",
            "counter",
            "Profiles Pyroscope refused for good (removed from the spool).",
            get(&self.uploads_rejected),
        );
        w.metric(
            "profiler_upload_retries_total",
            "counter",
            "Push attempts after a first one.",
            get(&self.upload_retries),
        );
        w.metric(
            "profiler_spool_bytes",
            "gauge",
            "Bytes of profiles waiting to be pushed.",
            get(&self.spool_bytes),
        );
        w.metric(
            "profiler_spool_items",
            "gauge",
            "Profiles waiting to be pushed.",
            get(&self.spool_items),
        );
        w.metric(
            "profiler_spool_dropped_total",
            "counter",
            "Profiles dropped from the spool (oldest first) to stay within its bound.",
            get(&self.spool_dropped),
        );
        w.metric(
            "profiler_spool_errors_total",
            "counter",
            "Profiles that could not be put in the spool.",
            get(&self.spool_errors),
        );
        w.metric(
            "profiler_last_window_processing_seconds",
            "gauge",
            "Time taken to drain, symbolize and store the last window.",
            get(&self.last_window_millis) as f64 / 1000.0,
        );
        w.metric(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time of the agent.",
            usage.cpu_seconds,
        );
        w.metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the agent.",
            usage.rss_bytes,
        );
        w.metric(
            "process_resident_memory_peak_bytes",
            "gauge",
            "Highest resident memory of the agent.",
            usage.peak_rss_bytes,
        );
        w.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_once_with_help_and_type() {
        let metrics = Metrics::default();
        metrics.kernel.samples.store(42, Ordering::Relaxed);
        metrics.kernel.stacks_full.store(3, Ordering::Relaxed);
        let text = metrics.render(&SelfUsage::read());
        assert!(text.contains("\nprofiler_samples_total 42\n") || text.starts_with("# HELP"));
        assert!(text.contains("profiler_samples_total 42\n"), "{text}");
        assert!(text.contains("profiler_failed_samples_total{cause=\"stack_map_full\"} 3\n"));
        let mut names = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split_whitespace().next().unwrap();
                assert!(names.insert(name.to_string()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(names.contains(name), "{name} has no TYPE line");
                assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
            }
        }
        assert!(names.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn reads_own_usage() {
        let usage = SelfUsage::read();
        assert!(usage.rss_bytes > 0 && usage.peak_rss_bytes >= usage.rss_bytes);
    }
}
